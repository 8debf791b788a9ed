#!/usr/bin/env bash
# Prints the gpubench extra that matches this machine's NVIDIA driver: gpu-cu13 where the driver
# supports CUDA 13 or later, gpu (CUDA 12) otherwise. The driver's CUDA version comes from
# nvidia-smi, else from libcuda.so.1 itself (cuDriverGetVersion); when neither answers, gpu, with
# a note on stderr. No network, no GPU work.
set -euo pipefail

major=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\)\..*/\1/p' | head -n 1 || true)
if [ -z "$major" ]; then
  major=$(python3 - 2>/dev/null <<'EOF' || true
import ctypes
version = ctypes.c_int()
if ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(version)) == 0:
    print(version.value // 1000)
EOF
  )
fi
if [ -z "$major" ]; then
  echo "ci/cuda-extra.sh: neither nvidia-smi nor libcuda.so.1 tells the driver's CUDA version; using the gpu extra (CUDA 12)" >&2
  echo gpu
elif [ "$major" -ge 13 ]; then
  echo gpu-cu13
else
  echo gpu
fi
