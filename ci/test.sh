#!/usr/bin/env bash
# The project's test command: lint, format check, strict types, then the test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=${VENV:-.venv}
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
"$venv/bin/mypy" --strict pipeline
"$venv/bin/pytest" "$@"
# The example service is a project of its own, with its own configuration.
(cd app && "../$venv/bin/mypy" && "../$venv/bin/pytest" -q -p no:cacheprovider)
