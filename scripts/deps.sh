#!/usr/bin/env bash
# Installs the Debian packages numalm builds, tests and benchmarks with.
# Only missing packages are installed; apt-get update runs only if needed.
set -euo pipefail

PKGS=(cmake make gcc pkg-config clang libclang-rt-14-dev
      libnuma-dev libhwloc-dev hwloc-nox liburing-dev libcmocka-dev libxxhash-dev
      numactl fio xz-utils e2fsprogs qemu-system-x86 python3 jq
      libmicrohttpd-dev libjansson-dev curl tmux clang-format)
# The server's OpenAI-client test runs the npm `openai` package: Node from
# Debian unless a Node with its own npm (e.g. NodeSource's) is there already
# (Debian's npm package would conflict with it).
PKGS+=(nodejs)
command -v npm >/dev/null || PKGS+=(npm)
[ "${NUMALM_DEPS_EXTRA:-}" ] && read -r -a extra <<<"$NUMALM_DEPS_EXTRA" && PKGS+=("${extra[@]}")

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "deps: need root to install: ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/numalm-apt.log 2>&1; then
    $SUDO apt-get update -q >>/tmp/numalm-apt.log 2>&1
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/numalm-apt.log 2>&1 ||
        { tail -20 /tmp/numalm-apt.log >&2; echo "deps: apt-get install failed (log: /tmp/numalm-apt.log)" >&2; exit 1; }
fi
