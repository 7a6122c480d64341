#!/usr/bin/env bash
# Build the trainer image and push it to Amazon ECR. Run by a person or a release job with Docker and
# AWS credentials; CI does not run it (CI has no Docker engine). Usage:
#   AWS_REGION=us-east-1 ECR_REPOSITORY=continuous-learning/trainer trainer/build-and-push.sh [TAG]
# TAG defaults to the git commit. Prints the pushed image's digest reference (repo@sha256:...): put it in
# the pipeline's trainer image setting; the RayJob passes it to the trainer as CL_IMAGE_DIGEST so that
# every TrainResult records the exact image.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${AWS_REGION:?set AWS_REGION}"
: "${ECR_REPOSITORY:?set ECR_REPOSITORY (e.g. continuous-learning/trainer)}"
GIT_SHA="$(git -C "$ROOT" rev-parse HEAD)"
TAG="${1:-${GIT_SHA:0:12}}"
ACCOUNT="${AWS_ACCOUNT_ID:-$(aws sts get-caller-identity --query Account --output text)}"
REGISTRY="$ACCOUNT.dkr.ecr.$AWS_REGION.amazonaws.com"
IMAGE="$REGISTRY/$ECR_REPOSITORY:$TAG"

if ! git -C "$ROOT" diff --quiet HEAD -- trainer plugins pyproject.toml; then
  echo "refusing to build: uncommitted changes under trainer/, plugins/ or pyproject.toml" >&2
  exit 1
fi
aws ecr get-login-password --region "$AWS_REGION" | docker login --username AWS --password-stdin "$REGISTRY"
docker build --file "$ROOT/trainer/Dockerfile" --build-arg "GIT_SHA=$GIT_SHA" --tag "$IMAGE" "$ROOT"
docker push "$IMAGE"
docker inspect --format '{{index .RepoDigests 0}}' "$IMAGE"
