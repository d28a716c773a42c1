"""The pipeline-overhead benchmark's pieces (the full run is a command, not a test)."""

from __future__ import annotations

import pytest

from prednas.bench.pipeline import critical_path, print_overhead, smallest
from prednas.pipeline.config import load_config


def test_smallest_search_keeps_the_dag_and_drops_the_work() -> None:
    spec = load_config(None, ["alphas=[0, 1]", "cost={metric: flops, target: 2.0e8, window: 1.0e7}"])
    small = smallest(spec)
    assert (small.n, small.k, small.rounds, small.shards, small.parallelism) == (2, 4, 4, spec.shards,
                                                                                  spec.parallelism)
    assert critical_path(small) == critical_path(spec) == 16
    assert small.predictor["epochs"] == 1 and small.predictor["cv_folds"] == 0 and small.gradient["steps"] == 1
    assert small.evaluator == spec.evaluator and small.alphas == (0.0,) and small.cost is None


def test_report_states_the_bound_and_whether_it_holds(capsys: pytest.CaptureFixture[str]) -> None:
    figures = {"n": 30, "k": 40, "rounds": 4, "seed": 0, "shards": 2, "parallelism": 2,
               "in_process_s": 20.0, "pipeline_s": 70.0,
               "smallest_in_process_s": 3.0, "smallest_pipeline_s": 38.0, "fixed_startup_s": 35.0,
               "step_start_s": 4.0, "critical_path_steps": 7, "bound_s": 75.0, "ratio": 3.5,
               "ratio_after_startup": 1.75, "same_result": True}
    print_overhead(figures)
    out = capsys.readouterr().out
    assert "2 x in-process + fixed startup = 75.0 s: yes" in out and "same best architecture in both: yes" in out
