# bench/pop3.sh — the `pop3` variant of bench/compare: ringmail's POP3 and
# Dovecot's, side by side on the same mailboxes (issue 14 item 4). Sourced by
# bench/compare after bench/lib.sh; compare calls pop3_variant from its
# variant loop. Everything here runs in a subshell with its own clean-up, so
# it leaves compare's state (users, PIDS, RM_*) as it found it.
#
# What it does:
#   1. ringmail (RINGMAIL_CORES cores) gets POP3_USERS mailboxes of
#      POP3_MESSAGES messages of SIZE, delivered over SMTP by ringmail-loadgen
#      (local delivery); it is stopped and each mailbox is written out with
#      `ringmail export-maildir`, then it is started again on the same spool.
#   2. Two private Dovecot instances (`dovecot -c CONF`, base_dir and
#      state_dir under WORK, 127.0.0.1 only, no system file touched) serve
#      those Maildirs with a passwd-file holding ringmail's own Argon2id
#      hashes: "default" (Debian's defaults: a process per login and per
#      session, no auth cache) and "tuned" (DOVECOT_TUNED below).
#   3. Each of the three servers is driven with `ringmail-loadgen pop3` in
#      turns: per measurement, the servers take turns, their order rotating
#      from round to round. RETR runs never DELE, so every run retrieves the
#      same mailboxes. Server CPU is the change of utime + stime over the
#      run, of ringmail's one process, and of Dovecot's whole process tree
#      (live processes plus the children they reaped: Dovecot's processes
#      for one login exit, and their CPU lands in the master's cutime).
#   4. A Markdown table of medians with ringmail ÷ Dovecot default ratios on
#      stdout and in WORK/pop3/results.md (compare appends it to
#      WORK/results.md).
#
# Knobs (environment, besides compare's RINGMAIL_CORES, TOOL_CORES, SIZE,
# ROUNDS, KEEP, RUN_TIMEOUT):
#   POP3_USERS=16 POP3_MESSAGES=625 (per user: 10,000 messages in all; a
#     run with S sessions uses min(S, POP3_USERS) sessions, as loadgen does,
#     so the 16-session rows need 16 users)
#   POP3_SESSIONS="1 2 4 16" POP3_PIPELINE=16 (the pipelined rows' depth)
#   POP3_LOGIN_CLIENTS="1 4" POP3_LOGIN_SECONDS=5
#   POP3_SERVERS="ringmail dovecot dovecot-tuned"; add dovecot-tuned-ssha
#     for the tuned instance with a cheap scheme ({SSHA512} of the same
#     passwords instead of Argon2id), logins only: it shows what the auth
#     cache buys Dovecot when verifying is cheap (not a like-for-like row)
#   POP3_IDLE_SESSIONS=400 POP3_IDLE_MESSAGES=20: memory per idle logged-in
#     session (bench/pop3-idle.py): that many more users, each with
#     POP3_IDLE_MESSAGES messages, log in at once on each server and stay
#     idle; the server's Pss (its whole process tree) per session is the
#     slope from half to all of them. 0 sessions: not measured.
#   POP3_CROSSCHECK=1: also run bench/pop3-retr.py (an independent Python
#     driver, 1 session) against each server once, to show whether loadgen
#     is the bottleneck.
#   DOVECOT_TUNED: the tuned instance's extra settings (default below).

POP3_USERS=${POP3_USERS:-16}
POP3_MESSAGES=${POP3_MESSAGES:-625}
POP3_SESSIONS=${POP3_SESSIONS:-"1 2 4 16"}
POP3_PIPELINE=${POP3_PIPELINE:-16}
POP3_LOGIN_CLIENTS=${POP3_LOGIN_CLIENTS:-"1 4"}
POP3_LOGIN_SECONDS=${POP3_LOGIN_SECONDS:-5}
POP3_SERVERS=${POP3_SERVERS:-"ringmail dovecot dovecot-tuned"}
POP3_CROSSCHECK=${POP3_CROSSCHECK:-0}
POP3_IDLE_SESSIONS=${POP3_IDLE_SESSIONS:-400}
POP3_IDLE_MESSAGES=${POP3_IDLE_MESSAGES:-20}

# Dovecot's own advice for speed: long-lived login and mail processes
# (service_count = 0 / a high count), processes started ahead, the auth
# cache. The cache alone does not make an Argon2id login cheap: passwd-file
# hands Dovecot the stored hash, the cache keeps that hash, and a cache hit
# verifies the password against it again (SHA1 is cached only when the
# passdb supplied no hash). Where that verification runs matters: in the one
# auth process by default (one core), in auth-worker processes with
# auth_cache_verify_password_with_worker (every core).
DOVECOT_TUNED=${DOVECOT_TUNED:-"
auth_cache_size = 10M
auth_cache_ttl = 1 hours
auth_cache_verify_password_with_worker = yes
auth_worker_max_count = 8
pop3_no_flag_updates = yes
pop3_fast_size_lookups = yes
maildir_very_dirty_syncs = yes
service pop3-login {
  service_count = 0
  process_min_avail = $(nproc)
  client_limit = 1000
}
service pop3 {
  service_count = 0
  process_min_avail = $(nproc)
}
service auth-worker {
  process_min_avail = $(nproc)
}
service auth {
  client_limit = 2000
}
"}

# proc_tree_cpu PID: CPU seconds (user + system) of PID and every live
# descendant, plus what they have reaped from children that ended.
proc_tree_cpu() {
    python3 - "$1" <<'EOF'
import os, sys
root, hz = int(sys.argv[1]), os.sysconf('SC_CLK_TCK')
stats = {}
for p in os.listdir('/proc'):
    if not p.isdigit():
        continue
    try:
        f = open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()
    except OSError:
        continue
    # after "pid (comm)": state ppid ... utime(12) stime(13) cutime(14) cstime(15), 1-based from state
    stats[int(p)] = (int(f[1]), sum(int(x) for x in f[11:15]))
tree, todo = set(), [root]
while todo:
    p = todo.pop()
    if p in stats and p not in tree:
        tree.add(p)
        todo += [c for c, (pp, _) in stats.items() if pp == p]
print(sum(stats[p][1] for p in tree) / hz if tree else '')
EOF
}

# pop3_dovecot_start NAME PORT: a private Dovecot serving $P3/maildir; sets
# DC_PID[NAME] (the master's PID, from its pid file).
pop3_dovecot_start() {
    local name=$1 port=$2 d=$P3/$1 passwd=$P3/passwd
    [ "$name" = dovecot-tuned-ssha ] && passwd=$P3/passwd-ssha
    mkdir -p "$d"
    cat >"$d/dovecot.conf" <<EOF
# A private instance for bench/compare: nothing here touches /etc/dovecot.
instance_name = bench-$name-$port
base_dir = $d/run
state_dir = $d/state
log_path = $d/dovecot.log
listen = 127.0.0.1
protocols = pop3
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_location = maildir:$P3/maildir/%u
passdb {
  driver = passwd-file
  args = $passwd
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=$P3/maildir/%u
}
# Limits only, not speed: the idle-memory phase holds POP3_IDLE_SESSIONS
# sessions at once from a few source addresses (the measured runs use 16 at
# most; Debian's defaults are 100 processes per service and 10 sessions per
# user and address).
default_process_limit = $((POP3_IDLE_SESSIONS + 100))
mail_max_userip_connections = $((POP3_IDLE_SESSIONS + 100))
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $port
  }
  inet_listener pop3s {
    port = 0
  }
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = 0
  }
}
EOF
    [ "$name" = dovecot ] || echo "$DOVECOT_TUNED" >>"$d/dovecot.conf"
    dovecot -c "$d/dovecot.conf" >"$d/start.log" 2>&1 || {
        log "pop3: $name did not start: $(tr '\n' ' ' <"$d/start.log") $(tail -3 "$d/dovecot.log" 2>/dev/null | tr '\n' ' ')"
        return 1
    }
    local deadline=$((SECONDS + 20))
    until [ -s "$d/run/master.pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || { log "pop3: $name does not listen on $port: $(tail -3 "$d/dovecot.log")"; return 1; }
        sleep 0.1
    done
    DC_PID[$name]=$(cat "$d/run/master.pid")
}

pop3_dovecot_stop() {
    local pid=${DC_PID[$1]:-}
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    DC_PID[$1]=""
}

# pop3_ringmail_serve: (re)start ringmail on RM_DIR's config and spool.
pop3_ringmail_serve() {
    "$RINGMAIL" serve --config "$RM_DIR/ringmail.toml" >>"$RM_DIR/serve.log" 2>&1 &
    RM_PID=$!
    PIDS+=("$RM_PID")
    wait_port "$POP3_RM_PORT" "$RM_PID" 60 || die "pop3: ringmail did not listen again: $(tail -1 "$RM_DIR/serve.log")"
}

# pop3_server_pid SERVER: the PID whose process tree is the server.
pop3_server_pid() {
    if [ "$1" = ringmail ]; then echo "$RM_PID"; else echo "${DC_PID[$1]}"; fi
}

# pop3_measure SERVER KIND N ROUND: one loadgen run; KIND is retr, pipe or
# logins, N the sessions (clients for logins). Appends a row to $P3/runs.tsv:
# server kind n round rate reads_per_msg cpu_ms_per_unit units bytes sessions failed
pop3_measure() {
    local server=$1 kind=$2 n=$3 round=$4 port pid j extra=() c0 c1
    port=${PORT_OF[$server]}
    pid=$(pop3_server_pid "$server")
    j=$P3/runs/$kind-$n-$server-$round.json
    case $kind in
        retr) ;;
        pipe) extra=(--pipeline "$POP3_PIPELINE") ;;
        logins) extra=(--logins --duration "${POP3_LOGIN_SECONDS}s") ;;
    esac
    c0=$(proc_tree_cpu "$pid")
    timeout --signal=TERM "$RUN_TIMEOUT" "$LOADGEN" pop3 --target "127.0.0.1:$port" --users "$P3/users.pop3" \
        --connections "$n" --cores "$TOOL_CORES" --no-pin --timeout 60s "${extra[@]}" --json "$j" >"$j.out" 2>&1 || {
        log "pop3: $server $kind $n round $round: loadgen failed: $(tail -1 "$j.out")"
        printf '%s\t%s\t%s\t%s\t\t\t\t\t\t\t\n' "$server" "$kind" "$n" "$round" >>"$P3/runs.tsv"
        return 0
    }
    c1=$(proc_tree_cpu "$pid")
    local rate units reads bytes sessions failed
    { read -r rate; read -r units; read -r reads; read -r bytes; read -r sessions; read -r failed; } < <(
        if [ "$kind" = logins ]; then
            jget "$j" throughput/sessions_per_s counts/sessions counts/retrieval_reads counts/bytes counts/sessions counts/failed_sessions
        else
            jget "$j" throughput/messages_per_s counts/messages counts/retrieval_reads counts/bytes counts/sessions counts/failed_sessions
        fi
    )
    local cpu="" rpm=""
    [ -n "$c0" ] && [ -n "$c1" ] && [ "${units:-0}" -gt 0 ] && cpu=$(python3 -c "print(($c1 - $c0) * 1000 / $units)")
    [ "$kind" != logins ] && [ "${units:-0}" -gt 0 ] && rpm=$(python3 -c "print($reads / $units)")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$kind" "$n" "$round" "$rate" "$rpm" "$cpu" \
        "$units" "$bytes" "$sessions" "$failed" >>"$P3/runs.tsv"
    local what="ms per login"
    [ "$kind" = logins ] || { what="µs per RETR"; [ -z "$cpu" ] || cpu=$(python3 -c "print($cpu * 1000)"); }
    log "pop3: round $round $kind n=$n $server: $(fmt "$rate")/s, reads/msg ${rpm:0:4}, server CPU $(fmt "$cpu") $what ($units, ${failed:-?} failed sessions)"
}

# pop3_fill: ringmail with POP3_USERS × POP3_MESSAGES messages, the same
# users in Dovecot's passwd-file, the Maildirs exported.
pop3_fill() {
    local smtp sink total i
    smtp=$(free_port); POP3_RM_PORT=$(free_port); sink=$(free_port)
    # The idle-memory users come after the measured ones (user16 … with
    # the defaults): a POP3 login locks its maildrop, so every idle session
    # needs a user of its own.
    LOCAL_USERS=$((POP3_USERS + POP3_IDLE_SESSIONS))
    RM_DKIM=off
    ringmail_start "$smtp" "$POP3_RM_PORT" "$sink" || die "pop3: ringmail: $RM_REASON"
    head -n "$POP3_USERS" "$RM_USERS.pop3" >"$P3/users.pop3"
    tail -n +"$((POP3_USERS + 1))" "$RM_USERS.pop3" >"$P3/idle.pop3"
    # ringmail's users file is `address:{ARGON2ID}$argon2id$…`: a passwd-file line as it stands.
    grep -v '^#' "$RM_DIR/users" | grep . >"$P3/passwd"
    # The same passwords as salted SHA-512 (Dovecot's {SSHA512}), for dovecot-tuned-ssha.
    python3 - "$P3/users.pop3" >"$P3/passwd-ssha" <<'EOF'
import base64, hashlib, os, sys
for line in open(sys.argv[1]):
    user, pw = line.rstrip('\n').split(':', 1)
    salt = os.urandom(8)
    print(f"{user}:{{SSHA512}}{base64.b64encode(hashlib.sha512(pw.encode() + salt).digest() + salt).decode()}")
EOF
    total=$((POP3_USERS * POP3_MESSAGES))
    local to=()
    for i in $(seq 0 $((POP3_USERS - 1))); do to+=("user$i@local.test"); done
    log "pop3: filling ringmail: $POP3_USERS users × $POP3_MESSAGES messages of $SIZE over SMTP"
    timeout "$RUN_TIMEOUT" "$LOADGEN" smtp --target "127.0.0.1:$smtp" --messages "$total" --connections "$POP3_USERS" \
        --size "$SIZE" --cores "$TOOL_CORES" --no-pin --pipelining --to "$(IFS=,; echo "${to[*]}")" \
        --from "loadgen@$DKIM_DOMAIN" --timeout 60s --json "$P3/fill.json" >"$P3/fill.out" 2>&1 ||
        die "pop3: filling ringmail failed: $(tail -1 "$P3/fill.out")"
    [ "$(jget "$P3/fill.json" counts/accepted)" = "$total" ] ||
        die "pop3: ringmail accepted $(jget "$P3/fill.json" counts/accepted) of $total messages"
    local idle_total=$((POP3_IDLE_SESSIONS * POP3_IDLE_MESSAGES))
    if [ "$idle_total" -gt 0 ]; then
        to=()
        for i in $(seq "$POP3_USERS" $((POP3_USERS + POP3_IDLE_SESSIONS - 1))); do to+=("user$i@local.test"); done
        log "pop3: filling ringmail: $POP3_IDLE_SESSIONS idle-session users × $POP3_IDLE_MESSAGES messages"
        timeout "$RUN_TIMEOUT" "$LOADGEN" smtp --target "127.0.0.1:$smtp" --messages "$idle_total" --connections "$POP3_USERS" \
            --size "$SIZE" --cores "$TOOL_CORES" --no-pin --pipelining --to "$(IFS=,; echo "${to[*]}")" \
            --from "loadgen@$DKIM_DOMAIN" --timeout 60s --json "$P3/fill-idle.json" >"$P3/fill-idle.out" 2>&1 ||
            die "pop3: filling the idle users failed: $(tail -1 "$P3/fill-idle.out")"
        [ "$(jget "$P3/fill-idle.json" counts/accepted)" = "$idle_total" ] ||
            die "pop3: ringmail accepted $(jget "$P3/fill-idle.json" counts/accepted) of $idle_total messages"
        total=$((total + idle_total))
    fi
    ringmail_stop
    mkdir -p "$P3/maildir"
    local n got=0
    for i in $(seq 0 $((POP3_USERS + POP3_IDLE_SESSIONS - 1))); do
        n=$("$RINGMAIL" export-maildir "user$i@local.test" "$P3/maildir/user$i@local.test" --config "$RM_DIR/ringmail.toml" \
            2>>"$P3/export.err") || die "pop3: export-maildir user$i: $(tail -1 "$P3/export.err")"
        n=${n#exported }; got=$((got + ${n%% *}))
    done
    [ "$got" = "$total" ] || die "pop3: export-maildir wrote $got of $total messages"
    # Dovecot reads them as the mail user of its static userdb (nobody).
    chown -R 65534:65534 "$P3/maildir"
    log "pop3: $got messages exported to $P3/maildir"
    pop3_ringmail_serve
}

# pop3_idle SERVER: POP3_IDLE_SESSIONS idle logged-in sessions at once
# (bench/pop3-idle.py); the result in $P3/idle-SERVER.json.
# ringmail is restarted for it with MIMALLOC_PURGE_DELAY=0, so that its
# allocator gives freed pages back at once (by default mimalloc keeps them
# a while, and each login's Argon2id frees a 19 MiB buffer: the process's
# memory then says more about those than about the sessions), and again
# normally afterwards; Dovecot (glibc malloc) runs as it is.
pop3_idle() {
    local s=$1 j=$P3/idle-$1.json
    if [ "$s" = ringmail ]; then
        ringmail_stop
        MIMALLOC_PURGE_DELAY=0 pop3_ringmail_serve
    fi
    timeout --signal=TERM "$RUN_TIMEOUT" python3 "$ROOT/bench/pop3-idle.py" "127.0.0.1:${PORT_OF[$s]}" "$P3/idle.pop3" \
        "$(pop3_server_pid "$s")" --sessions "$POP3_IDLE_SESSIONS" >"$j" 2>"$j.err" ||
        log "pop3: idle sessions on $s failed: $(tail -1 "$j.err")"
    [ -s "$j" ] && log "pop3: idle sessions on $s: $(cat "$j")"
    if [ "$s" = ringmail ]; then
        ringmail_stop
        pop3_ringmail_serve
    fi
}

# pop3_crosscheck: loadgen and an independent driver, 1 session each, one
# pass, twice in turns, on every server (issue 14 item 5). Rows in
# $P3/crosscheck.tsv: server rep loadgen_msgs_per_s loadgen_bytes
# python_msgs_per_s python_bytes python_cpu_s python_elapsed_s
pop3_crosscheck() {
    local server port j py rep
    for rep in 1 2; do
        for server in $POP3_SERVERS; do
            [ "$server" != dovecot-tuned-ssha ] || continue
            port=${PORT_OF[$server]}
            j=$P3/runs/crosscheck-$server-$rep
            "$LOADGEN" pop3 --target "127.0.0.1:$port" --users "$P3/users.pop3" --connections 1 --cores 1 --no-pin \
                --json "$j-loadgen.json" >"$j-loadgen.out" 2>&1 || true
            py=$(timeout "$RUN_TIMEOUT" python3 "$ROOT/bench/pop3-retr.py" "127.0.0.1:$port" "$P3/users.pop3" 2>"$j-py.err") || py=""
            echo "$py" >"$j-py.json"
            printf '%s\t%s\t%s\t%s\t%s\n' "$server" "$rep" "$(jget "$j-loadgen.json" throughput/messages_per_s)" \
                "$(jget "$j-loadgen.json" counts/bytes)" \
                "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["messages_per_s"], d["bytes"], d["driver_cpu_s"], d["elapsed_s"], sep="\t")' "$py" 2>/dev/null)" \
                >>"$P3/crosscheck.tsv"
            log "pop3: crosscheck $server: loadgen $(fmt "$(jget "$j-loadgen.json" throughput/messages_per_s)") msg/s, python driver: ${py:-failed $(tail -1 "$j-py.err")}"
        done
    done
}

pop3_body() {
    P3=$WORK/pop3
    mkdir -p "$P3/runs"
    : >"$P3/runs.tsv"
    : >"$P3/crosscheck.tsv"
    PIDS=()
    declare -gA DC_PID=() PORT_OF=()
    trap 'for s in "${!DC_PID[@]}"; do pop3_dovecot_stop "$s"; done; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
          [ "$KEEP" = 1 ] || rm -rf "$P3/maildir" "$P3"/rm-* "$P3"/dovecot*/ "$P3/rm-users"*' EXIT
    command -v dovecot >/dev/null || die "pop3: needs Dovecot: DEBIAN_FRONTEND=noninteractive apt-get install -y dovecot-pop3d"
    [ "$(id -u)" = 0 ] || die "pop3: Dovecot's private instance needs root (it switches to the users dovecot, dovenull and nobody)"
    # lib.sh's ringmail helpers keep their files in WORK: ours go under WORK/pop3.
    WORK=$P3
    RM_USERS=""
    local dcver load0 s
    dcver=$(dovecot --version 2>/dev/null | cut -d' ' -f1)
    load0=$(cut -d' ' -f1-3 /proc/loadavg)
    pop3_fill
    PORT_OF[ringmail]=$POP3_RM_PORT
    for s in $POP3_SERVERS; do
        case $s in
            ringmail) ;;
            dovecot | dovecot-tuned | dovecot-tuned-ssha)
                PORT_OF[$s]=$(free_port)
                pop3_dovecot_start "$s" "${PORT_OF[$s]}" || die "pop3: $s did not start"
                ;;
            *) die "POP3_SERVERS: $s is not one of ringmail, dovecot, dovecot-tuned, dovecot-tuned-ssha" ;;
        esac
    done
    # Memory per idle session first: ringmail is restarted for it.
    if [ "$POP3_IDLE_SESSIONS" -gt 0 ]; then
        for s in $POP3_SERVERS; do
            [ "$s" != dovecot-tuned-ssha ] || continue
            pop3_idle "$s"
        done
    fi
    # Warm-up (not measured): every server reads every message once, so the
    # page cache, Dovecot's index files and both auth caches start warm, and
    # the counts show that every server holds every message.
    local total=$((POP3_USERS * POP3_MESSAGES)) got
    for s in $POP3_SERVERS; do
        [ "$s" != dovecot-tuned-ssha ] || continue
        "$LOADGEN" pop3 --target "127.0.0.1:${PORT_OF[$s]}" --users "$P3/users.pop3" --connections 4 --cores "$TOOL_CORES" \
            --no-pin --json "$P3/runs/warmup-$s.json" >"$P3/runs/warmup-$s.out" 2>&1 || die "pop3: warm-up on $s failed: $(tail -1 "$P3/runs/warmup-$s.out")"
        got=$(jget "$P3/runs/warmup-$s.json" counts/messages)
        [ "$got" = "$total" ] || die "pop3: $s serves $got of $total messages"
        log "pop3: warm-up $s: $got messages, $(jget "$P3/runs/warmup-$s.json" counts/bytes) bytes"
        printf '%s\t%s\n' "$s" "$(jget "$P3/runs/warmup-$s.json" counts/bytes)" >>"$P3/bytes.tsv"
    done
    [ "$POP3_CROSSCHECK" = 1 ] && pop3_crosscheck
    # Measurements, the servers taking turns in each, order rotating by round.
    local -a servers
    read -ra servers <<<"$POP3_SERVERS"
    local r k n kind ns=${#servers[@]} t0=$SECONDS
    for r in $(seq 1 "$ROUNDS"); do
        for kind in retr pipe logins; do
            local counts=$POP3_SESSIONS
            [ "$kind" = logins ] && counts=$POP3_LOGIN_CLIENTS
            for n in $counts; do
                for k in $(seq 0 $((ns - 1))); do
                    s=${servers[$(((k + r - 1) % ns))]}
                    [ "$s" != dovecot-tuned-ssha ] || [ "$kind" = logins ] || continue
                    pop3_measure "$s" "$kind" "$n" "$r"
                done
            done
        done
    done
    local load1
    load1=$(cut -d' ' -f1-3 /proc/loadavg)
    pop3_table "$dcver" "$load0" "$load1" $((SECONDS - t0)) >"$P3/results.md"
    if [ "$POP3_IDLE_SESSIONS" -gt 0 ]; then pop3_idle_table >>"$P3/results.md"; fi
}

# pop3_idle_table: the idle-session memory lines, from $P3/idle-*.json.
pop3_idle_table() {
    python3 - "$P3" "$POP3_IDLE_SESSIONS" "$POP3_IDLE_MESSAGES" "$SIZE" $POP3_SERVERS <<'EOF'
import json, os, sys
p3, n, msgs, size, servers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
names = {'ringmail': 'ringmail', 'dovecot': 'Dovecot default', 'dovecot-tuned': 'Dovecot tuned'}
print(f'\nMemory per idle logged-in session (bench/pop3-idle.py: {n} sessions at once, one user each, '
      f'{msgs} messages of {size} per mailbox; USER, PASS, STAT, then idle; Pss of the server\'s whole process tree, '
      'slope from half to all of the sessions):\n')
print('| server | sessions logged in | Pss per session, KiB | Pss_Anon per session, KiB | processes (none / half / all) | Pss, MiB (none / half / all) |')
print('|---|--:|--:|--:|---|---|')
for s in servers:
    path = os.path.join(p3, f'idle-{s}.json')
    if s == 'dovecot-tuned-ssha' or not os.path.exists(path) or not os.path.getsize(path):
        continue
    r = json.load(open(path))
    kib = lambda b: f'{b / 1024:.1f}' if b is not None else '—'
    failed = f" ({r['error_count']} failed)" if r['error_count'] else ''
    print(f"| {names.get(s, s)} | {r['sessions']}{failed} | {kib(r['per_session_pss_bytes'])} | "
          f"{kib(r['per_session_anon_bytes'])} | {' / '.join(map(str, r['processes']))} | "
          f"{' / '.join(f'{k / 1024:.1f}' for k in r['pss_kb'])} |")
EOF
}

# pop3_table DOVECOT_VERSION LOAD_BEFORE LOAD_AFTER SECONDS: the Markdown table.
pop3_table() {
    python3 - "$P3/runs.tsv" "$P3/crosscheck.tsv" "$P3/bytes.tsv" "$1" "$2" "$3" "$4" "$POP3_USERS" "$POP3_MESSAGES" \
        "$SIZE" "$ROUNDS" "$RINGMAIL_CORES" "$TOOL_CORES" "$POP3_PIPELINE" "$POP3_LOGIN_SECONDS" "$(nproc)" \
        "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" "$(uname -r)" \
        "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo '+dirty')" <<'EOF'
import statistics, sys
(runs, cross, bytes_f, dcver, load0, load1, secs, users, msgs, size, rounds, rm_cores, tool_cores, depth, login_s,
 cpus, model, kernel, commit) = sys.argv[1:]
rows = [l.rstrip('\n').split('\t') for l in open(runs) if l.strip()]
data = {}
for r in rows:
    server, kind, n, rnd, rate, rpm, cpu, units, nbytes, sessions, failed = (r + [''] * 11)[:11]
    data.setdefault((kind, n, server), []).append((rate, rpm, cpu, failed))
def med(vals):
    v = [float(x) for x in vals if x not in ('', None)]
    return statistics.median(v) if v else None
def rng(vals):
    v = [float(x) for x in vals if x not in ('', None)]
    return (min(v), max(v)) if len(v) > 1 else None
def f(v, d=0):
    return '—' if v is None else f'{v:,.{d}f}'
servers = [s for s in ('ringmail', 'dovecot', 'dovecot-tuned', 'dovecot-tuned-ssha') if any(k[2] == s for k in data)]
names = {'ringmail': 'ringmail', 'dovecot': 'Dovecot default', 'dovecot-tuned': 'Dovecot tuned',
         'dovecot-tuned-ssha': 'Dovecot tuned, {SSHA512} (logins only)'}
print(f'Machine: {cpus} CPUs, {model}, Linux {kernel}. Dovecot {dcver}; ringmail {commit}, cores = {rm_cores}. '
      f'Load average before / after: {load0} / {load1} ({secs} s of measurement).')
print(f'Mailboxes: {users} users × {msgs} messages of {size} (the same messages: ringmail\'s spool, exported to '
      f'Maildir for Dovecot); ringmail-loadgen pop3 on {tool_cores} core(s), no DELE; '
      f'medians of {rounds} round(s), the servers taking turns, order rotating; range in brackets.\n')
print('| measurement | ' + ' | '.join(names[s] for s in servers) + ' | ringmail ÷ Dovecot default |')
print('|---|' + '---|' * (len(servers) + 1))
def label(kind, n):
    if kind == 'retr':
        return f'RETR msgs/s, {n} session{"s" if n != "1" else ""}, one at a time'
    if kind == 'pipe':
        return f'RETR msgs/s, {n} session{"s" if n != "1" else ""}, {depth} pipelined'
    return f'logins/s, {n} client{"s" if n != "1" else ""} ({login_s} s)'
keys = []
for kind in ('retr', 'pipe', 'logins'):
    for n in sorted({k[1] for k in data if k[0] == kind}, key=int):
        keys.append((kind, n))
def ratio(a, b):
    return f'{a / b:.2f}×' if a is not None and b else '—'
def cell(vals, d=0):
    m, r = med(vals), rng(vals)
    if m is None:
        return '—'
    return f'{f(m, d)}' + (f' ({f(r[0], d)}–{f(r[1], d)})' if r and d == 0 else '')
medians = {}
for kind, n in keys:
    cells, ms = [], {}
    for s in servers:
        g = data.get((kind, n, s), [])
        ms[s] = med(x[0] for x in g)
        failed = sum(int(x[3] or 0) for x in g)
        cells.append(cell([x[0] for x in g]) + (f' ({failed} failed sessions)' if failed else ''))
    medians[(kind, n)] = ms
    print(f'| {label(kind, n)} | ' + ' | '.join(cells) + f' | {ratio(ms.get("ringmail"), ms.get("dovecot"))} |')
# Reads per message and CPU.
for kind, what in (('retr', 'client reads per message, one at a time'), ('pipe', f'client reads per message, {depth} pipelined')):
    ns = sorted({k[1] for k in data if k[0] == kind}, key=int)
    if not ns:
        continue
    cells = []
    for s in servers:
        cells.append(' / '.join(f(med(x[1] for x in data.get((kind, n, s), [])), 2) for n in ns))
    print(f'| {what} ({" / ".join(ns)} sessions) | ' + ' | '.join(cells) + ' | |')
for kind, what in (('retr', 'server CPU per RETR, µs, one at a time'), ('pipe', 'server CPU per RETR, µs, pipelined'),
                   ('logins', 'server CPU per login, ms')):
    ns = sorted({k[1] for k in data if k[0] == kind}, key=int)
    if not ns:
        continue
    scale = 1 if kind == 'logins' else 1000
    cells, first = [], {}
    for s in servers:
        vals = [med(x[2] for x in data.get((kind, n, s), [])) for n in ns]
        first[s] = vals
        cells.append(' / '.join(f(v * scale if v is not None else None, 2 if kind == 'logins' else 0) for v in vals))
    rs = [ratio(a, b) for a, b in zip(first.get('ringmail', []), first.get('dovecot', []))]
    print(f'| {what} ({" / ".join(ns)} {"clients" if kind == "logins" else "sessions"}) | ' + ' | '.join(cells)
          + f' | {" / ".join(rs)} |')
print()
b = dict(l.rstrip('\n').split('\t') for l in open(bytes_f) if l.strip())
if b:
    same = len(set(b.values())) == 1
    print('Bytes retrieved per pass (warm-up): ' + ', '.join(f'{names[s]} {int(v):,}' for s, v in b.items() if v)
          + ('; the same on every server.' if same else '; NOT the same: the servers did not serve identical messages.'))
c = [l.rstrip('\n').split('\t') for l in open(cross) if l.strip()]
if c:
    print('\nIndependent driver (bench/pop3-retr.py, Python, blocking sockets), 1 session, one pass, against '
          'ringmail-loadgen pop3 --connections 1 --cores 1:')
    by = {}
    for row in c:
        by.setdefault(row[0], []).append((row + [''] * 8)[:8])
    for server, g in by.items():
        lg = ' / '.join(f(float(x[2])) if x[2] else '—' for x in g)
        py = ' / '.join(f(float(x[4])) if x[4] else 'failed' for x in g)
        cpu = max((float(x[6]) / float(x[7]) * 100 for x in g if x[6] and x[7]), default=None)
        same = all(x[3] == x[5] for x in g)
        print(f'- {names[server]}: loadgen {lg} msg/s, Python driver {py} msg/s (turns: loadgen, Python, loadgen, Python; '
              f'the driver used at most {f(cpu)} % of a core); '
              + ('the same bytes' if same else 'bytes differ: ' + ', '.join(f'{x[3]} / {x[5]}' for x in g)))
# How much of a pass's server CPU is its logins (one per user per pass).
per_login = {s: med(x[2] for x in data.get(('logins', '1', s), [])) for s in servers}
if any(v is not None for v in per_login.values()):
    print('\nEach RETR pass logs in once per user: ' + ', '.join(
        f'{names[s]} {int(users) * v / (int(users) * int(msgs)) * 1000:.0f} µs'
        for s, v in per_login.items() if v is not None and s != 'dovecot-tuned-ssha')
        + ' of the CPU per RETR above is that login (CPU per login with 1 client ÷ messages per user).')
# Targets (issue 14).
print('\nTargets (issue 14), medians:')
def tgt(name, a, b, want):
    if a is None or not b:
        print(f'- {name}: not measured')
        return
    print(f'- {name}: {a / b:.2f}× (want ≥ {want}×): {"met" if a / b >= want else "NOT met"}')
for n in ('4',):
    for kind in ('retr', 'pipe'):
        m = medians.get((kind, n), {})
        tgt(f'RETR, {n} sessions, {"pipelined" if kind == "pipe" else "one at a time"}', m.get('ringmail'), m.get('dovecot'), 2)
m = medians.get(('retr', '1'), {})
tgt('RETR, 1 session', m.get('ringmail'), m.get('dovecot'), 1)
for n in sorted({k[1] for k in keys if k[0] == 'logins'}, key=int):
    m = medians.get(('logins', n), {})
    tgt(f'logins, {n} client(s)', m.get('ringmail'), m.get('dovecot'), 10)
for kind in ('retr', 'pipe'):
    a = [med(x[2] for x in data.get((kind, n, 'ringmail'), [])) for n in ('1', '4')]
    d = [med(x[2] for x in data.get((kind, n, 'dovecot'), [])) for n in ('1', '4')]
    for n, x, y in zip(('1', '4'), a, d):
        if x is not None and y is not None:
            print(f'- CPU per RETR, {n} session(s), {"pipelined" if kind == "pipe" else "one at a time"}: '
                  f'ringmail {x * 1000:.0f} µs vs Dovecot default {y * 1000:.0f} µs: {"met" if x <= y else "NOT met"}')
EOF
}

# pop3_variant: the whole POP3 comparison, in a subshell (own trap, own WORK).
pop3_variant() {
    (pop3_body) || log "pop3: failed (see $WORK/pop3)"
}
