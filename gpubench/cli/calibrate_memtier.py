"""`gpubench calibrate memtier`: memtier's triad and pointer chase against a C reference built here."""

from __future__ import annotations

import statistics
from typing import Optional

import typer

from gpubench.cli.common import JsonOpt, emit_json


def calibrate_memtier_command(
    size: float = typer.Option(256, "--size", metavar="MiB", help="Each triad array and the chase buffer, in MiB (far above the last-level cache)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, metavar="N", help="Triad threads (default: every CPU of the first CPU node)."),
    rounds: int = typer.Option(5, "--rounds", min=1, metavar="N", help="Interleaved rounds; the table gives the median, quartiles and range of the per-round ratios."),
    hops: int = typer.Option(5_000_000, "--hops", min=1, metavar="N", help="Dependent loads per chase measurement."),
    best_of: int = typer.Option(5, "--best-of", min=1, metavar="K", help="Triad passes per measurement; the fastest counts, as in STREAM."),
    as_json: bool = JsonOpt,
) -> None:
    """Compare memtier's triad GB/s and pointer-chase ns with C (cc -O3 -fopenmp -march=native), in one run.

    Same sizes, threads, CPUs, memory node and huge-page advice on both sides; rounds alternate
    which side goes first. Goals: triad at least 0.9x of C, latency within 10% of C."""
    from gpubench.calibrate.memtier import calibrate
    from gpubench.probe import Source, probe
    from gpubench.report.terminal import stderr_console

    console = stderr_console()
    profile = probe(Source("/"), ["cxl"])
    result = calibrate(profile, size_mib=size, threads=threads, rounds=rounds, hops=hops, best_of=best_of,
                       progress=lambda message: console.print(message, style="dim"))
    if as_json:
        emit_json(result.to_dict())
        return
    _print_table(result)


def _print_table(result) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table
    from rich.text import Text

    from gpubench.report.terminal import stdout_console

    table = Table(
        title=(
            f"memtier vs C: {result.array_bytes / (1 << 20):g} MiB arrays, {result.chase_bytes / (1 << 20):g} MiB chase, "
            f"{result.threads} thread(s) on CPUs {','.join(map(str, result.cpus))}, node {result.node}, "
            f"{result.rounds} interleaved rounds, triad best of {result.best_of}"
        ),
        title_justify="left",
    )
    for column in ("measure", "gpubench (median)", "C (median)", "ratio", "ratio IQR", "ratio range", "goal", "met"):
        table.add_column(column, justify="left" if column in ("measure", "goal") else "right")
    for row in result.rows:
        q1, q3 = row.ratio_quartiles
        table.add_row(
            Text.assemble(row.name, "\n", (f"{row.gpubench_variant}\nvs {row.c_variant}", "dim")),
            f"{statistics.median(row.gpubench):.2f} {row.unit}",
            f"{statistics.median(row.c):.2f} {row.unit}",
            f"{row.ratio:.3f}",
            f"{q1:.3f}-{q3:.3f}",
            f"{min(row.ratios):.3f}-{max(row.ratios):.3f}",
            row.goal,
            "yes" if row.met else "NO",
        )
    console = stdout_console()
    console.print(table)
    console.print(f"C: {result.compiler}")
    for side, how in result.placement.items():
        console.print(f"placement, {side}: {how}")


def register(app: typer.Typer, calibrate_app: typer.Typer) -> None:
    calibrate_app.command("memtier")(calibrate_memtier_command)
