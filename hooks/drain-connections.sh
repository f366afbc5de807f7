#!/bin/sh
# drain-connections.sh - wait until the established TCP connections to a
# local port have closed, so that stopping the application cuts nobody off.
#
# Typical use: BeforeBlockTraffic or ApplicationStop, after the load balancer
# (or DRAIN_COMMAND) has stopped sending new connections.
#
# Usage: drain-connections.sh [PORT]
#
# Settings (an argument wins; variables may also be set in hooks.conf beside
# this script):
#   DRAIN_PORT      the local TCP port the application serves on (or the first argument)  required
#   DRAIN_TIMEOUT   seconds to wait for the connections to close                default 300
#   DRAIN_INTERVAL  seconds between two counts                                  default 2
#   DRAIN_MAX       connections that may remain                                 default 0
#   DRAIN_COMMAND   a command run first to stop new connections, e.g.
#                   "touch /srv/app/maintenance" (run with sh -c)             default none
#   DRAIN_SOURCE    ss or proc: where connections are counted (default: ss when
#                   installed, else /proc/net/tcp and /proc/net/tcp6)
#
# Only connections whose local end is PORT count (the server side), in the
# ESTABLISHED state; listening sockets and closing ones do not.
#
# Exit status: 0 drained, 1 connections still open at the timeout (or
# DRAIN_COMMAND failed), 2 usage error.

conf="$(dirname "$0")/hooks.conf"
# shellcheck source=/dev/null
[ -f "$conf" ] && . "$conf"

me="drain-connections"
port="${1:-${DRAIN_PORT:-}}"
timeout="${DRAIN_TIMEOUT:-300}"
interval="${DRAIN_INTERVAL:-2}"
max="${DRAIN_MAX:-0}"
source="${DRAIN_SOURCE:-}"

usage() {
    echo "$me: $1" >&2
    exit 2
}

case "$port" in '' | *[!0-9]*) usage "give the port as the first argument or in DRAIN_PORT" ;; esac
[ "$port" -ge 1 ] && [ "$port" -le 65535 ] || usage "port $port is out of range"
for n in "$timeout" "$max"; do
    case "$n" in '' | *[!0-9]*) usage "DRAIN_TIMEOUT and DRAIN_MAX must be whole numbers" ;; esac
done
if [ -z "$source" ]; then
    if command -v ss >/dev/null 2>&1; then source=ss; else source=proc; fi
fi
case "$source" in ss | proc) ;; *) usage "DRAIN_SOURCE must be ss or proc" ;; esac

count() {
    if [ "$source" = ss ]; then
        # No -H: older iproute2 lacks it; the header line is skipped instead.
        ss -tn state established "( sport = :$port )" 2>/dev/null | awk 'NR > 1' | wc -l | tr -d ' '
    else
        hex=$(printf '%04X' "$port")
        # Column 2 is local_address ADDR:PORT in hex, column 4 the state (01 = ESTABLISHED).
        cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
            awk -v p="$hex" 'NR > 0 && $4 == "01" { n = split($2, a, ":"); if (a[n] == p) c++ } END { print c + 0 }'
    fi
}

if [ -n "${DRAIN_COMMAND:-}" ]; then
    echo "$me: running $DRAIN_COMMAND"
    sh -c "$DRAIN_COMMAND" || { echo "$me: DRAIN_COMMAND failed" >&2; exit 1; }
fi

deadline=$(($(date +%s) + timeout))
open=$(count)
echo "$me: $open established connection(s) to port $port (counted with $source)"
while [ "$open" -gt "$max" ]; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "$me: $open connection(s) to port $port still open after ${timeout}s" >&2
        exit 1
    fi
    sleep "$interval"
    open=$(count)
    echo "$me: $open established connection(s) to port $port"
done
echo "$me: port $port is drained"
exit 0
