# Shared by device.sh and device_scale.sh (sourced, from the repository root, after B and L are set):
# the offline environment, the log, time stamps, the bundle, the dataset and the warm-started base model.
mkdir -p "$L"
exec >"$L/device.log" 2>&1
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export SGLANG_IS_FLASHINFER_AVAILABLE=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export RAY_USAGE_STATS_ENABLED=0 TOKENIZERS_PARALLELISM=false
export PYTHONPATH=/tmp/site:$PWD/plugins:$PWD/trainer
export LD_LIBRARY_PATH=/tmp/site/.libs:${LD_LIBRARY_PATH:-}
t0=$(date +%s)
stamp() { echo "[$(date +%Y/%m/%d_%H:%M:%S) +$(($(date +%s) - t0))s] $*"; }

# Bundle into /tmp/site, dataset into $B/ds, nvidia-smi samples (1 s, every GPU) into $L/gpu.csv.
prepare_host() {
  stamp "host: $(nvidia-smi -L | wc -l) x $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1); $(nproc) cores"
  stamp "extract bundle"
  mkdir -p /tmp/site && tar -xJf .bundle/site.tar.xz -C /tmp/site || { stamp "extract failed"; touch "$B/DONE"; exit 1; }
  nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 1000 >"$L/gpu.csv" &
  rm -rf "$B/ds" && cp -r .bundle/bench/ds "$B/ds"
}

# The base model: random init, then $1 steps of supervised warm start (random init alone if that fails).
build_model() {
  stamp "build model (SFT warm start: $1 steps)"
  python3 benchmarks/gpu/make_model.py --tokenizer .bundle/bench/tokenizer --out "$B/models/base" \
    --sft-data "$B/ds/train.parquet" --sft-steps "$1" >"$L/make_model.log" 2>&1 ||
    { stamp "warm start failed: random init"; python3 benchmarks/gpu/make_model.py --tokenizer .bundle/bench/tokenizer \
        --out "$B/models/base" >>"$L/make_model.log" 2>&1; }
  tail -1 "$L/make_model.log" | tee "$L/model.json"
}

# One stamp per logged step of metrics file $1, so GPU utilisation can be read per step (summarize.py).
watch_steps() {
  local seen=0 n
  while [ ! -f "$B/DONE" ]; do
    n=$({ wc -l <"$1"; } 2>/dev/null || echo 0)
    if [ "$n" -lt "$seen" ]; then seen=0; fi # a new run truncated the file
    while [ "$seen" -lt "$n" ]; do seen=$((seen + 1)); stamp "metrics line $seen"; done
    sleep 1
  done
}
