
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Run legs (SPEC 8.5), the engine's first kind of job.  "q:<run>" lists
 * the runs that need a worker; every 200 ms, and at once when a run is
 * queued, the tick has them scanned and each free leg claimed under a
 * lease (owner, lease end, the run.started event in one write
 * transaction).  The leg is a detached request (creor_job.c) to the
 * creor_executor location, whose reply is the executor contract's
 * (creor_executor.c); with no creor_executor, a chat completion of the
 * run's model through its creor_provider (creor_builtin.c).
 *
 * Here too: the holder renews its leases; a leg whose run was cancelled
 * or timed out is closed; a failed try is retried with backoff, then the
 * run fails; a leg whose holder died is taken over after its lease; a
 * worker that stops gives its legs back at once.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"
#include "creor_executor.h"


#define CREOR_SCAN_BATCH       256
#define CREOR_LEGS_MAX         256      /* a worker's executor calls */
#define CREOR_BACKOFF_MAX      30000


static void creor_legs_renew(int64_t now);
static void creor_legs_scan(int64_t now);
static void creor_legs_claim(ngx_str_t *id, int64_t now);
static ngx_int_t creor_leg_start(ngx_str_t *id, ngx_str_t *uri,
    ngx_str_t *body, creor_run_t *run);
static ngx_int_t creor_leg_header(creor_job_t *job, ngx_http_request_t *r);
static ngx_int_t creor_leg_piece(creor_job_t *job, u_char *p, size_t len,
    ngx_pool_t *pool);
static void creor_leg_pieces_done(creor_job_t *job, ngx_pool_t *pool);
static void creor_leg_finish(creor_job_t *job);
static void creor_leg_end(creor_job_t *job);
static creor_leg_t *creor_leg_find(ngx_str_t *id);

#define creor_leg_destroy(leg)  creor_job_destroy((leg)->job)


static ngx_queue_t              creor_legs;
static ngx_uint_t               creor_nlegs;
static ngx_creor_main_conf_t   *creor_mcf;
static ngx_str_t                creor_executor;
static ngx_array_t             *creor_providers;

static creor_job_kind_t  creor_leg_kind = {
    "calling the executor",
    creor_leg_header,
    creor_leg_piece,
    creor_leg_pieces_done,
    creor_leg_finish,
    creor_leg_end
};


void
creor_legs_init(ngx_creor_main_conf_t *mcf)
{
    ngx_creor_loc_conf_t  *lcf;

    creor_mcf = mcf;
    ngx_queue_init(&creor_legs);

    if (mcf->api_ctx) {
        lcf = mcf->api_ctx->loc_conf[ngx_creor_module.ctx_index];
        creor_executor = lcf->executor;
        creor_providers = lcf->providers;
    }
}


ngx_uint_t
creor_legs_busy(void)
{
    return creor_nlegs;
}


/* every 200 ms: leases renewed, free legs claimed */

void
creor_legs_every(int64_t now)
{
    creor_legs_renew(now);

    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        creor_legs_scan(now);
    }
}


/*
 * Legs whose run was cancelled, timed out or taken over are closed; so
 * are calls whose reply broke the contract, as a failed try.
 */

void
creor_legs_changed(int64_t now)
{
    MDB_txn           *txn;
    ngx_queue_t       *q, *next;
    creor_leg_t       *leg;
    creor_run_hdr_t    hdr;

    for (q = ngx_queue_head(&creor_legs);
         q != ngx_queue_sentinel(&creor_legs);
         q = next)
    {
        next = ngx_queue_next(q);
        leg = ngx_queue_data(q, creor_leg_t, queue);

        if (leg->job->done) {
            continue;
        }

        if (leg->failed && !leg->aborted) {
            ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                          "creor: closing the executor call of %V",
                          &leg->run_id);

            creor_leg_finish(leg->job);
            continue;
        }

        txn = creor_store_read(&creor_mcf->store);
        if (txn == NULL) {
            break;
        }

        if (creor_run_header(&creor_mcf->store, txn, &leg->run_id, &hdr)
            == CREOR_STORE_OK
            && !creor_run_terminal(hdr.status)
            && hdr.owner_pid == (uint32_t) ngx_pid
            && !leg->aborted)
        {
            creor_store_read_done(&creor_mcf->store);
            continue;
        }

        creor_store_read_done(&creor_mcf->store);

        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "creor: closing the executor call of %V",
                      &leg->run_id);

        /* a leg that ended its run is closed early, not aborted */

        creor_metrics_leg(leg->ended ? CREOR_LEG_OK : CREOR_LEG_ABORTED);
        creor_leg_destroy(leg);
    }
}


static void
creor_legs_renew(int64_t now)
{
    int            rc;
    MDB_txn       *txn;
    ngx_pool_t    *pool;
    ngx_queue_t   *q;
    creor_leg_t   *leg;
    creor_run_t    run;

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    for (q = ngx_queue_head(&creor_legs);
         q != ngx_queue_sentinel(&creor_legs);
         q = ngx_queue_next(q))
    {
        leg = ngx_queue_data(q, creor_leg_t, queue);

        if (leg->job->done || leg->ended || now < leg->renew_ms) {
            continue;
        }

        if (creor_store_write(&creor_mcf->store, &txn) != CREOR_STORE_OK) {
            break;
        }

        if (creor_run_load_any(&creor_mcf->store, txn, pool, &leg->run_id,
                               &run)
            != CREOR_STORE_OK
            || run.hdr.owner_pid != (uint32_t) ngx_pid
            || creor_run_terminal(run.hdr.status))
        {
            creor_store_abort(txn);
            leg->aborted = 1;
            continue;
        }

        run.hdr.lease_ms = now + creor_mcf->run_lease;
        run.sync = 0;

        rc = creor_run_commit(&creor_mcf->store, txn, &run, 0);

        if (rc == CREOR_STORE_OK) {
            creor_changed(creor_mcf, &run.id, CREOR_CHANGED_EVENTS);
            leg->renew_ms = now + creor_mcf->run_lease / 3;

        } else {
            creor_legs_failed(&leg->run_id, "renew the lease of", rc);
        }
    }

    ngx_destroy_pool(pool);
}


/*
 * A worker that is going away (quit, reload, binary upgrade) closes its
 * executor calls and gives their runs back: owner and lease cleared, the
 * try not counted, so another worker, or the next nginx on this store,
 * claims them at its next scan.  The executor sees its call closed, as
 * after any failed try, and is called again for the whole leg.
 */

void
creor_legs_release(void)
{
    MDB_txn       *txn;
    ngx_pool_t    *pool;
    ngx_queue_t   *q;
    creor_leg_t   *leg;
    creor_run_t    run;

    if (creor_nlegs == 0) {
        return;
    }

    pool = ngx_create_pool(4096, ngx_cycle->log);

    while (!ngx_queue_empty(&creor_legs)) {
        q = ngx_queue_head(&creor_legs);
        leg = ngx_queue_data(q, creor_leg_t, queue);

        if (pool && !leg->ended
            && creor_store_write(&creor_mcf->store, &txn) == CREOR_STORE_OK)
        {
            if (creor_run_load_any(&creor_mcf->store, txn, pool,
                                   &leg->run_id, &run)
                == CREOR_STORE_OK
                && run.hdr.owner_pid == (uint32_t) ngx_pid
                && !creor_run_terminal(run.hdr.status))
            {
                run.hdr.owner_pid = 0;
                run.hdr.lease_ms = 0;
                run.hdr.next_ms = 0;
                run.sync = 0;

                if (creor_run_commit(&creor_mcf->store, txn, &run, 0)
                    == CREOR_STORE_OK)
                {
                    creor_changed(creor_mcf, &run.id, CREOR_CHANGED_EVENTS);
                    ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                                  "creor: leaving the leg of %V to another "
                                  "worker", &leg->run_id);
                }

            } else {
                creor_store_abort(txn);
            }
        }

        creor_metrics_leg(leg->ended ? CREOR_LEG_OK : CREOR_LEG_ABORTED);
        leg->aborted = 1;
        creor_leg_destroy(leg);
    }

    if (pool) {
        ngx_destroy_pool(pool);
    }
}


/*
 * "q:<run>" lists the runs that need a worker.  A read transaction picks
 * the candidates; each is claimed in a write transaction of its own,
 * which checks again, since another worker may be faster.
 */

static void
creor_legs_scan(int64_t now)
{
    MDB_txn          *txn;
    ngx_str_t        *id;
    ngx_uint_t        i;
    ngx_pool_t       *pool;
    ngx_array_t       ids;
    creor_scan_t      sc;
    creor_run_hdr_t   hdr;

    pool = ngx_create_pool(8192, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    if (ngx_array_init(&ids, pool, 16, sizeof(ngx_str_t)) != NGX_OK) {
        ngx_destroy_pool(pool);
        return;
    }

    txn = creor_store_read(&creor_mcf->store);

    if (txn == NULL
        || creor_scan_open(&creor_mcf->store, txn, &sc, "q:", 2, NULL, 0)
           != CREOR_STORE_OK)
    {
        creor_store_read_done(&creor_mcf->store);
        ngx_destroy_pool(pool);
        return;
    }

    while (ids.nelts < CREOR_SCAN_BATCH && creor_scan_next(&sc) == 1) {
        id = ngx_array_push(&ids);
        if (id == NULL) {
            break;
        }

        id->data = ngx_pnalloc(pool, sc.rest_len);
        if (id->data == NULL) {
            break;
        }

        ngx_memcpy(id->data, sc.rest, sc.rest_len);
        id->len = sc.rest_len;

        /* only what needs a write: free legs, timeouts, dead holders */

        if (creor_run_header(&creor_mcf->store, txn, id, &hdr)
            == CREOR_STORE_OK
            && !creor_run_terminal(hdr.status)
            && hdr.status != CREOR_RUN_AWAITING_INPUT
            && hdr.created_ms + (int64_t) creor_mcf->run_timeout > now
            && (hdr.lease_ms > now || hdr.next_ms > now
                || creor_nlegs >= CREOR_LEGS_MAX))
        {
            ids.nelts--;
        }
    }

    creor_scan_close(&sc);
    creor_store_read_done(&creor_mcf->store);

    id = ids.elts;

    for (i = 0; i < ids.nelts; i++) {
        creor_legs_claim(&id[i], now);
    }

    ngx_destroy_pool(pool);
}


static void
creor_legs_claim(ngx_str_t *id, int64_t now)
{
    int                rc;
    MDB_txn           *txn;
    ngx_int_t          brc;
    ngx_str_t          body;
    ngx_pool_t        *pool;
    const char        *fail;
    creor_run_t        run;
    creor_store_t     *st;
    creor_provider_t  *pv;

    st = &creor_mcf->store;

    pool = ngx_create_pool(16384, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    if (creor_store_write(st, &txn) != CREOR_STORE_OK) {
        ngx_destroy_pool(pool);
        return;
    }

    rc = creor_run_load_any(st, txn, pool, id, &run);

    if (rc != CREOR_STORE_OK || creor_run_terminal(run.hdr.status)
        || run.hdr.status == CREOR_RUN_AWAITING_INPUT)
    {
        /* nothing to run: the queue entry is stale */

        if (rc == CREOR_STORE_NOTFOUND || rc == CREOR_STORE_OK) {
            ngx_snprintf((u_char *) run.key, sizeof(run.key), "q:%V%Z", id);
            (void) creor_store_del(st, txn, run.key);
            (void) creor_store_commit(txn);

        } else {
            creor_store_abort(txn);
        }

        ngx_destroy_pool(pool);
        return;
    }

    if (run.hdr.created_ms + (int64_t) creor_mcf->run_timeout <= now) {
        rc = creor_run_fail(st, txn, &run, "run.failed", "RUN_TIMEOUT");
        if (rc != CREOR_STORE_OK) {
            creor_legs_failed(id, "time out", rc);

        } else {
            creor_changed(creor_mcf, &run.id, CREOR_CHANGED_EVENTS);
        }

        ngx_destroy_pool(pool);
        return;
    }

    if (run.hdr.lease_ms > now || run.hdr.next_ms > now
        || creor_leg_find(id) || creor_nlegs >= CREOR_LEGS_MAX)
    {
        creor_store_abort(txn);
        ngx_destroy_pool(pool);
        return;
    }

    /* a holder whose lease ran out died: its try counts as failed */

    if (run.hdr.owner_pid) {
        run.hdr.attempt++;

        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "creor: taking over %V from worker %uD", id,
                      run.hdr.owner_pid);
    }

    if (run.hdr.attempt > creor_mcf->executor_retries) {
        if (creor_executor.len) {
            rc = creor_run_fail(st, txn, &run, "run.worker.failed",
                                "EXECUTOR_UNAVAILABLE");


        } else {
            rc = creor_run_fail(st, txn, &run, "run.failed",
                                "PROVIDER_ERROR");
        }

        if (rc != CREOR_STORE_OK) {
            creor_legs_failed(id, "fail", rc);

        } else {
            creor_changed(creor_mcf, &run.id, CREOR_CHANGED_EVENTS);
        }

        ngx_destroy_pool(pool);
        return;
    }

    run.hdr.owner_pid = (uint32_t) ngx_pid;
    run.hdr.lease_ms = now + creor_mcf->run_lease;
    run.hdr.legs++;

    if (run.hdr.status == CREOR_RUN_QUEUED) {
        rc = creor_run_event(st, txn, &run, "run.started", 11, NULL);
        if (rc != CREOR_STORE_OK) {
            creor_store_abort(txn);
            creor_legs_failed(id, "claim", rc);
            ngx_destroy_pool(pool);
            return;
        }
    }

    if (creor_executor.len == 0) {

        /* built-in: the provider's request is made after the commit */

        brc = creor_builtin_claim(txn, &run, creor_providers, &pv, &fail);

        if (brc == NGX_DECLINED) {
            rc = creor_run_fail(st, txn, &run, "run.failed", fail);
            if (rc != CREOR_STORE_OK) {
                creor_legs_failed(id, "fail", rc);

            } else {
                creor_changed(creor_mcf, &run.id, CREOR_CHANGED_EVENTS);
            }
        }

        if (brc != NGX_OK) {
            ngx_destroy_pool(pool);
            return;
        }

        rc = creor_builtin_started(st, txn, &run);
        if (rc != CREOR_STORE_OK) {
            creor_store_abort(txn);
            creor_legs_failed(id, "claim", rc);
            ngx_destroy_pool(pool);
            return;
        }

    }

    rc = creor_run_commit(st, txn, &run, 1);
    if (rc != CREOR_STORE_OK) {
        creor_legs_failed(id, "claim", rc);
        ngx_destroy_pool(pool);
        return;
    }

    creor_changed(creor_mcf, &run.id, CREOR_CHANGED_EVENTS);

    if (creor_executor.len == 0) {
        rc = (creor_builtin_body(st, &run, pool, &body) == NGX_OK)
             ? creor_leg_start(id, &pv->uri, &body, &run) : NGX_ERROR;

    } else {

        /* the executor's request is read after the claim, outside its lock */

        txn = creor_store_read(st);

        rc = (txn == NULL) ? NGX_ERROR
                           : creor_run_leg_body(st, txn, pool, &run, &body);

        creor_store_read_done(st);

        if (rc == NGX_OK) {
            rc = creor_leg_start(id, &creor_executor, &body, NULL);
        }
    }

    if (rc != NGX_OK) {

        /* the lease runs out and the leg is tried again */

        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "creor: cannot start the executor call of %V", id);
    }

    ngx_destroy_pool(pool);
}


static creor_leg_t *
creor_leg_find(ngx_str_t *id)
{
    ngx_queue_t   *q;
    creor_leg_t   *leg;

    for (q = ngx_queue_head(&creor_legs);
         q != ngx_queue_sentinel(&creor_legs);
         q = ngx_queue_next(q))
    {
        leg = ngx_queue_data(q, creor_leg_t, queue);

        if (leg->run_id.len == id->len
            && ngx_strncmp(leg->run_id.data, id->data, id->len) == 0)
        {
            return leg;
        }
    }

    return NULL;
}


/* the executor call: a job of the legs' kind, kept in creor_legs */

static ngx_int_t
creor_leg_start(ngx_str_t *id, ngx_str_t *uri, ngx_str_t *body,
    creor_run_t *run)
{
    creor_job_t  *job;
    creor_leg_t  *leg;

    job = creor_job_create(&creor_leg_kind, sizeof(creor_leg_t), uri, body,
                           NULL, 0);
    if (job == NULL) {
        return NGX_ERROR;
    }

    leg = job->data;
    leg->job = job;

    ngx_queue_insert_tail(&creor_legs, &leg->queue);
    creor_nlegs++;

    leg->run_id.data = ngx_pnalloc(job->pool, id->len);
    if (leg->run_id.data == NULL) {
        creor_job_destroy(job);
        return NGX_ERROR;
    }

    ngx_memcpy(leg->run_id.data, id->data, id->len);
    leg->run_id.len = id->len;

    if (run) {
        leg->builtin = creor_builtin_create(job->pool, run);
        if (leg->builtin == NULL) {
            creor_job_destroy(job);
            return NGX_ERROR;
        }
    }

    leg->renew_ms = creor_now_ms() + creor_mcf->run_lease / 3;
    creor_wakeup_listen(creor_mcf, 1);

    creor_job_run(job, 0);

    return NGX_OK;
}


/*
 * A leg that ended with a leg-ending event is done; any other end (an
 * error status, a refused connection, a stream cut short) is a failed
 * try: retried with backoff, then the run fails.
 */

static void
creor_leg_finish(creor_job_t *job)
{
    ngx_int_t       rc;
    int64_t         now, backoff;
    MDB_txn        *txn;
    ngx_pool_t     *pool;
    creor_leg_t    *leg;
    creor_run_t    run;
    creor_store_t  *st;

    st = &creor_mcf->store;
    leg = job->data;

    if (leg->ended || leg->aborted) {
        creor_metrics_leg(leg->ended ? CREOR_LEG_OK : CREOR_LEG_ABORTED);
        creor_leg_destroy(leg);
        return;
    }

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        creor_leg_destroy(leg);
        return;
    }

    if (creor_store_write(st, &txn) != CREOR_STORE_OK) {
        goto done;
    }

    if (creor_run_load_any(st, txn, pool, &leg->run_id, &run)
        != CREOR_STORE_OK
        || creor_run_terminal(run.hdr.status)
        || run.hdr.owner_pid != (uint32_t) ngx_pid)
    {
        /* the run went on without this call: cancelled, taken over */

        creor_metrics_leg(CREOR_LEG_ABORTED);
        creor_store_abort(txn);
        goto done;
    }

    creor_metrics_leg(CREOR_LEG_FAILED);

    now = creor_now_ms();
    run.hdr.attempt++;

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "creor: %s call of %V failed (status %ui, rc %i), try %uD",
                  leg->builtin ? "provider" : "executor", &leg->run_id,
                  job->status, job->rc, run.hdr.attempt);

    if (leg->builtin) {
        creor_builtin_failed(leg->builtin);

        if (!creor_builtin_retryable(job->status)) {
            run.hdr.attempt = creor_mcf->executor_retries + 1;
        }

        if (run.hdr.attempt > creor_mcf->executor_retries) {
            rc = creor_run_fail(st, txn, &run, "run.failed",
                                job->rc == NGX_HTTP_GATEWAY_TIME_OUT
                                ? "PROVIDER_TIMEOUT" : "PROVIDER_ERROR");
            if (rc != CREOR_STORE_OK) {
                creor_legs_failed(&leg->run_id, "fail", rc);

            } else {
                creor_changed(creor_mcf, &run.id, CREOR_CHANGED_EVENTS);
            }

            goto done;
        }
    }

    if (run.hdr.attempt > creor_mcf->executor_retries) {
        rc = creor_run_fail(st, txn, &run, "run.worker.failed",
                            "EXECUTOR_UNAVAILABLE");
        if (rc != CREOR_STORE_OK) {
            creor_legs_failed(&leg->run_id, "fail", rc);

        } else {
            creor_changed(creor_mcf, &run.id, CREOR_CHANGED_EVENTS);
        }

        goto done;
    }

    /* 0.5 s, 1 s, 2 s... up to 30 s, whatever the number of retries */

    backoff = (int64_t) 500 << ngx_min(run.hdr.attempt - 1, 16);

    run.hdr.owner_pid = 0;
    run.hdr.lease_ms = 0;
    run.hdr.next_ms = now + ngx_min(backoff, CREOR_BACKOFF_MAX);
    run.sync = 0;

    rc = creor_run_commit(st, txn, &run, 1);
    if (rc != CREOR_STORE_OK) {
        creor_legs_failed(&leg->run_id, "retry", rc);

    } else {
        creor_changed(creor_mcf, &run.id, CREOR_CHANGED_EVENTS);
    }

done:

    ngx_destroy_pool(pool);
    creor_leg_destroy(leg);
}


static void
creor_leg_end(creor_job_t *job)
{
    creor_leg_t  *leg = job->data;

    ngx_queue_remove(&leg->queue);
    creor_nlegs--;

    creor_leg_line_free(leg);
}


static ngx_int_t
creor_leg_header(creor_job_t *job, ngx_http_request_t *r)
{
    creor_leg_t  *leg = job->data;

    if (job->status < 200 || job->status >= 300) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "creor: the executor answered %ui for %V",
                      job->status, &leg->run_id);
    }

    return NGX_OK;
}


/* the executor's reply: taken whole, lines stored as they complete */

static ngx_int_t
creor_leg_piece(creor_job_t *job, u_char *p, size_t len, ngx_pool_t *pool)
{
    creor_leg_t  *leg = job->data;

    if (job->status < 200 || job->status >= 300 || leg->ended
        || leg->aborted || leg->failed)
    {
        return NGX_OK;
    }

    if (leg->lines == NULL) {
        leg->lines = ngx_array_create(pool, 8, sizeof(ngx_str_t));
        if (leg->lines == NULL) {
            return NGX_ERROR;
        }
    }

    if (creor_leg_feed(leg, p, len, leg->lines, pool) != NGX_OK) {

        /* the tick closes the call and schedules the next try */

        leg->failed = 1;
        creor_tick_again();
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* lines received together are stored together */

static void
creor_leg_pieces_done(creor_job_t *job, ngx_pool_t *pool)
{
    ngx_int_t     rc;
    creor_leg_t  *leg = job->data;

    if (leg->lines && leg->lines->nelts && !leg->aborted && leg->builtin) {
        rc = creor_builtin_events(leg->builtin, &leg->run_id, leg->lines,
                                  pool);
        leg->ended = (rc == NGX_DONE);
        leg->aborted = (rc == NGX_ABORT || rc == NGX_ERROR);

    } else if (leg->lines && leg->lines->nelts && !leg->aborted) {
        creor_leg_events(leg, leg->lines, pool);
    }

    leg->lines = NULL;
}


/*
 * A store failure costs the background work one turn: the run stays
 * queued or leased and is taken up again, as after a worker's death.
 */

void
creor_legs_failed(ngx_str_t *id, const char *what, ngx_int_t rc)
{
    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "creor: cannot %s %V: %s", what, id,
                  rc == CREOR_STORE_FULL ? "the store is full"
                                         : "the store failed");
}
