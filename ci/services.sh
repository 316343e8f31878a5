#!/usr/bin/env bash
# Starts what the release tests need, on this machine only: dockerd, two registries on
# 127.0.0.1 (5000 open, 5001 with htpasswd auth) and a local base image made with
# `docker import`, since no image can be pulled here. Idempotent; safe to run twice.
# Writes the connection details to .tools/services.env for the tests.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state="$root/.tools/services"
mkdir -p "$state"

if ! docker info >/dev/null 2>&1; then
  echo "services: starting dockerd"
  nohup dockerd >"$state/dockerd.log" 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -20 "$state/dockerd.log"; exit 3; }
fi

start_registry() { # name port [htpasswd-file]
  local name=$1 port=$2 auth=${3:-}
  if curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null \
    || curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" 2>/dev/null | grep -q 401; then
    return 0
  fi
  mkdir -p "$state/$name/data"
  {
    echo "version: 0.1"
    echo "storage: {filesystem: {rootdirectory: $state/$name/data}, delete: {enabled: true}}"
    echo "http: {addr: 127.0.0.1:$port}"
    if [[ -n "$auth" ]]; then echo "auth: {htpasswd: {realm: gitops-test, path: $auth}}"; fi
  } >"$state/$name/config.yml"
  nohup docker-registry serve "$state/$name/config.yml" >"$state/$name/registry.log" 2>&1 &
  for _ in $(seq 30); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" || true)
    [[ "$code" == 200 || "$code" == 401 ]] && return 0
    sleep 0.5
  done
  tail -20 "$state/$name/registry.log"
  exit 3
}

if [[ ! -f "$state/htpasswd" ]]; then
  password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  htpasswd -Bbn ci "$password" >"$state/htpasswd"
  printf '%s' "$password" >"$state/registry-password"
  chmod 600 "$state/registry-password"
fi
start_registry open 5000
start_registry auth 5001 "$state/htpasswd"
# A registry already running there may come from another checkout, with another password:
# the tests would then fail with 401s that say nothing about why.
code=$(curl -s -o /dev/null -w '%{http_code}' -u "ci:$(cat "$state/registry-password")" \
  "http://127.0.0.1:5001/v2/" || true)
if [[ "$code" != 200 ]]; then
  echo "services: the registry on 127.0.0.1:5001 refuses this checkout's credentials" \
    "($state/htpasswd); it was started by another checkout: stop it and run again" >&2
  exit 3
fi

# A base image for test builds: busybox in an otherwise empty root filesystem.
if ! docker image inspect gitops-pipeline-test-base:1 >/dev/null 2>&1; then
  rootfs=$(mktemp -d)
  mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc"
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in sh echo cat true ls; do ln -s busybox "$rootfs/bin/$applet"; done
  echo "root:x:0:0:root:/root:/bin/sh" >"$rootfs/etc/passwd"
  tar -C "$rootfs" -cf "$state/base.tar" .
  docker import "$state/base.tar" gitops-pipeline-test-base:1 >/dev/null
  rm -rf "$rootfs"
fi

cat >"$root/.tools/services.env" <<ENV
GITOPS_TEST_DOCKER=1
GITOPS_TEST_REGISTRY=127.0.0.1:5000
GITOPS_TEST_AUTH_REGISTRY=127.0.0.1:5001
GITOPS_TEST_AUTH_USER=ci
GITOPS_TEST_AUTH_PASSWORD_FILE=$state/registry-password
GITOPS_TEST_BASE_IMAGE=gitops-pipeline-test-base:1
ENV
echo "services: dockerd, registries 127.0.0.1:5000 and :5001 (auth), base image ready"
