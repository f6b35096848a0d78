#!/usr/bin/env bash
# Queries lost during 20 live reloads, and during a binary swap (take-over), under a steady
# dnsperf load against one standalone node (the single-node example).
# A baseline run (nothing happens) comes first: loss there is the load generator's or the
# machine's, not the reload's.
# Usage: bench/lifecycle.sh [release|debug] [QPS]   (SPARROW_BIN=path: use that binary)   (needs dnsperf: apt-get install dnsperf)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-release}
qps=${2:-5000}
if [ -n "${SPARROW_BIN:-}" ]; then
    bin=$SPARROW_BIN # a binary built already (the profile then only labels the output)
elif [ "$profile" = release ]; then
    cargo build -q --release -p sparrow-node --bin sparrow
    bin=target/release/sparrow
else
    cargo build -q -p sparrow-node --bin sparrow
    bin=target/debug/sparrow
fi
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
cp -r deploy/examples/single-node/. "$dir/"
port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -i "s|^listen = .*|listen = [\"127.0.0.1:$port\"]|; s|^\[zone\]|api_socket = \"api.sock\"\n\n[zone]|" "$dir/sparrow.toml"
for i in $(seq 1 50); do
    echo "www.example.net A"
    echo "ns1.example.net A"
done > "$dir/queries"

start() {
    "$bin" node --config "$dir/sparrow.toml" "$@" 2>>"$dir/node.log" &
    node_pid=$!
    for _ in $(seq 1 200); do
        grep -q "operator API" "$dir/node.log" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "node did not start"; cat "$dir/node.log"; exit 1
}
load() { # seconds
    dnsperf -s 127.0.0.1 -p "$port" -d "$dir/queries" -l "$1" -Q "$qps" -t 2 -q 200 2>&1 |
        grep -E "Queries (sent|completed|lost)"
}

start
echo "== baseline: nothing happens, ${qps} qps, $profile build"
load 14
echo "== 20 reloads (the zone's serial changes each time), ${qps} qps, $profile build"
load 14 &
perf=$!
sleep 2
for i in $(seq 1 20); do
    sed -i "s/^serial = .*/serial = $((2026120200 + i))/" "$dir/sparrow.toml"
    "$bin" reload --socket "$dir/api.sock" >/dev/null
    sleep 0.5
done
wait $perf
echo "== a binary swap (sparrow node --take-over) in the middle, ${qps} qps, $profile build"
load 8 &
perf=$!
sleep 3
old=$node_pid
: > "$dir/node.log"
start --take-over
for _ in $(seq 1 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$old" 2>/dev/null; then echo "the old process is still running"; exit 1; fi
wait $perf
