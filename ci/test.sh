#!/usr/bin/env bash
# The project's test command: installs what the tests need, then runs them.
#   bash ci/test.sh            # the CPU suite (what CI runs)
#   bash ci/test.sh -m gpu     # the GPU suite, on a machine with an NVIDIA GPU (see below)
set -euo pipefail
cd "$(dirname "$0")/.."

# --- The GPU suite: bash ci/test.sh -m gpu ---------------------------------------------------------
# Runs on a GPU machine, online or offline, and needs none of the system tools the CPU suite
# installs below. A GPU test that cannot run there fails instead of skipping.
#   GPUBENCH_TEST_VENV=DIR   the Python environment (a venv, a conda environment: DIR/bin/python or
#                            python3); default .venv, made if missing with --system-site-packages,
#                            so the machine's own CuPy, KvikIO and NVML count
#   GPUBENCH_TEST_INSTALL=0  install nothing, download nothing: test this checkout against that
#                            environment as it is (an offline node with the GPU stack installed)
#   GPUBENCH_GPU_EXTRA=NAME  the extra to install, gpu (CUDA 12) or gpu-cu13; default: the one the
#                            driver's CUDA version calls for (ci/cuda-extra.sh)
#   GPUBENCH_TEST_SCRATCH=DIR  where the gds test writes (default: pytest's temporary directory)
if [[ " $* " == *" -m gpu "* ]]; then
  export GPUBENCH_REQUIRE_GPU=1
  venv=${GPUBENCH_TEST_VENV:-.venv}
  py="$venv/bin/python"
  [ -x "$py" ] || [ ! -x "$venv/bin/python3" ] || py="$venv/bin/python3"
  if [ "${GPUBENCH_TEST_INSTALL:-1}" = 0 ]; then
    [ -x "$py" ] || { echo "ci/test.sh: GPUBENCH_TEST_INSTALL=0, but there is no Python at $venv/bin" >&2; exit 1; }
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout, not an installed gpubench
    if ! why=$("$py" -c "import pytest, gpubench.cli" 2>&1); then
      echo "ci/test.sh: GPUBENCH_TEST_INSTALL=0, but $py cannot run the tests: ${why##*$'\n'}" >&2
      exit 1
    fi
  else
    [ -x "$py" ] || python3 -m venv --system-site-packages "$venv"
    extra=${GPUBENCH_GPU_EXTRA:-$(bash ci/cuda-extra.sh)}
    echo "ci/test.sh: installing gpubench with its test and $extra extras into $venv" >&2
    build=()  # with hatchling at hand, build gpubench without fetching it
    ! "$py" -c "import hatchling" 2>/dev/null || build=(--no-build-isolation)
    "$py" -m pip install -q ${build[@]+"${build[@]}"} ".[test,$extra]"
  fi
  exec "$py" -m pytest -q -p no:cacheprovider "$@"
fi

# System tools the tests use for real: fio (io_uring cross-check), a C compiler (memtier's C
# reference), libnuma/numactl (memory tiers), Chromium (HTML reports rendered headless). Installed when missing and we may.
need=()
command -v cc >/dev/null && [ -e /usr/include/stdio.h ] || need+=(gcc libc6-dev)
command -v fio >/dev/null || need+=(fio)
command -v numactl >/dev/null || need+=(numactl)
ldconfig -p 2>/dev/null | grep -q 'libnuma\.so\.1' || need+=(libnuma1)
command -v chromium >/dev/null || need+=(chromium)
# Slurm and munge from the distribution for the fleet tests: tests/fleet/slurm_cluster.py starts its
# own munged, slurmctld and one slurmd per network namespace (iproute2, util-linux), removes them after
command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v srun >/dev/null || need+=(slurm-wlm)
command -v munged >/dev/null || need+=(munge)
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null && command -v unshare >/dev/null || need+=(util-linux)
# vm tests (tests/vm, marker vm): real Debian kernels booted under QEMU through virtme-ng (a pip
# package of the test extra), which needs a static busybox for its initramfs and file (it reads a
# kernel image's release); depmod (kmod) and the cxl, ndctl and daxctl tools the CXL guest runs.
# The tests fetch the two kernel packages (about 180 MB) into $GPUBENCH_KERNEL_CACHE (default
# ~/.cache/gpubench/kernels) once. With no arguments the whole suite runs, vm tests included
# (about 13 minutes of them under emulation on a shared 2-vCPU machine); where QEMU cannot run
# they skip and say why.
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
{ b=$(command -v busybox) && { ldd "$b" 2>&1 || true; } | grep -q "not a dynamic executable"; } || need+=(busybox-static)  # ldd fails on a static binary
command -v file >/dev/null || need+=(file)
command -v depmod >/dev/null || need+=(kmod)
command -v cxl >/dev/null && command -v ndctl >/dev/null || need+=(ndctl)
command -v daxctl >/dev/null || need+=(daxctl)
(($#)) || set -- -m 'not gpu'
if ((${#need[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "ci/test.sh: installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "ci/test.sh: missing ${need[*]}; the tests that need them will say so" >&2
  fi
fi

venv=${GPUBENCH_TEST_VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
"$venv/bin/python" -m pip install -q ".[test]"
exec "$venv/bin/python" -m pytest -q -rs -p no:cacheprovider "$@"  # -rs: every skipped test says why
