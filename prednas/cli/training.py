"""The proxy-training benchmarks: ``prednas bench classifier | proxy-fidelity | resume | detection-overfit |
training-throughput | shard-concurrency``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from prednas.errors import PredNASError

MINI = "../shared/data/cifar10_mini/cifar10_mini.npz"
COCO_MINI = "../shared/data/coco_mini"


def register(main: click.Group, bench: click.Group) -> None:
    """Add the proxy-training benchmarks."""
    for command in (bench_classifier, bench_fidelity, bench_resume, bench_overfit, bench_throughput,
                    bench_shard):
        bench.add_command(command)


def _threads(threads: int | None) -> None:
    import torch

    if threads is not None:
        if threads < 1:
            raise PredNASError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)


def _write(json_path: Path | None, report: dict[str, Any]) -> None:
    if json_path is None:
        return
    if not json_path.parent.exists():
        raise PredNASError(f"cannot write {json_path}: folder {json_path.parent} does not exist")
    json_path.write_text(json.dumps(report, indent=1, default=str) + "\n")


def _recipe(**values: Any) -> Any:
    from prednas.train.classification import ClassificationRecipe

    return ClassificationRecipe(**{k: v for k, v in values.items() if v is not None})


def _epoch_line(stats: dict[str, float]) -> None:
    rate = stats["images"] / stats["seconds"] if stats["seconds"] else 0.0
    click.echo(f"epoch {stats['epoch']:>3}  loss {stats['loss']:.4f}  {stats['seconds']:7.1f} s  "
               f"{rate:8.1f} images/s", err=True)


def _common(command: Any) -> Any:
    for option in reversed([
        click.option("--data", default=MINI, show_default=True, help="An .npz dataset (cifar10_mini layout)."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)."),
        click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None),
    ]):
        command = option(command)
    return command


@click.command("classifier")
@_common
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=0.1, show_default=True)
@click.option("--warmup", type=float, default=1.0, show_default=True, help="Warm-up epochs.")
@click.option("--warmup-factor", type=float, default=0.1, show_default=True, help="Warm-up start, times lr.")
@click.option("--label-smoothing", type=float, default=0.1, show_default=True)
@click.option("--weight-decay", type=float, default=5e-4, show_default=True)
@click.option("--resolution", type=int, default=None, help="Training resolution (default: the images' own).")
@click.option("--fraction", type=float, default=1.0, show_default=True)
@click.option("--augment/--no-augment", default=True, show_default=True, help="Random crop and flip.")
@click.option("--device", default="auto", show_default=True)
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the training forward (evaluator.compile).")
def bench_classifier(data: str, seed: int, threads: int | None, json_path: Path | None, epochs: int,
                     batch_size: int, lr: float, warmup: float, warmup_factor: float, label_smoothing: float,
                     weight_decay: float, resolution: int | None, fraction: float, augment: bool,
                     device: str, compile_: bool) -> None:
    """RegNetX-200MF-shaped AnyNet trained on an .npz dataset: epoch time, images/s, top-1."""
    from rich.console import Console

    from prednas.bench.training import classifier
    from prednas.train.runtime import Runtime

    _threads(threads)
    recipe = _recipe(epochs=epochs, batch_size=batch_size, lr=lr, warmup_epochs=warmup, warmup_factor=warmup_factor,
                     label_smoothing=label_smoothing, weight_decay=weight_decay, resolution=resolution, seed=seed,
                     augment=augment)
    report = classifier(data, recipe, Runtime(device=device, compile=compile_), fraction=fraction,
                        on_epoch=_epoch_line)
    console = Console()
    console.print(f"RegNetX-200MF-shaped AnyNet {report['arch']['widths']} | {report['params']:,} params | "
                  f"{report['macs'] / 1e6:.1f} MMACs at {report['resolution']} px")
    console.print(f"{report['train_images']} train / {report['val_images']} test images | {recipe.epochs} epochs | "
                  f"seed {seed} | {report['device']}{' compiled' if compile_ else ''} | {report['threads']} threads")
    console.print(f"top-1 {report['top1']:.2f} %   top-5 {report['top5']:.2f} %   epoch {report['epoch_s']:.1f} s   "
                  f"{report['images_per_s']:.0f} images/s   wall {report['wall_s']:.0f} s")
    _write(json_path, report)


@click.command("proxy-fidelity")
@_common
@click.option("--archs", type=int, default=8, show_default=True)
@click.option("--short", type=int, default=2, show_default=True, help="Epochs of the short proxy.")
@click.option("--long", "long_", type=int, default=10, show_default=True, help="Epochs of the longer training.")
@click.option("--fraction", type=float, default=0.5, show_default=True)
@click.option("--resolution", type=int, default=None)
@click.option("--max-mmacs", type=float, default=400.0, show_default=True, help="MACs cap at 224 px, millions.")
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=0.1, show_default=True)
def bench_fidelity(data: str, seed: int, threads: int | None, json_path: Path | None, archs: int, short: int,
                   long_: int, fraction: float, resolution: int | None, max_mmacs: float, batch_size: int,
                   lr: float) -> None:
    """Kendall tau between short-proxy and longer-training accuracy of seeded random AnyNets."""
    from rich.console import Console
    from rich.table import Table

    from prednas.bench.training import fidelity
    from prednas.train.runtime import Runtime

    _threads(threads)
    recipe = _recipe(batch_size=batch_size, lr=lr, warmup_epochs=1.0, label_smoothing=0.1, weight_decay=5e-4,
                     resolution=resolution, seed=seed)

    def progress(i: int, row: dict[str, Any]) -> None:
        click.echo(f"arch {i + 1}/{archs}: {short} ep {row['short']:.2f} %, {long_} ep {row['long']:.2f} %", err=True)

    report = fidelity(data, recipe, Runtime(device="cpu"), archs=archs, short=short, long=long_, fraction=fraction,
                      seed=seed, max_macs=max_mmacs * 1e6, progress=progress)
    table = Table(title=f"proxy fidelity | {archs} AnyNets (Table III, <= {max_mmacs:g} MMACs at 224 px) | "
                        f"{report['train_images']} train images | seed {seed}")
    for name in ("depths", "widths", "ratios", "groups", "MMACs", f"top-1 {short} ep", f"top-1 {long_} ep"):
        table.add_column(name, justify="right")
    for row in report["rows"]:
        a = row["arch"]
        table.add_row(str(a["depths"]), str(a["widths"]), str(a["ratios"]), str(a["groups"]),
                      f"{row['macs'] / 1e6:.1f}", f"{row['short']:.2f}", f"{row['long']:.2f}")
    console = Console()
    console.print(table)
    console.print(f"Kendall tau {report['kendall_tau']:.3f} (p = {report['p_value']:.3f})   "
                  f"Spearman {report['spearman']:.3f}")
    _write(json_path, report)


@click.command("resume")
@_common
@click.option("--epochs", type=int, default=4, show_default=True)
@click.option("--kill-after", type=int, default=2, show_default=True)
@click.option("--fraction", type=float, default=0.5, show_default=True)
def bench_resume(data: str, seed: int, threads: int | None, json_path: Path | None, epochs: int, kill_after: int,
                 fraction: float) -> None:
    """Kill a training run (SIGKILL) after an epoch, rerun it: same accuracy, less time."""
    from prednas.bench.training import resume

    _threads(threads)
    if not 1 <= kill_after < epochs:
        raise PredNASError(f"--kill-after must be in 1..{epochs - 1}, got {kill_after}")
    recipe = _recipe(epochs=epochs, batch_size=128, lr=0.1, warmup_epochs=1.0, label_smoothing=0.1,
                     weight_decay=5e-4, seed=seed)
    r = resume(data, recipe, kill_after=kill_after, fraction=fraction)
    click.echo(f"uninterrupted   {epochs} epochs  top-1 {r['straight_top1']:.2f} %  {r['straight_s']:.1f} s")
    click.echo(f"killed          after epoch {kill_after} (exit code {r['exit_code']})  {r['killed_s']:.1f} s")
    click.echo(f"rerun           resumed from epoch {r['resumed_from']}  top-1 {r['rerun_top1']:.2f} %  "
               f"{r['rerun_s']:.1f} s ({r['rerun_s'] / r['straight_s']:.2f}x the uninterrupted time)")
    click.echo(f"same final accuracy: {r['rerun_top1'] == r['straight_top1']}   "
               f"same loss history: {r['same_history']}")
    _write(json_path, r)


@click.command("detection-overfit")
@click.option("--coco", default=COCO_MINI, show_default=True, help="A folder with annotations/ and images/.")
@click.option("--images", type=int, default=8, show_default=True)
@click.option("--size", type=int, default=320, show_default=True)
@click.option("--max-epochs", type=int, default=300, show_default=True, help="Bound (one iteration per epoch).")
@click.option("--eval-every", type=int, default=25, show_default=True)
@click.option("--lr-per-image", type=float, default=0.01 / 8, show_default=True)
@click.option("--target", type=float, default=0.5, show_default=True, help="AP50 to reach.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=None)
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when visible), cpu, cuda or cuda:N.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
def bench_overfit(coco: str, images: int, size: int, max_epochs: int, eval_every: int, lr_per_image: float,
                  target: float, seed: int, threads: int | None, device: str, json_path: Path | None) -> None:
    """A small YOLOX-space detector overfits a few COCO images (train = eval) to an AP50 target."""
    from prednas.bench.training import detection_overfit
    from prednas.train.detection import DetectionRecipe
    from prednas.train.runtime import Runtime

    _threads(threads)
    recipe = DetectionRecipe(epochs=max_epochs, batch_size=images, input_size=size, lr_per_image=lr_per_image,
                             warmup_epochs=min(5.0, max_epochs), no_aug_epochs=0, mosaic=False, flip_prob=0.5,
                             eval_every=eval_every, seed=seed)

    def progress(stats: dict[str, float]) -> None:
        if "val_ap50" in stats:
            click.echo(f"epoch {stats['epoch']:>4}  loss {stats['loss']:.3f}  AP50 {stats['val_ap50']:.3f}  "
                       f"AP {stats['val_ap']:.3f}", err=True)

    runtime = Runtime(device=device)
    runtime.torch_device()  # a bad --device fails here, before the data is read
    r = detection_overfit(coco, recipe, runtime, images=images, target_ap50=target, progress=progress)
    best = r["best"]
    click.echo(f"{images} images ({r['boxes']} boxes), {size} px, {r['params']:,} params, seed {seed}, "
               f"{r['device']}, {r['threads']} threads")
    click.echo(f"AP50 >= {target} reached at iteration {r['reached_at_iteration']} (bound {r['max_iterations']}); "
               f"best AP50 {best.get('val_ap50', 0):.3f}, AP {best.get('val_ap', 0):.3f}; wall {r['wall_s']:.0f} s")
    _write(json_path, r)


@click.command("training-throughput")
@click.option("--data", default=MINI, show_default=True, help="The .npz dataset of the classifier workloads.")
@click.option("--coco", default=COCO_MINI, show_default=True, help="The COCO folder of the detector workloads.")
@click.option("--device", default="auto", show_default=True)
@click.option("--workloads", default=None, help="Comma-separated (default: all of anynet-32, anynet-224, "
                                                "yolox_s-640, yolox_tiny-416).")
@click.option("--precisions", default=None, help="Comma-separated (default: fp32,auto on CUDA; fp32 on CPU).")
@click.option("--iterations", type=int, default=None, help="Steps per timed block (default: 20 on CUDA, 3 on CPU).")
@click.option("--repeats", type=int, default=3, show_default=True, help="Timed blocks (loop: epochs); the best counts.")
@click.option("--batch-size", type=int, default=None, help="One batch size for every workload (default: per workload).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the classifier workloads' forward.")
@click.option("--threads", type=int, default=None, help="torch intra-op threads (default: torch's).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
def bench_throughput(data: str, coco: str, device: str, workloads: str | None, precisions: str | None,
                     iterations: int | None, repeats: int, batch_size: int | None, compile_: bool, threads: int | None,
                     json_path: Path | None) -> None:
    """Per workload and precision: the model step alone vs the product's training loop, images/s and ratio."""
    from prednas.bench.throughput import throughput

    _threads(threads)
    r = throughput(data, coco, device, workloads=_names(workloads), precisions=_names(precisions),
                   iterations=iterations, batch_size=batch_size, repeats=repeats, compile=compile_)
    click.echo(f"{r['device']} | torch {r['torch']} | {r['threads']} threads | {r['iterations']} iterations x "
               f"{r['repeats']} repeats, best counts")
    click.echo(f"{'workload':<15} {'precision':<11} {'compiled':>8} {'batch':>5} {'step img/s':>11} "
               f"{'loop img/s':>11} {'loop/step':>9} {'warm-up s':>9}")
    for row in r["rows"]:
        precision = row["precision"] if row["precision"] == row["autocast"] else f"{row['precision']}={row['autocast']}"
        click.echo(f"{row['workload']:<15} {precision:<11} {'yes' if row['compile'] else 'no':>8} {row['batch']:>5} "
                   f"{row['step_images_per_s']:>11.1f} {row['loop_images_per_s']:>11.1f} {row['ratio']:>9.2f} "
                   f"{row['warmup_s']:>9.1f}")
    _write(json_path, r)


@click.command("shard-concurrency")
@_common
@click.option("--archs", type=int, default=8, show_default=True, help="Architectures in the shard.")
@click.option("--concurrency", "levels", default="1,2", show_default=True,
              help="Comma-separated evaluator.concurrency values; the first is the baseline.")
@click.option("--device", default="auto", show_default=True)
@click.option("--epochs", type=int, default=1, show_default=True)
@click.option("--fraction", type=float, default=0.2, show_default=True, help="Share of the training images.")
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--max-mmacs", type=float, default=400.0, show_default=True, help="MACs cap at 224 px, millions.")
def bench_shard(data: str, seed: int, threads: int | None, json_path: Path | None, archs: int, levels: str,
                device: str, epochs: int, fraction: float, batch_size: int, max_mmacs: float) -> None:
    """Wall time of one evaluate step's shard trained one at a time against several at once."""
    from prednas.bench.training import shard_concurrency

    try:
        concurrency = tuple(int(p) for p in _names(levels) or ())
    except ValueError:
        raise PredNASError(f"--concurrency must be comma-separated integers, got {levels!r}") from None
    _threads(threads)

    def progress(row: dict[str, Any]) -> None:
        click.echo(f"concurrency {row['concurrency']}: {row['wall_s']:.1f} s", err=True)

    r = shard_concurrency(data, archs=archs, concurrency=concurrency, device=device, epochs=epochs, fraction=fraction,
                          batch_size=batch_size, seed=seed, max_macs=max_mmacs * 1e6, progress=progress)
    macs = ", ".join(f"{m / 1e6:.1f}" for m in r["macs"])
    click.echo(f"{r['device']} | torch {r['torch']} | {r['threads']} threads | {archs} AnyNets at {r['resolution']} px "
               f"({macs} MMACs) | {r['epochs']} epoch(s) on {r['train_images']} images, batch {r['batch_size']} | "
               f"seed {seed}")
    click.echo(f"{'concurrency':>11} {'wall s':>8} {'speed-up':>8} {'max top-1 diff':>14}")
    for row in r["rows"]:
        click.echo(f"{row['concurrency']:>11} {row['wall_s']:>8.1f} {row['speedup']:>8.2f} "
                   f"{row['max_top1_diff']:>14.3f}")
    _write(json_path, r)


def _names(text: str | None) -> tuple[str, ...] | None:
    names = tuple(p.strip() for p in text.split(",") if p.strip()) if text else ()
    return names or None
