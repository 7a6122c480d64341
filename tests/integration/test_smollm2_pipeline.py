"""The user's model is a real pretrained one: SmolLM2-135M-Instruct through the whole loop, on CPU.

`continuous_training` in real Airflow (dag.test) with the local Ray backend: day 0 imports SmolLM2 from
its GGUF wheel (`builtin:smollm2`: dequantized, special tokens fixed, the ChatML fallback template for
tools), warm-starts it on the agent's own logged answers so that it plays the agent, registers it as
v0; then a few LoRA GRPO steps on a tiny batch, evaluation of candidate and production on held-out
prompts with the model's template, and the gate. The completion budget (56 tokens) fits the longest
reference tool call (50 tokens with SmolLM2's tokenizer). Measured 3125 s on 2 cores under load average ~10
(most of it model work: 2 GRPO steps of 354 s and 458 s, a 4-step warm start of 1129 s).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from continuous_learning import storage

from tests.integration.pipelines import run_day_then_training

pytestmark = pytest.mark.integration
SMOLLM2 = {
    "CL_MODEL__BASE_URI": "builtin:smollm2",
    "CL_MODEL__IMITATE_AGENT_STEPS": "4",
    "CL_MODEL__IMITATE_AGENT_LEARNING_RATE": "1e-4",
    "CL_MODEL__LORA__ENABLED": "true",
    "CL_MODEL__LORA__RANK": "8",
    "CL_TRAINER__LEARNING_RATE": "1e-4",
    "CL_TRAINER__MAX_STEPS": "2",
    "CL_TRAINER__PROMPTS_PER_STEP": "2",
    "CL_TRAINER__SAMPLES_PER_PROMPT": "2",
    "CL_TRAINER__MAX_COMPLETION_TOKENS": "56",
    "CL_DATASET__MIN_TRAIN_ROWS": "16",
    "CL_EVALUATION__MAX_PROMPTS": "10",
    "CL_EVALUATION__BOOTSTRAP_RESAMPLES": "200",
    "CL_COMPUTE__LOCAL_RAY_NUM_CPUS": "1",
    "CL_COMPUTE__JOB_TIMEOUT_S": "1500",
}


def test_smollm2_learns_through_continuous_training(
    airflow_db: str, storage_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in SMOLLM2.items():
        monkeypatch.setenv(key, value)
    states = run_day_then_training(storage_root, rows=120)
    for task in ("ensure_base_model", "train_candidate", "evaluate", "gate", "delete_ray_cluster"):
        assert states[task] == "success", (task, states)

    registry = Path(storage.join(storage_root, "registry").removeprefix("file://"))
    v0 = json.loads((registry / "versions" / "v0.json").read_text())
    lineage = v0["lineage"]
    assert lineage["kind"] == "import" and lineage["source_uri"] == "builtin:smollm2"
    assert lineage["architecture"] == "LlamaForCausalLM"
    assert 134_000_000 < lineage["parameters"] < 135_000_000
    assert lineage["chat_template_source"] == "fallback" and lineage["tool_call_format"] == "hermes"
    fixes = " ".join(lineage["fixes"])
    assert "GGUF" in fixes and "eos" in fixes  # dequantized; eos <|im_start|> -> <|im_end|>
    assert lineage["imitation"]["steps"] == 4  # it plays the agent that wrote the logs

    v1 = json.loads((registry / "versions" / "v1.json").read_text())
    assert v1["parent_version"] == "v0"
    assert v1["lineage"]["lora"]["adapter_uri"].endswith("/adapter")
    adapter = Path(v1["lineage"]["lora"]["adapter_uri"].removeprefix("file://"))
    assert (adapter / "adapter_config.json").is_file()
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 8

    run_dir = next(Path(storage.join(storage_root, "runs").removeprefix("file://")).iterdir())
    train = json.loads((run_dir / "train" / "result.json").read_text())
    assert train["status"] == "succeeded" and train["steps"] == 2, train
    assert train["base_model_version"] == "v0"
    # the completion budget fits a whole tool call: no sampled completion was cut by the budget
    assert [h["completions/clipped_ratio"] for h in train["history"]] == [0.0, 0.0], train["history"]

    evaluation = json.loads((run_dir / "eval" / "result.json").read_text())
    assert evaluation["prompts"] == 10
    scores = pq.read_table(Path(evaluation["scores_uri"].removeprefix("file://"))).to_pylist()
    by_model = {
        m: {r["interaction_id"]: r for r in scores if r["model"] == m} for m in ("candidate", "production")
    }
    assert len(by_model["candidate"]) == len(by_model["production"]) == 10
    assert set(by_model["candidate"]) == set(by_model["production"])  # paired on the same prompts
    # v0 plays the agent: with a budget that fits a tool call, its greedy answers parse as tool calls
    assert sum(r["format_valid"] for r in by_model["production"].values()) >= 5, by_model["production"]
    assert evaluation["mean_reward"]["production"] > 0.3, evaluation["mean_reward"]

    gate = json.loads((run_dir / "gate.json").read_text())
    assert isinstance(gate["promote"], bool) and gate["reasons"]
    assert gate["overall"]["n"] == 10
    paired = [
        by_model["candidate"][i]["reward"] - by_model["production"][i]["reward"]
        for i in by_model["candidate"]
    ]
    assert gate["overall"]["mean"] == pytest.approx(sum(paired) / len(paired))  # decided on these scores
    assert gate["overall"]["low"] <= gate["overall"]["mean"] <= gate["overall"]["high"]
    # promoted exactly when the CI's lower bound clears the margin (0) and no slice or guardrail objected
    assert gate["promote"] == (gate["overall"]["low"] > 0.0 and len(gate["reasons"]) == 1), gate
    # the numbers of this run, for the record (pytest -s shows them)
    print(
        "SmolLM2 CPU:", json.dumps({"v0_imitation": lineage["imitation"], "train": train["metrics"],
                                    "step_time_s": [h.get("step_time") for h in train["history"]],
                                    "eval": evaluation["mean_reward"], "gate": gate["promote"],
                                    "overall": gate["overall"], "reasons": gate["reasons"]})
    )  # fmt: skip
