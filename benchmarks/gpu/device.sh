#!/usr/bin/env bash
# The whole GPU benchmark on the air-gapped host, from the repository root (started with setsid by the
# device call; poll.sh waits for it and brings the logs back). Needs .bundle/site.tar.xz (bundle) and
# .bundle/bench (prepare.py) carried along. Stages: bundle -> model (random init + short SFT warm start)
# -> run A (VeRL defaults, killed after a checkpoint) -> run B (resume with the trainer's H200 profile, to
# max_steps, merge, validate; VeRL defaults again if the profile fails before its first step) -> SGLang
# evaluation of the trained model against the warm-started base.
set -u
B=${BENCH_ROOT:-/tmp/bench}
L=$B/logs
RUN=h200-grpo
KILL_AFTER=${KILL_AFTER:-4}
SFT_STEPS=${SFT_STEPS:-150}
source benchmarks/gpu/device_common.sh
ray_up() {
  python3 -m ray.scripts.scripts start --head --num-gpus="$(nvidia-smi -L | wc -l)" --include-dashboard=false \
    --disable-usage-stats >>"$L/ray.log" 2>&1 || { stamp "ray start failed: RAY_ADDRESS=local"; export RAY_ADDRESS=local; }
}
ray_down() { python3 -m ray.scripts.scripts stop --force >>"$L/ray.log" 2>&1; sleep 3; }

prepare_host
python3 - <<'PY' | tee "$L/versions.json"
import importlib.metadata as m, json, platform
print(json.dumps({d: m.version(d) for d in ("torch", "transformers", "tokenizers", "verl", "sglang", "sglang-kernel",
      "flashinfer-python", "ray", "triton")} | {"python": platform.python_version()}))
PY
M=$B/work/$RUN/metrics.jsonl
build_model "$SFT_STEPS"
python3 benchmarks/gpu/specs.py --root "$B" --variant default --run-id $RUN
python3 benchmarks/gpu/specs.py --root "$B" --variant tuned --run-id $RUN
cp "$B"/spec-*.json "$B"/eval-*.json "$L/"
ray_up
watch_steps "$M" &

stamp "run A (defaults): kill after step $KILL_AFTER"
setsid python3 -m continuous_learning_trainer train --spec "file://$B/spec-$RUN-default.json" >"$L/runA.log" 2>&1 &
PA=$!
n=0
while kill -0 $PA 2>/dev/null; do
  n=$({ wc -l <"$M"; } 2>/dev/null || echo 0)
  [ "$n" -ge "$KILL_AFTER" ] && break
  sleep 2
done
stamp "run A: killing after $n logged steps; committed: $(cat "$B/out/$RUN/checkpoints/latest_checkpointed_iteration.txt" 2>/dev/null)"
kill -TERM -- -$PA 2>/dev/null; sleep 5; kill -KILL -- -$PA 2>/dev/null
cp "$M" "$L/metrics_A.jsonl" 2>/dev/null
ray_down; ray_up

stamp "run B (tuned: the trainer's H200 profile, resume_mode=auto)"
timeout 1500 python3 -m continuous_learning_trainer train --spec "file://$B/spec-$RUN-tuned.json" >"$L/runB.log" 2>&1
rc=$?
stamp "run B exit $rc"
grep -m3 -E "performance profile|Load from checkpoint|[Rr]esum" "$L/runB.log" | cut -c1-300
if [ $rc -ne 0 ] && [ "$({ wc -l <"$M"; } 2>/dev/null || echo 0)" -eq 0 ]; then
  stamp "run B failed before its first step: resume with VeRL defaults instead (run C)"
  tail -30 "$L/runB.log" >"$L/runB.error.log"
  ray_down; ray_up
  timeout 1500 python3 -m continuous_learning_trainer train --spec "file://$B/spec-$RUN-default.json" >"$L/runC.log" 2>&1
  stamp "run C exit $?"
fi
cp "$M" "$L/metrics_B.jsonl" 2>/dev/null
cp "$B/out/$RUN/result.json" "$L/train_result.json" 2>/dev/null
ls -la "$B/out/$RUN/model" >"$L/model_files.txt" 2>&1
ray_down

stamp "evaluate (SGLang offline engine): base vs candidate"
timeout 600 python3 -m continuous_learning_trainer evaluate --spec "file://$B/eval-$RUN.json" >"$L/eval.log" 2>&1
stamp "evaluate exit $?"
cp "$B/out/$RUN-eval/result.json" "$L/eval_result.json" 2>/dev/null
stamp done
touch "$B/DONE"
