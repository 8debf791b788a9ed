"""Which runs prune deletes, and deleting runs from the store: never one still being written."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from gpubench.errors import UserError
from gpubench.results.housekeeping import PrunePolicy, parse_age, plan_prune
from gpubench.results.model import RunStatus
from gpubench.results.store import RunInProgress, Store
from gpubench.results.writer import WriterIdentity
from tests.factories import RANDREAD, SEQREAD, measured, run_of, stored

NOW = 1_800_000_000.0
DAY = 86400.0


@pytest.mark.parametrize(("text", "seconds"), [("30d", 30 * DAY), ("12h", 43200.0), ("1.5w", 10.5 * DAY), ("90m", 5400.0), ("45s", 45.0), (" 2D ", 2 * DAY)])
def test_ages(text: str, seconds: float) -> None:
    assert parse_age(text) == seconds


@pytest.mark.parametrize("text", ["30", "d", "-1d", "3x", "1e3d", "", "2 days"])
def test_what_is_not_an_age_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match="is not an age: give a number and a unit, s, m, h, d or w"):
        parse_age(text)


def test_a_policy_needs_something_to_go_by() -> None:
    with pytest.raises(ValueError):
        PrunePolicy()
    with pytest.raises(ValueError):
        PrunePolicy(keep=-1)


def _history(store: Store, ages_in_days: list[float]) -> list[int]:
    return [stored(store, run_of((measured(),), label=f"run {i}", started=NOW - age * DAY)) for i, age in enumerate(ages_in_days)]


def test_keep_the_most_recent_delete_the_rest_oldest_first(store: Store) -> None:
    ids = _history(store, [10, 1, 5, 30])  # runs 1..4; by start, newest first: 2, 3, 1, 4
    plan = plan_prune(store.list_runs(), PrunePolicy(keep=2), NOW)
    assert [listing.run.id for listing in plan.delete] == [ids[3], ids[0]]
    assert (plan.total, plan.kept, plan.in_progress) == (4, 2, ())
    assert plan_prune(store.list_runs(), PrunePolicy(keep=4), NOW).delete == ()
    assert len(plan_prune(store.list_runs(), PrunePolicy(keep=0), NOW).delete) == 4


def test_older_than_and_both_together(store: Store) -> None:
    ids = _history(store, [10, 1, 5, 30])
    older = plan_prune(store.list_runs(), PrunePolicy(older_than=7 * DAY), NOW)
    assert [listing.run.id for listing in older.delete] == [ids[3], ids[0]]
    # beyond the 3 most recent and older than 2 days: only the oldest
    both = plan_prune(store.list_runs(), PrunePolicy(keep=3, older_than=2 * DAY), NOW)
    assert [listing.run.id for listing in both.delete] == [ids[3]]


def test_a_run_in_progress_is_never_chosen(store: Store) -> None:
    ids = _history(store, [10, 20])
    live = stored(store, run_of((measured(),), status=RunStatus.RUNNING, started=NOW - 30 * DAY))  # written by this process
    plan = plan_prune(store.list_runs(), PrunePolicy(keep=0), NOW)
    assert [listing.run.id for listing in plan.delete] == [ids[1], ids[0]]
    assert [listing.run.id for listing in plan.in_progress] == [live]
    assert plan.kept == 1


def _dead_writer() -> WriterIdentity:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return WriterIdentity(WriterIdentity.current().hostname, child.pid, None, None)


def test_delete_takes_the_results_with_the_run_and_nothing_else(store: Store) -> None:
    keep, drop = (stored(store, run_of((measured(RANDREAD), measured(SEQREAD)))) for _ in range(2))
    store.delete_runs([drop])
    assert [listing.run.id for listing in store.list_runs()] == [keep]
    with pytest.raises(UserError, match=f"no run {drop}"):
        store.get_run(str(drop))
    raw = sqlite3.connect(store.path)
    assert raw.execute("SELECT DISTINCT run_id FROM results").fetchall() == [(keep,)]
    raw.close()
    with pytest.raises(UserError, match=f"no run {drop} in"):
        store.delete_runs([drop])


def test_delete_refuses_a_run_in_progress_and_then_deletes_nothing(store: Store) -> None:
    done = stored(store, run_of((measured(),)))
    live = stored(store, run_of((measured(),), status=RunStatus.RUNNING))
    with pytest.raises(RunInProgress, match=rf"run {live} is in progress \(process \d+ on this machine\): let it finish or stop it first"):
        store.delete_runs([done, live])
    assert sorted(listing.run.id for listing in store.list_runs()) == [done, live]
    # elsewhere: cannot be checked, so it counts as alive
    other = WriterIdentity.current()
    remote = store.begin_run(run_of(status=RunStatus.RUNNING), writer=WriterIdentity(other.hostname + "-other", 1, None, None))
    with pytest.raises(RunInProgress, match="which cannot be checked from here"):
        store.delete_runs([remote])
    # a writer that is gone left an interrupted run: that one goes
    crashed = store.begin_run(run_of(status=RunStatus.RUNNING), writer=_dead_writer())
    store.delete_runs([crashed])
    assert crashed not in [listing.run.id for listing in store.list_runs()]
