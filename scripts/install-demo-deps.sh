#!/usr/bin/env bash
# install-demo-deps.sh: what `make demo` needs on a fresh Debian machine
# besides Go: iproute2 (network namespaces) and ping. Idempotent; apt runs
# only when one is missing (as root).
set -euo pipefail

packages=(iproute2 iputils-ping)
missing=()
for p in "${packages[@]}"; do
	if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]]; then
		missing+=("$p")
	fi
done
((${#missing[@]} == 0)) && exit 0
if [[ $(id -u) -ne 0 ]]; then
	echo "install-demo-deps: missing ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
	exit 1
fi
echo "install-demo-deps: apt-get install ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
