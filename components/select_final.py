"""Step 8 (with ``final_m`` > 0): name the best architecture by its final-stage result."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Output

from prednas.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def select_final(context: Input[Artifact], selected: Input[Dataset], finalists: Input[Dataset],
                 final: Input[list[Dataset]], report: Output[Dataset], summary: Output[Markdown],
                 metrics: Output[Metrics]):
    """Choose by the final stage's results, keep the top-K stage's choice beside it; write the report."""
    from prednas.pipeline import exchange
    from prednas.pipeline import report as reporting
    from prednas.pipeline.context import SearchContext

    result = reporting.select_final(SearchContext.read(context.path), exchange.read_json(selected.path),
                                    exchange.read_triplets(finalists.path),
                                    exchange.read_triplets([a.path for a in final]))
    exchange.write_json(report.path, result)
    with open(summary.path, "w") as f:
        f.write(reporting.markdown(result))
    for name, value in result["metrics"].items():
        metrics.log_metric(name, value)
