"""``prednas compile``, ``prednas submit`` and ``prednas schedule``: the pipeline on Kubeflow Pipelines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from prednas.cli.options import config_options, load_spec
from prednas.errors import PredNASError


def register(main: click.Group, bench: click.Group) -> None:
    """Add the Kubeflow commands."""
    main.add_command(compile_command)
    main.add_command(submit)
    main.add_command(schedule)


def _step_options(command: Any) -> Any:
    """``--image``, ``--data-pvc`` and ``--data-mount``: what the compiled steps run in and mount."""
    command = click.option("--data-mount", default="/data", show_default=True,
                           help="Where --data-pvc is mounted; the evaluator's data paths name files under it.")(command)
    command = click.option("--data-pvc", default="",
                           help="PersistentVolumeClaim holding the data, mounted into every evaluate step.")(command)
    return click.option("--image", default="", help="Container image of every step (default: the released "
                        "prednas image named in components/image.py).")(command)


def _options(kwargs: dict[str, Any]) -> Any:
    """Pop the step options from a command's kwargs."""
    from prednas.pipeline.remote import StepOptions

    return StepOptions(kwargs.pop("image"), kwargs.pop("data_pvc"), kwargs.pop("data_mount"))


def _endpoint(command: Any) -> Any:
    command = click.option("--service-account", default=None,
                           help="Kubernetes ServiceAccount of the steps (see manifests/: prednas-steps).")(command)
    command = click.option("--namespace", default=None,
                           help="Kubeflow profile namespace (multi-user clusters).")(command)
    return click.option("--host", required=True,
                        help="Kubeflow Pipelines endpoint, e.g. http://localhost:8080.")(command)


@click.command("compile")
@config_options
@_step_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the pipeline package (YAML).")
def compile_command(output: Path, **kwargs: Any) -> None:
    """Write the pipeline package; the config's values become the parameters' defaults."""
    from prednas.pipeline.remote import check_for_cluster, compile_package

    options = _options(kwargs)
    spec = load_spec(kwargs)
    if not output.parent.exists():
        raise PredNASError(f"cannot write {output}: folder {output.parent} does not exist")
    _note(check_for_cluster(spec))
    click.echo(f"wrote {compile_package(spec, output, options, check=False)}")


@click.command()
@config_options
@_step_options
@_endpoint
def submit(host: str, namespace: str | None, service_account: str | None, **kwargs: Any) -> None:
    """Create a run of the pipeline on a Kubeflow Pipelines endpoint."""
    from prednas.pipeline.remote import submit as submit_run

    options = _options(kwargs)
    spec = load_spec(kwargs)
    result = submit_run(spec, host=host, experiment=spec.experiment, namespace=namespace,
                        service_account=service_account, options=options, show_kfp_output=_debug())
    click.echo(f"run {result['run_id']} created: {result['url']}")
    _note(result.get("unchecked"))


@click.command()
@config_options
@_step_options
@_endpoint
@click.option("--cron", required=True, help="Six-field cron: second minute hour day-of-month month day-of-week.")
@click.option("--job-name", default=None, help="Name of the recurring run (default: prednas-<space>).")
@click.option("--max-concurrency", type=int, default=1, show_default=True, help="Runs of this schedule at once.")
@click.option("--catchup/--no-catchup", default=False, show_default=True,
              help="Replay the slots missed while the schedule was paused.")
@click.option("--start-time", default=None, help="RFC 3339 time of the first run (default: now).")
@click.option("--end-time", default=None, help="RFC 3339 time after which no run starts.")
@click.option("--replace", is_flag=True,
              help="Replace a recurring run of the same --job-name instead of keeping it.")
def schedule(host: str, namespace: str | None, service_account: str | None, cron: str, job_name: str | None,
             max_concurrency: int, catchup: bool, start_time: str | None, end_time: str | None,
             replace: bool, **kwargs: Any) -> None:
    """Create a recurring run: each run warm-starts from everything earlier runs measured."""
    from prednas.pipeline.remote import check_cron
    from prednas.pipeline.remote import schedule as schedule_runs

    check_cron(cron)
    options = _options(kwargs)
    spec = load_spec(kwargs)
    name = job_name or f"prednas-{spec.space}"
    result = schedule_runs(spec, host=host, cron=cron, experiment=spec.experiment, job_name=name,
                           max_concurrency=max_concurrency, catchup=catchup, namespace=namespace,
                           service_account=service_account, start_time=start_time, end_time=end_time,
                           replace_existing=replace, options=options, show_kfp_output=_debug())
    where = f"in experiment {spec.experiment} ({result['experiment_id']})"
    if result["status"] == "exists":
        click.echo(f"recurring run {name} ({result['recurring_run_id']}) already exists {where}; "
                   "kept (--replace replaces it)")
    elif result["status"] == "replaced":
        click.echo(f"recurring run {name} ({result['recurring_run_id']}) replaced {result['replaced_id']} {where}")
    else:
        click.echo(f"recurring run {name} ({result['recurring_run_id']}) created {where}")
    _note(result.get("unchecked"))


def _note(line: str | None) -> None:
    """What could not be checked on this machine, on stderr."""
    if line:
        click.echo(f"note: {line}", err=True)


def _debug() -> bool:
    """Whether ``prednas --debug`` was given (kfp's own output is then shown)."""
    context = click.get_current_context(silent=True)
    return bool(context and context.find_root().obj and context.find_root().obj.get("debug"))
