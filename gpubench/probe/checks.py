"""The small machinery every area module uses: the @check registry, kernel config and versions."""

from __future__ import annotations

import gzip
import re
from dataclasses import replace
from typing import Callable

from gpubench.probe.model import Capability, Evidence, Findings
from gpubench.probe.source import Source, SourceError

CheckFn = Callable[[Source, Findings], Capability]


def check(area: str, name: str) -> Callable[[CheckFn], CheckFn]:
    """Mark a function as the check that answers capability `name` of `area`."""

    def mark(fn: CheckFn) -> CheckFn:
        fn.area, fn.capability = area, name  # type: ignore[attr-defined]
        return fn

    return mark


def run_check(fn: CheckFn, src: Source) -> Capability:
    """Run one check; whatever goes wrong becomes an `unknown` verdict with the reason. A file the
    check read only in part (cut at the read limit) is said in its evidence."""
    findings = Findings(fn.area, fn.capability)  # type: ignore[attr-defined]
    first_cut = len(src.cuts)
    try:
        cap = fn(src, findings)
    except SourceError as e:
        cap = findings.unknown(str(e), fix="run as a user who can read it, or re-record the snapshot")
    except Exception as e:  # garbage in a file must not take the whole probe down
        cap = findings.unknown(f"could not interpret what was read ({type(e).__name__}: {e})")
    cut = tuple(Evidence(path, f"cut at {limit} bytes: what follows was not read") for path, limit in src.cuts[first_cut:])
    return replace(cap, evidence=cap.evidence + cut) if cut else cap


def recorded(src: Source, *paths: str) -> bool:
    """Whether the inputs of an area are there to be read: always on the live machine; in a
    snapshot, when any of `paths` (the folders the area reads, or their parents) exists. They are
    looked at live too, so that a recording carries them."""
    return any(src.exists(p) for p in paths) or src.live


def memo(src: Source, key: str, compute: Callable[[], object]) -> object:
    """Compute a value once per Source (several checks share driver and config readings)."""
    cache = src.__dict__.setdefault("_memo", {})
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def compact_ranges(ids: list[int]) -> str:
    """[0, 1, 2, 3, 8] -> '0-3,8', as the kernel writes CPU and node lists."""
    out, start = [], None
    for i, x in enumerate(ids):
        if start is None:
            start = x
        if i + 1 == len(ids) or ids[i + 1] != x + 1:
            out.append(str(start) if start == x else f"{start}-{x}")
            start = None
    return ",".join(out)


# --- kernel release -------------------------------------------------------------------------

def release(src: Source) -> str | None:
    return src.value("/proc/sys/kernel/osrelease")


def version_tuple(rel: str | None) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", rel or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


# --- kernel config --------------------------------------------------------------------------

class KernelConfig:
    """CONFIG_* options and where they came from (None when no config could be found)."""

    def __init__(self, options: dict[str, str], origin: str | None, problem: str = ""):
        self.options, self.origin, self.problem = options, origin, problem

    def get(self, key: str) -> str | None:
        """'y', 'm', a value, 'n' (explicitly not set), or None (no config known)."""
        if self.origin is None:
            return None
        return self.options.get(key, "n")

    def enabled(self, key: str) -> bool | None:
        v = self.get(key)
        return None if v is None else v in ("y", "m")

    def describe(self, key: str) -> str:
        v = self.get(key)
        if v is None:
            return "unknown (no kernel config found)"
        return "not set" if v == "n" else v


def parse_config(text: str) -> dict[str, str]:
    opts: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("CONFIG_") and "=" in line:
            k, v = line.split("=", 1)
            opts[k] = v.strip('"')
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            opts[line[2:-len(" is not set")]] = "n"
    return opts


def kernel_config(src: Source) -> KernelConfig:
    return memo(src, "kconfig", lambda: _load_config(src))  # type: ignore[return-value]


def _load_config(src: Source) -> KernelConfig:
    problems = []
    try:
        gz = src.bytes("/proc/config.gz")
        if gz is not None:
            opts = parse_config(gzip.decompress(gz).decode("utf-8", "replace"))
            if opts:
                return KernelConfig(opts, "/proc/config.gz")
            problems.append("/proc/config.gz holds no CONFIG_ lines")
    except (SourceError, OSError, EOFError) as e:
        problems.append(f"/proc/config.gz unusable ({e})")
    rel = release(src)
    if rel:
        path = f"/boot/config-{rel}"
        try:
            text = src.text(path)
            if text is not None:
                opts = parse_config(text)
                if opts:
                    return KernelConfig(opts, path)
                problems.append(f"{path} holds no CONFIG_ lines")
        except SourceError as e:
            problems.append(str(e))
    return KernelConfig({}, None, "; ".join(problems))
