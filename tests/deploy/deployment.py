"""An Airflow deployment as a user runs one: the built wheel in a clean venv, PostgreSQL, LocalExecutor, and
the scheduler, dag-processor, triggerer and api-server as separate processes, each stopped by its own pid.

Nothing of the test's own environment leaks in: the processes get a fresh environment (PATH with the
deployment venv first, the Airflow settings, the connections, ``CL_SETTINGS_FILE``), not ``os.environ``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import REPO
from tests.servers import free_port, stop_process_group

#: The PostgreSQL driver and provider the deployment adds to the package (not dependencies of ours), and what
#: the provider pulls in: pinned, like the runtime lock they are installed with.
DEPLOY_EXTRAS = ("psycopg2-binary==2.9.13", "apache-airflow-providers-postgres==7.1.1", "psycopg[binary]==3.3.9",
                 "asyncpg==0.32.0")  # fmt: skip
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def build_wheel(out: Path) -> Path:
    """The distribution's wheel, built offline from a copy of the sources (no build outputs in the tree)."""
    source = out / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("plugins", "trainer", "dags"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    wheelhouse = out / "wheelhouse"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(wheelhouse), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = wheelhouse.glob("continuous_learning-*.whl")
    return wheel


def create_venv(venv: Path, wheel: Path) -> Path:
    """A clean venv (no system site-packages) holding the wheel, not editable, resolved against the runtime lock."""
    python = shutil.which("python3.11") or sys.executable
    subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-compile",
         "--disable-pip-version-check", "-c", str(REPO / "requirements.txt"), str(wheel), *DEPLOY_EXTRAS],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"installing {wheel.name} into {venv} failed:\n{result.stderr[-4000:]}")
    return venv


@dataclass
class Deployment:
    home: Path
    venv: Path
    url: str
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    user: str = "admin"
    _token: str | None = None

    # -- processes -----------------------------------------------------------------------------

    def log(self, component: str) -> Path:
        return self.home / f"{component}.log"

    def log_tail(self, component: str, chars: int = 3000) -> str:
        path = self.log(component)
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def airflow(self, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "airflow"), *args], env=self.env, cwd=self.home,
            capture_output=True, text=True, timeout=timeout_s,
        )  # fmt: skip

    def start(self, component: str) -> subprocess.Popen[bytes]:
        with self.log(component).open("ab") as out:
            proc = subprocess.Popen(
                [str(self.venv / "bin" / "airflow"), *component.split()], env=self.env, cwd=self.home,
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self.procs[component] = proc
        return proc

    def stop(self, component: str, grace_s: float = 30) -> None:
        proc = self.procs.pop(component, None)
        if proc is not None:
            stop_process_group(proc, grace_s=grace_s)

    def kill(self, component: str) -> None:
        """SIGKILL the component's process group (its LocalExecutor workers too, for the scheduler)."""
        proc = self.procs.pop(component)
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def task_processes(self, ti_id: str) -> list[int]:
        """The pids running one task instance: the deepest descendants of our scheduler whose process title
        names its id (LocalExecutor worker -> the task's supervisor -> the task runner)."""
        import psutil

        def title(p: psutil.Process) -> str:
            try:
                return " ".join(p.cmdline())
            except psutil.Error:  # exited (or a zombie) since the listing: not running the task
                return ""

        def child_pids(p: psutil.Process) -> set[int]:
            try:
                return {c.pid for c in p.children()}
            except psutil.Error:
                return set()

        scheduler = psutil.Process(self.procs["scheduler"].pid)
        named = {p.pid: p for p in scheduler.children(recursive=True) if ti_id in title(p)}
        return [pid for pid, p in named.items() if not child_pids(p) & named.keys()]

    def kill_pids(self, pids: list[int]) -> None:
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"airflow {name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    # -- REST API ------------------------------------------------------------------------------

    def token(self) -> str:
        if self._token is None:
            passwords = json.loads((self.home / "passwords.json").read_text())
            body = json.dumps({"username": self.user, "password": passwords[self.user]}).encode()
            request = urllib.request.Request(
                f"{self.url}/auth/token",
                data=body,
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                self._token = str(json.loads(response.read())["access_token"])
        return self._token

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call ``/api/v2``; (status, decoded JSON body), also for 4xx answers."""
        request = urllib.request.Request(
            f"{self.url}/api/v2{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token()}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.api(method, path, body)
        assert 200 <= status < 300, (method, path, status, answer)
        return answer

    def wait_for(self, check: Any, timeout_s: float, what: str, every_s: float = 2) -> Any:
        """Poll ``check`` until it returns something truthy; fail with the components' logs."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_alive()
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {c}\n{self.log_tail(c, 1500)}" for c in COMPONENTS)
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{logs}")
            time.sleep(every_s)

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.ok("GET", f"/dags/{dag_id}/dagRuns?order_by=run_after")["dag_runs"])

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        body = self.ok("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {ti["task_id"]: ti for ti in body["task_instances"]}

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        return {task: ti["state"] for task, ti in self.task_instances(dag_id, run_id).items()}

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        body = self.ok("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}")
        content = body.get("content") if isinstance(body, dict) else body
        if isinstance(content, list):
            return "\n".join(str(x.get("event", x)) if isinstance(x, dict) else str(x) for x in content)
        return str(content)

    def wait_run(self, dag_id: str, run_id: str, timeout_s: float) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            run = self.ok("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            return run if run["state"] in ("success", "failed") else None

        return dict(self.wait_for(finished, timeout_s, f"{dag_id} run {run_id} to finish"))


def deployment_env(
    home: Path, venv: Path, database_url: str, api_port: int, extra: dict[str, str]
) -> dict[str, str]:
    """The environment every component runs with: ours, from scratch (nothing from the test process)."""
    url = f"http://127.0.0.1:{api_port}"
    return {
        "PATH": f"{venv / 'bin'}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        # one secret for every component: the api-server signs the tokens the workers and triggerer present
        "AIRFLOW__API_AUTH__JWT_SECRET": "rehearsal-jwt-secret-not-for-production",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_SEC": "2",
        # the fault tests kill components: their successors take over after these (defaults 30 s / 300 s)
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "15",
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "15",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # the log servers of the workers and the triggerer: free ports, not 8793/8794 (other Airflows here)
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        **extra,
    }


@contextmanager
def airflow_deployment(
    home: Path, venv: Path, database_url: str, extra_env: dict[str, str]
) -> Iterator[Deployment]:
    """Migrate the database, start the four components, wait until the API answers and the DAGs are parsed."""
    api_port = free_port()
    env = deployment_env(home, venv, database_url, api_port, extra_env)
    # the DAG files the package ships, copied into the deployment's dags folder as they are
    shipped = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "from continuous_learning.provider import dags_folder; print(dags_folder())"],
        env=env, capture_output=True, text=True, check=True, timeout=120,
    ).stdout.strip()  # fmt: skip
    assert "site-packages" in shipped, f"the DAGs come from {shipped}, not the installed wheel"
    shutil.copytree(shipped, home / "dags", ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    deployment = Deployment(home=home, venv=venv, url=f"http://127.0.0.1:{api_port}", env=env)
    migrated = deployment.airflow("db", "migrate", timeout_s=600)
    assert migrated.returncode == 0, migrated.stderr[-4000:]
    try:
        for component in COMPONENTS:
            deployment.start(component)

        def api_up() -> bool:
            try:
                with urllib.request.urlopen(f"{deployment.url}/api/v2/monitor/health", timeout=5):
                    pass
                deployment.token()
                return True
            except (OSError, KeyError, ValueError):
                return False

        deployment.wait_for(api_up, 240, "the api-server")
        for dag_id in ("interaction_ingest", "continuous_training"):
            deployment.wait_for(
                lambda d=dag_id: deployment.api("GET", f"/dags/{d}")[0] == 200, 240, f"DAG {dag_id}"
            )
        yield deployment
    finally:
        for component in reversed(COMPONENTS):
            deployment.stop(component)
