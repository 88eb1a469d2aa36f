"""Run a `codellm` command in the background with a pid file (`make run` leaves the gateway up;
`make stop` stops it by that pid, never by process name)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from rich.console import Console


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def start_detached(args: list[str], *, pid_file: Path, log_file: Path, ready_url: str, console: Console,
                   timeout_s: float = 180.0) -> bool:
    """Start `codellm ARGS` in its own session; wait until `ready_url` answers 200. Idempotent."""
    pid = _read_pid(pid_file)
    if pid and _alive(pid):  # never start a second one: it would fail to bind and orphan the first
        if _ready(ready_url):
            console.print(f"already running (pid {pid}): {ready_url}")
            return True
        console.print(f"[red]pid {pid} from {pid_file} is running but {ready_url} is not ready; see the log "
                      f"or stop it first (codellm serve --stop)[/red]")
        return False
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "codellm_assets.cli", *args], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            console.print(f"[red]exited with {proc.returncode}; see {log_file}[/red]")
            pid_file.unlink(missing_ok=True)
            return False
        if _ready(ready_url):
            console.print(f"running in the background (pid {proc.pid}, log {log_file}): {ready_url}")
            return True
        time.sleep(1)
    console.print(f"[red]not ready after {timeout_s:.0f} s; see {log_file} (pid {proc.pid} left running)[/red]")
    return False


def stop_detached(pid_file: Path, console: Console, timeout_s: float = 30.0) -> bool:
    """SIGTERM the process group in the pid file (graceful: the store drains), SIGKILL if it lingers."""
    pid = _read_pid(pid_file)
    if not pid or not _alive(pid):
        console.print("nothing running")
        pid_file.unlink(missing_ok=True)
        return True
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(pid):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.2)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    console.print(f"stopped (pid {pid})")
    return True
