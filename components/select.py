"""Step 6: choose the best measured architecture, log the results and plan the optional final stage."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Output

from prednas.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def select(context: Input[Artifact], state: Input[Artifact], topk: Input[list[Dataset]], report: Output[Dataset],
           summary: Output[Markdown], metrics: Output[Metrics], finalists: Output[Dataset]) -> list:
    """Pick the best, log final metrics and plots, crown the champion predictor; write the report.

    ``state`` is the search state after the last round's proposal, ``topk`` what that round
    measured. Returns the final stage's shards (the best ``final_m`` by the search signal,
    also written to ``finalists``); none when ``final_m`` is 0.
    """
    from prednas.pipeline import exchange
    from prednas.pipeline import report as reporting
    from prednas.pipeline.context import SearchContext
    from prednas.pipeline.state import SearchState

    search, before = SearchContext.read(context.path), SearchState.read(state.path)
    measured = exchange.read_triplets([a.path for a in topk])
    result = reporting.select(search, before, measured)
    exchange.write_json(report.path, result)
    with open(summary.path, "w") as f:
        f.write(reporting.markdown(result))
    for name, value in result["metrics"].items():
        metrics.log_metric(name, value)
    chosen, shards = reporting.plan_final(search, before, measured)
    exchange.write_triplets(finalists.path, chosen)
    return shards
