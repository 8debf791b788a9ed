"""`gpubench probe` and `gpubench snapshot`: what this kernel (or a recorded snapshot) can do for
GPU data paths, and the recording that replays it."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from gpubench.cli.common import JsonOpt, emit_json
from gpubench.errors import UserError

AreaOpt = typer.Option(None, "--area", "-a", metavar="AREA", help="Probe only this area (repeatable): kernel, iouring, gpu, hmm, p2p, gds, cxl, iommu, links.")
RootOpt = typer.Option(None, "--root", metavar="DIR|TAR", help="Read a recorded snapshot instead of this machine: a directory, or an archive written by `gpubench snapshot`.")


def probe_command(root: Optional[Path] = RootOpt, area: Optional[List[str]] = AreaOpt, as_json: bool = JsonOpt) -> None:
    """Show what this kernel can do for GPU data paths: a verdict per capability, with evidence and a fix."""
    from gpubench.probe import Profile, Source, probe

    def show(profile: Profile) -> None:
        if as_json:
            emit_json(profile.to_dict())
        else:
            from gpubench.report.terminal import fit, profile_table, stdout_console

            console = stdout_console()
            console.print(fit(profile_table(profile), console.width))

    if root is None:
        show(probe(Source("/"), area))
        return
    from gpubench.probe.snapshot import open_root  # tarfile and the rest: only for a snapshot

    with open_root(root) as src:
        show(probe(src, area))


def snapshot_command(
    out: Path = typer.Argument(..., metavar="OUT", help="Archive to write, e.g. mybox.tar.gz (never overwritten)."),
    area: Optional[List[str]] = AreaOpt,
    hostname: bool = typer.Option(False, "--hostname", help="Also record the hostname (left out by default)."),
) -> None:
    """Record exactly the files and command outputs the probes read, so `probe --root OUT` replays them.

    No environment, no serial numbers or UUIDs, no hostname unless asked."""
    from gpubench.files import NAME_TAKEN, check_output_path
    from gpubench.probe.snapshot import record, snapshot_meta, write_snapshot

    if str(out) == "-":
        raise UserError("snapshot writes an archive file: give its name, e.g. mybox.tar.gz (or /dev/stdout to pipe it)")
    check_output_path(out, taken=NAME_TAKEN)
    profile, rec = record(area, hostname)
    n = write_snapshot(rec, out, snapshot_meta(profile, area))
    typer.echo(f"wrote {out} ({n} entries); replay with: gpubench probe --root {out}", err=True)


def register(app: typer.Typer, calibrate_app: typer.Typer) -> None:
    app.command("probe")(probe_command)
    app.command("snapshot")(snapshot_command)
