#!/bin/sh
# Idempotent creates: POST /v1/agents with a fresh Idempotency-Key each,
# with creor_store sync=on and sync=off; prints creates/s (medians).
#
#   bench/idempotent.sh [rounds] [seconds] [connections]

set -e

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
bench_args 3 16 18090 "$@"

bench_mode() {
    sync=$1
    bench_dir

    org=$(cli org create bench)
    proj=$(cli project create --org "$org" b)
    key=$(cli key create --org "$org")

    { bench_conf_head; cat <<CONF; } > "$dir/nginx.conf"
http {
    access_log off;
    creor_store $dir/store sync=$sync;
    creor_rate_limit off;
    server {
        listen 127.0.0.1:$port;
        location /v1/ { creor_api; }
    }
}
CONF
    "$NGINX" -p "$dir/" -c "$dir/nginx.conf"
    sleep 0.5

    rates=""
    i=0
    while [ $i -lt "$rounds" ]; do
        r=$(wrk -t2 -c"$conns" -d"${secs}s" -s "$top/bench/idempotent.lua" \
                -H "Authorization: Bearer $key" -H "X-Project-Id: $proj" \
                -H 'Content-Type: application/json' \
                --latency "http://127.0.0.1:$port/v1/agents" \
                -- 2>/dev/null </dev/null \
            | awk '/^Requests\/sec/ { print $2 }
                   /Non-2xx/ { print "non-2xx answers: " $NF > "/dev/stderr" }')
        rates="$rates $r"
        i=$((i + 1))
    done

    n=$(curl -s -H "Authorization: Bearer $key" -H "X-Project-Id: $proj" \
        "http://127.0.0.1:$port/v1/agents?page=1&limit=1" \
        | sed 's/.*"total":\([0-9]*\).*/\1/')

    bench_stop
    rm -rf "$dir"

    perl -e '
        my @s = sort { $a <=> $b } split " ", $ARGV[1]; my $n = @s;
        my $m = $n % 2 ? $s[$n / 2] : ($s[$n / 2 - 1] + $s[$n / 2]) / 2;
        printf "sync=%-3s idempotent creates: median %.0f/s (%s), %s agents\n",
               $ARGV[0], $m, join(" ", map { int } @s), $ARGV[2];
    ' "$sync" "$rates" "$n"
}

bench_mode on
bench_mode off
