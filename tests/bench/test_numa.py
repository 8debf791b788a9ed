"""NUMA placement for real on this machine: bind, verify with move_pages and numa_maps, pin threads.

Run against both ways of reaching the kernel: libnuma's wrappers and raw system calls."""

from __future__ import annotations

import ctypes.util
import errno
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from gpubench.bench.engines import numa

MIB = 1 << 20


@pytest.fixture(params=["libnuma", "syscalls"])
def calls(request, monkeypatch):
    """numa.calls() backed by libnuma, or by raw system calls with libnuma hidden."""
    if request.param == "syscalls":
        monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    elif not ctypes.util.find_library("numa"):
        pytest.skip("libnuma is not installed (apt: libnuma1)")
    monkeypatch.setattr(numa, "_calls", None)
    api = numa.calls()
    if not api.available:
        pytest.skip(f"no way to reach the NUMA system calls on {os.uname().machine}")
    try:
        numa.allowed_nodes()
    except numa.NumaError as e:
        pytest.skip(f"this kernel offers no memory policies here: {e}")
    expected = "libnuma" if request.param == "libnuma" else "raw system calls"
    assert api.source.startswith(expected)
    return api


def missing_node() -> int:
    """A node number this machine does not have."""
    possible = Path("/sys/devices/system/node/possible")
    top = max(numa.allowed_nodes())
    if possible.exists():
        text = possible.read_text().strip()
        top = max(top, max(int(part.split("-")[-1]) for part in text.split(",")))
    return top + 1


def test_bound_buffer_is_verified_on_its_node_after_first_touch(calls):
    node = numa.allowed_nodes()[0]
    with numa.NodeBuffer(4 * MIB, node, hugepages=False) as buf:
        assert numa.policy_at(buf.address) == ("bind", [node])
        untouched = buf.placement()
        assert untouched.not_present == untouched.pages_checked and not untouched.verified
        view = np.frombuffer(buf.map, dtype=np.uint8)
        view[:] = 1
        placed = buf.placement()
        assert placed.verified and placed.fraction_on_node == 1.0
        assert placed.pages_checked == 4 * MIB // numa.page_size()
        entry = numa.numa_maps_entry(buf.address)
        assert entry is not None and entry.policy == f"bind:{node}" and entry.fraction_on(node) == 1.0
        del view


def test_placement_reports_pages_on_another_node():
    bogus = numa.Placement(node=1, pages_checked=4, on_node=2, not_present=1, elsewhere={0: 1})
    assert not bogus.verified and bogus.fraction_on_node == 0.5
    assert bogus.describe() == "2/4 sampled pages on node 1, 1 on node 0, 1 not present"


def test_binding_to_a_node_that_does_not_exist_is_an_error(calls):
    node = missing_node()
    with pytest.raises(numa.NumaError) as err:
        numa.NodeBuffer(MIB, node)
    assert err.value.errno == errno.EINVAL and "mbind" in str(err.value)


def test_bind_refuses_an_unaligned_range(calls):
    with numa.NodeBuffer(2 * numa.page_size(), None) as buf:
        with pytest.raises(numa.NumaError, match="not page aligned"):
            numa.bind(buf.address + 8, numa.page_size(), 0)


def test_a_view_cannot_outlive_its_buffer():
    buf = numa.NodeBuffer(numa.page_size(), None)
    view = np.frombuffer(buf.map, dtype=np.uint8)
    view[:] = 7
    buf.close()  # still viewed: the pages stay mapped
    assert not buf.map.closed and int(view.sum()) == 7 * view.size
    del view
    buf.close()
    assert buf.map.closed


def test_pinned_moves_every_thread_and_restores_them():
    before = os.sched_getaffinity(0)
    target = [min(before)]
    started = threading.Event()
    stop = threading.Event()
    seen: dict[str, set[int]] = {}

    def worker():
        seen["inside"] = os.sched_getaffinity(0)
        started.set()
        stop.wait(5)
        seen["after"] = os.sched_getaffinity(0)

    with numa.pinned(target):
        assert os.sched_getaffinity(0) == set(target)
        thread = threading.Thread(target=worker)
        thread.start()
        started.wait(5)
    stop.set()
    thread.join(5)
    assert os.sched_getaffinity(0) == before
    assert seen["inside"] == set(target)
    assert seen["after"] == before


def test_thread_cpus_is_the_union_of_every_threads_affinity():
    before = os.sched_getaffinity(0)
    if len(before) < 2:
        pytest.skip("needs two CPUs in this process's CPU set")
    first, second = sorted(before)[:2]
    started = threading.Event()
    stop = threading.Event()

    def worker():
        os.sched_setaffinity(0, {second})
        started.set()
        stop.wait(5)

    with numa.pinned([first]):
        assert numa.thread_cpus() == [first]
        thread = threading.Thread(target=worker)
        thread.start()
        started.wait(5)
        try:
            assert numa.thread_cpus() == [first, second]
        finally:
            stop.set()
            thread.join(5)
    assert os.sched_getaffinity(0) == before
