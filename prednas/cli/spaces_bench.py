"""``prednas bench regnetx | yolox | cost-throughput | size-search``: the size-space figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from prednas.errors import PredNASError

_JSON = click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Also write the figures as JSON.")


def _write(json_path: Path | None, report: Any) -> None:
    if json_path is None:
        return
    if not json_path.parent.exists():
        raise PredNASError(f"cannot write {json_path}: folder {json_path.parent} does not exist")
    json_path.write_text(json.dumps(report, indent=1) + "\n")


def _table(title: str, columns: list[str]) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right")
    return table


@click.command("regnetx")
@_JSON
def bench_regnetx(json_path: Path | None) -> None:
    """torchvision RegNetX vs our AnyNet build: params, analytic vs counted MACs vs published GFLOPS."""
    from rich.console import Console

    from prednas.bench.spaces import regnetx_table

    rows = regnetx_table()
    table = _table("RegNetX at 224 px, 1000 classes (MACs = multiply-adds, torchvision's GFLOPS)",
                   ["model", "params (ours)", "params (torchvision)", "equal", "analytic GMACs", "counted GMACs",
                    "published", "analytic / published"])
    for r in rows:
        table.add_row(r["model"], f"{r['params']:,}", f"{r['torchvision_params']:,}",
                      "yes" if r["params"] == r["torchvision_params"] == r["counted_params"] else "NO",
                      f"{r['macs'] / 1e9:.4f}", f"{r['counted_macs'] / 1e9:.4f}", f"{r['published_gmacs']:.3f}",
                      f"{r['deviation']:+.3%}")
    Console().print(table)
    _write(json_path, rows)


@click.command("yolox")
@_JSON
def bench_yolox(json_path: Path | None) -> None:
    """YOLOX-space presets: params and GFLOPs (2 x MACs), analytic and counted, vs published."""
    from rich.console import Console

    from prednas.bench.spaces import yolox_table

    rows = yolox_table()
    table = _table("YOLOX space presets, 80 classes (GFLOPs = 2 x MACs, as YOLOX counts)",
                   ["model", "px", "params M", "published M", "params dev", "GFLOPs", "counted", "published",
                    "GFLOPs dev", "source"])
    for r in rows:
        table.add_row(r["model"], str(r["input_size"]), f"{r['params'] / 1e6:.3f}", f"{r['published_mparams']:g}",
                      f"{r['params_deviation']:+.2%}", f"{r['flops'] / 1e9:.3f}", f"{r['counted_flops'] / 1e9:.3f}",
                      f"{r['published_gflops']:g}", f"{r['flops_deviation']:+.2%}", r["source"])
    Console().print(table)
    _write(json_path, rows)


@click.command("cost-throughput")
@click.option("--space", "space_name", type=click.Choice(("anynet", "yolox")), default="anynet", show_default=True)
@click.option("--archs", type=click.IntRange(min=1), default=5000, show_default=True, help="Analytic costs.")
@click.option("--counted", type=click.IntRange(min=0), default=50, show_default=True,
              help="Of those, built on the meta device and counted.")
@click.option("--cpu", type=click.IntRange(min=0), default=3, show_default=True,
              help="Of those, built on the CPU and counted on a real forward pass.")
@click.option("--seed", type=int, default=0, show_default=True)
@_JSON
def bench_cost_throughput(space_name: str, archs: int, counted: int, cpu: int, seed: int,
                          json_path: Path | None) -> None:
    """Architectures per second: analytic cost vs building and counting the network (same random archs)."""
    from rich.console import Console

    from prednas.bench.spaces import cost_throughput

    report = cost_throughput(space_name, archs=archs, counted=counted, cpu=cpu, seed=seed)
    table = _table(f"{space_name} cost throughput at {report['input_size']} px, seed {seed} (costs checked equal)",
                   ["method", "archs", "seconds", "archs / s", "analytic speed-up"])
    base = report["analytic"]["per_second"]
    for key, label in (("analytic", "analytic"), ("meta", "build on meta + flop_counter"),
                       ("cpu", "build on CPU + flop_counter forward")):
        r = report[key]
        if r["archs"]:
            table.add_row(label, str(r["archs"]), f"{r['seconds']:.2f}", f"{r['per_second']:,.2f}",
                          f"{base / r['per_second']:,.0f}x" if key != "analytic" else "1x")
    Console().print(table)
    _write(json_path, report)


@click.command("size-search")
@click.option("--targets", default="400M,1.6G,6.4G", show_default=True, help="MACs targets (RegNet regimes).")
@click.option("--delta", type=float, default=0.05, show_default=True, help="Relative window half-width.")
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True,
              help="Independent 30-sample fits; repeat r uses seed + r.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--starts", type=click.IntRange(min=1), default=None,
              help="Starts per alpha  [default: 7000 / number of alphas].")
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--radius", type=click.FloatRange(min=0), default=0.1, show_default=True,
              help="Trust region around each start in the normalised encoding; 0: no limit.")
@click.option("--alphas", default=None,
              help="Alpha grid  [default: 1 for penalty window, 0,0.05,0.1,0.2,0.5,1,2 for linear].")
@click.option("--penalty", type=click.Choice(("window", "linear")), default="window", show_default=True,
              help="Gradient search's cost term: distance outside the window, or the paper's predicted cost.")
@click.option("--epochs", type=click.IntRange(min=1), default=300, show_default=True, help="Predictor epochs.")
@click.option("--members", type=click.IntRange(min=1), default=None,
              help="MLPs in the main predictor's ensemble, which both methods use  [default: 3].")
@click.option("--aux-samples", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Random architectures (analytic MACs) added to the auxiliary predictor's training set.")
@_JSON
def bench_size_search(targets: str, delta: float, repeats: int, seed: int, starts: int | None, steps: int,
                      radius: float, alphas: str | None,
                      penalty: str, epochs: int, members: int | None, aux_samples: int, json_path: Path | None) -> None:
    """Gradient search vs random shooting on AnyNet (synthetic accuracy, 30 samples, equal predictor evaluations)."""
    import numpy as np
    from rich.console import Console

    from prednas.bench.spaces import gradient_vs_random
    from prednas.cli.spaces import size_config
    from prednas.predictors.fit import FitConfig
    from prednas.search.constrained import SIZE_MEMBERS, parse_quantity

    values = [parse_quantity(t, "--targets") for t in targets.split(",") if t.strip()]
    if not 0 < delta < 1:
        raise PredNASError(f"--delta {delta}: expected a fraction between 0 and 1")
    config = size_config(starts, steps, radius, alphas, penalty)
    members = members or SIZE_MEMBERS
    reports = [gradient_vs_random(values, seed=seed + r, delta=delta, config=config, fit=FitConfig(epochs=epochs),
                                  aux_samples=aux_samples, members=members) for r in range(repeats)]
    table = _table(f"AnyNet, synthetic accuracy, penalty {penalty}: mean true score of the top 15 in the MACs "
                   f"window (±{delta:.0%}), "
                   f"{config.evaluations:,} predictor evaluations each, {members} MLPs, "
                   f"seeds {seed}..{seed + repeats - 1}",
                   ["target MACs", "repeat", "gradient pool", "random pool", "gradient top-15", "random top-15",
                    "difference", "explored", "random top-15 (explored)", "difference (explored)"])
    for i, target in enumerate(values):
        for r, report in enumerate(reports):
            row = report["rows"][i]
            g, q, e = row["gradient"], row["random"], row["random_explored"]
            table.add_row(f"{target / 1e9:g} G", str(seed + r), str(g["pool"]), str(q["pool"]), f"{g['top_mean']:.3f}",
                          f"{q['top_mean']:.3f}", f"{g['top_mean'] - q['top_mean']:+.3f}", str(e["evaluations"]),
                          f"{e['top_mean']:.3f}", f"{g['top_mean'] - e['top_mean']:+.3f}")
    console = Console(width=200)
    console.print(table)
    for i, target in enumerate(values):
        for baseline, label in (("random", "equal predictor evaluations"),
                                ("random_explored", "equal models explored")):
            diffs = [rep["rows"][i]["gradient"]["top_mean"] - rep["rows"][i][baseline]["top_mean"] for rep in reports]
            se = float(np.std(diffs, ddof=1) / np.sqrt(len(diffs))) if len(diffs) > 1 else float("nan")
            console.print(f"{target / 1e9:g} G MACs, {label}: gradient - random = {np.mean(diffs):+.3f} ± {se:.3f} "
                          f"(SE) over {len(diffs)} repeats; gradient ahead in {sum(d > 0 for d in diffs)}")
    _write(json_path, reports)


BENCHES = (bench_regnetx, bench_yolox, bench_cost_throughput, bench_size_search)
