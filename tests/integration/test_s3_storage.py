"""The s3:// path against a real S3 API on loopback (moto server): pagination, multipart, retries,
a whole ingest day, and the Airflow DAG with its AWS connection."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest
from botocore.config import Config
from continuous_learning import storage
from continuous_learning.data.ingest import ingest_day, read_curated
from continuous_learning.data.synthetic import generate_logs

from tests.conftest import REPO
from tests.servers import FaultProxy, moto_server

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 12)


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def s3(moto: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[str]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("CL_S3_ENDPOINT_URL", moto)
    bucket = f"cl-{request.node.name.replace('_', '-')[:40]}".lower()
    boto3.client("s3", endpoint_url=moto).create_bucket(Bucket=bucket)
    storage.set_s3_client_factory(None)
    yield f"s3://{bucket}/team-a"
    storage.set_s3_client_factory(None)


def test_listing_paginates_past_1000_objects(s3: str) -> None:
    client = boto3.client("s3", endpoint_url=storage.os.environ["CL_S3_ENDPOINT_URL"])
    bucket, prefix = storage.S3Store.split(s3)
    for i in range(1105):
        client.put_object(Bucket=bucket, Key=f"{prefix}/raw/dt={DAY}/part-{i:05d}.jsonl", Body=b"{}\n")
    listed = storage.list_objects(f"{s3}/raw/dt={DAY}")
    assert len(listed) == 1105
    assert listed[-1].uri.endswith("part-01104.jsonl")


def test_large_files_upload_in_parts_and_round_trip(s3: str, tmp_path: Path) -> None:
    blob = tmp_path / "big.bin"
    blob.write_bytes(bytes(range(256)) * (9 * 4096 + 7))  # 9 MiB + a little: above the 8 MiB threshold
    store = storage.store_for(s3)
    store.upload_file(blob, f"{s3}/blob/big.bin")
    bucket, key = storage.S3Store.split(f"{s3}/blob/big.bin")
    head = boto3.client("s3", endpoint_url=storage.os.environ["CL_S3_ENDPOINT_URL"]).head_object(
        Bucket=bucket, Key=key
    )
    assert head["ETag"].strip('"').endswith("-2")  # a multipart upload of two parts
    store.download_file(f"{s3}/blob/big.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == blob.read_bytes()


def test_throttling_and_server_errors_are_retried(moto: str, s3: str) -> None:
    with FaultProxy(moto, faults=[503, 500, 503]) as proxy:
        client = boto3.client(
            "s3", endpoint_url=proxy.url, config=Config(retries={"mode": "adaptive", "max_attempts": 8})
        )
        store = storage.S3Store(client)
        store.write_bytes(f"{s3}/retry/doc.json", b'{"ok": true}')
        assert store.read_bytes(f"{s3}/retry/doc.json") == b'{"ok": true}'
    assert proxy.faulted == 3 and proxy.requests >= 5


def test_ingest_a_day_on_s3_with_exact_accounting(s3: str) -> None:
    generate_logs(s3, DAY, 1, 150, seed=4)
    report = ingest_day(DAY, f"{s3}/raw", f"{s3}/data", f"{s3}/feedback")
    assert report.read == report.accepted + report.duplicates + report.quarantined > 150
    table = read_curated(f"{s3}/data", DAY)
    assert table is not None and table.num_rows == report.accepted
    again = ingest_day(DAY, f"{s3}/raw", f"{s3}/data", f"{s3}/feedback")
    assert storage.partition_files(again.curated_uri or "") == storage.partition_files(
        report.curated_uri or ""
    )


def test_ingest_dag_on_s3_through_the_aws_connection(
    s3: str, moto: str, airflow_db: str, monkeypatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    connection = {"conn_type": "aws", "login": "testing", "password": "testing",
                  "extra": {"region_name": "us-east-1", "endpoint_url": moto}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    monkeypatch.delenv("CL_S3_ENDPOINT_URL")  # the connection alone must carry the endpoint
    monkeypatch.setenv("CL_STORAGE__ROOT", s3)
    client = boto3.client("s3", endpoint_url=moto)
    storage.set_s3_client_factory(lambda: client)
    generate_logs(s3, DAY, 1, 80, seed=8)
    storage.set_s3_client_factory(None)

    dag = DagBag(dag_folder=str(REPO / "dags")).get_dag("interaction_ingest")
    run = dag.test(logical_date=datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC))
    assert str(run.state) == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    storage.set_s3_client_factory(lambda: client)
    files = storage.partition_files(f"{s3}/data/reward/dt={DAY}")
    table = pq.read_table(io.BytesIO(storage.read_bytes(files["prompts.parquet"])))
    assert table.num_rows > 30
