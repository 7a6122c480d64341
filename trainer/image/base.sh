#!/usr/bin/env bash
# The offline build's base image, for machines that cannot pull nvidia/cuda:* from a registry: Debian 12
# (debootstrap from Debian's archive) plus the CUDA 13.0 compiler pieces from PyPI (nvcc, crt, nvvm,
# the runtime's headers and libcudart, CCCL: trainer/image/cuda-base.lock, hash-checked), laid out as
# /usr/local/cuda like the CUDA images. SGLang JIT-compiles kernels with nvcc at start-up, so the image
# needs the compiler (and g++ as its host compiler); the CUDA libraries torch loads (cuBLAS, cuDNN,
# NCCL...) come with torch's own nvidia-* wheels in the image's lock, not from here.
#
# Prints the image name (localhost/cl-trainer-base:KEY) on stdout's last line. KEY hashes this script and
# cuda-base.lock: an image of that name that is already there is kept (the cache between runs).
# Env: STORAGE_DRIVER (overlay), IMAGE_BUILD_DIR (/var/tmp/cl-trainer-image), DEBIAN_MIRROR.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DRIVER="${STORAGE_DRIVER:-overlay}"
WORK="${IMAGE_BUILD_DIR:-/var/tmp/cl-trainer-image}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
UV_VENV="${UV_VENV:-/tmp/cl-uv}"
UV_VERSION="${UV_VERSION:-0.13.9}"
KEY="$(cat "${BASH_SOURCE[0]}" "$HERE/cuda-base.lock" | sha256sum | cut -c1-12)"
BASE="localhost/cl-trainer-base:$KEY"
BH=(buildah --storage-driver "$DRIVER")

if "${BH[@]}" inspect --type image "$BASE" > /dev/null 2>&1; then
  echo ">> base: $BASE is there, kept" >&2
  echo "$BASE"
  exit 0
fi
for tool in debootstrap buildah; do
  command -v "$tool" > /dev/null || { echo "base.sh: $tool missing (apt-get install buildah debootstrap)" >&2; exit 1; }
done
start=$SECONDS
rootfs="$WORK/rootfs-$KEY"
cuda="$WORK/cuda-$KEY"
rm -rf "$rootfs" "$cuda"
mkdir -p "$WORK"
echo ">> base: debootstrap $SUITE (minbase + ca-certificates, g++ for nvcc) into $rootfs" >&2
debootstrap --variant=minbase --include=ca-certificates,g++,libc6-dev "$SUITE" "$rootfs" "$MIRROR" \
  > "$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
rm -f "$rootfs/etc/apt/sources.list"
cat > "$rootfs/etc/apt/sources.list.d/debian.sources" << EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
echo ">> base: CUDA 13.0 compiler wheels from PyPI (cuda-base.lock, --require-hashes)" >&2
if [[ ! -x "$UV_VENV/bin/uv" ]]; then
  python3 -m venv "$UV_VENV"
  "$UV_VENV/bin/pip" install --quiet "uv==$UV_VERSION"
fi
"$UV_VENV/bin/uv" pip install --quiet --target "$cuda" --no-deps --require-hashes -r "$HERE/cuda-base.lock" \
  --python-platform x86_64-manylinux_2_34 --python-version 3.11 --index-url https://pypi.org/simple
toolkit="$rootfs/usr/local/cuda-13.0"
cp -a "$cuda/nvidia/cu13" "$toolkit"
ln -s cuda-13.0 "$rootfs/usr/local/cuda"
ln -s lib "$toolkit/lib64"
ln -s libcudart.so.13 "$toolkit/lib/libcudart.so"
for record in "$cuda"/*.dist-info/METADATA; do
  awk '/^Name:/{n=$2} /^Version:/{v=$2} END{print n "==" v}' "$record"
done | sort > "$toolkit/wheels.txt"
echo "$toolkit/lib" > "$rootfs/etc/ld.so.conf.d/cuda.conf"
chroot "$rootfs" ldconfig
chroot "$rootfs" apt-get clean
rm -rf "$rootfs/var/lib/apt/lists/"* "$rootfs/var/cache/apt/"*.bin "$cuda"

echo ">> base: committing $BASE" >&2
ctr="$("${BH[@]}" from --pull=never scratch)"
trap '"${BH[@]}" rm "$ctr" > /dev/null 2>&1 || true' EXIT
cp -a "$rootfs/." "$("${BH[@]}" mount "$ctr")/"
"${BH[@]}" config \
  --env PATH=/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env CUDA_HOME=/usr/local/cuda \
  --env LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64 \
  --env CUDA_VERSION=13.0 \
  --env NVIDIA_VISIBLE_DEVICES=all \
  --env NVIDIA_DRIVER_CAPABILITIES=compute,utility \
  --label ai.continuous-learning.base="debian-$SUITE-minbase+pypi-cuda-13.0" \
  --label ai.continuous-learning.cuda-wheels="$(paste -sd, "$toolkit/wheels.txt")" \
  --cmd /bin/bash "$ctr"
"${BH[@]}" commit --quiet "$ctr" "$BASE" > /dev/null
rm -rf "$rootfs"
echo ">> base: $BASE built in $((SECONDS - start))s" >&2
echo "$BASE"
