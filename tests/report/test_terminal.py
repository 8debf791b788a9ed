"""Terminal tables print data as data: a label that looks like rich markup is shown as it is."""

from gpubench.report.tables import comparison_table, results_table
from gpubench.report.terminal import stdout_console
from gpubench.results.compare import compare
from gpubench.results.model import Result, ResultStatus, Run, RunStatus
from gpubench.results.stats import summarize

LABEL = "[/tmp] kernel [bold]6.12"


def a_run(uid: str) -> Run:
    samples = (10.0, 11.0, 10.5, 10.2, 10.8)
    result = Result("psync", "read-[/x]", {}, "MB/s", True, ResultStatus.OK, reason="[red]no",
                    samples=samples, summary=summarize(samples))
    return Run(uid, LABEL, 0.0, 1.0, RunStatus.COMPLETE, {}, {}, (result,), id=1)


def test_markup_in_data_prints_verbatim(capsys):
    console = stdout_console()
    console.print(results_table(a_run("a" * 32)))
    console.print(comparison_table(compare(a_run("a" * 32), a_run("b" * 32))))
    out = capsys.readouterr().out
    assert LABEL in out
    assert "read-[/x]" in out and "[red]no" in out
