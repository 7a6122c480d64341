#!/usr/bin/env bash
# Scaling run on a host with several GPUs (after device.sh's single-GPU run): the same warm-started model,
# data and batch with the trainer's H200 profile, STEPS steps, fresh (no resume), either on GPUS GPUs of one
# Ray node (NODES=1) or as NODES Ray nodes of one GPU each on this host (trainer.nnodes=NODES: VeRL's
# multi-node path; each raylet owns one GPU through CUDA_VISIBLE_DEVICES, as separate machines would).
set -u
B=${BENCH_ROOT:-/tmp/bench}
L=$B/logs
NODES=${NODES:-1}
if [ "$NODES" -gt 1 ]; then GPUS=1; fi
RUN=h200-grpo-${NODES}node-${GPUS:=2}gpu
STEPS=${STEPS:-6}
source benchmarks/gpu/device_common.sh
M=$B/work/$RUN/metrics.jsonl
prepare_host
build_model 150 # the same seed and steps as device.sh's run
python3 benchmarks/gpu/specs.py --root "$B" --variant tuned --run-id "$RUN" --gpus "$GPUS" --nodes "$NODES" \
  --max-steps "$STEPS"
cp "$B"/spec-*.json "$L/"
if [ "$NODES" -gt 1 ]; then
  CUDA_VISIBLE_DEVICES=0 python3 -m ray.scripts.scripts start --head --port=6379 --num-gpus=1 \
    --include-dashboard=false --disable-usage-stats >>"$L/ray.log" 2>&1
  for i in $(seq 1 $((NODES - 1))); do
    CUDA_VISIBLE_DEVICES=$i python3 -m ray.scripts.scripts start --address=127.0.0.1:6379 --num-gpus=1 \
      --disable-usage-stats >>"$L/ray.log" 2>&1
  done
  python3 -c "import ray; ray.init(address='auto'); print('ray nodes:', [(n['NodeManagerPort'], n['Resources'].get('GPU')) for n in ray.nodes() if n['Alive']])"
else
  python3 -m ray.scripts.scripts start --head --num-gpus="$(nvidia-smi -L | wc -l)" --include-dashboard=false \
    --disable-usage-stats >>"$L/ray.log" 2>&1
fi
stamp "run S: $NODES node(s) x $GPUS GPU(s), $STEPS steps"
watch_steps "$M" &
timeout 1500 python3 -m continuous_learning_trainer train --spec "file://$B/spec-$RUN-tuned.json" >"$L/runS.log" 2>&1
stamp "run S exit $?"
cp "$M" "$L/metrics_S.jsonl" 2>/dev/null
stamp done
touch "$B/DONE"
