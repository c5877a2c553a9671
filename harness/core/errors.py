"""The one exception type for mistakes a user can make; the CLI prints it as one line, exit 2."""


class HarnessError(Exception):
    """Bad input or an impossible request: the message says what is wrong and how to fix it."""
