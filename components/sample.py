"""Step 1: validate the search, open its MLflow run and draw N unmeasured architectures."""

from kfp import dsl
from kfp.dsl import Artifact, Output

from prednas.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def sample(space: str, evaluator: dict, topk_evaluator: dict, final_m: int, final_evaluator: dict, n: int, k: int,
           seed: int, exhaustive_limit: int, pretrain: int, refine: int,
           predictor: dict,
           gradient: dict, alphas: list, cost_metric: str, cost_target: float, cost_window: float,
           cost_sample_in_window: bool, shards: int,
           tracking_uri: str, experiment: str, store_uri: str, run_name: str, accelerator: str,
           accelerator_count: int, run_key: str, job_id: str,
           context: Output[Artifact], state: Output[Artifact]) -> list:
    """Check every parameter, start (or find) the parent run; return the N new architectures as shards.

    ``context`` (the validated spec and the MLflow parent run, as JSON) is what every later
    step reads; it is an artifact because steps inside a ParallelFor cannot take another
    step's output parameter on kfp.local. ``state`` is the empty search state round 1 starts from.
    """

    from prednas.pipeline import steps
    from prednas.pipeline.config import SearchSpec
    from prednas.pipeline.state import SearchState

    spec = SearchSpec.from_arguments(dict(
        space=space, evaluator=evaluator, topk_evaluator=topk_evaluator, final_m=final_m,
        final_evaluator=final_evaluator, n=n, k=k, seed=seed, exhaustive_limit=exhaustive_limit, pretrain=pretrain,
        refine=refine, predictor=predictor,
        gradient=gradient, alphas=alphas, cost_metric=cost_metric, cost_target=cost_target, cost_window=cost_window,
        cost_sample_in_window=cost_sample_in_window,
        shards=shards, tracking_uri=tracking_uri, experiment=experiment, store_uri=store_uri, run_name=run_name,
        accelerator=accelerator, accelerator_count=accelerator_count))
    search, shards = steps.sample(spec, run_key=run_key or job_id)
    search.write(context.path)
    SearchState().write(state.path)
    return shards
