"""User-facing errors: the CLI prints them as one line and exits 2."""


class UserError(Exception):
    """Bad input or a missing prerequisite the user can fix; ``str()`` says what to do."""
