"""The Kubernetes emulator (tests/kuberay/emulator.py, kmock) with apps/v1 Deployments and a scripted
Deployment controller, as a process of its own: ``python k8s_emulator.py --port PORT``.

- PUT/PATCH/POST of a Deployment whose spec changed bumps ``metadata.generation`` (as the API server does);
- the controller, like kube-controller-manager's: a new generation is observed at once (surge pod
  progressing), then becomes ready (updated = ready = available = replicas, one Ready pod per replica
  labelled from the template) after ``ready_after_s``; a template whose ``continuous-learning.io/version``
  is in ``never_ready_versions`` never does, and after ``deadline_s`` gets ``Progressing=False,
  ProgressDeadlineExceeded``; the old ready pods stay (``maxUnavailable 0``);
- ``/api/v1/namespaces/NS/pods/NAME:PORT/proxy/PATH`` (a pod's HTTP port through the API server) answers
  200 ``{"success": true}`` and is recorded (``state()["pod_posts"]``): SGLang's ``/load_lora_adapter``;
- ``/emulator/*``: the base controls, plus settings ``never_ready_versions``, ``ready_after_s``, ``deadline_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import time
from typing import Any

import aiohttp.web
import kmock

from tests.kuberay.emulator import Emulator

POD_PROXY = re.compile(
    r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<pod>[^/:]+):(?P<port>\d+)/proxy/(?P<path>.*)$"
)
VERSION = "continuous-learning.io/version"


class ServingEmulator(Emulator):  # type: ignore[misc]
    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.settings.update({"never_ready_versions": [], "ready_after_s": 0.3, "deadline_s": 2.0})
        self.pod_posts: list[dict[str, Any]] = []
        self.seen: dict[tuple[str, str, int], float] = {}

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        path = request.url.path
        proxied = POD_PROXY.match(path)
        if proxied:
            self.calls.append({"verb": "create", "group": "", "resource": "pods", "subresource": "proxy",
                               "namespace": proxied["ns"], "name": f"{proxied['pod']}:{proxied['port']}", "path": path})  # fmt: skip
            self.pod_posts.append({"pod": proxied["pod"], "path": proxied["path"], "body": request.data})
            return aiohttp.web.json_response({"success": True, "error_message": ""})
        plural = request.resource.plural if request.resource is not None else None
        method = str(request.method.value).upper()
        before = self._spec(request) if plural == "deployments" and method in ("PUT", "PATCH") else None
        response = await super()._handle(request)
        if plural == "deployments" and method in ("PUT", "PATCH", "POST") and response.status < 300:
            name = request.name or (request.data or {}).get("metadata", {}).get("name")
            obj = self._find("deployments", request.namespace, name)
            if obj is not None and (method == "POST" or obj.raw.get("spec") != before):
                generation = int(obj.raw.get("metadata", {}).get("generation") or 0) + 1
                obj.patch({"metadata": {"generation": generation}})
            if method == "POST":
                response.set_status(201)
        return response

    def _find(self, plural: str, namespace: str | None, name: str | None) -> Any:
        return next((o for (r, ns, n), o in self.live(plural) if ns == namespace and n == name), None)

    def _spec(self, request: Any) -> Any:
        obj = self._find("deployments", request.namespace, request.name)
        return json.loads(json.dumps(obj.raw.get("spec"))) if obj is not None else None

    async def _control(self, request: Any, what: str) -> aiohttp.web.StreamResponse:
        if what == "reset":
            for _, obj in self.live("deployments") + self.live("pods"):
                obj.delete()
            self.pod_posts.clear()
            self.seen.clear()
        response = await super()._control(request, what)
        if what == "reset":
            self.settings.update({"never_ready_versions": [], "ready_after_s": 0.3, "deadline_s": 2.0})
            return aiohttp.web.json_response(self.state())
        return response

    def state(self) -> dict[str, Any]:
        base = super().state()
        base["deployments"] = {
            o.raw["metadata"]["name"]: {"generation": o.raw["metadata"].get("generation"), "status": o.raw.get("status", {}),
                                        "version": o.raw["spec"]["template"]["metadata"].get("annotations", {}).get(VERSION),
                                        "annotations": o.raw["metadata"].get("annotations", {})}
            for _, o in self.live("deployments")
        }  # fmt: skip
        base["pods"] = sorted(o.raw["metadata"]["name"] for _, o in self.live("pods"))
        base["pod_posts"] = self.pod_posts
        return base


async def reconcile(k: ServingEmulator, base_url: str, session: aiohttp.ClientSession) -> None:
    now = time.monotonic()
    for (_, ns, name), obj in k.live("deployments"):
        spec, meta = obj.raw.get("spec", {}), obj.raw.get("metadata", {})
        generation, replicas = int(meta.get("generation") or 1), int(spec.get("replicas", 1))
        status = obj.raw.get("status") or {}
        started = k.seen.setdefault((ns, name, generation), now)
        version = spec.get("template", {}).get("metadata", {}).get("annotations", {}).get(VERSION)
        old_ready = (
            int(status.get("readyReplicas") or 0) if status.get("observedGeneration") != generation else None
        )
        if version in k.settings["never_ready_versions"]:
            if now - started > k.settings["deadline_s"]:
                cond = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
            else:
                cond = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}
            ready = old_ready if old_ready is not None else int(status.get("readyReplicas") or 0)
            obj.patch({"status": {"observedGeneration": generation, "replicas": replicas + 1, "updatedReplicas": 1,
                                  "readyReplicas": ready, "availableReplicas": ready, "conditions": [cond]}})  # fmt: skip
            continue
        if now - started < k.settings["ready_after_s"]:
            obj.patch({"status": {"observedGeneration": generation, "updatedReplicas": 0,
                                  "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]}})  # fmt: skip
            continue
        if status.get("updatedReplicas") == replicas and status.get("observedGeneration") == generation:
            continue
        await _replace_pods(k, base_url, session, ns, name, generation, replicas, spec)
        obj.patch({"status": {"observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
                              "readyReplicas": replicas, "availableReplicas": replicas,
                              "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                                             {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}})  # fmt: skip


async def _replace_pods(k: ServingEmulator, base_url: str, session: aiohttp.ClientSession, ns: str, name: str,
                        generation: int, replicas: int, spec: dict[str, Any]) -> None:  # fmt: skip
    for _, pod in k.live("pods"):
        if pod.raw["metadata"]["name"].startswith(f"{name}-"):
            pod.delete()
    labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
    for i in range(replicas):
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"{name}-g{generation}-{i}", "namespace": ns, "labels": labels},
                "spec": spec.get("template", {}).get("spec", {}),
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}  # fmt: skip
        async with session.post(f"{base_url}/api/v1/namespaces/{ns}/pods", json=body) as answer:
            await answer.read()
    k.calls[:] = [
        c
        for c in k.calls
        if not (c.get("resource") == "pods" and c.get("verb") == "create" and c.get("subresource") is None)
    ]


async def main(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with ServingEmulator() as emulator, kmock.Server(emulator, port=port) as server:
        emulator.resources["apps/v1/deployments"] = kmock.ResourceInfo(kind="Deployment", namespaced=True)
        emulator.resources["v1/pods"] = kmock.ResourceInfo(kind="Pod", namespaced=True)
        print(f"listening on {server.url}", flush=True)
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                try:
                    await reconcile(emulator, str(server.url).rstrip("/"), session)
                except Exception as exc:  # keep the controller alive, like a real one
                    print(f"controller error: {exc!r}", flush=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
