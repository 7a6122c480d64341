"""PostgreSQL from Debian's package (``make deploy-tools`` installs it), on loopback, as a non-root user.

The server refuses to run as root. Run by root (CI containers), it runs as the ``postgres`` user the
Debian package creates (Popen's ``user=``), in a temporary folder that user owns; run by anyone else, as
that user. Started as its own ``postgres`` process and stopped by that process id (SIGINT: the fast shutdown).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.servers import free_port

DEBIAN_BIN = Path("/usr/lib/postgresql")
INSTALL_HINT = "PostgreSQL not found under /usr/lib/postgresql/*/bin: run `make deploy-tools` (apt-get install postgresql)"


@dataclass(frozen=True)
class Postgres:
    port: int
    user: str
    database: str

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{self.database}"


def postgres_bin() -> Path:
    found = sorted(DEBIAN_BIN.glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError(INSTALL_HINT)
    return found[-1].parent


def _server_user() -> dict[str, Any]:
    """Popen arguments that run a process as ``postgres`` when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return {}
    server_user = pwd.getpwnam("postgres")  # created by Debian's postgresql-common
    return {"user": server_user.pw_uid, "group": server_user.pw_gid, "extra_groups": []}


@contextmanager
def postgres_server(database: str = "airflow", timeout_s: float = 60) -> Iterator[Postgres]:
    binaries = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="cl-postgres-"))
    if os.geteuid() == 0:
        os.chown(root, _server_user()["user"], _server_user()["group"])
        user = "postgres"
    else:
        user = pwd.getpwuid(os.geteuid()).pw_name
    data, log = root / "data", root / "server.log"
    port = free_port()
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            [str(binaries / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "--no-sync", "-E", "UTF8",
             "--locale=C"],
            check=True, capture_output=True, timeout=120, cwd=root, **_server_user(),
        )  # fmt: skip
        server = [str(binaries / "postgres"), "-D", str(data), "-k", str(root), "-h", "127.0.0.1", "-p", str(port),
                  "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                  "-c", "max_connections=200", "-c", "shared_buffers=64MB"]  # fmt: skip
        with log.open("wb") as out:
            proc = subprocess.Popen(
                server, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=root,
                start_new_session=True, **_server_user(),
            )  # fmt: skip
        _wait_ready(binaries, port, user, proc, log, timeout_s)
        subprocess.run(
            [str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, database],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        yield Postgres(port=port, user=user, database=database)
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(
    binaries: Path, port: int, user: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"postgres exited with {proc.returncode}:\n{tail}")
        ready = subprocess.run(
            [str(binaries / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", user],
            capture_output=True, timeout=10,
        )  # fmt: skip
        if ready.returncode == 0:
            return
        time.sleep(0.3)
    raise RuntimeError(f"postgres did not accept connections on 127.0.0.1:{port} within {timeout_s} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # SIGINT: PostgreSQL's fast shutdown, which ends every backend
    with suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
