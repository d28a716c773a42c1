"""``prednas run``: one PredNAS search on NB201 with the paper's N and K."""

from __future__ import annotations

import click


def register(main: click.Group, bench: click.Group) -> None:
    """Add the run command."""
    main.add_command(run)


@click.command()
@click.option("--dataset", default="cifar100", show_default=True)
@click.option("--n", "n", type=int, default=30, show_default=True)
@click.option("--k", "k", type=int, default=40, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--method", default="prednas", show_default=True)
def run(dataset: str, n: int, k: int, seed: int, method: str) -> None:
    """Search NB201 in-process and print the best cell found."""
    from prednas.evaluators.nb201_table import NB201TableEvaluator
    from prednas.search.methods import SearchConfig, run_search

    evaluator = NB201TableEvaluator(dataset)
    result = run_search(method, evaluator.space, evaluator, seed=seed, config=SearchConfig(n=n, k=k))
    best = result.best
    click.echo(f"best cell   {best.arch}")
    click.echo(f"valid acc   {best.evaluation.accuracy:.2f}")
    click.echo(f"test acc    {best.evaluation.report['test_accuracy']:.2f}")
    click.echo(f"queries     {evaluator.queries}")
