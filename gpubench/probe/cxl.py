"""CXL and memory tiers: NUMA nodes with and without CPUs, memory tiers, HMAT, CXL memdevs and regions.

What is read, and where the kernel documents it:
- /sys/devices/system/node/{online,possible,has_cpu,has_memory}, nodeN/{cpulist,meminfo,distance}
  and nodeN/access0/initiators/{read,write}_{bandwidth,latency}: Documentation/ABI/stable/sysfs-devices-node
  (bandwidth in MB/s, latency in ns, as seen from the node's closest initiators).
- /sys/devices/virtual/memory_tiering/memory_tierN/nodelist: Documentation/ABI/testing/sysfs-kernel-mm-memory-tiers
  (N is the abstract distance >> 7: a smaller N is a faster tier; DRAM is memory_tier4).
- /sys/kernel/mm/numa/demotion_enabled: Documentation/ABI/testing/sysfs-kernel-mm-numa.
- /sys/bus/cxl/devices/{memX,regionZ,endpointX,decoderX.Y,dax_regionZ}: Documentation/ABI/testing/sysfs-bus-cxl;
  daxX.Y/{target_node,driver} below dax_regionZ: Documentation/ABI/testing/sysfs-bus-dax.

The benchmark planner reads `details` of "numa nodes", "memory tiers" and "cxl memory"; keep their keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gpubench.probe.checks import check, compact_ranges, kernel_config, release, version_tuple
from gpubench.probe.model import Findings
from gpubench.probe.source import Source

NODE_DIR = "/sys/devices/system/node"
TIERING_DIR = "/sys/devices/virtual/memory_tiering"
DEMOTION = "/sys/kernel/mm/numa/demotion_enabled"
CXL_BUS = "/sys/bus/cxl"
CXL_DEVICES = "/sys/bus/cxl/devices"
CXL_CONFIGS = ("CONFIG_CXL_BUS", "CONFIG_CXL_MEM", "CONFIG_CXL_REGION")

# sysfs file name -> key in details (units are the ABI's: MB/s and ns)
HMAT_FILES = {
    "read_bandwidth": "read_bandwidth_mbps",
    "write_bandwidth": "write_bandwidth_mbps",
    "read_latency": "read_latency_ns",
    "write_latency": "write_latency_ns",
}
GIB = 1 << 30
FIRST_TIERED_RELEASE = (6, 1)  # memory_tiering appeared in Linux 6.1

_RANGE = re.compile(r"(\d+)(?:-(\d+))?")
_MEMINFO = re.compile(r"^Node\s+\d+\s+(MemTotal|MemFree):\s+(\d+)\s*kB\s*$", re.MULTILINE)
_TIER_DIR = re.compile(r"memory_tier(\d+)")


def parse_list(text: str) -> list[int]:
    """A kernel list such as '0-3,8,10-11' (cpulist, nodelist); '' is the empty list.

    Raises ValueError for anything else."""
    text = text.strip()
    if not text:
        return []
    out: list[int] = []
    for part in text.split(","):
        m = _RANGE.fullmatch(part.strip())
        if not m:
            raise ValueError(f"not a list of numbers: {text!r}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"descending range in {text!r}")
        out.extend(range(lo, hi + 1))
    return out


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / GIB:g} GiB"


@dataclass
class _Problems:
    """What could not be read: `hard` ones make a verdict unknown, `soft` ones only lose a detail."""

    hard: list[str] = field(default_factory=list)
    soft: list[str] = field(default_factory=list)


def _read_list(src: Source, f: Findings, path: str, problems: list[str]) -> list[int] | None:
    text = src.value(path)
    f.saw(path, "missing" if text is None else (text or "(empty)"))
    if text is None:
        problems.append(f"{path} is missing")
        return None
    try:
        return parse_list(text)
    except ValueError:
        problems.append(f"{path} is not a node/CPU list: {text[:40]!r}")
        return None


def _read_demotion(src: Source, f: Findings, problems: list[str]) -> bool | None:
    text = src.value(DEMOTION)
    f.saw(DEMOTION, "missing" if text is None else text)
    if text is None:
        return None
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    problems.append(f"{DEMOTION} says {text[:40]!r}, neither true nor false")
    return None


def _read_tiers(src: Source, f: Findings, problems: list[str]) -> dict[int, list[int]] | None:
    """memory tier id -> its nodes; None when the kernel shows no memory tiering."""
    names = src.listdir(TIERING_DIR)
    tier_ids = sorted(int(m.group(1)) for n in names if (m := _TIER_DIR.fullmatch(n)))
    if not tier_ids:
        f.saw(TIERING_DIR, "no memory_tierN directories" if names or src.exists(TIERING_DIR) else "missing")
        return None
    tiers: dict[int, list[int]] = {}
    for tier in tier_ids:
        nodes = _read_list(src, f, f"{TIERING_DIR}/memory_tier{tier}/nodelist", problems)
        if nodes is not None:
            tiers[tier] = nodes
    return tiers


def _int_file(src: Source, path: str, problems: list[str], base: int = 10) -> int | None:
    text = src.value(path)
    if text is None:
        problems.append(f"{path} is missing")
        return None
    try:
        return int(text, base)
    except ValueError:
        problems.append(f"{path} is not a number: {text[:40]!r}")
        return None


def _read_hmat(src: Source, f: Findings, node: int, problems: list[str]) -> dict[str, Any] | None:
    """The firmware's (HMAT, or CXL CDAT for hot-added memory) access0 numbers for one node."""
    base = f"{NODE_DIR}/node{node}/access0/initiators"
    names = src.listdir(base)
    if not any(n in HMAT_FILES for n in names):
        return None
    own: list[str] = []
    hmat: dict[str, Any] = {key: _int_file(src, f"{base}/{name}", own) for name, key in HMAT_FILES.items()}
    hmat["initiators"] = sorted(int(n[4:]) for n in names if re.fullmatch(r"node\d+", n))
    if own:
        problems.extend(own)
        f.saw(base, "; ".join(own))
        return None
    f.saw(
        base,
        f"read {hmat['read_bandwidth_mbps']} MB/s {hmat['read_latency_ns']} ns, "
        f"write {hmat['write_bandwidth_mbps']} MB/s {hmat['write_latency_ns']} ns",
    )
    return hmat


def _read_meminfo(src: Source, f: Findings, node: int, problems: list[str]) -> tuple[int | None, int | None]:
    path = f"{NODE_DIR}/node{node}/meminfo"
    text = src.text(path)
    found = dict(_MEMINFO.findall(text or ""))
    total, free = (int(found[k]) if k in found else None for k in ("MemTotal", "MemFree"))
    if text is None:
        problems.append(f"{path} is missing")
    elif total is None or free is None:
        problems.append(f"{path} has no 'Node {node} MemTotal/MemFree: N kB' lines")
    f.saw(path, f"MemTotal {total} kB, MemFree {free} kB" if total is not None else "unreadable")
    return total, free


def _read_distances(src: Source, node: int, problems: list[str]) -> list[int] | None:
    path = f"{NODE_DIR}/node{node}/distance"
    text = src.value(path)
    if text is None:
        return None
    try:
        return [int(x) for x in text.split()]
    except ValueError:
        problems.append(f"{path} is not a list of distances: {text[:40]!r}")
        return None


def read_numa(src: Source, f: Findings) -> tuple[list[dict[str, Any]] | None, _Problems, dict[str, Any]]:
    """Every online node with its CPUs, memory, tier and firmware performance numbers."""
    problems = _Problems()
    extra: dict[str, Any] = {}
    online = _read_list(src, f, f"{NODE_DIR}/online", problems.hard)
    if online is None:
        return None, problems, extra
    has_cpu = _read_list(src, f, f"{NODE_DIR}/has_cpu", problems.soft)
    extra["has_memory"] = _read_list(src, f, f"{NODE_DIR}/has_memory", problems.soft)
    possible = src.value(f"{NODE_DIR}/possible")
    try:
        extra["possible"] = parse_list(possible) if possible is not None else None
    except ValueError:
        extra["possible"] = None
    tiers = _read_tiers(src, f, problems.soft) or {}
    tier_of = {node: tier for tier, nodes in tiers.items() for node in nodes}
    nodes = []
    for node in online:
        cpus = _read_list(src, f, f"{NODE_DIR}/node{node}/cpulist", problems.hard)
        total, free = _read_meminfo(src, f, node, problems.soft)
        nodes.append(
            {
                "id": node,
                "cpus": cpus or [],
                "has_cpu": (node in has_cpu) if has_cpu is not None else bool(cpus),
                "mem_total_kb": total,
                "mem_free_kb": free,
                "tier": tier_of.get(node),
                "hmat": _read_hmat(src, f, node, problems.soft),
                "distances": _read_distances(src, node, problems.soft),
            }
        )
    return nodes, problems, extra


def _node_summary(nodes: list[dict[str, Any]]) -> str:
    parts = []
    for n in nodes:
        cpus = f"CPUs {compact_ranges(n['cpus'])}" if n["cpus"] else "no CPUs"
        mem = f", {n['mem_total_kb'] / (1 << 20):.1f} GiB" if n["mem_total_kb"] else ""
        tier = f", tier {n['tier']}" if n["tier"] is not None else ""
        parts.append(f"node{n['id']} ({cpus}{mem}{tier})")
    return "; ".join(parts)


@check("cxl", "numa nodes")
def numa_nodes(src: Source, f: Findings):
    nodes, problems, extra = read_numa(src, f)
    demotion = _read_demotion(src, f, problems.soft)
    f.details.update(nodes=nodes or [], demotion_enabled=demotion, **extra)
    if nodes is None:
        numa = kernel_config(src).describe("CONFIG_NUMA")
        return f.unknown(
            f"the NUMA node list could not be read ({'; '.join(problems.hard)}; CONFIG_NUMA: {numa})",
            "NUMA topology lives in /sys/devices/system/node: is sysfs mounted, and was the kernel built with CONFIG_NUMA?",
        )
    if problems.hard:
        return f.unknown(
            "node topology is incomplete: " + "; ".join(problems.hard),
            "re-read on the live machine or re-record the snapshot; the benchmark cannot pin threads without each node's CPUs",
        )
    cpu_less = [n["id"] for n in nodes if not n["has_cpu"]]
    why = f"{len(nodes)} node(s) online, {len(cpu_less)} without CPUs: {_node_summary(nodes)}"
    with_hmat = [n["id"] for n in nodes if n["hmat"]]
    why += f"; firmware access0 numbers (HMAT) for node(s) {compact_ranges(with_hmat)}" if with_hmat else "; no HMAT numbers"
    if problems.soft:
        why += "; not readable: " + "; ".join(problems.soft)
    return f.yes(why)


@check("cxl", "memory tiers")
def memory_tiers(src: Source, f: Findings):
    problems: list[str] = []
    tiers = _read_tiers(src, f, problems)
    demotion = _read_demotion(src, f, [])
    f.details.update(
        tiers={str(t): nodes for t, nodes in (tiers or {}).items()},
        demotion_enabled=demotion,
    )
    if problems:
        return f.unknown("memory tiers could not be read: " + "; ".join(problems), "re-read on the live machine or re-record the snapshot")
    if tiers is None:
        rel = release(src)
        ver = version_tuple(rel)
        if ver is not None and ver < FIRST_TIERED_RELEASE:
            return f.no(f"kernel {rel} predates memory tiers (Linux 6.1)", "a 6.1 or newer kernel with CONFIG_NUMA and CONFIG_MIGRATION")
        return f.unknown(
            f"no memory tiers under {TIERING_DIR}",
            "memory tiers need Linux 6.1+ with CONFIG_NUMA and CONFIG_MIGRATION; is sysfs readable?",
        )
    order = sorted(tiers)
    f.details["order"] = order  # fastest first: a smaller id is a smaller abstract distance
    f.details["lower_tier_nodes"] = sorted(n for t in order[1:] for n in tiers[t])
    described = ", ".join(f"memory_tier{t} (nodes {compact_ranges(tiers[t]) or 'none'})" for t in order)
    demotes = {True: "demotion to lower tiers is enabled", False: "demotion is disabled", None: "demotion state unknown"}[demotion]
    if len(order) > 1:
        why = f"{len(order)} tiers, fastest first: {described}; {demotes}"
        if demotion is False:
            why += " (echo true > /sys/kernel/mm/numa/demotion_enabled lets reclaim move cold pages down instead of swapping)"
        return f.yes(why)
    return f.no(
        f"one memory tier only, {described}: the kernel treats all memory as equally fast, nothing to demote to",
        "slower memory (a CXL expander, or persistent memory through dax kmem) onlined as its own NUMA node, "
        "with HMAT/CDAT performance data, makes a lower tier",
    )


# --- CXL ------------------------------------------------------------------------------------


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
        target = _int_file(src, f"{base}/{name}/target_node", problems)
        link = src.readlink(f"{base}/{name}/driver")
        driver = link.rstrip("/").rsplit("/", 1)[-1] if link else None
        f.saw(f"{base}/{name}", f"driver {driver or 'none'}, target_node {target}")
        out.append({"name": name, "driver": driver, "target_node": target})
    return out


def _read_region(src: Source, f: Findings, name: str, owners: dict[str, str], problems: list[str]) -> dict[str, Any]:
    base = f"{CXL_DEVICES}/{name}"
    size = _bytes_file(src, f, f"{base}/size", problems)
    mode = src.value(f"{base}/mode")
    f.saw(f"{base}/mode", mode if mode is not None else "missing")
    commit = src.value(f"{base}/commit")
    targets = []
    for entry in src.listdir(base):
        if re.fullmatch(r"target\d+", entry):
            decoder = src.value(f"{base}/{entry}")
            if decoder:
                targets.append(decoder)
    if targets:
        f.saw(f"{base}/target*", ", ".join(targets))
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


def _no_cxl_devices(src: Source, f: Findings, names: list[str]):
    cfg = kernel_config(src)
    if not src.exists("/sys/devices") and not src.exists("/sys/bus"):
        return f.unknown("sysfs could not be read (no /sys/devices, no /sys/bus)", "is sysfs mounted at /sys?")
    if cfg.enabled("CONFIG_CXL_BUS") is False:
        return f.no(
            "the kernel was built without CXL support (CONFIG_CXL_BUS is not set)",
            "a kernel with CONFIG_CXL_BUS, CONFIG_CXL_PCI, CONFIG_CXL_ACPI, CONFIG_CXL_MEM and CONFIG_CXL_REGION (6.3+ for ram regions)",
        )
    if names:
        return f.no(
            f"CXL ports but no CXL memory device (memX) on the bus ({', '.join(names[:6])})",
            "check that the memory expander is seated and enumerated (lspci), and modprobe cxl_pci cxl_mem",
        )
    if src.exists(CXL_BUS):
        return f.no("the CXL bus is registered but holds no devices: no CXL hardware found", "if the machine has a CXL device: modprobe cxl_acpi cxl_pci cxl_mem, and check the firmware publishes the ACPI CEDT")
    return f.no(
        f"no {CXL_BUS}: no CXL hardware, or the CXL drivers are not loaded",
        "if the machine has a CXL memory expander: modprobe cxl_acpi cxl_pci cxl_mem (and enable CXL in the firmware setup)",
    )


@check("cxl", "cxl memory")
def cxl_memory(src: Source, f: Findings):
    cfg = kernel_config(src)
    for key in CXL_CONFIGS:
        f.saw(key, cfg.describe(key))
    names = src.listdir(CXL_DEVICES)
    f.saw(CXL_DEVICES, ", ".join(names) if names else "missing or empty")
    memdev_names = sorted((n for n in names if re.fullmatch(r"mem\d+", n)), key=lambda n: int(n[3:]))
    region_names = sorted((n for n in names if re.fullmatch(r"region\d+", n)), key=lambda n: int(n[6:]))
    f.details.update(memdevs=[], regions=[])
    if not memdev_names:
        return _no_cxl_devices(src, f, names)

    problems: list[str] = []
    memdevs = [_read_memdev(src, f, n, problems) for n in memdev_names]
    owners = _endpoint_memdevs(src, names)
    regions = [_read_region(src, f, n, owners, problems) for n in region_names]
    by_name = {m["name"]: m for m in memdevs}
    for region in regions:
        for owner in region["memdevs"]:
            if owner in by_name and region["numa_node"] is not None:
                by_name[owner]["memory_nodes"].append(region["numa_node"])
    f.details.update(memdevs=memdevs, regions=regions)
    if problems:
        return f.unknown("CXL devices found, but: " + "; ".join(problems), "re-read on the live machine or re-record the snapshot")

    devices = ", ".join(_describe_memdev(m) for m in memdevs)
    online = [r for r in regions if r["numa_node"] is not None]
    if online:
        placed = "; ".join(f"{r['name']} ({r['mode']}, {_gib(r['size'])}) online as NUMA node {r['numa_node']}" for r in online)
        return f.yes(f"{devices}; {placed}")
    if not regions:
        fix = "create a volatile region: cxl create-region -m -t ram -d decoder0.0 mem0 (ndctl's cxl tool), or let the firmware map it as system RAM"
        if cfg.enabled("CONFIG_CXL_REGION") is False:
            fix = "a kernel with CONFIG_CXL_REGION, then " + fix
        return f.partial(f"{devices}, but no region: the capacity is not mapped into system memory", fix)
    stuck = []
    for r in regions:
        if r["mode"] == "pmem":
            stuck.append(f"{r['name']} is persistent memory (pmem), reached through a pmem/DAX namespace, not as a NUMA node")
        elif r["committed"] is False:
            stuck.append(f"{r['name']} is not committed (not decoding)")
        elif not r["dax"]:
            stuck.append(f"{r['name']} ({r['mode']}) has no DAX device")
        else:
            bound = ", ".join(f"{d['name']} bound to {d['driver'] or 'no driver'}" for d in r["dax"])
            stuck.append(f"{r['name']} ({r['mode']}) is not online as memory ({bound})")
    return f.partial(
        f"{devices}; " + "; ".join(stuck),
        "online it as system RAM: daxctl reconfigure-device --mode=system-ram daxX.Y (modprobe dax_cxl kmem first); "
        "for pmem regions, create a ram region instead",
    )


CHECKS = [numa_nodes, memory_tiers, cxl_memory]
