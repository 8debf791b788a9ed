class UserError(Exception):
    """A problem with what the user asked for: shown as one line on stderr, never a traceback."""

    exit_code = 1
