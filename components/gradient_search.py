"""Step 4: Algorithm 1 through the fitted predictors; the top K unmeasured become shards."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from prednas.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def gradient_search(context: Input[Artifact], main: Input[Model], aux: Input[Model], training: Input[Dataset],
                    pool: Output[Dataset]) -> list:
    """Search over the alpha grid and return the top-K shards (the ranked picks go to ``pool``)."""
    from pathlib import Path

    from prednas.pipeline import exchange, steps
    from prednas.pipeline.context import SearchContext

    picks, shards = steps.search(SearchContext.read(context.path), Path(main.path).read_bytes(),
                                 Path(aux.path).read_bytes() or None, exchange.read_triplets(training.path))
    exchange.write_json(pool.path, picks)
    return shards
