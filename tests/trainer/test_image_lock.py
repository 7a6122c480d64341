"""The image carries what its entry points import: trainer/image/requirements.lock, installed alone
(``--no-deps``) into a clean venv, imports every module the trainer image's entry points import.

Entry points: ``python -m continuous_learning_trainer {train,import-model,bootstrap,evaluate}`` and, inside
a VeRL run, ``python -m verl.trainer.main_ppo`` / ``verl.trainer.sft_trainer_ray`` / ``verl.model_merger``,
VeRL's V1 trainer, FSDP workers, SGLang rollout server, agent and reward loops, and the project's modules
VeRL loads by name (the reward function, the agent-loop plugins, the checkpoint callback).

How, and what this can and cannot see, honestly:

* The venv is .tools/image-lock (``make trainer-tools`` -> trainer/checks/install-image-lock-env.sh), never
  the dev venv: the lock alone decides what is installed, so a package the image lacks (TRL once, VeRL's
  undeclared transferqueue/cachetools/nvtx before that) makes its import fail here, in CI.
* An import is only checked where something runs it: VeRL imports TRL's value-head class inside
  apply_monkey_patch, at worker init, and trl 1.16.0 (no such class since 1.13) passed every module import
  here and failed every GPU run. So VERL_WORKER_CALLS also calls what the FSDP worker init calls
  (trainer/checks/verl_worker_init.py), and such calls are where a new lazy import of VeRL's belongs.
* The lock is for CPython 3.12 + CUDA 13. The venv takes the machine's CPython 3.12 where there is one
  (pyenv's 3.12.1 on the current machine kind) and CPython 3.11 otherwise; on 3.11 two pure-Python wheels
  that say Requires-Python >=3.12 are installed anyway and scipy is 1.17.1 (1.18.1 has no cp311 wheel):
  trainer/checks/image_lock_env.py lists each difference and why. torch is the lock's own 2.11.0, PyPI's
  CUDA 13.0 build with its nvidia-* libraries: it imports without a GPU. (The CPU torch 2.13.0 on the
  machine's disk was tried and rejected: torchvision 0.26.0 cannot load beside it, and sglang imports
  torchvision at the top of sglang.srt.utils, so no SGLang module could have been checked.)
* There is no GPU and no CUDA driver. Extension modules that link the driver's libcuda.so.1 (sgl_kernel's
  ops, torch_memory_saver, mscclpp) cannot even be loaded without it, and behind sgl_kernel sits most of
  SGLang (engine, HTTP server, scheduler, tokenizer/detokenizer managers) and VeRL's SGLang rollout. So
  install-image-lock-env.sh compiles a stand-in libcuda.so.1 exporting the 46 driver functions those
  modules link, each returning CUDA_ERROR_NO_DEVICE, and the probe puts it on LD_LIBRARY_PATH: the loader
  is satisfied, no kernel runs, torch still sees no GPU. What this does not cover: import branches taken
  only when torch sees a GPU (sglang's `if is_cuda():` blocks); what they import (flashinfer, sgl_kernel,
  torch_memory_saver) is imported directly instead. A module that still cannot import without a GPU goes
  into EXPECTED_WITHOUT_GPU with the error it must show (none at present); any other failure fails the
  test, and so does an expected one that starts to import (prune it).
* Which modules: the project's are found by reading the code (every import statement of every trainer
  module and of the core modules they use, the ones inside functions included, TYPE_CHECKING blocks
  excluded), so a new lazy import is checked without editing this file; VeRL's and SGLang's are the ones
  the run reaches (VERL_MODULES, SGLANG_MODULES), starting from the entry points verl_engine names.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.trainer.helpers import IMAGE_LOCK_PYTHON as VENV_PYTHON
from tests.trainer.helpers import IMAGE_LOCK_VENV as VENV
from tests.trainer.helpers import REPO

PROBE = REPO / "trainer" / "checks" / "image_lock_probe.py"
TRAINER_PACKAGE = REPO / "trainer" / "continuous_learning_trainer"
PROJECT_TOPS = ("continuous_learning", "continuous_learning_trainer")
SOURCE_ROOTS = (REPO / "plugins", REPO / "trainer")
#: Project modules an entry point runs besides the trainer package: `import-model`'s core.
EXTRA_PROJECT_ROOTS = ("continuous_learning.models.importing",)
#: Third-party modules the project reaches other than by an import statement of its own.
EXTRA_THIRD_PARTY: dict[str, str] = {
    "gguf": "import-model converts a GGUF file with transformers, which imports gguf only then",
    "transformers.modeling_gguf_pytorch_utils": "transformers' GGUF loader (from_pretrained(gguf_file=...))",
}

sys.path.insert(0, str(REPO / "trainer" / "checks"))
import image_lock_env  # noqa: E402

#: VeRL modules the run reaches, and why. The V1 trainer (trainer.use_v1, VeRL's default) builds the rest
#: from config: FSDP engine workers, SGLang rollouts through VeRL's own loader, agent and reward loops.
VERL_MODULES: dict[str, str] = {
    "verl.trainer.main_ppo": "`python -m verl.trainer.main_ppo` (verl_engine.overrides.PPO_ENTRY)",
    "verl.trainer.sft_trainer_ray": "`python -m verl.trainer.sft_trainer_ray` (verl_engine.overrides.SFT_ENTRY)",
    "verl.model_merger.__main__": "`python -m verl.model_merger merge` (verl_engine.artifacts.merge_command)",
    "verl.model_merger.fsdp_model_merger": "the merger's `--backend fsdp`",
    "verl.trainer.ppo.v1": "TaskRunnerV1: the V1 trainers, TransferQueue, the replay buffer",
    "verl.trainer.ppo.checkpoint_callback": "trainer.checkpoint_callback_class's base",
    "verl.workers.engine_workers": "actor/rollout/ref/critic workers of the V1 trainer",
    "verl.workers.engine.fsdp": "strategy fsdp (FSDP engine)",
    "verl.models.transformers.monkey_patch": "apply_monkey_patch, run on every actor/ref module (VERL_WORKER_CALLS)",
    "verl.workers.rollout.sglang_rollout.sglang_rollout": "rollout.name=sglang, mode async (ServerAdapter)",
    "verl.workers.rollout.router": "the rollout router (cachetools, undeclared by VeRL)",
    "verl.experimental.agent_loop.single_turn_agent_loop": "agent loop without tools",
    "verl.experimental.agent_loop.tool_agent_loop": "agent loop with tools",
    "verl.experimental.reward_loop": "reward loop: loads reward.custom_reward_function",
    "verl.checkpoint_engine.base": "weight sync, checkpoint_engine.backend=naive",
    "verl.tools.base_tool": "the tool class verl_engine writes into the tool config",
    "verl.utils.profiler.nvtx_profile": "VeRL's profiler (nvtx, undeclared by VeRL)",
}
#: VeRL loads the SGLang server class through its registry, which sets SGLANG_USE_CPU_ENGINE and mocks vllm
#: first: the same call here, so SGLang is imported as in the run.
VERL_CALLS: list[dict[str, Any]] = [
    {
        "module": "verl.workers.rollout.replica",
        "call": ["RolloutReplicaRegistry.get", "sglang"],
        "why": "rollout replica: verl.workers.rollout.sglang_rollout.async_sglang_server.SGLangReplica",
    }
]
#: What an actor/ref worker process runs at init, in an interpreter of its own as in the run (the replica
#: call above leaves a mocked vllm in sys.modules, which a worker process never has).
VERL_WORKER_CALLS: list[dict[str, Any]] = [
    {"module": "verl.workers.engine_workers", "why": "the worker class Ray starts"},
    {"module": "verl.workers.engine.fsdp", "why": "its FSDP engine"},
    {
        # trainer/checks/verl_worker_init.py (on the probe's sys.path): TRL is in the image, so VeRL's
        # apply_monkey_patch imports AutoModelForCausalLMWithValueHead from it inside the call, at every
        # actor/ref init; TRL 1.13+ lacks the class (trl 1.16.0 failed every GPU run there)
        "module": "verl_worker_init",
        "call": ["patch_tiny_model"],
        "why": "FSDP engine worker init: apply_monkey_patch on a tiny Qwen2, TRL's value-head import included",
    },
]
#: SGLang modules of the rollout server (launched by SGLangReplica) and of the evaluation engine.
SGLANG_MODULES: dict[str, str] = {
    "sglang": "`import sglang` (evaluate.generate_sglang: sglang.Engine)",
    "sglang.srt.entrypoints.engine": "sglang.Engine (evaluation) and the rollout server's engine",
    "sglang.srt.entrypoints.http_server": "the HTTP server VeRL's SGLang replica starts",
    "sglang.srt.server_args": "ServerArgs",
    "sglang.srt.managers.scheduler": "the scheduler process",
    "sglang.srt.managers.tokenizer_manager": "the tokenizer manager",
    "sglang.srt.managers.detokenizer_manager": "the detokenizer process",
    "sglang.srt.model_executor.model_runner": "the model runner",
    "sglang.srt.layers.attention.triton_backend": "attention_backend=triton (verl_engine)",
    "sglang.srt.layers.sampler": "sampling_backend=pytorch (verl_engine)",
    "sglang.srt.models.qwen2": "Qwen2ForCausalLM",
    "sglang.srt.models.llama": "LlamaForCausalLM (SmolLM2)",
    # sglang takes its `if is_cuda():` import branches only where torch sees a GPU; what they import:
    "flashinfer": "sglang imports flashinfer on CUDA even with the triton backend",
    "sgl_kernel": "sglang's CUDA kernels (sglang-kernel)",
    "torch_memory_saver": "SGLang's memory saver (VeRL's rollout sleep/wake)",
}
#: module -> (text its error must contain, why it cannot import here): CUDA-only failures, needing a GPU at
#: import time, which no CI machine has. Empty: with the driver stand-in, every module above imports.
EXPECTED_WITHOUT_GPU: dict[str, tuple[str, str]] = {}


# ------------------------------------------------------------------ reading the project's imports


def module_path(name: str) -> Path | None:
    for root in SOURCE_ROOTS:
        base = root.joinpath(*name.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def is_project(name: str) -> bool:
    return name.split(".")[0] in PROJECT_TOPS


def type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(name: str, path: Path) -> Iterator[tuple[str, list[str], int]]:
    """(module, names, line) of every import statement in the module, wherever it sits."""
    tree = ast.parse(path.read_text(), str(path))
    skip = type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if getattr(node, "lineno", 0) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            yield module, [a.name for a in node.names if a.name != "*"], node.lineno


def project_roots() -> list[str]:
    roots = []
    for path in sorted(TRAINER_PACKAGE.rglob("*.py")):
        parts = path.relative_to(TRAINER_PACKAGE.parent).with_suffix("").parts
        roots.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return roots + list(EXTRA_PROJECT_ROOTS)


def project_targets() -> tuple[list[str], dict[str, set[str]], dict[str, list[str]]]:
    """The project modules the trainer reaches, the third-party modules they import (with the names
    taken from each) and, per third-party module, where it is imported."""
    stdlib = sys.stdlib_module_names
    seen: list[str] = []
    queue = project_roots()
    third: dict[str, set[str]] = {}
    where: dict[str, list[str]] = {}
    while queue:
        name = queue.pop(0)
        if name in seen:
            continue
        path = module_path(name)
        assert path is not None, f"{name}: no source under plugins/ or trainer/"
        seen.append(name)
        for module, names, line in imports_of(name, path):
            if is_project(module):
                for candidate in [module, *(f"{module}.{n}" for n in names)]:
                    if module_path(candidate) and candidate not in seen:
                        queue.append(candidate)
            elif module.split(".")[0] not in stdlib and module != "__future__":
                third.setdefault(module, set()).update(names)
                where.setdefault(module, []).append(f"{name}:{line}")
    for module, why in EXTRA_THIRD_PARTY.items():
        third.setdefault(module, set())
        where.setdefault(module, []).append(why)
    return seen, third, where


# ------------------------------------------------------------------ the probe


def start_probe(targets: list[dict[str, Any]], out: Path) -> subprocess.Popen[str]:
    spec = out.with_suffix(".targets.json")
    spec.write_text(json.dumps(targets))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(out.parent),
        "XDG_CACHE_HOME": str(out.parent / "cache"),
        # the project's code as the image has it (pip install --no-deps .), from this checkout
        "PYTHONPATH": os.pathsep.join(str(r) for r in SOURCE_ROOTS),
        "CUDA_VISIBLE_DEVICES": "",
        # the stand-in for the GPU driver's libcuda.so.1 (install-image-lock-env.sh): loads, never runs
        "LD_LIBRARY_PATH": str(VENV / "cuda-driver-stub"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "TOKENIZERS_PARALLELISM": "false",
    }
    return subprocess.Popen(
        [str(VENV_PYTHON), str(PROBE), str(spec), str(out)],
        env=env,
        cwd=out.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish_probe(proc: subprocess.Popen[str], out: Path, timeout: int = 900) -> dict[str, Any]:
    output, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, output[-6000:]
    return json.loads(out.read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def plan() -> dict[str, Any]:
    if not VENV_PYTHON.exists():
        pytest.skip("run `make trainer-tools` (trainer/checks/install-image-lock-env.sh: .tools/image-lock)")
    doc: dict[str, Any] = json.loads((VENV / "plan" / "plan.json").read_text())
    locked = {name: version for name, version, _ in image_lock_env.lock_entries()}
    assert doc["locked"] == locked, (
        "the image-lock venv was built from another lock: run trainer/checks/install-image-lock-env.sh"
    )
    return doc


@pytest.fixture(scope="module")
def probes(plan: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("image-lock")
    project, third, _ = project_targets()
    groups = {
        "project": [{"module": m, "names": sorted(n)} for m, n in sorted(third.items())]
        + [{"module": m} for m in project],
        "verl": [{"module": m} for m in VERL_MODULES] + [dict(c) for c in VERL_CALLS],
        "verl-worker": [dict(c) for c in VERL_WORKER_CALLS],
        "sglang": [{"module": m} for m in SGLANG_MODULES],
    }
    # one interpreter per group, all at once (SGLang patches transformers on import: kept apart)
    started = {name: start_probe(targets, tmp / f"{name}.json") for name, targets in groups.items()}
    return {name: finish_probe(proc, tmp / f"{name}.json") for name, proc in started.items()}


def failures(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in doc["results"] if r["status"] != "ok"]


def describe(result: dict[str, Any]) -> str:
    return f"{result['module']}: {result.get('error_type')}: {result.get('error', '')[:300]} at {result.get('where', [])[-1:]}"


def not_in_lock(doc: dict[str, Any], plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Failures that are a module no installed distribution provides (and no skipped one would)."""
    missing = []
    for result in failures(doc):
        top = (result.get("missing") or "").split(".")[0]
        if top and top not in doc["providers"] and top not in plan["skipped_import_names"]:
            missing.append(result)
    return missing


# ------------------------------------------------------------------ the tests


def test_venv_holds_exactly_the_lock(plan: dict[str, Any], probes: dict[str, dict[str, Any]]) -> None:
    """--no-deps: the venv holds the lock's distributions at the lock's versions (less what the plan skips
    or substitutes, with its reasons) and nothing else but pip."""
    installed = {image_lock_env.normalise(n): v for n, v in probes["project"]["installed"].items()}
    installed.pop("pip", None)
    assert installed == plan["expected"]
    print(f"\nimage-lock venv: CPython {probes['project']['python']}, {len(installed)} distributions")
    for name, info in {**plan["substituted"], **plan["skipped"]}.items():
        print(f"  {name} {info['locked']} -> {info.get('installed', 'not installed')}: {info['why']}")
    for name in plan["ignore_requires_python"]:
        print(f"  {name} {plan['locked'][name]}: installed despite Requires-Python >=3.12")


def test_pip_check_reports_only_what_the_plan_explains(plan: dict[str, Any]) -> None:
    lines = [line for line in (VENV / "pip-check.txt").read_text().splitlines() if line.strip()]
    explained = set(plan["substituted"]) | set(plan["skipped"])
    unexplained = [
        line
        for line in lines
        if "No broken requirements" not in line
        # the deliberate override (overrides.txt): sglang 0.5.12 declares transformers==5.6.0
        and "has requirement transformers==5.6.0, but you have transformers 5.9.0" not in line
        and not any(f" {name} " in f" {line.replace(',', ' ')} " for name in explained)
    ]
    assert unexplained == []


def test_project_modules_find_their_imports_in_the_lock(
    plan: dict[str, Any], probes: dict[str, dict[str, Any]]
) -> None:
    """Every import statement of the trainer's modules (lazy ones too) resolves against the lock alone."""
    _, _, where = project_targets()
    doc = probes["project"]
    missing = not_in_lock(doc, plan)
    assert missing == [], "imported by the trainer, in no locked package:\n" + "\n".join(
        f"{describe(r)} (imported at {', '.join(where.get(r['module'], ['?']))})" for r in missing
    )
    unexpected = [r for r in failures(doc) if r["module"] not in EXPECTED_WITHOUT_GPU]
    assert unexpected == [], "\n".join(describe(r) for r in unexpected)


@pytest.mark.parametrize("group", ["verl", "verl-worker", "sglang"])
def test_engine_modules_import_from_the_lock(
    group: str, plan: dict[str, Any], probes: dict[str, dict[str, Any]]
) -> None:
    doc = probes[group]
    missing = not_in_lock(doc, plan)
    assert missing == [], f"{group}: imports a module no locked package provides:\n" + "\n".join(
        describe(r) for r in missing
    )
    unexpected = []
    for result in failures(doc):
        expected = EXPECTED_WITHOUT_GPU.get(result["module"])
        if expected is None or expected[0] not in result.get("error", ""):
            unexpected.append(result)
    assert unexpected == [], "\n".join(describe(r) for r in unexpected)
    imported = [r["module"] for r in doc["results"] if r["status"] == "ok"]
    print(f"\n{group}: imported {len(imported)} of {len(doc['results'])}:", ", ".join(imported))
    for result in failures(doc):
        print(f"  not here (no GPU): {describe(result)}")


def test_expected_failures_still_fail(probes: dict[str, dict[str, Any]]) -> None:
    """An entry of EXPECTED_WITHOUT_GPU that imports now hides nothing any more: prune it."""
    ok = {r["module"] for doc in probes.values() for r in doc["results"] if r["status"] == "ok"}
    assert sorted(ok & set(EXPECTED_WITHOUT_GPU)) == []
