"""Where one VeRL run keeps its files on the node (or on the shared file system)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """Where one run keeps its files on the node (or shared file system)."""

    root: Path

    @property
    def base_model(self) -> Path:
        return self.root / "base"

    @property
    def train_file(self) -> Path:
        return self.root / "data" / "train.parquet"

    @property
    def val_file(self) -> Path:
        return self.root / "data" / "validation.parquet"

    @property
    def sft_train_file(self) -> Path:
        return self.root / "data" / "sft-train.parquet"

    @property
    def tool_config(self) -> Path:
        return self.root / "tools.yaml"

    @property
    def agent_loops(self) -> Path:
        """``rollout.agent.agent_loop_config_path``: the project's agent loops (and so its plugins)."""
        return self.root / "agent_loops.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def merged(self) -> Path:
        """What VeRL's model merger writes (with LoRA: the base weights and ``lora_adapter/``)."""
        return self.root / "merged"

    @property
    def lora_merged(self) -> Path:
        """A LoRA run's servable model: the adapter merged into the base weights."""
        return self.root / "merged-lora"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def earlier_metrics(self) -> Path:
        """Metrics of earlier attempts in this work folder: VeRL's file logger truncates ``metrics``
        when it starts, so a resumed run would otherwise lose the steps before its checkpoint."""
        return self.root / "metrics.earlier.jsonl"
