#!/usr/bin/env bash
# Scaling run on a host with several GPUs (after device.sh's single-GPU run): the same warm-started model,
# data and batch with the trainer's H200 profile, STEPS steps, fresh (no resume), either on GPUS GPUs of one
# Ray node (NODES=1) or as NODES Ray nodes of one GPU each on this host (trainer.nnodes=NODES: VeRL's
# multi-node path; each raylet owns one GPU through CUDA_VISIBLE_DEVICES, as separate machines would).
set -u
REPO=$(pwd)
B=${BENCH_ROOT:-/tmp/bench}
L=$B/logs
NODES=${NODES:-1}
if [ "$NODES" -gt 1 ]; then GPUS=1; fi
RUN=h200-grpo-${NODES}node-${GPUS:=2}gpu
STEPS=${STEPS:-6}
mkdir -p "$L"
exec >"$L/device.log" 2>&1
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export SGLANG_IS_FLASHINFER_AVAILABLE=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export RAY_USAGE_STATS_ENABLED=0 TOKENIZERS_PARALLELISM=false
export PYTHONPATH=/tmp/site:$REPO/plugins:$REPO/trainer
export LD_LIBRARY_PATH=/tmp/site/.libs:${LD_LIBRARY_PATH:-}
t0=$(date +%s)
stamp() { echo "[$(date +%Y/%m/%d_%H:%M:%S) +$(($(date +%s) - t0))s] $*"; }
M=$B/work/$RUN/metrics.jsonl
stamp "host: $(nvidia-smi -L | wc -l) x $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); $(nproc) cores"
mkdir -p /tmp/site && tar -xJf .bundle/site.tar.xz -C /tmp/site || { stamp "extract failed"; touch "$B/DONE"; exit 1; }
nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 1000 >"$L/gpu.csv" &
rm -rf "$B/ds" && cp -r .bundle/bench/ds "$B/ds"
stamp "build model (SFT warm start, same seed as the 1-GPU run)"
python3 benchmarks/gpu/make_model.py --tokenizer .bundle/bench/tokenizer --out "$B/models/base" \
  --sft-data "$B/ds/train.parquet" --sft-steps 150 >"$L/make_model.log" 2>&1
tail -1 "$L/make_model.log" | tee "$L/model.json"
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
( seen=0; while [ ! -f "$B/DONE" ]; do n=$({ wc -l <"$M"; } 2>/dev/null || echo 0)
  while [ "$seen" -lt "$n" ]; do seen=$((seen + 1)); stamp "metrics line $seen"; done; sleep 1; done ) &
timeout 1500 python3 -m continuous_learning_trainer train --spec "file://$B/spec-$RUN-tuned.json" >"$L/runS.log" 2>&1
stamp "run S exit $?"
cp "$M" "$L/metrics_S.jsonl" 2>/dev/null
stamp done
touch "$B/DONE"
