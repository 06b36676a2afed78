
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The state machine of a run (SPEC 8.3): every event goes through
 * creor_run_event(), which stores it and applies what it means to the
 * run, its indexes, usage and webhooks, in the caller's transaction.  Data
 * in, data out: nothing here sends, and what waits for events is told by
 * the caller after a commit (creor_changed()).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_REAP_BATCH      16            /* runs cancelled per commit */
#define CREOR_REAP_BUDGET     500           /* us of one commit's work */


static ngx_int_t creor_run_webhooks(creor_store_t *st, MDB_txn *txn,
    creor_run_t *run);


/*
 * Appends one event and applies what it means to the run (SPEC 8.3);
 * terminal runs take no more events (NGX_DECLINED).  The caller saves
 * the run and commits.
 */

ngx_int_t
creor_run_event(creor_store_t *st, MDB_txn *txn, creor_run_t *run,
    const char *type, size_t type_len, creor_json_t *value)
{
    int            rc;
    char           key[CREOR_STORE_KEY_MAX], id[CREOR_ID_MAX];
    int64_t        now;
    yajl_gen       g;
    ngx_str_t      out, t;
    ngx_uint_t     status, old;
    creor_json_t  *v;

    if (creor_run_terminal(run->hdr.status)) {
        return NGX_DECLINED;
    }

    rc = creor_store_make_id(st, txn, id, sizeof(id), "evt_");
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    now = creor_now_ms();
    run->hdr.seq++;

    g = creor_gen_pool(run->pool);
    if (g == NULL) {
        return CREOR_STORE_ERROR;
    }

    yajl_gen_map_open(g);
    creor_gen_kv(g, "id", id);
    creor_gen_kv_ngx(g, "run_id", &run->id);
    creor_gen_kv_int(g, "seq", run->hdr.seq);
    creor_gen_str(g, "type");
    yajl_gen_string(g, (u_char *) type, type_len);
    creor_gen_kv_time(g, "created_at", now);
    creor_gen_str(g, "payload");
    yajl_gen_map_open(g);
    creor_gen_str(g, "value");

    if (value && value->type == CREOR_JSON_OBJECT) {
        creor_gen_value(g, value);

    } else {
        yajl_gen_map_open(g);
        yajl_gen_map_close(g);
    }

    yajl_gen_map_close(g);
    yajl_gen_map_close(g);

    if (creor_gen_result_pool(run->pool, g, &out) != NGX_OK) {
        return CREOR_STORE_ERROR;
    }

    ngx_snprintf((u_char *) key, sizeof(key), "e:%V:%010uD%Z", &run->id,
                 run->hdr.seq);

    rc = creor_store_put(st, txn, key, out.data, out.len, 0);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    t.data = (u_char *) type;
    t.len = type_len;
    status = run->hdr.status;

#define creor_type_is(s)                                                      \
    (t.len == sizeof(s) - 1 && ngx_strncmp(t.data, s, sizeof(s) - 1) == 0)

    if (creor_type_is("run.queued")) {
        return CREOR_STORE_OK;
    }

    if (creor_type_is("run.awaiting_input")) {
        status = CREOR_RUN_AWAITING_INPUT;
        run->hdr.owner_pid = 0;
        run->hdr.lease_ms = 0;

        /* what the run waits for, on the run too (tool calls...) */

        if (creor_json_set(run->doc, "awaitingInput",
                           value ? value
                                 : creor_json_new(run->pool,
                                                  CREOR_JSON_OBJECT, NULL, 0))
            != NGX_OK)
        {
            return CREOR_STORE_ERROR;
        }

    } else if (creor_type_is("run.signal")) {
        status = CREOR_RUN_RUNNING;
        run->hdr.owner_pid = 0;
        run->hdr.lease_ms = 0;
        run->hdr.next_ms = 0;
        run->hdr.attempt = 0;

        if (creor_json_set(run->doc, "signal", value) != NGX_OK) {
            return CREOR_STORE_ERROR;
        }

        creor_json_unset(run->doc, "awaitingInput");

    } else if (creor_type_is("run.completed")) {
        status = CREOR_RUN_COMPLETED;

        v = creor_json_get(value, "result");

        if (v && v->type == CREOR_JSON_OBJECT
            && creor_json_set(run->doc, "result", v) != NGX_OK)
        {
            return CREOR_STORE_ERROR;
        }

        v = creor_json_get(value, "usage");

        if (v) {
            if (creor_json_is_int(creor_json_get(v, "inputTokens"))) {
                run->hdr.input_tokens =
                                (int64_t) creor_json_get(v, "inputTokens")->num;
            }

            if (creor_json_is_int(creor_json_get(v, "outputTokens"))) {
                run->hdr.output_tokens =
                               (int64_t) creor_json_get(v, "outputTokens")->num;
            }
        }

    } else if (creor_type_is("run.failed")
               || creor_type_is("run.worker.failed"))
    {
        status = CREOR_RUN_FAILED;

        v = creor_json_get(value, "reason_code");

        ngx_cpystrn((u_char *) run->hdr.error_code,
                    (v && v->type == CREOR_JSON_STRING && v->str.len)
                    ? v->str.data
                    : (u_char *) (creor_type_is("run.failed")
                                  ? "RUN_FAILED" : "EXECUTOR_UNAVAILABLE"),
                    sizeof(run->hdr.error_code));

    } else if (creor_type_is("run.cancelled")) {
        status = CREOR_RUN_CANCELLED;

    } else if (status == CREOR_RUN_QUEUED) {

        /* run.started, or a step of a leg that is under way */

        status = CREOR_RUN_RUNNING;
    }

#undef creor_type_is

    if (status == run->hdr.status) {
        return CREOR_STORE_OK;
    }

    if (status == CREOR_RUN_RUNNING && run->hdr.started_ms == 0) {
        run->hdr.started_ms = now;
    }

    if (creor_run_terminal(status)) {
        creor_json_unset(run->doc, "awaitingInput");
        run->hdr.completed_ms = now;
        run->hdr.owner_pid = 0;
        run->hdr.lease_ms = 0;
    }

    old = run->hdr.status;
    run->hdr.status = status;
    run->sync = 1;

    rc = creor_run_index(st, txn, run, old);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    if (creor_run_terminal(status)) {
        rc = creor_usage_run(st, txn, run);
        if (rc != CREOR_STORE_OK) {
            return rc;
        }
    }

    if (creor_run_terminal(status) || status == CREOR_RUN_AWAITING_INPUT) {
        rc = creor_run_webhooks(st, txn, run);
        if (rc != CREOR_STORE_OK) {
            return rc;
        }
    }

    rc = creor_run_queue(st, txn, run, status == CREOR_RUN_RUNNING
                                       || status == CREOR_RUN_QUEUED);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    return creor_agent_track(st, txn, run->pool, run, 0);
}


/*
 * run.completed, .failed, .cancelled, .awaiting_input, in the change's
 * transaction; a terminal one also to the run's own webhookUrl.
 */

static ngx_int_t
creor_run_webhooks(creor_store_t *st, MDB_txn *txn, creor_run_t *run)
{
    char           type[48];
    u_char         err[128];
    yajl_gen       g;
    ngx_str_t      out, *url;
    creor_json_t  *data, *u;

    g = creor_gen_pool(run->pool);
    if (g == NULL) {
        return CREOR_STORE_ERROR;
    }

    creor_run_json(g, run);

    if (creor_gen_result_pool(run->pool, g, &out) != NGX_OK) {
        return CREOR_STORE_ERROR;
    }

    data = creor_json_parse(run->pool, out.data, out.len, err, sizeof(err));
    if (data == NULL) {
        return CREOR_STORE_ERROR;
    }

    ngx_snprintf((u_char *) type, sizeof(type), "run.%s%Z",
                 creor_run_status_name(run->hdr.status));

    u = creor_json_get(run->doc, "webhookUrl");
    url = (u && u->type == CREOR_JSON_STRING
           && creor_run_terminal(run->hdr.status)) ? &u->str : NULL;

    return creor_webhooks_emit(st, txn, run->pool, run->hdr.org, type, data,
                               url);
}


/*
 * Saves the run and commits, synced if its state changed; txn is gone
 * either way.  On success the caller tells what waits for the run's
 * events: creor_changed(mcf, &run->id, CREOR_CHANGED_EVENTS).
 */

ngx_int_t
creor_run_commit(creor_store_t *st, MDB_txn *txn, creor_run_t *run,
    ngx_flag_t sync)
{
    int  rc;

    rc = creor_run_save(st, txn, run);
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return rc;
    }

    return (sync && run->sync) ? creor_store_commit(txn)
                               : creor_store_commit_nosync(st, txn);
}


/*
 * Ends a run with a failure event of the module's own (RUN_TIMEOUT,
 * EXECUTOR_UNAVAILABLE) and commits; txn is gone either way.  On success
 * the caller tells creor_changed(), as after creor_run_commit().
 */

ngx_int_t
creor_run_fail(creor_store_t *st, MDB_txn *txn, creor_run_t *run,
    const char *type, const char *reason)
{
    int            rc;
    creor_json_t  *value;

    value = creor_json_new(run->pool, CREOR_JSON_OBJECT, NULL, 0);

    if (value == NULL
        || creor_json_set(value, "reason_code",
                          creor_json_new(run->pool, CREOR_JSON_STRING, reason,
                                         ngx_strlen(reason)))
           != NGX_OK)
    {
        creor_store_abort(txn);
        return CREOR_STORE_ERROR;
    }

    rc = creor_run_event(st, txn, run, type, ngx_strlen(type), value);
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return rc;
    }

    return creor_run_commit(st, txn, run, 1);
}


/*
 * A deleted agent's active runs are cancelled, at most CREOR_REAP_BATCH
 * of them and CREOR_REAP_BUDGET us of work per transaction: found by the
 * agent's status indexes, not by walking the organization's runs.  While
 * some remain, "ad:<org>:<agent>" says so and which worker is at it until
 * when (creor_reap_job_t), for creor_runs_reap(); they stay readable.
 */

ngx_int_t
creor_runs_cancel_agent(creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool,
    ngx_str_t *org, ngx_str_t *agent, ngx_flag_t *more)
{
    int                rc;
    char               prefix[CREOR_STORE_KEY_MAX];
    size_t             plen;
    int64_t            start;
    struct timeval     tv;
    ngx_str_t         *id;
    ngx_uint_t         i, status;
    ngx_array_t        ids;
    creor_scan_t       sc;
    creor_run_t        run;
    creor_reap_job_t   job;

    if (ngx_array_init(&ids, pool, CREOR_REAP_BATCH + 1, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return CREOR_STORE_ERROR;
    }

    /* one more than a batch: whether any remain after it */

    for (status = CREOR_RUN_QUEUED;
         status <= CREOR_RUN_AWAITING_INPUT && ids.nelts <= CREOR_REAP_BATCH;
         status++)
    {
        plen = ngx_snprintf((u_char *) prefix, sizeof(prefix),
                            "ras:%V:%V:%ui:", org, agent, status)
               - (u_char *) prefix;

        if (creor_scan_open(st, txn, &sc, prefix, plen, NULL, 0)
            != CREOR_STORE_OK)
        {
            return CREOR_STORE_ERROR;
        }

        while (ids.nelts <= CREOR_REAP_BATCH && creor_scan_next(&sc) == 1) {
            id = ngx_array_push(&ids);
            if (id == NULL) {
                creor_scan_close(&sc);
                return CREOR_STORE_ERROR;
            }

            id->len = sc.rest_len;
            id->data = ngx_pnalloc(pool, id->len);
            if (id->data == NULL) {
                creor_scan_close(&sc);
                return CREOR_STORE_ERROR;
            }

            ngx_memcpy(id->data, sc.rest, id->len);
        }

        creor_scan_close(&sc);
    }

    id = ids.elts;
    ngx_gettimeofday(&tv);
    start = (int64_t) tv.tv_sec * 1000000 + tv.tv_usec;

    for (i = 0; i < ids.nelts && i < CREOR_REAP_BATCH; i++) {

        /* the write lock is held a bounded time, whatever a run costs */

        ngx_gettimeofday(&tv);

        if (i && (int64_t) tv.tv_sec * 1000000 + tv.tv_usec - start
                 >= CREOR_REAP_BUDGET)
        {
            break;
        }

        rc = creor_run_load(st, txn, pool, org, &id[i], &run);

        if (rc == CREOR_STORE_OK) {
            rc = creor_run_event(st, txn, &run, "run.cancelled", 13, NULL);

            if (rc == NGX_DECLINED) {
                continue;               /* terminal already */
            }
        }

        if (rc == CREOR_STORE_OK) {
            rc = creor_run_save(st, txn, &run);
        }

        if (rc == CREOR_STORE_NOTFOUND) {
            continue;
        }

        if (rc != CREOR_STORE_OK) {
            return rc;
        }
    }

    *more = (i < ids.nelts);

    ngx_snprintf((u_char *) prefix, sizeof(prefix), "ad:%V:%V%Z", org, agent);

    if (*more) {
        job.pid = (int64_t) ngx_pid;
        job.until_ms = creor_now_ms() + CREOR_REAP_LEASE;

        return creor_store_put(st, txn, prefix, &job, sizeof(job), 0);
    }

    rc = creor_store_del(st, txn, prefix);

    return rc == CREOR_STORE_NOTFOUND ? CREOR_STORE_OK : rc;
}
