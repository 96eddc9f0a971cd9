"""Exec a command that the kernel terminates when the gateway dies.

Usage: `python -m server.parent_watch PARENT_PID -- COMMAND [ARG ...]`.

A SIGKILLed gateway runs no clean-up code, so its engines would live on as orphans
holding memory and ports. Linux's PR_SET_PDEATHSIG survives `exec` and makes the
kernel send SIGTERM to the engine when its parent goes; vLLM's server then shuts
down its own children. Setting it in a tiny wrapper rather than a `preexec_fn` keeps
the gateway's fork free of Python code running between fork and exec.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(errno)}")
    # The parent may have died between fork and prctl; then no signal would come.
    if os.getppid() != parent_pid:
        sys.exit(f"parent_watch: parent {parent_pid} is already gone")


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: python -m server.parent_watch PARENT_PID -- COMMAND [ARG ...]")
    _die_with_parent(int(argv[0]))
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
