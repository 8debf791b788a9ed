"""`gpubench probe --kernel`: what another kernel would do on this machine, beside the running one."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from gpubench.cli.common import UsageError, emit_json


def probe_kernel(root: Optional[Path], area: Optional[List[str]], kernel: Optional[str], modules: Optional[Path],
                 kernel_config: Optional[Path], topology: Optional[str], as_json: bool) -> None:
    from gpubench.probe import Source, probe
    from gpubench.probe.snapshot import open_root
    from gpubench.report.terminal import stderr_console
    from gpubench.vm.compare import needed_tools, probe_kernel as compare
    from gpubench.vm.kernels import kernel_files, kernel_option
    from gpubench.vm.topology import topology_from_option

    if kernel is None:
        raise UsageError("--modules, --kernel-config and --topology go with --kernel")
    named = kernel_option(kernel)
    tools = needed_tools()
    console = stderr_console()

    def progress(message: str) -> None:
        console.print(message, style="dim")

    if root is None:
        running = probe(Source("/"), area)
    else:
        with open_root(root) as src:
            running = probe(src, area)
    machine = topology_from_option(topology or "host", running)
    result = compare(running, kernel_files(named, modules, kernel_config, progress), machine, area, tools, progress)
    if as_json:
        emit_json(result.to_dict())
    else:
        _print(result)


def _print(result) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table
    from rich.text import Text

    from gpubench.report.terminal import STATUS_STYLE, fit, stdout_console

    def verdict(cap) -> Text:  # type: ignore[no-untyped-def]
        return Text(cap.status.value, style=STATUS_STYLE[cap.status]) if cap is not None else Text("-")

    table = Table(title=f"running: {result.running_release}; in VM: {result.kernel.describe()}", title_justify="left")
    table.add_column("area", style="dim", no_wrap=True)
    table.add_column("capability", no_wrap=True)
    table.add_column("running", no_wrap=True)
    table.add_column("in VM", max_width=24, overflow="fold")
    table.add_column("difference", max_width=60, overflow="fold")
    for row in result.rows:
        after = row.change.after
        shown = verdict(after) if after is None or row.booted_text == after.status.value else Text(row.booted_text, style="dim")
        table.add_row(row.change.area, row.change.name, verdict(row.change.before), shown, Text(row.difference, style="bold" if row.difference else ""))
    console = stdout_console()
    console.print(fit(table, console.width))
    differing = sum(1 for r in result.rows if r.difference and r.change.name != "kernel")
    console.print(f"{differing} of {len(result.rows) - 1} capabilities differ. VM topology: {result.topology.description}; "
                  f"booted under {result.accel.upper()} in {result.boot_seconds:.0f} s.")
    from gpubench.vm.compare import CONFIG_ONLY

    console.print(CONFIG_ONLY + ".")
