#!/usr/bin/env bash
# Runs a gitops-pipeline verb on this machine without Docker, bootstrapping on first use:
# a .venv with the package, then the pinned tools in .tools/bin (ci/install-tools.sh: go
# install, or without Go their verified release archives). Arguments go to the CLI.
#   ci/local.sh validate
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ ! -x "$root/.venv/bin/gitops-pipeline" ]]; then
  python3 -m venv "$root/.venv"
  "$root/.venv/bin/pip" install --quiet --upgrade pip
  "$root/.venv/bin/pip" install --quiet -e "${root}[dev]"
fi
bash "$root/ci/install-tools.sh" >/dev/null
exec "$root/.venv/bin/gitops-pipeline" "${@:-validate}"
