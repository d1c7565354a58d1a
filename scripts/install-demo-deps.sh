#!/usr/bin/env bash
# install-demo-deps.sh: what `make demo` needs on a fresh Debian machine
# besides Go. Required: iproute2 (network namespaces) and ping. Wanted:
# openvswitch-switch (ovsdb-server and ovs-vswitchd), which the demo runs
# in each compute node's namespace for its BGPVPN part (the OVS IP-VPN
# driver); without it the demo skips that part, so failing to install it
# is only a warning. Idempotent; apt runs only when a package is missing
# (as root).
set -euo pipefail

required=(iproute2 iputils-ping)
wanted=(openvswitch-switch)

# missing prints the packages of "$@" that are not installed.
missing() {
	local p
	for p in "$@"; do
		if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]]; then
			echo "$p"
		fi
	done
}

mapfile -t miss_required < <(missing "${required[@]}")
mapfile -t miss_wanted < <(missing "${wanted[@]}")
((${#miss_required[@]} + ${#miss_wanted[@]} == 0)) && exit 0

if [[ $(id -u) -ne 0 ]]; then
	if ((${#miss_required[@]} > 0)); then
		echo "install-demo-deps: missing ${miss_required[*]} ${miss_wanted[*]}; run as root (or: sudo apt-get install ${miss_required[*]} ${miss_wanted[*]})" >&2
		exit 1
	fi
	echo "install-demo-deps: ${miss_wanted[*]} missing (the demo skips its BGPVPN part without it); run as root to install it" >&2
	exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# Open vSwitch's system service need not start on install: the demo runs
# its own daemons in its namespaces. Without systemd, invoke-rc.d asks
# policy-rc.d, which says "not now" (101) while we install, unless the
# machine has a policy of its own.
policy=/usr/sbin/policy-rc.d
own_policy=false
if [[ ! -e $policy ]]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	own_policy=true
fi
trap '$own_policy && rm -f "$policy"' EXIT

echo "install-demo-deps: apt-get install ${miss_required[*]} ${miss_wanted[*]}" >&2
apt-get update -q
if ((${#miss_required[@]} > 0)); then
	apt-get install -y -q --no-install-recommends "${miss_required[@]}"
fi
if ((${#miss_wanted[@]} > 0)); then
	if ! apt-get install -y -q --no-install-recommends "${miss_wanted[@]}"; then
		echo "install-demo-deps: warning: could not install ${miss_wanted[*]}: the demo will skip its BGPVPN part" >&2
	fi
fi
