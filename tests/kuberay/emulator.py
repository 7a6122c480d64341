"""A Kubernetes API emulator (kmock) with a scripted KubeRay controller, as a process of its own.

Run as ``python emulator.py --port PORT --ray-address http://127.0.0.1:DASHBOARD``:

- the Kubernetes API: kmock's ``KubernetesEmulator`` (POST answers 201, like the API server);
- the controller: a RayCluster becomes ``ready`` (unless told never to); a RayJob's entrypoint runs
  as a Ray job on the real local Ray head (submission id = ``spec.jobId``) and its status is
  mirrored into ``.status``; deleting a RayJob, or its RayCluster, stops the Ray job;
- the head service's proxy (``/api/v1/namespaces/NS/services/NAME:8265/proxy/...``) forwards to
  the local head's dashboard, so the driver log can be read through the Kubernetes API;
- every Kubernetes API call is recorded as RBAC sees it (verb, API group, resource, subresource,
  namespace, name): ``/emulator/calls``; a test checks each against the shipped Role (tests/kuberay/rbac.py);
- a RayJob's entrypoint is placed as Ray would place it: on the first group of its RayCluster whose
  ``rayStartParams`` offer the entrypoint's ``entrypointNumCpus/NumGpus/Resources`` (the head when it asks
  for nothing); a job that fits nowhere stays PENDING, as on a real cluster. ``state()["placements"]``;
- a container image is a Python environment: the ``images`` setting maps an image repository (the image
  name without its tag) to ``{"bin": ..., "pythonpath": ...}``, and a job placed on a group running that
  image runs its entrypoint with that ``bin`` first on PATH and that PYTHONPATH (an unmapped image runs
  in the head's own environment). ``state()["environments"]`` records which image each job ran in;
- ``/emulator/*``: test controls (state, calls, faults such as 403/409/5xx answers, settings, reset).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shlex
import signal
import time
import urllib.request
from typing import Any

import aiohttp.web
import kmock
from continuous_learning.compute.ray_jobs import RayJobRunner

PROXY = re.compile(r"^/api/v1/namespaces/[^/]+/services/[^/]+/proxy/(?P<path>.*)$")
NON_RESOURCE = ("/api", "/apis", "/version", "/healthz", "/openapi")


def rbac_call(method: str, path: str, query: dict[str, str]) -> dict[str, Any]:
    """A request as the API server's RBAC authorizer sees it (``kubectl auth can-i`` terms)."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return {"verb": method.lower(), "path": path, "non_resource": True}
    if not rest:  # /api/v1, /apis/ray.io/v1: discovery
        return {"verb": method.lower(), "path": path, "non_resource": True}
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource, name, subresource = rest[0], (rest[1:2] or [None])[0], (rest[2:3] or [None])[0]
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method)
    if method == "GET":
        verb = "watch" if query.get("watch") in ("true", "1") else ("get" if name else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    return {"verb": verb or method.lower(), "group": group, "resource": resource, "subresource": subresource,
            "namespace": namespace, "name": name, "path": path}  # fmt: skip


def offered(group: dict[str, Any]) -> dict[str, float]:
    """What a head or worker group's Ray node advertises, from its ``rayStartParams`` (else its limits)."""
    params = group.get("rayStartParams") or {}
    limits = ((group.get("template") or {}).get("spec", {}).get("containers") or [{}])[0]
    limits = (limits.get("resources") or {}).get("limits") or {}
    cpu = str(limits.get("cpu", 0))
    resources: dict[str, float] = {
        "CPU": float(params.get("num-cpus", float(cpu[:-1]) / 1000 if cpu.endswith("m") else cpu)),
        "GPU": float(params.get("num-gpus", limits.get("nvidia.com/gpu", 0))),
    }
    if params.get("resources"):
        resources.update(json.loads(shlex.split(params["resources"])[0]))
    return resources


def image_repository(cluster_spec: dict[str, Any], group_name: str) -> str:
    """The repository (image name without its tag) of the group's first container."""
    if group_name == "head":
        group = cluster_spec.get("headGroupSpec") or {}
    else:
        group = next(g for g in cluster_spec.get("workerGroupSpecs") or [] if g["groupName"] == group_name)
    image = str(group["template"]["spec"]["containers"][0]["image"])
    repository, _, tag = image.rpartition(":")
    return repository if repository and "/" not in tag else image


def place(job_spec: dict[str, Any], cluster_spec: dict[str, Any]) -> str | None:
    """The group whose node would run the entrypoint (Ray: the head unless it asks for resources)."""
    need = {"CPU": float(job_spec.get("entrypointNumCpus") or 0), "GPU": float(job_spec.get("entrypointNumGpus") or 0),
            **json.loads(job_spec.get("entrypointResources") or "{}")}  # fmt: skip
    need = {k: v for k, v in need.items() if v > 0}
    groups = [("head", cluster_spec.get("headGroupSpec") or {})]
    groups += [
        (g["groupName"], g) for g in cluster_spec.get("workerGroupSpecs") or [] if g.get("replicas", 1) > 0
    ]
    if not need:
        return "head"
    for name, group in groups:
        if all(offered(group).get(k, 0) >= v for k, v in need.items()):
            return name
    return None


class Emulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.faults: list[dict[str, Any]] = []
        self.settings: dict[str, Any] = {"never_ready": False, "ready_after_s": 0.5, "images": {}}
        self.ray_address = ""
        self.creates: dict[str, int] = {"rayclusters": 0, "rayjobs": 0}
        self.faults_served = 0
        self.calls: list[dict[str, Any]] = []
        self.placements: dict[str, str | None] = {}
        self.environments: dict[str, str] = {}

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        path = request.url.path
        if path.startswith("/emulator/"):
            return await self._control(request, path.removeprefix("/emulator/"))
        method = str(request.method.value).upper()
        call = rbac_call(method, path, dict(request.params))
        self.calls.append(call)
        for fault in self.faults:  # matched by HTTP method and resource plural (services: the log proxy)
            if fault["times"] > 0 and fault["method"] == method and fault["plural"] == call.get("resource"):
                fault["times"] -= 1
                self.faults_served += 1
                code = int(fault["status"])
                reason = {403: "Forbidden", 409: "Conflict", 429: "TooManyRequests"}.get(
                    code, "InternalError"
                )
                body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                        "reason": reason, "message": "injected fault"}  # fmt: skip
                return aiohttp.web.json_response(body, status=code)
        proxied = PROXY.match(path)
        if proxied:
            return await asyncio.to_thread(self._proxy, proxied.group("path"))
        plural = request.resource.plural if request.resource is not None else None
        response = await super()._handle(request)
        if str(request.method.value).upper() == "POST" and response.status == 200 and plural in self.creates:
            self.creates[plural] += 1
            response.set_status(201)
        return response

    def _proxy(self, path: str) -> aiohttp.web.StreamResponse:
        try:
            with urllib.request.urlopen(f"{self.ray_address}/{path}", timeout=10) as answer:
                return aiohttp.web.Response(body=answer.read(), content_type="application/json")
        except OSError as exc:
            return aiohttp.web.json_response({"message": str(exc)}, status=503)

    async def _control(self, request: Any, what: str) -> aiohttp.web.StreamResponse:
        if what == "state":
            return aiohttp.web.json_response(self.state())
        if what == "calls":
            return aiohttp.web.json_response({"calls": self.calls})
        data = request.data or {}
        if what == "faults":
            if data.get("clear"):
                self.faults.clear()
            self.faults.extend(data.get("faults", []))
        elif what == "settings":
            self.settings.update(data)
        elif what == "reset":
            for _, obj in self.live("rayjobs") + self.live("rayclusters"):
                obj.delete()
            self.faults.clear()
            self.faults_served = 0
            self.calls.clear()
            self.placements.clear()
            self.environments.clear()
            self.creates = {"rayclusters": 0, "rayjobs": 0}
            self.settings.update({"never_ready": False, "ready_after_s": 0.5})
        return aiohttp.web.json_response(self.state())

    def live(self, plural: str) -> list[tuple[Any, Any]]:
        return [
            (key, obj) for key, obj in list(self.objects.items())
            if key[0].plural == plural and not obj.deleted and "metadata" in obj.raw
        ]  # fmt: skip

    def state(self) -> dict[str, Any]:
        return {
            "rayclusters": sorted(obj.raw["metadata"]["name"] for _, obj in self.live("rayclusters")),
            "rayjobs": {
                obj.raw["metadata"]["name"]: obj.raw.get("status", {}) for _, obj in self.live("rayjobs")
            },
            "creates": self.creates,
            "faults_served": self.faults_served,
            "placements": self.placements,
            "environments": self.environments,
        }


class Controller:
    def __init__(self, emulator: Emulator, ray_address: str) -> None:
        self.k = emulator
        self.runner = RayJobRunner(ray_address)
        self.first_seen: dict[str, float] = {}
        self.submitted: dict[str, tuple[str, str]] = {}  # rayjob uid-ish key -> (submission id, cluster)
        self.finished: set[str] = set()

    async def loop(self) -> None:
        while True:
            try:
                await self.reconcile()
            except Exception as exc:  # keep the controller alive, like a real one
                print(f"controller error: {exc!r}", flush=True)
            await asyncio.sleep(0.3)

    async def reconcile(self) -> None:
        now = time.monotonic()
        ready: set[str] = set()
        for (_, ns, name), obj in self.k.live("rayclusters"):
            key = f"{ns}/{name}"
            self.first_seen.setdefault(key, now)
            if (obj.raw.get("status") or {}).get("state") == "ready":
                ready.add(name)
            elif (
                not self.k.settings["never_ready"]
                and now - self.first_seen[key] > self.k.settings["ready_after_s"]
            ):
                obj.patch({"status": {"state": "ready", "head": {"serviceName": f"{name}-head-svc"}}})
                ready.add(name)
        live_jobs = set()
        for (_, ns, name), obj in self.k.live("rayjobs"):
            key = f"{ns}/{name}/{obj.raw['spec']['jobId']}"
            live_jobs.add(key)
            spec = obj.raw["spec"]
            cluster = (spec.get("clusterSelector") or {}).get("ray.io/cluster") or f"{name}-raycluster"
            if key not in self.submitted:
                if "rayClusterSpec" not in spec and cluster not in ready:
                    obj.patch({"status": {"jobDeploymentStatus": "Initializing", "rayClusterName": cluster}})
                    continue
                cluster_spec = spec.get("rayClusterSpec") or next(
                    (o.raw["spec"] for (_, n, c), o in self.k.live("rayclusters") if (n, c) == (ns, cluster)),
                    {},
                )
                group = place(spec, cluster_spec)
                self.k.placements[name] = group
                if group is None:  # Ray keeps the job PENDING until a node offers what the entrypoint asks
                    obj.patch({"status": {"jobDeploymentStatus": "Running", "jobStatus": "PENDING",
                                          "rayClusterName": cluster, "jobId": spec["jobId"],
                                          "message": "no node offers the entrypoint's resources"}})  # fmt: skip
                    continue
                runtime_env = json.loads(spec.get("runtimeEnvYAML") or "{}")
                repository = image_repository(cluster_spec, group)
                environment = self.k.settings["images"].get(repository)
                self.k.environments[name] = repository if environment else "head"
                if environment:  # the pod's image decides which Python runs the entrypoint
                    runtime_env.setdefault("env_vars", {}).update(
                        {"PATH": f"{environment['bin']}:${{PATH}}", "PYTHONPATH": environment["pythonpath"]}
                    )
                await asyncio.to_thread(
                    self.runner.client.submit_job, entrypoint=spec["entrypoint"],
                    submission_id=spec["jobId"], runtime_env=runtime_env,
                )  # fmt: skip
                self.submitted[key] = (spec["jobId"], cluster)
                obj.patch({"status": {"jobDeploymentStatus": "Running", "jobStatus": "PENDING",
                                      "rayClusterName": cluster, "jobId": spec["jobId"]}})  # fmt: skip
                continue
            if key in self.finished:
                continue
            status = str(await asyncio.to_thread(self.runner.client.get_job_status, spec["jobId"]))
            status = status.rsplit(".", 1)[-1]
            if obj.deleted:  # deleted while we asked Ray: a patch now would bring back a spec-less object
                continue
            patch: dict[str, Any] = {"jobStatus": status}
            if status == "RUNNING":
                patch.setdefault("startTime", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                patch["jobDeploymentStatus"] = "Complete" if status == "SUCCEEDED" else "Failed"
                patch["endTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                self.finished.add(key)
            obj.patch({"status": patch})
        for key, (submission_id, cluster) in list(self.submitted.items()):
            cluster_gone = cluster not in ready and "raycluster" not in cluster
            if key not in live_jobs or cluster_gone:
                if key not in self.finished:
                    await asyncio.to_thread(self.runner.stop, submission_id)
                    print(f"stopped Ray job {submission_id} (RayJob or RayCluster deleted)", flush=True)
                self.finished.add(key)
                if key not in live_jobs:
                    del self.submitted[key]
        for key in list(self.first_seen):
            if key.split("/", 1)[1] not in {name for (_, _, name), _ in self.k.live("rayclusters")}:
                del self.first_seen[key]


async def main(port: int, ray_address: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Emulator() as emulator, kmock.Server(emulator, port=port) as server:
        emulator.ray_address = ray_address
        emulator.resources["ray.io/v1/rayclusters"] = kmock.ResourceInfo(kind="RayCluster", namespaced=True)
        emulator.resources["ray.io/v1/rayjobs"] = kmock.ResourceInfo(kind="RayJob", namespaced=True)
        controller = asyncio.create_task(Controller(emulator, ray_address).loop())
        print(f"listening on {server.url}", flush=True)
        await stop.wait()
        controller.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ray-address", required=True)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.ray_address))
