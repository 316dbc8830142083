#!/usr/bin/env bash
# What the e2e suite needs besides target/venv, installed only when missing
# (`make e2e` runs this first). Debian/Ubuntu, apt-get, non-interactive;
# through sudo unless run as root.
#
#   curl, skopeo       apt-get install (curl: the HTTP/2 tests and `make demo`;
#                      skopeo: the OCI client of test_oci.py)
#   docker-registry    the registry binary from Debian's docker-registry
#                      package, unpacked into TOOLS_DIR/docker-registry. Not
#                      `apt-get install`: its maintainer scripts would enable
#                      and start a system-wide registry service on :5000.
#                      test_oci.py starts its own, on a free loopback port.
#
# Usage: install-tools.sh TOOLS_DIR   (the Makefile passes target/tools)
set -euo pipefail
TOOLS=${1:?usage: install-tools.sh TOOLS_DIR}
REGISTRY=$TOOLS/docker-registry/usr/bin/docker-registry

as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }
apt_get() { as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0 "$@"; }

missing=()
command -v curl >/dev/null || missing+=(curl)
command -v skopeo >/dev/null || missing+=(skopeo)
need_registry=0
command -v docker-registry >/dev/null || [[ -x $REGISTRY ]] || need_registry=1
((${#missing[@]} || need_registry)) || exit 0

if ! command -v apt-get >/dev/null; then
  echo "e2e tools: no apt-get here; install ${missing[*]}$( ((need_registry)) && echo ' docker-registry') yourself" >&2
  exit 1
fi

updated=0
update() { ((updated)) || apt_get update; updated=1; }

if ((${#missing[@]})); then
  echo "e2e tools: installing ${missing[*]}"
  update
  apt_get install --no-install-recommends "${missing[@]}"
fi

if ((need_registry)); then
  echo "e2e tools: unpacking Debian's docker-registry into $TOOLS/docker-registry"
  apt-cache show docker-registry >/dev/null 2>&1 || update
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  chmod 755 "$tmp" # apt's download sandbox user writes here
  (cd "$tmp" && apt-get -q download docker-registry)
  rm -rf "$TOOLS/docker-registry"
  mkdir -p "$TOOLS"
  dpkg-deb -x "$tmp"/docker-registry_*.deb "$TOOLS/docker-registry"
  "$REGISTRY" --version
fi
