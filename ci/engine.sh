#!/usr/bin/env bash
# Starts the local Dagger engine of ../shared/dagger-engine (ours and CI's machines only; a user
# runs a normal Dagger engine) and publishes look-alikes of every image the module pins, so
# `dagger call` runs for real here. The kit's registry serves images by tag only; the tests
# point each tool at its look-alike through pipeline.yaml's `tools.<name>.image`, the override
# users have for their own mirrors.
#
# A look-alike is the same tool at the same version, at the same path, with the same
# entrypoint, working directory and user as the real image (from each project's Dockerfile),
# built from the binaries the local runner installs (.tools/bin, from the pin table).
#
#   bash ci/engine.sh          set up (once), start, publish; writes .tools/engine.env
#   bash ci/engine.sh stop     stops the engine and its registry (keeps the caches)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kit=${DAGGER_ENGINE_KIT:-"$root/../shared/dagger-engine"}
state="$root/.tools/engine"
bin=${GITOPS_PIPELINE_TOOLS_DIR:-"$root/.tools/bin"}
python=${PYTHON:-"$root/.venv/bin/python"}
[[ -x "$kit/start" ]] || { echo "engine: no Dagger engine kit at $kit" >&2; exit 3; }

if [[ "${1:-}" == stop ]]; then
  "$kit/stop"
  exit 0
fi

"$kit/setup"
envfile=$("$kit/start")
mkdir -p "$state"

# The references the module pins, from the pin table (the script keeps no versions).
image() { PYTHONPATH="$root" "$python" -c "from pipeline.tools import TOOLS; print(TOOLS['$1'].image)"; }
by_tag() { local ref=${1%@*}; echo "$ref"; }   # the same name and tag, without the digest

busybox_root() { # dir: a minimal shell, as the Alpine-based images have
  local dir=$1
  rm -rf "$dir"
  mkdir -p "$dir/bin" "$dir/tmp" "$dir/etc/ssl/certs" "$dir/root"
  chmod 1777 "$dir/tmp"
  cp /bin/busybox "$dir/bin/busybox"
  # Every applet but busybox itself, which would become a link to itself.
  for applet in $(/bin/busybox --list); do
    [[ "$applet" == busybox ]] || ln -sf busybox "$dir/bin/$applet"
  done
  cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/bin/sh\nguest:x:405:100:guest:/dev/null:/sbin/nologin\n' \
    >"$dir/etc/passwd"
  printf 'root:x:0:root\nusers:x:100:guest\n' >"$dir/etc/group"
}

push() { # NAME:TAG rootfs-dir [push-image options]
  local ref=$1
  shift
  "$kit/push-image" "$ref" "$@" >/dev/null
  echo "engine: published look-alike $ref"
}

stamp_of() { # a hash of what a look-alike is made of
  cat "$@" 2>/dev/null | sha256sum | cut -c1-16
}

publish_go_tools() {
  local key
  key=$(stamp_of "$bin/.helm.pin" "$bin/.kubeconform.pin" "$bin/.conftest.pin" \
    "$bin/.actionlint.pin" "$0")
  if [[ "$(cat "$state/go-tools.stamp" 2>/dev/null)" == "$key" ]] && curl -fsS \
    "http://127.0.0.1:${DAGGER_ENGINE_REGISTRY_PORT:-5055}/v2/_catalog" | grep -q conftest; then
    return 0
  fi
  local work="$state/rootfs"
  # alpine/helm: Alpine with /usr/bin/helm, WORKDIR /apps, ENTRYPOINT ["helm"].
  busybox_root "$work/helm"
  mkdir -p "$work/helm/usr/bin" "$work/helm/apps"
  cp "$bin/helm" "$work/helm/usr/bin/helm"
  push "$(by_tag "$(image helm)")" "$work/helm" --workdir /apps --entrypoint helm --cmd --help
  # yannh/kubeconform: FROM scratch, CA bundle and /kubeconform, ENTRYPOINT ["/kubeconform"].
  rm -rf "$work/kubeconform"
  mkdir -p "$work/kubeconform/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$work/kubeconform/etc/ssl/certs/"
  cp "$bin/kubeconform" "$work/kubeconform/kubeconform"
  push "$(by_tag "$(image kubeconform)")" "$work/kubeconform" --entrypoint /kubeconform
  # openpolicyagent/conftest: Alpine, /conftest linked from /usr/local/bin, WORKDIR /project.
  busybox_root "$work/conftest"
  mkdir -p "$work/conftest/usr/local/bin" "$work/conftest/project"
  cp "$bin/conftest" "$work/conftest/conftest"
  ln -sf /conftest "$work/conftest/usr/local/bin/conftest"
  push "$(by_tag "$(image conftest)")" "$work/conftest" \
    --workdir /project --entrypoint /conftest --cmd --help
  # rhysd/actionlint: Alpine, /usr/local/bin/actionlint with shellcheck beside it, USER guest.
  busybox_root "$work/actionlint"
  mkdir -p "$work/actionlint/usr/local/bin" "$work/actionlint/usr/bin"
  cp "$bin/actionlint" "$work/actionlint/usr/local/bin/actionlint"
  shellcheck=$("$python" -c 'import shutil,sys,os; print(shutil.which("shellcheck", path=os.path.dirname(sys.executable)) or "")')
  [[ -n "$shellcheck" ]] && cp "$shellcheck" "$work/actionlint/usr/bin/shellcheck"
  push "$(by_tag "$(image actionlint)")" "$work/actionlint" \
    --user guest --entrypoint /usr/local/bin/actionlint
  rm -rf "$work"
  echo "$key" >"$state/go-tools.stamp"
}

publish_debian() {
  # debian:bookworm-<date>-slim: a minbase bookworm; git and docker.io are installed by the
  # tools' own setup commands, as on the real image.
  local ref key
  ref=$(by_tag "$(image git)")
  key=$(echo "$ref" | sha256sum | cut -c1-16)
  if [[ "$(cat "$state/debian.stamp" 2>/dev/null)" == "$key" ]]; then return 0; fi
  local cache=${GITOPS_PIPELINE_DEBIAN_ROOTFS:-/var/cache/gitops-pipeline/debian-bookworm}
  if [[ ! -f "$cache/.complete" ]]; then
    rm -rf "$cache"
    mkdir -p "$cache"
    debootstrap --variant=minbase bookworm "$cache" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" \
      >"$state/debootstrap.log" 2>&1 || { tail -20 "$state/debootstrap.log"; exit 3; }
    rm -rf "$cache"/var/cache/apt/archives/*.deb "$cache"/var/lib/apt/lists/*
    touch "$cache/.complete"
  fi
  push "$ref" "$cache" --cmd bash
  echo "$key" >"$state/debian.stamp"
}

publish_go_tools
publish_debian

# What the tests read: the kit's environment, and the overrides that select the look-alikes.
{
  # One assignment a line, as written (PATH keeps its literal $PATH for the reader to expand).
  grep -E '^export ' "$envfile" | sed 's/^export //' | tr ' ' '\n'
  echo "GITOPS_TEST_ENGINE=1"
  echo "GITOPS_TEST_ENGINE_KIT=$kit"
  echo "GITOPS_TEST_MODULE_BASE_IMAGE=python:3.11-slim"
  # The Python tools' image and the Debian tools' image run as their tags; Python 3.11 is the
  # version this machine can make, so it stands in under its own name, never under 3.12's.
  echo "GITOPS_TEST_TOOL_IMAGES=helm=$(by_tag "$(image helm)") kubeconform=$(by_tag "$(image kubeconform)") conftest=$(by_tag "$(image conftest)") actionlint=$(by_tag "$(image actionlint)") ruff=python:3.11-slim mypy=python:3.11-slim pytest=python:3.11-slim kubernetes-validate=python:3.11-slim detect-secrets=python:3.11-slim git=$(by_tag "$(image git)") docker=$(by_tag "$(image docker)")"
} >"$root/.tools/engine.env"
echo "engine: ready ($root/.tools/engine.env)"
