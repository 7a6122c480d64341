"""Where the work runs on the KubeRay cluster: job drivers on the GPU workers (never the head), VeRL's work
folder and checkpoints on FSx. Rendered from the prod settings; validated like the operators validate
(built-in schema, and KubeRay's CRDs where provided)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from continuous_learning.compute import kuberay
from continuous_learning.config import load_settings

from tests.kuberay.emulator import offered, place

RUN = ("continuous_training", "scheduled__2026-11-11T06:00:00+00:00")


def _cluster(**overrides: Any) -> tuple[kuberay.RayClusterSpec, dict[str, Any]]:
    settings = load_settings("prod", overrides)
    labels = kuberay.run_labels(*RUN)
    spec = kuberay.cluster_spec_from_settings(
        settings, kuberay.cluster_name_for(*RUN), labels, {"CL_ENV": "prod"}
    )
    return spec, kuberay.render_raycluster(spec)


def _job(cluster_spec: kuberay.RayClusterSpec | None = None) -> dict[str, Any]:
    return kuberay.render_rayjob(
        name="continuous-training-0123-a1", namespace="continuous-learning",
        entrypoint="python -m continuous_learning_trainer evaluate --spec s3://b/spec.json", job_id="j-a1",
        env={"CL_ENV": "prod"}, labels={}, cluster_name=None if cluster_spec else "continuous-training-0123",
        cluster_spec=cluster_spec,
    )  # fmt: skip


def _env(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("ephemeral", [False, True])
def test_job_driver_runs_on_a_gpu_worker_never_on_the_head(ephemeral: bool) -> None:
    spec, cluster = _cluster()
    job = _job(spec if ephemeral else None)
    kuberay.validate_manifest(cluster)
    kuberay.validate_manifest(job)  # entrypointResources is a field of KubeRay's RayJob CRD (a JSON string)
    cluster_spec = job["spec"]["rayClusterSpec"] if ephemeral else cluster["spec"]
    head, worker = cluster_spec["headGroupSpec"], cluster_spec["workerGroupSpecs"][0]
    # the head offers Ray nothing to run: no CPUs, no GPUs, not the workers' resource
    assert offered(head) == {"CPU": 0.0, "GPU": 0.0}
    assert offered(worker)[kuberay.WORKER_RESOURCE] == 1 and offered(worker)["GPU"] == 8
    assert json.loads(job["spec"]["entrypointResources"]) == {kuberay.WORKER_RESOURCE: 0.01}
    assert place(job["spec"], cluster_spec) == "gpu"
    # the driver reserves no GPU (VeRL's workers take all 8) yet sees them (SGLang evaluation in-process)
    assert "entrypointNumGpus" not in job["spec"]
    assert _env(worker["template"])["RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"] == "0"


def test_before_the_fix_the_driver_landed_on_the_cpu_head() -> None:
    _, cluster = _cluster()
    job = _job()
    del job["spec"]["entrypointResources"]
    assert place(job["spec"], cluster["spec"]) == "head"


def test_with_fsx_the_work_folder_is_on_fsx_one_per_run() -> None:
    spec, cluster = _cluster()
    assert spec.fsx_claim == "fsx-lustre-claim"  # prod.toml
    run_key = kuberay.run_labels(*RUN)[f"{kuberay.LABEL_PREFIX}/run-key"]
    for group in [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]:
        pod = group["template"]
        work_dir = _env(pod)["CL_WORK_DIR"]
        assert work_dir == f"/fsx/continuous-learning/runs/{run_key}"
        mounts = {m["name"]: m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]}
        assert work_dir.startswith(mounts["fsx"] + "/")
        claims = {
            v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["spec"]["volumes"]
        }
        assert claims["fsx"] == "fsx-lustre-claim"
    other = kuberay.cluster_spec_from_settings(
        load_settings("prod"), "other", kuberay.run_labels("d", "r2"), {}
    )
    assert other.env["CL_WORK_DIR"] != spec.env["CL_WORK_DIR"]
    without, _ = _cluster(**{"kuberay.fsx_claim": None})
    assert "CL_WORK_DIR" not in without.env  # the image's default (/workspace, pod-local) then


def test_a_stopped_job_has_the_trainers_stop_reserve_before_sigkill() -> None:
    for reserve in (600, 900):
        _, cluster = _cluster(**{"trainer.stop_reserve_s": reserve})
        for group in [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]:
            # Ray's job supervisor waits this long after SIGTERM (its default: 3 s, too short to merge)
            assert _env(group["template"])["RAY_JOB_STOP_WAIT_TIME_S"] == str(reserve)


def test_verl_checkpoints_land_in_the_rendered_work_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trainer in a pod with the rendered env: VeRL's data, checkpoints and merge under CL_WORK_DIR."""
    from continuous_learning_trainer import verl_engine

    from tests.trainer.fake_verl import FakeVerl, prepare
    from tests.trainer.helpers import run_spec

    fsx = tmp_path / "fsx"
    spec, _ = _cluster(**{"kuberay.fsx_mount_path": str(fsx)})
    monkeypatch.setenv("CL_WORK_DIR", spec.env["CL_WORK_DIR"])
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    prepare(tmp_path)
    run = run_spec(tmp_path)
    assert run.verl.work_dir is None  # the run spec leaves it to the pod's environment
    result = verl_engine.train(run, runner=FakeVerl())
    assert result.status == "succeeded"
    work = Path(spec.env["CL_WORK_DIR"]) / run.run_id
    assert work.is_relative_to(fsx)
    assert sorted(p.name for p in (work / "checkpoints").iterdir() if p.is_dir()) == [
        "global_step_2",
        "global_step_4",
    ]
    assert (work / "base" / "config.json").exists() and (work / "merged").is_dir()
