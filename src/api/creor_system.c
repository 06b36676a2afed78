
/*
 * Copyright (C) ngx_creor_module authors
 *
 * /v1/system: health for monitors and load balancers, status for admins;
 * and the counts of agents and runs by status that status and metrics
 * read, kept in the transaction of every change of a status.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_COUNTS_KEY      "m:counts"
#define CREOR_COUNTS_VERSION  1
#define CREOR_HEALTH_KEY      "m:health"

/* map usage: a warning from here, and unhealthy from here, in percent */
#define CREOR_MAP_WARN        80
#define CREOR_MAP_FAIL        95

#define CREOR_AGENT_STATUS_LEN  16      /* creor_agent_hdr_t's status */


static ngx_int_t creor_counts_get(creor_store_t *st, MDB_txn *txn,
    creor_counts_t *counts);
static ngx_int_t creor_counts_scan(creor_store_t *st, MDB_txn *txn,
    const char *prefix, creor_counts_t *counts);
static ngx_uint_t creor_agent_status_index(const char *s);
static ngx_uint_t creor_health_write(creor_store_t *st);
static const char *creor_health_map(creor_store_t *st, yajl_gen g);
static const char *creor_health_upstream(yajl_gen g, ngx_uint_t provider);


/* index 0 is "none": not stored yet, or deleted */

static const char  *creor_agent_statuses[] = {
    NULL, "idle", "queued", "running", "completed", "failed", NULL
};


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

    creor_gen_str(g, "store");
    yajl_gen_map_open(g);
    creor_gen_kv(g, "status", store_ok ? "ok" : "fail");
    creor_gen_kv_bool(g, "writable", store_ok);
    yajl_gen_map_close(g);

    creor_gen_str(g, "store_map");
    map = creor_health_map(&ctx->mcf->store, g);

    creor_gen_str(g, "counters");
    yajl_gen_map_open(g);
    creor_gen_kv(g, "status", counters_ok ? "ok" : "fail");
    creor_gen_kv_bool(g, "writable", counters_ok);
    yajl_gen_map_close(g);

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

    for (total = 0, i = 1; creor_agent_statuses[i]; i++) {
        creor_gen_kv_int(g, creor_agent_statuses[i], counts.agents[i]);
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


/*
 * The counts: one record, changed in the transaction that changes a
 * status, so they are exact without ever walking a collection.
 */

ngx_int_t
creor_counts_read(creor_store_t *st, creor_counts_t *counts)
{
    MDB_txn    *txn;
    ngx_int_t   rc;
    ngx_uint_t  i;

    txn = creor_store_read(st);
    if (txn == NULL) {
        return NGX_ERROR;
    }

    rc = creor_counts_get(st, txn, counts);

    creor_store_read_done(st);

    /* a store written by a version without counts, never initialized */

    for (i = 0; i < CREOR_COUNTS_MAX; i++) {
        counts->runs[i] = ngx_max(counts->runs[i], 0);
        counts->agents[i] = ngx_max(counts->agents[i], 0);
    }

    return rc;
}


static ngx_int_t
creor_counts_get(creor_store_t *st, MDB_txn *txn, creor_counts_t *counts)
{
    int      rc;
    MDB_val  val;

    rc = creor_store_get(st, txn, CREOR_COUNTS_KEY, &val);

    if (rc == CREOR_STORE_NOTFOUND
        || (rc == CREOR_STORE_OK && val.mv_size != sizeof(creor_counts_t)))
    {
        ngx_memzero(counts, sizeof(creor_counts_t));
        counts->version = CREOR_COUNTS_VERSION;
        return NGX_OK;
    }

    if (rc != CREOR_STORE_OK) {
        return NGX_ERROR;
    }

    ngx_memcpy(counts, val.mv_data, sizeof(creor_counts_t));

    return NGX_OK;
}


/* store return codes, as the caller's transaction expects them */

ngx_int_t
creor_counts_run(creor_store_t *st, MDB_txn *txn, ngx_uint_t from,
    ngx_uint_t to)
{
    creor_counts_t  counts;

    if (from == to) {
        return CREOR_STORE_OK;
    }

    if (creor_counts_get(st, txn, &counts) != NGX_OK) {
        return CREOR_STORE_ERROR;
    }

    if (from && from < CREOR_COUNTS_MAX) {
        counts.runs[from]--;
    }

    if (to && to < CREOR_COUNTS_MAX) {
        counts.runs[to]++;
    }

    return creor_store_put(st, txn, CREOR_COUNTS_KEY, &counts,
                           sizeof(creor_counts_t), 0);
}


/* from, to: an agent header's status (NULL: none), at most 16 bytes */

ngx_int_t
creor_counts_agent(creor_store_t *st, MDB_txn *txn, const char *from,
    const char *to)
{
    ngx_uint_t      f, t;
    creor_counts_t  counts;

    f = from ? creor_agent_status_index(from) : 0;
    t = to ? creor_agent_status_index(to) : 0;

    if (f == t) {
        return CREOR_STORE_OK;
    }

    if (creor_counts_get(st, txn, &counts) != NGX_OK) {
        return CREOR_STORE_ERROR;
    }

    counts.agents[f]--;
    counts.agents[t]++;

    /* slot 0 counts nothing */

    counts.agents[0] = 0;

    return creor_store_put(st, txn, CREOR_COUNTS_KEY, &counts,
                           sizeof(creor_counts_t), 0);
}


static ngx_uint_t
creor_agent_status_index(const char *s)
{
    size_t      len;
    ngx_uint_t  i;

    len = ngx_strnlen((u_char *) s, CREOR_AGENT_STATUS_LEN);

    for (i = 1; creor_agent_statuses[i]; i++) {
        if (ngx_strlen(creor_agent_statuses[i]) == len
            && ngx_strncmp(creor_agent_statuses[i], s, len) == 0)
        {
            return i;
        }
    }

    return 0;
}


const char *
creor_agent_status_name(ngx_uint_t i)
{
    return (i > 0 && i < CREOR_COUNTS_MAX) ? creor_agent_statuses[i] : NULL;
}


/*
 * A store from before the counts has none: one walk over agents and runs
 * makes them, in a write transaction, so the first worker to start does
 * it and the others find the record.
 */

ngx_int_t
creor_counts_init(creor_store_t *st, ngx_log_t *log)
{
    int              rc;
    MDB_val          val;
    MDB_txn         *txn;
    creor_counts_t   counts;

    rc = creor_store_write(st, &txn);
    if (rc != CREOR_STORE_OK) {
        goto failed;
    }

    rc = creor_store_get(st, txn, CREOR_COUNTS_KEY, &val);

    if (rc != CREOR_STORE_NOTFOUND) {
        creor_store_abort(txn);
        return NGX_OK;
    }

    ngx_memzero(&counts, sizeof(creor_counts_t));
    counts.version = CREOR_COUNTS_VERSION;

    rc = creor_counts_scan(st, txn, "a:", &counts);

    if (rc == CREOR_STORE_OK) {
        rc = creor_counts_scan(st, txn, "r:", &counts);
    }

    if (rc == CREOR_STORE_OK) {
        rc = creor_store_put(st, txn, CREOR_COUNTS_KEY, &counts,
                             sizeof(creor_counts_t), 0);
    }

    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        goto failed;
    }

    rc = creor_store_commit(txn);
    if (rc != CREOR_STORE_OK) {
        goto failed;
    }

    return NGX_OK;

failed:

    /* changes are counted from zero then; the store serves on */

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "creor_store: cannot count agents and runs: %d", rc);

    return NGX_OK;
}


static ngx_int_t
creor_counts_scan(creor_store_t *st, MDB_txn *txn, const char *prefix,
    creor_counts_t *counts)
{
    int              rc;
    size_t           len;
    MDB_val          key, val;
    MDB_cursor      *cur;
    creor_run_hdr_t  hdr;

    if (mdb_cursor_open(txn, st->dbi, &cur) != 0) {
        return CREOR_STORE_ERROR;
    }

    len = ngx_strlen(prefix);
    key.mv_data = (void *) prefix;
    key.mv_size = len;

    for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
         rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT))
    {
        if (key.mv_size < len || ngx_memcmp(key.mv_data, prefix, len) != 0) {
            break;
        }

        if (prefix[0] == 'a') {

            /* creor_agent_hdr_t: the project id, then the status */

            if (val.mv_size > CREOR_ID_MAX + CREOR_AGENT_STATUS_LEN) {
                counts->agents[creor_agent_status_index(
                    (char *) val.mv_data + CREOR_ID_MAX)]++;
            }

            continue;
        }

        if (val.mv_size > sizeof(creor_run_hdr_t)) {
            ngx_memcpy(&hdr, val.mv_data, sizeof(creor_run_hdr_t));

            if (hdr.status < CREOR_COUNTS_MAX) {
                counts->runs[hdr.status]++;
            }
        }
    }

    mdb_cursor_close(cur);

    counts->agents[0] = 0;
    counts->runs[0] = 0;

    return (rc == 0 || rc == MDB_NOTFOUND) ? CREOR_STORE_OK
                                           : CREOR_STORE_ERROR;
}
