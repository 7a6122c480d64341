#!/usr/bin/env bash
# Resume the loop in place (same /tmp/bench, same registry): the days not done run again; v0 is reused.
B=${BENCH_ROOT:-/tmp/bench}
L=$B/logs
IN=${LOOP_IN:-/tmp/in}
rm -f "$B/DONE"
source benchmarks/gpu/device_common.sh
RAY="python3 -c 'import sys; from ray.scripts.scripts import main; sys.argv[0] = \"ray\"; main()'"
eval "$RAY status" >/dev/null 2>&1 || eval "$RAY start --head --num-gpus=1 --disable-usage-stats --include-dashboard=false" >>"$L/ray-start.log" 2>&1
stamp "resume: ${LOOP_ARGS:-}"
# shellcheck disable=SC2086
CL_HOME="$IN/loop" python3 benchmarks/gpu/loop.py --logs "$L" --gguf "$IN/model.gguf" ${LOOP_ARGS:-} >>"$L/loop.out" 2>&1
stamp "loop rc $?"
touch "$B/DONE"
