"""Every ``prednas`` command with malformed arguments and files: exit code 2, one line, no traceback.

Two layers. Every command listed by ``prednas --help`` (and ``prednas bench --help``) is
invoked in-process with arguments derived from its own options: an unknown option, text
where a number is due, a choice that does not exist, required options left out. Then the
commands that read files get malformed files (binary garbage, truncated YAML or JSON,
the wrong document type, a folder, a missing path) through the installed ``prednas``
executable, so the check covers what really reaches stderr (warnings included). Finally
``--debug`` shows the traceback the one-line form hides.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from prednas.cli import main

PREDNAS = Path(sys.executable).with_name("prednas")
GARBAGE = b"\x00\xff\xfe PK\x03\x04 not yaml: [ { \x80"


def leaf_commands(group: click.Group = main, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], click.Command]:
    """Every runnable command, by its argument path (``("bench", "nb201")``)."""
    out = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            out.update(leaf_commands(command, (*prefix, name)))
        else:
            out[(*prefix, name)] = command
    return out


COMMANDS = leaf_commands()


def derived_cases() -> list[tuple[tuple[str, ...], list[str]]]:
    """Malformed arguments derived from each command's declared options."""
    cases = []
    for path, command in sorted(COMMANDS.items()):
        cases.append((path, [*path, "--no-such-option", "1"]))
        if any(p.required for p in command.params):
            cases.append((path, list(path)))  # every required option missing
        for param in command.params:
            if not isinstance(param, click.Option) or param.is_flag:
                continue
            flag = param.opts[0]
            if isinstance(param.type, click.types.IntParamType | click.types.FloatParamType):
                cases.append((path, [*path, flag, "twelve"]))
            elif isinstance(param.type, click.Choice):
                cases.append((path, [*path, flag, "no-such-choice"]))
    return cases


def one_line_error(exit_code: int, stderr: str, output: str = "") -> str:
    """The single error line; fails unless exit code 2, one stderr line, no traceback."""
    lines = stderr.strip().splitlines()
    assert exit_code == 2, f"exit code {exit_code}\nstdout: {output}\nstderr: {stderr}"
    assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{stderr}"
    assert lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize(("command", "args"), derived_cases(), ids=lambda v: " ".join(v) if isinstance(v, list)
                         else None)
def test_malformed_arguments(command: tuple[str, ...], args: list[str], tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    one_line_error(result.exit_code, result.stderr, result.stdout)


# -- malformed files, through the installed executable ------------------------------------
def _files(root: Path) -> dict[str, Path]:
    """One malformed file (or folder, or missing path) of each kind."""
    files = {"garbage": root / "garbage.bin", "truncated-yaml": root / "truncated.yaml",
             "yaml-list": root / "list.yaml", "truncated-json": root / "truncated.json",
             "json-list": root / "list.json", "json-nan": root / "nan.json", "folder": root / "folder",
             "missing": root / "missing" / "file.yaml", "empty-folder": root / "empty"}
    files["garbage"].write_bytes(GARBAGE)
    files["truncated-yaml"].write_text("space: nb201\nevaluator:\n  name: nb201-table\n  dataset: [cifar1")
    files["yaml-list"].write_text("- space: nb201\n- n: 30\n")
    files["truncated-json"].write_text('{"depths": [1, 2, 3, 4], "widths": [32, 64')
    files["json-list"].write_text(json.dumps([[1, 2, 3, 4]]))
    files["json-nan"].write_text('{"depths": [NaN, 1, 1, 1], "widths": [32, 32, 32, 32], "ratios": [1, 1, 1, 1], '
                                 '"groups": [1, 1, 1, 1]}')
    arch = {"depths": [1, 2, 7, 12], "widths": [32, 64, 160, 400], "ratios": [1, 1, 1, 1], "groups": [2, 4, 10, 25]}
    line = json.dumps({"arch": arch, "accuracy": 70.0})
    files["triplets-huge"] = root / "huge.jsonl"
    files["triplets-huge"].write_text(f"{line}\n" + line.replace("70.0", "1" + "0" * 400) + "\n")
    files["triplets-cost"] = root / "cost.jsonl"
    files["triplets-cost"].write_text(f"{line}\n" + json.dumps({"arch": arch, "accuracy": 71.0, "cost": [1, 2]}) + "\n")
    files["triplets-ok"] = root / "ok.jsonl"
    files["triplets-ok"].write_text(f"{line}\n" + line.replace("70.0", "71.0") + "\n")
    files["folder"].mkdir()
    (files["folder"] / "train.npz").write_bytes(GARBAGE)
    (files["folder"] / "annotations").mkdir()
    files["empty-folder"].mkdir()
    return files


CONFIG_FILES = ["garbage", "truncated-yaml", "yaml-list", "folder", "missing"]
JSON_FILES = ["garbage", "truncated-json", "json-list", "json-nan", "folder", "missing"]
FILE_CASES: list[tuple[list[str], list[str]]] = [
    (["run", "--config", "{}"], CONFIG_FILES),
    (["run", "--in-process", "--config", "{}"], ["truncated-yaml"]),
    (["compile", "-o", "out.yaml", "--config", "{}"], CONFIG_FILES),
    (["submit", "--host", "http://127.0.0.1:9", "--config", "{}"], CONFIG_FILES),
    (["schedule", "--host", "http://127.0.0.1:9", "--cron", "0 0 3 * * *", "--config", "{}"], CONFIG_FILES),
    (["cost", "--space", "anynet", "--arch", "{}"], JSON_FILES),
    (["search", "--space", "anynet", "--target-macs", "400M", "--triplets", "{}"],
     [*JSON_FILES, "triplets-huge", "triplets-cost"]),
    (["bench", "pipeline-overhead", "--config", "{}"], ["garbage", "truncated-yaml"]),
    (["bench", "classifier", "--epochs", "1", "--data", "{}"], ["garbage", "folder", "missing"]),
    (["bench", "proxy-fidelity", "--data", "{}"], ["garbage", "missing"]),
    (["bench", "resume", "--data", "{}"], ["garbage", "missing"]),
    (["bench", "training-throughput", "--data", "{}"], ["garbage"]),
    (["bench", "shard-concurrency", "--data", "{}"], ["garbage", "folder", "missing"]),
    (["bench", "detection-overfit", "--coco", "{}"], ["garbage", "empty-folder", "missing"]),
    (["ui", "--root", "{}"], ["empty-folder", "missing"]),
    (["runs", "--root", "{}"], ["empty-folder", "missing"]),
]
VALUE_CASES: list[list[str]] = [
    ["run", "--set", "gradient.steps=-3"],
    ["runs", "--tracking-uri", "http://127.0.0.1:9"],
    ["run", "--set", "no-equals-sign"],
    ["run", "--space", "nas101"],
    ["run", "--json", "missing/report.json"],
    ["compile", "-o", "missing/pipeline.yaml"],
    ["cost", "--space", "yolox", "--arch", '{"stem": 10000000000000000000000000000000000000000}'],
    ["cost", "--space", "anynet", "--arch", "no_such_preset"],
    ["presets", "--space", "nb201"],
    ["search", "--space", "anynet", "--triplets", "@triplets-ok", "--target-macs", "400M", "--delta", "-5%"],
    ["search", "--space", "anynet", "--triplets", "@triplets-ok", "--target-latency", "3ms"],
    ["bench", "nb201", "--dataset", "cifar1000", "--repeats", "1"],
    ["bench", "nb201", "--methods", "prednas,grid", "--repeats", "1"],
    ["bench", "nb201", "--option", "no_such_option=3", "--repeats", "1"],
    ["bench", "nb201", "--json", "missing/nb201.json", "--repeats", "1"],
    ["bench", "nb201-ablation", "--dataset", "mnist", "--repeats", "1"],
    ["bench", "nb201-curve", "--splits", "0+10", "--repeats", "1"],
    ["bench", "natssss", "--target-quantile", "1.5", "--repeats", "1"],
    ["bench", "natssss", "--dataset", "mnist", "--repeats", "1"],
    ["bench", "pipeline-overhead", "--set", "n=1"],
    ["bench", "reliability", "--json", "missing/reliability.json"],
    ["bench", "pipeline-overhead", "--json", "missing/overhead.json", "--set", "n=1"],
    ["bench", "size-search", "--targets", "400X", "--repeats", "1"],
    ["bench", "cost-throughput", "--archs", "0"],
    ["bench", "training-throughput", "--precisions", "fp8"],
    ["bench", "shard-concurrency", "--concurrency", "1,0"],
    ["bench", "shard-concurrency", "--fraction", "7"],
    ["bench", "detection-overfit", "--images", "0"],
    ["bench", "detection-overfit", "--device", "tpu"],
    ["bench", "classifier", "--fraction", "7", "--epochs", "1"],
    ["bench", "resume", "--kill-after", "-1"],
    ["bench", "proxy-fidelity", "--archs", "0"],
]


def file_cases() -> list[list[str]]:
    """Each command that reads a file, with each kind of malformed file."""
    out = []
    for args, kinds in FILE_CASES:
        for kind in kinds:
            out.append([a.replace("{}", f"@{kind}") for a in args])
    return out


def _argv(args: list[str], files: dict[str, Path]) -> list[str]:
    return [str(files[a[1:]]) if a.startswith("@") else a for a in args]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """A working folder with one malformed file of each kind."""
    root = tmp_path_factory.mktemp("cli")
    return root, _files(root)


@pytest.mark.parametrize("args", file_cases() + VALUE_CASES, ids=" ".join)
def test_malformed_files_and_values(args: list[str], workdir: tuple[Path, dict[str, Path]],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    root, files = workdir
    monkeypatch.chdir(root)
    result = CliRunner().invoke(main, _argv(args, files))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    one_line_error(result.exit_code, result.stderr, result.stdout)


def _installed(args: list[str], cwd: Path, files: dict[str, Path]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(PREDNAS), *_argv(args, files)], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("args", [
    ["run", "--config", "@garbage"],
    ["cost", "--space", "anynet", "--arch", "@garbage"],
    ["search", "--space", "anynet", "--target-macs", "400M", "--triplets", "@triplets-huge"],
    ["bench", "classifier", "--epochs", "1", "--data", "@garbage"],
    ["bench", "detection-overfit", "--coco", "@empty-folder"],
    ["ui", "--root", "@missing"],
], ids=" ".join)
def test_installed_executable(args: list[str], workdir: tuple[Path, dict[str, Path]]) -> None:
    """What really reaches stderr, library warnings included."""
    root, files = workdir
    result = _installed(args, root, files)
    one_line_error(result.returncode, result.stderr, result.stdout)


NO_INPUT = {("bench", "regnetx"), ("bench", "yolox")}  # nothing to judge but --json: the derived cases cover them


def test_every_command_gets_malformed_values_not_only_unparsable_ones() -> None:
    """Besides the derived cases (which click rejects), each command meets a bad file or value it must judge."""
    judged = {tuple(args[:2]) if args[0] == "bench" else (args[0],) for args in [*VALUE_CASES, *file_cases()]}
    assert set(COMMANDS) - NO_INPUT - judged == set(), sorted(set(COMMANDS) - NO_INPUT - judged)


def test_debug_shows_the_traceback(workdir: tuple[Path, dict[str, Path]]) -> None:
    root, files = workdir
    result = _installed(["--debug", "run", "--config", "@truncated-yaml"], root, files)
    assert result.returncode != 0 and "Traceback" in result.stderr and "PredNASError" in result.stderr
    assert "malformed config" in result.stderr
