#!/bin/sh
# Instructions per request (valgrind's callgrind): an authenticated
# GET /v1/agents/:id with limits off and on, and "return 200" of the same
# bytes, from one nginx process (master_process off).  Unlike wrk's
# requests/s these figures do not move with the load of a shared machine.
#
#   bench/instructions.sh [requests]

set -e

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
n=${1:-2000}
port=${CREOR_BENCH_PORT:-18070}
bench_dir

cleanup() {
    [ -n "$vg" ] && kill "$vg" 2>/dev/null && sleep 1
    [ -n "$CREOR_KEEP" ] || rm -rf "$dir"
}
trap cleanup EXIT

org=$(cli org create bench)
proj=$(cli project create --org "$org" bench)
key=$(cli key create --org "$org" --role admin --name bench)

# the agent and its bytes, from a plain run first

bench_conf_get '{}' single > "$dir/nginx.conf"
"$NGINX" -p "$dir/" -c "$dir/nginx.conf" &
vg=$!
sleep 0.5
base=http://127.0.0.1:$port
bench_agent
body=$(curl -sf -H "Authorization: Bearer $key" "$base/v1/agents/$id")
kill "$vg"; wait "$vg" || true
vg=

bench_conf_get "$body" single > "$dir/nginx.conf"
valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
    "$NGINX" -p "$dir/" -c "$dir/nginx.conf" 2>"$dir/vg.log" &
vg=$!

i=0
until curl -sf -o /dev/null "$base/plain"; do
    sleep 0.5; i=$((i + 1)); [ $i -lt 60 ] || exit 1
done

# one keep-alive connection, n requests of one kind: curl -K
urls() {
    seq "$n" | sed "s|.*|url = \"$1\"\noutput = \"/dev/null\"|"
}

measure() {
    name=$1; shift
    curl -s -o /dev/null -o /dev/null "$@" "$url" "$url"     # warm up
    callgrind_control -z "$vg" >/dev/null 2>&1
    urls "$url" | curl -s "$@" -K - >/dev/null
    callgrind_control -d "$name" "$vg" >/dev/null 2>&1
    f=$(ls -t "$dir"/cg.out.*"$name"* 2>/dev/null | head -1)
    [ -n "$f" ] || f=$(ls -t "$dir"/cg.out* | head -1)
    ir=$(awk '/^summary:/ { print $2 }' "$f")
    printf '%-40s %8d instructions/request\n' "$name:" $((ir / n))
    [ -z "$CREOR_KEEP" ] || echo "  $f"
}

url="$base/plain"; measure plain
url="$base/v1/agents/$id"; measure limits-off -H "Authorization: Bearer $key"
url="http://127.0.0.1:$((port + 1))/v1/agents/$id"
measure limits-on -H "Authorization: Bearer $key"
