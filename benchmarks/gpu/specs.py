"""Write the benchmark's RunSpec / EvalSpec documents (file:// URIs under --root).

python3 benchmarks/gpu/specs.py --root /tmp/bench --variant default|tuned
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from continuous_learning.contracts import DatasetRef, EvalSpec, RunSpec

#: The batch both variants use: 32 prompts x 4 samples, 256 completion tokens, GRPO with a KL loss.
HYPER = {
    "learning_rate": 5e-6,
    "max_steps": 20,
    "samples_per_prompt": 4,
    "prompts_per_step": 32,
    "max_completion_tokens": 256,
    "kl_coef": 0.001,
    "checkpoint_every": 3,
    "seed": 0,
}

#: "default": VeRL's defaults plus the keys the trainer must set (profile explicitly off).
#: "tuned": the trainer's own default for an H200 (profile "auto" with gpu_class h200 -> "hopper",
#: see continuous_learning_trainer.verl_engine.profile_overrides): no benchmark-only overrides.
VARIANTS = {"default": {"profile": "verl-defaults"}, "tuned": {"profile": "auto"}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="/tmp/bench")
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="default")
    ap.add_argument("--run-id", default="h200-grpo")
    ap.add_argument("--max-steps", type=int, default=HYPER["max_steps"])
    ap.add_argument("--gpus", type=int, default=1, help="trainer.n_gpus_per_node")
    ap.add_argument("--nodes", type=int, default=1, help="trainer.nnodes")
    args = ap.parse_args()
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    ds = f"file://{root}/ds"
    dataset = DatasetRef(
        dataset_id="bench",
        train_uri=f"{ds}/train.parquet",
        validation_uri=f"{ds}/validation.parquet",
        test_uri=f"{ds}/test.parquet",
        manifest_uri=f"{ds}/manifest.json",
    )
    verl: dict = {"work_dir": str(root / "work"), **VARIANTS[args.variant]}
    spec = RunSpec(
        run_id=args.run_id,
        engine="verl",
        algorithm="grpo",
        dataset=dataset,
        base_model_uri=f"file://{root}/models/base",
        base_model_version="sft-warm-start",
        output_uri=f"file://{root}/out/{args.run_id}",
        hyperparameters={**HYPER, "max_steps": args.max_steps},
        resources={"nnodes": args.nodes, "n_gpus_per_node": args.gpus, "gpu_class": "h200"},
        verl=verl,
    )
    spec_path = root / f"spec-{args.run_id}-{args.variant}.json"
    spec_path.write_text(spec.model_dump_json(indent=2))
    ev = EvalSpec(
        run_id=f"{args.run_id}-eval",
        prompts_uri=f"{ds}/test.parquet",
        models={"base": f"file://{root}/models/base", "candidate": f"file://{root}/out/{args.run_id}/model"},
        max_prompts=200,
        max_completion_tokens=256,
        output_uri=f"file://{root}/out/{args.run_id}-eval",
        engine="sglang",
    )
    (root / f"eval-{args.run_id}.json").write_text(ev.model_dump_json(indent=2))
    print(json.dumps({"spec": str(spec_path)}))


if __name__ == "__main__":
    main()
