"""Size-space commands: ``prednas cost``, ``prednas presets``, ``prednas search`` and their benchmarks.

``--arch`` takes a preset name, a JSON object (the space's JSON form) or a path to a file
holding one. Costs follow the names' units: ``macs`` are multiply-adds (RegNet's "MF"),
``flops`` are 2 x MACs (YOLOX's "GFLOPs"), ``params`` a count; RegNetX-600MF is therefore
``--target-macs 600M`` or ``--target-flops 1.2G``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from prednas.errors import PredNASError

SIZE_SPACES = ("anynet", "yolox", "natssss")
TARGETS = (("target_macs", "macs"), ("target_flops", "flops"), ("target_params", "params"),
           ("target_latency", "latency_ms"))


def register(main: click.Group, bench: click.Group) -> None:
    """Add the size-space commands and benchmarks."""
    from prednas.cli.spaces_bench import BENCHES

    for command in (cost, presets, search):
        main.add_command(command)
    for command in BENCHES:
        bench.add_command(command)


def make_space(name: str, input_size: int | None = None, num_classes: int | None = None) -> Any:
    """A size space configured for an input size and class count (defaults: the space's)."""
    if name == "anynet":
        from prednas.spaces.anynet import DEFAULT_INPUT_SIZE, AnyNetSpace

        return AnyNetSpace(num_classes=num_classes or 1000, input_size=input_size or DEFAULT_INPUT_SIZE)
    if name == "natssss":
        from prednas.spaces.natssss import NatsSssSpace

        return NatsSssSpace(num_classes=num_classes or 100, input_size=input_size or 32)
    from prednas.spaces.yolox import DEFAULT_INPUT_SIZE, YOLOXSpace

    return YOLOXSpace(num_classes=num_classes or 80, input_size=input_size or DEFAULT_INPUT_SIZE)


def preset_table(name: str) -> dict[str, dict[str, Any]]:
    """The preset table of a size space."""
    from importlib import import_module

    return getattr(import_module(f"prednas.spaces.{name}"), "PRESETS", {})


def resolve_arch(space: Any, text: str) -> tuple[Any, int | None]:
    """``(arch, preset input size or None)`` from a preset name, JSON text or a JSON file."""
    table = preset_table(space.name)
    if text in table:
        return space.preset(text), table[text].get("input_size")
    source = text
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise PredNASError(f"--arch {text!r}: expected a {space.name} preset ({', '.join(table)}), "
                               "a JSON object or a JSON file")
        try:
            source = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise PredNASError(f"--arch {text!r}: cannot read it as a JSON file ({exc})") from None
    try:
        data = json.loads(source)
    except ValueError as exc:
        raise PredNASError(f"--arch is not valid JSON: {exc}") from None
    return space.from_dict(data), None


def _human(value: float, unit: str = "") -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if value >= scale:
            return f"{value / scale:.3f} {suffix}{unit}"
    return f"{value:g} {unit}".strip()


@click.command()
@click.option("--space", "space_name", type=click.Choice(SIZE_SPACES), required=True, help="Size space.")
@click.option("--arch", required=True, help="Preset name, JSON object or JSON file.")
@click.option("--input-size", type=int, default=None,
              help="Square input side in pixels [default: the preset's, else 224 (anynet), 640 (yolox), 32 (natssss)].")
@click.option("--num-classes", type=int, default=None,
              help="Classes [default: 1000 (anynet), 80 (yolox), 100 (natssss)].")
@click.option("--json", "as_json", is_flag=True, help='Print one JSON object {"macs", "flops", "params"}.')
def cost(space_name: str, arch: str, input_size: int | None, num_classes: int | None, as_json: bool) -> None:
    """Analytic MACs, FLOPs (2 x MACs) and parameters of one architecture."""
    probe = make_space(space_name)
    parsed, preset_size = resolve_arch(probe, arch)
    space = make_space(space_name, input_size or preset_size, num_classes)
    figures = {k: int(v) for k, v in space.cost(parsed).items()}
    if as_json:
        click.echo(json.dumps({"macs": figures["macs"], "flops": figures["flops"], "params": figures["params"]}))
        return
    click.echo(f"{space_name} at {space.input_size} px, {space.num_classes} classes")
    for key in ("macs", "flops", "params"):
        click.echo(f"{key:<7} {figures[key]:>18,}  ({_human(figures[key])})")


@click.command()
@click.option("--space", "space_name", type=click.Choice(SIZE_SPACES), required=True, help="Size space.")
def presets(space_name: str) -> None:
    """List a space's presets with their cost and published figures."""
    from rich.console import Console
    from rich.table import Table

    if not preset_table(space_name):
        raise PredNASError(f"--space {space_name} has no presets; expected one of: "
                           f"{', '.join(s for s in SIZE_SPACES if preset_table(s))}")
    table = Table(title=f"{space_name} presets (FLOPs = 2 x MACs)")
    for column in ("name", "px", "MACs", "FLOPs", "params", "published", "in range", "source"):
        table.add_column(column, justify="left" if column in ("name", "source") else "right", no_wrap=True)
    for name, p in preset_table(space_name).items():
        space = make_space(space_name, p.get("input_size"))
        arch = space.preset(name)
        c = space.cost(arch)
        published = f"{p['gmacs']:g} GMACs" if "gmacs" in p else f"{p['gflops']:g} GFLOPs {p['mparams']:g} M"
        table.add_row(name, str(space.input_size), _human(c["macs"]), _human(c["flops"]), _human(c["params"]),
                      published, "yes" if _in_range(space, arch) else "no", p["source"])
    Console().print(table)


def _in_range(space: Any, arch: Any) -> bool:
    try:
        space.check_range(arch)
    except PredNASError:
        return False
    return True


def _window(options: dict[str, str | None], delta: str) -> tuple[str, float, float]:
    from prednas.search.constrained import parse_delta, parse_quantity

    given = [(option, metric) for option, metric in TARGETS if options[option] is not None]
    if len(given) != 1:
        raise PredNASError("give exactly one of --target-macs, --target-flops, --target-params, --target-latency")
    option, metric = given[0]
    target = parse_quantity(options[option], "--" + option.replace("_", "-"))
    return metric, target, parse_delta(delta, target)


def _alphas(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(a) for a in text.split(",") if a.strip())
    except ValueError:
        raise PredNASError(f"--alphas {text!r}: expected comma-separated numbers like 0,0.1,0.5,1") from None


def size_config(starts: int | None, steps: int, radius: float, alphas: str | None, penalty: str) -> Any:
    """The search's ``ConstrainedConfig`` from the CLI options.

    Unset ``alphas`` follow the penalty (``WINDOW_ALPHAS`` or ``PAPER_ALPHAS``); unset ``starts``
    share ``SIZE_GRADIENT.starts`` among the alphas, so the default budget does not grow with the grid.
    """
    from dataclasses import replace

    from prednas.search.constrained import PAPER_ALPHAS, SIZE_GRADIENT, WINDOW_ALPHAS, ConstrainedConfig

    grid = _alphas(alphas) if alphas is not None else (WINDOW_ALPHAS if penalty == "window" else PAPER_ALPHAS)
    if not grid:
        raise PredNASError(f"--alphas {alphas!r}: expected comma-separated numbers like 0,0.1,0.5,1")
    starts = starts or max(1, SIZE_GRADIENT.starts // len(grid))
    return ConstrainedConfig(replace(SIZE_GRADIENT, starts=starts, steps=steps, radius=radius or None), grid, penalty)


@click.command()
@click.option("--space", "space_name", type=click.Choice(SIZE_SPACES), required=True, help="Size space.")
@click.option("--triplets", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help='JSON lines: {"arch": {...}, "accuracy": float, "cost": {"latency_ms": ...}} per line.')
@click.option("--target-macs", default=None, help="MACs target, e.g. 600M (RegNetX-600MF).")
@click.option("--target-flops", default=None, help="FLOPs (2 x MACs) target, e.g. 26.8G (YOLOX-S).")
@click.option("--target-params", default=None, help="Parameter-count target, e.g. 9M.")
@click.option("--target-latency", default=None, help="Latency target in ms (needs latency_ms in the triplets).")
@click.option("--delta", default="5%", show_default=True, help="Half-width of the window: a percentage or a value.")
@click.option("-k", "--top-k", type=click.IntRange(min=1), default=30, show_default=True, help="Rows to print.")
@click.option("--aux", "aux_metric", type=click.Choice(("macs", "flops", "params", "latency_ms")), default=None,
              help="Auxiliary predictor's metric [default: the target's].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--starts", type=click.IntRange(min=1), default=None,
              help="T_max starts per alpha  [default: 7000 / number of alphas].")
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True, help="t_max steps.")
@click.option("--radius", type=click.FloatRange(min=0), default=0.1, show_default=True,
              help="Trust region: how far (normalised encoding) an iterate may move from its start; 0: no limit.")
@click.option("--alphas", default=None,
              help="Alpha grid  [default: 1 for penalty window, 0,0.05,0.1,0.2,0.5,1,2 for linear].")
@click.option("--penalty", type=click.Choice(("window", "linear")), default="window", show_default=True,
              help="Cost term alpha weighs: distance outside the window, or the paper's predicted cost.")
@click.option("--epochs", type=click.IntRange(min=1), default=300, show_default=True, help="Predictor epochs.")
@click.option("--members", type=click.IntRange(min=1), default=None,
              help="MLPs in the main predictor's ensemble, fitted from seeds seed, seed+1000, ...  [default: 3].")
@click.option("--aux-samples", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Random architectures added to an analytic auxiliary predictor's training set.")
@click.option("--input-size", type=int, default=None, help="Input side for the cost [default: 224 / 640 / 32].")
@click.option("--num-classes", type=int, default=None, help="Classes for the cost [default: 1000 / 80 / 100].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the whole pool as JSON.")
def search(space_name: str, triplets: Path, delta: str, top_k: int, aux_metric: str | None, seed: int,
           starts: int | None, steps: int, radius: float, alphas: str | None, penalty: str, epochs: int,
           members: int | None, aux_samples: int, input_size: int | None,
           num_classes: int | None, json_path: Path | None, **targets: str | None) -> None:
    """Algorithm 1 under a cost target: fit the MLPs on the triplets, search an alpha grid, print the pool."""
    import numpy as np

    from prednas.predictors.fit import FitConfig
    from prednas.search.constrained import SIZE_MEMBERS, constrained_search, fit_predictors, load_triplets
    from prednas.search.gradient import CostWindow

    metric, target, half = _window(targets, delta)
    space = make_space(space_name, input_size, num_classes)
    records = load_triplets(triplets, space)
    aux_metric = aux_metric or metric
    main, aux = fit_predictors(space, records, aux_metric=aux_metric, seed=seed, config=FitConfig(epochs=epochs),
                               aux_samples=aux_samples, members=members or SIZE_MEMBERS)
    config = size_config(starts, steps, radius, alphas, penalty)
    window = CostWindow(metric, target, half)
    pool = constrained_search(space, main, aux, window, rng=np.random.default_rng(seed), config=config,
                              aux_metric=aux_metric)
    rows = [{"rank": i + 1, "predicted": float(s), "cost": c, "arch": space.to_dict(a)}
            for i, (a, s, c) in enumerate(zip(pool.archs, pool.scores, pool.costs, strict=True))]
    click.echo(f"{len(pool)} architectures with {metric} in [{_human(target - half)}, {_human(target + half)}] "
               f"({int(pool.stats['visited'])} visited, {config.evaluations} predictor evaluations, "
               f"{len(records)} triplets)")
    for row in rows[:top_k]:
        c = row["cost"]
        click.echo(f"#{row['rank']:<3} predicted {row['predicted']:8.3f}  MACs {_human(c['macs']):>10}  "
                   f"FLOPs {_human(c['flops']):>10}  params {_human(c['params']):>10}  "
                   f"{json.dumps(row['arch'], separators=(',', ':'))}")
    if json_path is not None:
        if not json_path.parent.exists():
            raise PredNASError(f"cannot write {json_path}: folder {json_path.parent} does not exist")
        report = {"space": space_name, "window": {"metric": metric, "target": target, "delta": half},
                  "aux": aux_metric, "seed": seed, "stats": pool.stats, "pool": rows}
        json_path.write_text(json.dumps(report, indent=1) + "\n")
