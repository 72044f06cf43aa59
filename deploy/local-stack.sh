#!/usr/bin/env bash
# The whole automl service on ONE machine, without containers, on loopback only:
# PostgreSQL 15, `automl db upgrade`, a Ray head, N `automl worker` processes and
# `automl dashboard` (optuna-dashboard, as the read-only role). Everything it starts is recorded in the state directory,
# and `down` stops exactly that, nothing else.
#
#   deploy/local-stack.sh up [--workers N] [--dir DIR] [--no-ray]
#   deploy/local-stack.sh status [--dir DIR]
#   deploy/local-stack.sh down [--dir DIR] [--purge]
#
# State directory: --dir, else $AUTOML_STACK_DIR, else $PWD/.automl-stack. After `up`,
# `source <state dir>/env` gives clients AUTOML_STORAGE (a URL without a password) and
# PGPASSFILE (a 0600 file with it). See deploy/README.md.
#
# Environment: PYTHON (default python3), AUTOML (automl), RAY (ray), PGSERVER_BINDIR (PostgreSQL server binaries; default: pg_config
# --bindir or /usr/lib/postgresql/15/bin, else the newest /usr/lib/postgresql/*/bin),
# AUTOML_STACK_TIMEOUT (seconds for each wait; default 120).
set -euo pipefail

PROG=${0##*/}
PYTHON=${PYTHON:-python3}
AUTOML=${AUTOML:-automl}
RAY=${RAY:-ray}
TIMEOUT=${AUTOML_STACK_TIMEOUT:-120}
PG_SERVER_USER=postgres # the OS user PostgreSQL runs as when this script runs as root
HOST=127.0.0.1

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
    exit "${1:-2}"
}

# ---- arguments -----------------------------------------------------------------------
[[ $# -ge 1 ]] || usage
COMMAND=$1
shift
STATE_DIR=${AUTOML_STACK_DIR:-$PWD/.automl-stack}
N_WORKERS=2
WITH_RAY=1
PURGE=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --workers) [[ $# -ge 2 ]] || die "--workers needs a number"; N_WORKERS=$2; shift 2 ;;
        --workers=*) N_WORKERS=${1#*=}; shift ;;
        --dir) [[ $# -ge 2 ]] || die "--dir needs a path"; STATE_DIR=$2; shift 2 ;;
        --dir=*) STATE_DIR=${1#*=}; shift ;;
        --no-ray) WITH_RAY=0; shift ;;
        --purge) PURGE=1; shift ;;
        -h|--help) usage 0 ;;
        *) die "unknown argument: $1 (see $PROG --help)" ;;
    esac
done
[[ $N_WORKERS =~ ^[0-9]+$ ]] || die "--workers must be a whole number, not '$N_WORKERS'"
[[ $TIMEOUT =~ ^[0-9]+$ && $TIMEOUT -gt 0 ]] || die "AUTOML_STACK_TIMEOUT must be seconds"
if [[ $COMMAND == up ]]; then mkdir -p -- "$STATE_DIR"; fi
if [[ -d $STATE_DIR ]]; then
    STATE_DIR=$(cd -- "$STATE_DIR" && pwd -P)
elif [[ $COMMAND == down || $COMMAND == status ]]; then
    echo "no stack in $STATE_DIR (nothing running)"
    if [[ $COMMAND == down ]]; then exit 0; else exit 3; fi
fi

RUN_DIR=$STATE_DIR/run         # pid files: "PID STARTTIME" (STARTTIME guards against pid reuse)
LOG_DIR=$STATE_DIR/logs
ENV_FILE=$STATE_DIR/env
STACK_CONF=$STATE_DIR/stack.conf
PGPASS=$STATE_DIR/pgpass                # role automl: owner, migrations, workers, clients
PGPASS_READER=$STATE_DIR/pgpass.reader  # role automl_reader: the dashboard, read only
PGPASS_SUPER=$STATE_DIR/pgpass.super    # role postgres: this script only
RAY_TOKEN=$STATE_DIR/ray/auth_token

# ---- processes: start, record, check, stop (only what we recorded) ---------------------
read_stat() { # PID: STAT=(fields of /proc/PID/stat after the command name; 0 = state)
    local line
    { IFS= read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
    line=${line##*) }
    read -ra STAT <<<"$line"
}

starttime_of() { # PID: field 22 of /proc/PID/stat, its start time in clock ticks
    read_stat "$1" || return 1
    printf '%s\n' "${STAT[19]}"
}

record_pid() { # NAME PID
    local start
    start=$(starttime_of "$2") || die "process $2 ($1) exited right after it started"
    printf '%s %s\n' "$2" "$start" >"$RUN_DIR/$1.pid"
}

recorded_pid() { # PIDFILE -> PID if that very process (same start time) still runs
    local pid start
    [[ -f $1 ]] || return 1
    read -r pid start <"$1" || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    read_stat "$pid" || return 1
    [[ ${STAT[19]} == "$start" && ${STAT[0]} != [ZX] ]] || return 1
    printf '%s\n' "$pid"
}

start_bg() { # NAME LOGFILE CMD...: run in its own session, detached from our stdio
    local name=$1 logfile=$2
    shift 2
    # Not a process-group leader here (no job control), so setsid execs without forking
    # and $! is the command itself; its session id is its pid.
    setsid "$@" </dev/null >>"$logfile" 2>&1 &
    record_pid "$name" "$!"
}

wait_gone() { # SECONDS PIDFILE...: wait until none of them runs; 1 on timeout
    local deadline=$((SECONDS + $1)) f alive
    shift
    while :; do
        alive=0
        for f in "$@"; do
            if recorded_pid "$f" >/dev/null; then alive=1; fi
        done
        [[ $alive == 0 ]] && return 0
        [[ $SECONDS -ge $deadline ]] && return 1
        sleep 0.2
    done
}

session_members() { # PID STARTTIME: processes of the session PID leads, started no earlier
    local d pid
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        read_stat "$pid" || continue
        if [[ ${STAT[3]} == "$1" && ${STAT[19]} -ge $2 && ${STAT[0]} != [ZX] ]]; then
            printf '%s\n' "$pid"
        fi
    done
}

stop_recorded() { # GRACE_SECONDS PIDFILE...: SIGTERM, wait, then SIGKILL what is left of
    # each process and of the session it leads (Ray's daemons, a worker's children)
    local grace=$1 f pid start p
    shift
    local -a sessions=()
    for f in "$@"; do
        [[ -f $f ]] || continue
        read -r pid start <"$f" || continue
        sessions+=("$pid:$start")
        if pid=$(recorded_pid "$f"); then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    wait_gone "$grace" "$@" || true
    for f in "$@"; do
        if pid=$(recorded_pid "$f"); then
            log "$(basename "$f" .pid) (pid $pid) ignored SIGTERM for ${grace}s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    for p in "${sessions[@]}"; do # leftovers in the sessions we created
        local -a left=()
        mapfile -t left < <(session_members "${p%%:*}" "${p##*:}")
        if [[ ${#left[@]} -gt 0 ]]; then
            kill -TERM "${left[@]}" 2>/dev/null || true
            sleep 1
            mapfile -t left < <(session_members "${p%%:*}" "${p##*:}")
            [[ ${#left[@]} -eq 0 ]] || kill -KILL "${left[@]}" 2>/dev/null || true
        fi
    done
    wait_gone 10 "$@" || log "warning: still running after SIGKILL: $*"
    rm -f -- "$@"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

free_ports() { # N: N distinct free TCP ports on 127.0.0.1, one a line
    "$PYTHON" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print("\n".join(str(s.getsockname()[1]) for s in socks))
EOF
}

new_secret() { od -An -tx1 -N"${1:-24}" /dev/urandom | tr -d ' \n'; } # hex, BYTES

# ---- PostgreSQL ----------------------------------------------------------------------
find_pg_bindir() {
    local d
    if [[ -n ${PGSERVER_BINDIR:-} ]]; then
        printf '%s\n' "$PGSERVER_BINDIR"
        return
    fi
    if command -v pg_config >/dev/null; then
        d=$(pg_config --bindir 2>/dev/null || true)
        if [[ -n $d && -x $d/initdb && -x $d/pg_ctl ]]; then printf '%s\n' "$d"; return; fi
    fi
    if [[ -x /usr/lib/postgresql/15/bin/initdb ]]; then
        printf '%s\n' /usr/lib/postgresql/15/bin
        return
    fi
    d=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null |
        sort -V | tail -n 1)
    [[ -n $d && -x $d/initdb ]] || return 1
    printf '%s\n' "$d"
}

PG_PREFIX=()
if [[ $(id -u) == 0 ]]; then # initdb refuses root: run the server as the postgres user
    id -u "$PG_SERVER_USER" >/dev/null 2>&1 ||
        die "running as root but there is no '$PG_SERVER_USER' user to run PostgreSQL as"
    if command -v runuser >/dev/null; then
        PG_PREFIX=(runuser -u "$PG_SERVER_USER" --)
    else
        PG_PREFIX=(setpriv "--reuid=$(id -u "$PG_SERVER_USER")"
                   "--regid=$(id -g "$PG_SERVER_USER")" --init-groups --)
    fi
fi

as_pg() { # run a server binary as the server's OS user, with no PG* variables from us
    local -a unset_pg=()
    local v
    for v in $(compgen -e); do [[ $v == PG* ]] && unset_pg+=(-u "$v"); done
    "${PG_PREFIX[@]}" env "${unset_pg[@]}" LC_ALL=C "$@"
}

pg_dir() { # where the cluster lives: $STATE_DIR/pg, or the directory recorded in pgdir
    if [[ -f $STATE_DIR/pgdir ]]; then cat "$STATE_DIR/pgdir"; else echo "$STATE_DIR/pg"; fi
}

make_pg_dir() { # a directory the server user owns and can reach; records it if elsewhere
    local dir=$STATE_DIR/pg
    if [[ -f $STATE_DIR/pgdir ]]; then
        dir=$(cat "$STATE_DIR/pgdir")
        [[ -d $dir ]] || die "the recorded PostgreSQL directory $dir is gone"
        return 0
    fi
    mkdir -p -m 700 -- "$dir"
    if [[ ${#PG_PREFIX[@]} -gt 0 ]]; then
        chown "$PG_SERVER_USER:" "$dir"
        if ! "${PG_PREFIX[@]}" test -w "$dir"; then
            # A parent of the state dir is closed to the postgres user (e.g. 0700 under
            # /tmp/pytest-of-root): keep the cluster in a private dir it can reach.
            rmdir -- "$dir"
            dir=$(mktemp -d "${TMPDIR:-/tmp}/automl-stack-pg.XXXXXX")
            chown "$PG_SERVER_USER:" "$dir"
            printf '%s\n' "$dir" >"$STATE_DIR/pgdir"
            log "postgres cannot reach $STATE_DIR; its cluster lives in $dir"
        fi
    fi
}

pg_sql() { # DBNAME: run the SQL on stdin as the superuser (passwords never in argv)
    PGPASSFILE=$PGPASS_SUPER PGCONNECT_TIMEOUT=10 timeout "$TIMEOUT" \
        "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PG_PORT" -U postgres \
        -d "$1" >>"$LOG_DIR/setup.log" 2>&1 ||
        die "SQL as postgres on database $1 failed; see $LOG_DIR/setup.log"
}

pg_initdb() {
    local dir=$1 super_pw automl_pw reader_pw
    super_pw=$(new_secret)
    automl_pw=$(new_secret)
    reader_pw=$(new_secret)
    (umask 077
     printf '%s\n' "$super_pw" >"$dir/pwfile"
     printf '%s:*:*:postgres:%s\n' "$HOST" "$super_pw" >"$PGPASS_SUPER"
     printf '%s:*:*:automl:%s\n' "$HOST" "$automl_pw" >"$PGPASS"
     printf '%s:*:*:automl_reader:%s\n' "$HOST" "$reader_pw" >"$PGPASS_READER")
    [[ ${#PG_PREFIX[@]} -eq 0 ]] || chown "$PG_SERVER_USER:" "$dir/pwfile"
    log "initdb into $dir/data"
    if ! as_pg timeout "$TIMEOUT" "$PG_BINDIR/initdb" -D "$dir/data" -U postgres \
            --pwfile="$dir/pwfile" --auth=scram-sha-256 --encoding=UTF8 --locale=C \
            >>"$LOG_DIR/setup.log" 2>&1; then
        rm -f -- "$dir/pwfile"
        die "initdb failed; see $LOG_DIR/setup.log"
    fi
    rm -f -- "$dir/pwfile"
    # Password logins over IPv4 loopback only; no Unix socket, no other address.
    as_pg sh -c 'cat >"$1"' sh "$dir/data/pg_hba.conf" <<'EOF'
# written by deploy/local-stack.sh: TCP on 127.0.0.1 only, passwords (scram-sha-256)
host all all 127.0.0.1/32 scram-sha-256
EOF
    as_pg sh -c 'printf "\ninclude_if_exists '"'"'local-stack.conf'"'"'\n" >>"$1"' sh \
        "$dir/data/postgresql.conf"
}

pg_write_conf() {
    as_pg sh -c 'cat >"$1"' sh "$1/data/local-stack.conf" <<EOF
# written by deploy/local-stack.sh up (rewritten on every up)
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = ''
password_encryption = 'scram-sha-256'
max_connections = 100
idle_in_transaction_session_timeout = '10s'
logging_collector = off
log_min_messages = warning
EOF
}

pg_is_running() { # true if the recorded cluster's postmaster runs
    local dir
    dir=$(pg_dir)
    [[ -f $dir/data/PG_VERSION && -n ${PG_BINDIR:-} ]] || return 1
    as_pg timeout 30 "$PG_BINDIR/pg_ctl" status -D "$dir/data" >/dev/null 2>&1
}

pg_start() {
    local dir=$1 try
    for try in 1 2 3; do # a probed free port can be taken before the server binds it
        pg_write_conf "$dir"
        if as_pg timeout $((TIMEOUT + 15)) "$PG_BINDIR/pg_ctl" start -D "$dir/data" \
                -l "$dir/postgresql.log" -w -t "$TIMEOUT" >>"$LOG_DIR/setup.log" 2>&1; then
            break
        fi
        if [[ $try -lt 3 ]] && tail -n 50 "$dir/postgresql.log" 2>/dev/null |
                grep -q 'Address already in use'; then
            PG_PORT=$(free_ports 1)
            continue
        fi
        tail -n 30 "$dir/postgresql.log" >&2 2>/dev/null || true
        die "PostgreSQL did not start; see $dir/postgresql.log"
    done
    local deadline=$((SECONDS + TIMEOUT))
    until PGCONNECT_TIMEOUT=2 timeout 10 "$PG_BINDIR/pg_isready" -q -h "$HOST" \
            -p "$PG_PORT" -d postgres; do
        [[ $SECONDS -lt $deadline ]] || die "PostgreSQL on $HOST:$PG_PORT is not ready"
        sleep 0.2
    done
}

pg_stop() {
    local dir pid mode
    dir=$(pg_dir)
    [[ -f $dir/data/postmaster.pid ]] || return 0
    if [[ -z ${PG_BINDIR:-} ]]; then PG_BINDIR=$(find_pg_bindir) || return 0; fi
    pg_is_running || return 0
    for mode in fast immediate; do
        if as_pg timeout 60 "$PG_BINDIR/pg_ctl" stop -D "$dir/data" -m "$mode" -w -t 30 \
                >>"$LOG_DIR/setup.log" 2>&1; then
            return 0
        fi
        pg_is_running || return 0
    done
    # Last resort: the postmaster of THIS data directory, by its own pid file.
    pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
            grep -qF -- "$dir/data"; then
        log "PostgreSQL ignored pg_ctl stop; SIGKILL postmaster $pid"
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

# ---- Ray -----------------------------------------------------------------------------
ray_env() { # the environment every Ray command of this stack needs
    # On Linux Ray replaces --node-ip-address=127.0.0.1 by the machine's outward address
    # and then binds its gRPC servers to every interface. With this variable it keeps
    # 127.0.0.1 and binds loopback only (checked with `ss -ltn`; see deploy/README.md).
    printf '%s\n' RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_AUTH_MODE=token \
        "RAY_AUTH_TOKEN_PATH=$RAY_TOKEN" RAY_USAGE_STATS_ENABLED=0
}

ray_temp_dir() { # Ray's socket paths must stay under 107 bytes: keep its root short.
    # Ray makes its root world-writable (0777), so it always sits in a 0700 parent.
    local parent=$STATE_DIR/ray
    if [[ -f $STATE_DIR/ray/tempdir ]]; then
        parent=$(cat "$STATE_DIR/ray/tempdir")
    elif [[ ${#parent} -gt 40 ]]; then
        parent=$(mktemp -d /tmp/automl-ray.XXXXXX) # 0700
        printf '%s\n' "$parent" >"$STATE_DIR/ray/tempdir"
    fi
    mkdir -p -m 700 -- "$parent/tmp"
    printf '%s\n' "$parent/tmp"
}

ray_start() {
    local -a ports env_vars
    mkdir -p -m 700 -- "$STATE_DIR/ray"
    if [[ ! -s $RAY_TOKEN ]]; then # our own token, 0600; never ~/.ray/auth_token
        (umask 077; new_secret 32 >"$RAY_TOKEN")
    fi
    chmod 600 "$RAY_TOKEN"
    # Ray 2.60's `ray get-auth-token --generate` and ray.init() write ~/.ray/auth_token
    # world-readable: if the user has one, make it private.
    local home_token=${HOME:-/nonexistent}/.ray/auth_token
    if [[ -f $home_token && -O $home_token ]]; then chmod 600 "$home_token"; fi
    mapfile -t ports < <(free_ports 6)
    RAY_PORT=${ports[0]}
    mapfile -t env_vars < <(ray_env)
    env_vars+=("AUTOSCALER_METRIC_PORT=${ports[4]}" "DASHBOARD_METRIC_PORT=${ports[5]}")
    local temp logfile=$LOG_DIR/ray-head.log
    temp=$(ray_temp_dir)
    : >"$logfile"
    log "ray head on $HOST:$RAY_PORT (token auth, loopback only)"
    start_bg ray-head "$logfile" env "${env_vars[@]}" "$RAY" start --head --block \
        --node-ip-address="$HOST" --port="$RAY_PORT" --include-dashboard=false \
        --ray-client-server-port="${ports[1]}" --dashboard-agent-listen-port="${ports[2]}" \
        --metrics-export-port="${ports[3]}" --temp-dir="$temp" --disable-usage-stats
}

ray_wait() { # until `ray start` says the runtime is up (it then blocks, supervising it)
    local deadline=$((SECONDS + TIMEOUT)) logfile=$LOG_DIR/ray-head.log
    until grep -q 'Ray runtime started' "$logfile"; do
        recorded_pid "$RUN_DIR/ray-head.pid" >/dev/null || {
            tail -n 30 "$logfile" >&2; die "ray start failed; see $logfile"; }
        [[ $SECONDS -lt $deadline ]] || die "Ray did not start in ${TIMEOUT}s; see $logfile"
        sleep 0.5
    done
}

# ---- workers and dashboard -------------------------------------------------------------
write_env() {
    local tmp=$ENV_FILE.tmp
    {
        echo "# written by deploy/local-stack.sh up; source it to use this stack"
        printf 'export AUTOML_STORAGE=%q\n' "postgresql+psycopg2://automl@$HOST:$PG_PORT/automl"
        printf 'export PGPASSFILE=%q\n' "$PGPASS"
        if [[ $WITH_RAY == 1 ]]; then
            echo "# Ray head: automl tune --ray-address \"\$AUTOML_RAY_ADDRESS\"; ray status --address \"\$AUTOML_RAY_ADDRESS\""
            printf 'export AUTOML_RAY_ADDRESS=%q\n' "$HOST:$RAY_PORT"
            local kv
            while IFS= read -r kv; do
                printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
            done < <(ray_env)
        fi
        [[ -z ${DASH_PORT:-} ]] || echo "# optuna-dashboard: http://$HOST:$DASH_PORT/"
    } >"$tmp"
    mv -f -- "$tmp" "$ENV_FILE"
}

start_workers() {
    local i logfile
    for ((i = 1; i <= N_WORKERS; i++)); do
        logfile=$LOG_DIR/worker-$i.log
        : >"$logfile"
        start_bg "worker-$i" "$logfile" bash -c '. "$1"; shift; exec "$@"' worker "$ENV_FILE" \
            "$AUTOML" worker --threads 1
    done
    [[ $N_WORKERS -gt 0 ]] || return 0
    log "waiting for $N_WORKERS worker(s) to start"
    local deadline=$((SECONDS + TIMEOUT)) started
    while :; do
        started=0
        for ((i = 1; i <= N_WORKERS; i++)); do
            recorded_pid "$RUN_DIR/worker-$i.pid" >/dev/null || {
                tail -n 30 "$LOG_DIR/worker-$i.log" >&2
                die "worker $i exited; see $LOG_DIR/worker-$i.log"; }
            if grep -q ' started$' "$LOG_DIR/worker-$i.log"; then started=$((started + 1)); fi
        done
        [[ $started -lt $N_WORKERS ]] || return 0
        [[ $SECONDS -lt $deadline ]] || die "workers not started after ${TIMEOUT}s"
        sleep 0.5
    done
}

start_dashboard() {
    DASH_PORT=$(free_ports 1)
    local logfile=$LOG_DIR/dashboard.log
    : >"$logfile"
    # `automl dashboard`: optuna-dashboard with the run notes and the model artifacts.
    start_bg dashboard "$logfile" env "PGPASSFILE=$PGPASS_READER" "$AUTOML" dashboard \
        --host "$HOST" --port "$DASH_PORT" \
        --storage "postgresql+psycopg2://automl_reader@$HOST:$PG_PORT/automl"
    local deadline=$((SECONDS + TIMEOUT))
    until port_open "$DASH_PORT"; do
        recorded_pid "$RUN_DIR/dashboard.pid" >/dev/null || {
            tail -n 20 "$logfile" >&2; die "optuna-dashboard exited; see $logfile"; }
        [[ $SECONDS -lt $deadline ]] || die "optuna-dashboard not listening after ${TIMEOUT}s"
        sleep 0.5
    done
}

# ---- commands ------------------------------------------------------------------------
anything_running() {
    local f
    for f in "$RUN_DIR"/*.pid; do
        [[ -e $f ]] || continue
        if recorded_pid "$f" >/dev/null; then return 0; fi
    done
    pg_is_running
}

UP_DONE=0
on_up_exit() {
    local rc=$?
    [[ $UP_DONE == 1 ]] && return 0
    log "up failed (exit $rc): stopping what it started"
    trap - EXIT
    do_down || true
    exit "$rc"
}

do_up() {
    command -v "$AUTOML" >/dev/null || die "'$AUTOML' not on PATH; activate the environment"
    command -v "$PYTHON" >/dev/null || die "'$PYTHON' not found; set PYTHON"
    if [[ $WITH_RAY == 1 ]]; then
        command -v "$RAY" >/dev/null || die "'$RAY' not on PATH (pip install 'automl[worker]'), or use --no-ray"
    fi
    PG_BINDIR=$(find_pg_bindir) || die "no PostgreSQL server binaries; install postgresql-15 or set PGSERVER_BINDIR"
    mkdir -p -m 700 -- "$RUN_DIR" "$LOG_DIR"
    if anything_running; then
        die "the stack in $STATE_DIR is already (partly) running; '$PROG down' first"
    fi
    rm -f -- "$RUN_DIR"/*.pid # stale: none of them runs
    trap on_up_exit EXIT

    local dir
    make_pg_dir
    dir=$(pg_dir)
    PG_PORT=$(free_ports 1)
    [[ -f $dir/data/PG_VERSION ]] || pg_initdb "$dir"
    log "PostgreSQL $("$PG_BINDIR/postgres" --version | awk "{print \$3}") on $HOST:$PG_PORT"
    pg_start "$dir"
    printf 'PG_PORT=%s\nPG_BINDIR=%s\n' "$PG_PORT" "$PG_BINDIR" >"$STACK_CONF"
    # Roles and database, idempotently (an earlier up may have stopped half-way). The
    # passwords reach psql through its environment (\getenv), not its command line.
    AUTOML_DB_PASSWORD=$(cut -d: -f5- "$PGPASS") \
    AUTOML_READER_PASSWORD=$(cut -d: -f5- "$PGPASS_READER") \
    pg_sql postgres <<'EOF'
\getenv automl_pw AUTOML_DB_PASSWORD
\getenv reader_pw AUTOML_READER_PASSWORD
SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'automl') AS new_owner,
       NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'automl_reader') AS new_reader,
       NOT EXISTS (SELECT FROM pg_database WHERE datname = 'automl') AS new_db \gset
\if :new_owner
CREATE ROLE automl LOGIN PASSWORD :'automl_pw';
\endif
\if :new_reader
CREATE ROLE automl_reader LOGIN PASSWORD :'reader_pw';
\endif
\if :new_db
CREATE DATABASE automl OWNER automl;
\endif
ALTER DATABASE automl SET idle_in_transaction_session_timeout = '10s';
REVOKE ALL ON DATABASE automl FROM PUBLIC;
GRANT CONNECT ON DATABASE automl TO automl_reader;
EOF

    if [[ $WITH_RAY == 1 ]]; then ray_start; fi
    write_env

    log "automl db upgrade"
    (. "$ENV_FILE" && timeout "$TIMEOUT" "$AUTOML" db upgrade) >>"$LOG_DIR/setup.log" 2>&1 ||
        die "automl db upgrade failed; see $LOG_DIR/setup.log"
    pg_sql automl <<'EOF'
GRANT USAGE ON SCHEMA public TO automl_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO automl_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE automl IN SCHEMA public GRANT SELECT ON TABLES TO automl_reader;
EOF

    start_workers
    if [[ $WITH_RAY == 1 ]]; then ray_wait; fi # started before the migrations, in parallel
    start_dashboard
    write_env # again, now with the dashboard's address
    printf 'RAY_PORT=%s\nDASH_PORT=%s\n' "${RAY_PORT:-}" "${DASH_PORT:-}" >>"$STACK_CONF"
    UP_DONE=1
    trap - EXIT
    do_status || true
    echo "ready: source $ENV_FILE"
}

do_down() {
    mkdir -p -- "$RUN_DIR" "$LOG_DIR"
    if [[ -f $STACK_CONF ]]; then
        PG_BINDIR=$(sed -n 's/^PG_BINDIR=//p' "$STACK_CONF" | head -n 1)
    fi
    local -a workers=()
    mapfile -t workers < <(compgen -G "$RUN_DIR/worker-*.pid" || true)
    if [[ -f $RUN_DIR/dashboard.pid ]]; then log "stopping optuna-dashboard"; fi
    stop_recorded 15 "$RUN_DIR/dashboard.pid"
    [[ ${#workers[@]} -eq 0 ]] || { log "stopping ${#workers[@]} worker(s)"; stop_recorded 20 "${workers[@]}"; }
    if [[ -f $RUN_DIR/ray-head.pid ]]; then log "stopping the Ray head"; fi
    stop_recorded 30 "$RUN_DIR/ray-head.pid"
    if pg_is_running; then log "stopping PostgreSQL"; fi
    pg_stop
    if [[ $PURGE == 1 ]]; then # only what up creates; the state dir itself if then empty
        local d
        for d in "$(pg_dir)" "$(cat "$STATE_DIR/ray/tempdir" 2>/dev/null || true)"; do
            if [[ -n $d && $d != "$STATE_DIR"/* && -d $d ]]; then rm -rf -- "$d"; fi
        done
        rm -rf -- "$RUN_DIR" "$LOG_DIR" "$STATE_DIR/pg" "$STATE_DIR/ray" "$ENV_FILE" \
            "$STACK_CONF" "$STATE_DIR/pgdir" "$PGPASS" "$PGPASS_READER" "$PGPASS_SUPER"
        rmdir -- "$STATE_DIR" 2>/dev/null || true
        log "purged the stack's data in $STATE_DIR"
    fi
    log "stopped"
}

do_status() {
    local f pid n_run=0 n_all=0 name
    echo "state: $STATE_DIR"
    if [[ -f $STACK_CONF ]]; then
        PG_PORT=$(sed -n 's/^PG_PORT=//p' "$STACK_CONF" | head -n 1)
        PG_BINDIR=$(sed -n 's/^PG_BINDIR=//p' "$STACK_CONF" | head -n 1)
        n_all=$((n_all + 1))
        if pg_is_running; then
            n_run=$((n_run + 1)); echo "postgres   running  $HOST:$PG_PORT  data $(pg_dir)/data"
        else
            echo "postgres   stopped"
        fi
    fi
    for f in "$RUN_DIR"/*.pid; do
        [[ -e $f ]] || continue
        name=$(basename "$f" .pid)
        n_all=$((n_all + 1))
        if pid=$(recorded_pid "$f"); then
            n_run=$((n_run + 1)); printf '%-10s running  pid %s\n' "$name" "$pid"
        else
            printf '%-10s stopped\n' "$name"
        fi
    done
    [[ ! -f $ENV_FILE ]] || grep -E '^(export AUTOML|# optuna)' "$ENV_FILE" || true
    if [[ $n_all -eq 0 || $n_run -eq 0 ]]; then echo "nothing running"; return 3; fi
    [[ $n_run -eq $n_all ]] || return 1
}

case $COMMAND in
    up) do_up ;;
    down) do_down ;;
    status) do_status ;;
    -h|--help|help) usage 0 ;;
    *) log "unknown command: $COMMAND"; usage ;;
esac
