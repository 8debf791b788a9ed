"""P2P area: PCI peer-to-peer DMA in the kernel, and GPU-to-GPU P2P as NVML reports it.

p2pmem attributes: Documentation/ABI/testing/sysfs-bus-pci (/sys/bus/pci/devices/.../p2pmem/
size, available, published). NVML P2P status: nvmlDeviceGetP2PStatus (NVML API reference).
"""

from __future__ import annotations

from gpubench.probe import nvidia
from gpubench.probe.checks import check, kernel_config
from gpubench.probe.gpu import PCI_DEVICES, gpu_list
from gpubench.probe.model import Findings
from gpubench.probe.source import Source


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


@check("p2p", "pci p2pdma")
def pci_p2pdma(src: Source, f: Findings):
    cfg = kernel_config(src)
    option = cfg.get("CONFIG_PCI_P2PDMA")
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
    f.details.update(config=option, p2pmem_devices=devices)
    if option is None:
        if devices:
            return f.yes(f"{len(devices)} device(s) expose p2pmem, so the kernel has P2PDMA (no kernel config to confirm)")
        return f.unknown("no kernel config found", "modprobe configs, or install /boot/config-$(uname -r)")
    if option not in ("y", "m"):
        return f.no(
            "the kernel is built without CONFIG_PCI_P2PDMA: no in-kernel peer-to-peer DMA between PCI devices",
            "use a kernel built with CONFIG_PCI_P2PDMA=y (GPUDirect RDMA through nvidia-peermem does not need it)",
        )
    if garbled:
        return f.partial(f"p2pmem attributes of {', '.join(garbled)} are not numbers", "re-record the snapshot")
    published = [d["pci"] for d in devices if d["published"]]
    if devices:
        return f.yes(f"P2PDMA built in; {len(devices)} device(s) expose p2pmem ({len(published)} published)")
    return f.yes("P2PDMA built in; no device exposes p2pmem (NVMe CMBs do, GPUs usually not)")


@check("p2p", "gpu p2p")
def gpu_p2p(src: Source, f: Findings):
    gpus = gpu_list(src)
    info = nvidia.nvml(src)
    nvml_devices = (info or {}).get("devices") or []
    count = max(len(gpus), len(nvml_devices))
    f.details.update(gpu_count=count, pairs={})
    f.saw("GPUs", f"{count}: " + ", ".join(g["pci"] for g in gpus) if gpus else str(count))
    if count < 2:
        return f.no(f"GPU peer-to-peer needs two GPUs; found {count}", "only multi-GPU machines have GPU-to-GPU paths")
    if info is None:
        if not nvidia.driver(src).loaded:
            return f.unknown("no NVIDIA driver loaded: there is no way here to ask other vendors' drivers for P2P status")
        return f.unknown("NVML " + ("answers were not recorded in this snapshot" if not src.live else "was not asked"))
    if not info.get("available"):
        f.saw("NVML", f"unavailable: {info.get('reason')}")
        return f.unknown(f"NVML is unavailable ({info.get('reason')})", "pip install nvidia-ml-py (the NVIDIA driver provides libnvidia-ml.so)")
    raw_pairs = info.get("p2p") or {}
    position = _by_pci_address(nvml_devices)
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
    f.details.update(pairs=pairs, pairs_detail=details, nvlink_pairs=sorted(k for k, v in details.items() if v.get("nvlink") == "ok"))
    if not pairs:
        return f.unknown("NVML returned no P2P status for any pair")
    ok = [k for k, v in pairs.items() if v == "ok"]
    if len(ok) == len(pairs):
        return f.yes(f"all {len(pairs)} GPU pair(s) can read each other's memory")
    if ok:
        bad = ", ".join(f"{k}: {v}" for k, v in pairs.items() if v != "ok")
        return f.partial(f"{len(ok)} of {len(pairs)} pair(s) P2P-capable; not: {bad}", "P2P across CPU sockets or some PCIe switches is often unsupported; check `nvidia-smi topo -p2p r`")
    return f.no(
        "no GPU pair supports P2P reads: " + ", ".join(sorted(set(pairs.values()))),
        "check `nvidia-smi topo -m`; with the IOMMU in translated mode, or ACS redirecting peer traffic, PCIe P2P is blocked",
    )


def _by_pci_address(nvml_devices: list) -> dict[int, int]:
    """NVML index -> the GPU's place in PCI address order, the numbering the benchmarks use (NVML
    enumerates in PCI order by default, but CUDA_DEVICE_ORDER and the driver may differ)."""
    known = [(d["pci"], d["index"]) for d in nvml_devices if isinstance(d, dict) and d.get("pci") and isinstance(d.get("index"), int)]
    if len(known) != len(nvml_devices):
        return {}
    return {index: place for place, (_, index) in enumerate(sorted(known))}


CHECKS = [pci_p2pdma, gpu_p2p]
