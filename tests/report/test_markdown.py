"""compare --markdown: GitHub-flavoured Markdown a CI summary page takes as is, read back here as a
table parser reads it."""

from __future__ import annotations

import re
from dataclasses import replace

from gpubench.report.markdown import COLUMNS, comparisons_markdown
from gpubench.results.compare import compare
from tests.cli import fill, invoke
from tests.factories import CHASE, RANDREAD, RANDWRITE, SEQREAD, SEQWRITE, measured, noisy, run_of, waived

_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def _cells(row: str) -> list[str]:
    """A GFM table row's cells as they read rendered: emphasis and escapes undone."""
    inner = row.strip()[1:-1]
    cells = [cell.strip() for cell in _UNESCAPED_PIPE.split(inner)]
    cells = [cell[2:-2] if len(cell) > 4 and cell.startswith("**") and cell.endswith("**") else cell for cell in cells]
    return [re.sub(r"\\(.)", r"\1", cell) for cell in cells]


def _tables(text: str) -> list[list[dict[str, str]]]:
    """Every table of the document as rows of {header: cell}."""
    tables, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("| ") and i + 1 < len(lines) and re.fullmatch(r"\| (-+:? \| )*-+:? \|", lines[i + 1]):
            header, rows = _cells(line), []
            for row in lines[i + 2:]:
                if not row.startswith("| "):
                    break
                cells = _cells(row)
                assert len(cells) == len(header), row
                rows.append(dict(zip(header, cells)))
            tables.append(rows)
    return tables


AWKWARD = "a | pipe, a *star* and\na newline <b>"


def _comparison():  # type: ignore[no-untyped-def]
    base = run_of((measured(RANDREAD, noisy(1000.0, seed=1)), measured(SEQREAD, noisy(500.0, seed=2)), measured(RANDWRITE),
                   measured(CHASE, noisy(100.0, seed=3)), replace(measured(SEQWRITE), case=AWKWARD)),
                  label="6.8", id=1, metadata={"kernel": "6.8.0"})
    new = run_of((measured(RANDREAD, noisy(800.0, seed=4)), measured(SEQREAD, noisy(500.0, seed=5)), waived(RANDWRITE, "io_uring disabled"),
                  measured(CHASE, noisy(130.0, seed=6)), replace(measured(SEQWRITE), case=AWKWARD)),
                 label="6.12", id=2, metadata={"kernel": "6.12.0"})
    return compare(base, new)


def test_one_row_per_case_that_a_table_parser_reads_back() -> None:
    comparison = _comparison()
    text = comparisons_markdown([comparison], ["a note | with a pipe"])
    settings, cases = _tables(text)
    assert [row["setting"] for row in settings] == ["kernel release"]
    assert settings[0]["base"] == "6.8.0" and settings[0]["new"] == "6.12.0"
    assert [row["case"] for row in cases] == [" ".join(c.case.split()) for c in comparison.cases]  # lines joined
    assert list(cases[0]) == list(COLUMNS)
    by_case = {row["case"]: row for row in cases}
    assert by_case[RANDREAD.name]["verdict"] == "worse" and by_case[RANDREAD.name]["change"].startswith("-20.")
    assert "| **worse** |" in text  # a regression stands out
    assert by_case[RANDWRITE.name]["verdict"] == "lost capability"
    assert by_case[CHASE.name]["unit"] == "ns (lower)" and by_case[CHASE.name]["verdict"] == "worse"
    assert by_case[AWKWARD.replace("\n", " ")]["verdict"] == "same"  # one cell, whatever the name holds
    assert text.startswith("### gpubench: run 1 (6.8) → run 2 (6.12)\n")
    assert "Threshold 5.0%: 2 worse, 2 same, 1 lost capability; 3 regression(s).\n" in text


def test_notes_are_numbered_footnotes_under_the_table_and_the_comparison_notes_last() -> None:
    comparison = _comparison()
    text = comparisons_markdown([comparison], ["a note | with a pipe"])
    _, cases = _tables(text)
    footnotes = dict(re.findall(r"^(\d+)\. (.*)$", text, flags=re.M))
    marked = {row["case"]: row["note"] for row in cases if row["note"]}
    lost = marked[RANDWRITE.name]
    assert re.fullmatch(r"\[\d+\]", lost)
    assert footnotes[lost.strip("[]")].startswith("lost capability: ran in the base run, waived in the new run: io\\_uring disabled")
    assert marked.get(RANDREAD.name) is None  # a worse case's numbers speak for it
    assert text.rstrip().endswith("- a note \\| with a pipe")


def test_compare_markdown_on_stdout_and_not_with_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    comparison = _comparison()
    db = tmp_path / "r.db"
    fill(db, comparison.base, comparison.new)
    result = invoke("compare", "1", "2", "--markdown", "--db", str(db))
    assert result.exit_code == 0, result.stderr
    (_, cases) = _tables(result.stdout)
    assert len(cases) == len(comparison.cases)
    assert "┃" not in result.stdout
    both = invoke("compare", "1", "2", "--markdown", "--json", "--db", str(db))
    assert both.exit_code == 2 and both.stdout == ""
