#!/bin/sh
# Authenticated GET /v1/agents/:id, with rate limits off and on, against
# "return 200" of the same bytes, from the same nginx, in alternating wrk
# rounds; prints the median requests/s of each and their ratios.
#
#   bench/run.sh [rounds] [seconds] [connections]

set -e

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
bench_args 5 32 18080 "$@"
bench_dir

trap 'bench_stop; rm -rf "$dir"' EXIT

org=$(cli org create bench)
proj=$(cli project create --org "$org" bench)
key=$(cli key create --org "$org" --role admin --name bench)

bench_conf_get '{}' > "$dir/nginx.conf"
"$NGINX" -p "$dir/" -c "$dir/nginx.conf"
sleep 0.5

base=http://127.0.0.1:$port
limited=http://127.0.0.1:$((port + 1))
bench_agent

# the plain location answers the very bytes the API does
body=$(curl -sf -H "Authorization: Bearer $key" "$base/v1/agents/$id")
bench_conf_get "$body" > "$dir/nginx.conf"
kill -HUP "$(cat "$dir/logs/nginx.pid")"
sleep 1

run() {
    wrk -t2 -c"$conns" -d"${secs}s" "$@" 2>/dev/null \
        | awk '/^Requests\/sec/ { print $2 }
               /Non-2xx/ { print "non2xx " $NF > "/dev/stderr" }'
}

plain=""
api=""
lim=""
i=0
while [ $i -lt "$rounds" ]; do
    plain="$plain $(run "$base/plain")"
    api="$api $(run -H "Authorization: Bearer $key" "$base/v1/agents/$id")"
    lim="$lim $(run -H "Authorization: Bearer $key" "$limited/v1/agents/$id")"
    i=$((i + 1))
done

perl -e '
    sub median { my @s = sort { $a <=> $b } @_; my $n = @s;
                 $n % 2 ? $s[$n / 2] : ($s[$n / 2 - 1] + $s[$n / 2]) / 2 }
    my @p = split " ", $ARGV[0];
    my ($mp) = median(@p);
    printf "%-40s median %6.0f req/s (%s)\n", "plain nginx return 200:", $mp,
           join(" ", map { int } @p);
    for (["GET /v1/agents/:id, limits off:", $ARGV[1]],
         ["GET /v1/agents/:id, limits on:", $ARGV[2]])
    {
        my @a = split " ", $_->[1]; my $ma = median(@a);
        printf "%-40s median %6.0f req/s (%s) ratio %.3f\n", $_->[0], $ma,
               join(" ", map { int } @a), $ma / $mp;
    }
' "$plain" "$api" "$lim"
