#!/usr/bin/env bash
# Private PostgreSQL, RabbitMQ and maildev for local runs and tests.
#
# Everything lives under $ROOT/.local (gitignored; SERVICES_DIR moves it) and
# listens on 127.0.0.1 only, so it never clashes with system services and
# needs no Docker.
#
#   source scripts/services.sh; services_install; services_up; services_env
#   scripts/services.sh install|up [SERVICE...]|down [SERVICE...]|status|env|psql ...|rabbitmqctl ...
#
# Ports can be overridden: PG_PORT, AMQP_PORT, RABBITMQ_DIST_PORT,
# RABBITMQ_MGMT_PORT, SMTP_PORT, MAILDEV_WEB_PORT (and the node name: RABBITMQ_NODENAME).
# RABBITMQ_NODES=3 runs a three-node RabbitMQ cluster instead of one node
# (RABBITMQ_CLUSTER_AMQP_PORT, default 5681, is its first node's AMQP port).
# POSTGRES_NODES=3 runs PostgreSQL as a three-node Patroni cluster behind
# HAProxy (writes on PG_PORT, reads on PG_PORT+1; PG_CLUSTER_PORT, default
# PG_PORT+10, is where its other ports begin).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL_DIR="${SERVICES_DIR:-$ROOT/.local}"
RUN_DIR="$LOCAL_DIR/run"
LOG_DIR="$LOCAL_DIR/logs"

PG_PORT="${PG_PORT:-54321}"
AMQP_PORT="${AMQP_PORT:-5672}"
RABBITMQ_DIST_PORT="${RABBITMQ_DIST_PORT:-25672}"
RABBITMQ_MGMT_PORT="${RABBITMQ_MGMT_PORT:-15672}"
SMTP_PORT="${SMTP_PORT:-1025}"
MAILDEV_WEB_PORT="${MAILDEV_WEB_PORT:-1080}"

PG_DATA="$LOCAL_DIR/postgres"
PG_SOCKET_DIR="$LOCAL_DIR/pgsock"
RMQ_BIN="/usr/lib/rabbitmq/bin"
MAILDEV_VERSION="2.2.1"
MAILDEV_DIR="$LOCAL_DIR/maildev"
MAILDEV_BIN="$MAILDEV_DIR/node_modules/maildev/bin/maildev"

# Services this shell's services_up started (services_down stops only these).
SERVICES_STARTED=()
SERVICES_UP_CALLED=0

_log() { printf '[services] %s\n' "$*" >&2; }
_die() {
    _log "ERROR: $*"
    exit 1
}

# --- small helpers -----------------------------------------------------------

# Run as root (apt needs it); CI runners that are not root usually have sudo.
_as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        _die "need root (or sudo) to run: $*"
    fi
}

# pid is alive and its command line contains $2 (guards against pid reuse
# after a kill -9 left a stale pid file behind).
_pid_matches() {
    local pid="$1" pattern="$2"
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    _alive "$pid" || return 1
    local cmdline
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ $cmdline == *"$pattern"* ]]
}

# kill -0 also succeeds on zombies, and PID 1 on some CI sandboxes never reaps
# them; treat a zombie as dead.
_alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ ${stat:0:1} != Z ]]
}

_read_pid() { [[ -s $1 ]] && head -n1 "$1" | tr -d '[:space:]'; }

_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# _wait_until SECONDS DESCRIPTION PID|"" LOG|"" CMD...: poll CMD; give up early
# if PID dies, and show the tail of LOG when giving up.
_wait_until() {
    local timeout="$1" desc="$2" pid="$3" logfile="$4"
    shift 4
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if [[ -n $pid ]] && ! _alive "$pid"; then
            _log "$desc: process $pid exited"
            [[ -n $logfile && -f $logfile ]] && tail -n 20 "$logfile" >&2
            return 1
        fi
        if ((SECONDS >= deadline)); then
            _log "timed out after ${timeout}s waiting for $desc"
            [[ -n $logfile && -f $logfile ]] && tail -n 20 "$logfile" >&2
            return 1
        fi
        sleep 0.2
    done
}

# Start "$@" detached in its own session (so Ctrl-C in the terminal does not
# reach it) and write its pid to $1. The child writes its own pid, which stays
# right even when setsid has to fork (interactive shells with job control).
_spawn() {
    local pidfile="$1" logfile="$2"
    shift 2
    rm -f "$pidfile"
    # shellcheck disable=SC2016 # $$ and $@ are for the inner bash
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" \
        >>"$logfile" 2>&1 </dev/null &
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -s $pidfile ]] && return 0
        sleep 0.1
    done
    _die "could not start $*"
}

_stop_pid() { # pid [seconds]: SIGTERM, then SIGKILL after 10 s (or seconds)
    local pid="$1" tenths=$((${2:-10} * 10)) i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < tenths; i++)); do
        _alive "$pid" || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# --- install -------------------------------------------------------------------

_pg_bindir() {
    local initdb
    initdb="$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n1 || true)"
    [[ -n $initdb ]] || return 1
    dirname "$initdb"
}

# True when a Debian package is fully installed (a concurrent apt-get may have
# unpacked the files but not configured them yet).
_deb_ok() {
    command -v dpkg-query >/dev/null || return 0
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

_apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    local i
    # Another apt-get may hold the lists lock; retry instead of failing.
    for ((i = 1; ; i++)); do
        _as_root apt-get update -qq && break
        ((i < 60)) || _die "apt-get update keeps failing"
        _log "apt-get update failed (lock held?), retrying in 5 s"
        sleep 5
    done
    _as_root apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@"
}

# services_install [--with-postgres-cluster]: installs what is missing; with
# the flag, the packages of a PostgreSQL cluster too, however many nodes
# this run has (the test suite starts clusters of its own).
services_install() {
    local pkgs=() cluster=0
    if ((PG_NODES > 1)) || [[ ${1:-} == --with-postgres-cluster ]]; then cluster=1; fi
    if ! _pg_bindir >/dev/null || ! _deb_ok postgresql; then pkgs+=(postgresql); fi
    if [[ ! -x $RMQ_BIN/rabbitmq-server ]] || ! _deb_ok rabbitmq-server; then pkgs+=(rabbitmq-server); fi
    command -v node >/dev/null || pkgs+=(nodejs)
    command -v npm >/dev/null || pkgs+=(npm)
    command -v curl >/dev/null || pkgs+=(curl)
    command -v python3 >/dev/null || pkgs+=(python3)
    if ((cluster)); then # a PostgreSQL cluster: Patroni on etcd (v2 API), HAProxy, tini,
        local pkg
        # and pgBackRest for its WAL archive and backups.
        for pkg in patroni python3-etcd etcd-server haproxy tini pgbackrest; do _deb_ok "$pkg" || pkgs+=("$pkg"); done
    fi
    if ((${#pkgs[@]})); then
        _log "installing: ${pkgs[*]}"
        _apt_install "${pkgs[@]}"
    fi

    # maildev goes into .local, not global: pinned version, no root needed.
    local have=""
    if [[ -f $MAILDEV_DIR/node_modules/maildev/package.json ]]; then
        have="$(node -p 'require(process.argv[1]).version' \
            "$MAILDEV_DIR/node_modules/maildev/package.json" 2>/dev/null || true)"
    fi
    if [[ $have != "$MAILDEV_VERSION" ]]; then
        _log "installing maildev@$MAILDEV_VERSION into ${MAILDEV_DIR#"$ROOT"/}"
        mkdir -p "$MAILDEV_DIR"
        npm install --prefix "$MAILDEV_DIR" --no-audit --no-fund --loglevel=error \
            "maildev@$MAILDEV_VERSION" >&2
    fi
}

# --- PostgreSQL ------------------------------------------------------------------

# PostgreSQL refuses to run as root, so as root run it as the `postgres` user.
_pg_user() { if [[ $(id -u) -eq 0 ]]; then echo postgres; else id -un; fi; }

_pg_run() { # cd / so the postgres user never trips over an unreadable cwd
    if [[ $(id -u) -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

# Not `pg_ctl status`: it trusts kill -0, which a zombie postmaster passes.
_pg_running() { _pid_matches "$(_read_pid "$PG_DATA/postmaster.pid" || true)" "$PG_DATA"; }

_pg_psql() { # psql over TCP as the booking superuser; never prompt
    PGPASSWORD=booking "$1/psql" -X -w -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U booking "${@:2}"
}

_pg_add_user() { # the postgres user, when we are root and the package made none
    if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
        useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
            --shell /usr/sbin/nologin postgres
    fi
}

_pg_init() {
    local bin="$1" owner pwfile
    owner="$(_pg_user)"
    _log "initialising PostgreSQL in ${PG_DATA#"$ROOT"/}"
    rm -rf "$PG_DATA" # a half-finished initdb leaves a non-empty directory
    mkdir -p "$PG_DATA"
    chmod 700 "$PG_DATA"
    pwfile="$(mktemp)"
    echo booking >"$pwfile"
    if [[ $(id -u) -eq 0 ]]; then chown "$owner": "$PG_DATA" "$pwfile"; fi
    # trust is fine: the server only listens on 127.0.0.1 and a private socket.
    if ! _pg_run "$bin/initdb" -D "$PG_DATA" -U booking --pwfile="$pwfile" \
        --auth=trust -E UTF8 --locale=C.UTF-8 >"$LOG_DIR/initdb.log" 2>&1; then
        rm -f "$pwfile"
        cat "$LOG_DIR/initdb.log" >&2
        _die "initdb failed"
    fi
    rm -f "$pwfile"
    echo "include_if_exists = 'booking.conf'" >>"$PG_DATA/postgresql.conf"
}

_pg_up() {
    if ((PG_NODES > 1)); then
        _pgc_up
        return
    fi
    local bin owner pid
    bin="$(_pg_bindir)" || _die "PostgreSQL server binaries not found (run services_install)"
    owner="$(_pg_user)"
    _pg_add_user

    if _pg_running; then
        _log "PostgreSQL: reusing the running server on 127.0.0.1:$PG_PORT"
    elif _port_open "$PG_PORT"; then
        # Someone else's server (e.g. a CI service): fine if our role works.
        _pg_psql "$bin" -d postgres -c 'select 1' >/dev/null 2>&1 ||
            _die "port $PG_PORT is taken by something that is not our PostgreSQL (set PG_PORT)"
        _log "PostgreSQL: reusing a foreign server on 127.0.0.1:$PG_PORT"
    else
        mkdir -p "$PG_SOCKET_DIR"
        [[ -f $PG_DATA/PG_VERSION ]] || _pg_init "$bin"
        touch "$LOG_DIR/postgres.log"
        if [[ $(id -u) -eq 0 ]]; then
            chown "$owner": "$PG_SOCKET_DIR" "$LOG_DIR/postgres.log"
            chown -R "$owner": "$PG_DATA"
            _pg_run test -w "$PG_DATA" ||
                _die "user $owner cannot reach $PG_DATA (a parent directory is not world-searchable)"
        fi
        # Rewritten on every start so port overrides take effect.
        cat >"$PG_DATA/booking.conf" <<EOF
# Written by scripts/services.sh on every start.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
max_connections = 300
shared_buffers = 256MB
fsync = on
EOF
        [[ $(id -u) -ne 0 ]] || chown "$owner": "$PG_DATA/booking.conf"
        # Lock files left by kill -9 (postmaster.pid, the socket's .lock) block
        # a start when their pid lives on as a zombie or was reused. Removing
        # them is safe: our postmaster is not running (checked above), and a
        # new one still refuses to start while old backends hold its memory.
        rm -f "$PG_DATA/postmaster.pid" "$PG_SOCKET_DIR"/.s.PGSQL.*
        if ! _pg_run "$bin/pg_ctl" start -D "$PG_DATA" -l "$LOG_DIR/postgres.log" \
            -w -t 60 >/dev/null; then
            tail -n 20 "$LOG_DIR/postgres.log" >&2
            _die "PostgreSQL did not start"
        fi
        pid="$(_read_pid "$PG_DATA/postmaster.pid")"
        echo "$pid" >"$RUN_DIR/postgres.pid"
        SERVICES_STARTED+=(postgres)
        _log "PostgreSQL: started (pid $pid) on 127.0.0.1:$PG_PORT"
    fi
    _wait_until 60 "PostgreSQL" "" "$LOG_DIR/postgres.log" \
        "$bin/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -U booking -d postgres ||
        _die "PostgreSQL is not accepting connections on 127.0.0.1:$PG_PORT"
    if [[ -z $(_pg_psql "$bin" -d postgres -tAc "select 1 from pg_database where datname = 'booking'") ]]; then
        _pg_psql "$bin" -d postgres -c 'create database booking'
    fi
}

_pg_down() {
    if ((PG_NODES > 1)); then
        _pgc_down
        return
    fi
    local bin
    bin="$(_pg_bindir)" || return 0
    if _pg_running; then
        _log "PostgreSQL: stopping"
        _pg_run "$bin/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 >/dev/null
    fi
    rm -f "$RUN_DIR/postgres.pid"
}

# --- PostgreSQL cluster ------------------------------------------------------------
#
# One server by default (above). With POSTGRES_NODES=N (2..9), N PostgreSQL
# nodes pg-1 … pg-N under Patroni instead, with one etcd as Patroni's store
# and HAProxy in front: writes on PG_PORT (to whichever node holds the leader
# lock, so DATABASE_URL is the same as with one server), reads on PG_PORT+1
# (round robin over the replicas; the leader when none is up). Their other
# ports start at PG_CLUSTER_PORT (default PG_PORT+10, away from the single
# server's): node i's PostgreSQL on +i-1, its Patroni REST API on +10+i-1,
# etcd's client and peer ports on +20 and +21, HAProxy's stats page on +22.
# Data under .local/postgres-cluster: etcd/, node-i/{patroni.yml,data},
# haproxy.cfg. The functions below act on the node that _pgc_select chose.
#
# The leader archives its WAL with pgBackRest into a repository in
# .local/pgbackrest (stanza `booking`, configuration in
# .local/postgres-cluster/pgbackrest.conf); scripts/backup takes backups and
# restores to a point in time (docs/OPERATIONS.md, "Backups and
# point-in-time restore").

PG_NODES="${POSTGRES_NODES:-1}"
_pg_check_nodes() {
    [[ $PG_NODES =~ ^[1-9]$ ]] || _die "the number of PostgreSQL nodes must be 1 to 9, not $PG_NODES"
}
_pg_check_nodes
PG_READ_PORT=$((PG_PORT + 1))
PG_CLUSTER_PORT="${PG_CLUSTER_PORT:-$((PG_PORT + 10))}"
PGC_DIR="$LOCAL_DIR/postgres-cluster"
PGC_ETCD_PORT=$((PG_CLUSTER_PORT + 20))
PGC_ETCD_PEER_PORT=$((PG_CLUSTER_PORT + 21))
PGC_STATS_PORT=$((PG_CLUSTER_PORT + 22))
PGC_HAPROXY_CFG="$PGC_DIR/haproxy.cfg"
PGBR_CONF="$PGC_DIR/pgbackrest.conf"
PGBR_REPO="$LOCAL_DIR/pgbackrest"
PGBR_STANZA=booking

_pgc_select() { # _pgc_select I: make node I (1-based) the current one
    local i="$1"
    PGC_NAME="pg-$i"
    PGC_NODE_DIR="$PGC_DIR/node-$i"
    PGC_DATA="$PGC_NODE_DIR/data"
    PGC_CONF="$PGC_NODE_DIR/patroni.yml"
    PGC_PORT=$((PG_CLUSTER_PORT + i - 1))
    PGC_REST=$((PG_CLUSTER_PORT + 10 + i - 1))
    PGC_TAG="patroni-$i"
    PGC_LOG="postgres-$i.log"
}
_pgc_select 1

_pgc_nodes() { seq 1 "$PG_NODES"; }

# Each process is recognised by its command line: etcd by its data directory,
# Patroni by its configuration file, HAProxy by its, a postmaster by its data
# directory (Patroni starts it detached, so it outlives a killed Patroni).
_pgc_etcd_running() { _pid_matches "$(_read_pid "$RUN_DIR/etcd.pid" || true)" "--data-dir $PGC_DIR/etcd"; }
_pgc_patroni_running() { _pid_matches "$(_read_pid "$RUN_DIR/$PGC_TAG.pid" || true)" "$PGC_CONF"; }
_pgc_haproxy_running() { _pid_matches "$(_read_pid "$RUN_DIR/haproxy.pid" || true)" "$PGC_HAPROXY_CFG"; }
_pgc_postmaster_running() { _pid_matches "$(_read_pid "$PGC_DATA/postmaster.pid" || true)" "$PGC_DATA"; }

_pgc_etcd_ok() { curl -fsS -m 2 "http://127.0.0.1:$PGC_ETCD_PORT/v2/keys/" >/dev/null 2>&1; }

# One line per member, from the first Patroni REST API that answers:
# NAME ROLE STATE PG_PORT REST_PORT LAG(bytes, - for the leader) TIMELINE.
# ROLE is leader, sync_standby or replica; STATE running, streaming, stopped…
_pgc_members() {
    local i json=""
    for i in $(_pgc_nodes); do
        json="$(curl -fsS -m 2 "http://127.0.0.1:$((PG_CLUSTER_PORT + 10 + i - 1))/cluster" 2>/dev/null)" && break
    done
    [[ -n $json ]] || return 1
    python3 -c '
import json, sys, urllib.parse
for m in json.load(sys.stdin).get("members", []):
    rest = urllib.parse.urlsplit(m.get("api_url") or "").port
    lag = "-" if m.get("role") == "leader" else m.get("lag", "?")
    print(m["name"], m.get("role") or "?", m.get("state") or "?", m.get("port", "?"),
          rest or "?", lag, m.get("timeline", "?"))' <<<"$json"
}

# A leader that runs and a synchronous standby that follows it: every
# commit is then on two nodes.
_pgc_healthy() {
    _pgc_members | awk '$2 == "leader" && $3 == "running" { l = 1 }
        $2 == "sync_standby" && ($3 == "running" || $3 == "streaming") { s = 1 }
        END { exit !(l && s) }'
}

# HAProxy 2.6 counts every server up until its checks say otherwise, so just
# after it starts, writes may reach a replica: wait until the checks have
# settled on the leader alone (from the stats page's CSV: field 18 is the
# status, "UP 1/2" and the like are on the way).
_pgc_haproxy_settled() {
    local leader csv
    leader="$(_pgc_members | awk '$2 == "leader" { print $1 }')"
    [[ -n $leader ]] || return 1
    csv="$(curl -fsS -m 2 "http://127.0.0.1:$PGC_STATS_PORT/;csv")" || return 1
    awk -F, -v leader="$leader" '
        $1 == "postgres-primary" && $2 ~ /^pg-/ {
            if ($18 == "UP") { up++; if ($2 != leader) bad = 1 } else if ($18 != "DOWN") bad = 1
        }
        $1 == "postgres-replicas" && $2 == leader && $18 != "DOWN" { bad = 1 }
        END { exit !(up == 1 && !bad) }' <<<"$csv"
}

_pgc_writable() { # through HAProxy's write port
    [[ $(_pg_psql "$(_pg_bindir)" -d postgres -tAc 'select pg_is_in_recovery()' 2>/dev/null) == f ]]
}

_pgc_takes_writes() { _pgc_haproxy_settled && _pgc_writable; }

_pgc_started() { # note that services_down has to stop the cluster
    [[ " ${SERVICES_STARTED[*]} " == *" postgres "* ]] || SERVICES_STARTED+=(postgres)
}

# The current node's Patroni configuration, rewritten on every start so port
# overrides take effect. The `bootstrap.dcs` part is stored in etcd when the
# cluster is first initialised and read from there afterwards: change it on a
# running cluster with `scripts/services.sh --postgres-nodes N patronictl edit-config`.
_pgc_write_config() {
    local bin="$1"
    cat >"$PGC_CONF" <<YAML
# Written by scripts/services.sh on every start (see docs/OPERATIONS.md,
# "A PostgreSQL cluster").
scope: booking
name: $PGC_NAME

log:
  level: INFO

restapi:
  listen: 127.0.0.1:$PGC_REST
  connect_address: 127.0.0.1:$PGC_REST

# Debian's Patroni 3.0.2 speaks etcd's v2 API (python3-etcd).
etcd:
  host: 127.0.0.1:$PGC_ETCD_PORT

# No watchdog device here. A Patroni that freezes keeps its PostgreSQL
# running as primary after its lock expires, but its REST API stops
# answering, so HAProxy sends no more writes to it.
watchdog:
  mode: 'off'

bootstrap:
  dcs:
    # Failover timing (Patroni's rule: loop_wait + 2 * retry_timeout <= ttl).
    # loop_wait: each Patroni looks at its node and the cluster every second
    # (default 10 s), so a crash is acted on within about a second.
    loop_wait: 1
    # retry_timeout: a leader that cannot reach etcd or its PostgreSQL for
    # 4 s demotes itself (default 10 s), before its lock can expire and pass
    # to another node: never two primaries.
    retry_timeout: 4
    # ttl: the leader lock lapses 10 s after its last renewal (default 30 s):
    # the failover time when a leader's Patroni dies with it or is cut off.
    ttl: 10
    # A primary whose PostgreSQL crashed is not restarted in place (default:
    # for up to 300 s) but gives up its lock at once, and the synchronous
    # standby takes over: a failover in a second or two, not a crash recovery.
    primary_start_timeout: 0
    # Every commit waits until the standby Patroni names in
    # synchronous_standby_names has it on disk, and only that standby may
    # be promoted: a commit the API acknowledged survives a failover. Not
    # strict: with no standby left the primary goes on alone rather than
    # stopping every write.
    synchronous_mode: true
    synchronous_mode_strict: false
    # A candidate more than 16 MiB (one WAL segment) of WAL behind the
    # leader's last reported position is not promoted (Patroni's default,
    # 1 MiB, may refuse a busy synchronous standby that is only behind the
    # report and has every acknowledged commit: no failover at all).
    maximum_lag_on_failover: 16777216
    postgresql:
      # The old primary rejoins as a replica by itself: pg_rewind undoes what
      # it wrote that the new one never got (Patroni turns wal_log_hints on),
      # and when that fails it is cloned afresh.
      use_pg_rewind: true
      remove_data_directory_on_rewind_failure: true
      use_slots: true
      # The same on every node (a replica needs at least the primary's).
      parameters:
        max_connections: 300
        wal_level: replica
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 128MB
        hot_standby: 'on'
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8

postgresql:
  listen: 127.0.0.1:$PGC_PORT
  connect_address: 127.0.0.1:$PGC_PORT
  data_dir: '$PGC_DATA'
  bin_dir: '$bin'
  pgpass: '$PGC_NODE_DIR/pgpass'
  # booking/booking is the superuser, as with one server (tests create
  # databases); replicator streams WAL to the replicas.
  authentication:
    superuser:
      username: booking
      password: booking
    replication:
      username: replicator
      password: replicator
  # trust is fine: every node only listens on 127.0.0.1 and a private socket.
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
  parameters:
    unix_socket_directories: '$PGC_DIR/sock'
    shared_buffers: 256MB
    fsync: 'on'
    synchronous_commit: 'on'
    # Reads on replicas are not cancelled by the primary's vacuum.
    hot_standby_feedback: 'on'
    logging_collector: 'on'
    log_directory: '$LOG_DIR'
    log_filename: '$PGC_LOG'
    log_rotation_age: 0
    log_rotation_size: 0
    # Continuous archiving into pgBackRest's repository. Here rather than in
    # bootstrap.dcs: local parameters override the stored ones, apply to a
    # cluster initialised before them at its next start, and may differ per
    # node (pgBackRest resolves %p, relative to the data directory, against
    # --pg1-path). Every node has it; a replica archives nothing until it is
    # promoted ('on', not 'always').
    archive_mode: 'on'
    archive_command: 'pgbackrest --config="$PGBR_CONF" --stanza=$PGBR_STANZA --pg1-path="$PGC_DATA" archive-push "%p"'
    # A WAL segment is archived once it is full (16 MB) or switched. With
    # little traffic a commit could otherwise wait hours in a half-empty
    # segment; this switches segments at most 60 s after a write, so the
    # archive is never more than about a minute behind (the replicas have
    # every commit at once). A switched, mostly empty segment takes about
    # 70 kB in the repository (lz4).
    archive_timeout: 60s
YAML
    chmod 600 "$PGC_CONF"
}

# HAProxy asks each node's Patroni which role it has: /primary answers 200
# only on the node that holds the leader lock, /replica on a running replica,
# /read-only on either (OPTIONS, not GET: Patroni then sends the status line
# alone, and HAProxy, which resets the connection once it has read it, does
# not cut a body short and fill Patroni's log with tracebacks). A node is out
# after two failed checks 250 ms apart and in again after one good one (a
# node that is out is checked every 250 ms for writes); a node taken out has
# its connections cut, so no client goes on talking to a demoted primary.
_pgc_write_haproxy() {
    local i servers=""
    for i in $(_pgc_nodes); do
        _pgc_select "$i"
        servers+="    server $PGC_NAME 127.0.0.1:$PGC_PORT check port $PGC_REST"$'\n'
    done
    _pgc_select 1
    cat >"$PGC_HAPROXY_CFG" <<CFG
# Written by scripts/services.sh on every start.
# In the foreground (-db), HAProxy reports servers going down and up on
# stderr (.local/logs/haproxy.log); with no log target, nothing per connection.
global
    maxconn 4000

defaults
    mode tcp
    # A refused connection (the leader just crashed) is not tried again
    # (HAProxy would, 1 s later, on the same server, even once it is out):
    # the client learns at once and its next connection goes to whichever
    # node the checks find leading; a retry could land on the old leader
    # restarted as a replica.
    retries 0
    timeout connect 2s
    # Pooled connections may sit idle for long.
    timeout client 1h
    timeout server 1h
    timeout check 2s

# Writes: the leader.
listen postgres-primary
    bind 127.0.0.1:$PG_PORT
    option httpchk OPTIONS /primary
    http-check expect status 200
    default-server inter 1s fastinter 250ms downinter 250ms rise 1 fall 2 on-marked-down shutdown-sessions
${servers}
# Reads that may lag: the replicas, round robin; the leader when none is up.
frontend postgres-read
    bind 127.0.0.1:$PG_READ_PORT
    use_backend postgres-replicas if { nbsrv(postgres-replicas) gt 0 }
    default_backend postgres-any

backend postgres-replicas
    balance roundrobin
    option httpchk OPTIONS /replica
    http-check expect status 200
    default-server inter 1s fastinter 250ms downinter 1s rise 1 fall 2 on-marked-down shutdown-sessions
${servers}
backend postgres-any
    option httpchk OPTIONS /read-only
    http-check expect status 200
    default-server inter 1s fastinter 250ms downinter 1s rise 1 fall 2 on-marked-down shutdown-sessions
${servers}
listen stats
    bind 127.0.0.1:$PGC_STATS_PORT
    mode http
    stats enable
    stats uri /
    stats refresh 2s
CFG
}

# pgBackRest's configuration, rewritten on every start (and by scripts/backup
# when missing). Every node is listed (pg1…pgN), so a backup finds the leader
# by itself, whichever node it is. The repository, lock and log directories
# belong to the user PostgreSQL runs as: its archive_command writes them.
_pgbr_write_config() {
    local i owner nodes=""
    owner="$(_pg_user)"
    for i in $(_pgc_nodes); do
        nodes+="pg$i-path=$PGC_DIR/node-$i/data"$'\n'
        nodes+="pg$i-port=$((PG_CLUSTER_PORT + i - 1))"$'\n'
        nodes+="pg$i-socket-path=$PGC_DIR/sock"$'\n'
        nodes+="pg$i-user=booking"$'\n'
    done
    mkdir -p "$PGC_DIR" "$PGBR_REPO" "$LOG_DIR/pgbackrest" "$RUN_DIR/pgbackrest"
    chmod 750 "$PGBR_REPO"
    # Written aside and renamed: a running archive_command never reads half a file.
    cat >"$PGBR_CONF.new" <<CONF
# Written by scripts/services.sh on every start (see docs/OPERATIONS.md,
# "Backups and point-in-time restore").
[global]
repo1-path=$PGBR_REPO
# Two full backups are kept, with the incremental and differential ones that
# depend on them and the WAL needed to restore from the oldest to the end.
repo1-retention-full=2
lock-path=$RUN_DIR/pgbackrest
log-path=$LOG_DIR/pgbackrest
log-level-file=info
# lz4: the fastest compression, so archive_command stays quick.
compress-type=lz4
process-max=2
# A backup starts with an immediate checkpoint, not a spread one.
start-fast=y
# How long backup and check wait for a WAL segment to be archived.
archive-timeout=60

[$PGBR_STANZA]
$nodes
CONF
    chmod 640 "$PGBR_CONF.new"
    if [[ $(id -u) -eq 0 ]]; then
        chown "$owner": "$PGBR_CONF.new" "$PGBR_REPO" "$LOG_DIR/pgbackrest" "$RUN_DIR/pgbackrest"
    fi
    mv -f "$PGBR_CONF.new" "$PGBR_CONF"
}

pgbackrest_local() { # pgbackrest on the cluster's stanza, as the user PostgreSQL runs as
    _pg_run pgbackrest --config="$PGBR_CONF" --stanza="$PGBR_STANZA" "$@"
}

# The stanza: the repository's record of the cluster (its system identifier
# and PostgreSQL version). Checked against archive.info with one query, as
# stanza-create (idempotent) takes 1.5 s: pgBackRest asks every node. The
# first time, a WAL switch after creating it wakes the archiver, so the
# segments completed before the stanza existed (pg_basebackup completes one
# per replica) are archived at once, not at the archiver's next retry a
# minute later. A cluster initialised afresh next to an old repository has
# another system identifier: stanza-upgrade records it, and the old
# cluster's backups stay listed (and restorable with pgbackrest --set).
_pgbr_stanza() {
    local bin="$1" info="$PGBR_REPO/archive/$PGBR_STANZA/archive.info" sysid
    sysid="$(_pg_psql "$bin" -d postgres -tAc 'select system_identifier from pg_control_system()')"
    if [[ -s $info ]] && grep -qx "db-system-id=$sysid" "$info"; then return 0; fi
    if [[ -s $info ]]; then
        _log "pgBackRest: ${PGBR_REPO#"$ROOT"/} holds another cluster's backups (this one was initialised afresh): stanza-upgrade"
        pgbackrest_local --log-level-console=warn stanza-upgrade >&2 ||
            _log "WARNING: pgBackRest stanza-upgrade failed: WAL is not being archived (log: ${LOG_DIR#"$ROOT"/}/pgbackrest/)"
    elif pgbackrest_local --log-level-console=warn stanza-create >&2; then
        _log "pgBackRest: created the stanza $PGBR_STANZA in ${PGBR_REPO#"$ROOT"/}"
    else
        _log "WARNING: pgBackRest could not create its stanza: WAL is not being archived (log: ${LOG_DIR#"$ROOT"/}/pgbackrest/)"
        return 0
    fi
    _pg_psql "$bin" -d postgres -tAc 'select pg_switch_wal()' >/dev/null
}

_pgc_start_etcd() {
    if _pgc_etcd_running; then
        _log "etcd: reusing the running etcd on 127.0.0.1:$PGC_ETCD_PORT"
        return 0
    fi
    mkdir -p "$PGC_DIR/etcd"
    chmod 700 "$PGC_DIR/etcd"
    # One member: enough for one host (it is a single point of failure like
    # the host). --enable-v2: Debian's Patroni uses the v2 API.
    _spawn "$RUN_DIR/etcd.pid" "$LOG_DIR/etcd.log" etcd --name booking \
        --data-dir "$PGC_DIR/etcd" \
        --listen-client-urls "http://127.0.0.1:$PGC_ETCD_PORT" \
        --advertise-client-urls "http://127.0.0.1:$PGC_ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$PGC_ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$PGC_ETCD_PEER_PORT" \
        --initial-cluster "booking=http://127.0.0.1:$PGC_ETCD_PEER_PORT" \
        --enable-v2=true --logger=zap --log-level=warn
    _pgc_started
    _log "etcd: started (pid $(_read_pid "$RUN_DIR/etcd.pid")) on 127.0.0.1:$PGC_ETCD_PORT"
}

_pgc_start_node() { # the current node's Patroni, which runs its PostgreSQL
    local bin="$1" owner as=()
    owner="$(_pg_user)"
    if _pgc_patroni_running; then
        _log "PostgreSQL: reusing the running node $PGC_NAME (Patroni on :$PGC_REST)"
        return 0
    fi
    if _pgc_postmaster_running; then
        # Left running by a Patroni that was killed: Patroni starts afresh.
        _log "PostgreSQL: stopping $PGC_NAME's PostgreSQL, left without its Patroni"
        _pg_run "$bin/pg_ctl" stop -D "$PGC_DATA" -m fast -w -t 60 >/dev/null || true
    fi
    mkdir -p "$PGC_NODE_DIR"
    chmod 700 "$PGC_NODE_DIR"
    _pgc_write_config "$bin"
    touch "$LOG_DIR/$PGC_LOG"
    if [[ $(id -u) -eq 0 ]]; then
        chown "$owner": "$PGC_NODE_DIR" "$PGC_CONF" "$PGC_DIR/sock" "$LOG_DIR/$PGC_LOG"
        [[ ! -d $PGC_DATA ]] || chown -R "$owner": "$PGC_DATA"
        _pg_run test -w "$PGC_NODE_DIR" ||
            _die "user $owner cannot reach $PGC_NODE_DIR (a parent directory is not world-searchable)"
        # setpriv execs (runuser forks), so the pid file names our process.
        as=(setpriv --reuid="$owner" --regid="$owner" --init-groups)
    fi
    # Patroni starts its PostgreSQL detached, so a crashed postmaster is
    # reaped by the nearest subreaper, else by PID 1; until then Patroni
    # takes it for running and does not fail over. Some PID 1s reap late
    # (on the build machines about 2 s), so tini -s, a subreaper, is
    # Patroni's parent: it reaps at once and passes SIGTERM on to Patroni.
    (cd "$PGC_NODE_DIR" && _spawn "$RUN_DIR/$PGC_TAG.pid" "$LOG_DIR/$PGC_TAG.log" \
        "${as[@]}" tini -s -- env HOME="$PGC_NODE_DIR" patroni "$PGC_CONF") ||
        _die "could not start Patroni for $PGC_NAME"
    _pgc_started
    _log "PostgreSQL: started $PGC_NAME (pid $(_read_pid "$RUN_DIR/$PGC_TAG.pid")), PostgreSQL on 127.0.0.1:$PGC_PORT, REST API on :$PGC_REST"
}

_pgc_start_haproxy() {
    if _pgc_haproxy_running; then
        _log "HAProxy: reusing the running HAProxy on 127.0.0.1:$PG_PORT"
        return 0
    fi
    _pgc_write_haproxy
    _spawn "$RUN_DIR/haproxy.pid" "$LOG_DIR/haproxy.log" haproxy -db -f "$PGC_HAPROXY_CFG"
    _pgc_started
    _log "HAProxy: started (pid $(_read_pid "$RUN_DIR/haproxy.pid")), writes on 127.0.0.1:$PG_PORT, reads on :$PG_READ_PORT, stats http://127.0.0.1:$PGC_STATS_PORT/"
}

# Ports the cluster is about to take: refuse any that something else holds
# (a single PostgreSQL on PG_PORT, say) before starting anything.
_pgc_check_ports() {
    local i busy=()
    if ! _pgc_haproxy_running; then
        for i in "$PG_PORT" "$PG_READ_PORT" "$PGC_STATS_PORT"; do _port_open "$i" && busy+=("$i"); done
    fi
    if ! _pgc_etcd_running; then
        for i in "$PGC_ETCD_PORT" "$PGC_ETCD_PEER_PORT"; do _port_open "$i" && busy+=("$i"); done
    fi
    for i in $(_pgc_nodes); do
        _pgc_select "$i"
        _pgc_patroni_running && continue
        _port_open "$PGC_REST" && busy+=("$PGC_REST")
        if ! _pgc_postmaster_running && _port_open "$PGC_PORT"; then busy+=("$PGC_PORT"); fi
    done
    _pgc_select 1
    ((${#busy[@]} == 0)) ||
        _die "cannot start the PostgreSQL cluster: port(s) ${busy[*]} in use by something outside .local/postgres-cluster (a single PostgreSQL on $PG_PORT? stop it with scripts/services.sh down postgres, or set PG_PORT / PG_CLUSTER_PORT)"
}

_pgc_up() {
    local bin i start=$SECONDS
    bin="$(_pg_bindir)" || _die "PostgreSQL server binaries not found (run services_install)"
    for i in patroni etcd haproxy tini pgbackrest; do
        command -v "$i" >/dev/null || _die "$i is not installed (run services_install with POSTGRES_NODES=$PG_NODES)"
    done
    _pg_add_user
    _pgc_check_ports
    mkdir -p "$PGC_DIR/sock"
    _pgbr_write_config
    _pgc_start_etcd
    _wait_until 30 "etcd" "$(_read_pid "$RUN_DIR/etcd.pid")" "$LOG_DIR/etcd.log" _pgc_etcd_ok ||
        _die "etcd did not start (log: ${LOG_DIR#"$ROOT"/}/etcd.log)"
    # The nodes start together; the first time, one initialises the
    # database and the others clone it (pg_basebackup).
    for i in $(_pgc_nodes); do
        _pgc_select "$i"
        _pgc_start_node "$bin"
    done
    _pgc_select 1
    _pgc_start_haproxy
    _wait_until 180 "a PostgreSQL leader and a synchronous standby" "" "" _pgc_healthy || {
        _pgc_members >&2 || true
        _die "the PostgreSQL cluster has no leader with a synchronous standby (logs: ${LOG_DIR#"$ROOT"/}/patroni-N.log, postgres-N.log)"
    }
    _wait_until 30 "writes through HAProxy on 127.0.0.1:$PG_PORT" "$(_read_pid "$RUN_DIR/haproxy.pid")" \
        "$LOG_DIR/haproxy.log" _pgc_takes_writes ||
        _die "HAProxy does not pass writes to the leader on 127.0.0.1:$PG_PORT (log: ${LOG_DIR#"$ROOT"/}/haproxy.log)"
    if [[ -z $(_pg_psql "$bin" -d postgres -tAc "select 1 from pg_database where datname = 'booking'") ]]; then
        _pg_psql "$bin" -d postgres -c 'create database booking'
    fi
    _pgbr_stanza "$bin"
    _log "PostgreSQL: a cluster of $PG_NODES nodes is ready in $((SECONDS - start))s: writes on 127.0.0.1:$PG_PORT, reads on :$PG_READ_PORT"
    services_postgres_nodes | while IFS= read -r i; do _log "  $i"; done
}

_pgc_node_down() {
    local bin="$1" pid
    pid="$(_read_pid "$RUN_DIR/$PGC_TAG.pid" || true)"
    if _pid_matches "$pid" "$PGC_CONF"; then
        _log "PostgreSQL: stopping $PGC_NAME (pid $pid)"
        # Patroni stops its PostgreSQL (fast) first; give a checkpoint time.
        _stop_pid "$pid" 120
    fi
    # Still running if Patroni was killed, or is still starting it.
    if _pgc_postmaster_running; then
        _log "PostgreSQL: stopping $PGC_NAME's PostgreSQL"
        _pg_run "$bin/pg_ctl" stop -D "$PGC_DATA" -m fast -w -t 60 >/dev/null || true
    fi
    rm -f "$RUN_DIR/$PGC_TAG.pid"
}

_pgc_down() {
    local bin leader i pid jobs=()
    bin="$(_pg_bindir)" || return 0
    # The replicas first, then the leader: stopping the leader first would
    # hand its lock to a replica on the way down.
    leader="$(_pgc_members 2>/dev/null | awk '$2 == "leader" { print $1 }' || true)"
    for i in $(_pgc_nodes); do
        _pgc_select "$i"
        [[ $PGC_NAME == "$leader" ]] && continue
        (_pgc_node_down "$bin") &
        jobs+=($!)
    done
    if ((${#jobs[@]})); then wait "${jobs[@]}"; fi
    for i in $(_pgc_nodes); do
        _pgc_select "$i"
        [[ $PGC_NAME == "$leader" ]] && _pgc_node_down "$bin"
    done
    _pgc_select 1
    pid="$(_read_pid "$RUN_DIR/haproxy.pid" || true)"
    if _pid_matches "$pid" "$PGC_HAPROXY_CFG"; then
        _log "HAProxy: stopping (pid $pid)"
        _stop_pid "$pid"
    fi
    rm -f "$RUN_DIR/haproxy.pid"
    # Last: Patroni gives up its leader key in etcd as it stops.
    pid="$(_read_pid "$RUN_DIR/etcd.pid" || true)"
    if _pid_matches "$pid" "--data-dir $PGC_DIR/etcd"; then
        _log "etcd: stopping (pid $pid)"
        _stop_pid "$pid"
    fi
    rm -f "$RUN_DIR/etcd.pid"
}

# Each node of the cluster: name, role (leader, sync_standby, replica), state,
# PostgreSQL port, Patroni REST API, lag behind the leader.
services_postgres_nodes() {
    local members
    members="$(_pgc_members)" || {
        echo "(no Patroni REST API answers on :$((PG_CLUSTER_PORT + 10))…)"
        return 1
    }
    awk '{ printf "%-5s %-12s %-9s postgres 127.0.0.1:%s  patroni http://127.0.0.1:%s  lag %s  timeline %s\n", $1, $2, $3, $4, $5, $6, $7 }' <<<"$members"
}

_pgc_status() {
    local i rc=0 members role
    members="$(_pgc_members 2>/dev/null || true)"
    if _pgc_etcd_running; then
        printf '%-9s running  pid %s  127.0.0.1:%s\n' etcd "$(_read_pid "$RUN_DIR/etcd.pid")" "$PGC_ETCD_PORT"
    else
        printf '%-9s stopped\n' etcd
        rc=1
    fi
    for i in $(_pgc_nodes); do
        _pgc_select "$i"
        if _pgc_patroni_running; then
            role="$(awk -v n="$PGC_NAME" '$1 == n { print $2 " (" $3 ")" }' <<<"$members")"
            printf '%-9s running  pid %s  %s  postgres 127.0.0.1:%s  patroni :%s\n' \
                "$PGC_NAME" "$(_read_pid "$RUN_DIR/$PGC_TAG.pid")" "${role:-unknown}" "$PGC_PORT" "$PGC_REST"
        else
            printf '%-9s stopped\n' "$PGC_NAME"
            rc=1
        fi
    done
    _pgc_select 1
    if _pgc_haproxy_running; then
        printf '%-9s running  pid %s  writes 127.0.0.1:%s  reads :%s  stats :%s\n' haproxy \
            "$(_read_pid "$RUN_DIR/haproxy.pid")" "$PG_PORT" "$PG_READ_PORT" "$PGC_STATS_PORT"
    else
        printf '%-9s stopped\n' haproxy
        rc=1
    fi
    return "$rc"
}

patronictl_local() { # patronictl on the cluster (e.g. list, switchover, edit-config)
    patronictl -c "$PGC_CONF" "$@"
}

# --- RabbitMQ --------------------------------------------------------------------
#
# One node by default (AMQP_PORT, RABBITMQ_MGMT_PORT, RABBITMQ_DIST_PORT, data
# in .local/rabbitmq). With RABBITMQ_NODES=N (2..9), a cluster of N nodes
# instead, booking-1@localhost … booking-N@localhost, on ports of their own
# (AMQP RABBITMQ_CLUSTER_AMQP_PORT+i-1, management +10000, distribution
# +20000; 5681…, 15681…, 25681… by default) with data under
# .local/rabbitmq-cluster/node-i, so that the single node and the cluster
# never share a node or a port. The functions below act on the node that
# _rmq_select chose.

RMQ_NODES="${RABBITMQ_NODES:-1}"
_rmq_check_nodes() {
    [[ $RMQ_NODES =~ ^[1-9]$ ]] || _die "the number of RabbitMQ nodes must be 1 to 9, not $RMQ_NODES"
}
_rmq_check_nodes
RMQ_CLUSTER_AMQP_PORT="${RABBITMQ_CLUSTER_AMQP_PORT:-5681}"
RMQ_CLUSTER_DIR="$LOCAL_DIR/rabbitmq-cluster"

_rmq_select() { # _rmq_select I: make node I (1-based) the current one
    local i="$1"
    if ((RMQ_NODES == 1)); then
        RMQ_NODENAME="${RABBITMQ_NODENAME:-booking@localhost}"
        RMQ_DIR="$LOCAL_DIR/rabbitmq"
        RMQ_PORT="$AMQP_PORT"
        RMQ_DIST="$RABBITMQ_DIST_PORT"
        RMQ_MGMT="$RABBITMQ_MGMT_PORT"
        RMQ_TAG=rabbitmq
    else
        RMQ_NODENAME="booking-$i@localhost"
        RMQ_DIR="$RMQ_CLUSTER_DIR/node-$i"
        RMQ_PORT=$((RMQ_CLUSTER_AMQP_PORT + i - 1))
        RMQ_DIST=$((RMQ_PORT + 20000))
        RMQ_MGMT=$((RMQ_PORT + 10000))
        RMQ_TAG="rabbitmq-$i"
    fi
    # The beam writes this once boot is complete; `rabbitmqctl wait` keys on it.
    RMQ_PID_FILE="$RMQ_DIR/rabbitmq.pid"
}
_rmq_select 1

_rmq_nodes() { seq 1 "$RMQ_NODES"; }

# services_args "$@": takes `--rabbitmq-nodes N` and `--postgres-nodes N` out
# of a script's arguments (the same as RABBITMQ_NODES=N, POSTGRES_NODES=N) and
# leaves the rest in SERVICES_ARGS.
SERVICES_ARGS=()
services_args() {
    SERVICES_ARGS=()
    while (($#)); do
        case "$1" in
        --rabbitmq-nodes)
            (($# > 1)) || _die "--rabbitmq-nodes needs a number"
            RMQ_NODES="$2"
            shift 2
            ;;
        --rabbitmq-nodes=*)
            RMQ_NODES="${1#*=}"
            shift
            ;;
        --postgres-nodes)
            (($# > 1)) || _die "--postgres-nodes needs a number"
            PG_NODES="$2"
            shift 2
            ;;
        --postgres-nodes=*)
            PG_NODES="${1#*=}"
            shift
            ;;
        *)
            SERVICES_ARGS+=("$1")
            shift
            ;;
        esac
    done
    _rmq_check_nodes
    _rmq_select 1
    _pg_check_nodes
}

# Environment of the current node, shared by the server and rabbitmqctl.
# HOME is private too: the Erlang cookie lives in $HOME/.erlang.cookie, and
# the /usr/sbin wrappers would switch to the rabbitmq user and its cookie.
_rmq_export() {
    export HOME="$RMQ_DIR/home"
    export RABBITMQ_NODENAME="$RMQ_NODENAME"
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT="$RMQ_PORT"
    export RABBITMQ_DIST_PORT="$RMQ_DIST"
    export RABBITMQ_MNESIA_BASE="$RMQ_DIR/mnesia"
    export RABBITMQ_LOG_BASE="$RMQ_DIR/log"
    export RABBITMQ_CONFIG_FILE="$RMQ_DIR/rabbitmq.conf"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$RMQ_DIR/advanced.config"
    export RABBITMQ_CONF_ENV_FILE="$RMQ_DIR/rabbitmq-env.conf"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ_DIR/enabled_plugins"
    export RABBITMQ_PID_FILE="$RMQ_PID_FILE"
    export ERL_EPMD_ADDRESS=127.0.0.1
    # A peer that stops answering (frozen, cut off) is declared down after
    # 7.5-12.5 s rather than Erlang's 45-75 s, during which every node that
    # sends to it stalls; the CLI tools must tick alike.
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} -kernel net_ticktime 10"
    export RABBITMQ_CTL_ERL_ARGS="-kernel net_ticktime 10"
}

rabbitmqctl_local() { # rabbitmqctl against the current node
    (_rmq_export && exec "$RMQ_BIN/rabbitmqctl" -n "$RMQ_NODENAME" "$@")
}

# The beam's command line carries `-home <our HOME>`, unique to this node.
_rmq_running() { _pid_matches "$(_read_pid "$RMQ_PID_FILE" || true)" "-home $RMQ_DIR/home"; }

_rmq_mgmt_ok() {
    curl -fsS -m 5 -u guest:guest "http://127.0.0.1:$RMQ_MGMT/api/overview" >/dev/null 2>&1
}

_epmd_running() { ERL_EPMD_ADDRESS=127.0.0.1 epmd -names >/dev/null 2>&1; }

# A cookie: the one node's own, or one shared by all nodes of the cluster.
_rmq_cookie() {
    local cookie="$RMQ_DIR/home/.erlang.cookie" shared="$RMQ_CLUSTER_DIR/.erlang.cookie"
    [[ -s $cookie ]] && return 0
    if ((RMQ_NODES > 1)); then
        if [[ ! -s $shared ]]; then
            (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F >"$shared")
        fi
        cp "$shared" "$cookie"
    else
        (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F >"$cookie")
    fi
    chmod 400 "$cookie"
}

# Launches the current node unless it runs already; adds it to
# RMQ_STARTING, which _rmq_wait then waits for.
RMQ_STARTING=()
_rmq_start() {
    if _rmq_running; then
        _log "RabbitMQ: reusing the running node $RMQ_NODENAME"
        return 0
    fi
    local names
    names="$(ERL_EPMD_ADDRESS=127.0.0.1 epmd -names 2>/dev/null || true)"
    if _port_open "$RMQ_PORT" || [[ $names == *"name ${RMQ_NODENAME%@*} at"* ]]; then
        ((RMQ_NODES == 1)) ||
            _die "AMQP port $RMQ_PORT or node $RMQ_NODENAME is taken by something outside .local (set RABBITMQ_CLUSTER_AMQP_PORT)"
        _rmq_mgmt_ok ||
            _die "AMQP port $RMQ_PORT or node $RMQ_NODENAME is taken by a broker we cannot reach (set AMQP_PORT)"
        _log "RabbitMQ: reusing a foreign broker on 127.0.0.1:$RMQ_PORT"
        return 0
    fi
    mkdir -p "$RMQ_DIR/home" "$RMQ_DIR/mnesia" "$RMQ_DIR/log"
    rm -f "$RMQ_PID_FILE" # stale after kill -9; `rabbitmqctl wait` would trust it
    _rmq_cookie
    echo '[rabbitmq_management,rabbitmq_shovel,rabbitmq_shovel_management].' \
        >"$RMQ_DIR/enabled_plugins"
    cat >"$RMQ_DIR/rabbitmq.conf" <<CONF
# Written by scripts/services.sh on every start.
management.tcp.ip = 127.0.0.1
management.tcp.port = $RMQ_MGMT
# After a partition (a node cut off, or frozen and then thawed), the side
# with fewer clients restarts and rejoins the other on its own.
cluster_partition_handling = autoheal
CONF
    # The node starts epmd if none runs; remember that so down can stop it.
    # ("pending" until _rmq_wait learns its pid, in case we fail before that.)
    if [[ ! -s $RUN_DIR/epmd.pid ]] && ! _epmd_running; then
        echo pending >"$RUN_DIR/epmd.pid"
    fi
    # The /usr/sbin wrapper switches user and drops these variables; call the
    # real script.
    (_rmq_export && cd "$RMQ_DIR" &&
        _spawn "$RUN_DIR/$RMQ_TAG.pid" "$LOG_DIR/$RMQ_TAG.log" "$RMQ_BIN/rabbitmq-server")
    RMQ_STARTING+=("$RMQ_NODENAME")
}

_rmq_wait() {
    local launcher starting=0
    [[ " ${RMQ_STARTING[*]} " == *" $RMQ_NODENAME "* ]] && starting=1
    if ((starting)); then
        launcher="$(_read_pid "$RUN_DIR/$RMQ_TAG.pid")"
        _wait_until 120 "RabbitMQ boot ($RMQ_NODENAME)" "$launcher" "$LOG_DIR/$RMQ_TAG.log" test -s "$RMQ_PID_FILE" ||
            _die "RabbitMQ did not start (logs: ${LOG_DIR#"$ROOT"/}/$RMQ_TAG.log, ${RMQ_DIR#"$ROOT"/}/log)"
    fi
    if _rmq_running; then
        rabbitmqctl_local wait --timeout 60 "$RMQ_PID_FILE" >/dev/null ||
            _die "rabbitmqctl cannot reach $RMQ_NODENAME (Erlang cookie in ${RMQ_DIR#"$ROOT"/}/home?)"
    fi
    _wait_until 60 "RabbitMQ management API" "" "$LOG_DIR/$RMQ_TAG.log" _rmq_mgmt_ok ||
        _die "RabbitMQ management API is not answering on 127.0.0.1:$RMQ_MGMT"
    if ((starting)); then
        # Track the beam itself rather than the launcher script.
        _read_pid "$RMQ_PID_FILE" >"$RUN_DIR/$RMQ_TAG.pid"
        if [[ $(_read_pid "$RUN_DIR/epmd.pid" || true) == pending ]]; then
            pgrep -n -x epmd >"$RUN_DIR/epmd.pid" || rm -f "$RUN_DIR/epmd.pid"
        fi
        _log "RabbitMQ: started $RMQ_NODENAME (pid $(_read_pid "$RMQ_PID_FILE")) on 127.0.0.1:$RMQ_PORT, management on :$RMQ_MGMT"
    fi
}

# Whether the current node runs in one cluster with node 1.
_rmq_clustered() {
    local first="booking-1@localhost"
    rabbitmqctl_local cluster_status --formatter json 2>/dev/null |
        python3 -c 'import json, sys; sys.exit(sys.argv[1] not in json.load(sys.stdin).get("running_nodes", []))' "$first"
}

# Joins nodes 2..N to node 1 (once; a node that was clustered before comes
# back into its cluster by itself), then waits until all N run together.
_rmq_cluster() {
    local i log first="booking-1@localhost"
    for i in $(seq 2 "$RMQ_NODES"); do
        _rmq_select "$i"
        _rmq_clustered && continue
        _log "RabbitMQ: joining $RMQ_NODENAME to $first"
        log="$LOG_DIR/$RMQ_TAG.log"
        rabbitmqctl_local stop_app >>"$log" 2>&1
        rabbitmqctl_local reset >>"$log" 2>&1
        rabbitmqctl_local join_cluster "$first" >>"$log" 2>&1 ||
            _die "$RMQ_NODENAME could not join $first (logs: ${log#"$ROOT"/}, ${RMQ_DIR#"$ROOT"/}/log)"
        rabbitmqctl_local start_app >>"$log" 2>&1
    done
    for i in $(_rmq_nodes); do
        _rmq_select "$i"
        _wait_until 60 "$RMQ_NODENAME in the cluster" "" "" _rmq_clustered ||
            _die "$RMQ_NODENAME is not running in the cluster of $first"
    done
    _rmq_select 1
    _log "RabbitMQ: a cluster of $RMQ_NODES nodes runs: $(services_rabbitmq_ui_urls)"
}

_rmq_up() {
    local i
    # The nodes boot in parallel; _rmq_ready waits for them.
    for i in $(_rmq_nodes); do _rmq_select "$i" && _rmq_start; done
    if ((${#RMQ_STARTING[@]})); then SERVICES_STARTED+=(rabbitmq); fi
}

_rmq_ready() {
    local i
    for i in $(_rmq_nodes); do _rmq_select "$i" && _rmq_wait; done
    RMQ_STARTING=()
    if ((RMQ_NODES > 1)); then _rmq_cluster; fi
    _rmq_select 1
}

_rmq_node_down() {
    local pid
    pid="$(_read_pid "$RMQ_PID_FILE" || true)"
    if _pid_matches "$pid" "-home $RMQ_DIR/home"; then
        _log "RabbitMQ: stopping $RMQ_NODENAME"
        # `stop <pidfile>` returns once the OS process is gone.
        if ! rabbitmqctl_local stop "$RMQ_PID_FILE" >/dev/null 2>&1; then
            _log "RabbitMQ: rabbitmqctl stop failed, sending SIGTERM"
            _stop_pid "$pid"
        fi
    fi
    # Still booting (services_up failed before the node was ready): TERM the
    # launcher's process group; the launcher and the beam both stop on it.
    pid="$(_read_pid "$RUN_DIR/$RMQ_TAG.pid" || true)"
    if _pid_matches "$pid" rabbitmq-server; then
        _log "RabbitMQ: stopping the booting node $RMQ_NODENAME"
        kill -TERM -- "-$pid" 2>/dev/null || true
        _stop_pid "$pid"
    fi
    rm -f "$RMQ_PID_FILE" "$RUN_DIR/$RMQ_TAG.pid"
}

_rmq_down() {
    local i jobs=()
    # In parallel: a clustered node stops in about 7 s. (Whichever stops
    # last, a node that comes back first waits for its peers, which
    # services_up starts together, so the order does not matter here.)
    for i in $(_rmq_nodes); do
        (_rmq_select "$i" && _rmq_node_down) &
        jobs+=($!)
    done
    wait "${jobs[@]}"
    _rmq_select 1
    local pid
    pid="$(_read_pid "$RUN_DIR/epmd.pid" || true)"
    if { [[ $pid == pending ]] && _epmd_running; } || _pid_matches "$pid" epmd; then
        # epmd -kill refuses while other nodes are still registered.
        ERL_EPMD_ADDRESS=127.0.0.1 epmd -kill >/dev/null 2>&1 ||
            _log "epmd left running (other Erlang nodes use it)"
    fi
    rm -f "$RUN_DIR/epmd.pid"
}

# _rmq_list SEP PREFIX VAR SUFFIX: PREFIX${!VAR}SUFFIX of every node, joined
# by the one character SEP (e.g. each node's AMQP URL, with VAR=RMQ_PORT).
_rmq_list() {
    local sep="$1" prefix="$2" var="$3" suffix="$4" i out=()
    for i in $(_rmq_nodes); do
        _rmq_select "$i"
        out+=("$prefix${!var}$suffix")
    done
    _rmq_select 1
    (IFS="$sep" && echo "${out[*]}")
}

# Each node's management UI, space separated.
services_rabbitmq_ui_urls() { _rmq_list ' ' http://127.0.0.1: RMQ_MGMT ''; }

# --- maildev ---------------------------------------------------------------------

_maildev_ok() { curl -fsS -m 5 "http://127.0.0.1:$MAILDEV_WEB_PORT/email" >/dev/null 2>&1; }

_maildev_up() {
    local pid
    pid="$(_read_pid "$RUN_DIR/maildev.pid" || true)"
    if _pid_matches "$pid" maildev; then
        _log "maildev: reusing the running instance (pid $pid)"
    elif _port_open "$SMTP_PORT" || _port_open "$MAILDEV_WEB_PORT"; then
        _maildev_ok || _die "port $SMTP_PORT or $MAILDEV_WEB_PORT is taken by something that is not maildev"
        _log "maildev: reusing a foreign instance on 127.0.0.1:$MAILDEV_WEB_PORT"
        return 0
    else
        [[ -f $MAILDEV_BIN ]] || _die "maildev is not installed (run services_install)"
        # maildev reloads persisted mail on start; a fresh instance starts empty.
        rm -rf "$MAILDEV_DIR/mail"
        mkdir -p "$MAILDEV_DIR/mail"
        _spawn "$RUN_DIR/maildev.pid" "$LOG_DIR/maildev.log" node "$MAILDEV_BIN" \
            --ip 127.0.0.1 --web-ip 127.0.0.1 --smtp "$SMTP_PORT" --web "$MAILDEV_WEB_PORT" \
            --mail-directory "$MAILDEV_DIR/mail"
        pid="$(_read_pid "$RUN_DIR/maildev.pid")"
        SERVICES_STARTED+=(maildev)
        _log "maildev: started (pid $pid), SMTP 127.0.0.1:$SMTP_PORT, web :$MAILDEV_WEB_PORT"
    fi
    _wait_until 30 "maildev" "$pid" "$LOG_DIR/maildev.log" _maildev_ok ||
        _die "maildev did not start"
}

_maildev_down() {
    local pid
    pid="$(_read_pid "$RUN_DIR/maildev.pid" || true)"
    if _pid_matches "$pid" maildev; then
        _log "maildev: stopping (pid $pid)"
        _stop_pid "$pid"
    fi
    rm -f "$RUN_DIR/maildev.pid"
}

# --- public API ------------------------------------------------------------------

# services_up [postgres|rabbitmq|maildev ...]: with no names, all three.
services_up() {
    local start=$SECONDS wanted=" ${*:-postgres rabbitmq maildev} " t
    for t in $wanted; do
        case "$t" in postgres | rabbitmq | maildev) ;; *) _die "unknown service $t" ;; esac
    done
    SERVICES_UP_CALLED=1
    mkdir -p "$RUN_DIR" "$LOG_DIR"
    # RabbitMQ boots slowest: launch it first and let the others start meanwhile.
    [[ $wanted != *" rabbitmq "* ]] || _rmq_up
    [[ $wanted != *" postgres "* ]] || _pg_up
    [[ $wanted != *" maildev "* ]] || _maildev_up
    [[ $wanted != *" rabbitmq "* ]] || _rmq_ready
    _log "services up in $((SECONDS - start))s${SERVICES_STARTED[*]:+ (started: ${SERVICES_STARTED[*]})}"
}

# services_down [postgres|rabbitmq|maildev ...]: with no names, stop what this
# shell's services_up started, or (in a fresh shell, e.g. `services.sh down`)
# everything our scripts run under .local.
services_down() {
    local targets=("$@")
    if ((${#targets[@]} == 0)); then
        if ((SERVICES_UP_CALLED)); then
            targets=("${SERVICES_STARTED[@]}")
        else
            targets=(maildev rabbitmq postgres)
        fi
    fi
    local t rmq_job=""
    for t in "${targets[@]}"; do
        case "$t" in
        # rabbitmqctl stop takes ~7 s: overlap it with the others.
        rabbitmq) (_rmq_down) & rmq_job=$! ;;
        postgres) _pg_down ;;
        maildev) _maildev_down ;;
        *) _die "unknown service $t" ;;
        esac
    done
    if [[ -n $rmq_job ]]; then wait "$rmq_job"; fi
    SERVICES_STARTED=()
}

services_env() {
    export DATABASE_URL="postgres://booking:booking@127.0.0.1:$PG_PORT/booking"
    # A cluster's replicas (HAProxy's read port), for reads that may lag.
    if ((PG_NODES > 1)); then
        export DATABASE_READ_URL="postgres://booking:booking@127.0.0.1:$PG_READ_PORT/booking"
    fi
    # Every node of a cluster, comma separated: the services fail over.
    AMQP_URL="$(_rmq_list , amqp://guest:guest@127.0.0.1: RMQ_PORT /%2f)"
    export AMQP_URL
    export RABBITMQ_MANAGEMENT_URL="http://guest:guest@127.0.0.1:$RMQ_MGMT"
    # A cluster's queues are replicated to three nodes (or all, if fewer).
    if ((RMQ_NODES > 1)); then
        export QUORUM_INITIAL_GROUP_SIZE="${QUORUM_INITIAL_GROUP_SIZE:-$((RMQ_NODES < 3 ? RMQ_NODES : 3))}"
    fi
    export SMTP_URL="smtp://127.0.0.1:$SMTP_PORT"
    export MAILDEV_URL="http://127.0.0.1:$MAILDEV_WEB_PORT"
    export MAIL_FROM="Booking <tickets@booking.local>"
    export ADMIN_TOKEN="${ADMIN_TOKEN:-dev-admin-token}"
}

services_status() {
    local pid rc=0
    if ((PG_NODES > 1)); then
        _pgc_status || rc=1
    elif _pg_running; then
        echo "postgres  running  pid $(_read_pid "$PG_DATA/postmaster.pid")  127.0.0.1:$PG_PORT"
    else
        echo "postgres  stopped"
        rc=1
    fi
    local i
    for i in $(_rmq_nodes); do
        _rmq_select "$i"
        if _rmq_running; then
            printf '%-9s running  pid %s  amqp 127.0.0.1:%s  mgmt :%s\n' \
                "$RMQ_TAG" "$(_read_pid "$RMQ_PID_FILE")" "$RMQ_PORT" "$RMQ_MGMT"
        else
            printf '%-9s stopped\n' "$RMQ_TAG"
            rc=1
        fi
    done
    _rmq_select 1
    pid="$(_read_pid "$RUN_DIR/maildev.pid" || true)"
    if _pid_matches "$pid" maildev; then
        echo "maildev   running  pid $pid  smtp 127.0.0.1:$SMTP_PORT  web :$MAILDEV_WEB_PORT"
    else
        echo "maildev   stopped"
        rc=1
    fi
    return "$rc"
}

# --- command line ----------------------------------------------------------------

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    services_args "$@"
    set -- "${SERVICES_ARGS[@]}"
    case "${1:-}" in
    install)
        shift
        services_install "$@"
        ;;
    up)
        shift
        services_up "$@"
        ;;
    down)
        shift
        services_down "$@"
        ;;
    status) services_status ;;
    env)
        services_env
        for v in DATABASE_URL AMQP_URL RABBITMQ_MANAGEMENT_URL SMTP_URL MAILDEV_URL MAIL_FROM ADMIN_TOKEN \
            ${DATABASE_READ_URL:+DATABASE_READ_URL} ${QUORUM_INITIAL_GROUP_SIZE:+QUORUM_INITIAL_GROUP_SIZE}; do
            printf 'export %s=%q\n' "$v" "${!v}"
        done
        ;;
    psql)
        shift
        services_env
        exec psql "$DATABASE_URL" "$@"
        ;;
    rabbitmqctl)
        shift
        rabbitmqctl_local "$@"
        ;;
    patronictl)
        shift
        ((PG_NODES > 1)) || _die "patronictl needs --postgres-nodes N (or POSTGRES_NODES)"
        patronictl_local "$@"
        ;;
    *)
        echo "usage: $0 [--rabbitmq-nodes N] [--postgres-nodes N] install [--with-postgres-cluster]|up [service...]|down [service...]|status|env|psql [args]|rabbitmqctl [args]|patronictl [args]" >&2
        exit 2
        ;;
    esac
fi
