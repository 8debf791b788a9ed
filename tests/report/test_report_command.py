"""`gpubench report RUN`: the report of a stored run imported from another machine, as text fitted
to an 80-column terminal, JSON, Markdown parsed back, and HTML; and `gpubench run`'s own report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpubench.cli import app
from gpubench.report import formats
from gpubench.report.headline import build, ratio_text, to_dict
from gpubench.results.jsonio import run_to_json
from tests.results.test_schemas import _valid

from tests.report import machines

runner = CliRunner()


def invoke(*args: str, columns: int = 80):
    return runner.invoke(app, list(args), env={"COLUMNS": str(columns)})


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The 4-GPU server's run, exported there and imported here into an empty history."""
    tmp = tmp_path_factory.mktemp("imported")
    run = machines.gpu_run(machines.gpu_server(tmp))
    export = tmp / "gpu-server.json"
    export.write_text(run_to_json(run))
    db = tmp / "h.db"
    done = invoke("import", str(export), "--db", str(db))
    assert done.exit_code == 0, done.output
    return run, db


def whole_on_a_line(lines: list[str], token: str) -> bool:
    return any(token in line for line in lines)


def test_the_report_of_an_imported_run_fits_80_columns_with_every_name_and_number_whole(imported):
    run, db = imported
    done = invoke("report", "1", "--db", str(db))
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for result in run.results:
        assert whole_on_a_line(lines, result.case), result.case
        assert whole_on_a_line(lines, formats.number(result.summary.median)), (result.case, result.summary.median)
    for row in build(run).paths:
        assert whole_on_a_line(lines, f"{formats.number(row.value)} {row.best.unit}")
        for v in row.versus:
            assert whole_on_a_line(lines, ratio_text(v.ratio))
    assert f"history: run 1 in {db}" in " ".join(done.stdout.split())


def test_the_headline_comes_first(imported):
    run, db = imported
    out = invoke("report", "1", "--db", str(db)).stdout
    assert out.index("Data paths") < out.index("memcpy:") and out.index("Not (fully) there") < out.index("Data paths")


def test_json_is_the_run_with_its_headline(imported):
    run, db = imported
    done = invoke("report", "1", "--db", str(db), "--json")
    assert done.exit_code == 0 and done.stderr == ""
    document = json.loads(done.stdout)
    stored = document["run"]
    assert stored["id"] == 1 and stored["uid"] == run.uid and len(stored["results"]) == len(run.results)
    assert document["headline"] == json.loads(json.dumps(to_dict(build(run))))
    _valid("report", document)  # its schema, with the limits and baselines of a GPU server filled in


def parse_markdown_tables(text: str) -> list[list[list[str]]]:
    """Every GFM table: its rows (header first), cells unescaped."""
    tables, current = [], None
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [re.sub(r"\\(.)", r"\1", c.strip()) for c in re.split(r"(?<!\\)\|", line)[1:-1]]  # escapes undone
            if current is None:
                current = []
                tables.append(current)
            if not all(set(c) <= set("-:") and c for c in cells):
                current.append(cells)
        else:
            current = None
    return tables


def test_markdown_parses_back_to_the_same_figures(imported):
    run, db = imported
    done = invoke("report", "1", "--db", str(db), "--markdown")
    assert done.exit_code == 0
    tables = parse_markdown_tables(done.stdout)
    paths = next(t for t in tables if t[0][:2] == ["path", "best"])
    head = build(run)
    assert [row[1] for row in paths[1:]] == [f"{formats.number(r.value)} {r.best.unit}" for r in head.paths]
    cases = {row[0].strip("`"): row[1] for t in tables if t[0][0] == "case" for row in t[1:]}
    assert cases == {r.case: f"{formats.number(r.summary.median)} {r.unit}" for r in run.results}


def test_html_is_written_once_and_replaced_only_with_force(imported, tmp_path: Path):
    run, db = imported
    page = tmp_path / "report.html"
    done = invoke("report", "1", "--db", str(db), "--html", str(page))
    assert done.exit_code == 0 and page.is_file() and f"wrote {page}" in done.stderr
    assert "host to GPU copy" in page.read_text()
    again = invoke("report", "1", "--db", str(db), "--html", str(page))
    assert again.exit_code == 1 and "--force" in str(again.exception)
    assert invoke("report", "1", "--db", str(db), "--html", str(page), "--force").exit_code == 0


def test_bad_requests_are_one_line(imported, tmp_path: Path):
    _, db = imported
    for args, code, words in ((("9",), 1, "no run 9"), (("1", "--json", "--markdown"), 2, "exclude each other"),
                              (("1", "--html", str(tmp_path)), 1, "is a directory")):
        done = subprocess.run([sys.executable, "-m", "gpubench", "report", *args, "--db", str(db)], capture_output=True, text=True)
        assert done.returncode == code and done.stdout == ""
        assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr


def test_run_prints_its_report_in_80_columns_and_says_where_the_history_is(tmp_path: Path):
    db = tmp_path / "h.db"
    done = invoke("run", "--quick", "--only", "psync", "-p", "psync.size=1M", "-p", "psync.runtime=0.01", "-p", "psync.direct=0",
                  "--rounds", "1", "--no-report", "--no-telemetry", "--db", str(db))
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "Data paths" in done.stdout and whole_on_a_line(lines, "randread-4k-qd1-j1-buffered")
    assert f"history: run 1 in {db}" in " ".join(done.stdout.split())
