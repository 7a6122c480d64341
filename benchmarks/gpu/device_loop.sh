#!/usr/bin/env bash
# The three-day loop on the GPU host (benchmarks/gpu/loop.py), started in the background by the last
# transfer call from the unpacked source snapshot:  cd /tmp/in/src && (setsid bash benchmarks/gpu/device_loop.sh &)
# then polled with /tmp/in/src/benchmarks/gpu/poll_loop.sh. Expects /tmp/in (the parts of pack_loop.sh,
# unpacked: site.tar.xz, extra wheels, model.gguf, the loop's data, src) and LOOP_ARGS (loop.py's knobs).
B=${BENCH_ROOT:-/tmp/bench}
L=$B/logs
rm -rf "$B" && mkdir -p "$B"
source benchmarks/gpu/device_common.sh
stamp "host: $(nvidia-smi -L | wc -l) x $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1); $(nproc) cores"
IN=${LOOP_IN:-/tmp/in}
mkdir -p /tmp/site && tar -xJf "$IN/site.tar.xz" -C /tmp/site || { stamp "extract failed"; touch "$B/DONE"; exit 1; }
for w in "$IN"/extra/*.whl; do python3 -m zipfile -e "$w" /tmp/site; done
# The bundle ships no bytecode: compile it while day 0 imports the model, so VeRL's many worker processes
# do not each compile the same modules at start-up.
(python3 -m compileall -q -j 8 /tmp/site >"$L/compileall.log" 2>&1; stamp "bytecode compiled") &
# TRL stays importable, as in the image: the lock's TRL 1.12.0 has what VeRL 0.9.1's worker-init monkey patch imports.
python3 -c "import sys, torch, verl, sglang, transformers, pydantic_settings; print(sys.version.split()[0], torch.__version__, verl.__version__, sglang.__version__, transformers.__version__)" | tee "$L/versions.txt"
nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 2000 >"$L/gpu.csv" &
# The Ray cluster the trainer's jobs run in (the trainer joins it with RAY_ADDRESS=auto, as in a RayJob).
RAY="python3 -c 'import sys; from ray.scripts.scripts import main; sys.argv[0] = \"ray\"; main()'"
eval "$RAY start --head --num-gpus=$(nvidia-smi -L | wc -l) --disable-usage-stats --include-dashboard=false" >"$L/ray-start.log" 2>&1 ||
  { stamp "ray start failed"; tail -5 "$L/ray-start.log"; touch "$B/DONE"; exit 1; }
stamp "loop: ${LOOP_ARGS:-}"
# shellcheck disable=SC2086
CL_HOME="$IN/loop" python3 benchmarks/gpu/loop.py --logs "$L" --gguf "$IN/model.gguf" ${LOOP_ARGS:-} >"$L/loop.out" 2>&1
stamp "loop rc $?"
eval "$RAY stop" >>"$L/ray-start.log" 2>&1
touch "$B/DONE"
