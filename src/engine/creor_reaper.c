
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The reaper: the runs of a deleted agent are cancelled in the
 * background, a batch a commit (creor_runs_cancel_agent()), by whichever
 * worker takes the agent's "ad:" job (creor_reap_job_t).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_REAP_PAUSE      2             /* ms between two commits */


static ngx_flag_t creor_runs_reap_pending(creor_store_t *st);
static void creor_runs_reap(ngx_event_t *ev);


static ngx_event_t  creor_reap_ev;


/*
 * The background step: one batch of the first deleted agent that still
 * has active runs, then again after a millisecond, so the write lock is
 * held a batch at a time.  Any worker may run it; the housekeeping timer
 * starts it too, for agents whose worker died half way.
 */

void
creor_runs_reap_kick(ngx_creor_main_conf_t *mcf)
{
    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    if (creor_reap_ev.handler == NULL) {
        creor_reap_ev.handler = creor_runs_reap;
        creor_reap_ev.log = ngx_cycle->log;
        creor_reap_ev.cancelable = 1;
    }

    if (!creor_reap_ev.timer_set) {
        ngx_add_timer(&creor_reap_ev, 1);
    }
}


/* whether any "ad:" job is there: a read, before taking the write lock */

static ngx_flag_t
creor_runs_reap_pending(creor_store_t *st)
{
    size_t    n;
    MDB_txn  *txn;

    txn = creor_store_read(st);
    if (txn == NULL) {
        return 0;
    }

    if (creor_scan_count(st, txn, "ad:", 3, 1, &n) != CREOR_STORE_OK) {
        n = 0;
    }

    creor_store_read_done(st);

    return n > 0;
}


static void
creor_runs_reap(ngx_event_t *ev)
{
    int                     rc;
    u_char                 *p, *colon;
    int64_t                 now;
    MDB_txn                *txn;
    ngx_str_t               org, agent;
    ngx_flag_t              more, busy;
    creor_reap_job_t        job;
    ngx_pool_t             *pool;
    creor_scan_t            sc;
    creor_store_t          *st;
    ngx_creor_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_creor_module);
    st = &mcf->store;

    if (!mcf->opened || !creor_runs_reap_pending(st)) {
        return;
    }

    pool = ngx_create_pool(16384, ev->log);
    if (pool == NULL) {
        return;
    }

    busy = 0;

    rc = creor_store_write(st, &txn);
    if (rc != CREOR_STORE_OK) {
        ngx_destroy_pool(pool);
        return;
    }

    if (creor_scan_open(st, txn, &sc, "ad:", 3, NULL, 0) != CREOR_STORE_OK) {
        creor_store_abort(txn);
        ngx_destroy_pool(pool);
        return;
    }

    /* the first job no other live worker holds */

    now = creor_now_ms();

    while ((rc = creor_scan_next(&sc)) == 1) {
        if (sc.val.mv_size != sizeof(creor_reap_job_t)) {
            break;
        }

        ngx_memcpy(&job, sc.val.mv_data, sizeof(creor_reap_job_t));

        if (job.pid == (int64_t) ngx_pid || job.until_ms < now) {
            break;
        }

        /* another worker's: it keeps at it, or its lease runs out */

        busy = 1;
    }

    if (rc != 1) {
        creor_scan_close(&sc);
        creor_store_abort(txn);
        ngx_destroy_pool(pool);

        if (busy) {
            ngx_add_timer(ev, CREOR_REAP_LEASE);
        }

        return;
    }

    p = ngx_pnalloc(pool, sc.rest_len);
    if (p == NULL) {
        creor_scan_close(&sc);
        creor_store_abort(txn);
        ngx_destroy_pool(pool);
        return;
    }

    ngx_memcpy(p, sc.rest, sc.rest_len);
    colon = ngx_strlchr(p, p + sc.rest_len, ':');

    org.data = p;
    org.len = colon ? (size_t) (colon - p) : 0;
    agent.data = colon ? colon + 1 : p;
    agent.len = colon ? (size_t) (p + sc.rest_len - agent.data) : 0;

    if (org.len == 0 || agent.len == 0) {
        (void) creor_scan_del(&sc);
        creor_scan_close(&sc);
        rc = CREOR_STORE_OK;
        more = 1;

    } else {
        creor_scan_close(&sc);
        rc = creor_runs_cancel_agent(st, txn, pool, &org, &agent, &more);
    }

    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "creor: cancelling the runs of deleted agent %V "
                      "failed", &agent);
        ngx_destroy_pool(pool);
        return;
    }

    rc = creor_store_commit(txn);

    ngx_destroy_pool(pool);

    if (rc != CREOR_STORE_OK) {
        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "creor: cancelling the runs of a deleted agent "
                      "failed to commit");
        return;
    }

    creor_changed(mcf, NULL, CREOR_CHANGED_EVENTS);

    /*
     * This agent's next batch, or the next agent's, or nothing; after a
     * pause, so that other writers find the lock free.
     */

    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        ngx_add_timer(ev, CREOR_REAP_PAUSE);
    }
}
