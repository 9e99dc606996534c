"""Small helpers for the stack's child processes: free ports, pid files, clean stops."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
from pathlib import Path

__all__ = ["MissingTool", "StackError", "free_port", "pid_alive", "port_open", "require", "stop_pid", "tail"]


class StackError(RuntimeError):
    """The local stack could not start or stop; the message's first line says why and what to do,
    more lines (logs) may follow."""


class MissingTool(StackError):
    """A program the local stack needs is not installed; the message names the fix."""


def require(program: str, fix: str) -> str:
    """The path of ``program``, or MissingTool naming the install command."""
    path = shutil.which(program)
    if path is None:
        msg = f"{program} not found on PATH. {fix}"
        raise MissingTool(msg)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        # A zombie child still answers kill(0); reap it if it is ours.
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def stop_pid(pid: int, *, timeout_s: float = 30.0) -> None:
    """SIGTERM, wait, then SIGKILL if it would not stop."""
    if not pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
