"""The terminal report of ``prednas run`` fits 100 columns with every number visible."""

from __future__ import annotations

from typing import Any

import pytest

from prednas.cli.run import WIDTH, arch_lines, arch_short, print_report

NB201 = "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ANYNET = {"depths": [1, 16, 1, 6], "widths": [24, 176, 1016, 96], "groups": [12, 1, 2, 32],
          "ratios": [1.0, 0.25, 0.25, 1.0]}


def _report(arch: dict[str, Any], rows: int = 10) -> dict[str, Any]:
    def row(i: int) -> dict[str, Any]:
        return {"stage": "top-k" if i % 2 else "sample", "accuracy": 71.36 - i / 10, "arch": arch,
                "report": {"test_accuracy": 72.04 - i / 10},
                "cost": {"flops": 314.42e6 + i, "params": 1.11e6, "latency_ms": 22.3}}

    table = [row(i) for i in range(rows)]
    return {"best": table[0], "table": table, "metrics": {"queries": 70.0}, "experiment": "prednas",
            "parent_run_id": "0123456789abcdef0123456789abcdef",
            "tracking_uri": "sqlite:////a/very/long/folder/name/that/goes/on/and/on/for/a/while/runs/mlflow.db"}


@pytest.mark.parametrize("arch", [{"arch": NB201}, ANYNET], ids=["nb201", "anynet"])
def test_report_fits_100_columns_with_every_number(arch, capsys):
    report = _report(arch)
    print_report(report, 193.3)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= WIDTH, max(lines, key=len)
    for row in report["table"]:  # accuracy, test accuracy and costs of every row are printed whole
        assert f"{row['accuracy']:.2f}" in out and f"{row['report']['test_accuracy']:.2f}" in out
    assert "314.42M" in out and "1.11M" in out and "22.3" in out
    whole = "".join(line.strip() for line in out.split("best architecture\n", 1)[1].splitlines()[:3])
    assert arch_lines(arch)[0].strip() in whole
    assert "queries this run          70" in out and "wall time                 193.3 s" in out


def test_nb201_strings_are_abbreviated_in_the_table_and_whole_below_it(capsys):
    assert arch_short({"arch": NB201}) == "|c3~0|+|c1~0|c3~1|+|c1~0|c3~1|c3~2|"
    print_report(_report({"arch": NB201}), 1.0)
    out = capsys.readouterr().out
    assert f"  {NB201}\n" in out and "c3 = nor_conv_3x3" in out


def test_long_architectures_wrap_at_separators():
    lines = arch_lines(ANYNET, width=40)
    assert all(len(line) <= 40 for line in lines) and "".join(lines).replace(" ", "") == \
        '{"depths":[1,16,1,6],"groups":[12,1,2,32],"ratios":[1.0,0.25,0.25,1.0],"widths":[24,176,1016,96]}'
    nb201 = arch_lines({"arch": NB201}, width=50)
    assert "".join(nb201) == NB201 and all(len(line) <= 50 for line in nb201)
