"""Step 4 of each round: propose the round's share of K through the fitted predictors."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from prednas.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def propose(context: Input[Artifact], main: Input[Model], aux: Input[Model], state: Input[Artifact], rounds: int,
            proposed: Output[Artifact]) -> list:
    """Score every class or run Algorithm 1; the picks go into ``proposed`` (the new state), shards are returned."""
    from pathlib import Path

    from prednas.pipeline import steps
    from prednas.pipeline.context import SearchContext
    from prednas.pipeline.state import SearchState

    after, shards = steps.search(SearchContext.read(context.path), Path(main.path).read_bytes(),
                                 Path(aux.path).read_bytes() or None, SearchState.read(state.path), rounds)
    after.write(proposed.path)
    return shards
