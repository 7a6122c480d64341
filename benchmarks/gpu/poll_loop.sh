#!/usr/bin/env bash
# Wait (at most $1 seconds) for device_loop.sh, print its progress, and put the loop's logs under $OUT.
B=${BENCH_ROOT:-/tmp/bench}
end=$((SECONDS + ${1:-540}))
while [ ! -f "$B/DONE" ] && [ $SECONDS -lt $end ]; do sleep 5; done
cat "$B/logs/device.log" 2>/dev/null | tail -20
cut -c1-600 "$B/logs/loop.jsonl" 2>/dev/null
tail -5 "$B/logs/loop.out" 2>/dev/null
for f in "$B"/logs/*-train.log; do [ -f "$f" ] && { echo "== $f"; grep -E "step:[0-9]+ " "$f" | tail -2 | cut -c1-400; grep -E "Error|Traceback" "$f" | tail -3; }; done
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
mkdir -p /tmp/trim && rm -rf /tmp/trim/* && cp -r "$B/logs" /tmp/trim/
for f in /tmp/trim/logs/*.log /tmp/trim/logs/*.out; do [ -f "$f" ] && tail -c 3000000 "$f" >"$f.t" && mv "$f.t" "$f"; done
find "${LOOP_IN:-/tmp/in}/loop" -name "metrics.jsonl" -exec cp --parents {} /tmp/trim/ \; 2>/dev/null
tar -czf "$OUT/logs.tgz" -C /tmp/trim .
