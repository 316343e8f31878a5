#!/usr/bin/env bash
# The project's test command: lint, format check, strict types, then the test suite.
# On a fresh clone it bootstraps what it needs first, saying so on one line each: the venv
# with the package and its dev extra (needs Python >= 3.11 and PyPI), then the pinned tools
# (ci/install-tools.sh: Go, or the verified release archives). If a step cannot be done, it
# says in one line what to run and exits 3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=${VENV:-.venv}
make_venv() {
  [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv" || return
  "$venv/bin/pip" install --quiet --upgrade pip || return
  "$venv/bin/pip" install --quiet -e '.[dev]'
}
if [[ ! -x "$venv/bin/ruff" || ! -x "$venv/bin/mypy" || ! -x "$venv/bin/pytest" ]]; then
  echo "test.sh: bootstrapping $venv (python3 -m venv, pip install -e '.[dev]')" >&2
  make_venv || {
    echo "test.sh: could not set up $venv; run first: python3 -m venv $venv && $venv/bin/pip install -e '.[dev]'" >&2
    exit 3
  }
fi
tools=${GITOPS_PIPELINE_TOOLS_DIR:-.tools/bin}
for tool in helm kubeconform conftest actionlint; do
  if [[ ! -x "$tools/$tool" ]]; then
    echo "test.sh: bootstrapping the pinned tools into $tools (bash ci/install-tools.sh)" >&2
    PYTHON="$venv/bin/python" bash ci/install-tools.sh >&2 || {
      echo "test.sh: could not install the pinned tools; run first: bash ci/install-tools.sh (needs Go, or access to the release archives or a mirror: see README.md)" >&2
      exit 3
    }
    break
  fi
done
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
"$venv/bin/mypy" --strict pipeline
# Our one Go program (the helm worker): formatted and vetted where Go is at hand.
if command -v go >/dev/null; then
  unformatted=$(gofmt -l tools/helm-worker)
  [[ -z "$unformatted" ]] || { echo "gofmt: not formatted: $unformatted" >&2; exit 1; }
  (cd tools/helm-worker && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go vet .)
fi
"$venv/bin/pytest" "$@"
# The example service is a project of its own, with its own configuration.
(cd app && "../$venv/bin/mypy" && "../$venv/bin/pytest" -q -p no:cacheprovider)
