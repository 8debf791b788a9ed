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


def probe_command(
    root: Optional[Path] = RootOpt,
    area: Optional[List[str]] = AreaOpt,
    kernel: Optional[str] = typer.Option(None, "--kernel", metavar="VMLINUZ|PACKAGE", help="Boot this kernel image (or Debian package, e.g. linux-image-6.12-amd64, fetched and unpacked, never installed) in QEMU, probe inside, and show its verdicts beside the running kernel's (or the --root snapshot's) with what differs."),
    modules: Optional[Path] = typer.Option(None, "--modules", metavar="DIR", help="With --kernel: its lib/modules/RELEASE directory (default: beside the image, as a package lays it out)."),
    kernel_config: Optional[Path] = typer.Option(None, "--kernel-config", metavar="FILE", help="With --kernel: its config-RELEASE (default: beside the image); the VM's config-based verdicts need it."),
    topology: Optional[str] = typer.Option(None, "--topology", metavar="host|two-nodes|lower-tier|cxl|FILE", help="With --kernel: the VM's NUMA nodes: a mirror of this machine's (host, the default), a built-in one, or a JSON description."),
    as_json: bool = JsonOpt,
) -> None:
    """Show what this kernel can do for GPU data paths: a verdict per capability, with evidence and a fix.

    With --kernel, boot another kernel in QEMU and show its verdicts beside this one's."""
    if kernel is not None or modules or kernel_config or topology:
        from gpubench.cli.probe_kernel import probe_kernel

        return probe_kernel(root, area, kernel, modules, kernel_config, topology, as_json)
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
