"""URI-based object storage: one interface for ``file://`` and ``s3://``.

Partitions are committed through a pointer object (``_CURRENT.json``) written last, in one PUT:
readers only see files the pointer lists, so a half-written partition is never visible on
either backend, and a re-run swaps the whole partition at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

CURRENT_POINTER = "_CURRENT.json"
RUNS_DIR = "_runs"


class StorageError(RuntimeError):
    """An object could not be read or written."""


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    size: int


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *[p.strip("/") for p in parts if p]])


def basename(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


class ObjectStore(Protocol):
    def read_bytes(self, uri: str) -> bytes: ...
    def open_read(self, uri: str) -> IO[bytes]: ...
    def write_bytes(self, uri: str, data: bytes) -> None: ...
    def upload_file(self, path: Path, uri: str) -> None: ...
    def download_file(self, uri: str, path: Path) -> None: ...
    def exists(self, uri: str) -> bool: ...
    def list(self, prefix: str) -> list[ObjectInfo]: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def put_if_absent(self, uri: str, data: bytes) -> bool: ...


class LocalStore:
    """``file://`` URIs on the local file system; writes are atomic (temp file, then rename)."""

    @staticmethod
    def path(uri: str) -> Path:
        if not uri.startswith("file://"):
            raise StorageError(f"not a file:// URI: {uri}")
        return Path(uri.removeprefix("file://"))

    def read_bytes(self, uri: str) -> bytes:
        try:
            return self.path(uri).read_bytes()
        except FileNotFoundError:
            raise StorageError(f"no such object: {uri}") from None

    def open_read(self, uri: str) -> IO[bytes]:
        try:
            return self.path(uri).open("rb")
        except FileNotFoundError:
            raise StorageError(f"no such object: {uri}") from None

    def write_bytes(self, uri: str, data: bytes) -> None:
        target = self.path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def upload_file(self, path: Path, uri: str) -> None:
        target = self.path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)

    def download_file(self, uri: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path(uri), path)

    def exists(self, uri: str) -> bool:
        return self.path(uri).exists()

    def list(self, prefix: str) -> list[ObjectInfo]:
        root = self.path(prefix)
        if root.is_file():
            return [ObjectInfo(prefix, root.stat().st_size)]
        if not root.is_dir():
            return []
        found = [
            ObjectInfo("file://" + str(p), p.stat().st_size)
            for p in root.rglob("*")
            if p.is_file() and not p.name.endswith(".tmp")
        ]
        return sorted(found, key=lambda o: o.uri)

    def delete_prefix(self, prefix: str) -> int:
        root = self.path(prefix)
        if root.is_file():
            root.unlink()
            return 1
        if not root.exists():
            return 0
        count = sum(1 for p in root.rglob("*") if p.is_file())
        shutil.rmtree(root)
        return count

    def put_if_absent(self, uri: str, data: bytes) -> bool:
        target = self.path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return True


class S3Store:
    """``s3://`` URIs through a boto3 S3 client (the caller owns credentials and retries)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @staticmethod
    def split(uri: str) -> tuple[str, str]:
        if not uri.startswith("s3://"):
            raise StorageError(f"not an s3:// URI: {uri}")
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return bucket, key

    def read_bytes(self, uri: str) -> bytes:
        with self.open_read(uri) as body:
            return body.read()

    def open_read(self, uri: str) -> IO[bytes]:
        bucket, key = self.split(uri)
        try:
            response = self.client.get_object(Bucket=bucket, Key=key)
        except self.client.exceptions.NoSuchKey:
            raise StorageError(f"no such object: {uri}") from None
        body: IO[bytes] = response["Body"]
        return body

    def write_bytes(self, uri: str, data: bytes) -> None:
        bucket, key = self.split(uri)
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def upload_file(self, path: Path, uri: str) -> None:
        bucket, key = self.split(uri)
        self.client.upload_file(str(path), bucket, key)  # multipart above 8 MiB

    def download_file(self, uri: str, path: Path) -> None:
        bucket, key = self.split(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.client.download_file(bucket, key, str(path))

    def exists(self, uri: str) -> bool:
        bucket, key = self.split(uri)
        try:
            self.client.head_object(Bucket=bucket, Key=key)
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def list(self, prefix: str) -> list[ObjectInfo]:
        bucket, key = self.split(prefix)
        if key and not key.endswith("/"):
            key += "/"
        paginator = self.client.get_paginator("list_objects_v2")
        found = []
        for page in paginator.paginate(Bucket=bucket, Prefix=key):
            for item in page.get("Contents", []):
                found.append(ObjectInfo(f"s3://{bucket}/{item['Key']}", int(item["Size"])))
        return found

    def delete_prefix(self, prefix: str) -> int:
        objects = self.list(prefix)
        bucket, _ = self.split(prefix)
        for start in range(0, len(objects), 1000):
            batch = [{"Key": self.split(o.uri)[1]} for o in objects[start : start + 1000]]
            self.client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        return len(objects)

    def put_if_absent(self, uri: str, data: bytes) -> bool:
        bucket, key = self.split(uri)
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        except self.client.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
                return False
            raise
        return True


_s3_client_factory: Any = None


def set_s3_client_factory(factory: Any) -> None:
    """Install how ``s3://`` stores get their client (the Airflow adapter passes its AWS hook's)."""
    global _s3_client_factory
    _s3_client_factory = factory


def store_for(uri: str) -> ObjectStore:
    if uri.startswith("file://"):
        return LocalStore()
    if uri.startswith("s3://"):
        if _s3_client_factory is not None:
            return S3Store(_s3_client_factory())
        import boto3
        from botocore.config import Config

        retries = Config(retries={"max_attempts": 8, "mode": "adaptive"})
        return S3Store(boto3.client("s3", endpoint_url=os.environ.get("CL_S3_ENDPOINT_URL"), config=retries))
    raise StorageError(f"unsupported URI scheme (use file:// or s3://): {uri}")


def read_bytes(uri: str) -> bytes:
    return store_for(uri).read_bytes(uri)


def write_bytes(uri: str, data: bytes) -> None:
    store_for(uri).write_bytes(uri, data)


def read_json(uri: str) -> Any:
    try:
        return json.loads(read_bytes(uri))
    except json.JSONDecodeError as exc:
        raise StorageError(f"{uri} is not valid JSON: {exc}") from None


def write_json(uri: str, document: Any) -> None:
    write_bytes(uri, json.dumps(document, indent=2, sort_keys=True, default=str).encode() + b"\n")


def exists(uri: str) -> bool:
    return store_for(uri).exists(uri)


def list_objects(prefix: str) -> list[ObjectInfo]:
    return store_for(prefix).list(prefix)


def upload_dir(path: Path, uri: str) -> list[str]:
    store = store_for(uri)
    uploaded = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        target = join(uri, str(file.relative_to(path)))
        store.upload_file(file, target)
        uploaded.append(target)
    return uploaded


def download_dir(uri: str, path: Path) -> Path:
    store = store_for(uri)
    prefix = uri.rstrip("/") + "/"
    objects = store.list(uri)
    if not objects:
        raise StorageError(f"nothing stored under {uri}")
    for obj in objects:
        store.download_file(obj.uri, path / obj.uri.removeprefix(prefix))
    return path


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def commit_partition_files(prefix: str, files: dict[str, Path], metadata: dict[str, Any]) -> str:
    """Upload local ``files`` as the new content of partition ``prefix`` and swap it in atomically.

    The run folder is named by the content hash, so identical input gives identical paths and bytes;
    the pointer object is written last and older run folders are removed after it.
    Returns the run folder's URI.
    """
    hashes = {name: _sha256_file(path) for name, path in sorted(files.items())}
    run_id = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:16]
    run_uri = join(prefix, RUNS_DIR, run_id)
    store = store_for(prefix)
    for name, path in files.items():
        store.upload_file(path, join(run_uri, name))
    write_json(join(prefix, CURRENT_POINTER), {"run_id": run_id, "files": hashes, **metadata})
    for old in {_run_of(o.uri, prefix) for o in store.list(join(prefix, RUNS_DIR))} - {run_id}:
        store.delete_prefix(join(prefix, RUNS_DIR, old))
    return run_uri


def commit_partition(prefix: str, files: dict[str, bytes], metadata: dict[str, Any]) -> str:
    """Like :func:`commit_partition_files`, for small in-memory files."""
    with tempfile.TemporaryDirectory(prefix="cl-commit-") as tmp:
        paths = {}
        for name, data in files.items():
            paths[name] = Path(tmp) / name
            paths[name].write_bytes(data)
        return commit_partition_files(prefix, paths, metadata)


def _run_of(uri: str, prefix: str) -> str:
    return uri.removeprefix(join(prefix, RUNS_DIR) + "/").split("/", 1)[0]


def read_partition_pointer(prefix: str) -> dict[str, Any] | None:
    pointer_uri = join(prefix, CURRENT_POINTER)
    if not exists(pointer_uri):
        return None
    pointer: dict[str, Any] = read_json(pointer_uri)
    return pointer


def partition_files(prefix: str) -> dict[str, str]:
    """Committed files of a partition: name -> URI (empty if the partition was never written)."""
    pointer = read_partition_pointer(prefix)
    if pointer is None:
        return {}
    run_uri = join(prefix, RUNS_DIR, pointer["run_id"])
    return {name: join(run_uri, name) for name in pointer["files"]}
