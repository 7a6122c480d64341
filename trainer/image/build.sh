#!/usr/bin/env bash
# `make image`: build the trainer image here, without a Docker engine and without registry images, with
# buildah (chroot isolation, --pull=never), from trainer/Dockerfile and a local base (trainer/image/base.sh:
# Debian 12 + PyPI's CUDA 13.0 nvcc), then run the smoke test inside it (trainer/image/smoke.sh) and write
# it out as an OCI archive. What differs from the registry build: docs/trainer-image.md.
#
#   IMAGE            localhost/continuous-learning-trainer:offline
#   STORAGE_DRIVER   overlay (buildah's layers as diffs; vfs works too but copies every layer whole)
#   IMAGE_BUILD_DIR  /var/tmp/cl-trainer-image (base.sh's work, logs, timings)
#   OCI_ARCHIVE      build/trainer-image.oci.tar ("" skips the archive)
#   SKIP_SMOKE=1     build only
# Cached between runs: the base image (kept by a key of its inputs) and buildah's layer cache (--layers):
# with an unchanged lock, a code change rebuilds only the project's layers.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/trainer/image"
export STORAGE_DRIVER="${STORAGE_DRIVER:-overlay}"
export IMAGE_BUILD_DIR="${IMAGE_BUILD_DIR:-/var/tmp/cl-trainer-image}"
IMAGE="${IMAGE:-localhost/continuous-learning-trainer:offline}"
OCI_ARCHIVE="${OCI_ARCHIVE-$ROOT/build/trainer-image.oci.tar}"
BH=(buildah --storage-driver "$STORAGE_DRIVER")
mkdir -p "$IMAGE_BUILD_DIR"
TIMES="$IMAGE_BUILD_DIR/times.txt"
: > "$TIMES"
timed() {  # timed NAME CMD...: run CMD, append "NAME SECONDS" to $TIMES
  local name="$1" t0=$SECONDS
  shift
  "$@"
  echo "$name $((SECONDS - t0))s" | tee -a "$TIMES" >&2
}

if ! command -v buildah > /dev/null || ! command -v debootstrap > /dev/null; then
  echo ">> apt-get install buildah debootstrap" >&2
  apt-get update -q > /dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q buildah debootstrap > /dev/null
fi
t0=$SECONDS
BASE="$(timed base "$HERE/base.sh" | tail -1)"
GIT_SHA="$(git -C "$ROOT" rev-parse HEAD)"
git -C "$ROOT" diff --quiet HEAD -- trainer plugins pyproject.toml README.md || GIT_SHA="$GIT_SHA-dirty"
# Where PyPI is reached through a TLS-inspecting proxy (as here: pip's PIP_CERT), the build's pip gets the
# host's CA bundle, mounted for the RUN steps only (not in the image).
HOST_CA="${HOST_CA:-${PIP_CERT:-}}"
CA_ARGS=()
if [[ -n "$HOST_CA" && -f "$HOST_CA" ]]; then
  CA_ARGS=(--volume "$HOST_CA:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
fi
echo ">> image: $IMAGE from $BASE (Python 3.11 lock, WITH_EFA=false, git $GIT_SHA)" >&2
timed image "${BH[@]}" bud --isolation chroot --pull=never --layers \
  --file "$ROOT/trainer/Dockerfile" \
  --build-arg "BASE_IMAGE=$BASE" \
  --build-arg PYTHON_VERSION=3.11 \
  --build-arg LOCK=trainer/image/requirements-py311.lock \
  --build-arg WITH_EFA=false \
  --build-arg "GIT_SHA=$GIT_SHA" \
  "${CA_ARGS[@]}" \
  --tag "$IMAGE" "$ROOT"
# Images left untagged by an earlier build of the same tag (their layers stay shared with the cache).
"${BH[@]}" images --filter dangling=true --format '{{.ID}}' | xargs -r "${BH[@]}" rmi > /dev/null 2>&1 || true

if [[ "${SKIP_SMOKE:-0}" != 1 ]]; then
  timed smoke "$HERE/smoke.sh" "$IMAGE"
fi
if [[ -n "$OCI_ARCHIVE" ]]; then
  mkdir -p "$(dirname "$OCI_ARCHIVE")"
  rm -f "$OCI_ARCHIVE"
  timed oci-archive "${BH[@]}" push --quiet "$IMAGE" "oci-archive:$OCI_ARCHIVE:continuous-learning-trainer:offline"
  ls -l "$OCI_ARCHIVE" | awk '{printf ">> OCI archive: %s (%.2f GB)\n", $NF, $5 / 1e9}' >&2
fi
echo "total $((SECONDS - t0))s" | tee -a "$TIMES" >&2
