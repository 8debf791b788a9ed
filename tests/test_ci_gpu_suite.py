"""`bash ci/test.sh -m gpu` on GPU machines: the CUDA extra it picks from the driver
(ci/cuda-extra.sh: nvidia-smi, else libcuda.so.1), and an existing environment used as it is,
installing and downloading nothing. The environment here is a stub that records how it is run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMI_HEADER = "| NVIDIA-SMI 570.124.06             Driver Version: 570.124.06     CUDA Version: {cuda}     |\n"
LIBCUDA = "int cuDriverGetVersion(int *version) {{ *version = {version}; return 0; }}\n"


def tool(directory: Path, name: str, script: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def cuda_extra(tmp_path: Path, smi: str | None, libcuda_version: int | None = None) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    tool(bin_dir, "nvidia-smi", f"printf '%s' '{smi}'\n" if smi else "exit 9\n")  # no driver: nvidia-smi fails
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "LD_LIBRARY_PATH": ""}
    if libcuda_version is not None:
        source = tmp_path / "cuda.c"
        source.write_text(LIBCUDA.format(version=libcuda_version))
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tmp_path / "libcuda.so.1"), str(source)], check=True)
        env["LD_LIBRARY_PATH"] = str(tmp_path)
    return subprocess.run(["bash", str(ROOT / "ci/cuda-extra.sh")], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("cuda, extra", [("12.8", "gpu"), ("13.0", "gpu-cu13"), ("11.8", "gpu")])
def test_the_extra_follows_nvidia_smi(tmp_path, cuda, extra):
    assert cuda_extra(tmp_path, SMI_HEADER.format(cuda=cuda)).stdout == extra + "\n"


@pytest.mark.parametrize("version, extra", [(12040, "gpu"), (13010, "gpu-cu13")])
def test_without_nvidia_smi_libcuda_tells(tmp_path, version, extra):
    if shutil.which("cc") is None:
        pytest.skip("no C compiler to build a libcuda.so.1 with")
    assert cuda_extra(tmp_path, None, version).stdout == extra + "\n"


def test_when_nothing_tells_the_cuda_12_extra_is_named(tmp_path):
    import ctypes.util

    if ctypes.util.find_library("cuda"):
        pytest.skip("this machine has a libcuda")
    proc = cuda_extra(tmp_path, None)
    assert proc.stdout == "gpu\n"
    assert "neither nvidia-smi nor libcuda.so.1 tells the driver's CUDA version" in proc.stderr


def stub_environment(tmp_path: Path) -> Path:
    """A Python environment whose python records its arguments and PYTHONPATH, and says yes."""
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    tool(env / "bin", "python", f'echo "$PYTHONPATH | $GPUBENCH_REQUIRE_GPU | $*" >> {tmp_path / "calls"}\n')
    return env


def test_an_existing_environment_is_used_as_it_is(tmp_path):
    env = stub_environment(tmp_path)
    proc = subprocess.run(["bash", str(ROOT / "ci/test.sh"), "-m", "gpu", "-k", "memcpy"], capture_output=True, text=True,
                          env={**os.environ, "GPUBENCH_TEST_VENV": str(env), "GPUBENCH_TEST_INSTALL": "0", "PYTHONPATH": ""},
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == [f"{ROOT} | 1 | -c import pytest, gpubench.cli",
                     f"{ROOT} | 1 | -m pytest -q -p no:cacheprovider -m gpu -k memcpy"]  # no pip


def test_installing_picks_the_extra_of_the_driver(tmp_path):
    env = stub_environment(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool(bin_dir, "nvidia-smi", f"printf '%s' '{SMI_HEADER.format(cuda='13.0')}'\n")
    proc = subprocess.run(["bash", str(ROOT / "ci/test.sh"), "-m", "gpu"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "GPUBENCH_TEST_VENV": str(env), "PATH": f"{bin_dir}:{os.environ['PATH']}",
                               "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stderr
    assert "installing gpubench with its test and gpu-cu13 extras" in proc.stderr
    calls = [c.split(" | ")[2] for c in (tmp_path / "calls").read_text().splitlines()]
    assert calls == ["-c import hatchling", "-m pip install -q --no-build-isolation .[test,gpu-cu13]",
                     "-m pytest -q -p no:cacheprovider -m gpu"]
