
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The purge of a kind of record that expires (creor_expire.h): a record
 * of kind->size bytes that begins with the time it expires at (int64,
 * ms), or one that kind->expired says has expired; a record of another
 * size is damaged and goes too.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_creor.h"


static int creor_expire_drop(MDB_txn *txn, const MDB_val *key,
    const MDB_val *val, int64_t now, void *data);


void
creor_expire(ngx_creor_main_conf_t *mcf, creor_expiring_t *kind,
    ngx_log_t *log)
{
    size_t          n;
    int64_t         now;
    creor_store_t   anon, *st;

    switch (kind->where) {

    case CREOR_EXPIRE_COUNTERS:
        st = &mcf->counters;
        break;

    case CREOR_EXPIRE_ANON:

        /* the counters' environment, seen through the anonymous database */

        anon = mcf->counters;
        anon.dbi = mcf->counters_anon;
        st = &anon;
        break;

    default:
        st = &mcf->store;
    }

    now = kind->us ? creor_now_us() : creor_now_ms();

    if (creor_store_purge_txn(st, kind->prefix, kind->from, kind->batch, now,
                              creor_expire_drop, kind, &n)
        != CREOR_STORE_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0, "creor: %s purge failed",
                      kind->name);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "creor: purged %uz expired %s records", n, kind->name);
}


static int
creor_expire_drop(MDB_txn *txn, const MDB_val *key, const MDB_val *val,
    int64_t now, void *data)
{
    int64_t            expires;
    creor_expiring_t  *kind;

    kind = data;

    if (kind->expired) {
        return kind->expired(val, now);
    }

    if (val->mv_size != kind->size) {
        return 1;
    }

    ngx_memcpy(&expires, val->mv_data, sizeof(int64_t));

    return expires < now;
}
