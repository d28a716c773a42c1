"""Exit handler: end the MLflow parent run as finished, failed or killed."""

from kfp import dsl

from prednas.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def close_run(tracking_uri: str, experiment: str, run_key: str, job_id: str,
              status: dsl.PipelineTaskFinalStatus) -> str:
    """Close the parent run of this pipeline run with the pipeline's final state; returns the MLflow status."""
    from prednas.pipeline import steps

    return steps.close(tracking_uri, experiment, run_key or job_id, status.state)
