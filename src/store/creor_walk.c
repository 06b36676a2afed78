
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The walk of a list page (SPEC 5) over the store: creor_walk.h.  Plain
 * C, like the rest of the store.
 */


#include <string.h>

#include "creor_index.h"
#include "creor_walk.h"


int
creor_walk_open(creor_store_t *s, MDB_txn *txn, creor_walk_t *w,
    const char *prefix, size_t plen, const char *primary, size_t primary_len,
    int desc)
{
    memset(w, 0, sizeof(creor_walk_t));

    if (plen == 0 || plen > CREOR_STORE_KEY_MAX
        || primary_len > CREOR_STORE_KEY_MAX)
    {
        return CREOR_STORE_ERROR;
    }

    if (mdb_cursor_open(txn, s->dbi, &w->cur) != 0) {
        w->cur = NULL;
        return CREOR_STORE_ERROR;
    }

    w->store = s;
    w->txn = txn;
    w->prefix = prefix;
    w->plen = plen;
    w->primary = primary;
    w->primary_len = primary_len;
    w->desc = desc;
    w->rc = MDB_NOTFOUND;

    return CREOR_STORE_OK;
}


/*
 * Puts the walk on its first entry: the first of the collection (the
 * last with desc), or, given a key, the next one past it in the walk's
 * order.
 */

int
creor_walk_after(creor_walk_t *w, const char *after, size_t len)
{
    int      rc;
    MDB_val  k, v;

    if (len) {
        k.mv_data = (void *) after;
        k.mv_size = len;

    } else if (w->desc) {

        /* the first key past the collection: its last byte + 1 */

        memcpy(w->buf, w->prefix, w->plen);
        w->buf[w->plen - 1]++;

        k.mv_data = w->buf;
        k.mv_size = w->plen;

    } else {
        k.mv_data = (void *) w->prefix;
        k.mv_size = w->plen;
    }

    rc = mdb_cursor_get(w->cur, &k, &v, MDB_SET_RANGE);

    if (w->desc) {
        rc = (rc == MDB_NOTFOUND) ? mdb_cursor_get(w->cur, &k, &v, MDB_LAST)
                                  : mdb_cursor_get(w->cur, &k, &v, MDB_PREV);

    } else if (rc == 0 && len && k.mv_size == len
               && memcmp(k.mv_data, after, len) == 0)
    {
        rc = mdb_cursor_get(w->cur, &k, &v, MDB_NEXT);
    }

    w->rc = rc;
    w->key = k;
    w->val = v;

    return CREOR_STORE_OK;
}


/*
 * Puts the walk on the entry skip places from its start in a counted
 * index (creor_index_seek()): past the end, the walk is empty.
 */

int
creor_walk_skip(creor_walk_t *w, uint64_t skip)
{
    int  rc;

    rc = creor_index_seek(w->store, w->txn, w->cur, w->prefix, w->plen, skip,
                          w->desc, &w->key, &w->val);

    if (rc == CREOR_STORE_NOTFOUND) {
        w->rc = MDB_NOTFOUND;
        return CREOR_STORE_OK;
    }

    w->rc = 0;

    return rc;
}


/*
 * 1: an entry in key and val, its record in rkey and rval; 0: the walk
 * is over; -1: it failed.  An index entry whose record is gone is passed
 * over.
 */

int
creor_walk_next(creor_walk_t *w)
{
    size_t  rest;

    for ( ;; ) {

        if (w->started) {
            w->rc = mdb_cursor_get(w->cur, &w->key, &w->val,
                                   w->desc ? MDB_PREV : MDB_NEXT);
        }

        w->started = 1;

        if (w->rc == MDB_NOTFOUND) {
            return 0;
        }

        if (w->rc != 0) {
            return -1;
        }

        if (w->key.mv_size <= w->plen
            || memcmp(w->key.mv_data, w->prefix, w->plen) != 0)
        {
            return 0;
        }

        w->rkey = w->key;
        w->rval = w->val;

        if (w->primary_len == 0) {
            return 1;
        }

        /* an index entry: the item is the record of its id */

        rest = w->key.mv_size - w->plen;

        if (rest > CREOR_STORE_KEY_MAX) {
            continue;
        }

        memcpy(w->buf, w->primary, w->primary_len);
        memcpy(w->buf + w->primary_len, (char *) w->key.mv_data + w->plen,
               rest);

        w->rkey.mv_data = w->buf;
        w->rkey.mv_size = w->primary_len + rest;

        if (mdb_get(w->txn, w->store->dbi, &w->rkey, &w->rval) == 0) {
            return 1;
        }
    }
}


void
creor_walk_close(creor_walk_t *w)
{
    if (w->cur) {
        mdb_cursor_close(w->cur);
        w->cur = NULL;
    }
}
