"""A stand-in for VeRL on CPU: what main_ppo, VeRL's SFT trainer and the model merger do to the file system
(checkpoint folders and tracker, the callback's upload, the metrics file, a merged HF model), and the stops
the engine must survive (a signal mid-step, the wall-clock trainer ending early)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from continuous_learning_trainer.stopping import StopRequest
from continuous_learning_trainer.verl_engine.checkpoints import TRACKER, UploadCheckpointCallback
from continuous_learning_trainer.verl_engine.launch import TrainingStopped
from continuous_learning_trainer.verl_engine.wall_clock import write_stopped

from tests.trainer.helpers import write_dataset, write_tiny_model


def fake_step(root: Path, step: int, actor: bool = True) -> Path:
    """A checkpoint as main_ppo saves it (``global_step_N/actor/``) or the SFT trainer (no ``actor/``)."""
    step_dir = root / f"global_step_{step}"
    shards = step_dir / "actor" if actor else step_dir
    shards.mkdir(parents=True)
    (shards / "model_world_size_1_rank_0.pt").write_bytes(b"w" * step)
    (step_dir / "data.pt").write_bytes(b"d")
    (root / TRACKER).write_text(str(step))
    return step_dir


def lora_adapter(base: Path, seed: int = 0) -> Any:
    """A peft LoRA model on the base model in ``base``, its adapter weights made non-zero."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    )
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    return peft_model


class FakeVerl:
    """Plays main_ppo (checkpoints every K steps through the callback, metrics file), VeRL's SFT trainer
    (checkpoints without a callback) and the merger (with ``lora``: what VeRL's merger writes for a LoRA
    checkpoint, the base weights plus ``lora_adapter/``)."""

    def __init__(
        self,
        fail_at: int | None = None,
        lora: bool = False,
        signal_at: int | None = None,
        wall_clock_stop_at: int | None = None,
    ) -> None:
        self.fail_at = fail_at
        self.lora = lora
        self.signal_at = signal_at  # a SIGTERM during this step: run_command stops VeRL
        self.wall_clock_stop_at = wall_clock_stop_at  # the wall-clock trainer ends after this step
        self.stop: StopRequest | None = None
        self.calls: list[list[str]] = []
        self.adapter_model: Any = None

    def __call__(
        self, command: Sequence[str], env: Mapping[str, str], stop: StopRequest | None = None
    ) -> None:
        self.calls.append(list(command))
        self.stop = stop
        args = {k: v for k, v in (a.lstrip("+").split("=", 1) for a in command[3:] if "=" in a)}
        if command[2] in ("verl.trainer.main_ppo", "continuous_learning_trainer.verl_engine.main_ppo"):
            self.train(args, env, callback=True)
        elif "verl.trainer.sft_trainer_ray" in command:
            self.train(args, env, callback=False)
        else:
            self.merge(
                Path(command[command.index("--local_dir") + 1]),
                Path(command[command.index("--target_dir") + 1]),
            )

    def merge(self, local_dir: Path, target: Path) -> None:
        assert local_dir.is_dir()
        root = next(p for p in local_dir.parents if (p / "base").is_dir())
        target.mkdir(parents=True)
        base = root / "base"
        for name in ("config.json", "model.safetensors"):  # the merger writes (base) weights + config
            shutil.copy(base / name, target / name)
        if self.lora:
            self.adapter_model = lora_adapter(base)
            self.adapter_model.save_pretrained(target / "lora_adapter")

    def train(self, args: dict[str, str], env: Mapping[str, str], callback: bool) -> None:
        assert env["NCCL_NVLS_ENABLE"] == "0" and env["RAY_ADDRESS"] == "auto"
        ckpt = Path(args["trainer.default_local_dir"])
        start = int((ckpt / TRACKER).read_text()) if (ckpt / TRACKER).exists() else 0
        every, total = int(args["trainer.save_freq"]), int(args["trainer.total_training_steps"])
        metrics = Path(env["VERL_FILE_LOGGER_PATH"])
        metrics.write_text("")  # VeRL's file logger opens its file with "wb": a restart truncates it
        for step in range(start + 1, total + 1):
            data = {"critic/score/mean": step / 10} if callback else {"train/loss": 2.0 / step}
            with metrics.open("a") as fh:
                fh.write(json.dumps({"step": step, "data": data}) + "\n")
            if step == self.fail_at:
                raise RuntimeError("node lost")
            if step == self.signal_at and self.stop is not None:
                self.stop.request("SIGTERM")  # what the entry point's handler does
                raise TrainingStopped("SIGTERM")  # what run_command raises once VeRL is stopped
            if step % every == 0 or step == total:
                step_dir = fake_step(ckpt, step, actor=callback)
                if callback:
                    UploadCheckpointCallback().on_save(
                        trainer=None, global_step=step, checkpoint_dir=str(step_dir)
                    )
            if step == self.wall_clock_stop_at:
                if step % every:  # the wall-clock trainer saves the step VeRL would not
                    step_dir = fake_step(ckpt, step, actor=callback)
                    UploadCheckpointCallback().on_save(
                        trainer=None, global_step=step, checkpoint_dir=str(step_dir)
                    )
                write_stopped(ckpt, "time limit: step ended 40 s before the deadline", step)
                return


def prepare(tmp_path: Path, with_tools: bool = True) -> None:
    write_dataset(tmp_path / "ds" / "train.parquet", 16, with_tools)
    write_dataset(tmp_path / "ds" / "validation.parquet", 4, with_tools)
    write_tiny_model(tmp_path / "models" / "base")
