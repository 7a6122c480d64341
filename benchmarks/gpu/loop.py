"""Three days of the product's loop on one GPU host, without Airflow: the tasks' own library calls in order.

Day 0 imports the user's model (SmolLM2-135M-Instruct from its GGUF) through the trainer's ``import-model``
command, with the "v0 plays the agent" imitation on day 0's logged answers, and registers it as
production ``v0``. Each following day: assemble the day's training window from the reward partitions
(``training.assemble_training_dataset``), write the run spec the training task writes
(``training.write_run_spec``, resources patched as the KubeRay operator patches them), run
``python -m continuous_learning_trainer train`` (VeRL GRPO, SGLang rollouts), evaluate candidate and
production with the SGLang offline engine on one fixed test set (every day's test split), gate the day's
own test rows with the product's paired bootstrap (``evaluation.gate.decide``) and promote in the
registry when the gate says so. One JSON line per stage goes to ``<logs>/loop.jsonl`` as it happens,
so a stopped run still reports the days it finished.

The data (raw logs -> ingest -> reward partitions) is made before, on CPU, by prepare_loop.py.

    CL_HOME=.bundle/loop python3 benchmarks/gpu/loop.py --logs /tmp/bench/logs --gguf /tmp/hold/model.gguf
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from continuous_learning import storage
from continuous_learning.config import Settings, load_settings
from continuous_learning.contracts import (
    DatasetRef,
    EvalResult,
    ImportResult,
    Resources,
    RunSpec,
    TrainResult,
    VerlOptions,
)
from continuous_learning.evaluation.gate import GateConfig, decide
from continuous_learning.models.onboarding import register_import
from continuous_learning.registry import ModelRegistry
from continuous_learning.training import (
    assemble_training_dataset,
    run_paths,
    write_eval_spec,
    write_import_spec,
    write_run_spec,
)

TRAINER = [sys.executable, "-m", "continuous_learning_trainer"]


def settings_for(args: argparse.Namespace, algorithm: str = "grpo") -> Settings:
    """The local environment with the GPU engine and this run's knobs (what a deployment's TOML sets);
    ``algorithm`` ``sft``: the SFT-on-corrections candidate's learning rate and steps."""
    gguf = Path(args.gguf).resolve()
    sft = algorithm == "sft"
    return load_settings(
        "local",
        {
            "trainer.engine": args.engine,
            "trainer.algorithm": algorithm,
            "trainer.learning_rate": args.sft_learning_rate if sft else args.learning_rate,
            "trainer.max_steps": args.sft_steps if sft else args.steps,
            "trainer.samples_per_prompt": args.samples,
            "trainer.prompts_per_step": args.prompts,
            "trainer.max_completion_tokens": args.max_tokens,
            "trainer.temperature": 1.0,
            "trainer.threads": os.cpu_count() or 8,
            "model.base_uri": f"file://{gguf.parent}",
            "model.gguf_file": gguf.name,
            "model.dtype": "bfloat16",
            "model.imitate_agent_steps": args.imitate_steps,
            "model.imitate_agent_learning_rate": args.imitate_lr,
            "model.lora.enabled": args.lora,
            "dataset.lookback_days": args.lookback,
            "evaluation.max_prompts": args.max_eval_prompts,
            # the trainer stops itself (latest checkpoint merged) 50 s before the loop's SIGTERM
            "compute.job_timeout_s": args.train_timeout,
            "trainer.stop_reserve_s": 50,
            # the gate as prod.toml sets it
            "evaluation.margin": 0.005,
            "evaluation.confidence": 0.95,
        },
    )


class Log:
    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "loop.jsonl"
        self.folder = folder
        self.t0 = time.monotonic()

    def record(self, stage: str, **fields: Any) -> None:
        line = {"stage": stage, "t": round(time.monotonic() - self.t0, 1), **fields}
        with self.path.open("a") as f:
            f.write(json.dumps(line, default=str) + "\n")
        print(json.dumps(line, default=str), flush=True)


def run_trainer(
    command: str, spec_uri: str, log_file: Path, timeout_s: int, extra_path: str | None = None
) -> tuple[int, float]:
    """One trainer job (what the RayJob's entrypoint runs), its output in ``log_file``; SIGTERM at the limit.
    ``extra_path`` goes in front of PYTHONPATH for this job only."""
    started = time.monotonic()
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = f"{extra_path}:{env.get('PYTHONPATH', '')}"
    with log_file.open("w") as out:
        proc = subprocess.Popen(
            [*TRAINER, command, "--spec", spec_uri], stdout=out, stderr=subprocess.STDOUT, env=env
        )
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                rc = proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
    return rc, time.monotonic() - started


def last_json(log_file: Path) -> dict[str, Any]:
    for line in reversed(log_file.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no result document in {log_file}")


def scores_subset(scores_uri: str, ids: set[str], out_uri: str) -> str:
    """The evaluation's scores restricted to one day's test rows (the gate's paired prompts)."""
    table = read_parquet(scores_uri)
    kept = table.filter(pc.is_in(table["interaction_id"], value_set=pa.array(sorted(ids))))
    buffer = io.BytesIO()
    pq.write_table(kept, buffer)
    storage.write_bytes(out_uri, buffer.getvalue())
    return out_uri


def read_parquet(uri: str, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(io.BytesIO(storage.read_bytes(uri)), columns=columns)


def test_ids(dataset: DatasetRef) -> set[str]:
    table = read_parquet(dataset.test_uri, ["extra_info"])
    return {row["interaction_id"] for row in table.column("extra_info").to_pylist()}


def model_means(scores_uri: str, ids: set[str] | None = None) -> dict[str, float]:
    rows = read_parquet(scores_uri, ["interaction_id", "model", "reward"])
    out: dict[str, list[float]] = {}
    for r in rows.to_pylist():
        if ids is None or r["interaction_id"] in ids:
            out.setdefault(r["model"], []).append(r["reward"])
    return {m: round(sum(v) / len(v), 4) for m, v in out.items()}


def carried_scores(cached: pa.Table, model: str, fresh_uri: str, out_uri: str) -> str:
    """The day's scores: the candidate's fresh rows plus ``model``'s rows from the evaluation that scored it
    (greedy decoding of the same weights on the same fixed set: a second run would repeat them)."""
    fresh = read_parquet(fresh_uri)
    rows = cached.filter(pc.equal(cached["model"], model))
    rows = rows.set_column(
        rows.schema.get_field_index("model"), "model", pa.array(["production"] * len(rows))
    )
    buffer = io.BytesIO()
    pq.write_table(pa.concat_tables([rows.cast(fresh.schema), fresh]), buffer)
    storage.write_bytes(out_uri, buffer.getvalue())
    return out_uri


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--logs", required=True)
    ap.add_argument("--gguf", required=True, help="the model's GGUF file (SmolLM2-135M-Instruct.Q4_1.gguf)")
    ap.add_argument("--start", default="2026-11-01", help="day 0: the imitation day")
    ap.add_argument("--days", type=int, default=3, help="training days after day 0")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--learning-rate", type=float, default=2e-5)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--imitate-steps", type=int, default=60)
    ap.add_argument("--imitate-lr", type=float, default=5e-5)
    ap.add_argument("--lookback", type=int, default=3)
    ap.add_argument("--lora", action="store_true")
    ap.add_argument("--engine", choices=["verl", "cpu"], default="verl", help="cpu: a dry run of the driver")
    ap.add_argument("--max-eval-prompts", type=int, default=4000)
    ap.add_argument("--train-timeout", type=int, default=420)
    ap.add_argument(
        "--checkpoint-every", type=int, default=0, help="steps between checkpoints (0: the last step)"
    )
    ap.add_argument("--import-extra-path", default=None,
                    help="PYTHONPATH entries for import-model only (TRL, which VeRL 0.9.1's workers must not see)")  # fmt: skip
    ap.add_argument("--extra-override", action="append", default=[], help="appended VeRL Hydra overrides")
    ap.add_argument("--sft-days", default="", help="comma-separated day numbers (1-based) whose candidate is "
                    "SFT on the day's corrections and positively rated answers instead of GRPO")  # fmt: skip
    ap.add_argument(
        "--first-day", type=int, default=1, help="resume a loop at this day (earlier days are done)"
    )
    ap.add_argument("--sft-steps", type=int, default=12)
    ap.add_argument("--sft-learning-rate", type=float, default=5e-5)
    args = ap.parse_args()
    logs = Path(args.logs)
    log = Log(logs)
    settings = settings_for(args)
    sft_days = {int(d) for d in args.sft_days.split(",") if d.strip()}
    registry = ModelRegistry(settings.storage.registry_uri)
    day0 = date.fromisoformat(args.start)
    days = [day0 + timedelta(days=i) for i in range(1, args.days + 1)]

    # The fixed test set: every day's test split (splits are assigned per row when a partition is built).
    fixed = assemble_training_dataset(settings.model_copy(update={"dataset": settings.dataset.model_copy(
        update={"lookback_days": args.days + 1})}), days[-1])  # fmt: skip
    log.record("fixed_test_set", dataset=fixed.dataset_id, prompts=len(test_ids(fixed)))

    # Day 0: the user's model becomes production v0, playing the agent that wrote the logs.
    data0 = assemble_training_dataset(settings, day0)
    if registry.alias("production") is not None and (logs / "day0-import.log").exists():
        # a resumed loop: v0 is registered already
        fmt = ImportResult.model_validate(last_json(logs / "day0-import.log")).lineage.tool_call_format
        log.record("import", reused=registry.alias("production").version)
    else:
        spec_uri = write_import_spec(settings, data0, "day0-import")
        rc, seconds = run_trainer(
            "import-model", spec_uri, logs / "day0-import.log", 900, args.import_extra_path
        )
        if rc != 0:
            log.record("import", rc=rc, seconds=round(seconds, 1))
            raise SystemExit(f"import-model failed (rc {rc}); see {logs / 'day0-import.log'}")
        imported = ImportResult.model_validate(last_json(logs / "day0-import.log"))
        version, _ = register_import(registry, imported, "day0-import", dataset_id=data0.dataset_id,
                                     promote_reason="onboarding: the model serving today")  # fmt: skip
        fmt = imported.lineage.tool_call_format
        log.record("import", rc=rc, seconds=round(seconds, 1), version=version.version,
                   tool_call_format=fmt, template=imported.lineage.chat_template_source,
                   fixes=imported.lineage.fixes, imitation=imported.lineage.imitation)  # fmt: skip

    e = settings.evaluation
    gate_config = GateConfig(
        margin=e.margin, confidence=e.confidence, resamples=e.bootstrap_resamples, seed=e.seed
    )
    wall_clock = True  # the trainer's own time limit (VeRL trainer mode cl_sync), new on the GPU
    scored: dict[str, tuple[pa.Table, str]] = {}  # production version -> (scores, its model label there)
    for n, day in enumerate(days, start=1):
        if n < args.first_day:
            continue
        production = registry.alias("production")
        assert production is not None
        prod = registry.get(production.version)
        algorithm = "sft" if n in sft_days else "grpo"
        run_id = f"day{n}-{day.isoformat()}" + ("-sft" if algorithm == "sft" else "")
        dataset = assemble_training_dataset(settings, day)
        spec_uri = write_run_spec(
            settings_for(args, algorithm), dataset, prod.model_uri, prod.version, run_id, tool_call_format=fmt
        )
        spec = RunSpec.read(spec_uri)
        work = run_paths(settings, run_id).root.removeprefix("file://") + "/verl"
        if args.engine == "verl":  # as the KubeRay operator patches the spec with the cluster it got
            spec = spec.model_copy(
                update={
                    "resources": Resources(
                        nnodes=1, n_gpus_per_node=1, cpu_threads=spec.resources.cpu_threads, gpu_class="h200"
                    ),
                    # the extra overrides are the rollout's (GRPO): VeRL's SFT config has no actor_rollout_ref
                    "verl": VerlOptions(
                        work_dir=work, extra_overrides=[] if algorithm == "sft" else list(args.extra_override)
                    ),
                    "hyperparameters": spec.hyperparameters.model_copy(
                        update={"checkpoint_every": args.checkpoint_every or spec.hyperparameters.max_steps}
                    ),
                }
            )
        if not wall_clock:
            spec = spec.model_copy(update={"hyperparameters": spec.hyperparameters.model_copy(
                update={"max_seconds": None, "checkpoint_every_seconds": None})})  # fmt: skip
        spec.write(spec_uri)
        rc, seconds = run_trainer("train", spec_uri, logs / f"{run_id}-train.log", args.train_timeout)
        try:
            trained = TrainResult.read(storage.join(spec.output_uri, "result.json"))
        except Exception as exc:
            log.record("train", day=n, rc=rc, seconds=round(seconds, 1), error=str(exc)[:500])
            if algorithm != "sft" and wall_clock and seconds < args.train_timeout - 30:
                # a start-up failure: the rest of the days run without the wall-clock trainer mode
                wall_clock = False
                log.record(
                    "fallback", day=n, reason="train failed before its limit: no wall-clock trainer mode"
                )
            continue
        log.record("train", day=n, algorithm=algorithm, rc=rc, seconds=round(seconds, 1), status=trained.status,
                   steps=trained.steps, metrics=trained.metrics, history=trained.history,
                   dataset=dataset.dataset_id, production=prod.version)  # fmt: skip
        if trained.status not in ("succeeded", "stopped") or not trained.model_uri:
            continue

        cached = scored.get(prod.version)
        models = {"candidate": trained.model_uri}
        if cached is None:
            models["production"] = prod.model_uri
        eval_uri = write_eval_spec(settings, fixed, models, f"{run_id}-eval", tool_call_format=fmt)
        rc, seconds = run_trainer("evaluate", eval_uri, logs / f"{run_id}-eval.log", 600)
        if rc != 0:
            log.record("evaluate", day=n, rc=rc, seconds=round(seconds, 1))
            continue
        evaluation = EvalResult.model_validate(last_json(logs / f"{run_id}-eval.log"))
        if cached is not None:
            scores_uri = carried_scores(cached[0], cached[1], evaluation.scores_uri,
                                        storage.join(run_paths(settings, run_id).root, "scores-with-production.parquet"))  # fmt: skip
            evaluation = evaluation.model_copy(update={"scores_uri": scores_uri})
        scores = read_parquet(evaluation.scores_uri)
        day_ids = test_ids(dataset)
        gate_scores = scores_subset(evaluation.scores_uri, day_ids,
                                    storage.join(run_paths(settings, run_id).root, "gate-scores.parquet"))  # fmt: skip
        decision = decide(gate_scores, gate_config)
        promoted = None
        if decision.promote:
            candidate = registry.register(trained.model_uri, run_id, prod.version, dataset.dataset_id,
                                          metrics=trained.metrics)  # fmt: skip
            registry.promote(candidate.version, " ".join(decision.reasons), run_id, production.revision)
            promoted = candidate.version
        scored[promoted or prod.version] = (scores, "candidate" if promoted else "production")
        fixed_means = model_means(evaluation.scores_uri)
        log.record("evaluate", day=n, seconds=round(seconds, 1), fixed_set=fixed_means,
                   day_set=model_means(evaluation.scores_uri, day_ids),
                   tool_call_validity=evaluation.tool_call_validity, prompts=evaluation.prompts,
                   production_scores="carried" if cached is not None else "evaluated",
                   gate=decision.as_dict(), promoted=promoted,
                   production_after=fixed_means["candidate" if promoted else "production"])  # fmt: skip
    log.record("done", registry=registry.summary())


if __name__ == "__main__":
    main()
