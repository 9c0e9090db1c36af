#!/usr/bin/env bash
# Real backends for Switchboard's tests: Redis, PostgreSQL and a Kafka-protocol
# broker (tansu), each on a free loopback port, plus a Python venv with the
# integrator and chart-check tools, a mail pair for the e-mail channel (an
# IMAP server, dovecot, and an SMTP sink, aiosmtpd) and a headless browser
# (chromium) for the web chat widget.
#
# Usage (run):
#   scripts/test-env.sh install   install what is missing (apt, cargo, pip)
#   scripts/test-env.sh start     install, start the backends, write the env file
#   scripts/test-env.sh env       print the env file (eval "$(scripts/test-env.sh env)")
#   scripts/test-env.sh status    say what is running
#   scripts/test-env.sh stop      stop everything started here, remove its data
#
# Usage (sourced): `. scripts/test-env.sh start` does the same as run and then
# exports the variables into the calling shell; `. scripts/test-env.sh` with no
# subcommand only exports the variables of an environment already started.
#
# Exports: SWITCHBOARD_TEST_REDIS=redis://127.0.0.1:P
#          SWITCHBOARD_TEST_POSTGRES=postgres://switchboard@127.0.0.1:P/switchboard
#          SWITCHBOARD_TEST_KAFKA=127.0.0.1:P
#          SWITCHBOARD_TEST_PYTHON=<venv>/bin/python
#          SWITCHBOARD_TEST_IMAP=127.0.0.1:P   (any user name; password `switchboard`;
#            each user its own mailbox)
#          SWITCHBOARD_TEST_SMTP=127.0.0.1:P   (accepts all mail, no auth)
#          SWITCHBOARD_TEST_SMTP_MAILDIR=<dir> (where it is delivered, a Maildir)
#          SWITCHBOARD_TEST_CHROMIUM=<path>    (headless browser)
#
# Knobs: SWITCHBOARD_TEST_ENV_DIR (default <repo>/.test-env),
#        SWITCHBOARD_TEST_ENV_BACKENDS (default "redis postgres kafka mail"; a subset
#          starts and installs only those; "" none, so `install` sets up only
#          the venv and docker-compose),
#        SWITCHBOARD_TEST_ENV_NO_INSTALL=1 (never install anything).

_sbte_main() {
    set -euo pipefail

    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    STATE_DIR="${SWITCHBOARD_TEST_ENV_DIR:-$root/.test-env}"
    RUN_DIR="$STATE_DIR/run"
    ENV_FILE="$STATE_DIR/env.sh"
    VENV="$STATE_DIR/venv"
    BACKENDS="${SWITCHBOARD_TEST_ENV_BACKENDS-redis postgres kafka mail}"
    TANSU_VERSION="0.6.0"
    PG_MAJOR="15"

    local cmd="${1:-}"
    case "$cmd" in
        install) _sbte_install ;;
        start)
            _sbte_install
            _sbte_start
            ;;
        stop) _sbte_stop ;;
        env) _sbte_print_env ;;
        status) _sbte_status ;;
        *)
            echo "usage: $0 {install|start|stop|env|status}" >&2
            return 2
            ;;
    esac
}

_sbte_log() { printf '[test-env] %s\n' "$*" >&2; }
_sbte_die() {
    printf '[test-env] ERROR: %s\n' "$*" >&2
    return 1
}

_sbte_wants() { [[ " $BACKENDS " == *" $1 "* ]]; }

# ---------------------------------------------------------------- install ---

_sbte_pg_bindir() {
    if [[ -x "/usr/lib/postgresql/$PG_MAJOR/bin/initdb" ]]; then
        echo "/usr/lib/postgresql/$PG_MAJOR/bin"
        return 0
    fi
    # Any other installed major version works too.
    local dir found=""
    for dir in /usr/lib/postgresql/*/bin; do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then found="$dir"; fi
    done
    if [[ -n "$found" ]]; then
        echo "$found"
        return 0
    fi
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"
        return 0
    fi
    return 1
}

_sbte_chromium() {
    command -v chromium || command -v chromium-browser || command -v google-chrome
}

_sbte_tansu_bin() {
    if command -v tansu >/dev/null 2>&1; then
        command -v tansu
    elif [[ -x "$HOME/.cargo/bin/tansu" ]]; then
        echo "$HOME/.cargo/bin/tansu"
    else
        return 1
    fi
}

_sbte_as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo "$@"
    else
        _sbte_die "need root to run: $* (install it yourself and re-run)"
    fi
}

_sbte_install() {
    if [[ "${SWITCHBOARD_TEST_ENV_NO_INSTALL:-0}" == "1" ]]; then
        _sbte_log "SWITCHBOARD_TEST_ENV_NO_INSTALL=1: not installing anything"
        return 0
    fi

    local apt_pkgs=()
    if _sbte_wants redis; then
        if ! command -v redis-server >/dev/null 2>&1; then apt_pkgs+=(redis-server); fi
        if ! command -v redis-cli >/dev/null 2>&1; then apt_pkgs+=(redis-tools); fi
    fi
    if _sbte_wants postgres; then
        if ! _sbte_pg_bindir >/dev/null; then apt_pkgs+=("postgresql-$PG_MAJOR"); fi
        if ! command -v psql >/dev/null 2>&1; then apt_pkgs+=(postgresql-client); fi
    fi
    if _sbte_wants mail && ! command -v dovecot >/dev/null 2>&1; then apt_pkgs+=(dovecot-imapd); fi
    # Makes the test CA and the Redis and PostgreSQL servers' certificates.
    if ! command -v openssl >/dev/null 2>&1; then apt_pkgs+=(openssl); fi
    if ! _sbte_chromium >/dev/null; then apt_pkgs+=(chromium); fi
    # docker-compose 1.29 validates docker-compose.yml without an engine.
    if ! command -v docker-compose >/dev/null 2>&1; then apt_pkgs+=(docker-compose); fi

    if ((${#apt_pkgs[@]} > 0)); then
        command -v apt-get >/dev/null 2>&1 || _sbte_die "apt-get not found; install: ${apt_pkgs[*]}"
        _sbte_log "installing with apt-get: ${apt_pkgs[*]}"
        _sbte_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        _sbte_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
    fi

    if _sbte_wants kafka && ! _sbte_tansu_bin >/dev/null; then
        command -v cargo >/dev/null 2>&1 || _sbte_die "cargo not found: cannot install tansu"
        _sbte_log "installing tansu $TANSU_VERSION with cargo (about 13 minutes of compiling, once)"
        cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore,libsql
        _sbte_tansu_bin >/dev/null || _sbte_die "tansu was installed but is not in PATH nor ~/.cargo/bin"
    fi

    _sbte_install_venv
}

_sbte_venv_ok() {
    [[ -x "$VENV/bin/python" ]] &&
        "$VENV/bin/python" - <<'PY' >/dev/null 2>&1
import grpc, grpc_tools.protoc, grpc_health.v1.health_pb2, grpc_reflection.v1alpha.reflection_pb2
import pytest, kubernetes_validate, yaml, cffi, helm_sdkpy, aiosmtpd
PY
}

_sbte_install_venv() {
    if _sbte_venv_ok; then
        return 0
    fi
    local python="${SWITCHBOARD_TEST_PYTHON_BASE:-python3}"
    command -v "$python" >/dev/null 2>&1 || _sbte_die "$python not found: cannot create the venv"
    mkdir -p "$STATE_DIR"
    if [[ ! -x "$VENV/bin/python" ]]; then
        _sbte_log "creating the Python venv at $VENV"
        "$python" -m venv "$VENV" || _sbte_die "python3 -m venv failed (on Debian's python: apt-get install python3-venv)"
    fi
    _sbte_log "installing Python test tools into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        grpcio grpcio-tools grpcio-health-checking grpcio-reflection pytest kubernetes-validate pyyaml aiosmtpd
    # helm-sdkpy bundles Helm as a shared library; it declares Python >= 3.12
    # but works on 3.11.
    # Pinned: tests/python/helm_render.py relies on how this version installs.
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --ignore-requires-python "helm-sdkpy==0.1.32" cffi
    _sbte_venv_ok || _sbte_die "the venv at $VENV still lacks a package (see pip's output above)"
}

# ------------------------------------------------------------------ start ---

# Prints N distinct free loopback ports (all bound at once, so distinct).
_sbte_free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

# True when PID is alive and its command line contains WORD (guards against
# a recycled pid: we only ever signal processes we started).
_sbte_pid_is() {
    local pid="$1" word="$2" cmdline
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *"$word"* ]]
}

_sbte_read() { if [[ -f "$RUN_DIR/$1" ]]; then cat "$RUN_DIR/$1"; fi; }

# Waits until "$@" succeeds, at most $1 seconds; $2 names the thing.
_sbte_wait_for() {
    local timeout="$1" what="$2"
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            _sbte_die "$what did not answer within ${timeout}s"
            return 1
        fi
        sleep 0.2
    done
}

_sbte_redis_ok() {
    local port
    port="$(_sbte_read redis.port)"
    [[ -n "$port" ]] && [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == "PONG" ]]
}

_sbte_postgres_ok() {
    local port bindir
    port="$(_sbte_read postgres.port)"
    bindir="$(_sbte_pg_bindir)" || return 1
    [[ -n "$port" ]] && "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres
}

# A real Kafka ApiVersions (v0) round trip, not just an open port.
_sbte_kafka_probe() {
    python3 - "$1" <<'PY'
import socket, struct, sys
port = int(sys.argv[1])
client = b"switchboard-test-env"
body = struct.pack(">hhih", 18, 0, 42, len(client)) + client
with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
    s.settimeout(2)
    s.sendall(struct.pack(">i", len(body)) + body)
    head = b""
    while len(head) < 4:
        chunk = s.recv(4 - len(head))
        if not chunk:
            sys.exit(1)
        head += chunk
    size = struct.unpack(">i", head)[0]
    data = b""
    while len(data) < size:
        chunk = s.recv(size - len(data))
        if not chunk:
            sys.exit(1)
        data += chunk
correlation, error = struct.unpack(">ih", data[:6])
sys.exit(0 if correlation == 42 and error == 0 else 1)
PY
}

_sbte_kafka_ok() {
    local port
    port="$(_sbte_read kafka.port)"
    [[ -n "$port" ]] && _sbte_pid_is "$(_sbte_read tansu.pid)" tansu && _sbte_kafka_probe "$port"
}

_sbte_all_ok() {
    [[ -f "$ENV_FILE" ]] || return 1
    if _sbte_wants redis; then _sbte_redis_ok || return 1; fi
    if _sbte_wants postgres; then _sbte_postgres_ok || return 1; fi
    if _sbte_wants kafka; then _sbte_kafka_ok || return 1; fi
    if _sbte_wants mail; then _sbte_mail_ok || return 1; fi
    return 0
}

_sbte_start() {
    if _sbte_all_ok; then
        _sbte_log "already running ($ENV_FILE)"
        return 0
    fi
    if [[ -d "$RUN_DIR" ]]; then
        _sbte_log "a previous environment is incomplete or stale: stopping it first"
        _sbte_stop
    fi
    mkdir -p "$RUN_DIR"
    echo "$BACKENDS" >"$RUN_DIR/backends"

    local ports redis_port postgres_port kafka_port imap_port smtp_port redis_tls_port
    ports="$(_sbte_free_ports 6)"
    read -r redis_port postgres_port kafka_port imap_port smtp_port redis_tls_port <<<"$ports"

    if _sbte_wants redis || _sbte_wants postgres; then _sbte_make_tls; fi
    if _sbte_wants redis; then _sbte_start_redis "$redis_port" "$redis_tls_port"; fi
    if _sbte_wants postgres; then _sbte_start_postgres "$postgres_port"; fi
    if _sbte_wants kafka; then _sbte_start_kafka "$kafka_port"; fi
    if _sbte_wants mail; then _sbte_start_mail "$imap_port" "$smtp_port"; fi

    {
        echo "# Written by scripts/test-env.sh start; removed by stop."
        if _sbte_wants redis || _sbte_wants postgres; then echo "export SWITCHBOARD_TEST_TLS_CA=$RUN_DIR/tls/ca.pem"; fi
        if _sbte_wants redis; then
            echo "export SWITCHBOARD_TEST_REDIS=redis://127.0.0.1:$redis_port"
            # The same server on a TLS port, its certificate signed by the test CA.
            echo "export SWITCHBOARD_TEST_REDIS_TLS=rediss://127.0.0.1:$redis_tls_port"
        fi
        if _sbte_wants postgres; then
            echo "export SWITCHBOARD_TEST_POSTGRES=postgres://switchboard@127.0.0.1:$postgres_port/switchboard"
            echo "export SWITCHBOARD_TEST_POSTGRES_TLS=postgres://switchboard@127.0.0.1:$postgres_port/switchboard?sslmode=require"
        fi
        if _sbte_wants kafka; then echo "export SWITCHBOARD_TEST_KAFKA=127.0.0.1:$kafka_port"; fi
        if [[ -x "$VENV/bin/python" ]]; then echo "export SWITCHBOARD_TEST_PYTHON=$VENV/bin/python"; fi
        if _sbte_wants mail; then
            echo "export SWITCHBOARD_TEST_IMAP=127.0.0.1:$imap_port"
            echo "export SWITCHBOARD_TEST_SMTP=127.0.0.1:$smtp_port"
            echo "export SWITCHBOARD_TEST_SMTP_MAILDIR=$(_sbte_read mail.dir)/smtp"
        fi
        if _sbte_chromium >/dev/null; then echo "export SWITCHBOARD_TEST_CHROMIUM=$(_sbte_chromium)"; fi
    } >"$ENV_FILE.tmp"
    mv "$ENV_FILE.tmp" "$ENV_FILE"
    _sbte_log "ready; environment in $ENV_FILE:"
    grep '^export' "$ENV_FILE" | sed 's/^/[test-env]   /' >&2
}

# A CA of this environment and one server certificate it signs for
# localhost and 127.0.0.1, which Redis (on its TLS port) and PostgreSQL serve.
_sbte_make_tls() {
    command -v openssl >/dev/null 2>&1 || _sbte_die "openssl not found"
    local dir="$RUN_DIR/tls"
    mkdir -p "$dir"
    _sbte_log "making the test CA and server certificate in $dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
        -subj "/CN=Switchboard test-env CA" -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" >/dev/null 2>&1 ||
        _sbte_die "openssl: CA failed"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
        -keyout "$dir/server-key.pem" -out "$dir/server.csr" >/dev/null 2>&1 || _sbte_die "openssl: CSR failed"
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial \
        -days 30 -extfile "$dir/server.ext" -out "$dir/server.pem" >/dev/null 2>&1 || _sbte_die "openssl: signing failed"
}

_sbte_start_redis() {
    local port="$1" tls_port="$2"
    command -v redis-server >/dev/null 2>&1 || _sbte_die "redis-server not found"
    mkdir -p "$RUN_DIR/redis"
    echo "$port" >"$RUN_DIR/redis.port"
    _sbte_log "starting redis-server on 127.0.0.1:$port (TLS on $tls_port)"
    redis-server --bind 127.0.0.1 --port "$port" --protected-mode no \
        --tls-port "$tls_port" --tls-cert-file "$RUN_DIR/tls/server.pem" \
        --tls-key-file "$RUN_DIR/tls/server-key.pem" --tls-ca-cert-file "$RUN_DIR/tls/ca.pem" \
        --tls-auth-clients no \
        --save "" --appendonly no --dir "$RUN_DIR/redis" \
        --daemonize yes --pidfile "$RUN_DIR/redis.pid" --logfile "$RUN_DIR/redis.log"
    _sbte_wait_for 30 "redis on port $port" _sbte_redis_ok || {
        tail -n 20 "$RUN_DIR/redis.log" >&2 || true
        return 1
    }
}

# The OS user PostgreSQL runs as: itself when not root (initdb refuses root).
_sbte_pg_user() {
    if [[ "$(id -u)" -ne 0 ]]; then
        id -un
    elif id -u postgres >/dev/null 2>&1; then
        echo postgres
    else
        echo nobody
    fi
}

_sbte_as_pg() {
    local user="$1"
    shift
    if [[ "$(id -u)" -ne 0 ]]; then
        (cd / && "$@")
    elif command -v runuser >/dev/null 2>&1; then
        (cd / && runuser -u "$user" -- "$@")
    else
        (cd / && su -s /bin/sh "$user" -c "$(printf '%q ' "$@")")
    fi
}

_sbte_start_postgres() {
    local port="$1" bindir user base
    bindir="$(_sbte_pg_bindir)" || _sbte_die "PostgreSQL server binaries (initdb, pg_ctl) not found"
    user="$(_sbte_pg_user)"
    echo "$port" >"$RUN_DIR/postgres.port"
    echo "$user" >"$RUN_DIR/postgres.user"

    # Prefer a directory under the state dir; fall back to /tmp when the
    # PostgreSQL user cannot reach it (e.g. a clone under /root) or the socket
    # path would be too long for a unix socket.
    base="$RUN_DIR/pg"
    mkdir -p "$base"
    chmod 700 "$base"
    if [[ "$(id -u)" -eq 0 ]]; then chown "$user" "$base"; fi
    if ((${#base} > 80)) || ! _sbte_as_pg "$user" test -w "$base" 2>/dev/null; then
        rmdir "$base"
        base="$(mktemp -d "${TMPDIR:-/tmp}/switchboard-pg.XXXXXX")"
        chmod 700 "$base"
        if [[ "$(id -u)" -eq 0 ]]; then chown "$user" "$base"; fi
    fi
    echo "$base" >"$RUN_DIR/postgres.dir"
    _sbte_as_pg "$user" mkdir -p "$base/sock"

    _sbte_log "initdb in $base/data (as $user)"
    _sbte_as_pg "$user" "$bindir/initdb" -D "$base/data" --username=postgres --auth=trust \
        --encoding=UTF8 --locale=C --no-sync >"$RUN_DIR/initdb.log" 2>&1 || {
        tail -n 20 "$RUN_DIR/initdb.log" >&2
        _sbte_die "initdb failed"
    }
    # PostgreSQL reads its key only if its own user alone may.
    cp "$RUN_DIR/tls/server.pem" "$RUN_DIR/tls/server-key.pem" "$base/"
    chmod 600 "$base/server-key.pem"
    if [[ "$(id -u)" -eq 0 ]]; then chown "$user" "$base/server.pem" "$base/server-key.pem"; fi
    _sbte_log "starting PostgreSQL on 127.0.0.1:$port (TLS offered)"
    _sbte_as_pg "$user" "$bindir/pg_ctl" -D "$base/data" -l "$base/postgres.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $base/sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 -c ssl=on -c ssl_cert_file=$base/server.pem -c ssl_key_file=$base/server-key.pem" \
        start >/dev/null || {
        tail -n 20 "$base/postgres.log" >&2 || true
        _sbte_die "pg_ctl start failed"
    }
    _sbte_wait_for 60 "PostgreSQL on port $port" _sbte_postgres_ok
    local psql="$bindir/psql"
    [[ -x "$psql" ]] || psql="psql"
    "$psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
        -c "CREATE ROLE switchboard WITH LOGIN SUPERUSER" \
        -c "CREATE DATABASE switchboard OWNER switchboard" >/dev/null
}

_sbte_start_kafka() {
    local port="$1" tansu
    tansu="$(_sbte_tansu_bin)" || _sbte_die "tansu not found (cargo install tansu --locked --version $TANSU_VERSION --features dynostore,libsql)"
    mkdir -p "$RUN_DIR/tansu"
    echo "$port" >"$RUN_DIR/kafka.port"
    _sbte_log "starting tansu (Kafka protocol) on 127.0.0.1:$port"
    (
        cd "$RUN_DIR/tansu"
        exec env -u OTEL_EXPORTER_OTLP_ENDPOINT -u SCHEMA_REGISTRY \
            "$tansu" broker \
            --listener-url "tcp://127.0.0.1:$port" \
            --advertised-listener-url "tcp://127.0.0.1:$port" \
            --storage-engine "memory://tansu/" \
            </dev/null >"$RUN_DIR/tansu.log" 2>&1
    ) &
    echo $! >"$RUN_DIR/tansu.pid"
    disown 2>/dev/null || true
    _sbte_wait_for 60 "tansu on port $port" _sbte_kafka_ok || {
        tail -n 20 "$RUN_DIR/tansu.log" >&2 || true
        return 1
    }
}

# The user dovecot's processes and mailboxes run as: itself when not root.
_sbte_mail_user() {
    if [[ "$(id -u)" -ne 0 ]]; then
        id -un
    elif id -u dovecot >/dev/null 2>&1; then
        echo dovecot
    else
        echo nobody
    fi
}

_sbte_imap_probe() {
    python3 - "$1" <<'PY'
import imaplib, sys
client = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]), timeout=2)
client.login("probe", "switchboard")
client.logout()
PY
}

_sbte_smtp_probe() {
    python3 - "$1" <<'PY'
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=2) as client:
    client.noop()
PY
}

_sbte_mail_ok() {
    local imap_port smtp_port
    imap_port="$(_sbte_read imap.port)"
    smtp_port="$(_sbte_read smtp.port)"
    [[ -n "$imap_port" && -n "$smtp_port" ]] && _sbte_imap_probe "$imap_port" && _sbte_smtp_probe "$smtp_port"
}

# dovecot on IMAP (plain text on loopback; any user name with the password
# `switchboard`, each its own Maildir) and aiosmtpd delivering every message
# into one Maildir.
_sbte_start_mail() {
    local imap_port="$1" smtp_port="$2" user group dir
    command -v dovecot >/dev/null 2>&1 || _sbte_die "dovecot not found (apt-get install dovecot-imapd)"
    # The configuration below is dovecot 2.3's (Debian 12); 2.4 changed the syntax.
    case "$(dovecot --version 2>/dev/null)" in
        2.3.*) ;;
        *) _sbte_die "dovecot $(dovecot --version 2>/dev/null) found; the test IMAP server needs dovecot 2.3" ;;
    esac
    [[ -x "$VENV/bin/python" ]] || _sbte_die "the venv is missing: run scripts/test-env.sh install"
    user="$(_sbte_mail_user)"
    group="$(id -gn "$user")"
    # Under /tmp: the mail user must reach it whoever owns the clone.
    dir="$(mktemp -d "${TMPDIR:-/tmp}/switchboard-mail.XXXXXX")"
    chmod 755 "$dir"
    echo "$dir" >"$RUN_DIR/mail.dir"
    echo "$imap_port" >"$RUN_DIR/imap.port"
    echo "$smtp_port" >"$RUN_DIR/smtp.port"
    mkdir -p "$dir/run" "$dir/state" "$dir/home" "$dir/smtp/tmp" "$dir/smtp/new" "$dir/smtp/cur"
    if [[ "$(id -u)" -eq 0 ]]; then chown "$user:$group" "$dir/home"; fi
    cat >"$dir/dovecot.conf" <<CONF
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = $user
default_internal_group = $group
default_login_user = $user
first_valid_uid = 1
passdb {
  driver = static
  args = password=switchboard
}
userdb {
  driver = static
  args = uid=$user gid=$group home=$dir/home/%u
}
mail_location = maildir:~/Maildir
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $imap_port
  }
  inet_listener imaps {
    port = 0
  }
  chroot =
}
service anvil {
  chroot =
}
CONF
    _sbte_log "starting dovecot (IMAP) on 127.0.0.1:$imap_port"
    dovecot -c "$dir/dovecot.conf" || {
        tail -n 20 "$dir/dovecot.log" >&2 || true
        _sbte_die "dovecot did not start"
    }
    _sbte_log "starting aiosmtpd (SMTP sink) on 127.0.0.1:$smtp_port"
    (
        exec "$VENV/bin/python" -m aiosmtpd -n -l "127.0.0.1:$smtp_port" \
            -c aiosmtpd.handlers.Mailbox "$dir/smtp" </dev/null >"$dir/aiosmtpd.log" 2>&1
    ) &
    echo $! >"$RUN_DIR/aiosmtpd.pid"
    disown 2>/dev/null || true
    _sbte_wait_for 30 "the mail servers on ports $imap_port and $smtp_port" _sbte_mail_ok || {
        tail -n 20 "$dir/dovecot.log" "$dir/aiosmtpd.log" >&2 || true
        return 1
    }
}

# ------------------------------------------------------------------- stop ---

_sbte_kill_pid() {
    local pid="$1" word="$2" i
    _sbte_pid_is "$pid" "$word" || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        _sbte_pid_is "$pid" "$word" || return 0
        sleep 0.1
    done
    _sbte_log "$word (pid $pid) ignored SIGTERM: killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

_sbte_stop() {
    if [[ ! -d "$RUN_DIR" ]]; then
        rm -f "$ENV_FILE"
        _sbte_log "nothing to stop"
        return 0
    fi
    local pid port dir user bindir
    pid="$(_sbte_read tansu.pid)"
    if [[ -n "$pid" ]]; then
        _sbte_log "stopping tansu"
        _sbte_kill_pid "$pid" tansu
    fi

    dir="$(_sbte_read postgres.dir)"
    user="$(_sbte_read postgres.user)"
    if [[ -n "$dir" && -f "$dir/data/postmaster.pid" ]]; then
        _sbte_log "stopping PostgreSQL"
        if bindir="$(_sbte_pg_bindir)"; then
            _sbte_as_pg "${user:-postgres}" "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
        fi
        pid="$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)"
        _sbte_kill_pid "$pid" postgres
    fi

    dir="$(_sbte_read mail.dir)"
    if [[ -n "$dir" ]]; then
        _sbte_log "stopping dovecot and aiosmtpd"
        _sbte_kill_pid "$(_sbte_read aiosmtpd.pid)" aiosmtpd
        if [[ -f "$dir/run/master.pid" ]]; then _sbte_kill_pid "$(cat "$dir/run/master.pid")" dovecot; fi
        if [[ "$dir" == */switchboard-mail.* ]]; then rm -rf "$dir"; fi
    fi

    dir="$(_sbte_read postgres.dir)"
    pid="$(_sbte_read redis.pid)"
    if [[ -n "$pid" ]]; then
        _sbte_log "stopping redis-server"
        _sbte_kill_pid "$pid" redis-server
    fi

    if [[ -n "$dir" && "$dir" != "$RUN_DIR/pg" && "$dir" == */switchboard-pg.* ]]; then
        rm -rf "$dir"
    fi
    rm -rf "$RUN_DIR"
    rm -f "$ENV_FILE"
    _sbte_log "stopped; data removed"
}

# ------------------------------------------------------------- env/status ---

_sbte_print_env() {
    [[ -f "$ENV_FILE" ]] || _sbte_die "no environment: run scripts/test-env.sh start"
    cat "$ENV_FILE"
}

_sbte_status() {
    local any=1
    if [[ -d "$RUN_DIR" ]]; then
        BACKENDS="$(_sbte_read backends)"
        if _sbte_wants redis; then
            if _sbte_redis_ok; then echo "redis: up on $(_sbte_read redis.port)"; else echo "redis: DOWN"; any=0; fi
        fi
        if _sbte_wants postgres; then
            if _sbte_postgres_ok; then echo "postgres: up on $(_sbte_read postgres.port)"; else echo "postgres: DOWN"; any=0; fi
        fi
        if _sbte_wants kafka; then
            if _sbte_kafka_ok; then echo "kafka (tansu): up on $(_sbte_read kafka.port)"; else echo "kafka (tansu): DOWN"; any=0; fi
        fi
        if _sbte_wants mail; then
            if _sbte_mail_ok; then echo "mail: IMAP on $(_sbte_read imap.port), SMTP on $(_sbte_read smtp.port)"; else echo "mail: DOWN"; any=0; fi
        fi
    else
        echo "not started"
        any=0
    fi
    ((any == 1))
}

# ------------------------------------------------------------------- entry ---

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    # Sourced: do the work in a separate bash so `set -euo pipefail` and the
    # helper variables stay out of the caller's shell, then export the env.
    if [[ -n "${1:-}" && "${1:-}" != "env" ]]; then
        bash "${BASH_SOURCE[0]}" "$@" || return $?
    fi
    _sbte_env_file="${SWITCHBOARD_TEST_ENV_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.test-env}/env.sh"
    if [[ -f "$_sbte_env_file" ]]; then
        # shellcheck source=/dev/null
        . "$_sbte_env_file"
    elif [[ "${1:-}" != "stop" ]]; then
        echo "[test-env] no environment to export: run scripts/test-env.sh start" >&2
    fi
    unset _sbte_env_file
else
    _sbte_main "$@"
fi
