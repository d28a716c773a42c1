"""The ``prednas bench nb201`` command: its JSON interface, determinism and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from prednas.cli import main

SMALL = [
    "--n",
    "8",
    "--k",
    "6",
    "--repeats",
    "2",
    "--workers",
    "1",
    "--set",
    "predictor.epochs=20",
    "--set",
    "gradient.steps=10",
    "--set",
    "gradient.starts=8",
    "--set",
    "rounds=2",
    "--set",
    "pretrain=300",
]


def _run(tmp_path, name, *extra):
    path = tmp_path / name
    result = CliRunner().invoke(
        main, ["bench", "nb201", "--dataset", "cifar10", *SMALL, *extra, "--json", str(path)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return json.loads(path.read_text()), result.output


def test_json_interface_and_determinism(tmp_path):
    first, out = _run(tmp_path, "a.json", "--seed", "7")
    second, _ = _run(tmp_path, "b.json", "--seed", "7")
    assert set(first) >= {"dataset", "n", "k", "repeats", "seed", "signal", "results", "wall_seconds"}
    assert (first["dataset"], first["n"], first["k"], first["repeats"], first["seed"], first["signal"]) == (
        "cifar10",
        8,
        6,
        2,
        7,
        "valid",
    )
    assert set(first["results"]) == {"prednas", "prednas-paper", "random", "rea", "predictor-random"}
    for method, r in first["results"].items():
        assert {"mean", "std", "runs", "queries"} <= set(r)
        assert len(r["runs"]) == 2 and all(q <= 14 for q in r["queries"])
        assert r["runs"] == second["results"][method]["runs"]
        assert r["run_seeds"] == [7000, 7001]
    assert "PredNAS (paper)" in out


def test_bench_repeat_is_prednas_run_in_process(tmp_path):
    """Repeat r of the bench chooses what `prednas run --in-process --seed 1000*seed+r` chooses on an empty store."""
    report, _ = _run(tmp_path, "r.json", "--seed", "0", "--methods", "prednas")
    bench = report["results"]["prednas"]
    for run_seed, arch in zip(bench["run_seeds"], bench["archs"], strict=True):
        root = tmp_path / f"run-{run_seed}"
        args = ["run", "--in-process", "--root", str(root), "--json", str(root / "report.json"),
                "--seed", str(run_seed), "--n", "8", "--k", "6", "--set", "evaluator.dataset=cifar10",
                "--set", "tracking_uri=none",
                *(arg for item in SMALL[SMALL.index("--set"):][1::2] for arg in ("--set", item))]
        root.mkdir()
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert json.loads((root / "report.json").read_text())["best"]["arch"]["arch"] == arch


def test_test_signal(tmp_path):
    report, _ = _run(tmp_path, "t.json", "--signal", "test", "--methods", "random")
    assert report["signal"] == "test"
    assert report["results"]["random"]["signal_runs"] == report["results"]["random"]["runs"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--dataset", "mnist"], "unknown NB201 dataset 'mnist'"),
        (["--methods", "prednas,bohb"], "unknown method 'bohb'"),
        (["--n", "0"], "n must be a positive integer"),
        (["--k", "-3"], "k must be a positive integer"),
        (["--n", "15000", "--k", "700"], "exceeds the 15625"),
        (["--repeats", "0"], "repeats must be a positive integer"),
        (["--signal", "train"], "unknown signal"),
        (["--set", "nope=1"], "unknown key 'nope'"),
        (["--set", "rounds=50"], "rounds must be an integer in [1, 40]"),
        (["--n", "ten"], "not a valid integer"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, needle):
    result = CliRunner().invoke(main, ["bench", "nb201", *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


def test_bad_input_from_a_real_process():
    proc = subprocess.run(
        [sys.executable, "-m", "prednas.cli", "bench", "nb201", "--dataset", "mnist"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: unknown NB201 dataset 'mnist'; expected one of: cifar10, cifar100, imagenet16_120"
    )
