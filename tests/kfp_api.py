"""A fake Kubeflow Pipelines v2beta1 API server on 127.0.0.1, for the cluster commands' tests.

It answers what ``kfp.Client`` asks when prednas submits or schedules (healthz, experiments,
runs, recurring runs) and can instead answer like the things that stand in front of a real
one: a login redirect, 401/403, 404, a 5xx, a login page served with 200, an API that
answers without ids, or one whose health check passes but whose calls are refused
(``api-401``, ``api-500``).
"""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API = "/apis/v2beta1"
MODES = ("ok", "redirect", "401", "403", "404", "500", "503", "login-page", "no-ids", "api-401", "api-500")


class FakeKfpApi(ThreadingHTTPServer):
    """The server: ``mode`` chooses how it answers; ``requests`` records (method, path)."""

    daemon_threads = True

    def __init__(self, mode: str = "ok", port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.mode = mode
        self.requests: list[tuple[str, str]] = []
        self.authorization: list[str] = []  # the Authorization header of each request ("" for none)
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.recurring: dict[str, dict[str, Any]] = {}

    @property
    def url(self) -> str:
        """The base URL to pass as ``--host``."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) for one request, as ``mode`` says."""
        self.requests.append((method, path))
        route = urllib.parse.urlsplit(path).path
        if route.startswith("/dex/"):
            return 200, {"Content-Type": "text/html"}, b"<html><body>Log in</body></html>"
        if self.mode == "redirect":
            return 302, {"Location": f"{self.url}/dex/auth?client_id=kubeflow-oidc-authservice"}, b""
        if self.mode == "login-page":
            return 200, {"Content-Type": "text/html"}, b"<!doctype html><html><body>Sign in</body></html>"
        refuse = self.mode.removeprefix("api-") if route != f"{API}/healthz" else self.mode
        if refuse in ("401", "403", "404", "500", "503"):
            status = int(refuse)
            return status, {"Content-Type": "application/json"}, json.dumps(
                {"error": f"fake {status}", "code": 16, "message": f"fake {status}"}).encode()
        return self._api(method, route, body)

    def _api(self, method: str, route: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        ids = self.mode != "no-ids"
        if route == f"{API}/healthz":
            return _json({"multi_user": False})
        if route == f"{API}/experiments" and method == "GET":
            return _json({"experiments": list(self.experiments.values())} if self.experiments else {})
        if route == f"{API}/experiments" and method == "POST":
            experiment = {"experiment_id": f"exp-{len(self.experiments) + 1}" if ids else "",
                          "display_name": body.get("display_name", "")}
            self.experiments[experiment["display_name"]] = experiment
            return _json(experiment)
        if route == f"{API}/runs" and method == "POST":
            run = {"run_id": f"run-{len(self.runs) + 1}", "display_name": body.get("display_name", "")}
            self.runs[run["run_id"]] = run
            return _json(run if ids else {})
        if route.startswith(f"{API}/runs/") and method == "GET":
            run = self.runs.get(route.rsplit("/", 1)[1])
            return _json(run) if run else _json({"error": "not found"}, 404)
        if route == f"{API}/recurringruns" and method == "GET":
            runs = list(self.recurring.values())
            return _json({"recurringRuns": runs} if runs else {})
        if route == f"{API}/recurringruns" and method == "POST":
            job = {"recurring_run_id": f"rr-{len(self.requests)}", "display_name": body.get("display_name", "")}
            self.recurring[job["recurring_run_id"]] = job
            return _json(job if ids else {})
        if route.startswith(f"{API}/recurringruns/"):
            job_id = route.rsplit("/", 1)[1]
            if job_id not in self.recurring:
                return _json({"error": "not found"}, 404)
            if method == "DELETE":
                del self.recurring[job_id]
                return _json({})
            return _json(self.recurring[job_id])
        return _json({"error": f"no route {method} {route}"}, 404)


def _json(payload: dict[str, Any], status: int = 200) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


class _Handler(BaseHTTPRequestHandler):
    server: FakeKfpApi

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        self.server.authorization.append(self.headers.get("Authorization") or "")
        status, headers, payload = self.server.answer(self.command, self.path, body if isinstance(body, dict) else {})
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _serve

    def log_message(self, *args: Any) -> None:
        return None


@contextlib.contextmanager
def fake_kfp_api(mode: str = "ok") -> Iterator[FakeKfpApi]:
    """A running fake API server in a thread, shut down on exit."""
    server = FakeKfpApi(mode)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()



if __name__ == "__main__":  # serve one mode by hand: python tests/kfp_api.py 401 --port 8888
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--port", type=int, default=8888)
    options = parser.parse_args()
    FakeKfpApi(options.mode, options.port).serve_forever()
