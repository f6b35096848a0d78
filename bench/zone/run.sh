#!/usr/bin/env bash
# Zone load time and peak memory: Sparrow (`sparrow check`, which loads the whole config and
# its zone), Knot (`knotc zone-check`) and NSD (`nsd-checkzone`) on the same files of
# 100,000 and 1,000,000 records, and on 1,000,000 with a bad last line (BENCHMARKS.md §12).
# Needs a release build (cargo build --release -p sparrow-node), knot, nsd and GNU time.
# Run from the repository root: bench/zone/run.sh [OUT_DIR]
set -euo pipefail
out=${1:-$(mktemp -d /tmp/sparrow-zone-bench.XXXXXX)}
sparrow=${SPARROW:-target/release/sparrow}
mkdir -p "$out/knot"
python3 bench/zone/gen.py 100000 "$out/z100k.zone"
python3 bench/zone/gen.py 1000000 "$out/z1m.zone"
python3 bench/zone/gen.py 1000000 "$out/z1m-bad.zone" bad
# The single-node example with its [zone] replaced by the generated file.
cp -r deploy/examples/single-node/. "$out/sparrow"
for z in z100k z1m z1m-bad; do
    python3 - "$out/sparrow/sparrow.toml" "$out/$z.zone" >"$out/sparrow/$z.toml" <<'PY'
import sys
t = open(sys.argv[1]).read()
a, b = t.index("[zone]"), t.index("[[pop]]")
print(t[:a] + f'[zone]\norigin = "example.net."\nfile = "{sys.argv[2]}"\n\n' + t[b:], end="")
PY
    printf 'server:\n    rundir: "%s"\ndatabase:\n    storage: "%s"\nzone:\n  - domain: example.net.\n    file: "%s"\n' \
        "$out/knot" "$out/knot" "$out/$z.zone" >"$out/knot/$z.conf"
done
measure() { # label command...
    local label=$1
    shift
    /usr/bin/time -f "$label wall=%e s user=%U s sys=%S s maxrss=%M KiB exit=%x" "$@" \
        >"$out/last.out" 2>"$out/last.err" || true
    tail -n 1 "$out/last.err"
    grep -m 2 -iE "error|line" "$out/last.out" "$out/last.err" | grep -v "wall=" | head -n 2 | sed 's/^/    /' || true
}
echo "# $(date -u '+%F %T') UTC, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for z in z100k z1m z1m-bad; do
    measure "sparrow $z" "$sparrow" check --config "$out/sparrow/$z.toml"
    measure "knot    $z" knotc -c "$out/knot/$z.conf" zone-check example.net.
    measure "nsd     $z" nsd-checkzone example.net "$out/$z.zone"
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
