#!/bin/sh
# check-disk-space.sh - fail early (BeforeInstall, or ApplicationStop) when
# the file system a revision installs to has too little free space, rather
# than half-way through Install.
#
# Usage: check-disk-space.sh [PATH [MIN_FREE]]
#
# Settings (arguments win; variables may also be set in hooks.conf beside
# this script):
#   DISK_PATH        a path on the file system to check, e.g. the files
#                    destination; when it does not exist yet, its nearest
#                    existing parent is checked                        default /
#   DISK_MIN_FREE    the free space needed: a size with a K, M, G or T suffix
#                    (powers of 1024; no suffix: bytes) or a percentage of the
#                    file system, e.g. 500M, 2G, 15%                    default 500M
#   DISK_MIN_INODES  free inodes needed (0: not checked)                default 0
#
# Exit status: 0 enough space, 1 too little, 2 usage error.

conf="$(dirname "$0")/hooks.conf"
# shellcheck source=/dev/null
[ -f "$conf" ] && . "$conf"

me="check-disk-space"
path="${1:-${DISK_PATH:-/}}"
min_free="${2:-${DISK_MIN_FREE:-500M}}"
min_inodes="${DISK_MIN_INODES:-0}"

usage() {
    echo "$me: $1" >&2
    exit 2
}

case "$min_inodes" in '' | *[!0-9]*) usage "DISK_MIN_INODES must be a whole number" ;; esac
while [ ! -e "$path" ]; do
    parent=$(dirname "$path")
    [ "$parent" != "$path" ] || usage "no part of $path exists"
    path=$parent
done

# "total available" in KiB for the file system holding $path.
space=$(df -Pk "$path" 2>/dev/null | awk 'NR == 2 { print $2, $4 }')
[ -n "$space" ] || usage "df cannot read the file system of $path"
total_k=${space% *}
avail_k=${space#* }

case "$min_free" in
*%)
    pct=${min_free%\%}
    case "$pct" in '' | *[!0-9]*) usage "DISK_MIN_FREE $min_free: the percentage must be a whole number" ;; esac
    [ "$pct" -le 100 ] || usage "DISK_MIN_FREE $min_free is more than 100%"
    need_k=$(((total_k * pct + 99) / 100))
    ;;
*)
    number=${min_free%[KkMmGgTt]}
    case "$number" in '' | *[!0-9]*) usage "DISK_MIN_FREE $min_free is not a size such as 500M, 2G or 15%" ;; esac
    case "$min_free" in
    *[Kk]) need_k=$number ;;
    *[Mm]) need_k=$((number * 1024)) ;;
    *[Gg]) need_k=$((number * 1024 * 1024)) ;;
    *[Tt]) need_k=$((number * 1024 * 1024 * 1024)) ;;
    *) need_k=$(((number + 1023) / 1024)) ;;
    esac
    ;;
esac

if [ "$avail_k" -lt "$need_k" ]; then
    echo "$me: $path has ${avail_k}K free, less than the ${need_k}K ($min_free) needed" >&2
    exit 1
fi
echo "$me: $path has ${avail_k}K free (needed: ${need_k}K, $min_free)"

if [ "$min_inodes" -gt 0 ]; then
    inodes=$(df -Pi "$path" 2>/dev/null | awk 'NR == 2 { print $2, $4 }')
    total_i=${inodes% *}
    free_i=${inodes#* }
    case "$total_i" in
    '' | 0 | *[!0-9]*)
        # Some file systems (btrfs, some overlays) do not count inodes.
        echo "$me: the file system of $path does not report inodes; not checked"
        ;;
    *)
        if [ "$free_i" -lt "$min_inodes" ]; then
            echo "$me: $path has $free_i free inodes, less than the $min_inodes needed" >&2
            exit 1
        fi
        echo "$me: $path has $free_i free inodes (needed: $min_inodes)"
        ;;
    esac
fi
exit 0
