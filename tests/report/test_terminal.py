"""Terminal tables print data as data: a label that looks like rich markup or an emoji code is shown as it is."""

from gpubench.report import formats
from gpubench.report.tables import comparison_table, results_table
from gpubench.report.terminal import stderr_console, stdout_console
from gpubench.results.compare import compare
from gpubench.results.model import Result, ResultStatus, Run, RunStatus
from gpubench.results.stats import summarize

LABEL = "[/tmp] kernel [bold]6.12 :fire:"


def a_run(uid: str) -> Run:
    samples = (10.0, 11.0, 10.5, 10.2, 10.8)
    result = Result("psync", "read-[/x]", {}, "MB/s", True, ResultStatus.OK, reason="[red]no :warning:",
                    samples=samples, summary=summarize(samples))
    return Run(uid, LABEL, 0.0, 1.0, RunStatus.COMPLETE, {}, {}, (result,), id=1)


def test_markup_in_data_prints_verbatim(capsys):
    console = stdout_console()
    console.print(results_table(a_run("a" * 32)))
    console.print(comparison_table(compare(a_run("a" * 32), a_run("b" * 32))))
    out = capsys.readouterr().out
    assert LABEL in out
    assert "read-[/x]" in out and "[red]no :warning:" in out


def test_messages_on_stderr_print_emoji_codes_verbatim(capsys):
    stderr_console().print("mount :x: failed")
    assert "mount :x: failed" in capsys.readouterr().err


LONG_CASE = "randread-4k-qd32-j1-buffered-registered-sqpoll-direct"
LONG_REASON = "no NVIDIA GPU found (probe: gpus = no); install the driver and run `gpubench probe` again to see why not"


def a_long_run(uid: str, status: ResultStatus, reason: str = "") -> Run:
    samples = (10.0, 11.0, 10.5, 10.2, 10.8)
    ok = status is ResultStatus.OK
    results = (Result("iouring", LONG_CASE, {}, "MB/s", True, status, reason=reason,
                      samples=samples if ok else (), summary=summarize(samples) if ok else None),)
    return Run(uid, "", 0.0, 1.0, RunStatus.COMPLETE, {}, {}, results, id=1)


def test_piped_tables_show_every_cell_in_full(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    console = stdout_console()
    assert not console.is_terminal
    console.print(results_table(a_long_run("a" * 32, ResultStatus.WAIVED, LONG_REASON)))
    waived = compare(a_long_run("a" * 32, ResultStatus.WAIVED, LONG_REASON), a_long_run("b" * 32, ResultStatus.WAIVED, LONG_REASON))
    console.print(comparison_table(waived))
    measured = compare(a_long_run("a" * 32, ResultStatus.OK), a_long_run("b" * 32, ResultStatus.OK))
    console.print(comparison_table(measured))
    out = capsys.readouterr().out
    cells = {cell.strip() for line in out.splitlines() for cell in line.split("│")}
    assert "…" not in out
    assert {LONG_CASE, "not comparable", "same", formats.p_value(measured.cases[0].p_value)} <= cells
    notes = " ".join(line.split("│")[-2].strip() for line in out.splitlines() if line.count("│") == 11)
    assert f"waived in the base run: {LONG_REASON}" in notes  # prose wraps at a word, all of it shown


def test_piped_messages_on_stderr_are_not_wrapped(capsys, monkeypatch):
    from gpubench.cli.progress import StderrProgress

    monkeypatch.delenv("COLUMNS", raising=False)
    message = "planned 10 case(s) in 3 benchmark(s), 3 rounds each; " + "waived: " + ", ".join(["memcpy", "p2p", "gds", "hmm"] * 5)
    StderrProgress().message(message)
    assert capsys.readouterr().err == message + "\n"


# ------------------------------------------------------------------ 80 columns


def _rendered(table, width: int = 80) -> list[str]:
    from rich.console import Console

    from gpubench.report.terminal import fit

    console = Console(width=width, record=True, highlight=False, markup=False, emoji=False)
    console.print(fit(table, width))
    return console.export_text().splitlines()


REASON = "no NVIDIA GPU found (probe: gpus = no): install the driver and its kernel modules first"


def _cases_table(suffix: str, reason: str = REASON):
    from rich.table import Table

    table = Table()
    table.add_column("case", overflow="fold")
    table.add_column("median", justify="right", overflow="fold")
    table.add_column("95% CI", justify="right", overflow="fold")
    table.add_column("reason", max_width=80, overflow="fold")
    for i in range(3):
        table.add_row(f"{LONG_CASE}{suffix}-{i}", "3,830 MB/s", "2,294 - 4,334", reason if i else "")
    return table


def test_fit_moves_sentences_under_the_table_before_it_leaves_a_column_out():
    lines = _rendered(_cases_table(""))
    assert max(map(len, lines)) <= 80 and "not shown" not in " ".join(lines)  # the notes were enough
    assert all(any(f"{LONG_CASE}-{i}" in line for line in lines) for i in range(3))  # every case name whole
    assert any("3,830" in line for line in lines) and any("2,294" in line for line in lines)
    text = " ".join(" ".join(lines).split())
    assert f"[1] {REASON}" in text and text.count(REASON) == 1  # one note for the two rows that share it

    lines = _rendered(_cases_table("-cold"))  # too wide even so: a column goes, and the table says which
    assert max(map(len, lines)) <= 80 and all(any(f"{LONG_CASE}-cold-{i}" in line for line in lines) for i in range(3))
    text = " ".join(" ".join(lines).split())
    assert "not shown at 80 columns: 95% CI" in text and "2,294" not in text and f"[1] {REASON}" in text


def test_the_probe_table_of_every_snapshot_fits_80_columns():
    from pathlib import Path

    from gpubench.probe import Source, probe
    from gpubench.report.terminal import profile_table

    for snapshot in sorted((Path(__file__).resolve().parents[2] / "probes").iterdir()):
        if not snapshot.is_dir():
            continue
        profile = probe(Source(snapshot))
        lines = _rendered(profile_table(profile))
        assert max(map(len, lines)) <= 80, snapshot.name
        for cap in profile.capabilities:
            assert any(cap.name in line for line in lines), (snapshot.name, cap.name)
        assert "not shown at 80 columns: evidence" in " ".join(" ".join(lines).split())  # the evidence goes first, why / fix stays


def test_fit_moves_sentences_under_the_table_even_where_one_starts_with_a_bracket():
    errno = "[Errno 13] Permission denied: the scratch file could not be opened for direct I/O on this mount"
    lines = _rendered(_cases_table("", errno))
    text = " ".join(" ".join(lines).split())
    assert max(map(len, lines)) <= 80 and "not shown" not in text  # the notes were enough: no column left out
    assert f"[1] {errno}" in text and "2,294" in text
