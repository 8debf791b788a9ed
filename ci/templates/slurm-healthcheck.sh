#!/usr/bin/env bash
# A Slurm HealthCheckProgram: gpubench's health profile on every node, draining a node whose
# verdict is unhealthy, with the reason in the node's state (scontrol show node). In slurm.conf:
#   HealthCheckProgram=/etc/slurm/gpubench-healthcheck.sh
#   HealthCheckInterval=900
#   HealthCheckNodeState=IDLE     # only on idle nodes: the check loads the GPUs and memory
# slurmd kills the program after 60 s; the profile stops itself at 50 s. Its verdict is one JSON
# line; exit status 0 healthy, 1 unhealthy, 2 could not run (e.g. a job's own gpubench run holds
# the node: the check waits for nobody).
#
# The node's baseline is its own earlier health run, labelled health-baseline (see
# slurm-prolog-health.sh); without one, only failures count.
set -uo pipefail

DB=/var/lib/gpubench/health.db
node=$(hostname -s)

baseline=()
if [ -f "$DB" ]; then
  baseline=(--baseline label:health-baseline)
fi
verdict=$(gpubench run --profile health --db "$DB" "${baseline[@]}")
status=$?
logger -t gpubench-health "$verdict"

if [ "$status" -eq 1 ]; then
  reason=$(printf '%s' "$verdict" | python3 -c 'import json, sys; print("; ".join(json.load(sys.stdin)["reasons"])[:200])')
  scontrol update nodename="$node" state=drain reason="gpubench health: $reason"
fi
exit 0  # slurmd only logs this program's exit status; draining is done above
