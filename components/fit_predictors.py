"""Step 3 of each round: fit the main and auxiliary predictors on everything measured so far."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from prednas.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def fit_predictors(context: Input[Artifact], state: Input[Artifact], measured: Input[list[Dataset]],
                   main: Output[Model], aux: Output[Model], fitted: Output[Artifact], metrics: Output[Metrics]) -> dict:
    """Fit, cross-validate and register the predictors; returns their registered versions.

    ``state`` is the search state before this round (the sample step's empty one before
    round 1), ``measured`` what was measured since; ``fitted`` is the state after the fit.
    """
    from prednas.pipeline import exchange, steps
    from prednas.pipeline.context import SearchContext
    from prednas.pipeline.state import SearchState

    fit = steps.fit_predictors(SearchContext.read(context.path), exchange.read_triplets([a.path for a in measured]),
                               SearchState.read(state.path))
    with open(main.path, "wb") as f:
        f.write(fit["main"])
    with open(aux.path, "wb") as f:
        f.write(fit["aux"] or b"")
    fit["state"].write(fitted.path)
    for name, value in fit["metrics"].items():
        metrics.log_metric(name, value)
    return fit["versions"]
