"""The PredNAS DAG (paper Fig. 2): sample, evaluate in parallel, then R rounds of fit, propose, evaluate; select.

::

    close_run (exit handler: ends the MLflow run as FINISHED / FAILED / KILLED)
    search:
      sample -> ParallelFor(shards) evaluate -> Collected
             -> round 1..R: fit_predictors -> propose -> ParallelFor(round shards) evaluate -> Collected
             -> select
             -> If(final_m > 0): ParallelFor(final shards) evaluate -> Collected -> select_final

KFP v2 has no dynamic loop, so the rounds are unrolled when the pipeline is built
(``rounds``, a compile-time setting like ``parallelism`` and ``retries``); each round's
fit takes the search state the previous round's propose step left and the triplets
measured since, so round r learns from every earlier round.

The optional final stage retrains the best ``final_m`` architectures (by the search
signal) with ``final_evaluator`` and names the best by that result.

Run-time parameters are the search itself (see ``SearchSpec.to_arguments``); ``build_pipeline``
takes what Kubeflow fixes at compile time: the fan-out limit, retries, resource requests,
the step image and the data volume (a PersistentVolumeClaim mounted into every step that
reads the config's evaluators, through kfp-kubernetes' ``mount_pvc``). Accelerator requests
are run-time parameters ('' requests none), so one compiled pipeline serves table lookups
and training evaluators alike.

On a cluster each step reads S3 credentials and endpoint from the Secret and ConfigMap
``prednas-s3`` (see ``manifests/``), and a run that names no store uses that ConfigMap's
``PREDNAS_STORE_URI``; nothing secret is in the compiled YAML. Caching is off: the triplet
store, not KFP's cache, decides what is measured again.
"""

import ast
import inspect
import re
from pathlib import Path
from typing import Any

from kfp import dsl, kubernetes

from prednas.components import IMAGE, close_run, evaluate, fit_predictors, propose, sample, select, select_final
from prednas.pipeline.config import DEFAULT_ROUNDS

HEADER_DICT = re.compile(r"(?P<head>#\s+\w+: dict \[Default: )(?P<value>\{.*\})\]$")

NAME = "prednas"
DESCRIPTION = "PredNAS: predictor-based neural architecture search (Yuan, Huang and Wang)"
COMPILED = Path(__file__).with_name("prednas_pipeline.yaml")
S3_SECRET = "prednas-s3"
S3_SECRET_KEYS = {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}
S3_CONFIG = "prednas-s3"
S3_CONFIG_KEYS = {"AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION": "AWS_DEFAULT_REGION",
                  "PREDNAS_STORE_URI": "PREDNAS_STORE_URI"}
CLUSTER_TRACKING_URI = "http://mlflow.prednas.svc.cluster.local:5000"
CLUSTER_STORE_URI = "s3://prednas/store"  # PREDNAS_STORE_URI of manifests/base's ConfigMap prednas-s3
DATA_MOUNT = "/data"
EVALUATOR = {"name": "nb201-table", "dataset": "cifar100", "signal": "valid"}
PREDICTOR = {"epochs": 300, "batch_size": 64, "cv_folds": 3, "aux_target": "flops"}
GRADIENT = {"starts": 100, "steps": 200, "lr": 0.02, "lr_decay": 0.5, "optimizer": "adam"}


def threads(cpu: str) -> int:
    """Intra-op threads for a CPU request ("500m", "1", "2.5"): its whole cores, at least one.

    Torch otherwise starts one thread per core of the node, and threads beyond the pod's
    CPU share slow small networks down many times over.
    """
    cores = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return max(1, int(cores))


def _step(task: dsl.PipelineTask, name: str, cpu: str, memory: str, image: str = IMAGE) -> dsl.PipelineTask:
    """Display name, image, requests, thread count, S3 settings from the cluster; no KFP cache."""
    task.set_display_name(name).set_caching_options(False).set_container_image(image)
    task.set_cpu_request(cpu).set_memory_request(memory)
    task.set_env_variable("OMP_NUM_THREADS", str(threads(cpu)))
    kubernetes.use_secret_as_env(task, S3_SECRET, S3_SECRET_KEYS, optional=True)
    kubernetes.use_config_map_as_env(task, S3_CONFIG, S3_CONFIG_KEYS, optional=True)
    kubernetes.set_security_context(task, run_as_non_root=True)
    return task


def build_pipeline(*, parallelism: int = 2, retries: int = 2, cpu: str = "1", memory: str = "2Gi",
                   rounds: int = DEFAULT_ROUNDS, image: str = IMAGE, data_pvc: str = "",
                   data_mount: str = DATA_MOUNT, defaults: dict[str, Any] | None = None) -> Any:
    """The pipeline function with compile-time settings applied (compile it or run it with kfp.local).

    ``rounds`` is how many fit -> propose -> evaluate rounds are unrolled (a run's ``k`` must
    be at least that). ``image`` is every step's container image; ``data_pvc`` names a
    PersistentVolumeClaim mounted at ``data_mount`` in every step but the one closing the MLflow run
    ('' mounts none): a space searched through a trained evaluator is sized by its data.
    ``defaults`` replaces the parameters' default values (those a run gets when it names none).
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= 100:
        raise ValueError(f"rounds must be an integer in [1, 100], got {rounds!r}")
    pod = (cpu, memory, image)  # what every step runs in and asks for

    def step(task: Any, name: str) -> Any:
        """A step that reads the config's evaluators: a trained space is sized by its data (the classes)."""
        _step(task, name, *pod)
        if data_pvc:
            kubernetes.mount_pvc(task, pvc_name=data_pvc, mount_path=data_mount)
        return task

    def measure(context: Any, shard: Any, accelerator: Any, accelerator_count: Any, name: str) -> Any:
        task = evaluate(context=context, shard=shard, accelerator=accelerator, accelerator_limit=accelerator_count)
        step(task, name).set_retry(retries, backoff_duration="30s", backoff_factor=2.0)
        return task.set_accelerator_type(accelerator).set_accelerator_limit(accelerator_count)

    def prednas(space: str = "nb201", evaluator: dict = EVALUATOR, topk_evaluator: dict = {},  # noqa: B006 - KFP defaults
                final_m: int = 0, final_evaluator: dict = {}, n: int = 30,  # noqa: B006
                k: int = 40, seed: int = 0, exhaustive_limit: int = 100_000, pretrain: int = 20_000,
                refine: int = 0, predictor: dict = PREDICTOR,
                gradient: dict = GRADIENT, alphas: list = [0.0], cost_metric: str = "",  # noqa: B006
                cost_target: float = 0.0, cost_window: float = 0.0, cost_sample_in_window: bool = True,
                shards: int = 2,
                tracking_uri: str = CLUSTER_TRACKING_URI, experiment: str = "prednas",
                store_uri: str = "", run_name: str = "", accelerator: str = "",
                accelerator_count: int = 1, run_key: str = ""):
        closer = close_run(tracking_uri=tracking_uri, experiment=experiment, run_key=run_key,
                           job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        _step(closer, "close MLflow run", *pod)
        with dsl.ExitHandler(closer, name="search"):
            drawn = step(sample(
                space=space, evaluator=evaluator, topk_evaluator=topk_evaluator, final_m=final_m,
                final_evaluator=final_evaluator, n=n, k=k, seed=seed, exhaustive_limit=exhaustive_limit,
                pretrain=pretrain, refine=refine, predictor=predictor, gradient=gradient, alphas=alphas,
                cost_metric=cost_metric, cost_target=cost_target, cost_window=cost_window,
                cost_sample_in_window=cost_sample_in_window, shards=shards, tracking_uri=tracking_uri,
                experiment=experiment, store_uri=store_uri, run_name=run_name, accelerator=accelerator,
                accelerator_count=accelerator_count, run_key=run_key, job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            ), "sample N")
            context, state = drawn.outputs["context"], drawn.outputs["state"]
            with dsl.ParallelFor(drawn.outputs["Output"], parallelism=parallelism) as shard:
                measured = measure(context, shard, accelerator, accelerator_count, "evaluate sample shard")
            for r in range(1, rounds + 1):
                fitted = step(fit_predictors(context=context, state=state,
                                             measured=dsl.Collected(measured.outputs["triplets"])),
                              f"fit predictors (round {r}/{rounds})")
                proposed = step(propose(context=context, main=fitted.outputs["main"], aux=fitted.outputs["aux"],
                                        state=fitted.outputs["fitted"], rounds=rounds),
                                f"propose (round {r}/{rounds})")
                state = proposed.outputs["proposed"]
                with dsl.ParallelFor(proposed.outputs["Output"], parallelism=parallelism) as shard:
                    measured = measure(context, shard, accelerator, accelerator_count, f"evaluate round {r} shard")
            selected = step(select(context=context, state=state, topk=dsl.Collected(measured.outputs["triplets"])),
                            "select best")
            with dsl.If(final_m > 0, name="final-stage"):
                with dsl.ParallelFor(selected.outputs["Output"], parallelism=parallelism) as shard:
                    final = measure(context, shard, accelerator, accelerator_count, "evaluate final shard")
                step(select_final(context=context, selected=selected.outputs["report"],
                                  finalists=selected.outputs["finalists"],
                                  final=dsl.Collected(final.outputs["triplets"])), "select best by final result")

    if defaults:
        _set_defaults(prednas, defaults)
    return dsl.pipeline(name=NAME, description=DESCRIPTION)(prednas)


def _set_defaults(function: Any, defaults: dict[str, Any]) -> None:
    """Replace the default values of ``function``'s parameters (all of which have one)."""
    parameters = inspect.signature(function).parameters
    unknown = sorted(set(defaults) - set(parameters))
    if unknown:
        raise ValueError(f"no pipeline parameter {unknown[0]!r}")
    function.__defaults__ = tuple(defaults.get(name, p.default) for name, p in parameters.items())


def compile_pipeline(path: str | Path = COMPILED, **options: Any) -> Path:
    """Write the pipeline package (YAML) for the given compile-time settings."""
    from kfp import compiler

    compiler.Compiler().compile(build_pipeline(**options), str(path))
    _sort_header_defaults(Path(path))
    return Path(path)


def _sort_header_defaults(path: Path) -> None:
    """Print the dict defaults of the package's comment header with sorted keys, nested dicts too.

    The compiler writes them in the order of a protobuf map, which changes from one process
    to the next; sorted, the same pipeline compiles to the same bytes.
    """
    lines = path.read_text().splitlines(keepends=True)
    for i, line in enumerate(lines):
        if not line.startswith("#"):
            break
        match = HEADER_DICT.match(line)
        if match:
            lines[i] = f"{match['head']}{_sorted(ast.literal_eval(match['value']))!r}]\n"
    path.write_text("".join(lines))


def _sorted(value: Any) -> Any:
    """``value`` with every dict in it, nested ones too, rebuilt with sorted keys."""
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value
