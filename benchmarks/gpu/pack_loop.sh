#!/usr/bin/env bash
# Pack what the loop needs on the GPU host into .bundle/parts/part-* (each small enough for one call):
# the offline bundle, pydantic-settings and python-dotenv wheels, the model's GGUF and the loop's data
# (CL_HOME folder from prepare_loop.py) and a clean source snapshot of HEAD (src/: what runs there, whatever
# the working tree holds).  Usage: [SRC_REV=rev] pack_loop.sh HOME GGUF
set -euo pipefail
home=$1 gguf=$2
rm -rf .bundle/pack .bundle/parts && mkdir -p .bundle/pack .bundle/parts
ln -s "$(realpath .bundle/site.tar.xz)" .bundle/pack/site.tar.xz
ln -s "$(realpath .bundle/extra)" .bundle/pack/extra
ln -s "$(realpath "$gguf")" .bundle/pack/model.gguf
ln -s "$(realpath "$home")" .bundle/pack/loop
# SRC_REV: the revision whose product code runs there (default HEAD); benchmarks/gpu always from HEAD.
mkdir -p .bundle/pack/src && git archive "${SRC_REV:-HEAD}" | tar -x -C .bundle/pack/src
git archive HEAD benchmarks/gpu | tar -x -C .bundle/pack/src
tar -chf - -C .bundle/pack . | split -b 57m -d - .bundle/parts/part-
ls -la .bundle/parts
