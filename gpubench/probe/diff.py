"""What differs between two probes of a machine (two kernels, two nodes, two runs): the one
capability diff that comparisons, `probe --kernel` and fleet reports share."""

from __future__ import annotations

from dataclasses import dataclass

from gpubench.probe.model import Capability, Profile, Status


@dataclass(frozen=True)
class CapabilityChange:
    area: str
    name: str
    before: Capability | None  # None: not probed on that side
    after: Capability | None

    @property
    def status_before(self) -> Status | None:
        return self.before.status if self.before is not None else None

    @property
    def status_after(self) -> Status | None:
        return self.after.status if self.after is not None else None

    @property
    def lost(self) -> bool:
        """Was yes, is no longer (or is no longer probed)."""
        return self.status_before is Status.YES and self.status_after is not Status.YES

    @property
    def gained(self) -> bool:
        return self.status_after is Status.YES and self.status_before is not Status.YES


def diff_capabilities(before: Profile, after: Profile, *, all_rows: bool = False) -> tuple[CapabilityChange, ...]:
    """The capabilities whose verdict differs (all of them with all_rows), in the order the later
    probe lists them, then those only the earlier one has."""
    earlier = {(c.area, c.name): c for c in before.capabilities}
    later = {(c.area, c.name): c for c in after.capabilities}
    keys = list(later) + [k for k in earlier if k not in later]
    changes = (CapabilityChange(area, name, earlier.get((area, name)), later.get((area, name))) for area, name in keys)
    return tuple(c for c in changes if all_rows or c.status_before is not c.status_after)
