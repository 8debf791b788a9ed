"""CXL area: the memory tiers and NUMA nodes (probe/numa.py), and CXL memory devices and regions.

What is read, and where the kernel documents it:
- /sys/bus/cxl/devices/{memX,regionZ,endpointX,decoderX.Y,dax_regionZ}: Documentation/ABI/testing/sysfs-bus-cxl;
  daxX.Y/{target_node,driver} below dax_regionZ: Documentation/ABI/testing/sysfs-bus-dax.

The benchmark planner reads `details` of "cxl memory"; keep its keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gpubench.probe.checks import check, kernel_config
from gpubench.probe.model import Findings
from gpubench.probe.numa import int_file, memory_tiers, numa_nodes
from gpubench.probe.rules import NO, PARTIAL, UNKNOWN, YES, Rule, always, decide
from gpubench.probe.source import Source

CXL_BUS = "/sys/bus/cxl"
CXL_DEVICES = "/sys/bus/cxl/devices"
CXL_CONFIGS = ("CONFIG_CXL_BUS", "CONFIG_CXL_MEM", "CONFIG_CXL_REGION")
GIB = 1 << 30


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / GIB:g} GiB"


def _bytes_file(src: Source, f: Findings, path: str, problems: list[str]) -> int | None:
    """CXL sizes are printed as hexadecimal ('0x2000000000')."""
    text = src.value(path)
    if text is None:
        return None
    f.saw(path, text)
    try:
        return int(text, 0)
    except ValueError:
        problems.append(f"{path} is not a size: {text[:40]!r}")
        return None


def _endpoint_memdevs(src: Source, names: list[str]) -> dict[str, str]:
    """endpoint port id -> memdev name, from endpointX/uport (a link to the memdev)."""
    owners = {}
    for name in names:
        m = re.fullmatch(r"endpoint(\d+)", name)
        target = src.readlink(f"{CXL_DEVICES}/{name}/uport") if m else None
        if m and target:
            owners[m.group(1)] = target.rstrip("/").rsplit("/", 1)[-1]
    return owners


def _read_memdev(src: Source, f: Findings, name: str, problems: list[str]) -> dict[str, Any]:
    base = f"{CXL_DEVICES}/{name}"
    ram = _bytes_file(src, f, f"{base}/ram/size", problems)
    pmem = _bytes_file(src, f, f"{base}/pmem/size", problems)
    if ram is None and pmem is None:
        problems.append(f"{base} has neither ram/size nor pmem/size")
    numa_text = src.value(f"{base}/numa_node")
    numa_node = None
    if numa_text is not None:
        f.saw(f"{base}/numa_node", numa_text)
        try:
            numa_node = int(numa_text)
        except ValueError:
            problems.append(f"{base}/numa_node is not a number: {numa_text[:40]!r}")
    return {
        "name": name,
        "ram_bytes": ram or 0,
        "pmem_bytes": pmem or 0,
        # the CPU node closest to the device's PCIe attachment (-1 when the platform says none)
        "numa_node": numa_node if numa_node is not None and numa_node >= 0 else None,
        "memory_nodes": [],
    }


def _read_dax(src: Source, f: Findings, region_id: str, problems: list[str]) -> list[dict[str, Any]]:
    """The DAX devices of a region: bound to kmem, each is memory online in its target node."""
    base = f"{CXL_DEVICES}/dax_region{region_id}"
    out = []
    for name in src.listdir(base):
        if not re.fullmatch(r"dax\d+\.\d+", name):
            continue
        target = int_file(src, f"{base}/{name}/target_node", problems)
        link = src.readlink(f"{base}/{name}/driver")
        driver = link.rstrip("/").rsplit("/", 1)[-1] if link else None
        f.saw(f"{base}/{name}", f"driver {driver or 'none'}, target_node {target}")
        out.append({"name": name, "driver": driver, "target_node": target})
    return out


def _read_targets(src: Source, f: Findings, base: str) -> list[str]:
    """The endpoint decoders a region interleaves across (its targetN attributes)."""
    targets = [src.value(f"{base}/{entry}") for entry in src.listdir(base) if re.fullmatch(r"target\d+", entry)]
    found = [t for t in targets if t]
    if found:
        f.saw(f"{base}/target*", ", ".join(found))
    return found


def _read_region(src: Source, f: Findings, name: str, owners: dict[str, str], problems: list[str]) -> dict[str, Any]:
    base = f"{CXL_DEVICES}/{name}"
    size = _bytes_file(src, f, f"{base}/size", problems)
    mode = src.value(f"{base}/mode")
    f.saw(f"{base}/mode", mode if mode is not None else "missing")
    commit = src.value(f"{base}/commit")
    targets = _read_targets(src, f, base)
    memdevs = []
    for decoder in targets:
        m = re.fullmatch(r"decoder(\d+)\.\d+", decoder)
        if m and m.group(1) in owners:
            memdevs.append(owners[m.group(1)])
    dax = _read_dax(src, f, name[len("region"):], problems)
    online = [d["target_node"] for d in dax if d["driver"] == "kmem" and d["target_node"] is not None and d["target_node"] >= 0]
    if size is None and src.value(f"{base}/size") is None:
        problems.append(f"{base}/size is missing")
    return {
        "name": name,
        "size": size or 0,
        "mode": mode or "unknown",
        "committed": {"1": True, "0": False}.get(commit or ""),
        "targets": targets,
        "memdevs": memdevs,
        "dax": dax,
        "numa_node": online[0] if online else None,
    }


def _describe_memdev(memdev: dict[str, Any]) -> str:
    parts = []
    if memdev["ram_bytes"]:
        parts.append(f"{_gib(memdev['ram_bytes'])} volatile")
    if memdev["pmem_bytes"]:
        parts.append(f"{_gib(memdev['pmem_bytes'])} persistent")
    return f"{memdev['name']} ({' + '.join(parts) or 'no capacity'})"


@dataclass(frozen=True)
class CxlFacts:
    bus_built: bool | None  # CONFIG_CXL_BUS
    region_built: bool | None  # CONFIG_CXL_REGION
    names: tuple[str, ...]  # /sys/bus/cxl/devices
    memdevs: tuple[dict[str, Any], ...]
    regions: tuple[dict[str, Any], ...]
    problems: tuple[str, ...]
    sysfs: bool  # /sys/devices or /sys/bus exists
    bus: bool  # /sys/bus/cxl exists

    @property
    def online(self) -> list[dict[str, Any]]:
        return [r for r in self.regions if r["numa_node"] is not None]

    def devices(self) -> str:
        return ", ".join(_describe_memdev(m) for m in self.memdevs)

    def placed(self) -> str:
        return "; ".join(f"{r['name']} ({r['mode']}, {_gib(r['size'])}) online as NUMA node {r['numa_node']}" for r in self.online)

    def region_fix(self) -> str:
        fix = "create a volatile region: cxl create-region -m -t ram -d decoder0.0 mem0 (ndctl's cxl tool), or let the firmware map it as system RAM"
        return ("a kernel with CONFIG_CXL_REGION, then " + fix) if self.region_built is False else fix

    def stuck(self) -> str:
        return "; ".join(_stuck(r) for r in self.regions)


def _stuck(r: dict[str, Any]) -> str:
    """Why a region's capacity is not online as memory."""
    if r["mode"] == "pmem":
        return f"{r['name']} is persistent memory (pmem), reached through a pmem/DAX namespace, not as a NUMA node"
    if r["committed"] is False:
        return f"{r['name']} is not committed (not decoding)"
    if not r["dax"]:
        return f"{r['name']} ({r['mode']}) has no DAX device"
    bound = ", ".join(f"{d['name']} bound to {d['driver'] or 'no driver'}" for d in r["dax"])
    return f"{r['name']} ({r['mode']}) is not online as memory ({bound})"


CXL_RULES: tuple[Rule[CxlFacts], ...] = (
    Rule(lambda x: not x.memdevs and not x.sysfs, UNKNOWN, "sysfs could not be read (no /sys/devices, no /sys/bus)", "is sysfs mounted at /sys?"),
    Rule(lambda x: not x.memdevs and x.bus_built is False, NO, "the kernel was built without CXL support (CONFIG_CXL_BUS is not set)",
         "a kernel with CONFIG_CXL_BUS, CONFIG_CXL_PCI, CONFIG_CXL_ACPI, CONFIG_CXL_MEM and CONFIG_CXL_REGION (6.3+ for ram regions)"),
    Rule(lambda x: not x.memdevs and bool(x.names), NO, lambda x: f"CXL ports but no CXL memory device (memX) on the bus ({', '.join(x.names[:6])})",
         "check that the memory expander is seated and enumerated (lspci), and modprobe cxl_pci cxl_mem"),
    Rule(lambda x: not x.memdevs and x.bus, NO, "the CXL bus is registered but holds no devices: no CXL hardware found",
         "if the machine has a CXL device: modprobe cxl_acpi cxl_pci cxl_mem, and check the firmware publishes the ACPI CEDT"),
    Rule(lambda x: not x.memdevs, NO, f"no {CXL_BUS}: no CXL hardware, or the CXL drivers are not loaded",
         "if the machine has a CXL memory expander: modprobe cxl_acpi cxl_pci cxl_mem (and enable CXL in the firmware setup)"),
    Rule(lambda x: bool(x.problems), UNKNOWN, lambda x: "CXL devices found, but: " + "; ".join(x.problems),
         "re-read on the live machine or re-record the snapshot"),
    Rule(lambda x: bool(x.online), YES, lambda x: f"{x.devices()}; {x.placed()}"),
    Rule(lambda x: not x.regions, PARTIAL, lambda x: f"{x.devices()}, but no region: the capacity is not mapped into system memory", CxlFacts.region_fix),
    Rule(always, PARTIAL, lambda x: f"{x.devices()}; {x.stuck()}",
         "online it as system RAM: daxctl reconfigure-device --mode=system-ram daxX.Y (modprobe dax_cxl kmem first); "
         "for pmem regions, create a ram region instead"),
)


def _read_cxl(src: Source, f: Findings, names: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """The memdevs and regions, each memdev with the NUMA nodes its regions put online."""
    memdev_names = sorted((n for n in names if re.fullmatch(r"mem\d+", n)), key=lambda n: int(n[3:]))
    region_names = sorted((n for n in names if re.fullmatch(r"region\d+", n)), key=lambda n: int(n[6:]))
    problems: list[str] = []
    memdevs = [_read_memdev(src, f, n, problems) for n in memdev_names]
    owners = _endpoint_memdevs(src, names) if memdevs else {}
    regions = [_read_region(src, f, n, owners, problems) for n in region_names] if memdevs else []
    by_name = {m["name"]: m for m in memdevs}
    for region in regions:
        for owner in region["memdevs"]:
            if owner in by_name and region["numa_node"] is not None:
                by_name[owner]["memory_nodes"].append(region["numa_node"])
    return memdevs, regions, problems


@check("cxl", "cxl memory")
def cxl_memory(src: Source, f: Findings):
    cfg = kernel_config(src)
    for key in CXL_CONFIGS:
        f.saw(key, cfg.describe(key))
    names = src.listdir(CXL_DEVICES)
    f.saw(CXL_DEVICES, ", ".join(names) if names else "missing or empty")
    memdevs, regions, problems = _read_cxl(src, f, names)
    f.details.update(memdevs=memdevs, regions=regions)
    facts = CxlFacts(
        cfg.enabled("CONFIG_CXL_BUS"), cfg.enabled("CONFIG_CXL_REGION"), tuple(names), tuple(memdevs), tuple(regions), tuple(problems),
        sysfs=bool(memdevs) or src.exists("/sys/devices") or src.exists("/sys/bus"), bus=bool(names) or src.exists(CXL_BUS),
    )
    return decide(f, facts, CXL_RULES)


CHECKS = [numa_nodes, memory_tiers, cxl_memory]
