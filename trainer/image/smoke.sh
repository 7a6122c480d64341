#!/usr/bin/env bash
# smoke.sh [IMAGE]: the trainer image's smoke test, run inside the built image with `buildah run` (chroot
# isolation, a throwaway container; no GPU, no network needed). `make image` runs it after the build.
#   1. `python -m continuous_learning_trainer --help` (the image's entry point)
#   2. the non-root user (trainer, uid 1001), the work folder (/workspace, the user's, CL_WORK_DIR), HOME
#   3. `pip check`: only the known override (sglang 0.5.12 declares transformers==5.6.0) and the project's
#      Airflow-side dependencies (the project is installed --no-deps: the trainer never imports Airflow)
#   4. every module the trainer's, VeRL's and SGLang's entry points import, the project's trainer, core and
#      reward modules included (trainer/image/smoke_targets.py: the lists of tests/trainer/test_image_lock.py),
#      VeRL's rollout-replica call and its FSDP worker init on a tiny Qwen2; a stand-in libcuda.so.1 built in
#      the throwaway container lets the CUDA extensions load (trainer/checks/cuda-driver-stub.sh)
#   5. nvcc compiles a kernel (SGLang JIT-compiles with it at start-up)
#   6. a CPU-only dry run: a RunSpec is read, VeRL's overrides are built, composed with VeRL's own config
#      and written under /workspace (trainer/checks/image_dry_run.py)
#   7. the image's size, its layers' sizes and its labels
# Output: a line per check, and $SMOKE_OUT (build/image-smoke) with the details (smoke.txt, layers.txt).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
IMAGE="${1:-localhost/continuous-learning-trainer:offline}"
DRIVER="${STORAGE_DRIVER:-overlay}"
OUT="${SMOKE_OUT:-$ROOT/build/image-smoke}"
PY="${SMOKE_HOST_PYTHON:-$ROOT/.venv/bin/python}"
BH=(buildah --storage-driver "$DRIVER")
rm -rf "$OUT"
mkdir -p "$OUT/probe"
exec > >(tee "$OUT/smoke.txt") 2>&1
ctr="$("${BH[@]}" from --pull=never "$IMAGE")"
trap '"${BH[@]}" rm "$ctr" > /dev/null' EXIT
run() { "${BH[@]}" run --isolation chroot "$ctr" -- "$@"; }          # as the image's user
as_root() { "${BH[@]}" run --isolation chroot --user root "$ctr" -- "$@"; }
failures=0
check() {  # check NAME CMD...: PASS/FAIL line, output kept in $OUT/NAME.txt
  local name="$1" t0=$SECONDS
  shift
  if "$@" > "$OUT/$name.txt" 2>&1; then
    echo "PASS $name ($((SECONDS - t0))s): $(tail -1 "$OUT/$name.txt" | cut -c1-200)"
  else
    echo "FAIL $name ($((SECONDS - t0))s):"
    tail -30 "$OUT/$name.txt" | sed 's/^/    /'
    failures=$((failures + 1))
  fi
}
echo ">> smoke test of $IMAGE (container $ctr)"

entry_point() {
  local usage
  usage="$(run python -m continuous_learning_trainer --help)"
  echo "$usage"
  grep -q "{train,import-model,bootstrap,evaluate}" <<< "$usage"
  echo "python -m continuous_learning_trainer --help: usage with train, import-model, bootstrap, evaluate"
}
check entry-point entry_point

user_and_workdir() {
  local got
  got="$(run sh -c 'echo "$(id -un) $(id -u) $(pwd) $HOME $CL_WORK_DIR $(stat -c %U /workspace)"; touch /workspace/.w && rm /workspace/.w')"
  echo "user, uid, cwd, HOME, CL_WORK_DIR, owner of /workspace: $got"
  [[ "$got" == "trainer 1001 /workspace /home/trainer /workspace trainer" ]]
}
check user-and-workdir user_and_workdir

pip_check() {
  local report unexpected
  report="$(run pip check 2> /dev/null || true)"  # pip check reports on stdout; stderr is buildah's own
  echo "$report"
  unexpected="$(grep -v -E '^sglang 0\.5\.12 has requirement transformers==5\.6\.0, but you have transformers 5\.9\.0\.$|^continuous-learning [^ ]+ requires [^ ]+, which is not installed\.$' <<< "$report" || true)"
  [[ -z "$unexpected" ]] || { echo "unexpected: $unexpected"; return 1; }
  echo "pip check: only the transformers override and $(grep -c '^continuous-learning ' <<< "$report" || true) Airflow-side dependencies of the project (installed --no-deps)"
}
check pip-check pip_check

# the probe's inputs, copied into the throwaway container (not into the image)
"$PY" "$ROOT/trainer/image/smoke_targets.py" write "$OUT/probe" > /dev/null
for f in "$ROOT/trainer/checks/image_lock_probe.py" "$ROOT/trainer/checks/verl_worker_init.py" \
  "$ROOT/trainer/checks/image_dry_run.py" "$ROOT/trainer/checks/cuda-driver-stub.sh" "$OUT"/probe/*.targets.json; do
  "${BH[@]}" copy --quiet --chown 1001:1001 "$ctr" "$f" /tmp/smoke/ > /dev/null
done
check cuda-driver-stub as_root bash /tmp/smoke/cuda-driver-stub.sh /opt/venv /tmp/smoke/cuda-driver-stub

imports() {
  local group rc=0
  for group in project verl verl-worker sglang; do
    "${BH[@]}" run --isolation chroot \
      --env LD_LIBRARY_PATH=/tmp/smoke/cuda-driver-stub --env CUDA_VISIBLE_DEVICES= \
      --env HF_HUB_OFFLINE=1 --env TRANSFORMERS_OFFLINE=1 --env RAY_USAGE_STATS_ENABLED=0 \
      --env TOKENIZERS_PARALLELISM=false --env PYTHONPATH=/tmp/smoke \
      "$ctr" -- python /tmp/smoke/image_lock_probe.py "/tmp/smoke/$group.targets.json" "/tmp/$group.json" \
      || rc=1
    cp "$("${BH[@]}" mount "$ctr")/tmp/$group.json" "$OUT/probe/" 2> /dev/null || rc=1
  done
  "$PY" "$ROOT/trainer/image/smoke_targets.py" summary "$OUT/probe" || rc=1
  return $rc
}
check imports imports

nvcc_compiles() {
  run bash -c 'cd /tmp && printf "__global__ void k(float *x) { x[threadIdx.x] *= 2.0f; }\n" > k.cu \
    && nvcc --version | tail -2 && nvcc -c -arch=sm_90 k.cu -o k.o && ls -l k.o'
}
check nvcc nvcc_compiles

check dry-run run python /tmp/smoke/image_dry_run.py

# sizes: the image as a whole, and per layer (uncompressed) with the instruction that made it
sizes() {
  "${BH[@]}" images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$IMAGE"
  "$PY" - "$DRIVER" "$IMAGE" << 'EOF'
import json, subprocess, sys
driver, image = sys.argv[1:3]
root = "/var/lib/containers/storage"
info = json.loads(subprocess.check_output(["buildah", "--storage-driver", driver, "inspect", "--type", "image", image]))
image_id = info["FromImageID"]
images = {i["id"]: i for i in json.load(open(f"{root}/{driver}-images/images.json"))}
layers = {l["id"]: l for l in json.load(open(f"{root}/{driver}-layers/layers.json"))}
chain, layer = [], images[image_id]["layer"]
while layer:
    chain.append(layers[layer])
    layer = layers[layer].get("parent")
chain.reverse()
history = [h for h in info["OCIv1"].get("history", []) if not h.get("empty_layer")]
total = 0
for i, l in enumerate(chain):
    size = l.get("diff-size", 0)
    total += size
    made_by = history[i].get("created_by", "") if i < len(history) else ""
    made_by = made_by.replace("/bin/bash -o pipefail -c ", "").replace("/bin/sh -c ", "")
    print(f"{size / 1e9:7.3f} GB  {made_by[:110]}")
print(f"{total / 1e9:7.3f} GB  total of {len(chain)} layers (uncompressed)")
for k, v in sorted(info["OCIv1"]["config"].get("Labels", {}).items()):
    print(f"label {k}={v}")
EOF
}
sizes > "$OUT/layers.txt" 2>&1 || true
cat "$OUT/layers.txt"
if ((failures)); then
  echo ">> smoke test FAILED: $failures check(s)"
  exit 1
fi
echo ">> smoke test passed"
