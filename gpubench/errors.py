class UserError(Exception):
    """A problem with what the user asked for: shown as one line on stderr, never a traceback."""

    exit_code = 1


class Interrupted(UserError):
    """Ctrl-C (or SIGTERM) stopped a command; the message says what was kept."""

    exit_code = 130
