# The benchmarks' common part, sourced by bench/*.sh once they set top:
# where the module and nginx are, a directory for one nginx and its
# store, the admin command line on it, and the nginx.conf they share.

build=${CREOR_BUILD:-$top/build}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}

# [rounds] [seconds] [connections] of a wrk benchmark, after its defaults
# of rounds, connections and port (CREOR_BENCH_PORT overrides)
bench_args() {
    rounds=${4:-$1}
    secs=${5:-5}
    conns=${6:-$2}
    port=${CREOR_BENCH_PORT:-$3}
}

# a fresh directory for one nginx and its store: $dir
bench_dir() {
    dir=$(mktemp -d /tmp/creor-bench.XXXXXX)
    chmod 755 "$dir"
    mkdir -p "$dir/logs" "$dir/store"
}

cli() { "$build/creor" --store "$dir/store" "$@"; }

# stops the nginx of $dir, if it started
bench_stop() {
    [ -f "$dir/logs/nginx.pid" ] && kill -QUIT "$(cat "$dir/logs/nginx.pid")"
    sleep 0.5
}

# the top of an nginx.conf: two workers, or with "single" one process in
# the foreground (for valgrind)
bench_conf_head() {
    echo "load_module $build/ngx_creor_module.so;"

    if [ "$1" = single ]; then
        printf 'daemon off;\nmaster_process off;\n'
        bench_wc=1024
    else
        printf 'user nobody nogroup;\nworker_processes 2;\n'
        bench_wc=4096
    fi

    cat <<CONF
pid $dir/logs/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections $bench_wc; }
CONF
}

# GET /v1/agents/:id against "return 200" of the same bytes ($1): $port
# with limits off, $port + 1 with a limit high enough to admit every
# request, so each request still updates its counter
bench_conf_get() {
    bench_conf_head "$2"
    cat <<CONF
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

# creates an agent on $base with $key in $proj; its id in $id
bench_agent() {
    agent=$(curl -sf -H "Authorization: Bearer $key" -H "X-Project-Id: $proj" \
            -H 'Content-Type: application/json' \
            -d '{"name":"bench","model":"openai/gpt-4o-mini","systemPrompt":"You are terse.","settings":{"temperature":0.2}}' \
            "$base/v1/agents")
    id=$(printf '%s' "$agent" | sed 's/^{"id":"\([^"]*\)".*/\1/')
}
