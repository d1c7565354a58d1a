#!/usr/bin/env bash
# fuzz.sh FUZZTIME [PACKAGES...]: run every native Go fuzz target of the
# module (or of PACKAGES, default ./...) for FUZZTIME each (e.g. 10s in CI, longer by hand). Targets are discovered with
# `go test -list '^Fuzz'`, so new ones are picked up without editing this.
# A failing input is saved by Go under the package's testdata/fuzz/ and
# fails the run.
set -euo pipefail

fuzztime="${1:?usage: fuzz.sh FUZZTIME [PACKAGES...]}"
shift
packages=("$@")
((${#packages[@]})) || packages=(./...)
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# `go test -list` prints each package's matching names, then a line
# "ok <package> <time>" (or "? <package> [no test files]").
listing="$(go test -list '^Fuzz' "${packages[@]}")"
targets=()
names=()
while IFS= read -r line; do
	case "$line" in
	Fuzz*) names+=("$line") ;;
	"ok "* | "?"*)
		pkg="$(awk '{print $2}' <<<"$line")"
		for n in "${names[@]+"${names[@]}"}"; do targets+=("$pkg $n"); done
		names=()
		;;
	esac
done <<<"$listing"

if ((${#targets[@]} == 0)); then
	echo "fuzz: no fuzz targets found"
	exit 0
fi
echo "fuzz: ${#targets[@]} target(s), ${fuzztime} each"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "fuzz: ${pkg} ${name}"
	# Go's fuzzing coordinator sometimes gives up with "context deadline
	# exceeded" as -fuzztime runs out while a worker answers late; that is
	# no finding (no input is saved), so such a run is tried again, up to
	# three times in all.
	for attempt in 1 2 3; do
		if go test -run '^$' -fuzz "^${name}\$" -fuzztime "${fuzztime}" "${pkg}" 2>&1 | tee "$out"; then
			break
		fi
		if ((attempt < 3)) && grep -q "context deadline exceeded" "$out" && ! grep -q "Failing input written" "$out"; then
			echo "fuzz: ${name}: coordinator timeout, not a finding; trying again"
			continue
		fi
		exit 1
	done
done
