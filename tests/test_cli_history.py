"""The history commands through the CLI: stdout, stderr and exit status checked separately.

Most tests use typer's CliRunner; the error cases that must end as one line on stderr through
gpubench.cli.main() run `python -m gpubench` in a subprocess (a few, as they are slower)."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpubench.cli import app
from gpubench.errors import UserError
from gpubench.results.model import ResultStatus, Run, RunStatus
from gpubench.results.store import Store
from tests.cli import assert_one_line_error, fill, gpubench, invoke, runner
from tests.factories import (RANDREAD_BUFFERED, RANDWRITE, SEQREAD, failed, interrupted, measured, noisy, planned,
                             planned_all, run_of, waived, waived_benchmark)

READ, WRITE, DIRECT = RANDREAD_BUFFERED, RANDWRITE, SEQREAD


def _kernel_runs() -> tuple[Run, Run]:
    base = run_of(
        (measured(READ, noisy(1000.0, seed=1)), measured(WRITE, noisy(500.0, seed=2)), measured(DIRECT, noisy(300.0, seed=3))),
        label="kernel 6.8",
        started=1700000000.0,
    )
    new = run_of(
        (
            measured(READ, noisy(800.0, seed=4)),  # 20% slower
            measured(WRITE, noisy(500.0, seed=5)),  # noise
            waived(DIRECT, "O_DIRECT fails on tmpfs"),
        ),
        label="kernel 6.12",
        started=1700100000.0,
    )
    return base, new


@pytest.fixture
def history(tmp_path: Path) -> Path:
    db = tmp_path / "results.db"
    fill(db, *_kernel_runs())
    return db


def test_cli_runner_keeps_stderr_apart(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    result = invoke("list", "--db", str(missing))
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "no result history" in result.stderr
    assert not missing.exists()


def test_list(history: Path) -> None:
    result = invoke("list", "--db", str(history))
    assert result.exit_code == 0, result.stderr
    assert "kernel 6.12" in result.stdout and "kernel 6.8" in result.stdout
    assert result.stdout.index("kernel 6.12") < result.stdout.index("kernel 6.8")
    assert "\x1b[" not in result.stdout  # not a TTY: no colour
    rows = json.loads(invoke("list", "--db", str(history), "--json").stdout)
    assert [(r["id"], r["label"], r["results"]) for r in rows] == [
        (2, "kernel 6.12", {"ok": 2, "waived": 1}),
        (1, "kernel 6.8", {"ok": 3}),
    ]


@pytest.mark.parametrize("label", ["", "6.8-rc1"])
def test_list_keeps_every_column_header_when_the_table_must_wrap(tmp_path: Path, label: str) -> None:
    db = tmp_path / "r.db"
    statuses = [ResultStatus.OK] * 48 + [ResultStatus.WAIVED] * 12 + [ResultStatus.FAILED] * 2 + [ResultStatus.INTERRUPTED]
    outcome = {ResultStatus.OK: measured, ResultStatus.WAIVED: waived, ResultStatus.FAILED: failed, ResultStatus.INTERRUPTED: interrupted}
    cases = planned_all("p2p", snapshot="nvidia-multigpu")
    fill(db, run_of(tuple(outcome[s](c) for c, s in zip(cases, statuses)), label=label,
                     status=RunStatus.INTERRUPTED, metadata={"kernel": "6.18.44-fc-v657"}))
    result = invoke("list", "--db", str(db), env={"COLUMNS": "110"})
    assert result.exit_code == 0, result.stderr
    header = result.stdout.splitlines()[2].split()
    assert header == ["┃", "id", "┃", "uid", "┃", "started", "┃", "took", "┃", "label", "┃", "status", "┃", "results",
                      "┃", "kernel", "┃"]
    assert all(len(line) <= 110 for line in result.stdout.splitlines())
    if label:
        assert label in result.stdout


def test_list_fits_80_columns_with_every_column_and_the_uid_whole(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    run = run_of((measured(READ), waived(WRITE)), label="6.8-rc1", metadata={"kernel": "6.18.44-fc-v657"})
    fill(db, run)
    result = invoke("list", "--db", str(db), env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [h.strip() for h in lines[2].split("┃")[1:-1]] == ["id", "uid", "started", "took", "label", "status", "results", "kernel"]
    assert all(len(line) <= 80 and line[-1] in "┓┃┩│┘" for line in lines[1:])  # nothing cut at the right edge
    assert run.uid[:12] in result.stdout
    assert time.strftime("%Y-%m-%d", time.localtime(run.started)) in result.stdout


@pytest.mark.parametrize("columns", [80, 100])
@pytest.mark.parametrize("command", ["compare", "show"])
def test_tables_fit_the_terminal_without_cutting_a_number(tmp_path: Path, command: str, columns: int) -> None:
    db = tmp_path / "r.db"
    cases = (READ, DIRECT)
    base = run_of(tuple(measured(c, noisy(2000.0, seed=i)) for i, c in enumerate(cases))
                  + (waived_benchmark("memcpy", "no NVIDIA GPU found (probe: gpus = no)"),))
    new = run_of(tuple(measured(c, noisy(1000.0, seed=i + 5)) for i, c in enumerate(cases)))
    fill(db, base, new)
    result = invoke(command, *(("1", "2") if command == "compare" else ("1",)), "--db", str(db), env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.stderr
    table = [line for line in result.stdout.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and all(len(line) <= columns and line[-1] in "┓┃┩│┘" for line in table)
    assert "…" not in result.stdout
    assert re.search(r"-(49|50)\.\d%", result.stdout) if command == "compare" else "2,0" in result.stdout


def test_compare_in_the_terminal_says_what_changed_above_the_cases(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    cmdline = "BOOT_IMAGE=/boot/vmlinuz root=UUID=0f3c2a1e-4b5d-4e6f-8a9b-0c1d2e3f4a5b ro quiet splash iommu=pt"
    fill(db, run_of((measured(READ),), metadata={"kernel": "6.8.0-45-generic", "cmdline": cmdline, "governor": "performance"}),
         run_of((measured(READ),), metadata={"kernel": "6.12.0-1-amd64", "cmdline": cmdline + " mitigations=off",
                                             "governor": "performance"}))
    result = invoke("compare", "1", "2", "--db", str(db), env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 80
    changed, cases = lines.index(next(line for line in lines if "What changed" in line)), result.stdout.index(READ.name)
    rows = [line for line in lines[changed:] if line.startswith("│")]
    assert "kernel release" in rows[0] and "6.8.0-45-generic" in rows[0] and "6.12.0-1-amd64" in rows[0]
    assert "mitigations=off" in result.stdout[:cases] and "governor" not in result.stdout[:cases]  # only what differs
    assert result.stdout.index("What changed") < cases

    fill(db, run_of((measured(READ),), metadata={"kernel": "6.12.0-1-amd64", "cmdline": cmdline, "governor": "performance"}))
    same = invoke("compare", "2", "3", "--db", str(db), env={"COLUMNS": "80"})  # only the command line differs
    assert "What changed" in same.stdout and "kernel release" not in same.stdout
    fill(db, run_of((measured(READ),), metadata={"kernel": "6.12.0-1-amd64", "cmdline": cmdline, "governor": "performance"}))
    assert "What changed" not in invoke("compare", "3", "4", "--db", str(db)).stdout  # nothing to say, no table


def test_list_json_on_missing_history_is_empty_and_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "none" / "r.db"
    result = invoke("list", "--db", str(db), "--json")
    assert (result.exit_code, json.loads(result.stdout)) == (0, [])
    assert not db.parent.exists()


def test_show_table_and_json(history: Path) -> None:
    result = invoke("show", "2", "--db", str(history))
    assert result.exit_code == 0, result.stderr
    assert "kernel 6.12" in result.stdout and "O_DIRECT fails on tmpfs" in result.stdout and "MB/s" in result.stdout
    as_json = json.loads(invoke("show", "latest", "--db", str(history), "--json").stdout)
    assert as_json["label"] == "kernel 6.12" and len(as_json["results"]) == 3


def test_gpubench_db_environment_variable_is_the_default(history: Path) -> None:
    result = invoke("show", "1", "--json", env={"GPUBENCH_DB": str(history)})
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["label"] == "kernel 6.8"


def test_export_json_import_round_trip(history: Path, tmp_path: Path) -> None:
    exported = tmp_path / "run.json"
    result = invoke("export", "1", "--format", "json", "--output", str(exported), "--db", str(history))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "" and "wrote" in result.stderr
    fresh = tmp_path / "elsewhere" / "other.db"
    result = invoke("import", str(exported), "--db", str(fresh))
    assert result.exit_code == 0, result.stderr
    assert "as run 1" in result.stdout
    with Store.open(history, create=False, readonly=True) as a, Store.open(fresh, create=False, readonly=True) as b:
        original, imported = a.get_run("1"), b.get_run("1")
    assert imported.to_dict() == original.to_dict()
    assert imported.results == original.results
    # once is enough: the same run again is skipped, by its uid, and the history is unchanged
    before = fresh.read_bytes()
    result = invoke("import", str(exported), "--db", str(fresh))
    assert result.exit_code == 0, result.stderr
    assert "skipped run" in result.stdout and "as run 1" in result.stdout
    assert fresh.read_bytes() == before


@pytest.mark.parametrize("fmt", ["json", "csv", "junit", "prometheus", "bmf"])
def test_export_formats_to_stdout(history: Path, fmt: str) -> None:
    result = invoke("export", "latest", "--format", fmt, "--db", str(history))
    assert result.exit_code == 0, result.stderr
    marker = {"json": '"schema_version"', "csv": "run_uid,run_label", "junit": "<testsuites", "prometheus": "# TYPE gpubench_result_median gauge",
              "bmf": f'"iouring/{READ.name}": {{'}
    assert marker[fmt] in result.stdout
    assert result.stderr == ""


def test_export_output_dash_is_stdout(history: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    expected = invoke("export", "1", "-f", "json", "--db", str(history)).stdout
    result = invoke("export", "1", "-f", "json", "-o", "-", "--db", str(history))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == expected and result.stderr == ""
    assert not (tmp_path / "-").exists()


def test_export_never_overwrites_without_force(history: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.prom"
    target.write_text("keep me")
    result = runner.invoke(app, ["export", "1", "-f", "prometheus", "-o", str(target), "--db", str(history)], standalone_mode=False)
    assert isinstance(result.exception, UserError) and "--force" in str(result.exception)
    assert target.read_text() == "keep me"
    result = invoke("export", "1", "-f", "prometheus", "-o", str(target), "--force", "--db", str(history))
    assert result.exit_code == 0, result.stderr
    assert target.read_text().startswith("# HELP")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.prom")] == []  # no temporary left


def test_export_writes_into_a_pipe_and_through_a_link_without_replacing_either(history: Path, tmp_path: Path) -> None:
    import os
    import threading

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_bytes()))
    reader.start()
    result = invoke("export", "1", "-f", "csv", "-o", str(pipe), "--db", str(history))
    reader.join(timeout=30)
    assert result.exit_code == 0, result.stderr
    assert received and received[0].startswith(b"run_uid,") and pipe.is_fifo()
    target, link = tmp_path / "real.csv", tmp_path / "link.csv"
    target.write_text("old")
    link.symlink_to(target)
    result = invoke("export", "1", "-f", "csv", "-o", str(link), "--force", "--db", str(history))
    assert result.exit_code == 0, result.stderr
    assert link.is_symlink() and target.read_text().startswith("run_uid,")


def test_export_rejects_unknown_format(history: Path) -> None:
    result = invoke("export", "1", "--format", "xml", "--db", str(history))
    assert result.exit_code == 2
    assert result.stdout == ""


def test_export_without_a_format_says_so_on_one_line(history: Path) -> None:
    proc = gpubench("export", "1", "--db", str(history))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(
        "gpubench: error: Missing option '--format' / '-f'. Choose from: json, csv, junit, prometheus, bmf (see: ")


def test_compare_verdicts_and_exit_codes(history: Path, tmp_path: Path) -> None:
    result = invoke("compare", "1", "2", "--db", str(history))
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "worse" in out and "same" in out and "lost capability" in out and "-20." in out
    assert "\x1b[" not in out
    result = invoke("compare", "1", "2", "--fail-on-regression", "--db", str(history))
    assert result.exit_code == 3
    assert "2 regression(s)" in result.stderr
    # a threshold above the slowdown turns the worse case into same; the lost capability still fails
    result = invoke("compare", "1", "2", "--threshold", "25%", "--fail-on-regression", "--json", "--db", str(history))
    assert result.exit_code == 3
    document = json.loads(result.stdout)
    verdicts = {c["case"]: c["verdict"] for c in document["comparisons"][0]["cases"]}
    assert verdicts == {READ.name: "same", WRITE.name: "same", DIRECT.name: "lost capability"}
    assert document["comparisons"][0]["threshold"] == 0.25


def test_compare_notes_cases_missing_from_a_side_and_interrupted_runs(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    both = measured(READ, noisy(1000.0, seed=1))
    base = run_of((both, measured(planned("psync", "randwrite-4k-qd1-j1-direct"), noisy(10.0, seed=2))), label="kernel 6.8", started=1700000100.0)
    lacking = run_of((measured(READ, noisy(1000.0, seed=3)),), label="kernel 6.8", started=1700000200.0)
    stopped = run_of((measured(READ, noisy(1000.0, seed=4)),), label="kernel 6.8", status=RunStatus.INTERRUPTED, started=1700000300.0)
    fill(db, base, lacking, stopped)
    missing_note = ("note: 1 case(s) not compared because one side lacks them (verdict 'not comparable'); "
                    "no regression is reported for them\n")
    result = invoke("compare", "1", "2", "--fail-on-regression", "--json", "--db", str(db))
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["comparisons"][0]["cases"][1]["verdict"] == "not comparable"
    assert result.stderr == missing_note
    assert document["notes"] == [missing_note.removeprefix("note: ").rstrip("\n")]
    result = invoke("compare", "1", "2", "3", "--fail-on-regression", "--db", str(db))
    assert result.exit_code == 0
    assert "1 same, 1 not comparable" in result.stdout and "note:" not in result.stdout
    assert result.stderr == "".join(missing_note.replace("note: ", f"note: run 1 (kernel 6.8) -> run {new} (kernel 6.8): ")
                                    for new in (2, 3)) + "note: run 3 was interrupted: compared only as far as it got\n"
    result = invoke("compare", "2", "3", "--fail-on-regression", "--db", str(db))
    assert result.exit_code == 0
    assert result.stderr == "note: run 3 was interrupted: compared only as far as it got\n"


def test_compare_notes_cases_the_two_sides_ran_differently(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    longer = planned("iouring", READ.name, options={"runtime": "3"})  # as run with -p iouring.runtime=3
    base = run_of((measured(READ, noisy(1000.0, seed=1)), measured(WRITE, noisy(900.0, seed=2))), started=1700000100.0)
    new = run_of((measured(longer, noisy(500.0, seed=3)), measured(WRITE, noisy(900.0, seed=4))), started=1700000200.0)
    fill(db, base, new)
    result = invoke("compare", "1", "2", "--fail-on-regression", "--json", "--db", str(db))
    assert result.exit_code == 0
    note = ("1 case(s) not compared although both sides ran them (verdict 'not comparable'; its note says why, "
            "here: parameters differ); no regression is reported for them")
    assert json.loads(result.stdout)["notes"] == [note]
    assert result.stderr == f"note: {note}\n"


def test_compare_json_several_new_runs_and_junit(history: Path, tmp_path: Path) -> None:
    (noise_only,) = fill(history, run_of(
        (measured(READ, noisy(1000.0, seed=6)), measured(WRITE, noisy(500.0, seed=7)), measured(DIRECT, noisy(300.0, seed=8))),
        label="kernel 6.8 again",
        started=1700200000.0,
    ))
    junit = tmp_path / "compare.xml"
    result = invoke("compare", "1", "2", str(noise_only), "--json", "--threshold", "0.05", "--junit", str(junit), "--db", str(history))
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert [c["new"]["id"] for c in document["comparisons"]] == [2, noise_only]
    assert [c["regressions"] for c in document["comparisons"]] == [2, 0]
    xml = junit.read_text()
    assert xml.count("<failure") == 2 and xml.count("<testsuite ") == 2


def _machine_that_moves(db: Path) -> None:
    """Six runs of one configuration: each tight, but the machine sits 30% higher in some."""
    levels = (1000.0, 1300.0, 1000.0, 1300.0, 1300.0, 1000.0)
    runs = [
        run_of((measured(READ, noisy(level, seed=i)),), label="same kernel", started=1700000000.0 + i)
        for i, level in enumerate(levels)
    ]
    fill(db, *runs)



def test_a_verdict_on_the_rounds_of_one_run_per_side_says_so(tmp_path: Path) -> None:
    """Tight rounds on either side, 30% apart: called better, and stderr says the verdict rests on
    one run per side; with several runs per side (each its own level) the note is gone."""
    def rounds_at(level: float, seed: int):  # type: ignore[no-untyped-def]
        samples = noisy(level, seed=seed)[:6]
        return measured(READ, rounds=[samples[0:2], samples[2:4], samples[4:6]])

    db = tmp_path / "r.db"
    fill(db, *(run_of((rounds_at(level, i),), label="kernel 6.8", started=1700000000.0 + i)
                for i, level in enumerate((1000.0, 1300.0, 1000.0, 1300.0))))
    single = invoke("compare", "1", "2", "--db", str(db))
    assert single.exit_code == 0 and "better" in single.stdout
    assert "note: 1 case(s) were judged better or worse on the rounds of one run per side" in single.stderr
    assert "--repeat 3" in single.stderr
    several_new = invoke("compare", "1", "2", "3", "--db", str(db))
    assert several_new.exit_code == 0
    assert "note: run 1 (kernel 6.8) -> run 2 (kernel 6.8): 1 case(s) were judged better or worse" in several_new.stderr
    assert "-> run 3" not in several_new.stderr  # 1 against 3 is the same level: nothing to say
    pooled = invoke("compare", "1,3", "2,4", "--db", str(db))
    assert pooled.exit_code == 0, pooled.stderr
    assert "one run per side" not in pooled.stderr


def test_compare_says_when_the_machine_itself_ran_at_another_speed(tmp_path: Path) -> None:
    """The CPU reference each sample carries: 30% apart between the sides is said on stderr, in the
    JSON and in the HTML; 2% apart (within the threshold) is not said."""
    def run_on(speed: float, i: int) -> Run:
        samples = noisy(1000.0, seed=i)[:6]
        result = measured(READ, rounds=[samples[0:2], samples[2:4], samples[4:6]], host_speed=[speed + k for k in range(6)])
        return run_of((result,), label="kernel 6.8", started=1700000000.0 + i)

    db = tmp_path / "m.db"
    fill(db, run_on(6000.0, 0), run_on(4200.0, 1), run_on(5880.0, 2), run_on(6010.0, 3))
    slower = invoke("compare", "1", "2", "--db", str(db), "--html", str(tmp_path / "c.html"))
    assert slower.exit_code == 0, slower.stderr
    assert ("note: by a fixed CPU reference timed before every repetition, the machine itself ran 30% slower in "
            "run 2 (kernel 6.8) than in run 1 (kernel 6.8): 4,202 vs 6,002 MB/s.") in slower.stderr
    assert "By a fixed CPU reference timed before every repetition, the machine itself ran 30% slower" in (tmp_path / "c.html").read_text()
    document = json.loads(invoke("compare", "1", "2", "--db", str(db), "--json").stdout)
    assert document["comparisons"][0]["machine_speed"] == {"base": 6002.5, "new": 4202.5}
    assert [n for n in document["notes"] if n.startswith("by a fixed CPU reference")]  # the stderr notes, in the JSON
    steady = invoke("compare", "1", "3", "--db", str(db))
    assert steady.exit_code == 0 and "machine itself" not in steady.stderr  # 2%: within the 5% threshold
    unmoved = invoke("compare", "1", "4", "--threshold", "0", "--db", str(db))
    assert unmoved.exit_code == 0 and "machine itself" not in unmoved.stderr  # 0.2% would read "ran 0% faster"
    shown = invoke("show", "2", "--db", str(db))
    assert "machine speed" in shown.stdout and "4,202 MB/s by a fixed CPU reference" in shown.stdout


def test_compare_pools_several_runs_per_side(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    _machine_that_moves(db)
    single = invoke("compare", "1", "2", "--fail-on-regression", "--db", str(db))
    assert single.exit_code == 0 and "better" in single.stdout
    assert "one run of one round per side" in single.stderr
    result = invoke("compare", "1,2,3", "4,5,6", "--fail-on-regression", "--json", "--db", str(db))
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    comparison = document["comparisons"][0]
    assert [r["id"] for r in comparison["base_runs"]] == [1, 2, 3]
    assert [r["id"] for r in comparison["new_runs"]] == [4, 5, 6]
    (case,) = comparison["cases"]
    assert case["verdict"] == "same" and case["note"] == "within the noise between runs (3 vs 3 runs)"
    assert len(case["base_medians"]) == 3 and case["base"]["n"] == 36
    assert "one round per side" not in result.stderr
    table = invoke("compare", "1,2,3", "4,5,6", "--db", str(db))
    assert "runs 1,2,3 (same kernel) -> runs 4,5,6 (same kernel)" in table.stdout


def test_compare_sides_by_label(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    runs = [run_of((measured(READ, noisy(1000.0, seed=i)),), label=label, started=1700000000.0 + i)
            for i, label in enumerate(["6.8", "6.8", "6.12", "6.8", "6.12", "6.12"])]
    runs.append(run_of((), label="6.12", status=RunStatus.INTERRUPTED, started=1700000009.0))
    fill(db, *runs)
    result = invoke("compare", "label:6.8", "label:6.12", "--json", "--db", str(db))
    assert result.exit_code == 0, result.stderr
    comparison = json.loads(result.stdout)["comparisons"][0]
    assert [r["id"] for r in comparison["base_runs"]] == [1, 2, 4]
    assert [r["id"] for r in comparison["new_runs"]] == [3, 5, 6]  # the interrupted run 7 is left out
    assert_one_line_error(gpubench("compare", "label:6.8", "label:7.0", "--db", str(db)), "no complete run labelled '7.0'")


@pytest.mark.parametrize(
    ("base", "new", "expected"),
    [
        ("1,2", "2,3", "run 2 is on both sides of the comparison"),
        ("1", "1", "run 1 is on both sides of the comparison"),
        ("6", "latest", "run 6 is on both sides of the comparison"),
        ("1,1", "2", "BASE '1,1' names run 1 twice"),
        ("1,,2", "3", "BASE '1,,2': an empty run name"),
        ("1,2", "9", "no run 9 in"),
        ("1", "label:", "NEW 'label:' names no label; give label:NAME (labels are in: gpubench list)"),
        ("label: ", "2", "BASE 'label: ' names no label"),
    ],
)
def test_compare_rejects_bad_run_sets(tmp_path: Path, base: str, new: str, expected: str) -> None:
    db = tmp_path / "r.db"
    _machine_that_moves(db)
    before = db.read_bytes()
    assert_one_line_error(gpubench("compare", base, new, "--db", str(db)), expected)
    assert db.read_bytes() == before


def test_a_label_with_commas_is_one_label(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    fill(db, *[run_of((measured(READ, noisy(1000.0, seed=i)),), label=label, started=1700000000.0 + i)
                for i, label in enumerate(["6.8,rc1", "6.8,rc1", "6.12"])])
    result = invoke("compare", "label:6.8,rc1", "3", "--json", "--db", str(db))
    assert result.exit_code == 0, result.stderr
    assert [r["id"] for r in json.loads(result.stdout)["comparisons"][0]["base_runs"]] == [1, 2]


def test_compare_refuses_one_file_for_two_outputs_before_writing_any(history: Path, tmp_path: Path) -> None:
    same = tmp_path / "out.xml"
    assert_one_line_error(gpubench("compare", "1", "2", "--html", str(same), "--junit", str(same), "--force", "--db", str(history)),
                           "is named for two outputs")
    assert_one_line_error(gpubench("compare", "1", "2", "2", "--html", str(tmp_path / "d.html"), "--db", str(history)),
                           "is named for two outputs")
    assert [p.name for p in tmp_path.iterdir()] == ["results.db"]


def test_compare_refuses_an_output_it_cannot_write_before_printing_anything(history: Path, tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("")
    assert_one_line_error(gpubench("compare", "1", "2", "--html", str(tmp_path / "missing" / "d.html"), "--db", str(history)),
                           f"cannot write {tmp_path / 'missing' / 'd.html'}: no directory {tmp_path / 'missing'}")
    assert_one_line_error(gpubench("compare", "1", "2", "--junit", str(tmp_path / "plain-file" / "d.xml"), "--db", str(history)),
                           f"{tmp_path / 'plain-file'} is not a directory")
    assert_one_line_error(gpubench("compare", "1", "2", "--json", "--junit", str(tmp_path), "--db", str(history)),
                           f"{tmp_path} is a directory; give a file name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain-file", "results.db"]


@pytest.mark.parametrize("threshold", ["5", "abc", "-3%", "150%"])
def test_compare_rejects_bad_thresholds_as_usage_errors(history: Path, threshold: str) -> None:
    result = invoke("compare", "1", "2", "--threshold", threshold, "--db", str(history))
    assert result.exit_code == 2
    assert result.stdout == ""


@pytest.mark.parametrize("threshold", ["100%", "-3%", "150%", "100", "inf", "nan"])
def test_compare_threshold_out_of_range_says_it_must_be_below_100_percent(history: Path, threshold: str) -> None:
    result = invoke("compare", "1", "2", "--threshold", threshold, "--db", str(history))
    assert result.exit_code == 2
    assert f"'{threshold}' must be at least 0% and below 100%" in result.stderr


def test_compare_bare_whole_number_threshold_suggests_the_percentage(history: Path) -> None:
    result = invoke("compare", "1", "2", "--threshold", "5", "--db", str(history))
    assert result.exit_code == 2
    assert "Invalid value for --threshold: '5' is ambiguous: write 5% for a percentage" in result.stderr


def test_compare_html(history: Path, tmp_path: Path) -> None:
    html_module = pytest.importorskip("gpubench.report.html", reason="the HTML report module is not in this checkout")
    if not hasattr(html_module, "render_comparison_html"):
        pytest.skip("gpubench.report.html has no render_comparison_html yet")
    out = tmp_path / "cmp.html"
    result = invoke("compare", "1", "2", "--html", str(out), "--db", str(history))
    assert result.exit_code == 0, result.stderr
    page = out.read_text()
    assert "<html" in page.lower() and "kernel 6.12" in page


def test_failed_commands_are_one_line_and_leave_the_database_alone(history: Path, tmp_path: Path) -> None:
    before = history.read_bytes()
    assert_one_line_error(gpubench("show", "42", "--db", str(history)), "no run 42")
    assert_one_line_error(gpubench("compare", "1", "deadbeef", "--db", str(history)), "no run with uid starting deadbeef")
    malformed = tmp_path / "bad.json"
    malformed.write_text('{"schema_version": 1, "uid": ')
    assert_one_line_error(gpubench("import", str(malformed), "--db", str(history)), "not valid JSON")
    wrong_version = tmp_path / "future.json"
    wrong_version.write_text(json.dumps({**run_of().to_dict(), "schema_version": 99}))
    assert_one_line_error(gpubench("import", str(wrong_version), "--db", str(history)), "schema_version 99 is newer")
    assert history.read_bytes() == before
    assert sorted(p.name for p in history.parent.iterdir() if p.name.startswith("results")) == ["results.db"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", [("show", "1"), ("export", "1", "-f", "csv"), ("compare", "1", "2", "--json")])
def test_a_full_standard_output_is_one_line(history: Path, args: tuple[str, ...]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GPUBENCH_DB"}
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "gpubench", *args, "--db", str(history)], stdout=full,
                              stderr=subprocess.PIPE, text=True, env=env, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == ["gpubench: error: cannot write to standard output: No space left on device"]


def test_corrupted_directory_and_read_only_databases(tmp_path: Path) -> None:
    corrupted = tmp_path / "corrupted.db"
    corrupted.write_bytes(os.urandom(4096))
    before = corrupted.read_bytes()
    assert_one_line_error(gpubench("list", "--db", str(corrupted)), "not a gpubench result database")
    export = tmp_path / "run.json"
    export.write_text(json.dumps(run_of((measured(),)).to_dict()))
    assert_one_line_error(gpubench("import", str(export), "--db", str(corrupted)), "not a gpubench result database")
    assert corrupted.read_bytes() == before
    assert_one_line_error(gpubench("show", "1", "--db", str(tmp_path)), "is a directory")
    # /proc cannot be written by anyone, root included
    assert_one_line_error(gpubench("import", str(export), "--db", "/proc/gpubench/results.db"), "cannot create the directory")
    missing = tmp_path / "missing.db"
    assert_one_line_error(gpubench("show", "latest", "--db", str(missing)), "no result history")
    assert not missing.exists()
