"""Run-wide settings: what a run asks of every benchmark that honours it (where the I/O goes,
verify, a cold page cache, a cross-check through fio, writes to a device) and where scratch files
go. One typed value, checked once before anything runs; each benchmark declares which settings
it honours (`honours`), and the plan refuses a setting that none of the selected ones honours.

Problems are raised as SettingError naming the setting; the layer that knows how the user gave it
(the command line: a flag) words it."""

from __future__ import annotations

import enum
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from gpubench.errors import UserError
from gpubench.files import mount_of


class Setting(str, enum.Enum):
    TARGET = "target"
    VERIFY = "verify"
    DROP_CACHE = "drop_cache"
    VS_FIO = "vs_fio"
    ALLOW_DEVICE_WRITE = "allow_device_write"
    SCRATCH = "scratch"


# honoured by the pipeline itself, for every benchmark
PIPELINE_SETTINGS = frozenset({Setting.SCRATCH})

# filesystems that are the kernel's views of itself, not storage (a file there cannot be measured)
PSEUDO_FILESYSTEMS = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "debugfs", "tracefs", "securityfs", "cgroup", "cgroup2", "pstore",
    "bpf", "configfs", "fusectl", "mqueue", "efivarfs", "binfmt_misc", "nsfs", "selinuxfs", "rpc_pipefs",
})

_SPECIAL_FILES = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)


class SettingError(UserError):
    """A setting that cannot be used as given: `problem` says why, `value` what was given."""

    def __init__(self, setting: Setting, problem: str, value: str | None = None):
        self.setting, self.problem, self.value = setting, problem, value
        super().__init__(self.worded(setting.value))

    def worded(self, name: str) -> str:
        """The message with the setting called `name` (e.g. the flag that sets it)."""
        return f"{name} {self.value}: {self.problem}" if self.value is not None else f"{name} {self.problem}"


@dataclass(frozen=True)
class RunSettings:
    target: Path | None = None  # a directory, file or block device for the I/O; None: the scratch directory
    verify: bool = False
    drop_cache: bool = False
    vs_fio: bool = False
    allow_device_write: bool = False
    scratch: Path | None = None  # where each case's scratch directory goes; None: the temporary directory

    def given(self) -> tuple[Setting, ...]:
        """The settings this run sets, in declaration order."""
        return tuple(s for s in Setting if getattr(self, s.value) not in (None, False))

    def check(self) -> None:
        """Raise SettingError for a scratch directory or target that cannot be used at all."""
        if self.scratch is not None and not self.scratch.is_dir():
            raise SettingError(Setting.SCRATCH, "not a directory", str(self.scratch))
        if self.target is not None:
            problem = target_problem(self.target)
            if problem:
                raise SettingError(Setting.TARGET, problem, str(self.target))


def target_problem(path: Path) -> str | None:
    """Why `path` cannot be the I/O target (a special file, or something on a pseudo-filesystem), or None."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        return e.strerror or str(e)
    if stat.S_ISBLK(mode):
        return None
    for test, what in _SPECIAL_FILES:
        if test(mode):
            return f"{what}, not storage: give a directory, a regular file or a block device"
    mount = mount_of(path)
    if mount is not None and mount.fstype in PSEUDO_FILESYSTEMS:
        return (f"on {mount.fstype} (mounted at {mount.mountpoint}), a pseudo-filesystem of the kernel's, not "
                f"storage: give a directory, a regular file or a block device on a real filesystem")
    return None


def honoured(bench: object) -> frozenset[Setting]:
    """The settings a benchmark honours (its `honours`; none when it declares nothing)."""
    return frozenset(getattr(bench, "honours", frozenset()))
