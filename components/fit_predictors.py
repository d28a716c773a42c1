"""Step 3: fit the main and auxiliary predictors on the collected (and stored) triplets."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from prednas.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def fit_predictors(context: Input[Artifact], sampled: Input[list[Dataset]], main: Output[Model], aux: Output[Model],
                   training: Output[Dataset], metrics: Output[Metrics]) -> dict:
    """Fit, cross-validate and register the predictors; returns their registered versions."""
    from prednas.pipeline import exchange, steps
    from prednas.pipeline.context import SearchContext

    fit = steps.fit_predictors(SearchContext.read(context.path), exchange.read_triplets([a.path for a in sampled]))
    with open(main.path, "wb") as f:
        f.write(fit["main"])
    with open(aux.path, "wb") as f:
        f.write(fit["aux"] or b"")
    exchange.write_triplets(training.path, fit["training"])
    for name, value in fit["metrics"].items():
        metrics.log_metric(name, value)
    return fit["versions"]
