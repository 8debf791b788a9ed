"""Telemetry commands: `telemetry sources|record|show` (`calibrate telemetry` is in cli.calibrate)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from gpubench.cli.common import JsonOpt, emit_json
from gpubench.errors import Interrupted, UserError

if TYPE_CHECKING:
    from gpubench.telemetry.summary import Phase, TelemetrySummary

MAX_RECORD_S = 7 * 24 * 3600.0
HzOpt = typer.Option(10.0, "--hz", min=0.1, max=1000.0, help="Samples per second (CPU frequency is read at most once a second).")



def _fmt(value: Any, unit: str, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f} {unit}"


def rates_text(rates: dict[str, float], hz: float) -> str:
    """Each source with the rate it is read at, e.g. "nvml at 10 Hz, cpufreq at 1 Hz (its cap)"."""
    return ", ".join(f"{name} at {rate:g} Hz" + (" (its cap)" if rate < hz else "") for name, rate in rates.items())


def _phase_line(p: Phase) -> str:
    figures = ((p.power_mean_w, "mean {:.0f} W"), (p.temp_max_c, "max {:.0f} °C"), (p.cpu_mean_mhz, "CPU {:.0f} MHz"))
    extra = ", ".join(form.format(value) for value, form in figures if value is not None)
    return f"  {p.name:<15} {p.start:>8.2f} s .. {p.end:>8.2f} s  {extra}"


def summary_lines(s: TelemetrySummary) -> list[str]:
    """A telemetry summary as short human lines."""
    from gpubench.telemetry.summary import TelemetryStatus

    if s.status is TelemetryStatus.NONE:
        return ["telemetry: none (no readable source)"] + [f"  {k}: {v}" for k, v in s.not_available.items()]
    lines = [f"telemetry: {s.status.value} from {', '.join(s.samplers)}"]
    lines += [f"  partial: {name} stopped: {why}" for name, why in s.partial.items()]
    lines += [_phase_line(p) for p in s.phases]
    lines.append(f"  peak {_fmt(s.peak_w, 'W')}, sustained {_fmt(s.sustained_mean_w, 'W')}, limit {_fmt(s.power_limit_w, 'W', 0)}")
    if s.energy_j is not None:
        per_gb = f", {s.j_per_gb:.4f} J/GB" if s.j_per_gb is not None else ""
        lines.append(f"  energy {s.energy_j:.1f} J ({s.energy_source.value if s.energy_source else 'n/a'}){per_gb}")
    if s.throttled_pct_by_reason:
        lines.append("  throttled: " + ", ".join(f"{r} {pct:.1f}%" for r, pct in s.throttled_pct_by_reason.items()))
    if s.cooldown:
        cool = f" in {s.time_to_cool_s:.1f} s" if s.time_to_cool_s is not None else ""
        lines.append(f"  cooldown: {s.cooldown}{cool}")
    return lines


def register(app: typer.Typer, calibrate_app: typer.Typer) -> None:
    telemetry_app = typer.Typer(no_args_is_help=True, help="Power and thermal telemetry: what is readable here, record a trace, summarise one.")
    app.add_typer(telemetry_app, name="telemetry")

    @telemetry_app.command("sources")
    def sources(hz: float = HzOpt, as_json: bool = JsonOpt) -> None:
        """Which telemetry sources this machine can read, and why the others cannot be."""
        from gpubench.telemetry import open_telemetry

        tel = open_telemetry(None, hz)
        try:
            data = {"samplers": tel.samplers, "not_available": tel.not_available, "failures": tel.failures}
        finally:
            tel.close()
        if as_json:
            emit_json(data)
            return
        for name in data["samplers"]:
            typer.echo(f"{name:<10} readable")
        for name, why in data["not_available"].items():
            typer.echo(f"{name:<10} not available: {why}")
        for name, why in data["failures"].items():
            typer.echo(f"{name:<10} failed on first read: {why}")

    @telemetry_app.command("record")
    def record(
        out: Path = typer.Argument(..., metavar="OUT", help="Trace file to write (JSON; never overwritten)."),
        seconds: float = typer.Option(10.0, "--seconds", min=0.1, max=MAX_RECORD_S, help="How long to sample; Ctrl-C stops early and keeps what was sampled."),
        hz: float = HzOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Sample every readable source for a while and write a trace that `gpubench telemetry show` and `gpubench run --telemetry-replay` read."""
        from gpubench.files import NAME_TAKEN, check_output_path, write_user_file
        from gpubench.telemetry import open_telemetry
        from gpubench.telemetry.trace import trace_json

        check_output_path(out, taken=NAME_TAKEN)
        tel = open_telemetry(None, hz)
        try:
            if not tel.samplers:
                raise UserError("nothing to record: no telemetry source is readable here (" + "; ".join(f"{k}: {v}" for k, v in tel.not_available.items()) + ")")
            typer.echo(f"recording {seconds:g} s: {rates_text(tel.rates(), hz)}", err=True)
            interrupted = False
            with tel.around("record", baseline_s=0.0, cooldown_timeout_s=0.0) as window:
                try:
                    tel.clock.sleep(seconds)
                except KeyboardInterrupt:
                    interrupted = True
            write_user_file(out, trace_json(window.trace()), taken="appeared while recording; not replaced")
            summary = window.summary()
        finally:
            tel.close()
        if interrupted:
            raise Interrupted(f"recording interrupted; wrote {out} ({len(window.readings)} samples so far)")
        if as_json:
            emit_json({"trace": str(out), "samples": len(window.readings), "summary": summary.to_dict()})
        else:
            typer.echo(f"wrote {out} ({len(window.readings)} samples)", err=True)

    @telemetry_app.command("show")
    def show(
        trace: Path = typer.Argument(..., metavar="TRACE", help="A trace written by `gpubench telemetry record`."),
        bytes_moved: Optional[float] = typer.Option(None, "--bytes", min=1, help="Bytes the benchmark moved, for J/GB."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Summarise a recorded trace: phases, peak and sustained power, energy, throttling, time to cool."""
        from gpubench.telemetry.phases import summarize
        from gpubench.telemetry.trace import read_trace

        summary = summarize(read_trace(trace), bytes_moved)
        if as_json:
            emit_json(summary.to_dict())
        else:
            typer.echo("\n".join(summary_lines(summary)))
