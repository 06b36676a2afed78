
/*
 * Copyright (C) ngx_creor_module authors
 *
 * /v1/system: health for monitors and load balancers, status for admins.
 * The counts of agents and runs by status are kept by creor_counts.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_HEALTH_KEY      "m:health"

/* map usage: a warning from here, and unhealthy from here, in percent */
#define CREOR_MAP_WARN        80
#define CREOR_MAP_FAIL        95


static ngx_uint_t creor_health_write(creor_store_t *st);
static void creor_health_env(yajl_gen g, const char *name, ngx_uint_t ok);
static const char *creor_health_map(creor_store_t *st, yajl_gen g);
static const char *creor_health_upstream(yajl_gen g, ngx_uint_t provider);


ngx_int_t
creor_system_health(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    yajl_gen      g;
    ngx_uint_t    store_ok, counters_ok, fail, warn;
    const char   *map, *executor, *provider, *status;

    /*
     * A write in each environment shows the disk and the map take writes;
     * one a second for the host, however often monitors ask.
     */

    if (creor_metrics_health_due(&store_ok, &counters_ok) == NGX_OK) {
        store_ok = creor_health_write(&ctx->mcf->store);
        counters_ok = creor_health_write(&ctx->mcf->counters);
        creor_metrics_health_set(store_ok, counters_ok);
    }

    g = creor_gen_create(r);
    if (g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    yajl_gen_map_open(g);
    creor_gen_str(g, "checks");
    yajl_gen_map_open(g);

    creor_health_env(g, "store", store_ok);

    creor_gen_str(g, "store_map");
    map = creor_health_map(&ctx->mcf->store, g);

    creor_health_env(g, "counters", counters_ok);

    creor_gen_str(g, "executor");
    executor = creor_health_upstream(g, 0);

    creor_gen_str(g, "provider");
    provider = creor_health_upstream(g, 1);

    yajl_gen_map_close(g);

    /*
     * The host is unhealthy when it cannot keep what it accepts; an
     * upstream that failed last is shared by every host behind a load
     * balancer, so it degrades the answer but does not take hosts out.
     */

    fail = !store_ok || !counters_ok || ngx_strcmp(map, "fail") == 0;
    warn = ngx_strcmp(map, "warn") == 0 || ngx_strcmp(executor, "fail") == 0
           || ngx_strcmp(provider, "fail") == 0;

    status = fail ? "fail" : (warn ? "degraded" : "ok");

    creor_gen_kv(g, "status", status);
    creor_gen_kv(g, "version", CREOR_VERSION);
    creor_gen_kv_time(g, "time", creor_now_ms());
    yajl_gen_map_close(g);

    if (fail) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "creor: health check failed: store %s, counters %s, "
                      "map %s", store_ok ? "ok" : "fail",
                      counters_ok ? "ok" : "fail", map);
    }

    return creor_send_json(r, fail ? NGX_HTTP_SERVICE_UNAVAILABLE
                                   : NGX_HTTP_OK, g);
}


/* a real write, not synced: a full map or a failing disk refuses it */

static ngx_uint_t
creor_health_write(creor_store_t *st)
{
    int       rc;
    int64_t   now;
    MDB_txn  *txn;

    if (creor_store_write(st, &txn) != CREOR_STORE_OK) {
        return 0;
    }

    now = creor_now_ms();

    rc = creor_store_put(st, txn, CREOR_HEALTH_KEY, &now, sizeof(now), 0);
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return 0;
    }

    return creor_store_commit_nosync(st, txn) == CREOR_STORE_OK;
}


static void
creor_health_env(yajl_gen g, const char *name, ngx_uint_t ok)
{
    creor_gen_str(g, name);
    yajl_gen_map_open(g);
    creor_gen_kv(g, "status", ok ? "ok" : "fail");
    creor_gen_kv_bool(g, "writable", ok);
    yajl_gen_map_close(g);
}


static const char *
creor_health_map(creor_store_t *st, yajl_gen g)
{
    size_t       used, map_size, entries, pct;
    const char  *status;

    yajl_gen_map_open(g);

    if (creor_store_stats(st, &used, &map_size, &entries) != CREOR_STORE_OK
        || map_size == 0)
    {
        creor_gen_kv(g, "status", "fail");
        yajl_gen_map_close(g);
        return "fail";
    }

    pct = (used * 100) / map_size;

    status = (pct >= CREOR_MAP_FAIL) ? "fail"
             : (pct >= CREOR_MAP_WARN) ? "warn" : "ok";

    creor_gen_kv(g, "status", status);
    creor_gen_kv_int(g, "used_bytes", used);
    creor_gen_kv_int(g, "map_bytes", map_size);
    creor_gen_kv_int(g, "used_percent", pct);
    yajl_gen_map_close(g);

    return status;
}


/* as the last real call found it: no probe costs the upstream anything */

static const char *
creor_health_upstream(yajl_gen g, ngx_uint_t provider)
{
    int64_t      ok_ms, fail_ms;
    const char  *status;

    creor_metrics_last(provider, &ok_ms, &fail_ms);

    if (ok_ms == 0 && fail_ms == 0) {
        status = "unknown";

    } else {
        status = (ok_ms >= fail_ms) ? "ok" : "fail";
    }

    yajl_gen_map_open(g);
    creor_gen_kv(g, "status", status);

    if (ok_ms) {
        creor_gen_kv_time(g, "last_success_at", ok_ms);

    } else {
        creor_gen_kv_or_null(g, "last_success_at", NULL);
    }

    if (fail_ms) {
        creor_gen_kv_time(g, "last_failure_at", fail_ms);

    } else {
        creor_gen_kv_or_null(g, "last_failure_at", NULL);
    }

    yajl_gen_map_close(g);

    return status;
}


ngx_int_t
creor_system_status(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    size_t            used, map_size, entries;
    int64_t           total;
    yajl_gen          g;
    ngx_uint_t        i;
    creor_counts_t    counts;
    ngx_core_conf_t  *ccf;

    if (creor_counts_read(&ctx->mcf->store, &counts) != NGX_OK) {
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(ngx_cycle->conf_ctx,
                                           ngx_core_module);

    g = creor_gen_create(r);
    if (g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    yajl_gen_map_open(g);
    creor_gen_kv(g, "object", "system.status");
    creor_gen_kv(g, "version", CREOR_VERSION);
    creor_gen_kv(g, "nginx_version", NGINX_VERSION);
    creor_gen_kv_time(g, "started_at", creor_metrics_started());
    creor_gen_kv_int(g, "uptime_seconds",
                     (creor_now_ms() - creor_metrics_started()) / 1000);
    creor_gen_kv_int(g, "workers", ccf->worker_processes);

    creor_gen_str(g, "store");
    yajl_gen_map_open(g);

    if (creor_store_stats(&ctx->mcf->store, &used, &map_size, &entries)
        == CREOR_STORE_OK && map_size)
    {
        creor_gen_kv_int(g, "used_bytes", used);
        creor_gen_kv_int(g, "map_bytes", map_size);
        creor_gen_kv_int(g, "used_percent", (used * 100) / map_size);
        creor_gen_kv_int(g, "entries", entries);
    }

    creor_gen_kv_bool(g, "sync", ctx->mcf->sync);
    yajl_gen_map_close(g);

    creor_gen_str(g, "agents");
    yajl_gen_map_open(g);

    for (total = 0, i = 1; creor_agent_status_name(i); i++) {
        creor_gen_kv_int(g, creor_agent_status_name(i), counts.agents[i]);
        total += counts.agents[i];
    }

    creor_gen_kv_int(g, "total", total);
    yajl_gen_map_close(g);

    creor_gen_str(g, "runs");
    yajl_gen_map_open(g);

    for (total = 0, i = CREOR_RUN_QUEUED; i <= CREOR_RUN_CANCELLED; i++) {
        creor_gen_kv_int(g, creor_run_status_name(i), counts.runs[i]);
        total += counts.runs[i];
    }

    creor_gen_kv_int(g, "total", total);
    yajl_gen_map_close(g);

    creor_gen_kv_int(g, "sse_subscribers", creor_metrics_sse_count());

    /* deliveries waiting, being attempted or to be retried */

    creor_gen_kv_int(g, "webhook_queue_depth",
                     creor_webhooks_queue_depth(&ctx->mcf->store));
    yajl_gen_map_close(g);

    return creor_send_json(r, NGX_HTTP_OK, g);
}
