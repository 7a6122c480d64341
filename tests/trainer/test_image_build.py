"""The trainer image's two builds, checked without building: the registry build (nvidia/cuda base,
Python 3.12, EFA) is what trainer/Dockerfile does by default, and the offline build (`make image`:
trainer/image/build.sh) switches it with build arguments only. The switch logic itself (the RUN steps'
shell on WITH_EFA) is run here with bash; the Python 3.11 lock is checked against the 3.12 one.
The build itself is `make image` (tens of minutes and ~25 GB: not part of `make test`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trainer.helpers import REPO

DOCKERFILE = REPO / "trainer" / "Dockerfile"
IMAGE = REPO / "trainer" / "image"
sys.path.insert(0, str(REPO / "trainer" / "checks"))
import image_lock_env  # noqa: E402

#: What the offline build passes (trainer/image/build.sh) and what the registry build leaves at default.
OFFLINE_ARGS = {
    "PYTHON_VERSION": "3.11",
    "LOCK": "trainer/image/requirements-py311.lock",
    "WITH_EFA": "false",
}
DEFAULTS = {
    "BASE_IMAGE": "nvidia/cuda:13.0.2-cudnn-devel-ubuntu24.04",
    "PYTHON_VERSION": "3.12",
    "LOCK": "trainer/image/requirements.lock",
    "WITH_EFA": "true",
}


def instructions() -> list[tuple[str, str]]:
    """(keyword, rest) per Dockerfile instruction, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).strip().partition(" ")
        out.append((keyword.upper(), rest.strip()))
        pending = ""
    return out


def arg_defaults() -> dict[str, list[str]]:
    defaults: dict[str, list[str]] = {}
    for keyword, rest in instructions():
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            defaults.setdefault(name, []).append(value)
    return defaults


def run_steps() -> list[str]:
    return [rest for keyword, rest in instructions() if keyword == "RUN"]


def test_registry_build_is_the_default() -> None:
    defaults = arg_defaults()
    for name, value in DEFAULTS.items():
        assert set(defaults[name]) == {value}, f"{name}: defaults {defaults[name]}"
    froms = [rest for keyword, rest in instructions() if keyword == "FROM"]
    assert froms == ["${BASE_IMAGE} AS build", "${BASE_IMAGE} AS runtime"]
    text = DOCKERFILE.read_text()
    assert text.index("ARG BASE_IMAGE=") < text.index("FROM "), "BASE_IMAGE must be a global ARG"
    assert "COPY ${LOCK} /tmp/lock/requirements.lock" in text
    assert "COPY --from=build /opt/venv" not in text, "the venv is installed once, in the runtime stage"


def test_offline_build_switches_only_build_args() -> None:
    script = (IMAGE / "build.sh").read_text()
    for name, value in OFFLINE_ARGS.items():
        assert f"--build-arg {name}={value}" in script, name
    assert (
        '--build-arg "BASE_IMAGE=$BASE"' in script
        and "localhost/cl-trainer-base:" in (IMAGE / "base.sh").read_text()
    )
    for flag in ("--isolation chroot", "--pull=never", "--layers", '--file "$ROOT/trainer/Dockerfile"'):
        assert flag in script, flag
    assert "smoke.sh" in script and "oci-archive:" in script


def shell_of(step_marker: str) -> str:
    [step] = [s for s in run_steps() if step_marker in s]
    return step


def run_bash(script: str, env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", script],
        env={"PATH": f"{tmp}:/usr/bin:/bin", **env},
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("with_efa", ["true", "false", "yes"])
def test_efa_switch_picks_the_build_tools(with_efa: str, tmp_path: Path) -> None:
    step = shell_of('case "${WITH_EFA}"')
    case = step.split("&& apt-get update")[0]
    result = run_bash(case + '\necho "tools=[${efa_tools}]"', {"WITH_EFA": with_efa}, tmp_path)
    if with_efa == "yes":
        assert result.returncode == 1 and "WITH_EFA must be true or false" in result.stderr
    elif with_efa == "true":
        assert result.returncode == 0 and "build-essential" in result.stdout and "libtool" in result.stdout
    else:
        assert result.returncode == 0 and "tools=[]" in result.stdout


@pytest.mark.parametrize("marker", ["aws-efa-installer", "aws-ofi-nccl-"])
def test_efa_steps_run_only_when_switched_on(marker: str, tmp_path: Path) -> None:
    """WITH_EFA=false: the step exits 0 before any download; true: it goes for the download (a stand-in
    curl records the address and fails, so nothing is fetched here)."""
    step = shell_of(marker)
    curl = tmp_path / "curl"
    curl.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/curl-called\nexit 22\n')
    curl.chmod(0o755)
    env = {"EFA_INSTALLER_VERSION": "1.43.1", "AWS_OFI_NCCL_VERSION": "1.16.3"}
    off = run_bash(step, {**env, "WITH_EFA": "false"}, tmp_path)
    assert off.returncode == 0 and "WITH_EFA=false: no" in off.stdout
    assert not (tmp_path / "curl-called").exists()
    on = run_bash(step, {**env, "WITH_EFA": "true"}, tmp_path)
    assert on.returncode == 22
    assert marker in (tmp_path / "curl-called").read_text()


def test_python311_lock_differs_only_where_documented() -> None:
    """The offline image's lock holds the 3.12 lock's files except the few releases without a CPython 3.11
    build, which are the ones trainer/checks/image_lock_env.py installs differently on 3.11 for CI."""
    py312 = {n: (v, set(h)) for n, v, h in image_lock_env.lock_entries(IMAGE / "requirements.lock")}
    py311 = {n: (v, set(h)) for n, v, h in image_lock_env.lock_entries(IMAGE / "requirements-py311.lock")}
    assert set(py311) == set(py312), "the two locks hold different packages"
    differ = {n for n in py312 if py311[n][0] != py312[n][0]}
    assert differ == set(image_lock_env.SUBSTITUTED) | image_lock_env.IGNORE_REQUIRES_PYTHON
    assert py311["scipy"][0] == image_lock_env.SUBSTITUTED["scipy"][0]
    for name in set(py312) - differ:
        assert py311[name][1] == py312[name][1], f"{name}: other hashes in the 3.11 lock"
    for name, (_, hashes) in py311.items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name


def test_cuda_base_is_the_cuda_of_torchs_wheels() -> None:
    """The offline base's nvcc is CUDA 13.0, the CUDA of torch 2.11.0's nvidia-* wheels."""
    base = {n: v for n, v, _ in image_lock_env.lock_entries(IMAGE / "cuda-base.lock")}
    image = {n: v for n, v, _ in image_lock_env.lock_entries(IMAGE / "requirements.lock")}
    assert base["nvidia-cuda-runtime"] == image["nvidia-cuda-runtime"]
    for name in ("nvidia-cuda-nvcc", "nvidia-cuda-crt", "nvidia-nvvm"):
        assert base[name].startswith("13.0."), f"{name} {base[name]}"
    assert image["nvidia-cuda-nvrtc"] == base["nvidia-cuda-nvcc"]


def test_make_test_does_not_build_the_image() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^image:", makefile, re.M)
    [test_deps] = re.findall(r"^test:(.*)$", makefile, re.M)
    assert "image" not in test_deps.split()
    ci = REPO / ".ci" / "run"
    if ci.exists():
        assert "make image" not in ci.read_text() and "trainer/image/build.sh" not in ci.read_text()


def test_scripts_parse() -> None:
    for script in ("base.sh", "build.sh", "smoke.sh", "lock.sh"):
        path = IMAGE / script
        assert os.access(path, os.X_OK), f"{script} is not executable"
        result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
