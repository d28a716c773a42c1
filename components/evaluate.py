"""Steps 2, 5 and 7: measure one shard of architectures (sample, top-K or final stage)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from prednas.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(context: Input[Artifact], shard: str, accelerator: str, accelerator_limit: int,
             triplets: Output[Dataset], metrics: Output[Metrics]):
    """Evaluate a shard; stored architectures are reused, new triplets stored before they are logged.

    ``accelerator`` and ``accelerator_limit`` are what the pod requests (they are inputs so
    the compiler passes them into the ParallelFor; the names differ from the compiler's own
    ``accelerator_type``/``accelerator_count``); on an accelerator the evaluator gets ``device="cuda"``.
    """
    from prednas.pipeline import exchange, steps
    from prednas.pipeline.context import SearchContext

    results, figures = steps.evaluate(SearchContext.read(context.path), shard, accelerator=accelerator)
    exchange.write_triplets(triplets.path, results)
    for name, value in figures.items():
        metrics.log_metric(name, value)
