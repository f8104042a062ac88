"""One exception type for problems a user can fix.

The CLI prints these as a single ``error: ...`` line (no traceback), so every message must
name the file or the parameter at fault.
"""


class SketchganError(Exception):
    """A user-facing error: bad input file, bad parameter, incompatible checkpoint."""
