"""Kernel area: release, boot command line, and where the kernel config came from."""

from gpubench.probe.checks import check, kernel_config, release
from gpubench.probe.model import Findings
from gpubench.probe.source import Source


@check("kernel", "kernel")
def kernel(src: Source, f: Findings):
    rel = release(src)
    f.saw("/proc/sys/kernel/osrelease", rel or "missing")
    cmdline = src.value("/proc/cmdline")
    if cmdline is not None and " -- " in cmdline:  # what follows is init's, not the kernel's
        cmdline = cmdline.split(" -- ", 1)[0] + " -- (init arguments not shown)"
    f.saw("/proc/cmdline", cmdline if cmdline is not None else "missing")
    cfg = kernel_config(src)
    f.saw("kernel config", cfg.origin or f"not found ({cfg.problem or 'no /proc/config.gz, no /boot/config-RELEASE'})")
    f.details.update(release=rel, cmdline=cmdline, config_origin=cfg.origin)
    if rel is None:
        return f.unknown("the kernel release could not be read", "is /proc mounted?")
    if cfg.origin is None:
        return f.partial(
            "no kernel config found: checks that need CONFIG_ options answer 'unknown'",
            f"load the configs module (modprobe configs) for /proc/config.gz, or install /boot/config-{rel}",
        )
    return f.yes()


CHECKS = [kernel]
