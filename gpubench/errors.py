class UserError(Exception):
    """A problem with what the user asked for: shown as one line on stderr, never a traceback."""

    exit_code = 1


class Interrupted(UserError):
    """Ctrl-C (or SIGTERM) stopped a command; the message says what was kept."""

    exit_code = 130


def json_kind(value: object) -> str:
    """What a JSON value is, in the words an error about a document uses: 'a number', 'null'..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def unexpected(error: BaseException) -> str:
    """An error no code expected, told with where it was raised, and from where in gpubench when
    that was elsewhere (a library): what a bug report needs, in a case's reason rather than a traceback."""
    import traceback

    frames = [(_short_path(f.filename), f.lineno, f.name) for f in traceback.extract_tb(error.__traceback__)]
    text = f"{type(error).__name__}: {error}"
    if not frames:
        return text
    where = [frames[-1]]
    ours = [f for f in frames if f[0].startswith("gpubench/")]
    if ours and ours[-1] != frames[-1]:
        where.append(ours[-1])
    return text + " (raised at " + ", from ".join(f"{path}:{line} in {name}" for path, line, name in where) + ")"


def _short_path(filename: str) -> str:
    """gpubench/... or a library's path below site-packages; else the file's name."""
    from pathlib import PurePath

    parts = PurePath(filename).parts
    for anchor in ("site-packages", "dist-packages"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) + 1 :])
    if "gpubench" in parts:
        return "/".join(parts[len(parts) - 1 - parts[::-1].index("gpubench") :])
    return PurePath(filename).name
