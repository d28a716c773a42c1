"""The steps a search's pipeline runs, in order, with their tasks and architectures.

``prednas run --dry-run`` prints this plan; the live display counts its tasks and
architectures. It follows the DAG of ``pipelines/prednas_pipeline.py`` under the step
names the pipeline displays: sample N, the sample shards, R rounds of fit, propose and
the round's shards, select, the optional final stage, and the exit handler that closes
the MLflow run. A stage of ``m`` architectures runs ``min(shards, m)`` evaluate tasks
(``prednas.pipeline.exchange.make_shards``).
"""

from __future__ import annotations

from dataclasses import dataclass

from prednas.pipeline.config import SearchSpec


@dataclass(frozen=True)
class PlannedStep:
    """One step of the DAG: its display name, pipeline tasks (shards) and architectures measured."""

    name: str
    tasks: int = 1
    archs: int = 0


def plan(spec: SearchSpec) -> list[PlannedStep]:
    """The steps of one run of ``spec``'s pipeline, in the order they run."""
    from prednas.pipeline.steps import round_sizes

    def shards(count: int) -> int:
        return max(1, min(spec.shards, count))

    steps = [PlannedStep(f"sample N (n={spec.n})"), PlannedStep("evaluate sample shards", shards(spec.n), spec.n)]
    for r, size in enumerate(round_sizes(spec.k, spec.rounds), 1):
        steps += [PlannedStep(f"fit predictors (round {r}/{spec.rounds})"),
                  PlannedStep(f"propose (round {r}/{spec.rounds})"),
                  PlannedStep(f"evaluate round {r} shards", shards(size), size)]
    steps.append(PlannedStep("select best"))
    if spec.final_m:
        steps += [PlannedStep("evaluate final shards", shards(spec.final_m), spec.final_m),
                  PlannedStep("select best by final result")]
    return [*steps, PlannedStep("close MLflow run")]


def architectures(spec: SearchSpec) -> int:
    """Architectures a run measures: N + K, and the final stage's m."""
    return sum(step.archs for step in plan(spec))


def describe(spec: SearchSpec) -> list[str]:
    """The plan as numbered lines: ``3. fit predictors (round 1/4)``, shards and architectures where they apply."""
    width = len(str(len(plan(spec))))
    lines = []
    for i, step in enumerate(plan(spec), 1):
        detail = f"  {step.tasks} shard{'s' if step.tasks > 1 else ''}, {step.archs} architectures" if step.archs \
            else ""
        lines.append(f"{i:>{width}}. {step.name}{detail}")
    return lines


def task_title(task: str, rounds: int) -> str:
    """The plan's name of a pipeline task as kfp.local names it (the component, ``-2`` from its second use on)."""
    base, _, suffix = task.rpartition("-")
    if not suffix.isdigit():
        base, suffix = task, "1"
    use = int(suffix)
    if base == "evaluate":
        return "evaluate sample shards" if use == 1 else (
            f"evaluate round {use - 1} shards" if use - 1 <= rounds else "evaluate final shards")
    titles = {"sample": "sample N", "fit-predictors": f"fit predictors (round {use}/{rounds})",
              "propose": f"propose (round {use}/{rounds})", "select": "select best",
              "select-final": "select best by final result", "close-run": "close MLflow run"}
    return titles.get(base, task)
