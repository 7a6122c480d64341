"""The distribution as a user installs it: the built wheel, its metadata, its provider registration.

The wheel is built once (``pip wheel --no-deps --no-build-isolation --no-index`` from a copy of the
sources, offline, a few seconds). That installing it keeps the platform's Airflow is checked two ways:
pip's own resolution in this venv (``pip install --dry-run --no-index --report``: Airflow 3.3.2 is
installed here and must not be in what pip would install), and the wheel's ``Requires-Dist`` against
other Airflow 3.x releases (the package index here holds one Airflow only, so no second one is installed).
"""

from __future__ import annotations

import email.parser
import importlib
import importlib.metadata
import inspect
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from continuous_learning import provider
from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import REPO

PACKAGE = REPO / "plugins" / "continuous_learning"
TRAINER = REPO / "trainer" / "continuous_learning_trainer"


def _pip(*args: str | Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("plugins", "trainer", "dags"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    out = tmp_path_factory.mktemp("wheelhouse")
    result = _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", out, source)
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("continuous_learning-*.whl")
    return built


def _metadata(wheel: Path) -> Any:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(zf.read(name).decode())


def _requirements(wheel: Path) -> tuple[list[Requirement], dict[str, list[Requirement]]]:
    meta = _metadata(wheel)
    core: list[Requirement] = []
    extras: dict[str, list[Requirement]] = {e: [] for e in meta.get_all("Provides-Extra") or []}
    for line in meta.get_all("Requires-Dist") or []:
        req = Requirement(line)
        owner = next((e for e in extras if req.marker and req.marker.evaluate({"extra": e})), None)
        (extras[owner] if owner else core).append(req)
    return core, extras


def _files(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def test_the_wheel_ships_the_package_its_data_and_the_dags(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"continuous_learning/{p.relative_to(PACKAGE).as_posix()}" for p in _files(PACKAGE)}
    expected |= {f"continuous_learning_trainer/{p.relative_to(TRAINER).as_posix()}" for p in _files(TRAINER)}
    dags = sorted((REPO / "dags").glob("*.py"))
    assert dags
    expected |= {f"continuous_learning/dags/{p.name}" for p in dags}
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel (pyproject.toml package-data / py-modules): {missing}"
    assert "continuous_learning/compute/crd_schemas/ray.io_v1.schema.json" in names
    assert not any(n.startswith(("tests/", "dags/", "plugins/")) for n in names)


def test_version_ranges_not_pins(wheel: Path) -> None:
    core, extras = _requirements(wheel)
    assert _metadata(wheel)["Version"] == provider.VERSION
    for req in [*core, *(r for reqs in extras.values() for r in reqs)]:
        assert not any(s.operator in ("==", "===") for s in req.specifier), f"pinned: {req}"
    by_name = {r.name: r for r in core}
    airflow = by_name["apache-airflow"]
    # 3.3.0 is the floor: the code imports airflow.sdk.ResumableJobMixin (and uses the task state store).
    for release in ("3.3.0", "3.3.1", "3.3.2", "3.4.0", "3.9.9"):
        assert airflow.specifier.contains(release), release
    for release in ("3.2.4", "4.0.0"):
        assert not airflow.specifier.contains(release), release
    assert {
        "apache-airflow-providers-amazon", "apache-airflow-providers-cncf-kubernetes",
        "apache-airflow-providers-standard", "apache-airflow-providers-common-compat",
    } <= set(by_name)  # fmt: skip
    assert "ray" not in by_name  # the Airflow side of the kuberay backend needs no Ray
    local = {r.name for r in extras["local"]}
    dev = {r.name for r in extras["dev"]}
    assert {"ray", "torch", "transformers", "trl", "peft", "datasets"} <= local
    assert {"pytest", "ruff", "mypy", "moto", "kmock", "playwright"} <= dev


def test_the_lock_and_this_venv_satisfy_the_ranges(wheel: Path) -> None:
    """The exact versions stay in the locks (runtime: requirements.txt, dev: requirements-dev.txt): each must
    fit its range, and so must what is installed (then pip keeps every installed package, Airflow included).
    The core dependencies are in the runtime lock, which a deployment uses without the dev one."""
    core, extras = _requirements(wheel)
    locks: dict[str, dict[str, str]] = {}
    for lock_file in ("requirements.txt", "requirements-dev.txt"):
        locks[lock_file] = {}
        for line in (REPO / lock_file).read_text().splitlines():
            if "==" in line and not line.lstrip().startswith("#"):
                name, _, version = line.split(";")[0].strip().partition("==")
                locks[lock_file][Requirement(name).name.lower().replace("_", "-")] = version
    both = set(locks["requirements.txt"]) & set(locks["requirements-dev.txt"])
    assert not both, f"in both locks: {sorted(both)}"
    lock = {**locks["requirements.txt"], **locks["requirements-dev.txt"]}
    for req in core:
        key = req.name.lower().replace("_", "-")
        assert key in locks["requirements.txt"], f"{req.name} is a core dependency, not in the runtime lock"
    for req in [*core, *(r for reqs in extras.values() for r in reqs)]:
        if req.name == "continuous-learning":
            continue
        key = req.name.lower().replace("_", "-")
        assert key in lock, f"{req.name} has no exact version in requirements.txt or requirements-dev.txt"
        assert req.specifier.contains(lock[key], prereleases=True), f"lock {req.name}=={lock[key]} vs {req}"
        installed = importlib.metadata.version(req.name)
        assert req.specifier.contains(Version(installed), prereleases=True), (
            f"{req.name} {installed} vs {req}"
        )


def test_pip_install_of_the_wheel_keeps_the_installed_airflow(wheel: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = _pip(
        "install", "--dry-run", "--no-index", "--find-links", wheel.parent, "--report", report, "-q", wheel
    )
    assert result.returncode == 0, result.stdout + result.stderr
    would_install = {
        i["metadata"]["name"]: i["metadata"]["version"] for i in json.loads(report.read_text())["install"]
    }
    assert set(would_install) == {"continuous-learning"}, would_install
    assert importlib.metadata.version("apache-airflow").startswith("3.")


def test_entry_points(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "[apache_airflow_provider]\nprovider_info = continuous_learning.provider:get_provider_info" in text
    assert "continuous-learning = continuous_learning.cli:main" in text
    assert callable(importlib.import_module("continuous_learning.cli").main)


# ---------------------------------------------------------------------------------------- the provider


def test_provider_info_matches_airflows_schema() -> None:
    import airflow
    import jsonschema

    info = provider.get_provider_info()
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(info, schema)
    assert info["package-name"] == "continuous-learning" and info["versions"] == [provider.VERSION]
    declared = {i["integration-name"] for i in info["integrations"]}
    for section in ("operators", "hooks", "triggers"):
        for entry in info[section]:
            assert entry["integration-name"] in declared
            for module in entry["python-modules"]:
                importlib.import_module(module)


def _airflow_classes() -> list[type]:
    import continuous_learning.airflow as package

    found = []
    for module_info in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
        module = importlib.import_module(module_info.name)
        found += [
            c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__
        ]
    return found


def test_provider_info_lists_every_hook_operator_trigger_link_and_notifier() -> None:
    from airflow.sdk import BaseHook, BaseNotifier, BaseOperator, BaseOperatorLink
    from airflow.triggers.base import BaseTrigger

    info = provider.get_provider_info()

    def modules(section: str) -> set[str]:
        return {m for entry in info.get(section, []) for m in entry["python-modules"]}

    for cls in _airflow_classes():
        where = f"{cls.__module__}.{cls.__qualname__}"
        if issubclass(cls, BaseOperatorLink):
            assert where in info["extra-links"], where
        if issubclass(cls, BaseNotifier):
            assert where in info.get("notifications", []), where
        if issubclass(cls, BaseOperator):
            assert cls.__module__ in modules("operators"), where
        if issubclass(cls, BaseTrigger):
            assert cls.__module__ in modules("triggers"), where
        if issubclass(cls, BaseHook):
            assert cls.__module__ in modules("hooks"), where
            # no connection type of our own (aws / kubernetes are the providers'): no connection-types
            assert "conn_type" not in vars(cls) or any(
                c["connection-type"] == vars(cls)["conn_type"] for c in info.get("connection-types", [])
            ), where
    for link in info["extra-links"]:
        module, _, name = link.rpartition(".")
        assert issubclass(getattr(importlib.import_module(module), name), BaseOperatorLink)


def test_dags_folder_in_a_checkout() -> None:
    assert provider.dags_folder() == REPO / "dags"


INSTALLED_CHECK = r"""
import json, sys
sys.modules["ray"] = None  # the Airflow side must not need Ray (the `local` extra brings it)
import continuous_learning.provider as provider
from airflow.providers_manager import ProvidersManager
from pathlib import Path

manager = ProvidersManager()
info = manager.providers["continuous-learning"]
import importlib.util
for dag in sorted(provider.dags_folder().glob("*.py")):
    spec = importlib.util.spec_from_file_location(f"dag_{dag.stem}", dag)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
from continuous_learning.compute import kuberay
spec = kuberay.RayClusterSpec(name="c-1", namespace="ns", image="img:1",
                              workers=[kuberay.WorkerGroupSpec(instance_group="gpu")])
kuberay.validate_manifest(kuberay.render_raycluster(spec))
print(json.dumps({
    "provider_file": provider.__file__, "kuberay_file": kuberay.__file__,
    "dags": sorted(p.name for p in provider.dags_folder().glob("*.py")),
    "version": info.version, "links": manager.extra_links_class_names,
    "crds": kuberay.crd_directory() is None,
}))
"""


def test_the_installed_wheel_is_a_provider_with_its_dags_and_needs_nothing_beside_it(
    wheel: Path, tmp_path: Path
) -> None:
    """Installed (not editable) into a folder of its own, with no CRDs and no Ray: Airflow lists the
    provider and its extra links, the shipped DAG files parse, a RayCluster renders and validates."""
    target = tmp_path / "site"
    result = _pip("install", "--no-deps", "--no-index", "-q", "--target", target, wheel)
    assert result.returncode == 0, result.stdout + result.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("CL_KUBERAY_CRDS", "PYTHONPATH")}
    env["PYTHONPATH"] = str(target)
    answer = subprocess.run(
        [sys.executable, "-c", INSTALLED_CHECK], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert answer.returncode == 0, answer.stdout[-3000:] + answer.stderr[-3000:]
    found = json.loads(answer.stdout.strip().splitlines()[-1])
    assert Path(found["provider_file"]).is_relative_to(target)
    assert Path(found["kuberay_file"]).is_relative_to(target)
    assert found["dags"] == sorted(p.name for p in (REPO / "dags").glob("*.py"))
    assert found["version"] == provider.VERSION and found["crds"] is True
    assert set(provider.get_provider_info()["extra-links"]) <= set(found["links"])
