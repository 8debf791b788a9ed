"""The GPU data-path benchmarks (memcpy, p2p, gds, hmm) without a GPU: waiving on the probe
snapshots (no GPU, one GPU, four GPUs with and without P2P, HMM on and off), planning and
parameter validation, NVML's P2P answers reaching p2p's routing, the KvikIO path and settings
logic against stand-ins of both API generations, result shaping, and a whole `gpubench run` that
waives all four."""

from __future__ import annotations

import ctypes
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import types
from contextlib import ExitStack
from pathlib import Path

import pytest

from gpu_standin import Config, StandIn, harness
from gpubench.bench.gpu import gds
from gpubench.bench.gpu import common as gpu_common
from gpubench.bench.gpu import hmm
from gpubench.bench.engines import iofile
from gpubench.bench.gpu import memcpy
from gpubench.bench.gpu import p2p
from gpubench.bench.core import params
from gpubench.bench.core.interface import Case, Context, Waived
from gpubench.bench.core.settings import RunSettings
from gpubench.errors import UserError
from gpubench.probe import Source, nvidia, probe
from gpubench.probe.model import Profile
from gpubench.probe.views import GpuDevice

PROBES = Path(__file__).resolve().parents[2] / "probes"
SERVER = PROBES / "nvidia-multigpu"
CPU_VM = PROBES / "cpu-vm"
AREAS = ["gpu", "hmm", "p2p", "gds"]
H100_PCI = ["0000:1b:00.0", "0000:43:00.0", "0000:52:00.0", "0000:61:00.0"]
BENCHES = [memcpy.Memcpy(), p2p.P2P(), gds.Gds(), hmm.Hmm()]

pytestmark = pytest.mark.skipif(not SERVER.is_dir() or not CPU_VM.is_dir(), reason="probe snapshots missing")


def profile_of(root: Path) -> Profile:
    return probe(Source(root), AREAS)


@pytest.fixture(scope="module")
def server() -> Profile:
    return profile_of(SERVER)


@pytest.fixture(scope="module")
def cpu_vm() -> Profile:
    return profile_of(CPU_VM)


@pytest.fixture
def with_cupy(monkeypatch):
    """Plan as if CuPy and KvikIO were installed (they are not on CPU machines)."""
    monkeypatch.setattr(gpu_common, "cupy_missing", lambda: None)
    monkeypatch.setattr(gpu_common, "kvikio_missing", lambda: None)


def copy_server(tmp_path: Path) -> Path:
    root = tmp_path / "server"
    shutil.copytree(SERVER, root, symlinks=True)
    return root


def edit_nvml(root: Path, change) -> None:
    path = root / ".gpubench/commands/nvml.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def keep_one_gpu(root: Path) -> None:
    """The server with only its first H100: the other three gone from PCI, DRM, procfs and NVML."""
    gone = H100_PCI[1:]
    harness.remove_gpus(root, gone)

    def one(data):
        data["devices"] = [d for d in data["devices"] if d["pci"] not in gone]
        data["p2p"] = {}

    edit_nvml(root, one)


def names(cases: list[Case]) -> list[str]:
    return [c.name for c in cases]


# --- waiving ------------------------------------------------------------------------------------

def test_no_gpu_waives_all_four(cpu_vm):
    for bench in BENCHES:
        assert bench.requires(cpu_vm) == "no NVIDIA GPU found (probe: gpus = no)", bench.key


def test_four_gpus_run_all_four_when_cupy_is_installed(server, with_cupy):
    for bench in BENCHES:
        assert bench.requires(server) is None, bench.key


def test_without_cupy_the_reason_says_how_to_install(server, monkeypatch):
    monkeypatch.setattr(gpu_common, "find_spec", lambda name: None)
    for bench in BENCHES:
        assert bench.requires(server) == f"CuPy is not installed: {gpu_common.INSTALL_HINT}", bench.key


def test_the_install_hint_names_the_packages_of_both_gpu_extras():
    """Every package the benchmarks need; dask is in the extras for KvikIO's own benchmark, which
    the GPU tests run, not for gpubench."""
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in ("gpu", "gpu-cu13"):
        names = [req.split(">")[0].split("=")[0].split(";")[0].strip() for req in extras[extra]]
        assert "dask" in names, extra
        names.remove("dask")
        assert names and all(f" {name}" in gpu_common.INSTALL_HINT for name in names), extra
        assert f"'.[{extra}]'" in gpu_common.INSTALL_HINT


def test_gds_without_kvikio(server, monkeypatch):
    monkeypatch.setattr(gpu_common, "find_spec", lambda name: object() if name == "cupy" else None)
    assert gds.Gds().requires(server) == f"KvikIO is not installed: {gpu_common.INSTALL_HINT}"
    assert memcpy.Memcpy().requires(server) is None


def test_gds_waived_when_the_probe_saw_no_kvikio(tmp_path, with_cupy):
    root = copy_server(tmp_path)
    kv = root / ".gpubench/commands/kvikio.json"
    kv.write_text(json.dumps({"installed": False, "env_compat_mode": None, "run_udev_readable": True}))
    reason = gds.Gds().requires(profile_of(root))
    assert reason is not None and "KvikIO is not installed (probe: gpudirect storage, kvikio = no)" in reason


def test_one_gpu_waives_p2p_only(tmp_path, with_cupy):
    root = copy_server(tmp_path)
    keep_one_gpu(root)
    one = profile_of(root)
    assert gpu_common.nvidia_gpus(one) == [GpuDevice(0, H100_PCI[0], "NVIDIA H100 80GB HBM3")]
    assert p2p.P2P().requires(one) == "needs >= 2 GPUs (probe: 1 NVIDIA GPU)"
    for bench in (memcpy.Memcpy(), gds.Gds(), hmm.Hmm()):
        assert bench.requires(one) is None, bench.key
    assert names(memcpy.Memcpy().cases(one, "default", {"directions": "d2d", "engines": "ce", "reference": "0"})) == ["d2d-ce-256M-gpu0"]


def test_driver_not_loaded_is_the_reason(tmp_path, with_cupy):
    root = copy_server(tmp_path)
    (root / "proc/driver/nvidia/version").unlink()
    reason = memcpy.Memcpy().requires(profile_of(root))
    assert reason is not None and reason.startswith("the NVIDIA driver is not loaded (probe: nvidia driver = no")


def test_only_other_vendors_gpu_is_named():
    laptop = PROBES / "laptop-igpu"
    if not laptop.is_dir():
        pytest.skip("no probes/laptop-igpu snapshot")
    assert memcpy.Memcpy().requires(profile_of(laptop)) == "no NVIDIA GPU found (probe: gpus = yes; found only intel)"


# --- memcpy ----------------------------------------------------------------------------------------

def test_memcpy_quick_plan(server):
    cases = memcpy.Memcpy().cases(server, "quick", {})
    assert names(cases) == [
        "h2d-pageable-ce-32M-gpu0", "h2d-pinned-ce-32M-gpu0", "h2d-pinned-sm-32M-gpu0",
        "d2h-pageable-ce-32M-gpu0", "d2h-pinned-ce-32M-gpu0", "d2h-pinned-sm-32M-gpu0",
        "d2d-ce-32M-gpu0", "d2d-sm-32M-gpu0", "d2d-cupy-reference-32M-gpu0",
        "bidir-pinned-ce-32M-gpu0", "bidir-pinned-sm-32M-gpu0",
    ]
    by_name = {c.name: c for c in cases}
    pageable = by_name["h2d-pageable-ce-32M-gpu0"].params
    assert pageable["timer"] == "wall" and pageable["gpu_pci"] == H100_PCI[0] and pageable["size"] == 32 << 20
    assert pageable["iterations"] == gpu_common.COPY_ITERATIONS["quick"]
    assert by_name["h2d-pinned-ce-32M-gpu0"].params["timer"] == "cuda-event"
    assert by_name["bidir-pinned-ce-32M-gpu0"].params["bytes_per_iteration"] == 2 * (32 << 20)
    assert all(c.unit == "GB/s" and c.higher_is_better for c in cases)


def test_memcpy_default_covers_every_gpu(server):
    cases = memcpy.Memcpy().cases(server, "default", {"directions": "h2d", "memory": "pinned", "engines": "ce"})
    assert names(cases) == [f"h2d-pinned-ce-256M-gpu{i}" for i in range(4)]
    assert [c.params["gpu_pci"] for c in cases] == H100_PCI


def test_memcpy_overrides(server):
    cases = memcpy.Memcpy().cases(server, "default", {"sizes": "4K,1G", "gpus": "2", "directions": "d2d", "engines": "sm", "reference": "false", "iterations": "3"})
    assert names(cases) == ["d2d-sm-4K-gpu2", "d2d-sm-1G-gpu2"]
    assert {c.params["iterations"] for c in cases} == {3}


def test_the_run_flags_meant_for_storage_never_reach_memcpy(server):
    from gpubench.bench.core.runner import options_for

    params = {"*": {"target": "/nowhere", "verify": "1", "drop_cache": "1"}, "memcpy": {"iterations": "3"}}
    assert options_for(memcpy.Memcpy(), params) == {"iterations": "3"}
    with pytest.raises(UserError, match="unknown parameter 'verify'"):
        memcpy.Memcpy().cases(server, "quick", {"verify": "1"})


@pytest.mark.parametrize("options, message", [
    ({"sizes": "1000B"}, "not a multiple of 4K"),
    ({"sizes": "lots"}, "is not a size"),
    ({"sizes": "0"}, "larger than zero"),
    ({"gpus": "4"}, "GPU 4 does not exist (the probe found 4 NVIDIA GPU(s): 0..3)"),
    ({"gpus": "x"}, "is not a GPU number"),
    ({"iterations": "0"}, "at least 1"),
    ({"directions": "sideways"}, "unknown 'sideways'"),
    ({"engines": "dma"}, "unknown 'dma'"),
    ({"reference": "maybe"}, "say true or false"),
    ({"bs": "4k"}, "unknown parameter 'bs'"),
    ({"directions": "h2d", "memory": "pageable", "engines": "sm"}, "nothing to measure"),
])
def test_memcpy_rejects_bad_parameters(server, options, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        memcpy.Memcpy().cases(server, "default", options)


def test_memcpy_prepare_without_cupy_is_waived(server, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    case = memcpy.Memcpy().cases(server, "quick", {})[0]
    ctx = Context(scratch=tmp_path, profile=server)
    with pytest.raises(Waived, match=r"CuPy is not installed: pip install cupy-cuda12x "):
        with memcpy.Memcpy().prepare(case, ctx):
            pass


# --- p2p -------------------------------------------------------------------------------------------

def test_p2p_default_plan_covers_every_pair(server):
    cases = p2p.P2P().cases(server, "default", {})
    uni = [c for c in cases if c.params["kind"] == "uni-ce"]
    assert len(uni) == 12  # ordered pairs of 4 GPUs
    bidir = [c.name for c in cases if c.params["kind"] == "bidir-ce"]
    assert bidir == [f"bidir-ce-{a}and{b}-256M" for a, b in [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]]
    assert {c.params["via"] for c in cases} == {"peer"}
    assert {c.params["probe_p2p"] for c in cases} == {"ok"}
    latency = [c for c in cases if c.params["kind"] == "latency-ce"]
    assert len(latency) == 12 and all(c.unit == "us" and not c.higher_is_better for c in latency)
    assert latency[0].name == "latency-ce-0to1-8B" and latency[0].params["size"] == 8
    first = next(c for c in cases if c.name == "uni-ce-2to3-256M")
    assert (first.params["src_pci"], first.params["dst_pci"]) == (H100_PCI[2], H100_PCI[3])


def test_p2p_quick_plan(server):
    assert names(p2p.P2P().cases(server, "quick", {})) == [
        "uni-ce-0to1-32M", "uni-sm-0to1-32M", "latency-ce-0to1-8B",
        "uni-ce-1to0-32M", "uni-sm-1to0-32M", "latency-ce-1to0-8B",
        "bidir-ce-0and1-32M", "bidir-sm-0and1-32M",
    ]


def test_pairs_without_p2p_go_through_the_host(tmp_path, with_cupy):
    root = copy_server(tmp_path)

    def cut(data):
        for key in ("0-2", "1-3"):
            data["p2p"][key] = {"read": "not supported", "write": "not supported", "nvlink": "not supported"}

    edit_nvml(root, cut)
    prof = profile_of(root)
    assert p2p.P2P().requires(prof) is None
    cases = {c.name: c for c in p2p.P2P().cases(prof, "default", {"pairs": "0-1,2-0,3-1"})}
    assert cases["uni-ce-0to1-256M"].params["via"] == "peer"
    assert cases["uni-ce-2to0-256M"].params["via"] == "host"
    assert cases["uni-ce-2to0-256M"].params["probe_p2p"] == "not supported"
    assert cases["bidir-ce-1and3-256M"].params["via"] == "host"
    assert cases["latency-ce-3to1-8B"].params["via"] == "host"
    # SM copies need peer access: waived before CuPy is even asked
    with pytest.raises(Waived, match=r"SM copies need peer access; the probe reports GPUs 2 and 0 without P2P \(gpu p2p 0-2 = not supported\)"):
        with p2p.P2P().prepare(cases["uni-sm-2to0-256M"], Context(scratch=tmp_path, profile=prof)):
            pass


def test_p2p_route():
    assert p2p.route("ok") == "peer"
    assert p2p.route("not supported") == "host"
    assert p2p.route("topology not supported") == "host"
    assert p2p.route(None) == "auto"


def test_nvml_p2p_status_reaches_the_routing_despite_pynvmls_tuple_constant(monkeypatch):
    """nvidia-ml-py defines NVML_P2P_CAPS_INDEX_READ as (0,), which ctypes will not pass; asking
    with it made every pair's read status "error", and p2p then routed every pair through the host."""
    def p2p_status(a, b, index):
        if not isinstance(index, int):
            raise ctypes.ArgumentError("argument 3: <class 'TypeError'>: Don't know how to convert parameter 3")
        return 0

    nv = types.ModuleType("pynvml")
    nv.__spec__ = importlib.machinery.ModuleSpec("pynvml", None)
    nv.NVML_P2P_CAPS_INDEX_READ, nv.NVML_P2P_CAPS_INDEX_WRITE, nv.NVML_P2P_CAPS_INDEX_NVLINK = (0,), 1, 2
    nv.nvmlInit = nv.nvmlShutdown = lambda: None
    nv.nvmlSystemGetDriverVersion = lambda: "570.124.06"
    nv.nvmlSystemGetCudaDriverVersion_v2 = lambda: 12080
    nv.nvmlDeviceGetCount = lambda: 2
    nv.nvmlDeviceGetHandleByIndex = lambda i: i
    nv.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    nv.nvmlDeviceGetPciInfo = lambda h: types.SimpleNamespace(busId=H100_PCI[h].encode())
    nv.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=85520809984)
    nv.nvmlDeviceGetAddressingMode = lambda h: 1
    nv.nvmlDeviceGetP2PStatus = p2p_status
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    out = nvidia.query_nvml()
    assert out["errors"] == {}
    assert out["p2p"] == {"0-1": {"read": "ok", "write": "ok", "nvlink": "ok"}}
    assert p2p.route(out["p2p"]["0-1"]["read"]) == "peer"


@pytest.mark.parametrize("options, message", [
    ({"pairs": "0-0"}, "names the same GPU twice"),
    ({"pairs": "0-7"}, "GPU 7 does not exist"),
    ({"pairs": "01"}, "is not SRC-DST"),
    ({"kinds": "uni-dma"}, "unknown 'uni-dma'"),
    ({"latency_bytes": "0"}, "at least 1"),
    ({"latency_bytes": str(2 << 20)}, "at most"),
    ({"sizes": "100B"}, "not a multiple of 4K"),
])
def test_p2p_rejects_bad_parameters(server, options, message):
    with pytest.raises(UserError, match=message):
        p2p.P2P().cases(server, "default", options)


# --- hmm -------------------------------------------------------------------------------------------

def test_hmm_plan_on_the_server(server):
    cases = hmm.Hmm().cases(server, "default", {})
    assert names(cases) == [f"{p}-256M" for p in hmm.PLACEMENTS]
    assert {c.params["hmm_mode"] for c in cases} == {"hmm"}
    assert hmm.system_memory_waiver(server) is None


def test_hmm_off_waives_the_system_memory_cases(tmp_path, with_cupy, monkeypatch):
    root = copy_server(tmp_path)
    (root / "sys/module/nvidia_uvm/parameters/uvm_disable_hmm").write_text("Y\n")
    prof = profile_of(root)
    assert hmm.Hmm().requires(prof) is None  # the other placements still run
    cases = {c.name: c for c in hmm.Hmm().cases(prof, "quick", {})}
    reason = hmm.system_memory_waiver(prof)
    assert reason is not None
    assert reason.startswith("plain system memory needs HMM or ATS, which the probe did not find active (probe: hmm = no")
    assert "uvm_disable_hmm=Y" in reason
    monkeypatch.setattr(gpu_common, "load_cupy", lambda: pytest.fail("CuPy asked before the waiver"))
    for name in ("system-first-touch-64M", "system-second-pass-64M"):
        assert cases[name].params["hmm_mode"] is None
        with pytest.raises(Waived, match="plain system memory needs HMM or ATS"):
            with hmm.Hmm().prepare(cases[name], Context(scratch=tmp_path, profile=prof)):
                pass


def test_hmm_via_ats(tmp_path):
    root = copy_server(tmp_path)

    def ats(data):
        for d in data["devices"]:
            d["addressing_mode"] = "ats"

    edit_nvml(root, ats)
    prof = profile_of(root)
    assert hmm.system_memory_waiver(prof) is None
    assert {c.params["hmm_mode"] for c in hmm.Hmm().cases(prof, "quick", {})} == {"ats"}


def test_hmm_unprobed_is_explained():
    assert "did not check" in hmm.system_memory_waiver(Profile(root="/", capabilities=()))


@pytest.mark.parametrize("options, message", [
    ({"placements": "gpu-cache"}, "unknown 'gpu-cache'"),
    ({"gpu": "9"}, "GPU 9 does not exist"),
    ({"sizes": "3K"}, "not a multiple of 4K"),
])
def test_hmm_rejects_bad_parameters(server, options, message):
    with pytest.raises(UserError, match=message):
        hmm.Hmm().cases(server, "default", options)


# --- gds -------------------------------------------------------------------------------------------

def test_gds_quick_plan(server, tmp_path):
    cases = gds.Gds().cases(server, "quick", {})
    assert names(cases) == [
        "read-cold-64M-t4-ts4M", "read-warm-64M-t4-ts4M", "write-64M-t4-ts4M",
        "baseline-read-cold-64M", "baseline-read-warm-64M",
    ]
    assert {c.params["probe_path"] for c in cases} == {"gds"}
    assert cases[2].params["includes_fsync"] is True
    assert cases[3].params["engine"] == "posix-pinned-h2d"


def test_gds_default_matrix(server):
    cases = gds.Gds().cases(server, "default", {})
    kvikio_cases = [c for c in cases if c.params["engine"] == "kvikio"]
    assert len(kvikio_cases) == 2 * 3 * 3  # sizes x thread counts x (read cold, read warm, write)
    assert {c.params["threads"] for c in kvikio_cases} == {1, 4, 16}


def test_gds_options(server, tmp_path):
    cases = gds.Gds().cases(server, "default", {
        "sizes": "8M", "threads": "2,8", "task_sizes": "1M,16M", "ops": "read",
        "baseline": "no",
    }, RunSettings(target=tmp_path, drop_cache=True))
    assert names(cases) == ["read-cold-8M-t2-ts1M", "read-cold-8M-t2-ts16M", "read-cold-8M-t8-ts1M", "read-cold-8M-t8-ts16M"]
    assert {c.params["target"] for c in cases} == {str(tmp_path)}


@pytest.mark.parametrize("options, message", [
    ({"threads": "0"}, "at least 1"),
    ({"threads": "4096"}, "at most 1024"),
    ({"threads": "four"}, "not a whole number"),
    ({"task_sizes": "1000B"}, "not a multiple of 4K"),
    ({"caches": "lukewarm"}, "unknown 'lukewarm'"),
    ({"ops": "append"}, "unknown 'append'"),
    ({"gpu": "4"}, "GPU 4 does not exist"),
])
def test_gds_rejects_bad_parameters(server, options, message):
    with pytest.raises(UserError, match=message):
        gds.Gds().cases(server, "default", options)


def test_gds_target_must_be_a_directory(server, tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        gds.Gds().cases(server, "default", {}, RunSettings(target=tmp_path / "missing"))


def test_a_file_as_target_waives_the_gds_cases_instead_of_failing_the_plan(server, tmp_path):
    """--target FILE goes to every benchmark that takes a target: the I/O benchmarks read it, gds,
    which writes a scratch file of its own, is waived case by case (the whole run failed)."""
    existing = tmp_path / "data.bin"
    existing.write_bytes(bytes(4096))
    cases = gds.Gds().cases(server, "quick", {}, RunSettings(target=existing))
    assert cases and {c.params["target"] for c in cases} == {str(existing)}
    ctx = Context(scratch=tmp_path, profile=server, deadline=float("inf"))
    with pytest.raises(Waived, match=f"target {existing} is a file or device; gds writes a scratch file of its own"):
        with gds.Gds().prepare(cases[0], ctx):
            pass


class Defaults25:
    """KvikIO 25.x: get()/set() and is_compat_mode_preferred()."""

    def __init__(self, compat: bool):
        self.values = {"num_threads": 1, "task_size": 4 << 20, "gds_threshold": 16 << 10, "compat_mode": "AUTO"}
        self.compat = compat

    def is_compat_mode_preferred(self):
        return self.compat

    def get(self, name):
        return self.values[name]

    def set(self, config):
        outer = self

        class Restore:
            def __init__(self):
                self.old = {k: outer.values[k] for k in config}
                outer.values.update(config)

            def __enter__(self):
                return None

            def __exit__(self, *exc):
                outer.values.update(self.old)

        return Restore()


class Defaults24:
    """KvikIO 24.x: compat_mode() and context-manager setters."""

    def __init__(self, compat):
        self.compat, self.threads, self.task = compat, 1, 4 << 20

    def compat_mode(self):
        return self.compat

    def get_num_threads(self):
        return self.threads

    def task_size(self):
        return self.task

    def gds_threshold(self):
        return 1 << 20

    def set_num_threads(self, n):
        return self._setting("threads", n)

    def set_task_size(self, n):
        return self._setting("task", n)

    def _setting(self, attr, value):
        from contextlib import contextmanager

        @contextmanager
        def cm():
            old = getattr(self, attr)
            setattr(self, attr, value)
            try:
                yield
            finally:
                setattr(self, attr, old)

        return cm()


class CompatMode:
    def __init__(self, name):
        self.name = name


def test_kvikio_compat_mode_under_both_api_generations():
    assert gds.kvikio_compat(Defaults25(True)) is True
    assert gds.kvikio_compat(Defaults25(False)) is False
    assert gds.kvikio_compat(Defaults24(True)) is True
    assert gds.kvikio_compat(Defaults24(CompatMode("ON"))) is True
    assert gds.kvikio_compat(Defaults24(CompatMode("OFF"))) is False
    assert gds.kvikio_compat(Defaults24(CompatMode("AUTO"))) is None


@pytest.mark.parametrize("make", [lambda: Defaults25(False), lambda: Defaults24(False)])
def test_kvikio_settings_apply_and_restore(make):
    d = make()
    with gds.kvikio_settings(d, 8, 16 << 20):
        assert gds.kvikio_setting(d, "num_threads") == 8
        assert gds.kvikio_setting(d, "task_size") == 16 << 20
    assert gds.kvikio_setting(d, "num_threads") == 1
    assert gds.kvikio_setting(d, "task_size") == 4 << 20
    assert gds.kvikio_setting(d, "gds_threshold") in (16 << 10, 1 << 20)


def test_io_path_from_kvikio_answers():
    assert gds.io_path(True, True) == "posix-compat"
    assert gds.io_path(True, None) == "posix-compat"
    assert gds.io_path(False, True) == "gds"
    assert gds.io_path(False, False) == "cufile-compat"
    assert gds.io_path(False, None) == "unknown"
    assert gds.io_path(None, True) == "unknown"


def test_file_compat_for_one_file_and_size():
    assert gds.file_compat(False, 8 << 10, 16 << 10, True) is True  # below gds_threshold: POSIX always
    assert gds.file_compat(None, 8 << 10, 16 << 10, None) is True
    assert gds.file_compat(False, 64 << 20, 16 << 10, False) is True  # AUTO, no O_DIRECT: POSIX
    assert gds.file_compat(False, 64 << 20, 16 << 10, True) is False
    assert gds.file_compat(False, 64 << 20, 16 << 10, None) is False  # KvikIO < 25.12 cannot tell
    assert gds.file_compat(True, 64 << 20, 16 << 10, True) is True
    assert gds.file_compat(None, 64 << 20, None, None) is None


class FakeCuFile:
    """kvikio.CuFile before 25.12: whole-file POSIX reads and writes of a (stand-in) CuPy array."""

    def __init__(self, path, flags):
        self.fd = os.open(path, os.O_RDWR if "+" in flags else os.O_RDONLY)

    @staticmethod
    def _bytes(buf):
        return (ctypes.c_char * buf.nbytes).from_address(buf.__cuda_array_interface__["data"][0])

    def read(self, buf):
        return os.preadv(self.fd, [self._bytes(buf)], 0)

    def write(self, buf):
        return os.pwrite(self.fd, self._bytes(buf), 0)

    def fileno(self):
        return self.fd

    def close(self):
        os.close(self.fd)


def fake_kvikio(direct_io: bool | None, gds_available: bool) -> types.SimpleNamespace:
    cufile = FakeCuFile if direct_io is None else type("CuFile", (FakeCuFile,), {"is_direct_io_supported": lambda self: direct_io})
    props = types.SimpleNamespace(is_gds_available=gds_available, allow_compat_mode=True, major_version=2, minor_version=24)
    return types.SimpleNamespace(defaults=Defaults25(False), CuFile=cufile, cufile_driver=types.SimpleNamespace(properties=props),
                                 __version__="26.10.00")


@pytest.mark.parametrize("op, size, direct_io, gds_available, path", [
    ("read", 64 << 10, True, True, "gds"),
    ("read", 64 << 10, True, False, "cufile-compat"),
    ("read", 64 << 10, False, True, "posix-compat"),  # the file could not be opened with O_DIRECT
    ("read", 8 << 10, True, True, "posix-compat"),  # below KvikIO's gds_threshold (16K here)
    ("read", 64 << 10, None, True, "gds"),  # KvikIO < 25.12: only the global answer
    ("write", 64 << 10, False, True, "posix-compat"),
])
def test_kvikio_case_names_the_path_of_its_own_file(tmp_path, monkeypatch, op, size, direct_io, gds_available, path):
    file = tmp_path / "f.bin"
    gds._write_file(file, size, pattern=op == "read")
    params = {"size": size, "iterations": 2, "threads": 4, "task_size": 4 << 20, "op": op, "cache": "warm", "probe_path": "gds"}
    kvikio = fake_kvikio(direct_io, gds_available)
    cp = StandIn(Config()).install(monkeypatch).cupy
    with ExitStack() as stack:
        measure = gds._kvikio_case(cp, kvikio, file, params, {}, stack)
        assert kvikio.defaults.values["num_threads"] == 4
        sample = measure()
    assert kvikio.defaults.values["num_threads"] == 1  # restored
    assert sample.extra["path"] == path
    assert sample.extra["kvikio_gds_threshold"] == 16 << 10
    assert sample.extra["kvikio_direct_io"] is direct_io
    assert (sample.extra["cufile"] != {}) == (path != "posix-compat")


def test_cold_reads_are_waived_when_the_page_cache_stays(tmp_path, monkeypatch):
    """On tmpfs, or wherever POSIX_FADV_DONTNEED leaves the pages, a cold read would be a warm one
    (the POSIX baseline takes the same step before its reads: gds._before_each_read)."""
    file = tmp_path / "f.bin"
    gds._write_file(file, 64 << 10)
    params = {"size": 64 << 10, "iterations": 2, "threads": 4, "task_size": 4 << 20, "op": "read", "cache": "cold",
              "probe_path": "gds"}
    cp = StandIn(Config()).install(monkeypatch).cupy
    with ExitStack() as stack:
        measure = gds._kvikio_case(cp, fake_kvikio(True, True), file, params, {}, stack)
        assert measure().value > 0  # dropped: the cold case runs
        monkeypatch.setattr(iofile, "resident_fraction", lambda path, span: 1.0)
        with pytest.raises(Waived, match=rf"the page cache could not be dropped for {file} \(100% still resident\): "
                                         r"cold reads would be warm"):
            measure()


def test_cufile_properties_old_and_new_layouts():
    class Props:
        is_gds_available = True
        allow_compat_mode = False
        major_version = 2
        minor_version = 24

    class Old:
        class cufile_driver:
            DriverProperties = Props

    class New:
        class cufile_driver:
            properties = Props()

    expected = {"gds_available": True, "allow_compat_mode": False, "nvfs_major": 2, "nvfs_minor": 24}
    assert gds.cufile_properties(Old) == expected
    assert gds.cufile_properties(New) == expected
    assert gds.cufile_properties(object()) == {}


def test_parse_kvikio_report():
    text = (
        "Roundtrip benchmark\n----\nnbytes            | 1073741824 bytes (1.00 GiB)\n"
        "==================================\n"
        "cufile read       |   3.50 GiB/s ± 1.00 % (3.49 GiB/s, 3.51 GiB/s)\n"
        "cufile write      | 812.00 MiB/s\n"
        "posix read        |   2.00 GiB/s\n"
    )
    got = gds.parse_kvikio_report(text)
    assert got["cufile read"] == pytest.approx(3.5 * (1 << 30) / 1e9)
    assert got["cufile write"] == pytest.approx(812 * (1 << 20) / 1e9)
    assert set(got) == {"cufile read", "cufile write", "posix read"}
    assert gds.parse_kvikio_report("nothing here") == {}


def test_drop_page_cache_and_scratch_file(tmp_path):
    path = tmp_path / "f.bin"
    gds._write_file(path, 3 * gpu_common.PATTERN_BYTES)
    data = path.read_bytes()
    import numpy as np

    assert data == np.tile(gpu_common.pattern(np), 3).tobytes()
    iofile.drop_path_cache(path)  # must not fail on a real file system
    assert iofile.mount_of(tmp_path) is not None


def test_gds_scratch_file_larger_than_the_free_space_is_refused_before_writing(tmp_path, monkeypatch):
    from gpubench.bench.core.interface import BenchFailure

    monkeypatch.setattr(iofile, "free_bytes", lambda path: 1 << 20)
    with pytest.raises(BenchFailure, match=rf"no space left on {tmp_path} for a 4194304-byte scratch file "
                                           rf"\(1048576 bytes free\)"):
        gds._write_file(tmp_path / "f.bin", 4 << 20)
    assert list(tmp_path.iterdir()) == []


# --- shared helpers ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("256", 256 << 20), ("256M", 256 << 20), ("1G", 1 << 30), ("512K", 512 << 10), ("4096B", 4096), ("2GiB", 2 << 30),
])
def test_parse_size(text, expected):
    assert params.parse_size("x", "sizes", text) == expected


@pytest.mark.parametrize("nbytes, name", [(4096, "4K"), (256 << 20, "256M"), (1 << 30, "1G"), (1536 << 10, "1536K"), (8, "8B")])
def test_format_size(nbytes, name):
    assert params.format_size(nbytes) == name


def test_bandwidth_sample_is_the_median_of_iterations():
    s = gpu_common.bandwidth_sample(1_000_000_000, [0.5, 0.25, 1.0], {"path": "x"}, {"copy_s_median": 0.1})
    assert s.value == 2.0
    assert s.metrics["gbps_min"] == 1.0 and s.metrics["gbps_max"] == 4.0
    assert s.metrics["bytes"] == 3e9 and s.metrics["iterations"] == 3
    assert s.metrics["copy_s_median"] == 0.1 and s.extra == {"path": "x"}
    with pytest.raises(ValueError):
        gpu_common.bandwidth_sample(1, [0.0])


def test_latency_sample_in_microseconds():
    s = gpu_common.latency_sample([2e-6, 1e-6, 3e-6], 100, 8)
    assert s.value == pytest.approx(2.0)
    assert s.metrics["transfers"] == 300 and s.metrics["bytes"] == 2400


def test_wall_intervals_runs_before_untimed():
    calls = []
    seconds = gpu_common.wall_intervals(lambda: calls.append("op"), 3, lambda: calls.append("before"))
    assert calls == ["before", "op"] * 3 and len(seconds) == 3


def test_pinned_host_memory_is_freed_when_its_device_address_cannot_be_had():
    freed = []

    def no_mapping(ptr):
        raise RuntimeError("cudaErrorInvalidValue")

    runtime = types.SimpleNamespace(hostAlloc=lambda nbytes, flags: 4096, pointerGetAttributes=no_mapping, freeHost=freed.append)
    cp = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))
    with pytest.raises(RuntimeError, match="cudaErrorInvalidValue"):
        gpu_common.PinnedHost(cp, 1 << 20)
    assert freed == [4096]


def test_gpu_usable_says_why_not_without_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert gpu_common.gpu_usable() == f"CuPy is not installed: {gpu_common.INSTALL_HINT}"


@pytest.mark.parametrize("required, outcome", [("", "1 skipped"), ("1", "1 error")])
def test_gpu_suite_fails_instead_of_skipping_when_a_gpu_is_required(tmp_path, required, outcome):
    """What `bash ci/test.sh -m gpu` relies on: a GPU runner without CuPy must not pass by skipping."""
    (tmp_path / "cupy.py").write_text("raise ImportError('no CuPy here')\n")  # a CuPy that does not import, on any machine
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])), GPUBENCH_REQUIRE_GPU=required)
    suite = Path(__file__).with_name("test_gpu_real.py")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "-k", "memcpy", str(suite)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert outcome in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == (1 if required else 0)
    if required:
        assert "GPUBENCH_REQUIRE_GPU=1, but CuPy does not import: no CuPy here" in proc.stdout


def test_importing_the_benchmarks_loads_no_gpu_library():
    code = (
        "import sys\n"
        "import gpubench.bench.gpu.memcpy, gpubench.bench.gpu.p2p, gpubench.bench.gpu.gds, gpubench.bench.gpu.hmm\n"
        "bad = [m for m in ('cupy', 'kvikio', 'numba', 'pynvml') if m in sys.modules]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_gpubench_run_waives_all_four_without_a_gpu(tmp_path):
    from typer.testing import CliRunner

    from gpubench.cli import app

    if not gpu_common.nvidia_gpus(probe(Source("/"), ["gpu"])) == []:
        pytest.skip("this machine has an NVIDIA GPU")
    db = tmp_path / "results.db"
    args = ["run", "--quick", "--no-telemetry", "--no-report", "--db", str(db), "--json"]
    for key in ("memcpy", "p2p", "gds", "hmm"):
        args += ["--only", key]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    rows = {r["benchmark"]: r for r in run["results"]}
    assert set(rows) == {"memcpy", "p2p", "gds", "hmm"}
    for r in rows.values():
        assert r["status"] == "waived" and r["reason"].startswith("no NVIDIA GPU found (probe: gpus = ")
