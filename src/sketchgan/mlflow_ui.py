"""The MLflow UI server behind ``sketchgan ui``: bound to loopback unless asked, waited for
until it answers, and stopped with the command that started it (SIGTERM/SIGHUP/Ctrl-C)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from sketchgan.errors import SketchganError
from sketchgan.tracking import artifact_root_for, resolve_uri


def serve_ui(
    host: str = "127.0.0.1",
    port: int = 5000,
    uri: str | None = None,
    root: str | os.PathLike | None = None,
    wait: bool = True,
) -> subprocess.Popen:
    """Run ``mlflow ui`` (1 worker, no job runner: ~0.5 GB instead of ~3 GB).

    Loopback by default; pass ``host="0.0.0.0"`` deliberately to expose it. The server gets its
    own process group so it can be stopped as a whole; with ``wait`` (the CLI) this call blocks
    until Ctrl-C and then stops it, otherwise the caller stops it with ``stop_ui``.
    """
    uri = resolve_uri(uri, root)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    cmd += ["--host", host, "--port", str(port), "--workers", "1"]
    artifact_root = artifact_root_for(uri)
    if artifact_root is not None:
        cmd += ["--artifacts-destination", str(artifact_root)]
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    if wait:
        _block_until_interrupted(proc, port)
    return proc


class _Stopped(Exception):
    """SIGTERM/SIGHUP while serving: stop the server, then exit quietly."""


def _raise_stopped(signum: int, _frame: Any) -> None:
    raise _Stopped(signum)


def _block_until_interrupted(proc: subprocess.Popen, port: int) -> None:
    """Wait for Ctrl-C, ``kill`` or a closed terminal, and stop the server with us (it runs in
    its own process group, so it would otherwise outlive us); a server that stops by itself
    failed (``mlflow ui`` exits 0 even when it cannot bind the port)."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, _raise_stopped)
    try:
        code = proc.wait()
    except (KeyboardInterrupt, _Stopped):
        return
    finally:
        stop_ui(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    raise SketchganError(f"mlflow ui: stopped by itself (code {code}); is port {port} in use?")


def wait_for_ui(url: str, timeout_s: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Poll ``<url>/health`` until the server answers; errors on timeout or early exit."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SketchganError(f"mlflow ui: exited with code {proc.returncode} before ready")
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise SketchganError(f"mlflow ui: {url} not ready after {timeout_s:.0f} s")


def stop_ui(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Terminate the server's process group (uvicorn may fork), killing it if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout_s)
