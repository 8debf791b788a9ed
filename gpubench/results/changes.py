"""What changed between the two sides of a comparison besides the numbers: the machine settings
each run recorded when it started (gpubench.results.metadata: kernel release, boot command line,
CPU governor, transparent huge pages, GPU driver, CUDA...) and the capability verdicts of the
probes the runs were planned from (gpubench.probe.diff, the one capability diff).

A side may hold several runs: a setting's value on a side is every distinct value its runs
recorded, in run order (one, normally). A run that did not record a setting (an older gpubench)
gives None, which a report words as "not recorded", never as a change it cannot know; a setting
recorded as absent (no cpufreq governor, no GPU) is the empty string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from gpubench.probe.diff import CapabilityChange, diff_capabilities
from gpubench.results.metadata import stored_profile
from gpubench.results.model import Comparison, Run

# The run metadata a reader of a comparison wants first, with what each is; any other setting a
# run records follows these, under its own key.
SETTINGS: tuple[tuple[str, str], ...] = (
    ("kernel", "kernel release"),
    ("cmdline", "kernel command line"),
    ("governor", "CPU frequency governor"),
    ("thp", "transparent huge pages"),
    ("smt", "simultaneous multithreading"),
    ("isolated_cpus", "isolated CPUs"),
    ("numa_nodes", "NUMA nodes online"),
    ("gpus", "GPUs"),
    ("nvidia_driver", "NVIDIA driver"),
    ("cuda_driver", "CUDA driver"),
    ("hostname", "host name"),
    ("cpu_model", "CPU model"),
    ("cpu_count", "logical CPUs"),
    ("memory_bytes", "memory"),
    ("distro", "distribution"),
    ("python", "Python"),
    ("gpubench", "gpubench"),
)
NOT_SETTINGS = frozenset({"label"})  # run metadata that names the run rather than the machine


@dataclass(frozen=True)
class SettingChange:
    """One setting on the two sides, and whether it differs."""

    key: str  # the run metadata's key, e.g. "kernel" or "packages.numba"
    title: str
    base: tuple[str | None, ...]  # each distinct value the side's runs recorded, None: not recorded
    new: tuple[str | None, ...]

    @property
    def recorded(self) -> bool:
        """Every run of both sides recorded it."""
        return None not in self.base + self.new

    @property
    def differs(self) -> bool:
        """Recorded on both sides, with other values."""
        return self.recorded and set(self.base) != set(self.new)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "base": list(self.base), "new": list(self.new),
                "recorded": self.recorded, "differs": self.differs}


@dataclass(frozen=True)
class WhatChanged:
    settings: tuple[SettingChange, ...]  # every setting either side recorded
    capabilities: tuple[CapabilityChange, ...]  # the verdicts that differ between the sides' probes
    probed: tuple[bool, bool]  # whether the base and the new side stored a probe to compare

    @property
    def changed_settings(self) -> tuple[SettingChange, ...]:
        return tuple(s for s in self.settings if s.differs)

    @property
    def unrecorded_settings(self) -> tuple[SettingChange, ...]:
        """Settings some run of either side did not record: whether they changed is not known."""
        return tuple(s for s in self.settings if not s.recorded)

    @classmethod
    def between(cls, base: Sequence[Run], new: Sequence[Run]) -> WhatChanged:
        """The first run of each side stands for its machine's probe (as Comparison.base does)."""
        base_flat, new_flat = [_flat(run.metadata) for run in base], [_flat(run.metadata) for run in new]
        keys = [key for key, _ in SETTINGS]
        keys += sorted({k for flat in base_flat + new_flat for k in flat} - set(keys) - NOT_SETTINGS)
        settings = tuple(
            SettingChange(key, _title(key), _values(base_flat, key), _values(new_flat, key))
            for key in keys
            if any(key in flat for flat in base_flat + new_flat)
        )
        before, after = stored_profile(base[0]), stored_profile(new[0])
        changes = diff_capabilities(before, after) if before is not None and after is not None else ()
        return cls(settings, changes, (before is not None, after is not None))

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": [s.to_dict() for s in self.settings],
            "probed": {"base": self.probed[0], "new": self.probed[1]},
            "capabilities": [_capability_change(c) for c in self.capabilities],
        }


def what_changed(comparison: Comparison) -> WhatChanged:
    return WhatChanged.between(comparison.base_side, comparison.new_side)


# settings recorded in a unit people do not read, as they are shown and compared
READABLE: dict[str, Callable[[Any], str]] = {
    # MemTotal moves by a few hundred KiB between two boots of one machine: a tenth of a GiB is the change
    "memory_bytes": lambda n: f"{n / 2**30:.1f} GiB" if isinstance(n, (int, float)) and not isinstance(n, bool) else str(n),
}


def _flat(metadata: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested entries (packages) as dotted keys; lists as comma-separated text; null as ""."""
    flat: dict[str, str] = {}
    for key, value in metadata.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = ", ".join(str(v) for v in value)
        elif value is None:
            flat[name] = ""
        else:
            flat[name] = READABLE.get(name, str)(value)
    return flat


def _title(key: str) -> str:
    """What a setting is: SETTINGS' words, 'numba (Python package)' for packages.numba, else its key."""
    package = key.removeprefix("packages.")
    return dict(SETTINGS).get(key) or (f"{package} (Python package)" if package != key else key)


def _values(flats: list[dict[str, str]], key: str) -> tuple[str | None, ...]:
    return tuple(dict.fromkeys(flat.get(key) for flat in flats))


def _capability_change(change: CapabilityChange) -> dict[str, Any]:
    latest = change.after or change.before
    assert latest is not None
    return {
        "area": change.area,
        "name": change.name,
        "base": change.status_before.value if change.status_before else None,  # None: not probed on that side
        "new": change.status_after.value if change.status_after else None,
        "lost": change.lost,
        "gained": change.gained,
        "why": latest.why,
        "fix": change.after.fix if change.after is not None else "",
    }
