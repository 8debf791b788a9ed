"""Benchmark parameters arrive as strings (`-p BENCH.KEY=VALUE`); these read them, or say in one
line what is wrong."""

from __future__ import annotations

import re

from gpubench.errors import UserError

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
_UNIT_SHIFT = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}


def check_options(bench: str, options: dict[str, str], known: tuple[str, ...]) -> None:
    unknown = sorted(k for k in options if k not in known)
    if unknown:
        raise UserError(f"{bench}: unknown parameter {unknown[0]!r}; known: {', '.join(known)}")


def split_items(text: str) -> list[str]:
    return [x.strip() for x in re.split(r"[,\s]+", str(text)) if x.strip()]


def parse_size(bench: str, option: str, text: str, default_unit: str = "M") -> int:
    """Binary units: '256' (in default_unit), '4k', '128KiB', '256M', '1G', '4096B' -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?\s*", str(text), re.IGNORECASE)
    if not m:
        bare = "MiB" if default_unit == "M" else "bytes" if not default_unit else f"{default_unit}iB"
        raise UserError(f"{bench}: {option}={text!r} is not a size ({bare}, or with a unit: 4K, 64M, 1G, 4096B)")
    unit = m.group(2).upper()
    if not unit:
        unit = "" if m.group(3) else default_unit
    value = int(float(m.group(1)) * (1 << _UNIT_SHIFT[unit]))
    if value <= 0:
        raise UserError(f"{bench}: {option}={text!r} must be larger than zero")
    return value


def parse_sizes(bench: str, option: str, text: str, multiple_of: int = 1, default_unit: str = "M") -> list[int]:
    items = split_items(text)
    if not items:
        raise UserError(f"{bench}: {option} is empty")
    sizes = [parse_size(bench, option, item, default_unit) for item in items]
    for size, item in zip(sizes, items):
        if size % multiple_of:
            raise UserError(f"{bench}: {option} {item!r} is not a multiple of {format_size(multiple_of)}")
    return list(dict.fromkeys(sizes))


def parse_int(bench: str, option: str, text: str, minimum: int, maximum: int | None = None) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise UserError(f"{bench}: {option}={text!r} is not a whole number") from None
    if value < minimum:
        raise UserError(f"{bench}: {option}={text!r} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise UserError(f"{bench}: {option}={text!r} must be at most {maximum}")
    return value


def parse_ints(bench: str, option: str, text: str, minimum: int, maximum: int | None = None) -> list[int]:
    items = split_items(text)
    if not items:
        raise UserError(f"{bench}: {option} is empty")
    return list(dict.fromkeys(parse_int(bench, option, item, minimum, maximum) for item in items))


def parse_choices(bench: str, option: str, text: str, allowed: tuple[str, ...]) -> list[str]:
    items = split_items(text)
    if not items:
        raise UserError(f"{bench}: {option} is empty; choose from {', '.join(allowed)}")
    for item in items:
        if item not in allowed:
            raise UserError(f"{bench}: {option}: unknown {item!r}; choose from {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def parse_bool(bench: str, option: str, text: str) -> bool:
    word = str(text).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise UserError(f"{bench}: {option}={text!r}: say true or false")


def parse_bools(bench: str, option: str, text: str, words: dict[str, bool] | None = None) -> list[bool]:
    """A list of true/false values; `words` adds names of the benchmark's own (e.g. direct, buffered)."""
    items = split_items(text)
    if not items:
        raise UserError(f"{bench}: {option} is empty")
    words = words or {}
    out = []
    for item in items:
        if item.lower() in words:
            out.append(words[item.lower()])
            continue
        try:
            out.append(parse_bool(bench, option, item))
        except UserError:
            also = f" (or {', '.join(words)})" if words else ""
            raise UserError(f"{bench}: {option}={item!r}: say true or false{also}") from None
    return list(dict.fromkeys(out))


def parse_seconds(bench: str, option: str, text: str, maximum: float) -> float:
    """A duration in seconds, more than 0 and at most `maximum`."""
    try:
        value = float(str(text).strip())
    except ValueError:
        raise UserError(f"{bench}: {option}={text!r} is not a number of seconds, e.g. 0.5") from None
    if not 0 < value <= maximum:
        raise UserError(f"{bench}: {option}={text!r} must be more than 0 and at most {maximum:g} seconds")
    return value


def format_size(nbytes: int) -> str:
    """The shortest exact name of a size: 4K, 256M, 1G, 1536K, 100B."""
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if nbytes >= 1 << shift and nbytes % (1 << shift) == 0:
            return f"{nbytes >> shift}{unit}"
    return f"{nbytes}B"
