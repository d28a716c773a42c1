"""The ``prednas`` command line: one group, commands registered from feature modules.

A user's mistake (``PredNASError``, a bad option) exits with code 2 and one line on
stderr; ``--debug`` shows the traceback instead. An interrupted command exits 128 + the
signal: 130 after Ctrl-C, 143 after SIGTERM (``prednas.pipeline.interrupt``).
"""

from __future__ import annotations

import importlib
import sys

import click

from prednas.errors import PredNASError

# Each module defines ``register(main, bench)`` and adds its commands.
COMMAND_MODULES = (
    "prednas.cli.nb201",
    "prednas.cli.natssss",
    "prednas.cli.run",
    "prednas.cli.tracking",
    "prednas.cli.kubeflow",
    "prednas.cli.overhead",
    "prednas.cli.training",
    "prednas.cli.spaces",
    "prednas.cli.reliability",
)


class _Group(click.Group):
    def main(self, *args, **kwargs):  # one-line usage errors, exit code 2
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.UsageError as exc:  # click's own messages may span lines ("Choose from:\n\ta,\n\tb")
            click.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
            sys.exit(2)
        except click.ClickException as exc:
            click.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort as exc:  # click's form of KeyboardInterrupt (and of Terminated)
            from prednas.pipeline.interrupt import exit_code

            click.echo("aborted", err=True)
            sys.exit(exit_code(exc.__cause__))
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PredNASError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=_Group)
@click.version_option(package_name="prednas", message="prednas %(version)s")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """PredNAS: predictor-based neural architecture search."""
    ctx.ensure_object(dict)["debug"] = debug


@main.group()
def bench() -> None:
    """Benchmarks that print figures (see docs/results.md)."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(main, bench)
