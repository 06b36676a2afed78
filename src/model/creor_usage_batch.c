
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The worker's usage meter: chat completions are added to a bounded table
 * of the worker and written once a second, in one transaction for the
 * whole table, so metering costs a completion a lookup in memory, not a
 * commit.  docs/architecture.md explains what a crash can lose.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_USAGE_BATCH        256    /* distinct aggregates a second */
#define CREOR_USAGE_INTERVAL     1000   /* ms between writes */


typedef struct {
    char                    key[CREOR_USAGE_KEY_MAX];
    size_t                  len;
    uint32_t                hash;
    creor_usage_rec_t       rec;
} creor_usage_entry_t;


static ngx_int_t creor_usage_flush_batch(ngx_log_t *log);
static void creor_usage_timer(ngx_event_t *ev);


/* the worker's table: at most CREOR_USAGE_BATCH entries, always */

static creor_usage_entry_t     creor_usage_batch[CREOR_USAGE_BATCH];
static ngx_uint_t              creor_usage_n;
static ngx_creor_main_conf_t  *creor_usage_mcf;
static ngx_event_t             creor_usage_event;


/*
 * Adds a finished completion to the worker's table; the timer writes
 * it within CREOR_USAGE_INTERVAL.  A full table is written first; if
 * that fails too the completion is not counted (and logged): memory
 * stays bounded whatever the store does.
 */

ngx_int_t
creor_usage_add(ngx_creor_main_conf_t *mcf, creor_usage_t *u, ngx_log_t *log)
{
    char                  key[CREOR_USAGE_KEY_MAX];
    size_t                len;
    int64_t               ms;
    uint32_t              hash;
    ngx_uint_t            i;
    creor_usage_dims_t    d;
    creor_usage_entry_t  *e;

    static int64_t        day = -1;
    static char           today[CREOR_USAGE_DAY_LEN + 1];

    d.data[CREOR_USAGE_ORG] = (char *) u->org.data;
    d.len[CREOR_USAGE_ORG] = u->org.len;
    d.data[CREOR_USAGE_PROJECT] = (char *) u->project.data;
    d.len[CREOR_USAGE_PROJECT] = u->project.len;
    d.data[CREOR_USAGE_KEY] = (char *) u->key_id.data;
    d.len[CREOR_USAGE_KEY] = u->key_id.len;
    d.data[CREOR_USAGE_AGENT] = (char *) u->agent.data;
    d.len[CREOR_USAGE_AGENT] = u->agent.len;
    d.data[CREOR_USAGE_MODEL] = (char *) u->model.data;
    d.len[CREOR_USAGE_MODEL] = u->model.len;

    /* gmtime_r() once a day, not once a completion */

    ms = u->time_ms ? u->time_ms : creor_now_ms();

    if (ms / 86400000 != day || day == -1) {
        day = ms / 86400000;
        creor_usage_day(today, ms);
    }

    ngx_memcpy(d.day, today, sizeof(d.day));

    if (creor_usage_key(key, &len, &d) != CREOR_STORE_OK) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "creor: usage of \"%V\" not counted: bad dimensions",
                      &u->org);
        return NGX_ERROR;
    }

    hash = ngx_crc32_long((u_char *) key, len);

    for (i = 0; i < creor_usage_n; i++) {
        e = &creor_usage_batch[i];

        if (e->hash == hash && e->len == len
            && ngx_memcmp(e->key, key, len) == 0)
        {
            goto found;
        }
    }

    if (creor_usage_n == CREOR_USAGE_BATCH
        && creor_usage_flush_batch(log) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "creor: usage of \"%V\" not counted: store failed",
                      &u->org);
        return NGX_ERROR;
    }

    creor_usage_mcf = mcf;

    e = &creor_usage_batch[creor_usage_n++];
    ngx_memcpy(e->key, key, len);
    e->len = len;
    e->hash = hash;
    ngx_memzero(&e->rec, sizeof(creor_usage_rec_t));

found:

    e->rec.requests += u->requests;
    e->rec.runs += u->runs;
    e->rec.input_tokens += u->input_tokens;
    e->rec.output_tokens += u->output_tokens;

    if (creor_usage_event.handler == NULL) {
        creor_usage_event.handler = creor_usage_timer;
        creor_usage_event.log = ngx_cycle->log;
        creor_usage_event.cancelable = 1;
    }

    if (!creor_usage_event.timer_set) {
        ngx_add_timer(&creor_usage_event, CREOR_USAGE_INTERVAL);
    }

    return NGX_OK;
}


/* what the worker has not written yet: on exit, before the store closes */

void
creor_usage_flush(ngx_log_t *log)
{
    if (creor_usage_event.timer_set) {
        ngx_del_timer(&creor_usage_event);
    }

    (void) creor_usage_flush_batch(log);
}


/*
 * One transaction for the whole table, committed as the store commits
 * (synced with sync=on): a failed one leaves the table as it was, so no
 * completion is counted twice or lost to a passing error.
 */

static ngx_int_t
creor_usage_flush_batch(ngx_log_t *log)
{
    int             rc;
    MDB_txn        *txn;
    ngx_uint_t      i;
    creor_store_t  *st;

    if (creor_usage_n == 0 || creor_usage_mcf == NULL
        || !creor_usage_mcf->opened)
    {
        return NGX_OK;
    }

    st = &creor_usage_mcf->store;

    rc = creor_store_write(st, &txn);

    if (rc == CREOR_STORE_OK) {
        for (i = 0; i < creor_usage_n; i++) {
            rc = creor_usage_merge(st, txn, creor_usage_batch[i].key,
                                   creor_usage_batch[i].len,
                                   &creor_usage_batch[i].rec);
            if (rc != CREOR_STORE_OK) {
                creor_store_abort(txn);
                break;
            }
        }
    }

    if (rc == CREOR_STORE_OK) {
        rc = creor_store_commit(txn);
    }

    if (rc != CREOR_STORE_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "creor: writing %ui usage records failed: %d",
                      creor_usage_n, rc);
        return NGX_ERROR;
    }

    creor_usage_n = 0;

    return NGX_OK;
}


static void
creor_usage_timer(ngx_event_t *ev)
{
    if (creor_usage_flush_batch(ev->log) != NGX_OK && creor_usage_n) {
        ngx_add_timer(ev, CREOR_USAGE_INTERVAL);
    }
}
