"""``prednas bench natssss`` and ``prednas bench nb201-curve``: JSON schemas, options and bad input."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from prednas.bench.natssss_bench import METHODS, WindowJob, gradient_evaluations, window_spec
from prednas.cli import main

FAST = ["--set", "predictor.epochs=10", "--set", "gradient.starts=16", "--set", "gradient.steps=3"]
SMALL = ["--n", "6", "--k", "6", "--repeats", "2", "--workers", "1", *FAST]


def _invoke(*args):
    return CliRunner().invoke(main, ["bench", *args], catch_exceptions=False)


def test_natssss_json_schema_and_every_answer_in_the_window(tmp_path):
    path = tmp_path / "n.json"
    result = _invoke("natssss", "--dataset", "cifar10", "--target-quantile", "0.25", *SMALL, "--seed", "3",
                     "--json", str(path))
    assert result.exit_code == 0, result.output
    report = json.loads(path.read_text())
    assert set(report) >= {"dataset", "n", "k", "repeats", "seed", "signal", "results", "wall_seconds",
                           "target", "window", "optimum"}
    assert (report["dataset"], report["n"], report["k"], report["repeats"], report["window"]) == (
        "cifar10", 6, 6, 2, 0.05)
    assert report["target_quantile"] == 0.25 and report["signal"] == "test"
    assert list(report["results"]) == list(METHODS)
    for r in report["results"].values():
        assert {"mean", "std", "runs", "queries", "archs", "run_seeds", "in_window"} <= set(r)
        assert r["in_window"] == [True, True] and r["run_seeds"] == [3000, 3001]
        assert all(q <= 12 for q in r["queries"]) and all(t <= report["optimum"] for t in r["runs"])
    evaluations = report["results"]["predictor-random"]["stats"]["evaluations"]
    assert evaluations == 4 * 16 * 3  # rounds x starts x steps of prednas-gradient
    assert "gap to optimum" in result.output and "vs prednas" in result.output


def test_target_flops_and_repeatable_baselines(tmp_path):
    runs = []
    for name in ("a.json", "b.json"):
        path = tmp_path / name
        result = _invoke("natssss", "--target-flops", "1.5e8", "--window", "0.1", "--methods", "rea,random",
                         *SMALL, "--json", str(path))
        assert result.exit_code == 0, result.output
        assert "vs rea (paired" in result.output  # without prednas, the first method is the reference
        runs.append(json.loads(path.read_text()))
    assert runs[0]["target"] == 1.5e8 and runs[0]["target_quantile"] is None and runs[0]["delta"] == 1.5e7
    assert runs[0]["results"]["rea"]["archs"] == runs[1]["results"]["rea"]["archs"]


def test_predictor_random_matches_the_evaluations_the_search_step_records(monkeypatch):
    from prednas.bench.runner import run_pipeline
    from prednas.pipeline import steps

    recorded = []
    search = steps.search

    def watch(*args, **kwargs):
        state, shards = search(*args, **kwargs)
        recorded.append(state.stats[-1]["evaluations"])
        return state, shards

    monkeypatch.setattr(steps, "search", watch)
    job = WindowJob("prednas-gradient", 0, "cifar100", 0, 6, 4, 1.8e8, 0.05,
                    ("predictor.epochs=5", "gradient.starts=10", "gradient.steps=2", "rounds=2"))
    spec = window_spec(job, "prednas-gradient", "memory://evaluations")
    run_pipeline(spec, "evaluations")
    assert sum(recorded) == gradient_evaluations(spec) == 2 * 10 * 2


@pytest.mark.parametrize(("args", "needle"), [
    (["--target-quantile", "0"], "--target-quantile 0.0: expected a number strictly between 0 and 1"),
    (["--target-quantile", "1.5"], "--target-quantile 1.5: expected a number strictly between 0 and 1"),
    (["--target-quantile", "0.5", "--target-flops", "1e8"], "both given"),
    (["--target-flops", "-5"], "--target-flops -5.0: expected a positive number"),
    (["--window", "0"], "--window 0.0: expected a relative half-width strictly between 0 and 1"),
    (["--window", "-0.1"], "--window -0.1: expected a relative half-width"),
    (["--target-flops", "1e3", "--window", "0.01"], "holds no cifar100 architecture"),
    (["--window", "0.0005"], "exceeds the"),
    (["--dataset", "mnist"], "--dataset 'mnist': expected one of: cifar10, cifar100, imagenet16_120"),
    (["--methods", "prednas,bohb"], "--methods: unknown method 'bohb'"),
    (["--methods", ","], "--methods is empty"),
    (["--n", "1"], "--n 1: expected an integer of at least 2"),
    (["--repeats", "0"], "repeats must be a positive integer"),
    (["--set", "nope=1"], "unknown key 'nope'"),
])
def test_natssss_bad_input_is_one_line_exit_2(args, needle):
    result = CliRunner().invoke(main, ["bench", "natssss", *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


def test_curve_table_json_and_plot(tmp_path):
    path, plot = tmp_path / "c.json", tmp_path / "c.png"
    result = _invoke("nb201-curve", "--splits", "5+10,5+5", "--repeats", "2", "--methods", "random,rea",
                     "--workers", "1", "--json", str(path), "--plot", str(plot))
    assert result.exit_code == 0, result.output
    report = json.loads(path.read_text())
    assert report["splits"] == [[5, 5], [5, 10]] and report["methods"] == ["random", "rea"]
    assert [p["n"] + p["k"] for p in report["points"]] == [10, 15]
    assert all(set(p["results"]) == {"random", "rea"} for p in report["points"])
    assert report["paper"]["prednas"][3] == [70, 73.09]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "10 (5+5)" in result.output and "prednas (paper)" in result.output


def test_curve_default_splits_are_the_library_default():
    from prednas.bench.curve import DEFAULT_SPLITS, parse_splits
    from prednas.cli.nb201 import bench_curve

    default = next(p.default for p in bench_curve.params if p.name == "splits")
    assert parse_splits(default) == list(DEFAULT_SPLITS)
    assert [n + k for n, k in DEFAULT_SPLITS] == [20, 30, 50, 70]


@pytest.mark.parametrize(("args", "needle"), [
    (["--splits", "10+"], "--splits item '10+': expected N+K"),
    (["--splits", "1+5"], "--splits item '1+5'"),
    (["--splits", ""], "--splits '': expected comma-separated"),
    (["--dataset", "mnist"], "--dataset 'mnist'"),
    (["--methods", "bohb"], "unknown method 'bohb'"),
])
def test_curve_bad_input_is_one_line_exit_2(args, needle):
    result = CliRunner().invoke(main, ["bench", "nb201-curve", *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


def test_size_space_commands_know_natssss():
    from prednas.cli.spaces import SIZE_SPACES
    from prednas.spaces.natssss import natssss_cost, parse_arch_string

    assert "natssss" in SIZE_SPACES
    result = CliRunner().invoke(main, ["cost", "--space", "natssss", "--arch", '{"channels": [8, 16, 32, 48, 64]}',
                                       "--json"])
    assert result.exit_code == 0, result.output
    expected = natssss_cost(parse_arch_string("8:16:32:48:64"), 32, 100)
    assert json.loads(result.output) == {k: int(expected[k]) for k in ("macs", "flops", "params")}
    result = CliRunner().invoke(main, ["presets", "--space", "natssss"])
    assert result.exit_code == 2 and "--space natssss has no presets" in result.stderr


def test_refine_spends_the_last_round_next_to_the_best_measured(monkeypatch):
    """``refine``: the last round's first proposals differ from the best measured architecture in one layer."""
    from prednas.bench.runner import run_pipeline
    from prednas.pipeline import report, steps

    seen = []
    search = steps.search

    def watch(context, main, aux, state, rounds=1):
        best = report.best_of(context.spec, state.known)
        new_state, shards = search(context, main, aux, state, rounds)
        picks = [p["arch"]["channels"] for p in new_state.picks if p["round"] == state.round]
        seen.append((best.arch["channels"], picks, new_state.stats[-1]["refined"]))
        return new_state, shards

    monkeypatch.setattr(steps, "search", watch)
    job = WindowJob("prednas", 0, "cifar100", 0, 6, 6, 1.8e8, 0.05, ("predictor.epochs=5", "rounds=2", "refine=2"))
    run_pipeline(window_spec(job, "prednas", "memory://refine"), "refine")
    (_, _, refined_first), (best, last, refined_last) = seen
    assert refined_first == 0 and refined_last == 2 and len(last) == 3
    assert [sum(a != b for a, b in zip(arch, best, strict=True)) for arch in last[:2]] == [1, 1]
