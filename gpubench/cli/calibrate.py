"""`gpubench calibrate iouring|memtier|telemetry`: gpubench's own measuring loops against a
reference (fio, C built here, gpubench without telemetry), interleaved on this machine.

The calibrations live in gpubench.calibrate; this module parses, calls them and draws their tables.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from gpubench.cli.common import JsonOpt, emit_json
from gpubench.cli.telemetry import HzOpt, rates_text

if TYPE_CHECKING:
    from rich.table import Table

    from gpubench.calibrate import iouring, memtier, telemetry
    from gpubench.calibrate.paired import PairedRatios


def _ci(p: PairedRatios, digits: int) -> str:
    """The 95% confidence interval of the ratios' median, as a table cell."""
    s = p.summary
    return f"{s.ci_low:.{digits}f}-{s.ci_high:.{digits}f}" if s else "-"


def _columns(table: Table, columns: tuple[tuple[str, bool], ...]) -> None:
    """(header, may wrap): text wraps, figures never do."""
    for header, wraps in columns:
        table.add_column(header, justify="left" if wraps else "right", no_wrap=not wraps)


def iouring_command(
    runtime: float = typer.Option(10.0, "--runtime", min=0.1, help="Seconds per measurement."),
    rounds: int = typer.Option(3, "--rounds", min=1, help="Interleaved rounds (gpubench and fio once per case each)."),
    as_json: bool = JsonOpt,
    directory: Optional[Path] = typer.Option(None, "--dir", metavar="PATH", help="Directory on a disk-backed filesystem for the test file (default: the temporary directory)."),
    size: str = typer.Option("1g", "--size", help="Size of the test file, e.g. 512m, 1g."),
) -> None:
    """gpubench/fio throughput ratios for 4 KiB randread QD32 (warm page cache and O_DIRECT) and
    128 KiB sequential read QD8 O_DIRECT, with one job and with one job per core."""
    from gpubench.bench.core.params import parse_size
    from gpubench.calibrate.iouring import calibrate
    from gpubench.report.terminal import fit, stdout_console

    result = calibrate(runtime, rounds, directory, parse_size("calibrate iouring", "--size", size, default_unit=""),
                       progress=lambda m: typer.echo(m, err=True))
    if as_json:
        emit_json(result.to_dict())
    else:
        console = stdout_console()
        console.print(fit(iouring_table(result), console.width))


def iouring_table(cal: iouring.Calibration) -> Table:
    from rich.table import Table

    from gpubench.bench.engines.iofile import format_size

    table = Table(title=f"gpubench io_uring vs fio {cal.fio_version} ({cal.rounds} interleaved rounds x "
                        f"{cal.runtime:g} s, {format_size(cal.file_size)} file on {cal.filesystem})")
    _columns(table, (("case", True), ("jobs", False), ("gpubench\nMB/s", False), ("fio\nMB/s", False), ("ratio", False),
                     ("95% CI", False), ("goal", False), ("", False), ("cached", False)))
    for o in cal.outcomes:
        table.add_row(
            o.case.label, str(o.case.jobs),
            f"{statistics.median(o.gpubench_mbps):.0f}" if o.gpubench else "-",
            f"{statistics.median(o.fio_mbps):.0f}" if o.fio else "-",
            f"{o.ratio:.2f}x", _ci(o.paired, 2), f">= {o.case.goal:g}x",
            "met" if o.met else "missed",
            "-" if o.least_resident is None else f"{o.least_resident:.0%}",
        )
    if cal.page_cache:
        table.caption = (f"warm file: {cal.page_cache}; cached = the least share of the file in the page cache "
                         f"before or after any warm measurement")
    return table


def memtier_command(
    size: float = typer.Option(256, "--size", metavar="MiB", help="Each triad array and the chase buffer, in MiB (far above the last-level cache)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, metavar="N", help="Triad threads (default: every CPU of the first CPU node)."),
    rounds: int = typer.Option(5, "--rounds", min=1, metavar="N", help="Interleaved rounds; the table gives the median, 95% confidence interval and quartiles of the per-round ratios (--json adds the range)."),
    hops: int = typer.Option(5_000_000, "--hops", min=1, metavar="N", help="Dependent loads per chase measurement."),
    best_of: int = typer.Option(5, "--best-of", min=1, metavar="K", help="Triad passes per measurement; the fastest counts, as in STREAM."),
    as_json: bool = JsonOpt,
) -> None:
    """Compare memtier's triad GB/s and pointer-chase ns with C (cc -O3 -fopenmp -march=native), in one run.

    Same sizes, threads, CPUs, memory node and huge-page advice on both sides; rounds alternate
    which side goes first. Goals: triad at least 0.9x of C, latency within 10% of C."""
    from gpubench.calibrate.memtier import calibrate
    from gpubench.probe import Source, probe
    from gpubench.report.terminal import fit, stderr_console, stdout_console

    console = stderr_console()
    profile = probe(Source("/"), ["cxl"])
    result = calibrate(profile, size_mib=size, threads=threads, rounds=rounds, hops=hops, best_of=best_of,
                       progress=lambda message: console.print(message, style="dim"))
    if as_json:
        emit_json(result.to_dict())
        return
    out = stdout_console()
    out.print(fit(memtier_table(result), out.width))
    out.print(f"C: {result.compiler}")
    for side, how in result.placement.items():
        out.print(f"placement, {side}: {how}")


def memtier_table(result: memtier.Calibration) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=(
            f"memtier vs C: {result.array_bytes / (1 << 20):g} MiB arrays, {result.chase_bytes / (1 << 20):g} MiB chase, "
            f"{result.threads} thread(s) on CPUs {','.join(map(str, result.cpus))}, node {result.node}, "
            f"{result.rounds} interleaved rounds, triad best of {result.best_of}"
        ),
        title_justify="left",
    )
    _columns(table, (("measure", True), ("gpubench\n(median)", False), ("C\n(median)", False), ("ratio", False), ("95% CI", False),
                     ("ratio IQR", False), ("goal", True), ("met", False)))
    for row in result.rows:
        s = row.paired.summary
        table.add_row(
            Text.assemble(row.name, "\n", (f"{row.gpubench_variant}\nvs {row.c_variant}", "dim")),
            f"{statistics.median(row.gpubench):.2f} {row.unit}",
            f"{statistics.median(row.c):.2f} {row.unit}",
            f"{row.ratio:.3f}",
            _ci(row.paired, 3),
            f"{s.q1:.3f}-{s.q3:.3f}" if s else "-",
            row.goal.text("C"),
            "yes" if row.met else "NO",
        )
    return table


def telemetry_command(
    seconds: float = typer.Option(0.5, "--seconds", min=0.05, help="Length of one run of the workload."),
    rounds: int = typer.Option(20, "--rounds", min=1, help="Rounds of three runs: without telemetry, with it, without it again."),
    hz: float = HzOpt,
    workload: str = typer.Option("python", "--workload", help="python (needs the interpreter lock: the worst case) or numpy."),
    as_json: bool = JsonOpt,
) -> None:
    """Measure what telemetry sampling costs: the same fixed work with and without it, interleaved in one run."""
    from gpubench.calibrate.telemetry import calibrate

    result = calibrate(seconds, rounds, hz, workload, progress=lambda m: typer.echo(m, err=True))
    if as_json:
        emit_json(result.to_dict())
    else:
        typer.echo("\n".join(telemetry_lines(result)))


def telemetry_lines(result: telemetry.Calibration) -> list[str]:
    mean_s = sum(result.without_s) / len(result.without_s)
    lines = [f"telemetry overhead with {rates_text(result.rates, result.hz)}, {result.workload} workload, "
             f"{result.rounds} rounds of ~{mean_s:.2f} s runs:"]
    for label, s in (("with telemetry", result.overhead), ("control (none)", result.noise)):
        lines.append(f"  {label}: median {s.median:+.2f}% (95% CI {s.ci_low:+.2f}% .. {s.ci_high:+.2f}%, "
                     f"IQR {s.q1:+.2f}% .. {s.q3:+.2f}%, min {s.minimum:+.2f}%, max {s.maximum:+.2f}%)")
    lines.append(f"  all runs together: {result.total_pct:+.2f}%; fastest run with against fastest without: {result.best_pct:+.2f}%")
    lines.append(f"  sampling: {result.samples_taken} samples, {result.sample_cpu_ms:.3f} ms CPU each ({result.sample_cost_ms:.3f} ms wall); "
                 f"CPU used = {result.sampler_cpu_pct:.3f}% of the benchmark time")
    return lines


def register(app: typer.Typer, calibrate_app: typer.Typer) -> None:
    calibrate_app.command("iouring")(iouring_command)
    calibrate_app.command("memtier")(memtier_command)
    calibrate_app.command("telemetry")(telemetry_command)
