# bench/lib.sh — helpers shared by the bench scripts (compare, shaping):
# ports, a loadgen sink and load run, JSON summaries, and one ringmail
# instance under WORK. Sourced, not run. The caller sets BENCH_NAME (log
# prefix), WORK, LOADGEN, RINGMAIL, RINGMAIL_CORES, TOOL_CORES,
# SINK_CHUNKING, MESSAGES, CONNECTIONS, SIZE, PIPELINING, LOCAL_USERS,
# DKIM_DOMAIN, RUN_TIMEOUT, and kills everything in PIDS on exit; it may
# set RINGMAIL_CPUS and TOOL_CPUS (taskset CPU lists, e.g. 1 and 0) to pin
# ringmail and the tools (generator, sink) to CPUs of their own.

log() { echo "${BENCH_NAME:-bench}: $*" >&2; }
die() { log "$*"; exit 1; }

# Command prefixes pinning ringmail and the tools (empty: not pinned).
RM_PIN=()
TOOL_PIN=()
[ -z "${RINGMAIL_CPUS:-}" ] || RM_PIN=(taskset -c "$RINGMAIL_CPUS")
[ -z "${TOOL_CPUS:-}" ] || TOOL_PIN=(taskset -c "$TOOL_CPUS")

# Background processes to stop on exit.
PIDS=()

# A free loopback port (nothing accepts a connection on it), below the
# kernel's ephemeral range: a port some client connection is using as its
# local port cannot be bound, and a relay benchmark opens many of those.
free_port() {
    local p lo
    lo=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    while :; do
        p=$((10000 + RANDOM % (${lo:-32768} > 20000 ? ${lo:-32768} - 10000 : 10000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
    done
}

# wait_port PORT PID SECONDS: until PORT accepts, PID is alive, within SECONDS.
wait_port() {
    local port=$1 pid=$2 deadline=$((SECONDS + $3))
    while ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || return 1
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.1
    done
}

# jget FILE PATH...: values from a loadgen JSON summary; a path is keys
# separated by /, and a name in latency_ms selects that row ("" if absent).
jget() {
    python3 - "$@" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
for path in sys.argv[2:]:
    v = d
    for k in path.split('/'):
        if isinstance(v, list):
            v = next((x for x in v if isinstance(x, dict) and x.get('name') == k), None)
        elif isinstance(v, dict):
            v = v.get(k)
        if v is None:
            break
    print('' if v is None else v)
EOF
}

# A one-decimal float, or "-".
fmt() { python3 -c 'import sys; v=sys.argv[1]; print("-" if v in ("", "-") else f"{float(v):.1f}")' "${1:-}"; }

# start_sink PORT MESSAGES SECONDS JSON [ARGS...]: a loadgen sink in the background.
start_sink() {
    local chunking=()
    [ "$SINK_CHUNKING" = 1 ] || chunking=(--no-chunking)
    "${TOOL_PIN[@]}" "$LOADGEN" sink --listen "127.0.0.1:$1" --messages "$2" --duration "${3}s" --cores "$TOOL_CORES" --no-pin \
        "${chunking[@]}" --json "$4" "${@:5}" >"$4.out" 2>&1 &
    SINK_PID=$!
    PIDS+=("$SINK_PID")
    wait_port "$1" "$SINK_PID" 10 || die "sink did not start: $(cat "$4.out")"
}

# load PORT JSON DOMAIN: the measured workload, bounded in count and time.
load() {
    local pipe=()
    [ "$PIPELINING" = 1 ] && pipe=(--pipelining)
    timeout --signal=TERM "$RUN_TIMEOUT" "${TOOL_PIN[@]}" "$LOADGEN" smtp --target "127.0.0.1:$1" --messages "$MESSAGES" \
        --connections "$CONNECTIONS" --size "$SIZE" --cores "$TOOL_CORES" --no-pin "${pipe[@]}" \
        --to-domains "$3" --users-per-domain "$LOCAL_USERS" --from "loadgen@$DKIM_DOMAIN" --timeout 60s \
        --json "$2" >"$2.out" 2>&1 || {
        log "load run failed: $(tail -1 "$2.out")"
        return 1
    }
}

RM_REASON=""
RM_USERS=""
# ringmail_config DIR SMTP POP3 SINK: writes DIR/ringmail.toml. A caller
# may set RM_ROUTES (the [relay] routes value; default: everything to SINK),
# RM_RELAY_EXTRA (more [relay] lines) and RM_METRICS (a port for [listen]
# metrics).
ringmail_config() {
    local d=$1 metrics="" routes="{ \"*\" = \"127.0.0.1:$4\" }"
    [ -z "${RM_METRICS:-}" ] || metrics="metrics = \"127.0.0.1:$RM_METRICS\""
    [ -z "${RM_ROUTES:-}" ] || routes=$RM_ROUTES
    mkdir -p "$d/data"
    cat >"$d/ringmail.toml" <<EOF
hostname = "bench.ringmail.test"
data_dir = "$d/data"
cores = $RINGMAIL_CORES
local_domains = ["local.test"]
users_file = "$d/users"

[listen]
smtp = "127.0.0.1:$2"
pop3 = "127.0.0.1:$3"
$metrics

[relay]
permit_relay_from = ["127.0.0.0/8"]
routes = $routes
${RM_RELAY_EXTRA:-}

# The defaults, stated: 64 MiB segments (a multiple of 4096, more than
# max_message_size + 64 KiB) and 10 MiB of io_uring memory per executor.
[spool]
segment_size = 67108864

[runtime]
io_memory = 10485760
${RM_EXTRA:-}
EOF
    if [ "$RM_DKIM" != off ]; then
        cat >>"$d/ringmail.toml" <<EOF

[[dkim.sign]]
domain = "$DKIM_DOMAIN"
selector = "bench-$RM_DKIM"
key = "$(dkim_key "$RM_DKIM")"
EOF
    fi
}

# The DKIM mode of the ringmail instance started next: off, ed25519 or rsa.
RM_DKIM=off
dkim_key() { echo "$WORK/dkim/dkim/$DKIM_DOMAIN.bench-$1.pem"; }
dkim_record() { echo "$WORK/dkim/bench-$1.txt"; }

# dkim_keygen MODE: the key of MODE (ed25519 or rsa), made once with
# `ringmail dkim keygen` as a user would; its DNS record in dkim_record.
dkim_keygen() {
    local mode=$1 alg=ed25519
    [ "$mode" = rsa ] && alg=rsa2048
    [ -f "$(dkim_key "$mode")" ] && return 0
    (RM_DKIM=off; ringmail_config "$WORK/dkim" 1 2 3)
    "$RINGMAIL" dkim keygen "$DKIM_DOMAIN" "bench-$mode" --algorithm "$alg" --config "$WORK/dkim/ringmail.toml" \
        >"$(dkim_record "$mode")" 2>"$WORK/dkim/keygen-$mode.err" || {
        RM_REASON="ringmail dkim keygen: $(tail -1 "$WORK/dkim/keygen-$mode.err")"
        return 1
    }
}

# ringmail_users DIR: LOCAL_USERS mailboxes (created once, then copied).
ringmail_users() {
    local d=$1
    if [ -z "$RM_USERS" ]; then
        RM_USERS=$WORK/rm-users
        : >"$RM_USERS.pop3"
        for i in $(seq 0 $((LOCAL_USERS - 1))); do
            echo "bench-pw-$i" | "$RINGMAIL" user add "user$i@local.test" --config "$d/ringmail.toml" >/dev/null 2>"$d/user.err" || {
                RM_REASON="ringmail user add failed: $(tail -1 "$d/user.err")"
                RM_USERS=""
                return 1
            }
            echo "user$i@local.test:bench-pw-$i" >>"$RM_USERS.pop3"
        done
        cp "$d/users" "$RM_USERS"
    else
        cp "$RM_USERS" "$d/users"
    fi
}

# ringmail_start SMTP POP3 SINK: sets RM_DIR/RM_PID, or RM_REASON and fails.
ringmail_start() {
    [ -x "$RINGMAIL" ] || { RM_REASON="no binary at $RINGMAIL"; return 1; }
    RM_DIR=$WORK/rm-$RANDOM
    ringmail_config "$RM_DIR" "$1" "$2" "$3"
    ringmail_users "$RM_DIR" || return 1
    "$RINGMAIL" check-config "$RM_DIR/ringmail.toml" >"$RM_DIR/check.log" 2>&1 || {
        RM_REASON="ringmail check-config: $(tr '\n' ' ' <"$RM_DIR/check.log")"
        return 1
    }
    "${RM_PIN[@]}" "$RINGMAIL" serve --config "$RM_DIR/ringmail.toml" >"$RM_DIR/serve.log" 2>&1 &
    RM_PID=$!
    PIDS+=("$RM_PID")
    wait_port "$1" "$RM_PID" 30 || {
        RM_REASON="ringmail serve did not listen: $(tail -1 "$RM_DIR/serve.log")"
        kill "$RM_PID" 2>/dev/null || true
        return 1
    }
}

# ringmail_cpu_s [user]: CPU seconds (user + system, all threads; with
# `user`, user space only) the running ringmail has used since it started.
ringmail_cpu_s() {
    awk -v hz="$(getconf CLK_TCK)" -v user="${1:-}" '{ sub(/^.*\) /, ""); print ($12 + (user ? 0 : $13)) / hz }' \
        "/proc/$RM_PID/stat" 2>/dev/null || true
}

# ringmail_threads OUT: one line per thread of the running ringmail: tid,
# name, user and system CPU in clock ticks, voluntary and involuntary
# context switches (for `threads_delta`).
ringmail_threads() {
    local t
    : >"$1"
    for t in /proc/"$RM_PID"/task/*; do
        awk -v tid="${t##*/}" '
            FNR == NR { name = $0; sub(/^[^(]*\(/, "", name); sub(/\).*$/, "", name)
                        rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " "); ut = f[12]; st = f[13]; next }
            /^voluntary_ctxt_switches/ { v = $2 }
            /^nonvoluntary_ctxt_switches/ { nv = $2 }
            END { if (name != "") printf "%s\t%s\t%s\t%s\t%s\t%s\n", tid, name, ut, st, v, nv }' \
            "$t/stat" "$t/status" 2>/dev/null >>"$1" || true
    done
}

# threads_delta BEFORE AFTER MESSAGES: for each thread busy in between
# (≥ 1 tick), its CPU per message in µs (user + system) and its context
# switches per message (voluntary, involuntary), a line each.
threads_delta() {
    python3 - "$@" "$(getconf CLK_TCK)" <<'EOF'
import sys
before, after, n, hz = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
def rows(p):
    return {f[0]: f for f in (l.rstrip('\n').split('\t') for l in open(p)) if len(f) == 6}
b, a = rows(before), rows(after)
us = lambda ticks: ticks / hz * 1e6 / n
for tid, f in sorted(a.items(), key=lambda kv: int(kv[0])):
    g = b.get(tid, [tid, f[1], '0', '0', '0', '0'])
    d = [int(x) - int(y) for x, y in zip(f[2:], g[2:])]
    if d[0] + d[1] == 0:
        continue
    print(f'thread {tid} {f[1]}: {us(d[0] + d[1]):.0f} µs/msg ({us(d[0]):.0f} user + {us(d[1]):.0f} sys), '
          f'switches/msg {d[2] / n:.2f} voluntary, {d[3] / n:.2f} involuntary')
EOF
}

ringmail_stop() {
    kill -TERM "$RM_PID" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while kill -0 "$RM_PID" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -KILL "$RM_PID" 2>/dev/null || true
}

# ringmail_mailbox_count POP3_PORT: messages in all bench mailboxes, via POP3.
ringmail_mailbox_count() {
    local j=$WORK/pop3-$RANDOM.json
    timeout "$RUN_TIMEOUT" "$LOADGEN" pop3 --target "127.0.0.1:$1" --users "$RM_USERS.pop3" --connections 4 \
        --cores "$TOOL_CORES" --json "$j" >"$j.out" 2>&1 || { echo 0; return; }
    jget "$j" counts/messages
}
