"""P2P area: PCI peer-to-peer DMA in the kernel, and GPU-to-GPU P2P as NVML reports it.

p2pmem attributes: Documentation/ABI/testing/sysfs-bus-pci (/sys/bus/pci/devices/.../p2pmem/
size, available, published). NVML P2P status: nvmlDeviceGetP2PStatus (NVML API reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpubench.probe import nvidia
from gpubench.probe.checks import check, kernel_config, recorded
from gpubench.probe.iommu import iommu_facts
from gpubench.probe.gpu import gpu_list
from gpubench.probe.pci import PCI_DEVICES
from gpubench.probe.model import Findings
from gpubench.probe.rules import NO, PARTIAL, UNKNOWN, YES, Rule, always, decide, not_recorded
from gpubench.probe.source import Source


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class P2pdmaFacts:
    recorded: bool  # the PCI devices were there to look at (a snapshot may hold none of them)
    option: str | None  # CONFIG_PCI_P2PDMA
    devices: tuple[dict[str, Any], ...]  # the PCI functions that expose p2pmem
    garbled: tuple[str, ...]  # those whose p2pmem attributes are not numbers

    @property
    def published(self) -> int:
        return sum(1 for d in self.devices if d["published"])


P2PDMA_RULES: tuple[Rule[P2pdmaFacts], ...] = (
    Rule(lambda x: x.option is None and bool(x.devices), YES,
         lambda x: f"{len(x.devices)} device(s) expose p2pmem, so the kernel has P2PDMA (no kernel config to confirm)"),
    Rule(lambda x: x.option is None, UNKNOWN, "no kernel config found", "modprobe configs, or install /boot/config-$(uname -r)"),
    Rule(lambda x: x.option not in ("y", "m"), NO,
         "the kernel is built without CONFIG_PCI_P2PDMA: no in-kernel peer-to-peer DMA between PCI devices",
         "use a kernel built with CONFIG_PCI_P2PDMA=y (GPUDirect RDMA through nvidia-peermem does not need it)"),
    Rule(lambda x: bool(x.garbled), PARTIAL, lambda x: f"p2pmem attributes of {', '.join(x.garbled)} are not numbers", "re-record the snapshot"),
    Rule(lambda x: bool(x.devices), YES, lambda x: f"P2PDMA built in; {len(x.devices)} device(s) expose p2pmem ({x.published} published)"),
    Rule(lambda x: not x.recorded, YES, f"P2PDMA built in; whether a device exposes p2pmem was not recorded in this snapshot (no {PCI_DEVICES})"),
    Rule(always, YES, "P2PDMA built in; no device exposes p2pmem (NVMe CMBs do, GPUs usually not)"),
)


@check("p2p", "pci p2pdma")
def pci_p2pdma(src: Source, f: Findings):
    cfg = kernel_config(src)
    f.saw("CONFIG_PCI_P2PDMA", cfg.describe("CONFIG_PCI_P2PDMA"))
    devices, garbled = [], []
    for name in src.listdir(PCI_DEVICES):
        base = f"{PCI_DEVICES}/{name}/p2pmem"
        if not src.exists(base):
            continue
        raw = {k: src.value(f"{base}/{k}") for k in ("size", "available", "published")}
        entry = {"pci": name, **{k: _int_or_none(v) for k, v in raw.items()}}
        if any(v is not None and entry[k] is None for k, v in raw.items()):
            garbled.append(name)
        devices.append(entry)
        f.saw(base, f"size={raw['size']} available={raw['available']} published={raw['published']}")
    if not devices:
        f.saw(f"{PCI_DEVICES}/*/p2pmem", "none")
    f.details.update(config=cfg.get("CONFIG_PCI_P2PDMA"), p2pmem_devices=devices)
    facts = P2pdmaFacts(recorded(src, PCI_DEVICES, "/sys/bus"), cfg.get("CONFIG_PCI_P2PDMA"), tuple(devices), tuple(garbled))
    return decide(f, facts, P2PDMA_RULES)


# What to do about each status nvmlDeviceGetP2PStatus reports (nvmlGpuP2PStatus_t): a GPU model or a
# chipset that cannot do P2P is no setting of this machine; only the generic "not supported" can be
# the IOMMU or ACS, and the IOMMU is named only where it translates.
STATUS_FIX = {
    "GPU not supported": "this GPU model does not do PCIe peer-to-peer (most GeForce and some workstation GPUs); "
    "only GPUs that support it (or NVLink) can",
    "chipset not supported": "the CPU's PCIe root complex (chipset) does not support peer-to-peer between these GPUs: a platform limit",
    "IOH topology not supported": "the GPUs sit under different CPU sockets or root complexes, between which the driver allows no P2P; "
    "place them under one PCIe switch or socket (nvidia-smi topo -m)",
    "disabled by regkey": "the NVIDIA driver has P2P turned off by a registry key: look for it in NVreg_RegistryDwords "
    "(/etc/modprobe.d, /proc/driver/nvidia/params) and remove it",
}
ACS_FIX = "check ACS on the PCIe switches between the GPUs (lspci -vvv | grep ACSCtl): ACS redirecting peer traffic to the root complex blocks P2P"
IOMMU_FIX = "the IOMMU translates device DMA here: boot with iommu=pt (see the iommu capability)"


@dataclass(frozen=True)
class P2pFacts:
    recorded: bool
    count: int
    driver_loaded: bool
    live: bool
    nvml: dict[str, Any] | None
    pairs: dict[str, str]  # "a-b" (benchmark numbering) -> NVML's read status
    iommu_translates: bool | None

    def not_ok(self) -> str:
        return ", ".join(f"{k}: {v}" for k, v in self.pairs.items() if v != "ok")

    def fix(self) -> str:
        fixes = []
        for status in dict.fromkeys(v for v in self.pairs.values() if v != "ok"):
            if status in STATUS_FIX:
                fixes.append(STATUS_FIX[status])
            else:  # "not supported", "unknown": nothing says which, the IOMMU and ACS can
                fixes += ([IOMMU_FIX] if self.iommu_translates is not False else []) + [ACS_FIX]
        return "; ".join(dict.fromkeys(fixes)) + "; see `nvidia-smi topo -p2p r`"

    @property
    def ok(self) -> list[str]:
        return [k for k, v in self.pairs.items() if v == "ok"]


P2P_RULES: tuple[Rule[P2pFacts], ...] = (
    not_recorded(nvidia.INPUTS_SAID),
    Rule(lambda x: x.count < 2, NO, lambda x: f"GPU peer-to-peer needs two GPUs; found {x.count}", "only multi-GPU machines have GPU-to-GPU paths"),
    Rule(lambda x: x.nvml is None and not x.driver_loaded, UNKNOWN, "no NVIDIA driver loaded: there is no way here to ask other vendors' drivers for P2P status"),
    Rule(lambda x: x.nvml is None, UNKNOWN, lambda x: "NVML " + ("was not asked" if x.live else "answers were not recorded in this snapshot")),
    Rule(lambda x: not x.nvml.get("available"), UNKNOWN, lambda x: f"NVML is unavailable ({x.nvml.get('reason')})",
         "pip install nvidia-ml-py (the NVIDIA driver provides libnvidia-ml.so)"),
    Rule(lambda x: not x.pairs, UNKNOWN, "NVML returned no P2P status for any pair"),
    Rule(lambda x: len(x.ok) == len(x.pairs), YES, lambda x: f"all {len(x.pairs)} GPU pair(s) can read each other's memory"),
    Rule(lambda x: bool(x.ok), PARTIAL, lambda x: f"{len(x.ok)} of {len(x.pairs)} pair(s) P2P-capable; not: {x.not_ok()}", P2pFacts.fix),
    Rule(always, NO, lambda x: "no GPU pair supports P2P reads: " + ", ".join(sorted(set(x.pairs.values()))), P2pFacts.fix),
)


def _nvml_pairs(f: Findings, info: dict[str, Any]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """NVML's pairs renumbered by PCI address: (read status, every status) by "a-b"."""
    raw_pairs = info.get("p2p") or {}
    position = _by_pci_address(info.get("devices") or [])
    pairs, details = {}, {}
    for nvml_key in sorted(raw_pairs, key=lambda k: tuple(int(x) for x in k.split("-"))):
        status = raw_pairs[nvml_key]
        if not isinstance(status, dict):
            raise ValueError(f"NVML P2P entry {nvml_key} is not an object")
        a, b = (position.get(int(x), int(x)) for x in nvml_key.split("-"))
        key = f"{min(a, b)}-{max(a, b)}"
        pairs[key] = str(status.get("read", "unknown"))
        details[key] = {k: str(v) for k, v in status.items()}
        f.saw(f"NVML P2P {key}", ", ".join(f"{k}={v}" for k, v in status.items()))
    return pairs, details


@check("p2p", "gpu p2p")
def gpu_p2p(src: Source, f: Findings):
    gpus = gpu_list(src)
    drv = nvidia.driver(src)
    info = nvidia.nvml(src)
    count = max(len(gpus), len((info or {}).get("devices") or []))
    f.details.update(gpu_count=count, pairs={})
    f.saw("GPUs", f"{count}: " + ", ".join(g["pci"] for g in gpus) if gpus else str(count))
    if count >= 2 and info is not None and not info.get("available"):
        f.saw("NVML", f"unavailable: {info.get('reason')}")
    pairs: dict[str, str] = {}
    if count >= 2 and info is not None and info.get("available"):
        pairs, details = _nvml_pairs(f, info)
        nvlink = sorted(k for k, v in details.items() if v.get("nvlink") == "ok")
        f.details.update(pairs=pairs, pairs_detail=details, nvlink_pairs=nvlink)
    translates = None
    if set(pairs.values()) - {"ok"}:  # the IOMMU is read only when a fix may name it
        mode = iommu_facts(src).mode
        translates = None if mode is None else mode == "translated"
    facts = P2pFacts(drv.recorded, count, drv.loaded, src.live, info, pairs, translates)
    return decide(f, facts, P2P_RULES)


def _by_pci_address(nvml_devices: list) -> dict[int, int]:
    """NVML index -> the GPU's place in PCI address order, the numbering the benchmarks use (NVML
    enumerates in PCI order by default, but CUDA_DEVICE_ORDER and the driver may differ)."""
    known = [(d["pci"], d["index"]) for d in nvml_devices if isinstance(d, dict) and d.get("pci") and isinstance(d.get("index"), int)]
    if len(known) != len(nvml_devices):
        return {}
    return {index: place for place, (_, index) in enumerate(sorted(known))}


CHECKS = [pci_p2pdma, gpu_p2p]
