"""What changed between two sides besides the numbers: settings from the run metadata and the
capability verdicts of the two runs' probes."""

from __future__ import annotations

from dataclasses import replace

from gpubench.probe.model import Status
from gpubench.results.changes import SETTINGS, WhatChanged, what_changed
from gpubench.results.compare import compare
from tests.factories import machine, measured, run_of


def test_settings_that_differ_and_those_that_do_not() -> None:
    base = run_of((measured(),), metadata={"kernel": "6.8.0-45-generic", "governor": "performance"})
    new = run_of((measured(),), metadata={"kernel": "6.12.0", "governor": "performance"})
    changed = what_changed(compare(base, new))
    by_key = {s.key: s for s in changed.settings}
    assert [s.key for s in changed.changed_settings] == ["kernel"]
    assert by_key["kernel"].base == ("6.8.0-45-generic",) and by_key["kernel"].new == ("6.12.0",)
    assert by_key["kernel"].title == "kernel release"
    assert by_key["governor"].recorded and not by_key["governor"].differs
    # the run metadata's keys, the known ones first in their order, then the others (packages too)
    assert [s.key for s in changed.settings][:4] == ["kernel", "cmdline", "governor", "thp"]
    assert "packages.numpy" in by_key and "label" not in by_key
    assert by_key["packages.numpy"].title == "numpy (Python package)"


def test_a_setting_an_older_run_did_not_record_is_not_a_change() -> None:
    older = run_of((measured(),))
    older = replace(older, metadata={k: v for k, v in older.metadata.items() if k != "thp"})
    newer = run_of((measured(),), metadata={"thp": "always"})
    thp = {s.key: s for s in WhatChanged.between([older], [newer]).settings}["thp"]
    assert thp.base == (None,) and thp.new == ("always",)
    assert not thp.recorded and not thp.differs
    assert thp in WhatChanged.between([older], [newer]).unrecorded_settings


def test_absent_is_recorded_and_a_side_of_several_runs_lists_each_value() -> None:
    base = [run_of((measured(),), metadata={"governor": None}), run_of((measured(),), metadata={"governor": None})]
    new = [run_of((measured(),), metadata={"governor": "powersave"}), run_of((measured(),), metadata={"governor": "performance"})]
    governor = {s.key: s for s in WhatChanged.between(base, new).settings}["governor"]
    assert governor.base == ("",) and governor.new == ("powersave", "performance")
    assert governor.recorded and governor.differs


def test_capability_verdicts_that_differ_come_from_the_probe_diff() -> None:
    base = run_of((measured(),))
    new = run_of((measured(),), snapshot="nvidia-multigpu")
    changed = WhatChanged.between([base], [new])
    assert changed.probed == (True, True)
    by_name = {c.name: c for c in changed.capabilities}
    assert by_name["nvidia driver"].status_before is Status.NO and by_name["nvidia driver"].gained
    assert all(c.status_before is not c.status_after for c in changed.capabilities)
    document = changed.to_dict()
    entry = next(c for c in document["capabilities"] if c["name"] == "nvidia driver")
    assert (entry["base"], entry["new"], entry["gained"], entry["lost"]) == ("no", "yes", True, False)
    # the same machine on both sides: no verdict differs
    assert WhatChanged.between([base], [run_of((measured(),))]).capabilities == ()


def test_a_run_without_a_stored_probe_compares_no_verdicts() -> None:
    base = replace(run_of((measured(),)), profile={})
    changed = WhatChanged.between([base], [run_of((measured(),))])
    assert changed.probed == (False, True) and changed.capabilities == ()
    assert machine().capabilities  # the other side had verdicts; none is called changed


def test_every_known_setting_is_one_the_run_metadata_captures() -> None:
    captured = run_of().metadata
    assert [key for key, _ in SETTINGS if key not in captured] == []
