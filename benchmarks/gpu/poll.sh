#!/usr/bin/env bash
# Wait (at most $1 seconds) for device.sh to finish, print progress, and put trimmed logs under $OUT.
B=${BENCH_ROOT:-/tmp/bench}
end=$((SECONDS + ${1:-540}))
while [ ! -f "$B/DONE" ] && [ $SECONDS -lt $end ]; do sleep 5; done
cat "$B/logs/device.log" 2>/dev/null
for f in "$B"/logs/metrics_*.jsonl "$B"/work/*/metrics.jsonl; do
  [ -f "$f" ] && echo "$f: $(wc -l <"$f") steps"
done
grep -hE "Error|error:|Traceback" "$B"/logs/run*.log "$B"/logs/eval.log 2>/dev/null | tail -5
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
mkdir -p /tmp/trim && rm -rf /tmp/trim/* && cp -r "$B/logs" /tmp/trim/ && cp "$B"/work/*/metrics.jsonl /tmp/trim/logs/ 2>/dev/null
for f in /tmp/trim/logs/*.log; do tail -c 4000000 "$f" >"$f.t" && mv "$f.t" "$f"; done
tar -czf "$OUT/logs.tgz" -C /tmp/trim logs
