#!/bin/sh
# wait-for-http.sh - wait until an HTTP endpoint answers as healthy.
#
# For ValidateService, AfterAllowTraffic or any hook that must not succeed
# before the application serves requests. Uses `codedeploy-agent health` when
# the agent is installed, else curl, else wget.
#
# Usage: wait-for-http.sh [URL]
#
# Settings (an argument wins over its variable; variables may also be set in a
# file named hooks.conf beside this script, which every hook here reads):
#   HEALTH_URL        the URL to GET (or the first argument)          required
#   HEALTH_STATUS     healthy statuses: codes or classes, comma-separated,
#                     e.g. 200 or 200,204 or 2xx                       default 2xx
#   HEALTH_BODY       an extended regular expression the body must match
#                     (with curl/wget: grep -E; with the agent: Rust regex
#                     syntax; simple patterns mean the same in both)  default none
#   HEALTH_TIMEOUT    seconds allowed for one attempt                  default 5
#   HEALTH_INTERVAL   seconds between attempts                         default 2
#   HEALTH_RETRIES    attempts in all                                  default 30
#   HEALTH_SUCCESSES  successful attempts in a row needed              default 1
#   HEALTH_TOOL       agent, curl or wget (default: the first found)
#   CODEDEPLOY_AGENT  the agent binary (default: codedeploy-agent on PATH,
#                     else /opt/codedeploy-agent/bin/codedeploy-agent)
#
# Exit status: 0 healthy, 1 unhealthy after the attempts, 2 usage error.

conf="$(dirname "$0")/hooks.conf"
# shellcheck source=/dev/null
[ -f "$conf" ] && . "$conf"

me="wait-for-http"
url="${1:-${HEALTH_URL:-}}"
status="${HEALTH_STATUS:-2xx}"
body_re="${HEALTH_BODY:-}"
timeout="${HEALTH_TIMEOUT:-5}"
interval="${HEALTH_INTERVAL:-2}"
retries="${HEALTH_RETRIES:-30}"
successes="${HEALTH_SUCCESSES:-1}"

usage() {
    echo "$me: $1" >&2
    exit 2
}

[ -n "$url" ] || usage "no URL: give it as the first argument or in HEALTH_URL"
for n in "$timeout" "$retries" "$successes"; do
    case "$n" in '' | *[!0-9]*) usage "HEALTH_TIMEOUT, HEALTH_RETRIES and HEALTH_SUCCESSES must be whole numbers" ;; esac
done
case "$interval" in '' | *[!0-9.]*) usage "HEALTH_INTERVAL must be a number of seconds" ;; esac
[ "$successes" -ge 1 ] || usage "HEALTH_SUCCESSES must be at least 1"
[ "$retries" -ge "$successes" ] || usage "HEALTH_RETRIES ($retries) is less than HEALTH_SUCCESSES ($successes)"

agent="${CODEDEPLOY_AGENT:-}"
if [ -z "$agent" ]; then
    if command -v codedeploy-agent >/dev/null 2>&1; then
        agent=codedeploy-agent
    elif [ -x /opt/codedeploy-agent/bin/codedeploy-agent ]; then
        agent=/opt/codedeploy-agent/bin/codedeploy-agent
    fi
fi
tool="${HEALTH_TOOL:-}"
if [ -z "$tool" ]; then
    # Only an agent that knows the `health` command will do.
    if [ -n "$agent" ] && "$agent" health --help >/dev/null 2>&1; then
        tool=agent
    elif command -v curl >/dev/null 2>&1; then
        tool=curl
    elif command -v wget >/dev/null 2>&1; then
        tool=wget
    else
        usage "none of codedeploy-agent (with the health command), curl or wget is installed"
    fi
fi

if [ "$tool" = agent ]; then
    [ -n "$agent" ] || usage "HEALTH_TOOL=agent, but no codedeploy-agent was found"
    echo "$me: checking $url with $agent health"
    if [ -n "$body_re" ]; then
        exec "$agent" health --http "$url" --expect-status "$status" --expect-body "$body_re" \
            --timeout "${timeout}s" --interval "${interval}s" --retries "$retries" --successes "$successes"
    fi
    exec "$agent" health --http "$url" --expect-status "$status" \
        --timeout "${timeout}s" --interval "${interval}s" --retries "$retries" --successes "$successes"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/wait-for-http.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT
trap 'exit 1' INT TERM

# Whether the status code $1 is one of the healthy statuses.
status_ok() {
    old_ifs=$IFS
    IFS=,
    for want in $status; do
        want=$(echo "$want" | tr -d ' ')
        class="${1%??}xx"
        if [ "$want" = "$1" ] || [ "$want" = "$class" ]; then
            IFS=$old_ifs
            return 0
        fi
    done
    IFS=$old_ifs
    return 1
}

# One attempt: sets `detail`; succeeds when healthy.
probe() {
    rm -f "$work/body" "$work/headers"
    case "$tool" in
    curl)
        code=$(curl -s -o "$work/body" -w '%{http_code}' --max-time "$timeout" "$url" 2>/dev/null)
        ;;
    wget)
        wget -q -S -O "$work/body" -T "$timeout" -t 1 "$url" 2>"$work/headers"
        code=$(awk '/^ *HTTP\//{c=$2} END{print c}' "$work/headers")
        ;;
    *) usage "HEALTH_TOOL must be agent, curl or wget, not $tool" ;;
    esac
    case "$code" in
    '' | 000) detail="no answer within ${timeout}s"; return 1 ;;
    esac
    if ! status_ok "$code"; then
        detail="HTTP $code, expected $status"
        return 1
    fi
    if [ -n "$body_re" ] && ! grep -Eq -- "$body_re" "$work/body" 2>/dev/null; then
        detail="HTTP $code, body does not match /$body_re/"
        return 1
    fi
    detail="HTTP $code"
    return 0
}

echo "$me: checking $url with $tool"
attempt=0
streak=0
while [ "$attempt" -lt "$retries" ]; do
    attempt=$((attempt + 1))
    if probe; then
        streak=$((streak + 1))
        echo "attempt $attempt/$retries: $detail: ok ($streak/$successes in a row)"
        if [ "$streak" -ge "$successes" ]; then
            echo "healthy: $streak successful attempts in a row after $attempt attempts"
            exit 0
        fi
    else
        streak=0
        echo "attempt $attempt/$retries: $detail: failed (0/$successes in a row)"
    fi
    # Too few attempts left to reach the run: stop waiting.
    [ $((retries - attempt)) -ge $((successes - streak)) ] || break
    sleep "$interval"
done
echo "unhealthy: no $successes successful attempts in a row within $attempt attempts"
exit 1
