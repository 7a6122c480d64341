"""The rehearsal's servers: PostgreSQL, the deployment venv, and tests/kuberay's moto and Kubernetes emulator.

The emulator and moto are tests/kuberay's (its ``emulator.py``, ``moto_hyperpod.py``, ``KubeEmulator`` and the
same start-up), here with the scope of this package: everything here, the Airflow deployment included, stops
once the package's tests are done, not at the end of the whole suite. The Ray head the emulator runs RayJobs on
carries the S3 credentials a pod would have (IRSA on EKS). The trainer image is played by the environment
installed from its lock alone (.tools/image-lock, ``make trainer-tools``) with the project's wheel on
PYTHONPATH (the image's ``pip install --no-deps .``): the emulator runs every job placed on a pod of that
image with that Python, so a package the image lacks fails the rehearsal.
"""

from __future__ import annotations

import os
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from continuous_learning.compute.local_ray import LocalRayHead, start_local_head, stop_local_head

from tests.deploy.deployment import airflow_deployment, build_wheel, create_venv
from tests.deploy.postgres import Postgres, postgres_server
from tests.deploy.rehearsal import (
    BUCKET,
    KUBE_CONN_ID,
    ROOT,
    Prod,
    aws_connection,
    kube_connection,
    shipped_prod_settings,
    write_settings,
)
from tests.kuberay.conftest import HERE as KUBERAY
from tests.kuberay.conftest import KubeEmulator, create_hyperpod
from tests.kuberay.conftest import _spawn as kuberay_spawn
from tests.servers import free_port, stop_process_group, wait_http
from tests.trainer.helpers import IMAGE_LOCK_PYTHON
from tests.user_models import make_user_model

AWS_TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip


@pytest.fixture(scope="package")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    proc = kuberay_spawn(
        [str(KUBERAY / "moto_hyperpod.py"), "-H", "127.0.0.1", "-p", str(port)],
        tmp_path_factory.mktemp("moto") / "moto.log",
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/moto-api/", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_group(proc)


@pytest.fixture(scope="package")
def ray_head(moto_url: str) -> Iterator[LocalRayHead]:
    head = start_local_head(num_cpus=2, env={**AWS_TEST_CREDENTIALS, "CL_S3_ENDPOINT_URL": moto_url})
    try:
        yield head
    finally:
        stop_local_head(head, grace_s=8)


@pytest.fixture(scope="package")
def kube_server(ray_head: LocalRayHead, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeEmulator]:
    port = free_port()
    proc = kuberay_spawn(
        [str(KUBERAY / "emulator.py"), "--port", str(port), "--ray-address", ray_head.dashboard_url],
        tmp_path_factory.mktemp("emulator") / "emulator.log",
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/emulator/state", proc)
        yield KubeEmulator(f"http://127.0.0.1:{port}")
    finally:
        stop_process_group(proc)


@pytest.fixture(scope="package")
def postgres() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="package")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="package")
def trainer_image_env(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The trainer image as the emulator plays it: the image lock's venv and the project from its wheel."""
    if not IMAGE_LOCK_PYTHON.exists():
        pytest.fail(f"no {IMAGE_LOCK_PYTHON}: run `make trainer-tools` (the trainer image's lock, installed)")
    project = tmp_path_factory.mktemp("trainer-image") / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(project)
    return {"bin": str(IMAGE_LOCK_PYTHON.parent), "pythonpath": str(project)}


@pytest.fixture(scope="package")
def deploy_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package as a user installs it: its wheel (built here) in a clean venv, with the PostgreSQL driver."""
    kept = os.environ.get(
        "CL_DEPLOY_VENV"
    )  # a developer's shortcut between local runs; CI builds a fresh one
    if kept and (Path(kept) / "bin" / "airflow").exists():
        return Path(kept)  # as it is: whoever keeps it installs the wheel they mean to test
    return create_venv(Path(kept or tmp_path_factory.mktemp("deploy") / "venv"), wheel)


def _upload_folder(s3: Any, folder: Path, uri: str) -> None:
    from continuous_learning import storage

    bucket, prefix = storage.S3Store.split(uri)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), bucket, f"{prefix.rstrip('/')}/{path.relative_to(folder)}")


@pytest.fixture(scope="package")
def prod(
    kube_server: KubeEmulator,
    moto_url: str,
    ray_head: LocalRayHead,
    postgres: Postgres,
    deploy_venv: Path,
    trainer_image_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Prod]:
    """The deployment in prod mode, shared by the rehearsal and the fault tests (one start, about a minute)."""
    import boto3
    from continuous_learning import storage
    from continuous_learning.models.chat_templates import load_shipped

    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**AWS_TEST_CREDENTIALS, "CL_S3_ENDPOINT_URL": moto_url}.items():
            patch.setenv(key, value)  # this process writes the logs and the model, reads the results
        storage.set_s3_client_factory(None)
        s3 = boto3.client("s3", endpoint_url=moto_url)
        s3.create_bucket(Bucket=BUCKET)
        sagemaker = boto3.client("sagemaker", endpoint_url=moto_url)
        hyperpod = create_hyperpod(sagemaker, count=0)
        model = make_user_model(tmp_path_factory.mktemp("agent-model"), chat_template=load_shipped("hermes"))
        _upload_folder(s3, model, f"{ROOT}/models/agent-prod/")
        home = tmp_path_factory.mktemp("airflow-home")
        prod_toml = shipped_prod_settings(deploy_venv)
        settings_file = write_settings(home / "continuous-learning.toml", prod_toml, hyperpod)
        env = {
            **AWS_TEST_CREDENTIALS,
            "CL_SETTINGS_FILE": str(settings_file),
            # the trainer jobs' S3 endpoint (job_environment passes it on); Airflow's side uses aws_default
            "CL_S3_ENDPOINT_URL": moto_url,
            "AIRFLOW_CONN_AWS_DEFAULT": aws_connection(moto_url),
            f"AIRFLOW_CONN_{KUBE_CONN_ID.upper()}": kube_connection(kube_server.url),
        }
        kube_server.reset()
        trainer_image = tomllib.loads(prod_toml.read_text())["kuberay"]["image"].rpartition(":")[0]
        kube_server.configure(images={trainer_image: trainer_image_env})
        with airflow_deployment(home, deploy_venv, postgres.sqlalchemy_url, env) as airflow:
            yield Prod(airflow=airflow, sagemaker=sagemaker, s3=s3, kube=kube_server,
                       ray_dashboard=ray_head.dashboard_url, hyperpod=hyperpod, settings_file=settings_file,
                       prod_toml=prod_toml, trainer_image=trainer_image)  # fmt: skip
        storage.set_s3_client_factory(None)
