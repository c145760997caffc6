"""User-facing errors of gradflow: one line that names the problem and the fix."""


class GradflowError(Exception):
    """A problem with the user's input or files; the CLI prints it as one line and exits 2."""
