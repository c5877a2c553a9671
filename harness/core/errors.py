"""The one exception type for mistakes a user can make; the CLI prints it as one line, exit 2."""


class HarnessError(Exception):
    """Bad input or an impossible request: the message says what is wrong and how to fix it."""


def input_file_problem(path) -> str | None:
    """Why `path` cannot be read as an input file, as words to follow its name ('does not exist', 'is a
    directory', 'is not a regular file (a FIFO, socket or device)'), or None for a regular file. A FIFO or
    device is refused before it is opened: reading one could wait forever or never end."""
    from pathlib import Path

    path = Path(path)
    if path.is_file():
        return None
    if path.is_dir():
        return "is a directory"
    if path.exists():
        return "is not a regular file (a FIFO, socket or device)"
    return "does not exist"
