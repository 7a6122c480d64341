"""The VeRL engine's run around VeRL: checkpoint upload, resume, merge validation, TrainResult.

VeRL itself is replaced by a fake runner that does what main_ppo and the model merger do to the file
system (checkpoint folders + tracker, the callback's upload, a merged HF model), so the logic around
them runs on CPU with small fake files.
"""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from continuous_learning import storage
from continuous_learning.contracts import EvalSpec, TrainResult
from continuous_learning_trainer import evaluate, verl_engine
from continuous_learning_trainer.stopping import StopRequest
from continuous_learning_trainer.verl_engine import launch
from continuous_learning_trainer.verl_engine.artifacts import validate_hf_model
from continuous_learning_trainer.verl_engine.checkpoints import (
    TRACKER,
    UploadCheckpointCallback,
    restore_checkpoint,
    upload_checkpoint,
    write_upload_manifest,
)
from continuous_learning_trainer.verl_engine.launch import TrainingStopped, run_command

from tests.trainer.fake_verl import FakeVerl, fake_step, prepare
from tests.trainer.helpers import run_spec, write_dataset, write_tiny_model


def test_callback_uploads_and_commits_then_prunes(tmp_path: Path) -> None:
    local = tmp_path / "ckpt"
    remote = f"file://{tmp_path}/remote/checkpoints"
    write_upload_manifest(local, remote, keep=2)
    callback = UploadCheckpointCallback(config=None)
    for step in (2, 4, 6):
        callback.on_save(trainer=None, global_step=step, checkpoint_dir=str(fake_step(local, step)))
    stored = tmp_path / "remote" / "checkpoints"
    assert (stored / TRACKER).read_text() == "6"
    assert sorted(p.name for p in stored.iterdir() if p.is_dir()) == ["global_step_4", "global_step_6"]
    assert (stored / "global_step_6" / "actor" / "model_world_size_1_rank_0.pt").read_bytes() == b"w" * 6


def test_resume_downloads_last_committed_checkpoint(tmp_path: Path) -> None:
    remote = f"file://{tmp_path}/remote"
    src = tmp_path / "src"
    for step in (3, 5):
        upload_checkpoint(fake_step(src, step), remote, step, keep=3)
    # an upload without its tracker update (a crash mid-upload) is not resumed from
    storage.upload_dir(fake_step(tmp_path / "partial", 7), storage.join(remote, "global_step_7"))
    local = tmp_path / "restart"
    assert restore_checkpoint(remote, local) == 5
    assert (local / TRACKER).read_text() == "5"
    assert (local / "global_step_5" / "actor" / "model_world_size_1_rank_0.pt").read_bytes() == b"w" * 5
    assert not (local / "global_step_3").exists()
    # a restart on the same shared file system with a newer local checkpoint keeps it
    fake_step(local, 6)
    assert restore_checkpoint(remote, local) == 6
    assert restore_checkpoint(f"file://{tmp_path}/empty", tmp_path / "fresh") is None


def test_validate_hf_model_copies_tokenizer_and_reads_weights(tmp_path: Path) -> None:
    base, merged = tmp_path / "base", tmp_path / "merged"
    write_tiny_model(base)
    merged.mkdir()
    shutil.copy(base / "config.json", merged)
    shutil.copy(base / "model.safetensors", merged)
    metrics = validate_hf_model(merged, base)
    assert (merged / "tokenizer.json").exists()
    assert metrics["model_tensors"] > 0 and metrics["model_parameters"] > 1000
    (merged / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(Exception):  # noqa: B017 - safetensors raises its own error type
        validate_hf_model(merged, base)


def test_train_end_to_end_with_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prepare(tmp_path)
    monkeypatch.setenv("CL_IMAGE_DIGEST", "sha256:abc")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    spec = run_spec(tmp_path, verl={"work_dir": str(tmp_path / "work-a")})
    with pytest.raises(RuntimeError, match="node lost"):
        verl_engine.train(spec, runner=FakeVerl(fail_at=3))
    failed = TrainResult.read(f"{spec.output_uri}/result.json")
    assert failed.status == "failed" and "node lost" in (failed.error or "")
    # the restarted job runs on another node (fresh work dir): it resumes from storage at step 2
    spec = run_spec(tmp_path, verl={"work_dir": str(tmp_path / "work-b")})
    runner = FakeVerl()
    result = verl_engine.train(spec, runner=runner)
    assert result.status == "succeeded" and result.steps == 4
    assert [h["step"] for h in result.history] == [3.0, 4.0]
    assert result.versions["image"] == "sha256:abc"
    assert result.metrics["reward_last"] == pytest.approx(0.4)
    assert TrainResult.read(f"{spec.output_uri}/result.json") == result
    model = tmp_path / "runs" / "run-1" / "model"
    assert (model / "tokenizer.json").exists() and (model / "model.safetensors").exists()
    merge = runner.calls[-1]
    assert merge[1:4] == ["-m", "verl.model_merger", "merge"] and "fsdp" in merge
    assert merge[merge.index("--local_dir") + 1].endswith("global_step_4/actor")
    assert result.adapter_uri is None and not (tmp_path / "runs" / "run-1" / "adapter").exists()
    # the tool agent loop: tool config and agent-loop config written, rows tagged
    work = tmp_path / "work-b" / "run-1"
    assert "get_weather" in (work / "tools.yaml").read_text()
    assert yaml.safe_load((work / "agent_loops.yaml").read_text()) == [
        {"name": "cl_tool_agent", "_target_": "continuous_learning_trainer.verl_plugins.ToolAgentLoop"}
    ]
    rows = pq.read_table(work / "data" / "train.parquet").to_pylist()
    assert {r["agent_name"] for r in rows} == {"cl_tool_agent", "single_turn_agent"}
    assert rows[0]["extra_info"]["tool_selection"] == ["get_weather"]
    assert "actor_rollout_ref.rollout.agent.default_agent_loop=cl_tool_agent" in runner.calls[0]
    assert (
        f"actor_rollout_ref.rollout.agent.agent_loop_config_path={work / 'agent_loops.yaml'}"
        in runner.calls[0]
    )
    assert "actor_rollout_ref.rollout.multi_turn.format=hermes" in runner.calls[0]


def test_restart_in_same_work_dir_keeps_history_before_checkpoint(tmp_path: Path) -> None:
    prepare(tmp_path)
    spec = run_spec(tmp_path, verl={"work_dir": str(tmp_path / "work")})
    with pytest.raises(RuntimeError, match="node lost"):
        verl_engine.train(spec, runner=FakeVerl(fail_at=3))
    result = verl_engine.train(spec, runner=FakeVerl())
    assert result.status == "succeeded" and result.steps == 4
    # steps 1-2 from the first attempt, 3 re-run after the checkpoint at 2 (its later entry wins), 4
    assert [h["step"] for h in result.history] == [1.0, 2.0, 3.0, 4.0]
    assert result.metrics["reward_first"] == pytest.approx(0.1)


def test_train_without_tools_uses_single_turn(tmp_path: Path) -> None:
    prepare(tmp_path, with_tools=False)
    runner = FakeVerl()
    spec = run_spec(tmp_path, resume=False, verl={"work_dir": str(tmp_path / "w")})
    assert verl_engine.train(spec, runner=runner).status == "succeeded"
    assert not any("multi_turn" in a for a in runner.calls[0])
    assert "trainer.resume_mode=disable" in runner.calls[0]


def test_sigterm_mid_run_merges_the_latest_checkpoint(tmp_path: Path) -> None:
    """A SIGTERM during step 3 (checkpoints every 2): step 2 is merged, uploaded and recorded as stopped."""
    prepare(tmp_path)
    spec = run_spec(tmp_path, verl={"work_dir": str(tmp_path / "w")})
    runner = FakeVerl(signal_at=3)
    result = verl_engine.train(spec, runner=runner, stop=StopRequest())
    assert result.status == "stopped" and result.steps == 2
    assert result.stop_reason == "SIGTERM: stopped at step 2, the latest checkpoint merged"
    assert result.model_uri == f"{spec.output_uri}/model" and result.error is None
    assert TrainResult.read(f"{spec.output_uri}/result.json") == result
    merge = runner.calls[-1]
    assert merge[merge.index("--local_dir") + 1].endswith("global_step_2/actor")
    validate_hf_model(tmp_path / "runs" / "run-1" / "model")
    assert (tmp_path / "runs" / "run-1" / "checkpoints" / TRACKER).read_text() == "2"
    assert [h["step"] for h in result.history] == [1.0, 2.0, 3.0]


class KilledDuringMerge(FakeVerl):
    def merge(self, local_dir: Path, target: Path) -> None:
        raise KeyboardInterrupt  # stands for the SIGKILL that follows a Ray job stop: nothing after it runs


def test_a_kill_during_the_merge_leaves_a_stopped_record_and_a_resumable_checkpoint(tmp_path: Path) -> None:
    prepare(tmp_path)
    spec = run_spec(tmp_path, verl={"work_dir": str(tmp_path / "w")})
    with pytest.raises(KeyboardInterrupt):
        verl_engine.train(spec, runner=KilledDuringMerge(signal_at=3), stop=StopRequest())
    record = TrainResult.read(f"{spec.output_uri}/result.json")
    assert record.status == "stopped" and record.model_uri is None and record.steps == 2
    assert record.stop_reason == (
        "SIGTERM: stopped at step 2; merging its checkpoint (resumable from checkpoints/)"
    )
    spec = run_spec(tmp_path, verl={"work_dir": str(tmp_path / "elsewhere")})
    resumed = verl_engine.train(spec, runner=FakeVerl())
    assert resumed.status == "succeeded" and resumed.steps == 4
    assert [h["step"] for h in resumed.history] == [3.0, 4.0]


def test_stop_before_the_first_checkpoint_records_that_nothing_was_merged(tmp_path: Path) -> None:
    prepare(tmp_path)
    spec = run_spec(tmp_path, verl={"work_dir": str(tmp_path / "w")})
    result = verl_engine.train(spec, runner=FakeVerl(signal_at=1), stop=StopRequest())
    assert result.status == "stopped" and result.model_uri is None and result.steps == 0
    assert "before the first checkpoint" in (result.stop_reason or "")
    assert TrainResult.read(f"{spec.output_uri}/result.json").status == "stopped"


def test_wall_clock_trainer_ending_before_the_deadline_is_a_stopped_run(tmp_path: Path) -> None:
    """VeRL exits normally after step 3 with its note: step 3 (saved by the wall-clock trainer) is merged."""
    prepare(tmp_path)
    spec = run_spec(tmp_path, verl={"work_dir": str(tmp_path / "w")})
    runner = FakeVerl(wall_clock_stop_at=3)
    result = verl_engine.train(spec, runner=runner, stop=StopRequest(max_seconds=3600))
    assert result.status == "stopped" and result.steps == 3
    assert (result.stop_reason or "").startswith("time limit: step ended 40 s before the deadline")
    assert "trainer.v1.trainer_mode=cl_sync" in runner.calls[0]
    assert runner.calls[0][2] == "continuous_learning_trainer.verl_engine.main_ppo"
    assert not (tmp_path / "w" / "run-1" / "checkpoints" / "_cl_stopped.json").exists()
    # the next attempt resumes from step 3 and finishes
    finished = verl_engine.train(spec, runner=FakeVerl())
    assert finished.status == "succeeded" and finished.steps == 4


def test_run_command_stops_a_real_process_on_request_and_at_the_time_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading
    import time

    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    stop = StopRequest()
    threading.Timer(0.3, stop.request, args=("SIGTERM",)).start()
    began = time.monotonic()
    with pytest.raises(TrainingStopped, match="SIGTERM"):
        run_command(sleeper, {}, stop)
    assert time.monotonic() - began < 10
    monkeypatch.setattr(launch, "HARD_STOP_AFTER_S", 0.2)
    with pytest.raises(TrainingStopped, match=r"time limit of 0\.2 s"):
        run_command(sleeper, {}, StopRequest(max_seconds=0.2))
    assert time.monotonic() - began < 20
    run_command([sys.executable, "-c", "pass"], {}, StopRequest(max_seconds=60))  # finishes in time
    with pytest.raises(Exception, match="returned non-zero exit status 3"):
        run_command([sys.executable, "-c", "raise SystemExit(3)"], {}, StopRequest())


def test_main_dispatches_verl_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from continuous_learning_trainer.__main__ import main

    prepare(tmp_path)
    spec = run_spec(tmp_path, verl={"work_dir": str(tmp_path / "w")})
    uri = spec.write(f"file://{tmp_path}/spec.json")
    seen = {}

    def fake_train(s: object, **kwargs: object) -> TrainResult:
        seen["spec"] = s
        raise SystemExit(0)

    monkeypatch.setattr(verl_engine, "train", fake_train)
    with pytest.raises(SystemExit):
        main(["train", "--spec", uri])
    assert seen["spec"] == spec


def test_sglang_evaluation_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EvalSpec.engine == "sglang" goes through sglang.Engine (a stand-in module here)."""
    write_dataset(tmp_path / "ds" / "test.parquet", 4, with_tools=True)
    write_tiny_model(tmp_path / "m")
    created: list[dict[str, object]] = []

    class Engine:
        def __init__(self, **kwargs: object) -> None:
            created.append(kwargs)

        def generate(self, prompt: list[str], sampling_params: dict[str, object]) -> list[dict[str, str]]:
            assert sampling_params["temperature"] == 0.0
            return [
                {"text": '<tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call>'}
            ] * len(prompt)

        def shutdown(self) -> None:
            created.append({"shutdown": True})

    monkeypatch.setitem(sys.modules, "sglang", types.SimpleNamespace(Engine=Engine))
    spec = EvalSpec(
        run_id="e1",
        prompts_uri=f"file://{tmp_path}/ds/test.parquet",
        models={"candidate": f"file://{tmp_path}/m"},
        max_prompts=4,
        max_completion_tokens=16,
        output_uri=f"file://{tmp_path}/eval",
        engine="sglang",
    )
    result = evaluate.run_evaluation(spec)
    assert created[0]["attention_backend"] == "triton" and created[0]["sampling_backend"] == "pytorch"
    assert created[0]["grammar_backend"] == "none"  # the H200 run: SGLang imports xgrammar otherwise
    assert created[-1] == {"shutdown": True}
    assert result.prompts == 4 and result.mean_reward["candidate"] == pytest.approx(0.5)
