"""Step 6: choose the best measured architecture and log the final results."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Output

from prednas.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def select(context: Input[Artifact], versions: dict, training: Input[Dataset], topk: Input[list[Dataset]],
           pool: Input[Dataset], report: Output[Dataset], summary: Output[Markdown], metrics: Output[Metrics]):
    """Pick the best, log final metrics and plots, crown the champion predictor; write the report."""
    from prednas.pipeline import exchange
    from prednas.pipeline import report as reporting
    from prednas.pipeline.context import SearchContext

    result = reporting.select(SearchContext.read(context.path), exchange.read_triplets(training.path),
                              exchange.read_triplets([a.path for a in topk]), exchange.read_json(pool.path), versions)
    exchange.write_json(report.path, result)
    with open(summary.path, "w") as f:
        f.write(reporting.markdown(result))
    for name, value in result["metrics"].items():
        metrics.log_metric(name, value)
