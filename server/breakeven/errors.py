"""What goes wrong in a break-even report, and how the CLI shows it.

    BreakEvenError (a ConfigError: `tokenmill` prints it and exits 2)
    └── BillError: a bill file is unreadable, or a column is missing or bad

Every message names what was wrong, the offending value, and the fix.
"""

from __future__ import annotations

from server.config import ConfigError


class BreakEvenError(ConfigError):
    """A break-even or what-if report cannot be made from these inputs."""


class BillError(BreakEvenError):
    """A bill could not be read: the file, the row and the column, and the fix."""
