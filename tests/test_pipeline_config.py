"""Search configs, the evaluator registry and the CLI's one-line errors (no pipeline run)."""

from __future__ import annotations

import contextlib
import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from prednas.errors import PredNASError
from prednas.evaluators.registry import evaluator_entry, evaluator_names, make_evaluator, register_evaluator
from prednas.pipeline.config import SearchSpec, default_config_path, load_config, spec_from_dict
from prednas.pipeline.remote import check_cron, cluster_spec

CONFIGS = sorted((Path(__file__).parents[1] / "pipelines" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_round_trips(path: Path) -> None:
    spec = load_config(path)
    assert SearchSpec.from_arguments(spec.to_arguments()).to_arguments() == spec.to_arguments()
    assert spec_from_dict(spec.to_dict()) == spec


def test_default_config_is_the_paper_budget_on_nb201_cifar100() -> None:
    spec = load_config()
    assert (spec.space, spec.evaluator["name"], spec.evaluator["dataset"], spec.n, spec.k) == \
        ("nb201", "nb201-table", "cifar100", 30, 40)
    assert default_config_path().is_file()


def test_pipeline_defaults_are_the_default_config() -> None:
    from prednas.pipelines.prednas_pipeline import build_pipeline

    pipeline = build_pipeline()
    defaults = {name: spec.default for name, spec in
                inspect.signature(pipeline.pipeline_func).parameters.items() if name != "run_key"}
    assert defaults == cluster_spec(load_config()).to_arguments()


def test_overrides_reach_nested_keys() -> None:
    spec = load_config(None, ["n=12", "gradient.steps=7", "evaluator.dataset=cifar10", "alphas=[0, 0.5]",
                              "cost={metric: flops, target: 2.0e8, window: 1.0e7}"])
    assert (spec.n, spec.gradient["steps"], spec.evaluator["dataset"], spec.alphas) == (12, 7, "cifar10", (0.0, 0.5))
    assert spec.cost is not None and spec.cost.metric == "flops"
    assert spec.gradient["lr"] == 0.02  # untouched keys keep the file's value


def test_kfp_floats_are_accepted_back_as_integers() -> None:
    arguments = load_config().to_arguments()
    floated = {**arguments, "n": 30.0, "predictor": {**arguments["predictor"], "epochs": 300.0}}
    spec = SearchSpec.from_arguments(floated)
    assert spec.n == 30 and spec.predictor["epochs"] == 300 and isinstance(spec.predictor["epochs"], int)


BAD = [
    (["space=nas101"], "unknown search space 'nas101'"),
    (["n=1"], "n must be an integer in [2, 100000], got 1"),
    (["k=0"], "k must be an integer in [1, 100000], got 0"),
    (["refine=-1"], "refine must be an integer in [0, 1000000], got -1"),
    (["refine=2.5"], "refine must be an integer in [0, 1000000], got 2.5"),
    (["n=15000", "k=1000"], "exceeds the 15625 architectures"),
    (["n=2.5"], "n must be an integer"),
    (["evaluator.name=imagenet-table"], "unknown evaluator 'imagenet-table'"),
    (["evaluator.epochs=3"], "unknown option 'epochs' for evaluator 'nb201-table'"),
    (["alphas=[-1]"], "alphas[0] must be a finite number >= 0"),
    (["cost={metric: latency, target: 1, window: 1}"], "cost.metric 'latency' is neither a cost of space 'nb201'"),
    (["predictor.aux_target=energy"], "predictor.aux_target must be one of flops, macs, params, latency_ms"),
    (["gradient.optimizer=lbfgs"], "gradient.optimizer must be adam or sgd"),
    (["gradient.penalty=hinge"], "gradient.penalty must be one of window, linear, got 'hinge'"),
    (["gradient.radius=-0.5"], "gradient.radius"),
    (["gradient.radius=wide"], "gradient.radius"),
    (["alphas=[1]", "cost={metric: params, target: 1.0e+6, window: 1.0e+5}"],
     "gradient.penalty 'window' on cost.metric 'params' needs predictor.aux_target 'params'"),
    (["predictor.cv_folds=1"], "predictor.cv_folds must be an integer in [2, 30]"),
    (["predictor.members=0"], "predictor.members must be an integer in [1, 32], got 0"),
    (["predictor.members=many"], "predictor.members must be an integer in [1, 32], got 'many'"),
    (["shards=0"], "shards must be an integer in [1, 1000]"),
    (["bogus=1"], "unknown key 'bogus'"),
    (["predictor.layers=3"], "unknown key predictor.layers"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD, ids=[b[0][0] for b in BAD])
def test_bad_values_are_one_line_errors_naming_them(overrides: list[str], message: str) -> None:
    with pytest.raises(PredNASError) as info:
        load_config(None, overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("text", "message"), [
    ("n: [30\n", "malformed config"),
    ("- just\n- a list\n", "must be a mapping of settings"),
    ("n: 30\n  k: 40\n", "malformed config"),
])
def test_malformed_yaml_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PredNASError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(PredNASError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_unknown_evaluator_data_is_caught_before_any_step() -> None:
    spec = load_config(None, ["evaluator.dataset=svhn"])
    with pytest.raises(PredNASError, match="unknown NB201 dataset 'svhn'"):
        spec.check_evaluators()


@pytest.mark.parametrize("name", evaluator_names())
def test_every_registered_evaluator_names_its_options(name: str) -> None:
    entry = evaluator_entry(name)
    with pytest.raises(PredNASError, match=f"unknown option 'no_such_option' for evaluator '{name}'"):
        make_evaluator({"name": name, "no_such_option": 1})
    assert entry.target.count(":") == 1


def test_registration_is_one_line_and_unknown_names_list_the_known() -> None:
    register_evaluator("nb201-table-test", "prednas.evaluators.nb201_table:NB201TableEvaluator", spaces=("nb201",),
                       options=("dataset",))
    try:
        evaluator = make_evaluator({"name": "nb201-table-test", "dataset": "cifar10"})
        assert evaluator.config()["dataset"] == "cifar10"
        with pytest.raises(PredNASError, match=r"expected one of: .*nb201-table-test"):
            make_evaluator({"name": "nope"})
    finally:
        from prednas.evaluators import registry

        registry._ENTRIES.pop("nb201-table-test")


@pytest.mark.parametrize("cron", ["0 0 3 * * *", "0 */15 * * * MON-FRI", "30 0 0 1 JAN ?", "0 0/5 9-17 * * 1-5"])
def test_six_field_cron_is_accepted(cron: str) -> None:
    assert check_cron(cron) == cron


@pytest.mark.parametrize(("cron", "field"), [
    ("0 3 * * *", "has 5 fields"), ("60 0 3 * * *", "bad second field"), ("0 0 24 * * *", "bad hour field"),
    ("0 0 3 * * SAT-MON", "bad day of week"), ("0 0 3 0 * *", "bad day of month"), ("0 0 3 * * */0", "bad day of week"),
])
def test_bad_cron_is_one_line(cron: str, field: str) -> None:
    with pytest.raises(PredNASError, match=field):
        check_cron(cron)


def cli(*args: str, cwd: Path) -> Any:
    """Invoke the ``prednas`` command in this process (``main`` exits; CliRunner catches it)."""
    from click.testing import CliRunner

    from prednas.cli import main

    with contextlib.chdir(cwd):
        return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--space", "nas101"], "unknown search space 'nas101'"),
    (["run", "--n", "0"], "n must be an integer"),
    (["run", "--k", "20000"], "exceeds the 15625 architectures"),
    (["run", "--set", "n"], "bad override 'n'"),
    (["run", "--config", "/nonexistent/prednas.yaml"], "not found"),
    (["run", "--tracking-uri", "http://127.0.0.1:9"], "MLflow tracking server http://127.0.0.1:9 unreachable"),
    (["submit", "--host", "http://127.0.0.1:9"], "Kubeflow Pipelines at http://127.0.0.1:9 unreachable"),
    (["submit", "--host", "localhost:8080"], "bad Kubeflow Pipelines host"),
    (["schedule", "--host", "http://127.0.0.1:9", "--cron", "0 3 * * *"], "KFP expects 6"),
    (["schedule", "--host", "http://127.0.0.1:9", "--cron", "0 0 3 * * *", "--max-concurrency", "0"],
     "max_concurrency must be in [1, 10]"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = cli(*args, cwd=tmp_path)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("error: "), result.stderr


def test_cli_unreachable_s3_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
           "AWS_MAX_ATTEMPTS": "1", "AWS_DEFAULT_REGION": "us-east-1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = cli("run", "--artifact-store", "s3://prednas-bucket/runs", cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "127.0.0.1:9" in lines[0], result.stderr


def test_ui_without_local_runs_is_one_line(tmp_path: Path) -> None:
    result = cli("ui", "--root", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.exit_code == 2 and "no local runs" in result.stderr


def test_installed_command_prints_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"n": 30}) + "k: [\n")
    result = subprocess.run([str(Path(sys.executable).with_name("prednas")), "run", "--config", "bad.yaml"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120, env=dict(os.environ))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "malformed config" in result.stderr
