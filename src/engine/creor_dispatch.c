
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Detached execution (SPEC 8.5).  Every worker runs a timer that claims
 * queued legs from the store under a lease and calls the creor_executor
 * location for each through nginx itself: a request of its own, on a
 * connection of its own that no client owns, whose subrequest goes to the
 * operator's proxy_pass.  The executor's NDJSON reply is parsed in a body
 * filter as it streams; each line becomes an event in the store.
 *
 * With no creor_executor, a leg is a chat completion of the run's model
 * through its creor_provider instead (creor_builtin.c): the same detached
 * request, with that provider's location and a stream of SSE lines.
 *
 * The same timer renews the leases of the worker's legs, notices runs
 * that were cancelled or timed out (and closes their calls), retries
 * failed legs with backoff, takes over legs of dead workers, and wakes
 * event streams when another worker has stored an event.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_TICK_BUSY        5        /* ms, with legs or streams */
#define CREOR_TICK_IDLE        200
#define CREOR_SCAN_INTERVAL    200
#define CREOR_SCAN_BATCH       256
#define CREOR_LEGS_MAX         256      /* a worker's executor calls */
#ifndef CREOR_LINE_MAX                  /* fuzz/ndjson.c makes it small */
#define CREOR_LINE_MAX         (1024 * 1024)
#endif
#define CREOR_BACKOFF_MAX      30000


/* a leg is a job (creor_job.c) of this kind: its data */
typedef struct {
    ngx_queue_t             queue;
    creor_job_t            *job;
    ngx_str_t               run_id;
    creor_builtin_t        *builtin;    /* a built-in leg's state */
    u_char                 *line;       /* a line still being received */
    size_t                  line_len;
    size_t                  line_size;
    ngx_array_t            *lines;      /* complete ones, in this chain */
    int64_t                 renew_ms;
    unsigned                ended:1;    /* a leg-ending event arrived */
    unsigned                aborted:1;  /* the run went on without it */
    unsigned                failed:1;   /* a broken reply: a failed try */
} creor_leg_t;


static void creor_tick_handler(ngx_event_t *ev);
static void creor_legs_check(void);
static void creor_legs_renew(int64_t now);
static void creor_legs_release(void);
static void creor_dispatch_kick(ngx_creor_main_conf_t *mcf);
static void creor_dispatch_poke(ngx_creor_main_conf_t *mcf);
static void creor_dispatch_scan(int64_t now);
static void creor_dispatch_claim(ngx_str_t *id, int64_t now);
static ngx_int_t creor_leg_start(ngx_str_t *id, ngx_str_t *uri,
    ngx_str_t *body, creor_run_t *run);
static ngx_int_t creor_leg_header(creor_job_t *job, ngx_http_request_t *r);
static ngx_int_t creor_leg_piece(creor_job_t *job, u_char *p, size_t len,
    ngx_pool_t *pool);
static void creor_leg_pieces_done(creor_job_t *job, ngx_pool_t *pool);
static void creor_leg_finish(creor_job_t *job);
static void creor_leg_end(creor_job_t *job);
static ngx_int_t creor_leg_feed(creor_leg_t *leg, u_char *p, size_t len,
    ngx_array_t *lines, ngx_pool_t *pool);
static ngx_int_t creor_leg_line(ngx_pool_t *pool, ngx_str_t *line,
    const char **type, creor_json_t **value);
static void creor_leg_events(creor_leg_t *leg, ngx_array_t *lines,
    ngx_pool_t *pool);
static creor_leg_t *creor_leg_find(ngx_str_t *id);
static void creor_dispatch_failed(ngx_str_t *id, const char *what,
    ngx_int_t rc);

#define creor_leg_destroy(leg)  creor_job_destroy((leg)->job)


static ngx_queue_t              creor_legs;
static ngx_uint_t               creor_nlegs;
static ngx_event_t              creor_tick;
static ngx_atomic_uint_t        creor_epoch_seen;
static ngx_flag_t               creor_legs_failed;
static int64_t                  creor_next_scan;
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


ngx_int_t
creor_dispatch_init(ngx_cycle_t *cycle, ngx_creor_main_conf_t *mcf)
{
    ngx_creor_loc_conf_t  *lcf;

    creor_mcf = mcf;
    ngx_queue_init(&creor_legs);

    if (mcf->api_ctx) {
        lcf = mcf->api_ctx->loc_conf[ngx_creor_module.ctx_index];
        creor_executor = lcf->executor;
        creor_providers = lcf->providers;
    }

    creor_job_init(mcf);
    creor_webhooks_init(mcf);

    if (creor_changed_listen(CREOR_CHANGED_WORK, creor_dispatch_kick)
        != NGX_OK
        || creor_changed_listen(CREOR_CHANGED_ELSEWHERE, creor_dispatch_poke)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    creor_epoch_seen = mcf->shared->epoch;

    creor_tick.handler = creor_tick_handler;
    creor_tick.data = mcf;
    creor_tick.log = cycle->log;
    creor_tick.cancelable = 1;

    ngx_add_timer(&creor_tick, CREOR_TICK_BUSY);

    return NGX_OK;
}


/* a new leg is waiting here: do not wait for the next tick */

static void
creor_dispatch_kick(ngx_creor_main_conf_t *mcf)
{
    creor_next_scan = 0;

    if (creor_tick.handler == NULL || creor_tick.posted) {
        return;
    }

    if (creor_tick.timer_set) {
        ngx_del_timer(&creor_tick);
    }

    ngx_post_event(&creor_tick, &ngx_posted_events);
}


/* another worker stored events: look now, not on the next tick */

static void
creor_dispatch_poke(ngx_creor_main_conf_t *mcf)
{
    if (creor_tick.handler == NULL || creor_tick.posted) {
        return;
    }

    ngx_post_event(&creor_tick, &ngx_posted_events);
}


static void
creor_tick_handler(ngx_event_t *ev)
{
    int64_t            now;
    ngx_uint_t         busy;
    ngx_atomic_uint_t  epoch;

    /* what the executor's replies wrote since the last tick has ended */

    creor_store_guard(creor_mcf, ev->log);

    now = creor_now_ms();
    epoch = creor_mcf->shared->epoch;

    if (epoch != creor_epoch_seen || creor_legs_failed) {
        creor_epoch_seen = epoch;
        creor_legs_failed = 0;
        creor_sse_notify(creor_mcf);
        creor_legs_check();

        /* a commit may have made deliveries: they leave at once */

        if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
            creor_webhooks_scan(now);
        }
    }

    if (now >= creor_next_scan) {
        creor_next_scan = now + CREOR_SCAN_INTERVAL;

        creor_legs_renew(now);

        if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
            creor_dispatch_scan(now);
        }
    }

    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        creor_webhooks_tick(now);
    }

    if (ngx_exiting || ngx_quit || ngx_terminate) {

        /*
         * Clients of event streams reconnect to a new worker; legs are
         * left to the next worker at once, not after their lease.
         */

        creor_sse_shutdown();
        creor_legs_release();
        creor_webhooks_release();

        return;
    }

    busy = creor_nlegs || creor_sse_count() || creor_webhooks_busy();

    creor_wakeup_listen(creor_mcf, busy);

    ngx_add_timer(ev, busy ? CREOR_TICK_BUSY : CREOR_TICK_IDLE);
}


/*
 * Legs whose run was cancelled, timed out or taken over are closed; so
 * are calls whose reply broke the contract, as a failed try.
 */

static void
creor_legs_check(void)
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
            leg->renew_ms = now + creor_mcf->run_lease / 3;

        } else {
            creor_dispatch_failed(&leg->run_id, "renew the lease of", rc);
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

static void
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
creor_dispatch_scan(int64_t now)
{
    int               rc;
    size_t            n;
    MDB_val           k, v;
    MDB_txn          *txn;
    ngx_str_t        *id;
    ngx_uint_t        i;
    ngx_pool_t       *pool;
    ngx_array_t       ids;
    MDB_cursor       *cur;
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
        || mdb_cursor_open(txn, creor_mcf->store.dbi, &cur) != 0)
    {
        creor_store_read_done(&creor_mcf->store);
        ngx_destroy_pool(pool);
        return;
    }

    k.mv_data = "q:";
    k.mv_size = 2;

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         rc == 0 && k.mv_size > 2 && ngx_memcmp(k.mv_data, "q:", 2) == 0
         && ids.nelts < CREOR_SCAN_BATCH;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        n = k.mv_size - 2;

        id = ngx_array_push(&ids);
        if (id == NULL) {
            break;
        }

        id->data = ngx_pnalloc(pool, n);
        if (id->data == NULL) {
            break;
        }

        ngx_memcpy(id->data, (u_char *) k.mv_data + 2, n);
        id->len = n;

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

    mdb_cursor_close(cur);
    creor_store_read_done(&creor_mcf->store);

    id = ids.elts;

    for (i = 0; i < ids.nelts; i++) {
        creor_dispatch_claim(&id[i], now);
    }

    ngx_destroy_pool(pool);
}


static void
creor_dispatch_claim(ngx_str_t *id, int64_t now)
{
    int                rc;
    MDB_txn           *txn;
    ngx_str_t          body;
    ngx_pool_t        *pool;
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
            creor_dispatch_failed(id, "time out", rc);
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
            creor_dispatch_failed(id, "fail", rc);
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
            creor_dispatch_failed(id, "claim", rc);
            ngx_destroy_pool(pool);
            return;
        }
    }

    if (creor_executor.len == 0) {

        /* built-in: the provider's request is made after the commit */

        if (creor_builtin_claim(st, txn, &run, creor_providers, &pv)
            != NGX_OK)
        {
            ngx_destroy_pool(pool);
            return;
        }

        rc = creor_builtin_started(st, txn, &run);
        if (rc != CREOR_STORE_OK) {
            creor_store_abort(txn);
            creor_dispatch_failed(id, "claim", rc);
            ngx_destroy_pool(pool);
            return;
        }

    }

    rc = creor_run_commit(st, txn, &run, 1);
    if (rc != CREOR_STORE_OK) {
        creor_dispatch_failed(id, "claim", rc);
        ngx_destroy_pool(pool);
        return;
    }

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
                creor_dispatch_failed(&leg->run_id, "fail", rc);
            }

            goto done;
        }
    }

    if (run.hdr.attempt > creor_mcf->executor_retries) {
        rc = creor_run_fail(st, txn, &run, "run.worker.failed",
                            "EXECUTOR_UNAVAILABLE");
        if (rc != CREOR_STORE_OK) {
            creor_dispatch_failed(&leg->run_id, "fail", rc);
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
        creor_dispatch_failed(&leg->run_id, "retry", rc);
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

    if (leg->line) {
        ngx_free(leg->line);
        leg->line = NULL;
    }
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
        creor_legs_failed = 1;
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


/* complete lines go to lines (copied into pool); the rest waits */

static ngx_int_t
creor_leg_feed(creor_leg_t *leg, u_char *p, size_t len, ngx_array_t *lines,
    ngx_pool_t *pool)
{
    u_char     *nl, *last, *nb;
    size_t      n, size;
    ngx_str_t  *line;

    last = p + len;

    while (p < last) {
        nl = ngx_strlchr(p, last, '\n');
        n = (nl ? nl : last) - p;

        if (leg->line_len + n > CREOR_LINE_MAX) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "creor: an executor line of %V is over %d bytes",
                          &leg->run_id, CREOR_LINE_MAX);
            return NGX_ERROR;
        }

        if (nl && leg->line_len == 0) {
            line = ngx_array_push(lines);
            if (line == NULL) {
                return NGX_ERROR;
            }

            line->data = ngx_pnalloc(pool, n);
            if (line->data == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(line->data, p, n);
            line->len = n;
            p = nl + 1;
            continue;
        }

        if (leg->line_len + n > leg->line_size) {
            size = ngx_max(leg->line_size * 2, leg->line_len + n);
            size = ngx_max(size, 1024);

            nb = ngx_alloc(size, ngx_cycle->log);
            if (nb == NULL) {
                return NGX_ERROR;
            }

            if (leg->line) {
                ngx_memcpy(nb, leg->line, leg->line_len);
                ngx_free(leg->line);
            }

            leg->line = nb;
            leg->line_size = size;
        }

        ngx_memcpy(leg->line + leg->line_len, p, n);
        leg->line_len += n;

        if (nl == NULL) {
            break;
        }

        line = ngx_array_push(lines);
        if (line == NULL) {
            return NGX_ERROR;
        }

        line->data = ngx_pnalloc(pool, leg->line_len);
        if (line->data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(line->data, leg->line, leg->line_len);
        line->len = leg->line_len;
        leg->line_len = 0;
        p = nl + 1;
    }

    return NGX_OK;
}


/*
 * An executor line: NGX_OK with its type and value (NULL if it has
 * none) if it is an event of the contract, NGX_DONE if it is blank,
 * NGX_DECLINED otherwise.  Nothing here needs a run, for fuzz/ndjson.c.
 */

static ngx_int_t
creor_leg_line(ngx_pool_t *pool, ngx_str_t *line, const char **type,
    creor_json_t **value)
{
    u_char         err[128];
    creor_json_t  *ev, *t;
    const char   **name;

    static const char  *types[] = {
        "step.started", "step.progress", "step.done", "run.awaiting_input",
        "run.completed", "run.failed", NULL
    };

    while (line->len && (line->data[line->len - 1] == '\r'
                         || line->data[line->len - 1] == ' '))
    {
        line->len--;
    }

    if (line->len == 0) {
        return NGX_DONE;
    }

    ev = creor_json_parse_max(pool, line->data, line->len,
                              CREOR_JSON_MAX_VALUES, NULL, err, sizeof(err));
    t = creor_json_get(ev, "type");
    *value = creor_json_get(ev, "value");

    if (ev == NULL || t == NULL || t->type != CREOR_JSON_STRING
        || (*value && (*value)->type != CREOR_JSON_OBJECT))
    {
        return NGX_DECLINED;
    }

    for (name = types; *name; name++) {
        if (ngx_strcmp(*name, t->str.data) == 0) {
            *type = *name;
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/*
 * Lines received together are stored in one transaction.  A line that
 * is not an event of the executor contract is logged and skipped.
 */

static void
creor_leg_events(creor_leg_t *leg, ngx_array_t *lines, ngx_pool_t *pool)
{
    int             rc;
    MDB_txn        *txn;
    ngx_str_t      *line;
    ngx_uint_t      i;
    const char     *t;
    creor_run_t     run;
    creor_json_t   *value;
    creor_store_t  *st;

    st = &creor_mcf->store;

    if (creor_store_write(st, &txn) != CREOR_STORE_OK) {
        return;
    }

    if (creor_run_load_any(st, txn, pool, &leg->run_id, &run)
        != CREOR_STORE_OK
        || creor_run_terminal(run.hdr.status)
        || run.hdr.owner_pid != (uint32_t) ngx_pid)
    {
        /* cancelled, timed out or taken over: the tick closes the call */

        creor_store_abort(txn);
        leg->aborted = 1;
        return;
    }

    line = lines->elts;
    run.sync = 0;

    for (i = 0; i < lines->nelts && !leg->ended; i++) {

        rc = creor_leg_line(pool, &line[i], &t, &value);

        if (rc == NGX_DONE) {
            continue;
        }

        if (rc != NGX_OK) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "creor: executor line of %V skipped: not an "
                          "event of the contract", &leg->run_id);
            continue;
        }

        rc = creor_run_event(st, txn, &run, t, ngx_strlen(t), value);

        if (rc != CREOR_STORE_OK) {
            creor_store_abort(txn);

            if (rc != NGX_DECLINED) {
                creor_dispatch_failed(&leg->run_id, "record the events of",
                                      rc);
            }

            leg->aborted = 1;
            return;
        }

        if (ngx_strcmp(t, "run.awaiting_input") == 0
            || ngx_strcmp(t, "run.completed") == 0
            || ngx_strcmp(t, "run.failed") == 0)
        {
            leg->ended = 1;
        }
    }

    rc = creor_run_commit(st, txn, &run, 1);

    if (rc != CREOR_STORE_OK) {
        creor_dispatch_failed(&leg->run_id, "record the events of", rc);
        leg->aborted = 1;
    }
}


/*
 * A store failure costs the background work one turn: the run stays
 * queued or leased and is taken up again, as after a worker's death.
 */

static void
creor_dispatch_failed(ngx_str_t *id, const char *what, ngx_int_t rc)
{
    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "creor: cannot %s %V: %s", what, id,
                  rc == CREOR_STORE_FULL ? "the store is full"
                                         : "the store failed");
}
