"""`gpubench calibrate iouring`: gpubench's io_uring loop against fio, interleaved, on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gpubench.cli.common import JsonOpt, emit_json


def register(app: typer.Typer, calibrate_app: typer.Typer) -> None:
    @calibrate_app.command("iouring")
    def iouring(
        runtime: float = typer.Option(10.0, "--runtime", min=0.1, help="Seconds per measurement."),
        rounds: int = typer.Option(3, "--rounds", min=1, help="Interleaved rounds (gpubench and fio once per case each)."),
        as_json: bool = JsonOpt,
        directory: Optional[Path] = typer.Option(None, "--dir", metavar="PATH", help="Directory on a disk-backed filesystem for the test file (default: the temporary directory)."),
        size: str = typer.Option("1g", "--size", help="Size of the test file, e.g. 512m, 1g."),
    ) -> None:
        """gpubench/fio throughput ratios for 4 KiB randread QD32 (warm page cache and O_DIRECT) and
        128 KiB sequential read QD8 O_DIRECT, with one job and with one job per core."""
        from gpubench.calibrate.iouring import calibrate, calibration_table
        from gpubench.bench.core.params import parse_size
        from gpubench.report.terminal import stdout_console

        result = calibrate(runtime, rounds, directory, parse_size("calibrate iouring", "--size", size, default_unit=""),
                           progress=lambda m: typer.echo(m, err=True))
        if as_json:
            emit_json(result.to_dict())
        else:
            stdout_console().print(calibration_table(result))
