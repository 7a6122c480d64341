"""A local Ray head on loopback, with its own ports and temp dir, stopped by its own process ids.

``ray stop`` would stop every Ray process on the machine, so this module never calls it: the head
runs as ``ray start --head --block`` in a new process session, and stopping it signals that
session's process group only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
from continuous_learning import storage

log = logging.getLogger(__name__)


class LocalRayError(RuntimeError):
    """The local Ray head did not start or stop as asked."""


@dataclass(frozen=True)
class LocalRayHead:
    """What is needed to reach and later stop one local head (kept in XCom between tasks)."""

    dashboard_url: str
    gcs_address: str
    pgid: int
    temp_dir: str
    log_path: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocalRayHead:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _dashboard_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/version", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def start_local_head(
    num_cpus: int, startup_timeout_s: float = 120.0, env: dict[str, str] | None = None
) -> LocalRayHead:
    """Start a Ray head bound to 127.0.0.1 and wait until its job API answers."""
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray_bin is None:
        raise LocalRayError("the `ray` command is not installed next to this Python")
    temp_dir = tempfile.mkdtemp(prefix="clray-", dir="/tmp")  # short: Ray's socket paths are limited
    gcs, dashboard, node_manager, object_manager, client, agent_listen, agent_grpc, metrics, runtime_env = (
        _free_ports(9)
    )
    taken = {
        gcs,
        dashboard,
        node_manager,
        object_manager,
        client,
        agent_listen,
        agent_grpc,
        metrics,
        runtime_env,
    }
    worker_low = 20000 + (os.getpid() % 400) * 100
    while any(worker_low <= port < worker_low + 100 for port in taken):
        worker_low += 100  # the worker range must not cover a port given to another component
    command = [
        ray_bin, "start", "--head", "--block", "--disable-usage-stats",
        "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
        f"--num-cpus={num_cpus}", "--num-gpus=0",
        f"--port={gcs}", f"--dashboard-port={dashboard}",
        f"--node-manager-port={node_manager}", f"--object-manager-port={object_manager}",
        f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent_listen}",
        f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={runtime_env}",
        f"--min-worker-port={worker_low}", f"--max-worker-port={worker_low + 99}",
        f"--temp-dir={temp_dir}", "--object-store-memory=200000000",
    ]  # fmt: skip
    child_env = {
        **os.environ,
        **(env or {}),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log_path = os.path.join(temp_dir, "head.log")
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=child_env, start_new_session=True
        )
    head = LocalRayHead(
        dashboard_url=f"http://127.0.0.1:{dashboard}",
        gcs_address=f"127.0.0.1:{gcs}",
        pgid=process.pid,
        temp_dir=temp_dir,
        log_path=log_path,
    )
    log.info(
        "starting local Ray head (pgid %d, dashboard %s, temp dir %s)",
        process.pid,
        head.dashboard_url,
        temp_dir,
    )
    deadline = time.monotonic() + startup_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = Path(log_path).read_text(errors="replace")[-2000:]
            stop_local_head(head)
            raise LocalRayError(f"ray start exited with code {process.returncode}:\n{tail}")
        if _dashboard_ready(head.dashboard_url):
            log.info("local Ray head ready after %.1f s", startup_timeout_s - (deadline - time.monotonic()))
            return head
        time.sleep(0.5)
    stop_local_head(head)
    raise LocalRayError(f"local Ray head not ready within {startup_timeout_s:.0f} s; log: {log_path}")


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid:
                members.append(proc)
        except (ProcessLookupError, psutil.Error, PermissionError):
            continue
    return members


#: The head's log files kept past its teardown (Ray's session logs: job drivers, i.e. the trainer's output,
#: workers, raylet, GCS; the head's own output), each at most this many bytes (a longer one keeps its end).
KEPT_LOG_BYTES = 8 * 1024 * 1024
KEPT_LOG_SUFFIXES = (".log", ".out", ".err")


def keep_logs(head: LocalRayHead, uri: str, max_bytes: int = KEPT_LOG_BYTES) -> list[str]:
    """Copy the head's logs to storage under ``uri`` (before :func:`stop_local_head` removes them): the
    head's ``head.log`` and ``logs/`` of each Ray session in its temp dir. Returns the URIs written."""
    root = Path(head.temp_dir)
    files = [root / "head.log"] if (root / "head.log").is_file() else []
    for session in sorted(root.glob("session_2*")):  # session_latest is a link to one of these
        files += sorted(
            p for p in (session / "logs").rglob("*") if p.is_file() and p.suffix in KEPT_LOG_SUFFIXES
        )
    written = []
    for file in files:
        target = storage.join(uri, str(file.relative_to(root)))
        size = file.stat().st_size
        with file.open("rb") as handle:
            if size > max_bytes:
                handle.seek(size - max_bytes)
            storage.write_bytes(target, handle.read())
        written.append(target)
    return written


def stop_local_head(head: LocalRayHead, grace_s: float = 15.0) -> int:
    """Stop the head's process group (TERM, then KILL) and remove its temp dir. Idempotent."""
    members = _group_members(head.pgid)
    if members:
        log.info("stopping local Ray head: %d processes in group %d", len(members), head.pgid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pgid, signal.SIGTERM)
        _, alive = psutil.wait_procs(members, timeout=grace_s)
        if alive:
            log.warning("%d Ray processes ignored SIGTERM; sending SIGKILL", len(alive))
            for proc in alive:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
            psutil.wait_procs(alive, timeout=5)
    shutil.rmtree(head.temp_dir, ignore_errors=True)
    return len(members)
