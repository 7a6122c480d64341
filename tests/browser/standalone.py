"""`airflow standalone` on loopback for browser tests: private AIRFLOW_HOME, free port, own process group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.servers import free_port, stop_process_group

VENV_BIN = Path(sys.executable).parent


@dataclass
class Standalone:
    url: str
    home: Path
    log: Path
    user: str = "admin"

    @property
    def password(self) -> str:
        data = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
        return str(data[self.user])

    def token(self) -> str:
        body = json.dumps({"username": self.user, "password": self.password}).encode()
        request = urllib.request.Request(
            f"{self.url}/auth/token", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return str(json.loads(response.read())["access_token"])

    def api(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        """Call ``/api/v2``; returns (status, decoded JSON body), also for 4xx answers."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}/api/v2{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token or self.token()}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def wait_for(self, check: Any, timeout_s: float, what: str) -> Any:
        """Poll ``check`` every second until it returns something truthy; fail with the server's log."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.log_tail()}")
            time.sleep(1)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        status, body = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        assert status == 200, body
        return {ti["task_id"]: ti["state"] for ti in body["task_instances"]}

    def task_log(self, dag_id: str, run_id: str, task_id: str) -> str:
        """The first try's log as text (the API returns structured events or plain text)."""
        status, body = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1")
        assert status == 200, body
        content = body.get("content") if isinstance(body, dict) else body
        if isinstance(content, list):
            return "\n".join(str(x.get("event", x)) if isinstance(x, dict) else str(x) for x in content)
        return str(content)

    def wait_run_finished(self, dag_id: str, run_id: str, timeout_s: float) -> dict[str, Any]:
        """The DAG run's document once it is ``success`` or ``failed``."""

        def finished() -> dict[str, Any] | None:
            status, run = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            return run if status == 200 and run["state"] in ("success", "failed") else None

        return dict(self.wait_for(finished, timeout_s, f"run {run_id} to finish"))


@contextmanager
def airflow_standalone(
    home: Path, dags_folder: Path, env: dict[str, str], timeout_s: float = 150
) -> Iterator[Standalone]:
    """Start ``airflow standalone`` (SQLite, parallelism 4) and wait until its API answers and the password exists."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    full_env = {
        **os.environ,
        **env,
        "AIRFLOW_HOME": str(home),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
        "AIRFLOW__WEBSERVER__EXPOSE_CONFIG": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
    log = home / "standalone.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "airflow"), "standalone"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=str(home),
            start_new_session=True,
        )
    server = Standalone(url=url, home=home, log=log)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"airflow standalone exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=3):
                    pass
                server.token()
                break
            except (OSError, KeyError, ValueError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"airflow standalone did not come up on {url}:\n{server.log_tail()}"
                    ) from None
                time.sleep(1)
        yield server
    finally:
        stop_process_group(proc, grace_s=20)
