#!/usr/bin/env bash
# Installs the pinned Go tools (helm, kubeconform, conftest) into .tools/bin with `go install`.
# The versions come from pipeline/tools.py, the table both runners read; this script holds none.
# Idempotent: a tool whose stamp matches its pin is left alone.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-"$root/.venv/bin/python"}
bin=${GITOPS_PIPELINE_TOOLS_DIR:-"$root/.tools/bin"}
mkdir -p "$bin"
command -v go >/dev/null || { echo "install-tools: go is required (https://go.dev/dl)" >&2; exit 3; }
export GOFLAGS="${GOFLAGS:-} -buildvcs=false" CGO_ENABLED=0
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" "$python" -m pipeline.tools | while read -r name spec ldflag; do
  stamp="$bin/.$name.pin"
  if [[ -x "$bin/$name" && "$(cat "$stamp" 2>/dev/null)" == "$spec $ldflag" ]]; then
    echo "install-tools: $name $spec already installed"
    continue
  fi
  echo "install-tools: go install $spec"
  # The version stamped as the project's release builds stamp it, so `--version` tells.
  GOBIN="$bin" go install -ldflags "-X $ldflag" "$spec"
  echo "$spec $ldflag" >"$stamp"
done
