
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The counts of agents and runs by status that /v1/system/status and the
 * metrics read: one record, changed in the transaction that changes a
 * status, so they are exact without ever walking a collection.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_creor.h"


#define CREOR_COUNTS_KEY      "m:counts"
#define CREOR_COUNTS_VERSION  1


static ngx_int_t creor_counts_get(creor_store_t *st, MDB_txn *txn,
    creor_counts_t *counts);
static ngx_int_t creor_counts_scan(creor_store_t *st, MDB_txn *txn,
    const char *prefix, creor_counts_t *counts);
static ngx_uint_t creor_agent_status_index(const char *s);


/* index 0 is "none": not stored yet, or deleted */

static const char  *creor_agent_statuses[] = {
    NULL, "idle", "queued", "running", "completed", "failed", NULL
};


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


/* from, to: an agent header's status (NULL: none) */

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

    len = ngx_strnlen((u_char *) s, CREOR_AGENT_STATUS_MAX);

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

    if (rc == CREOR_STORE_OK) {
        rc = creor_store_commit(txn);

    } else {
        creor_store_abort(txn);
    }

    if (rc == CREOR_STORE_OK) {
        return NGX_OK;
    }

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
    creor_scan_t     sc;
    creor_run_hdr_t  hdr;

    if (creor_scan_open(st, txn, &sc, prefix, ngx_strlen(prefix), NULL, 0)
        != CREOR_STORE_OK)
    {
        return CREOR_STORE_ERROR;
    }

    while ((rc = creor_scan_next(&sc)) == 1) {

        if (prefix[0] == 'a') {
            if (sc.val.mv_size > offsetof(creor_agent_hdr_t, status)
                                 + CREOR_AGENT_STATUS_MAX)
            {
                counts->agents[creor_agent_status_index(
                    ((creor_agent_hdr_t *) sc.val.mv_data)->status)]++;
            }

            continue;
        }

        if (sc.val.mv_size > sizeof(creor_run_hdr_t)) {
            ngx_memcpy(&hdr, sc.val.mv_data, sizeof(creor_run_hdr_t));

            if (hdr.status < CREOR_COUNTS_MAX) {
                counts->runs[hdr.status]++;
            }
        }
    }

    creor_scan_close(&sc);

    counts->agents[0] = 0;
    counts->runs[0] = 0;

    return (rc < 0) ? CREOR_STORE_ERROR : CREOR_STORE_OK;
}
