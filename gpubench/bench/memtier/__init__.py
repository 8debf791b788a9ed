"""memtier: bandwidth and idle latency for every (CPU node, memory node) pair, with the tier view.

For each CPU node and each memory node (CPU-less CXL nodes included) it runs the STREAM kernels
copy, scale, add and triad, parallel over the CPU node's cores, and a dependent-load pointer chase
through a random cyclic permutation of cache lines (one line per hop) for idle latency. Buffers
are bound to the memory node with mbind before the first touch, every thread of the process is
pinned to the CPU node, and the pages are checked after every repetition (move_pages, then
/proc/self/numa_maps). Each case carries the memory node's tier, whether it has CPUs and the
firmware's HMAT access0 numbers, so a report shows measured beside advertised.

One repetition of a STREAM case is the best of `best_of` passes over the arrays, as STREAM
reports its best time; a chase repetition is one walk of `hops` loads on one CPU of the node,
continuing from where the previous walk stopped.

Parameters (--param memtier.NAME=VALUE):
  size        bytes of each STREAM array (MiB, or 512K/64M/1G); default: the larger of 256 MiB and
              4x the CPU node's last-level caches (quick: 64 MiB / 2x, full: 1 GiB / 8x)
  chase_size  bytes of the chase buffer; default: the larger of 512 MiB and 16x the last-level
              cache one core sees (quick: 128 MiB / 4x, full: 1 GiB / 32x)
  threads     STREAM threads per CPU node (default: all of the node's CPUs)
  kernels     any of copy,scale,add,triad,chase (default: all)
  nodes       memory nodes to measure (default: every node with memory, CPU-less ones included)
  cpu_nodes   CPU nodes to measure from (default: every node with CPUs)
  hops        dependent loads per chase repetition (quick 1M, default 5M, full 20M)
  stores      streaming (non-temporal, STREAM's ceiling; default) or plain
  best_of     passes per STREAM repetition (quick 3, default 5, full 10)
  hugepages   madvise(MADV_HUGEPAGE) on every buffer (default true)
"""

from gpubench.bench.memtier.benchmark import MemTier
from gpubench.bench.memtier.plan import KERNELS, STREAM_KERNELS, TierParams, Topology, topology

__all__ = ["KERNELS", "STREAM_KERNELS", "MemTier", "TierParams", "Topology", "topology"]
