#!/usr/bin/env bash
# install-original.sh: install the Python original, Debian's
# python3-networking-bagpipe (bagpipe-bgp 17.0.0, with ExaBGP 4.2), and
# bridge-utils, for the interoperability tests in test/interop. Run as root on
# Debian 12; idempotent, and fast when everything is present (no apt-get
# update then).
#
# It is a large install: about 345 packages (neutron, oslo, django-horizon
# come with it), 1 min 46 s on a 2-core machine with a warm mirror. The tests
# skip without it, unless BAGPIPE_INTEROP=1 asks them to fail instead.
#
# The packages ship no service, so nothing starts on its own: the tests run
# the daemon themselves, with their own configuration.
set -euo pipefail

packages=(python3-networking-bagpipe bridge-utils)

log() { printf 'install-original: %s\n' "$*" >&2; }

missing=()
for p in "${packages[@]}"; do
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
	export DEBIAN_FRONTEND=noninteractive
	# Refresh the package lists only when apt does not know a package yet
	# (a fresh machine, or lists cleaned to save space).
	for p in "${missing[@]}"; do
		if [[ -z "$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}' | grep -v '(none)')" ]]; then
			log "apt does not know ${p}: apt-get update"
			apt-get update -q
			break
		fi
	done
	log "apt-get install ${missing[*]} (a few hundred dependencies)"
	start=$SECONDS
	apt-get install -y -q "${missing[@]}"
	log "installed in $((SECONDS - start)) s"
else
	log "python3-networking-bagpipe and bridge-utils present"
fi

# bagpipe-bgp 17.0.0 drives ExaBGP's session code itself and only works with
# ExaBGP 4.x (bgp-core §4.5): say so now rather than in a failing test.
exabgp_version="$(dpkg-query -W -f='${Version}' python3-exabgp 2>/dev/null || true)"
case "$exabgp_version" in
4.*) log "ExaBGP ${exabgp_version}: fine" ;;
*)
	log "python3-exabgp is '${exabgp_version}'; bagpipe-bgp 17.0.0 needs ExaBGP 4.x"
	exit 1
	;;
esac
