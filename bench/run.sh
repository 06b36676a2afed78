#!/bin/sh
# Authenticated GET /v1/agents/:id, with rate limits off and on, against
# "return 200" of the same bytes, from the same nginx, in alternating wrk
# rounds; prints the median requests/s of each and their ratios.
#
#   bench/run.sh [rounds] [seconds] [connections]

set -e

top=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-5}
secs=${2:-5}
conns=${3:-32}
build=${CREOR_BUILD:-$top/build}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
port=${CREOR_BENCH_PORT:-18080}
dir=$(mktemp -d /tmp/creor-bench.XXXXXX)
chmod 755 "$dir"
mkdir -p "$dir/logs" "$dir/store"

cleanup() {
    [ -f "$dir/logs/nginx.pid" ] && kill -QUIT "$(cat "$dir/logs/nginx.pid")"
    sleep 0.5
    rm -rf "$dir"
}
trap cleanup EXIT

cli() { "$build/creor" --store "$dir/store" "$@"; }

org=$(cli org create bench)
proj=$(cli project create --org "$org" bench)
key=$(cli key create --org "$org" --role admin --name bench)

# port: limits off; port + 1: a limit high enough to admit every request,
# so each request still updates its counter
conf() {
    cat <<CONF
load_module $build/ngx_creor_module.so;
user nobody nogroup;
worker_processes 2;
pid $dir/logs/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    creor_store $dir/store;
    creor_rate_limit_anonymous off;
    server {
        listen 127.0.0.1:$port;
        creor_rate_limit off;
        location = /plain {
            default_type application/json;
            return 200 '$1';
        }
        location /v1/ { creor_api; }
    }
    server {
        listen 127.0.0.1:$((port + 1));
        creor_rate_limit 1000000r/s burst=1000000;
        location /v1/ { creor_api; }
    }
}
CONF
}

conf '{}' > "$dir/nginx.conf"
"$NGINX" -p "$dir/" -c "$dir/nginx.conf"
sleep 0.5

base=http://127.0.0.1:$port
limited=http://127.0.0.1:$((port + 1))
agent=$(curl -sf -H "Authorization: Bearer $key" -H "X-Project-Id: $proj" \
        -H 'Content-Type: application/json' \
        -d '{"name":"bench","model":"openai/gpt-4o-mini","systemPrompt":"You are terse.","settings":{"temperature":0.2}}' \
        "$base/v1/agents")
id=$(printf '%s' "$agent" | sed 's/^{"id":"\([^"]*\)".*/\1/')

# the plain location answers the very bytes the API does
body=$(curl -sf -H "Authorization: Bearer $key" "$base/v1/agents/$id")
conf "$body" > "$dir/nginx.conf"
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
