"""``prednas ui`` (the MLflow UI on the local runs) and ``prednas runs`` (past searches)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click

from prednas.errors import PredNASError

ROOT_HELP = "Folder of the embedded default: MLflow SQLite store, triplet store, step logs."
UI_START_S = 180.0  # how long the MLflow server may take to answer its first request


def register(main: click.Group, bench: click.Group) -> None:
    """Add the ui and runs commands."""
    main.add_command(ui)
    main.add_command(runs_command)


def _database(root: Path) -> Path:
    """The local store's database, its artifact locations anchored to where ``root`` is now."""
    from prednas.tracking.relocate import anchor

    database = root.absolute() / "mlflow.db"
    if not database.is_file():
        raise PredNASError(f"no local runs at {database}; start one with `prednas run`")
    anchor(root)
    return database


@click.command()
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True,
              help=ROOT_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
def ui(root: Path, host: str, port: int) -> None:
    """Serve the MLflow UI on the local runs and print the address of the runs view."""
    import importlib.util

    database = _database(root)
    if importlib.util.find_spec("mlflow") is None:
        raise PredNASError("the MLflow UI needs mlflow: pip install 'prednas[tracking]'")
    check_port(host, port)
    from prednas.tracking.listing import ui_url

    server = start_ui(database, host, port)
    try:
        base = f"http://{_url_host(host)}:{port}"
        wait_until_serving(server, base)
        click.echo(f"MLflow UI: {ui_url(base, _first_experiment(database))} (Ctrl-C to stop)")
        code = server.wait()
    except KeyboardInterrupt:
        code = 0
    finally:
        stop(server)
    if code:
        raise PredNASError(f"the MLflow UI on {host}:{port} stopped with exit code {code}")


def check_port(host: str, port: int) -> None:
    """Refuse a host:port this machine cannot listen on (busy, or not an address of this machine)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise PredNASError(f"cannot serve the MLflow UI on {host}:{port}: unknown host ({exc.strerror})") from None
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PredNASError(f"cannot serve the MLflow UI on {host}:{port}: {exc.strerror}; "
                               "choose another --port") from None


def start_ui(database: Path, host: str, port: int) -> subprocess.Popen:
    """``mlflow server`` on the SQLite store with one worker and no job runner."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{database}",
               "--default-artifact-root", (database.parent / "mlartifacts").as_uri(), "--host", host,
               "--port", str(port), "--workers", "1"]
    return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=2)  # its log on stderr


def wait_until_serving(server: subprocess.Popen, base: str, timeout_s: float = UI_START_S) -> None:
    """Return once ``base``/health answers; a server that exits or never answers is one line."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise PredNASError(f"the MLflow UI exited with code {server.returncode} before serving on {base}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise PredNASError(f"the MLflow UI did not answer on {base} within {timeout_s:.0f} s")


def stop(server: subprocess.Popen) -> None:
    """End the server and its workers."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _first_experiment(database: Path) -> str | None:
    """The experiment holding the newest search, for the printed address (None: the experiment list)."""
    from prednas.tracking.listing import past_searches

    rows = past_searches(f"sqlite:///{database}", limit=1)
    if not rows:
        return None
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{database}").get_run(rows[0].run_id).info.experiment_id


@click.command("runs")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True,
              help=ROOT_HELP)
@click.option("--tracking-uri", default=None, help="A tracking server or store instead of ROOT's SQLite store.")
@click.option("--experiment", default=None, help="Only this experiment.")
@click.option("--limit", type=click.IntRange(1, 10000), default=20, show_default=True, help="Newest searches shown.")
def runs_command(root: Path, tracking_uri: str | None, experiment: str | None, limit: int) -> None:
    """List past searches: name, space, best accuracy, queries, status."""
    from prednas.tracking.listing import past_searches

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    uri = tracking_uri or f"sqlite:///{_database(root)}"
    rows = past_searches(uri, experiment=experiment, limit=limit)
    if not rows:
        click.echo(f"no searches at {uri}")
        return
    click.echo(format_rows(rows))


def format_rows(rows: list[Any]) -> str:
    """The rows as a fixed-width table no wider than 100 columns (names and keys cut with an ellipsis)."""
    head = ("name", "space", "best", "queries", "status", "started (UTC)", "run id")
    cells = [(r.name, r.space, "-" if r.best is None else f"{r.best:.2f}", "-" if r.queries is None else str(r.queries),
              r.status, r.started, r.run_id[:8]) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    widths[0] = min(widths[0], 100 - sum(widths[1:]) - 2 * (len(head) - 1))
    right = {2, 3}

    def line(values: tuple[str, ...]) -> str:
        parts = [_cut(v, w).rjust(w) if i in right else _cut(v, w).ljust(w) for i, (v, w) in
                 enumerate(zip(values, widths, strict=True))]
        return "  ".join(parts).rstrip()

    return "\n".join([line(head), *(line(c) for c in cells)])


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"
