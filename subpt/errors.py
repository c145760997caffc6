"""User-facing errors of subpt: one line that names the problem and the fix."""


class SubptError(Exception):
    """A problem with the user's input or files; the CLI prints it as one line and exits 2."""
