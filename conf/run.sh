#!/bin/sh
# Installs the dependencies, builds the module and starts the gateway on
# 127.0.0.1:8080 with conf/nginx.conf; prints an admin key of a new
# organization.  "conf/run.sh stop" stops it.

set -e

top=$(cd "$(dirname "$0")/.." && pwd)
run=${CREOR_RUN:-/tmp/creor-demo}
mod="$top/build/ngx_creor_module.so"
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}

if [ "$1" = "stop" ]; then
    [ -f "$run/logs/nginx.pid" ] && kill -QUIT "$(cat "$run/logs/nginx.pid")"
    [ -f "$run/provider.pid" ] && kill "$(cat "$run/provider.pid")"
    exit 0
fi

"$top/conf/deps.sh"
make -s -C "$top" >/dev/null

mkdir -p "$run/logs" "$run/tmp" "$run/store"
chmod 755 "$run"

if [ -f "$run/logs/nginx.pid" ] && kill -0 "$(cat "$run/logs/nginx.pid")" 2>/dev/null
then
    kill -QUIT "$(cat "$run/logs/nginx.pid")"
    sleep 1
fi

# the demo model provider behind creor_provider demo
[ -f "$run/provider.pid" ] && kill "$(cat "$run/provider.pid")" 2>/dev/null || true
"$top/conf/demo-provider.pl" 8091 >"$run/logs/provider.log" 2>&1 &
echo $! >"$run/provider.pid"

# the example names Debian's module path; point it at this build
sed "s#^load_module .*#load_module $mod;#" "$top/conf/nginx.conf" \
    > "$run/nginx.conf"

"$NGINX" -p "$run/" -c "$run/nginx.conf" -e "$run/logs/error.log"

org=$("$top/build/creor" --store "$run/store" org create "Demo")
key=$("$top/build/creor" --store "$run/store" key create --org "$org" \
      --role admin --name demo-admin)

for i in 1 2 3 4 5 6 7 8 9 10; do
    curl -s -o /dev/null http://127.0.0.1:8080/v1/agents && break
    sleep 0.3
done

cat <<MSG
creor gateway on http://127.0.0.1:8080 (store: $run/store)
organization: $org
admin key:    $key

  export CREOR_KEY=$key
  curl -s -H "Authorization: Bearer \$CREOR_KEY" http://127.0.0.1:8080/v1/agents

stop it with: conf/run.sh stop
MSG
