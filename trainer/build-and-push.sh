#!/usr/bin/env bash
# Build the trainer image and push it to Amazon ECR: the registry build (trainer/Dockerfile's defaults:
# nvidia/cuda:13.0.2-cudnn-devel-ubuntu24.04, Python 3.12 with trainer/image/requirements.lock, EFA
# installer + aws-ofi-nccl). Needs network access to the nvidia/cuda image, PyPI,
# efa-installer.amazonaws.com and github.com, and AWS credentials allowed to push to the repository
# (infra/terraform makes it). Run by a person or a release job; CI does not run it. Usage:
#   AWS_REGION=us-east-1 ECR_REPOSITORY=continuous-learning/trainer trainer/build-and-push.sh [TAG]
# TAG defaults to the git commit. BUILDER=docker (default) or BUILDER=buildah (no Docker engine needed:
# the same Dockerfile and arguments, pushed with `buildah push docker://...`). Prints the pushed image's
# digest reference (repo@sha256:...): put it in the pipeline's trainer image setting; the RayJob passes it
# to the trainer as CL_IMAGE_DIGEST so that every TrainResult records the exact image.
#
# The ECR path: <account>.dkr.ecr.<region>.amazonaws.com/<ECR_REPOSITORY>:<TAG>, logged in with
# `aws ecr get-login-password`. Without registry access, `make image` builds the offline variant
# (Debian base, Python 3.11, no EFA) as an OCI archive instead: docs/trainer-image.md says what differs;
# that one is for proving the Dockerfile and running one node, not for multi-node EFA training.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${AWS_REGION:?set AWS_REGION}"
: "${ECR_REPOSITORY:?set ECR_REPOSITORY (e.g. continuous-learning/trainer)}"
BUILDER="${BUILDER:-docker}"
GIT_SHA="$(git -C "$ROOT" rev-parse HEAD)"
TAG="${1:-${GIT_SHA:0:12}}"
ACCOUNT="${AWS_ACCOUNT_ID:-$(aws sts get-caller-identity --query Account --output text)}"
REGISTRY="$ACCOUNT.dkr.ecr.$AWS_REGION.amazonaws.com"
IMAGE="$REGISTRY/$ECR_REPOSITORY:$TAG"

if ! git -C "$ROOT" diff --quiet HEAD -- trainer plugins pyproject.toml; then
  echo "refusing to build: uncommitted changes under trainer/, plugins/ or pyproject.toml" >&2
  exit 1
fi
case "$BUILDER" in
  docker)
    aws ecr get-login-password --region "$AWS_REGION" | docker login --username AWS --password-stdin "$REGISTRY"
    docker build --file "$ROOT/trainer/Dockerfile" --build-arg "GIT_SHA=$GIT_SHA" --tag "$IMAGE" "$ROOT"
    docker push "$IMAGE"
    docker inspect --format '{{index .RepoDigests 0}}' "$IMAGE"
    ;;
  buildah)
    aws ecr get-login-password --region "$AWS_REGION" | buildah login --username AWS --password-stdin "$REGISTRY"
    buildah bud --layers --file "$ROOT/trainer/Dockerfile" --build-arg "GIT_SHA=$GIT_SHA" --tag "$IMAGE" "$ROOT"
    digest_file="$(mktemp)"
    buildah push --digestfile "$digest_file" "$IMAGE" "docker://$IMAGE"
    echo "$REGISTRY/$ECR_REPOSITORY@$(cat "$digest_file")"
    rm -f "$digest_file"
    ;;
  *)
    echo "BUILDER must be docker or buildah, not $BUILDER" >&2
    exit 1
    ;;
esac
