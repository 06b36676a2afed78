#!/bin/sh
# Chat completions through the gateway against plain proxy_pass, with the
# provider being nginx itself (a location returning a fixed completion, one
# returning a fixed SSE body, and bench/chat-stream.mjs's paced stream):
#
#   (a) non-stream throughput, POST /v1/chat/completions (key, rate limit
#       counted, metering) vs proxy_pass to the same location: ratio
#   (b) added latency at concurrency 1: p50 and p99, gateway minus plain
#   (c) streams: added time to first byte, and added delay of each event
#       from the provider's write to the client's read
#
# Medians of alternating rounds, one nginx (2 workers).
#
#   bench/chat.sh [rounds] [seconds] [connections]

set -e

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
bench_args 3 32 18180 "$@"
pport=$((port + 1))
bench_dir

cleanup() {
    bench_stop
    [ -n "$spid" ] && kill "$spid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

org=$(cli org create bench)
key=$(cli key create --org "$org" --role admin --name bench)

# a completion and a stream of the same, as OpenAI sends them
id='"id":"chatcmpl-bench","created":1767225600,"model":"fixed"'
usage='"usage":{"prompt_tokens":21,"completion_tokens":9,"total_tokens":30}'
completion="{$id,\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\
\"message\":{\"role\":\"assistant\",\"content\":\"Hello! How can I help you \
today?\"},\"finish_reason\":\"stop\"}],$usage}"
ev() {
    printf 'data: {%s,"object":"chat.completion.chunk","choices":[{"index":0,' \
           "$id"
    printf '"delta":{"content":"%s"},"finish_reason":null}]}\\n\\n' "$1"
}
sse="$(for w in Hello '!' ' How' ' can' ' I' ' help' ' you' ' today' '?'; do
           ev "$w"
       done)"
sse="${sse}data: {$id,\"object\":\"chat.completion.chunk\",\"choices\":[],"
sse="${sse}$usage}\\n\\ndata: [DONE]\\n\\n"

PROXY='proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off;'

{ bench_conf_head; cat <<CONF; } > "$dir/nginx.conf"
http {
    access_log off;
    creor_store $dir/store sync=off;
    creor_rate_limit_anonymous off;
    # counted on every request, never reached
    creor_rate_limit 1000000r/s burst=1000000;

    upstream self { server 127.0.0.1:$port; keepalive 64; }
    upstream paced { server 127.0.0.1:$pport; keepalive 8; }

    server {
        listen 127.0.0.1:$port;

        # the provider: nginx itself
        location = /fixed/chat {
            default_type application/json;
            return 200 '$completion';
        }
        location = /fixed/stream {
            default_type text/event-stream;
            return 200 '$sse';
        }

        # the baseline: plain proxy_pass to the same locations
        location = /plain/chat   { proxy_pass http://self/fixed/chat; $PROXY }
        location = /plain/stream { proxy_pass http://self/fixed/stream;
                                   $PROXY }
        location = /plain/paced  { proxy_pass http://paced/; $PROXY }

        # the gateway's providers: the same proxy_pass
        location = /_p/chat   { internal; proxy_pass http://self/fixed/chat;
                                $PROXY }
        location = /_p/stream { internal; proxy_pass http://self/fixed/stream;
                                $PROXY }
        location = /_p/paced  { internal; proxy_pass http://paced/; $PROXY }

        location /v1/ {
            creor_api;
            creor_provider bench /_p/chat;
            creor_provider benchs /_p/stream;
            creor_provider paced /_p/paced;
        }
    }
}
CONF

"$NGINX" -p "$dir/" -c "$dir/nginx.conf"
sleep 0.5

base=http://127.0.0.1:$port
auth="Authorization: Bearer $key"

# the same bytes both ways
a=$(curl -sf -H "$auth" -H 'Content-Type: application/json' \
        -d '{"model":"bench/fixed","messages":[]}' "$base/v1/chat/completions")
b=$(curl -sf -d '{}' "$base/plain/chat")
[ "$a" = "$b" ] || { echo "bodies differ: $a / $b" >&2; exit 1; }

wrk_run() {
    wrk -s "$top/bench/chat.lua" "$@" 2>/dev/null </dev/null
}

# requests/s, and the workers' CPU time per request (in us: robust to
# other load on the machine, which wrk's rate is not)
ticks() {
    for p in $(pgrep -P "$(cat "$dir/logs/nginx.pid")"); do
        awk '{ print $14 + $15 }' "/proc/$p/stat"
    done | awk '{ s += $1 } END { print s }'
}

rps() {
    t0=$(ticks)
    awk '/^Requests\/sec/ { rps = $2 } /requests in/ { n = $1 }
         /Non-2xx/ { print "non-2xx answers: " $NF > "/dev/stderr" }
         END { print rps, n }' > "$dir/rps"
    t1=$(ticks)
    read -r r n < "$dir/rps"
    echo "$r/$(( (t1 - t0) * 1000000 / $(getconf CLK_TCK) / n ))"
}

# 50% and 99% of wrk --latency, in microseconds
lat() {
    awk 'function us(v) { if (v ~ /us$/) return v + 0;
                          if (v ~ /ms$/) return v * 1000;
                          return v * 1000000 }
         $1 == "50%" { p50 = us($2) } $1 == "99%" { p99 = us($2) }
         END { print p50 "/" p99 }'
}

plain=""
gw=""
lplain=""
lgw=""
i=0
while [ $i -lt "$rounds" ]; do
    plain="$plain $(wrk_run -t2 -c"$conns" -d"${secs}s" \
                        "$base/plain/chat" | rps)"
    gw="$gw $(wrk_run -t2 -c"$conns" -d"${secs}s" -H "$auth" \
                  "$base/v1/chat/completions" | rps)"
    lplain="$lplain $(wrk_run -t1 -c1 -d3s --latency \
                          "$base/plain/chat" | lat)"
    lgw="$lgw $(wrk_run -t1 -c1 -d3s --latency -H "$auth" \
                    "$base/v1/chat/completions" | lat)"
    i=$((i + 1))
done

# the streams: a paced provider and its client in one process
node "$top/bench/chat-stream.mjs" "$pport" "$base" "$key" \
    > "$dir/stream.txt" &
spid=$!
wait "$spid" || { cat "$dir/stream.txt"; exit 1; }
spid=""

perl -e '
    sub median { my @s = sort { $a <=> $b } @_; my $n = @s;
                 $n % 2 ? $s[$n / 2] : ($s[$n / 2 - 1] + $s[$n / 2]) / 2 }
    my (@p, @g, @pc, @gc);
    for (split " ", $ARGV[0]) { my ($a, $b) = split "/"; push @p, $a; push @pc, $b }
    for (split " ", $ARGV[1]) { my ($a, $b) = split "/"; push @g, $a; push @gc, $b }
    printf "(a) non-stream throughput, %s connections:\n", $ARGV[4];
    printf "    plain proxy_pass      median %6.0f req/s (%s), %d us CPU "
           . "a request\n", median(@p), join(" ", map { int } @p), median(@pc);
    printf "    /v1/chat/completions  median %6.0f req/s (%s), %d us CPU "
           . "a request\n", median(@g), join(" ", map { int } @g), median(@gc);
    printf "    ratio                 %.3f by req/s, %.3f by CPU a request\n",
           median(@g) / median(@p), median(@pc) / median(@gc);
    my (@p50, @p99, @g50, @g99);
    for (split " ", $ARGV[2]) { my ($a, $b) = split "/"; push @p50, $a; push @p99, $b }
    for (split " ", $ARGV[3]) { my ($a, $b) = split "/"; push @g50, $a; push @g99, $b }
    printf "(b) latency at concurrency 1 (us, p50/p99):\n";
    printf "    plain proxy_pass      %.0f/%.0f\n", median(@p50), median(@p99);
    printf "    /v1/chat/completions  %.0f/%.0f\n", median(@g50), median(@g99);
    printf "    added                 p50 %.3f ms, p99 %.3f ms\n",
           (median(@g50) - median(@p50)) / 1000,
           (median(@g99) - median(@p99)) / 1000;

    # rows for bench/all.sh
    printf "ROW non-stream `POST /v1/chat/completions` (key, rate limit, "
           . "metering) | %.2f (%.1fk req/s); %.2f by CPU a request (%d vs "
           . "%d us) | plain `proxy_pass` to the same provider location, "
           . "same nginx (%.1fk req/s)\n",
           median(@g) / median(@p), median(@g) / 1000,
           median(@pc) / median(@gc), median(@gc), median(@pc),
           median(@p) / 1000;
    printf "ROW chat completion, added latency at concurrency 1 | "
           . "p50 %.3f ms, p99 %.3f ms | plain `proxy_pass`\n",
           (median(@g50) - median(@p50)) / 1000,
           (median(@g99) - median(@p99)) / 1000;
' "$plain" "$gw" "$lplain" "$lgw" "$conns"

cat "$dir/stream.txt"
