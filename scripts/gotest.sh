#!/usr/bin/env bash
# Runs the Go tests with the race detector and prints, besides go test's own
# per-package lines, every skipped test with its reason and a closing line
# "N passed, N failed, N skipped". Exit status: go test's.
set -uo pipefail
timeout="${1:-20m}"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
go test -race -count=1 -timeout "$timeout" -json ./... >"$out"
status=$?
python3 - "$out" <<'PY'
import json, sys
passed = failed = skipped = 0
skips, fails, pkgs = [], [], []
output = {}
for line in open(sys.argv[1]):
    try:
        ev = json.loads(line)
    except ValueError:
        continue
    pkg, test, act = ev.get("Package", ""), ev.get("Test"), ev.get("Action")
    if act == "output":
        output.setdefault((pkg, test), []).append(ev.get("Output", ""))
        continue
    if test is None:
        if act in ("pass", "fail", "skip"):
            pkgs.append((act, pkg, ev.get("Elapsed", 0)))
        continue
    if act == "pass":
        passed += 1
    elif act == "fail":
        failed += 1
        fails.append((pkg, test))
    elif act == "skip":
        skipped += 1
        reason = [l.strip() for l in output.get((pkg, test), []) if l.strip() and not l.startswith("=== ") and not l.strip().startswith("--- SKIP")]
        skips.append((pkg, test, reason[-1] if reason else ""))
for act, pkg, el in pkgs:
    word = {"pass": "ok  ", "fail": "FAIL", "skip": "?   "}[act]
    print(f"{word}\t{pkg}\t{el:.2f}s")
for pkg, test in fails:
    print(f"--- FAIL: {pkg} {test}")
    for l in output.get((pkg, test), [])[-40:]:
        sys.stdout.write("    " + l)
for pkg, test, why in skips:
    print(f"--- SKIP: {pkg} {test}: {why}")
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
exit $status
