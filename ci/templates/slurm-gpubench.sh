#!/usr/bin/env bash
# A Slurm batch job: probe and benchmark one GPU node, keep the history on shared storage, and
# compare with the baseline runs in BASELINE_RUN, e.g. 12,13,14 or label:known-good (exit 3 on a
# significant regression).
#   sbatch --nodelist=gpu-node-07 ci/templates/slurm-gpubench.sh
#SBATCH --job-name=gpubench
#SBATCH --nodes=1
#SBATCH --exclusive
#SBATCH --gres=gpu:8            # every GPU of the node: set your nodes' count
#SBATCH --time=01:00:00
#SBATCH --output=gpubench-%j.log
set -euo pipefail

export GPUBENCH_DB=${GPUBENCH_DB:-$HOME/gpubench/$(hostname -s).db}
label="$(uname -r) job $SLURM_JOB_ID"

gpubench probe
gpubench run --label "$label" --cool-down --reports-dir "$HOME/gpubench/reports"

if [ -n "${BASELINE_RUN:-}" ]; then
  gpubench compare "$BASELINE_RUN" latest --threshold 5% --fail-on-regression
fi
