#!/usr/bin/env bash
# A Slurm Prolog: before a job starts on a node, check the node with gpubench's health profile
# (under a minute) and keep the job off a node that is unhealthy. In slurm.conf:
#   Prolog=/etc/slurm/gpubench-prolog.sh
#   PrologFlags=Alloc            # run it when the node is allocated, before the job's first step
# A prolog that exits non-zero drains the node and requeues the job. The verdict is one JSON line
# (logged with the node's name); gpubench's exit status: 0 healthy, 1 unhealthy, 2 could not run.
#
# The node's baseline is its own earlier health run, labelled health-baseline: make it once on a
# node known to be good (and after a deliberate change such as a driver update):
#   gpubench run --profile health --db /var/lib/gpubench/health.db --label health-baseline
set -uo pipefail

DB=/var/lib/gpubench/health.db
BASELINE=label:health-baseline

baseline=()
if [ -f "$DB" ]; then
  baseline=(--baseline "$BASELINE")
fi
verdict=$(timeout 58 gpubench run --profile health --db "$DB" "${baseline[@]}")
status=$?
logger -t gpubench-health "node ${SLURMD_NODENAME:-$(hostname -s)} job ${SLURM_JOB_ID:-?}: $verdict"

case $status in
  0) exit 0 ;;
  1) exit 1 ;;  # unhealthy: Slurm drains the node (reason: prolog error) and requeues the job
  *) exit 0 ;;  # could not run (busy, no baseline yet, killed by timeout): let the job start; the log says why
esac
