#!/usr/bin/env bash
# install-deps.sh: install everything `make test` and `make bench-bgp` need on a
# fresh Debian 12 machine. Run as root from anywhere; idempotent and fast when
# everything is already present (no apt-get update, no go install).
#
#   apt:   gobgpd (Debian's GoBGP 3.x, the interop peer), exabgp (the crafted
#          UPDATE sender), frr (bgpd + zebra, the E-VPN VTEP interop peer),
#          openvswitch-switch (ovsdb-server and ovs-vswitchd, started by the
#          OVS dataplane tests in their namespaces, userspace datapath),
#          iproute2 (ip/ss for network tests), procps (ps, for debugging
#          leaked peers), ca-certificates (Go module downloads).
#   tools: staticcheck, and GoBGP v4.8.0's gobgpd/gobgp for the benchmark,
#          installed into ./.tools/bin (never into go.mod).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_bin="${repo_root}/.tools/bin"

# Pinned versions: bump deliberately, the Makefile and tests do not care.
staticcheck_version="v0.8.2"   # 2026.1.x, the first line supporting Go 1.26
gobgp_version="v4.8.0"         # the version the issue's benchmark compares against

# python3-openstackclient and python3-neutronclient (its bgpvpn commands):
# the openstack command line that drives bagpipe-server in a test.
apt_packages=(gobgpd exabgp frr openvswitch-switch postgresql iproute2 iputils-ping iputils-arping util-linux procps ca-certificates graphviz python3-openstackclient python3-neutronclient)

log() { printf 'install-deps: %s\n' "$*" >&2; }

missing=()
for p in "${apt_packages[@]}"; do
	status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
	if [[ $status != "install ok installed" ]]; then
		missing+=("$p")
	fi
done
if ((${#missing[@]} > 0)); then
	if [[ $(id -u) -ne 0 ]]; then
		log "missing packages ${missing[*]} and not root: run this script as root"
		exit 1
	fi
	log "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	# The packages' services (gobgpd, exabgp, frr's zebra and watchfrr)
	# must not start on install: tests run their own daemons. Without
	# systemd, invoke-rc.d asks policy-rc.d, which says "not now" (101)
	# while we install, unless the machine has a policy of its own.
	policy=/usr/sbin/policy-rc.d
	own_policy=false
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		own_policy=true
	fi
	status=0
	apt-get install -y -q --no-install-recommends "${missing[@]}" || status=$?
	if $own_policy; then rm -f "$policy"; fi
	((status == 0)) || exit "$status"
else
	log "apt packages present"
fi

# Should the packages' own services run (a machine with systemd), they would
# bind :179 and :50051 and collide with the tests' own gobgpd and exabgp.
if command -v systemctl >/dev/null 2>&1; then
	for svc in exabgp gobgpd frr openvswitch-switch; do
		if systemctl is-active --quiet "$svc" 2>/dev/null; then
			log "stopping the ${svc} system service (tests run their own)"
			systemctl stop "$svc" || true
			systemctl disable "$svc" >/dev/null 2>&1 || true
		fi
	done
fi

if ! command -v go >/dev/null 2>&1; then
	if [[ -x /usr/local/go/bin/go ]]; then
		export PATH="/usr/local/go/bin:${PATH}"
	else
		log "go not found (expected on PATH or at /usr/local/go/bin)"
		exit 1
	fi
fi

mkdir -p "${tools_bin}"

# go_install VERSION_TAG BINARY... PACKAGE@VERSION...
# Runs from a scratch directory, with GOFLAGS cleared, so the project's go.mod
# is never touched, and skips the build when each binary already reports the
# wanted version in its embedded build info.
go_install() {
	local want="$1"
	shift
	local -a bins=() pkgs=()
	local arg
	for arg in "$@"; do
		if [[ $arg == *@* ]]; then pkgs+=("$arg"); else bins+=("$arg"); fi
	done
	local ok=1 b
	for b in "${bins[@]}"; do
		# The main module's version is embedded in the binary's build info.
		local have=""
		if [[ -x "${tools_bin}/${b}" ]]; then
			have="$(go version -m "${tools_bin}/${b}" 2>/dev/null | awk '$1=="mod"{print $3; exit}' || true)"
		fi
		if [[ $have != "$want" ]]; then
			ok=0
		fi
	done
	if ((ok)); then
		log "${bins[*]} ${want} present in ${tools_bin}"
		return
	fi
	log "go install ${pkgs[*]}"
	local scratch
	scratch="$(mktemp -d)"
	(cd "${scratch}" && GOFLAGS= GOBIN="${tools_bin}" GO111MODULE=on go install "${pkgs[@]}")
	rm -rf "${scratch}"
}

go_install "${staticcheck_version}" staticcheck \
	"honnef.co/go/tools/cmd/staticcheck@${staticcheck_version}"
go_install "${gobgp_version}" gobgpd gobgp \
	"github.com/osrg/gobgp/v4/cmd/gobgpd@${gobgp_version}" \
	"github.com/osrg/gobgp/v4/cmd/gobgp@${gobgp_version}"

log "done"
