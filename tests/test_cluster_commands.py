"""``prednas submit`` and ``prednas schedule`` against a fake KFP API server on 127.0.0.1.

Every answer that is not a created run ends the command with exit code 2 and one line
naming it (login redirect, 401/403, 404, 5xx, a login page, an API without ids); a created
run or recurring run is only reported after it was read back by its id.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from kfp_api import fake_kfp_api

from prednas.cli import main
from prednas.pipeline.remote import LOGIN_HINT

CRON = ["--cron", "0 0 3 * * *"]
FAILURES = {
    "redirect": "the host redirected to a login page",
    "login-page": "answered with a web page (text/html), not the pipelines API",
    "401": "refused the request (401 Unauthorized)",
    "403": "refused the request (403 Forbidden)",
    "404": "has no pipelines API (404 Not Found)",
    "500": "failed with a server error (500 Internal Server Error)",
    "503": "failed with a server error (503 Service Unavailable)",
    "api-401": "refused the request (401 Unauthorized)",
    "api-500": "failed with a server error (500 Internal Server Error)",
}


def _invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env={"KFP_EXISTING_TOKEN": "", "KF_PIPELINES_SA_TOKEN_PATH": "",
                                                      **(env or {})})


@pytest.fixture(autouse=True)
def _no_kfp_context(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # kfp reads ~/.config/kfp/context.json


@pytest.mark.parametrize("command", [["submit"], ["schedule", *CRON]], ids=["submit", "schedule"])
@pytest.mark.parametrize("mode", sorted(FAILURES))
def test_a_refusing_host_is_one_named_line_and_exit_2(mode, command):
    with fake_kfp_api(mode) as api:
        result = _invoke(*command, "--host", api.url)
        created = api.runs or api.recurring
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: Kubeflow Pipelines at {api.url}")
    assert FAILURES[mode] in lines[0]
    if mode in ("redirect", "login-page", "401", "api-401"):
        assert LOGIN_HINT in lines[0]
    assert not created


@pytest.mark.parametrize("command", [["submit"], ["schedule", *CRON]], ids=["submit", "schedule"])
def test_an_api_answering_without_ids_creates_nothing_it_reports(command):
    with fake_kfp_api("no-ids") as api:
        result = _invoke(*command, "--host", api.url)
    assert result.exit_code == 2 and result.stdout == ""
    assert "answered without" in result.stderr and len(result.stderr.splitlines()) == 1


def test_submit_reports_the_run_it_read_back():
    with fake_kfp_api("ok") as api:
        result = _invoke("submit", "--host", api.url, "--set", "n=20")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"run run-1 created: {api.url}/#/runs/details/run-1\n"
    assert result.stderr == ""  # kfp's "Experiment details" and "Run details" prints stay off the terminal
    assert ("GET", "/apis/v2beta1/runs/run-1") in api.requests


def test_debug_shows_kfp_output_on_stderr():
    with fake_kfp_api("ok") as api:
        result = _invoke("--debug", "submit", "--host", api.url)
    assert result.exit_code == 0
    assert result.stdout.startswith("run run-1 created")
    assert "Run details" in result.stderr


def test_schedule_keeps_or_replaces_a_recurring_run_of_the_same_name():
    with fake_kfp_api("ok") as api:
        first = _invoke("schedule", *CRON, "--host", api.url, "--job-name", "nightly")
        (first_id,) = api.recurring
        again = _invoke("schedule", *CRON, "--host", api.url, "--job-name", "nightly")
        kept = dict(api.recurring)
        replaced = _invoke("schedule", *CRON, "--host", api.url, "--job-name", "nightly", "--replace")
        (new_id,) = api.recurring
    assert first.exit_code == again.exit_code == replaced.exit_code == 0
    assert f"recurring run nightly ({first_id}) created" in first.stdout
    assert "already exists" in again.stdout and list(kept) == [first_id]
    assert new_id != first_id and f"recurring run nightly ({new_id}) replaced {first_id}" in replaced.stdout
    assert ("DELETE", f"/apis/v2beta1/recurringruns/{first_id}") in api.requests


def test_the_token_reaches_every_request(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("sa-token\n")
    with fake_kfp_api("ok") as api:
        from_env = _invoke("submit", "--host", api.url, env={"KFP_EXISTING_TOKEN": "user-token"})
        seen_env = list(api.authorization)
        api.authorization.clear()
        from_file = _invoke("submit", "--host", api.url, env={"KF_PIPELINES_SA_TOKEN_PATH": str(token_file)})
    assert from_env.exit_code == from_file.exit_code == 0
    assert set(seen_env) == {"Bearer user-token"}
    assert set(api.authorization) == {"Bearer sa-token"}


def test_an_unreadable_token_file_is_one_line(tmp_path):
    with fake_kfp_api("ok") as api:
        result = _invoke("submit", "--host", api.url, env={"KF_PIPELINES_SA_TOKEN_PATH": str(tmp_path / "none")})
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot read the token file KF_PIPELINES_SA_TOKEN_PATH=")


def test_a_redirect_to_https_names_the_address():
    from prednas.pipeline.remote import HEALTHZ, http_failure

    error = http_failure("http://kfp", 301, "Moved", f"https://kfp{HEALTHZ}")
    assert "redirected to https://kfp" in str(error) and "login" not in str(error)
