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
# Slurm and munge from the distribution for the fleet tests: tests/fleet/slurm_cluster.py starts its
# own munged, slurmctld and one slurmd per network namespace (iproute2, util-linux), removes them after
command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v srun >/dev/null || need+=(slurm-wlm)
command -v munged >/dev/null || need+=(munge)
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null && command -v unshare >/dev/null || need+=(util-linux)
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
exec "$venv/bin/python" -m pytest -q -rs -p no:cacheprovider "$@"  # -rs: every skipped test says why
