#!/bin/sh
# systemd-unit.sh - stop, start or restart a systemd unit, then wait until it
# is really active (or really stopped).
#
# `systemctl start` returns once the start job is queued or the unit reports
# ready; a unit that fails a second later still fails the deployment here,
# not at the load balancer.
#
# Usage: systemd-unit.sh [start|stop|restart] [UNIT]
#
# Settings (arguments win; variables may also be set in hooks.conf beside
# this script):
#   SERVICE_UNIT      the unit, e.g. webshop.service (or the second argument)  required
#   SERVICE_ACTION    start, stop or restart (or the first argument); by default
#                     from the lifecycle event: ApplicationStop, BeforeBlockTraffic
#                     -> stop; ApplicationStart -> start
#   SERVICE_WAIT      seconds to wait for the unit to become active (start,
#                     restart) or inactive (stop)                            default 60
#   SERVICE_INTERVAL  seconds between two looks at the unit                   default 1
#   SERVICE_SETTLE    seconds the unit must stay active once it is (a Type=simple
#                     unit is active as soon as its process is forked, and may
#                     die a moment later)                                   default 3
#   SERVICE_DAEMON_RELOAD  yes: `systemctl daemon-reload` first (when the
#                     revision installs or changes unit files)                default no
#   SYSTEMCTL         the systemctl command                                   default systemctl
#
# Stopping a unit that is not running (or not installed yet, as on the first
# deployment's ApplicationStop) succeeds without doing anything.
#
# Exit status: 0 done, 1 the unit failed or did not get there in time,
# 2 usage error.

conf="$(dirname "$0")/hooks.conf"
# shellcheck source=/dev/null
[ -f "$conf" ] && . "$conf"

me="systemd-unit"
action="${1:-${SERVICE_ACTION:-}}"
unit="${2:-${SERVICE_UNIT:-}}"
wait_limit="${SERVICE_WAIT:-60}"
interval="${SERVICE_INTERVAL:-1}"
settle="${SERVICE_SETTLE:-3}"
systemctl="${SYSTEMCTL:-systemctl}"

usage() {
    echo "$me: $1" >&2
    exit 2
}

if [ -z "$action" ]; then
    case "${LIFECYCLE_EVENT:-}" in
    ApplicationStop | BeforeBlockTraffic) action=stop ;;
    ApplicationStart) action=start ;;
    *) usage "no action: give start, stop or restart (the event ${LIFECYCLE_EVENT:-<none>} does not imply one)" ;;
    esac
fi
case "$action" in
start | stop | restart) ;;
*) usage "the action must be start, stop or restart, not $action" ;;
esac
[ -n "$unit" ] || usage "no unit: give it as the second argument or in SERVICE_UNIT"
case "$wait_limit" in '' | *[!0-9]*) usage "SERVICE_WAIT must be a whole number of seconds" ;; esac
case "$settle" in '' | *[!0-9]*) usage "SERVICE_SETTLE must be a whole number of seconds" ;; esac
command -v "$systemctl" >/dev/null 2>&1 || usage "$systemctl is not installed"

state() {
    "$systemctl" is-active "$unit" 2>/dev/null
}

show_status() {
    "$systemctl" status --no-pager --lines=20 "$unit" 2>&1 | sed 's/^/    /'
}

# Waits until `state` prints one of the states in $1 (space-separated);
# fails early on "failed".
wait_for() {
    deadline=$(($(date +%s) + wait_limit))
    while :; do
        now_state=$(state)
        for want in $1; do
            [ "$now_state" = "$want" ] && return 0
        done
        if [ "$now_state" = failed ]; then
            echo "$me: $unit failed" >&2
            show_status >&2
            return 1
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "$me: $unit is still ${now_state:-unknown} after ${wait_limit}s" >&2
            show_status >&2
            return 1
        fi
        sleep "$interval"
    done
}

if [ "${SERVICE_DAEMON_RELOAD:-no}" = yes ]; then
    "$systemctl" daemon-reload || { echo "$me: systemctl daemon-reload failed" >&2; exit 1; }
fi

case "$action" in
stop)
    current=$(state)
    case "$current" in
    active | activating | deactivating | reloading | refreshing) ;;
    *)
        echo "$me: $unit is ${current:-unknown}: nothing to stop"
        exit 0
        ;;
    esac
    echo "$me: stopping $unit"
    "$systemctl" stop "$unit" || { echo "$me: systemctl stop $unit failed" >&2; exit 1; }
    wait_for "inactive failed unknown" || exit 1
    # A unit that failed while stopping is stopped all the same.
    echo "$me: $unit is stopped"
    ;;
start | restart)
    echo "$me: ${action}ing $unit"
    if ! "$systemctl" "$action" "$unit"; then
        echo "$me: systemctl $action $unit failed" >&2
        show_status >&2
        exit 1
    fi
    wait_for active || exit 1
    # Active may only mean "forked": it must still be active, with the same
    # main process, once the settle time is over.
    main_pid=$("$systemctl" show -P MainPID "$unit" 2>/dev/null)
    settled=0
    while [ "$settled" -lt "$settle" ]; do
        sleep 1
        settled=$((settled + 1))
        now_state=$(state)
        now_pid=$("$systemctl" show -P MainPID "$unit" 2>/dev/null)
        if [ "$now_state" != active ] || [ "$now_pid" != "$main_pid" ]; then
            echo "$me: $unit was active, then ${now_state:-unknown} within ${settled}s (main pid ${main_pid:-?} -> ${now_pid:-none})" >&2
            show_status >&2
            exit 1
        fi
    done
    echo "$me: $unit is active"
    ;;
esac
exit 0
