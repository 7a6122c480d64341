"""Servers on loopback for tests, each started here and stopped by its own process id."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Self

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """Until ``url`` answers; fails at once if ``proc`` exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


def stop_process_group(proc: subprocess.Popen[bytes], grace_s: float = 10) -> None:
    """TERM, then KILL, the process group of ``proc`` (started with ``start_new_session=True``)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server (real HTTP AWS APIs) on a free loopback port; yields its endpoint URL."""
    port = free_port()
    binary = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/moto-api/", proc)
        yield url
    finally:
        stop_process_group(proc)


def use_moto(monkeypatch: pytest.MonkeyPatch, url: str, conn_id: str = "aws_default", **extra: Any) -> None:
    """Test credentials in the environment and the Airflow AWS connection ``conn_id`` at the moto server ``url``
    (region us-east-1; ``extra`` adds to the connection's extra, e.g. ``config_kwargs``)."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    conn = {"conn_type": "aws", "login": "testing", "password": "testing",
            "extra": {"region_name": "us-east-1", "endpoint_url": url, **extra}}  # fmt: skip
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def kube_connection(url: str, user: str = "test") -> str:
    """An Airflow Kubernetes connection (the JSON of an ``AIRFLOW_CONN_...`` variable) to a Kubernetes emulator
    at ``url``: a kubeconfig with a bearer token that the emulators do not check."""
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": user, "user": {"token": f"{user}-token"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": user}}],
    }  # fmt: skip
    return json.dumps({"conn_type": "kubernetes", "extra": {"kube_config": json.dumps(kubeconfig)}})


def use_kube_emulator(monkeypatch: pytest.MonkeyPatch, url: str, conn_id: str) -> None:
    """The Airflow Kubernetes connection ``conn_id`` to a Kubernetes emulator at ``url``."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", kube_connection(url))


@contextmanager
def alert_topic(monkeypatch: pytest.MonkeyPatch, url: str) -> Iterator[SimpleNamespace]:
    """Alerts on, to an SNS topic ``cl-alerts`` on the moto server ``url`` with an SQS queue subscribed (SNS
    envelopes, not raw delivery), through the AWS connection ``cl_alerts``. Yields ``arn`` and ``received()``,
    the messages the queue got since the last call; deletes the topic and the queue afterwards."""
    import boto3

    use_moto(monkeypatch, url, "cl_alerts")
    sns = boto3.client("sns", endpoint_url=url, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=url, region_name="us-east-1")
    arn = sns.create_topic(Name="cl-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="cl-alerts-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "false"}
    )
    monkeypatch.setenv("CL_ALERTS__ENABLED", "true")
    monkeypatch.setenv("CL_ALERTS__SNS_TOPIC_ARN", arn)
    monkeypatch.setenv("CL_ALERTS__AWS_CONN_ID", "cl_alerts")

    def received() -> list[dict[str, Any]]:
        answer = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        return [json.loads(m["Body"]) for m in answer.get("Messages", [])]

    try:
        yield SimpleNamespace(arn=arn, received=received)
    finally:
        sns.delete_topic(TopicArn=arn)
        sqs.delete_queue(QueueUrl=queue)


class ScriptedProxy:
    """Forwards HTTP to ``upstream`` on a free loopback port; a request that :meth:`fault` answers gets that
    answer (status, headers, body) instead of being forwarded. Subclasses script the faults."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = proxy.fault(self)
                if fault is not None:
                    status, fault_headers, payload = fault
                    self.send_response(status)
                    for key, value in fault_headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body, headers={**headers, "Host": proxy.upstream})
                response = conn.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def fault(self, request: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes] | None:
        """The answer to give ``request`` instead of forwarding it; ``None`` forwards it."""
        return None

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class FaultProxy(ScriptedProxy):
    """Forwards HTTP to ``upstream``; answers the first requests with scripted errors (503, 500...)."""

    def __init__(self, upstream: str, faults: list[int]) -> None:
        super().__init__(upstream)
        self.faults = list(faults)
        self.requests = 0
        self.faulted = 0

    def fault(self, request: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes] | None:
        self.requests += 1
        if not self.faults:
            return None
        status = self.faults.pop(0)
        self.faulted += 1
        code = "SlowDown" if status == 503 else "InternalError"
        return status, {}, f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
