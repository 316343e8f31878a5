#!/usr/bin/env bash
# Installs the pinned Go tools (helm, kubeconform, conftest, actionlint, kubeseal) into .tools/bin.
# With Go on PATH: `go install` of each pinned module, stamped with its version. Without Go:
# the projects' release archives, verified against the SHA-256 sums in the tool table
# (`gitops-pipeline tools --install`; GITOPS_PIPELINE_TOOLS_MIRROR or
# GITOPS_PIPELINE_TOOL_ARCHIVES point the download elsewhere, see README.md).
# The versions come from pipeline/tools.py, the table both runners read; this script holds none.
# Idempotent: a tool already at its pin is left alone.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-"$root/.venv/bin/python"}
bin=${GITOPS_PIPELINE_TOOLS_DIR:-"$root/.tools/bin"}
[[ -x "$python" ]] || {
  echo "install-tools: no $python; create the venv first: python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'" >&2
  exit 3
}
mkdir -p "$bin"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
if ! command -v go >/dev/null; then
  echo "install-tools: no Go on PATH: installing the verified release archives"
  exec "$python" -m pipeline.cli tools --install --tools-dir "$bin"
fi
export GOFLAGS="${GOFLAGS:-} -buildvcs=false" CGO_ENABLED=0
"$python" -m pipeline.tools | while read -r name spec ldflag; do
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

# helm's resident worker (tools/helm-worker, our code on the pinned helm module): validate
# runs `helm template`/`helm lint` through it instead of starting helm for each. Built with
# the same version stamp and flags as helm (sharing its build cache); rebuilt when its source
# or the helm pin changes.
helm_ldflag=$("$python" -m pipeline.tools | awk '$1 == "helm" {print $3}')
worker_stamp="$bin/.helm-worker.pin"
worker_spec="$helm_ldflag $(cat "$root"/tools/helm-worker/{go.mod,go.sum,main.go} | sha256sum | cut -d' ' -f1)"
if [[ -x "$bin/helm-worker" && "$(cat "$worker_stamp" 2>/dev/null)" == "$worker_spec" ]]; then
  echo "install-tools: helm-worker already built"
else
  echo "install-tools: go build tools/helm-worker"
  # Optional: without it every helm step starts helm, with the same results.
  if (cd "$root/tools/helm-worker" && go build -ldflags "-X $helm_ldflag" -o "$bin/helm-worker" .); then
    echo "$worker_spec" >"$worker_stamp"
  else
    rm -f "$bin/helm-worker" "$worker_stamp"
    echo "install-tools: helm-worker could not be built here; every helm step will start helm" >&2
  fi
fi
