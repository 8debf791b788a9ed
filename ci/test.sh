#!/usr/bin/env bash
# The project's test command: installs what the tests need, then runs them.
#   bash ci/test.sh            # the CPU suite (what CI runs)
#   bash ci/test.sh -m gpu     # the GPU suite, on a machine with an NVIDIA GPU: installs the gpu
#                              # extra too (GPUBENCH_GPU_EXTRA=gpu-cu13 for CUDA 13), and a GPU
#                              # test that cannot run fails instead of skipping
set -euo pipefail
cd "$(dirname "$0")/.."

# System tools the tests use for real: fio (io_uring cross-check), a C compiler (memtier's C
# reference), libnuma/numactl (memory tiers), Chromium (HTML reports rendered headless). Installed when missing and we may.
need=()
command -v cc >/dev/null && [ -e /usr/include/stdio.h ] || need+=(gcc libc6-dev)
command -v fio >/dev/null || need+=(fio)
command -v numactl >/dev/null || need+=(numactl)
ldconfig -p 2>/dev/null | grep -q 'libnuma\.so\.1' || need+=(libnuma1)
command -v chromium >/dev/null || need+=(chromium)
# vm tests (tests/vm, marker vm): real Debian kernels booted under QEMU through virtme-ng (a pip
# package of the test extra), which needs a static busybox for its initramfs and file (it reads a
# kernel image's release); depmod (kmod) and the cxl, ndctl and daxctl tools the CXL guest runs.
# The tests fetch the two kernel packages (about 180 MB) into $GPUBENCH_KERNEL_CACHE (default
# ~/.cache/gpubench/kernels) once. With no arguments the whole suite runs, vm tests included
# (about 10 minutes of them under emulation on 2 vCPUs); where QEMU cannot run they skip, and -rs
# prints why.
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
{ b=$(command -v busybox) && ldd "$b" 2>&1 | grep -q "not a dynamic executable"; } || need+=(busybox-static)
command -v file >/dev/null || need+=(file)
command -v depmod >/dev/null || need+=(kmod)
command -v cxl >/dev/null && command -v ndctl >/dev/null || need+=(ndctl)
command -v daxctl >/dev/null || need+=(daxctl)
(($#)) || set -- -m 'not gpu' -rs
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
extras=test
if [[ " $* " == *" -m gpu "* ]]; then
  extras="test,${GPUBENCH_GPU_EXTRA:-gpu}"
  export GPUBENCH_REQUIRE_GPU=1
fi
"$venv/bin/python" -m pip install -q ".[$extras]"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
