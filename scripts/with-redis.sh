#!/bin/sh
# Run a command with a private redis-server: on a free loopback port and a
# Unix socket in a temporary folder, no persistence; exports
# TUNNEL_REDIS_URL (redis://127.0.0.1:PORT/0), TUNNEL_REDIS_PORT,
# TUNNEL_REDIS_DIR and TUNNEL_REDIS_SOCKET (DIR/redis.sock), and stops the
# server (and removes the folder) when the command ends, with the
# command's exit status.
#   scripts/with-redis.sh make check-c spec
# The fault specs restart the server with the same port and folder:
#   redis-server "$TUNNEL_REDIS_DIR/redis.conf"
set -e
command -v redis-server >/dev/null || {
  echo "with-redis.sh: redis-server is not installed (scripts/deps.sh)" >&2
  exit 1
}
dir=$(mktemp -d "${TMPDIR:-/tmp}/tunnel-redis.XXXXXX")
stop() {
  if [ -f "$dir/redis.pid" ]; then
    kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
      [ -f "$dir/redis.pid" ] || break
      sleep 0.1
    done
  fi
  rm -rf "$dir"
}
trap stop EXIT INT TERM
# A free loopback port: try random ones until a server answers on one.
up=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
  port=$((20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 40000))
  cat > "$dir/redis.conf" <<CONF
port $port
bind 127.0.0.1
unixsocket $dir/redis.sock
unixsocketperm 700
dir $dir
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
save ""
appendonly no
CONF
  redis-server "$dir/redis.conf"
  for _ in $(seq 30); do
    # Ours, not some other server that had the port already.
    if redis-cli -p "$port" config get dir 2>/dev/null |
        grep -q "$(basename "$dir")"; then
      up=1
      break
    fi
    sleep 0.1
  done
  [ -n "$up" ] && break
  stop_pid=$(cat "$dir/redis.pid" 2>/dev/null || true)
  [ -n "$stop_pid" ] && kill "$stop_pid" 2>/dev/null || true
done
[ -n "$up" ] || { echo "with-redis.sh: cannot start redis-server" >&2; exit 1; }
export TUNNEL_REDIS_URL="redis://127.0.0.1:$port/0"
export TUNNEL_REDIS_PORT="$port" TUNNEL_REDIS_DIR="$dir"
export TUNNEL_REDIS_SOCKET="$dir/redis.sock"
echo "with-redis.sh: redis-server on 127.0.0.1:$port ($dir)" >&2
status=0
"$@" || status=$?
exit $status
