#!/usr/bin/env bash
# tuning/measure.sh — measures, on this machine, the effect of the host
# settings that tuning/README.md discusses, with ringmail-loadgen against its
# own sink (no server between: these are the network-stack and runtime
# effects that any server on the box inherits).
#
# Each experiment runs inside a private network namespace (unshare -n), so
# the sysctls it changes (somaxconn, tcp_tw_reuse, ip_local_port_range) never
# touch the host's own settings. Needs root (for unshare) and a release
# build of ringmail-loadgen. Every run is bounded in messages and time.
#
# Usage: tuning/measure.sh            (env: MESSAGES=100000 LOADGEN=path)

set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOADGEN=${LOADGEN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/ringmail-loadgen}
MESSAGES=${MESSAGES:-100000}
[ -x "$LOADGEN" ] || { echo "build first: cargo build --release -p ringmail-loadgen" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (unshare -n for private sysctls)" >&2; exit 1; }
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# run NAME SETUP SINK_ARGS -- GEN_ARGS: one experiment in a fresh namespace.
# SETUP is shell run inside the namespace first (sysctls, ulimit).
run() {
    local name=$1 setup=$2 sink_args=$3 gen_args=$4
    unshare -n bash -c "
        set -e
        ip link set lo up
        $setup
        '$LOADGEN' sink --listen 127.0.0.1:2525 --duration 120s $sink_args > '$OUT/sink.out' 2>&1 &
        sp=\$!
        for i in \$(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/2525) 2>/dev/null && break; sleep 0.1; done
        timeout 120 '$LOADGEN' smtp --target 127.0.0.1:2525 --timeout 5s --json '$OUT/gen.json' $gen_args \
            > '$OUT/gen.out' 2>&1 || true
        kill -TERM \$sp; wait \$sp || true
    "
    python3 - "$name" "$OUT/gen.json" "$OUT/gen.out" <<'EOF'
import json, sys
name, path, out = sys.argv[1:]
try:
    d = json.load(open(path))
except Exception:
    print(f'| {name} | failed: {open(out).read().strip().splitlines()[-1:]} | | | |')
    sys.exit()
lat = {r['name']: r for r in d['latency_ms']}
errs = sum(d['tallies'].get('errors', {}).values())
kinds = ', '.join(f'{k} {v}' for k, v in d['tallies'].get('errors', {}).items())
print(f"| {name} | {d['throughput']['accepted_per_s']:,.0f} | {lat.get('message', {}).get('p99', 0):.2f} "
      f"| {lat.get('connect', {}).get('p99', 0):.2f} | {errs}{' (' + kinds + ')' if kinds else ''} |")
EOF
}

M=$MESSAGES
N=$((M / 4))
echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "| experiment | accepted msg/s | message p99 ms | connect p99 ms | errors |"
echo "|---|---|---|---|---|"
run "1+1 cores, pinned (both on CPU 0), pipelining" "" "--cores 1" "--cores 1 --connections 32 --messages $M --pipelining"
run "1+1 cores, not pinned, pipelining" "" "--cores 1 --no-pin" "--cores 1 --no-pin --connections 32 --messages $M --pipelining"
run "2+2 cores, pinned, pipelining" "" "--cores 2" "--cores 2 --connections 32 --messages $M --pipelining"
run "2+2 cores, not pinned, pipelining" "" "--cores 2 --no-pin" "--cores 2 --no-pin --connections 32 --messages $M --pipelining"
run "2+2 cores, pinned, no pipelining" "" "--cores 2" "--cores 2 --connections 32 --messages $M"
run "new connection per message, somaxconn 4096" "sysctl -qw net.core.somaxconn=4096" "" \
    "--connections 512 --messages $N --new-connection-per-message"
run "new connection per message, somaxconn 16" "sysctl -qw net.core.somaxconn=16" "" \
    "--connections 512 --messages $N --new-connection-per-message"
# 5,000 connections through only 1,000 client ports with TIME_WAIT reuse off.
run "new conn/msg, 1,000 ephemeral ports, tw_reuse 0" \
    "sysctl -qw net.ipv4.ip_local_port_range='50000 50999' net.ipv4.tcp_tw_reuse=0" "" \
    "--connections 32 --messages 5000 --new-connection-per-message"
run "512 connections with ulimit -n 256" "ulimit -n 256" "" "--connections 512 --messages $N"
run "512 connections with ulimit -n 16384" "ulimit -n 16384" "" "--connections 512 --messages $N"
