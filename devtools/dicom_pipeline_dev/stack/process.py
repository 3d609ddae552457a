"""Starting and stopping the stack's own processes, tracked by pid files.

`down` must stop only what `up` started, so every process is recorded with its pid and a
fragment of its command line; a pid that now belongs to another program is left alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dicom_pipeline_dev.stack.errors import StackError


@dataclass(frozen=True)
class PidFile:
    path: Path
    cmdline_marker: str

    def read(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def running_pid(self) -> int | None:
        """The recorded pid if that process is alive and still the program we started."""
        pid = self.read()
        if pid is None or not is_alive(pid):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return None
        return pid if self.cmdline_marker in cmdline else None

    def stop(self, timeout: float = 20.0) -> bool:
        """Stop the recorded process if it is still ours and running; False when it was not."""
        pid = self.running_pid()
        if pid is None:
            return False
        stop_pid(pid, timeout=timeout)
        return True


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, their children, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def start_detached(
    argv: Sequence[str],
    pid_file: PidFile,
    log_path: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running service in its own session, logging to a file.

    The caller keeps the Popen so that waiting for readiness can tell "still starting"
    from "exited" by the child's real exit status, not by re-reading /proc.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    pid_file.path.write_text(str(proc.pid))
    return proc


def stop_pid(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within the timeout."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not is_alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(50):
        _reap(pid)
        if not is_alive(pid):
            return
        time.sleep(0.1)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def ensure_port_free(port: int, service: str, setting: str) -> None:
    if port_in_use(port):
        raise StackError(
            f"port {port} for {service} is already taken by another program; "
            f"stop it or choose another port with {setting}"
        )


def wait_until(
    check: Callable[[], bool],
    what: str,
    timeout: float,
    log_path: Path | None = None,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll `check` until it is true; fail with what happened and the service's log tail.

    With `process`, a child that exits while starting fails at once, naming its exit
    status (a negative one is the signal that killed it).
    """
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if process is not None and process.poll() is not None:
            raise StackError(
                f"{what} exited with status {process.returncode} after {time.monotonic() - started:.1f}s "
                f"without answering{_log_tail(log_path)}"
            )
        time.sleep(0.25)
    raise StackError(f"{what} did not answer within {timeout:.0f}s{_log_tail(log_path)}")


def _log_tail(log_path: Path | None, lines: int = 5) -> str:
    if log_path is None or not log_path.exists():
        return f" | no log at {log_path}" if log_path is not None else ""
    tail = log_path.read_text(errors="replace").splitlines()[-lines:]
    if not tail:
        return f" | {log_path} is empty"
    return " | last log lines: " + " / ".join(line.strip() for line in tail)
