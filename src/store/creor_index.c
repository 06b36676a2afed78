
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Indexes, kept in the transaction of the change they follow, so that
 * no request walks more of a collection than it sends.
 *
 * An index is a key prefix that ends with ':' ("rs:<org>:4:"); an item
 * is the prefix and an id, with an empty value.  Every index, and the
 * collections "a:<org>:" and "r:<org>:" themselves, has
 *
 *   "n:<index>"       the number of items (uint64), for totals;
 *   "nc:<index><id>"  a chunk: the number of items from this id up to
 *                     the next chunk (uint64), CREOR_INDEX_CHUNK to
 *                     2 * CREOR_INDEX_CHUNK of them, so a list skips to
 *                     a position by adding chunks, not by walking items.
 *
 * Plain C: the command line links this file too.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "creor_index.h"


#define CREOR_INDEX_CHUNK   512
#define CREOR_INDEX_BATCH   5000        /* records per rebuild step */


static int creor_index_chunk(creor_store_t *s, MDB_txn *txn, const char *ix,
    size_t ixlen, const char *id, size_t idlen, int delta);
static int creor_index_put_count(MDB_txn *txn, MDB_dbi dbi, MDB_cursor *cur,
    MDB_val *k, uint64_t n, unsigned flags);
static int creor_index_in(MDB_val *k, const char *prefix, size_t len);
static int creor_index_cmp(const void *a, size_t alen, MDB_val *b);
static int creor_index_drop_batch(MDB_cursor *cur, size_t *n);
static int creor_index_status(creor_store_t *s, MDB_txn *txn, char *ix,
    size_t size, const char *fmt, const char *a, const char *b,
    const char *id, int on);


/* puts (on) or deletes ix + id and counts it, if that changes anything */

int
creor_index_set(creor_store_t *s, MDB_txn *txn, const char *ix, size_t ixlen,
    const char *id, size_t idlen, int on)
{
    int      rc;
    char     key[CREOR_STORE_KEY_MAX];
    MDB_val  k, v;

    if (ixlen + idlen > sizeof(key)) {
        return CREOR_STORE_ERROR;
    }

    memcpy(key, ix, ixlen);
    memcpy(key + ixlen, id, idlen);

    k.mv_data = key;
    k.mv_size = ixlen + idlen;
    v.mv_data = "";
    v.mv_size = 0;

    rc = on ? mdb_put(txn, s->dbi, &k, &v, MDB_NOOVERWRITE)
            : mdb_del(txn, s->dbi, &k, NULL);

    if (rc == MDB_KEYEXIST || rc == MDB_NOTFOUND) {
        return CREOR_STORE_OK;
    }

    if (rc != 0) {
        return creor_store_rc(rc);
    }

    return creor_index_count(s, txn, ix, ixlen, id, idlen, on ? 1 : -1);
}


/*
 * Counts an item that was just put (delta 1) or deleted (-1) in the
 * index or collection ix: its total and its chunk.
 */

int
creor_index_count(creor_store_t *s, MDB_txn *txn, const char *ix,
    size_t ixlen, const char *id, size_t idlen, int delta)
{
    int       rc;
    char      key[CREOR_STORE_KEY_MAX];
    MDB_val   k, v;
    uint64_t  n;

    if (2 + ixlen > sizeof(key)) {
        return CREOR_STORE_ERROR;
    }

    memcpy(key, "n:", 2);
    memcpy(key + 2, ix, ixlen);

    k.mv_data = key;
    k.mv_size = 2 + ixlen;

    rc = mdb_get(txn, s->dbi, &k, &v);

    n = 0;

    if (rc == 0 && v.mv_size == sizeof(uint64_t)) {
        memcpy(&n, v.mv_data, sizeof(uint64_t));

    } else if (rc != 0 && rc != MDB_NOTFOUND) {
        return creor_store_rc(rc);
    }

    if (delta < 0 && n == 0) {
        return CREOR_STORE_OK;          /* never counted: nothing to undo */
    }

    n += delta;

    rc = creor_index_put_count(txn, s->dbi, NULL, &k, n, 0);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    return creor_index_chunk(s, txn, ix, ixlen, id, idlen, delta);
}


/*
 * The chunk that holds id: the one that starts at the greatest id not
 * above it.  A chunk grows to 2 * CREOR_INDEX_CHUNK and is then split at
 * its CREOR_INDEX_CHUNK-th item (a bounded walk); an empty one goes, a
 * small one joins the one before it.
 */

static int
creor_index_chunk(creor_store_t *s, MDB_txn *txn, const char *ix,
    size_t ixlen, const char *id, size_t idlen, int delta)
{
    int          rc, i;
    char         key[CREOR_STORE_KEY_MAX], own[CREOR_STORE_KEY_MAX];
    size_t       plen, ownlen;
    MDB_val      k, v, ik;
    uint64_t     m, mp;
    MDB_cursor  *cur, *icur;

    plen = 3 + ixlen;

    if (plen + idlen > sizeof(key)) {
        return CREOR_STORE_ERROR;
    }

    memcpy(key, "nc:", 3);
    memcpy(key + 3, ix, ixlen);
    memcpy(key + plen, id, idlen);

    if (mdb_cursor_open(txn, s->dbi, &cur) != 0) {
        return CREOR_STORE_ERROR;
    }

    k.mv_data = key;
    k.mv_size = plen + idlen;

    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);

    if (rc == 0 && k.mv_size == plen + idlen
        && memcmp(k.mv_data, key, k.mv_size) == 0)
    {
        /* the chunk starts at id */

    } else if (rc == 0 || rc == MDB_NOTFOUND) {
        rc = mdb_cursor_get(cur, &k, &v, rc == 0 ? MDB_PREV : MDB_LAST);

        if (rc == MDB_NOTFOUND) {
            rc = 0;
            k.mv_size = 0;
        }
    }

    if (rc != 0) {
        mdb_cursor_close(cur);
        return creor_store_rc(rc);
    }

    if (!creor_index_in(&k, key, plen)) {

        if (delta < 0) {
            mdb_cursor_close(cur);
            return CREOR_STORE_OK;
        }

        /* before every chunk: the first chunk, if any, starts here now */

        m = 1;
        k.mv_data = key;
        k.mv_size = plen;

        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);

        if (rc == 0 && creor_index_in(&k, key, plen)
            && v.mv_size == sizeof(uint64_t))
        {
            memcpy(&mp, v.mv_data, sizeof(uint64_t));
            m += mp;
            rc = mdb_cursor_del(cur, 0);

        } else if (rc == MDB_NOTFOUND || rc == 0) {
            rc = 0;
        }

        mdb_cursor_close(cur);

        if (rc != 0) {
            return creor_store_rc(rc);
        }

        memcpy(own, key, plen + idlen);
        ownlen = plen + idlen;

        goto grown;
    }

    if (v.mv_size != sizeof(uint64_t) || k.mv_size > sizeof(own)) {
        mdb_cursor_close(cur);
        return CREOR_STORE_ERROR;
    }

    memcpy(&m, v.mv_data, sizeof(uint64_t));
    memcpy(own, k.mv_data, k.mv_size);
    ownlen = k.mv_size;

    if (delta < 0 && m == 0) {
        mdb_cursor_close(cur);
        return CREOR_STORE_OK;
    }

    m += delta;

    if (m == 0) {
        rc = mdb_cursor_del(cur, 0);
        mdb_cursor_close(cur);
        return creor_store_rc(rc);
    }

    if (delta < 0 && m < CREOR_INDEX_CHUNK / 4) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);

        if (rc == 0 && creor_index_in(&k, key, plen)
            && v.mv_size == sizeof(uint64_t))
        {
            memcpy(&mp, v.mv_data, sizeof(uint64_t));

            if (mp + m <= 2 * CREOR_INDEX_CHUNK) {
                rc = creor_index_put_count(txn, s->dbi, cur, &k, mp + m,
                                           MDB_CURRENT);
                mdb_cursor_close(cur);

                if (rc != CREOR_STORE_OK) {
                    return rc;
                }

                k.mv_data = own;
                k.mv_size = ownlen;

                return creor_store_rc(mdb_del(txn, s->dbi, &k, NULL));
            }
        }

        if (rc != 0 && rc != MDB_NOTFOUND) {
            mdb_cursor_close(cur);
            return creor_store_rc(rc);
        }
    }

    mdb_cursor_close(cur);

grown:

    if (m > 2 * CREOR_INDEX_CHUNK) {

        /* split: the CREOR_INDEX_CHUNK-th item starts a new chunk */

        if (mdb_cursor_open(txn, s->dbi, &icur) != 0) {
            return CREOR_STORE_ERROR;
        }

        ik.mv_data = own + 3;
        ik.mv_size = ownlen - 3;

        rc = mdb_cursor_get(icur, &ik, &v, MDB_SET_RANGE);

        for (i = 0; rc == 0 && i < CREOR_INDEX_CHUNK; i++) {
            rc = mdb_cursor_get(icur, &ik, &v, MDB_NEXT);
        }

        if (rc == 0 && creor_index_in(&ik, ix, ixlen)
            && 3 + ik.mv_size <= sizeof(key))
        {
            memcpy(key + 3, ik.mv_data, ik.mv_size);
            k.mv_data = key;
            k.mv_size = 3 + ik.mv_size;

            rc = creor_index_put_count(txn, s->dbi, NULL, &k,
                                       m - CREOR_INDEX_CHUNK, 0);
            if (rc != CREOR_STORE_OK) {
                mdb_cursor_close(icur);
                return rc;
            }

            m = CREOR_INDEX_CHUNK;
        }

        mdb_cursor_close(icur);
    }

    k.mv_data = own;
    k.mv_size = ownlen;

    return creor_index_put_count(txn, s->dbi, NULL, &k, m, 0);
}


static int
creor_index_put_count(MDB_txn *txn, MDB_dbi dbi, MDB_cursor *cur, MDB_val *k,
    uint64_t n, unsigned flags)
{
    MDB_val  v;

    v.mv_data = &n;
    v.mv_size = sizeof(uint64_t);

    return creor_store_rc(cur ? mdb_cursor_put(cur, k, &v, flags)
                              : mdb_put(txn, dbi, k, &v, flags));
}


/* LMDB's order: bytes, then the shorter first */

static int
creor_index_cmp(const void *a, size_t alen, MDB_val *b)
{
    int  rc;

    rc = memcmp(a, b->mv_data, alen < b->mv_size ? alen : b->mv_size);

    if (rc) {
        return rc;
    }

    return (alen > b->mv_size) - (alen < b->mv_size);
}


static int
creor_index_in(MDB_val *k, const char *prefix, size_t len)
{
    return k->mv_size > len && memcmp(k->mv_data, prefix, len) == 0;
}


int
creor_index_total(creor_store_t *s, MDB_txn *txn, const char *ix,
    size_t ixlen, uint64_t *n)
{
    int      rc;
    char     key[CREOR_STORE_KEY_MAX];
    MDB_val  k, v;

    *n = 0;

    if (2 + ixlen > sizeof(key)) {
        return CREOR_STORE_ERROR;
    }

    memcpy(key, "n:", 2);
    memcpy(key + 2, ix, ixlen);

    k.mv_data = key;
    k.mv_size = 2 + ixlen;

    rc = mdb_get(txn, s->dbi, &k, &v);

    if (rc == MDB_NOTFOUND) {
        return CREOR_STORE_OK;
    }

    if (rc != 0 || v.mv_size != sizeof(uint64_t)) {
        return CREOR_STORE_ERROR;
    }

    memcpy(n, v.mv_data, sizeof(uint64_t));

    return CREOR_STORE_OK;
}


/*
 * Puts cur on the item skip places from the start of ix (from its end
 * with desc): chunks are added from that end until the one that holds
 * it, then at most 2 * CREOR_INDEX_CHUNK items are stepped over.
 */

int
creor_index_seek(creor_store_t *s, MDB_txn *txn, MDB_cursor *cur,
    const char *ix, size_t ixlen, uint64_t skip, int desc, MDB_val *key,
    MDB_val *val)
{
    int          rc;
    char         ck[CREOR_STORE_KEY_MAX];
    size_t       plen;
    MDB_val      k, v;
    uint64_t     m, acc, step;
    MDB_cursor  *ccur;

    plen = 3 + ixlen;

    if (plen > sizeof(ck)) {
        return CREOR_STORE_ERROR;
    }

    memcpy(ck, "nc:", 3);
    memcpy(ck + 3, ix, ixlen);

    if (mdb_cursor_open(txn, s->dbi, &ccur) != 0) {
        return CREOR_STORE_ERROR;
    }

    k.mv_data = ck;
    k.mv_size = plen;

    if (desc) {
        ck[plen - 1]++;                 /* past the chunks of ix */
        rc = mdb_cursor_get(ccur, &k, &v, MDB_SET_RANGE);
        ck[plen - 1]--;
        rc = mdb_cursor_get(ccur, &k, &v, rc == 0 ? MDB_PREV : MDB_LAST);

    } else {
        rc = mdb_cursor_get(ccur, &k, &v, MDB_SET_RANGE);
    }

    m = 0;
    acc = 0;

    for ( /* void */ ;
         rc == 0 && creor_index_in(&k, ck, plen)
         && v.mv_size == sizeof(uint64_t);
         rc = mdb_cursor_get(ccur, &k, &v, desc ? MDB_PREV : MDB_NEXT))
    {
        memcpy(&m, v.mv_data, sizeof(uint64_t));

        if (acc + m > skip) {
            break;
        }

        acc += m;
    }

    if (rc != 0 || !creor_index_in(&k, ck, plen)
        || v.mv_size != sizeof(uint64_t))
    {
        mdb_cursor_close(ccur);
        return (rc == 0 || rc == MDB_NOTFOUND) ? CREOR_STORE_NOTFOUND
                                               : CREOR_STORE_ERROR;
    }

    /* the item's place in its chunk, counted from the chunk's start */

    step = desc ? m - 1 - (skip - acc) : skip - acc;

    key->mv_data = (char *) k.mv_data + 3;
    key->mv_size = k.mv_size - 3;

    rc = mdb_cursor_get(cur, key, val, MDB_SET_RANGE);

    mdb_cursor_close(ccur);

    while (rc == 0 && step--) {
        rc = mdb_cursor_get(cur, key, val, MDB_NEXT);
    }

    if (rc == 0 && !creor_index_in(key, ix, ixlen)) {
        rc = MDB_NOTFOUND;
    }

    return creor_store_rc(rc);
}


/* "<fmt with a and b><id>", put or deleted */

static int
creor_index_status(creor_store_t *s, MDB_txn *txn, char *ix, size_t size,
    const char *fmt, const char *a, const char *b, const char *id, int on)
{
    int  n;

    n = snprintf(ix, size, fmt, a, b);

    if (n < 0 || (size_t) n >= size) {
        return CREOR_STORE_ERROR;
    }

    return creor_index_set(s, txn, ix, n, id, strlen(id), on);
}


/*
 * A run's indexes: by status in its organization, its project and its
 * agent, and all of them by project and by agent.  old_status 0: a new
 * run, which the caller puts (ids grow, so it is the collection's last).
 */

int
creor_index_run(creor_store_t *s, MDB_txn *txn, const creor_run_hdr_t *hdr,
    const char *id, uint32_t old_status)
{
    int           rc, pass, on;
    char          ix[CREOR_STORE_KEY_MAX], st[16];
    const char   *org;
    uint32_t      status;

    org = hdr->org;

    if (old_status == 0) {
        rc = snprintf(ix, sizeof(ix), "r:%s:", org);

        rc = creor_index_count(s, txn, ix, rc, id, strlen(id), 1);

        if (rc == CREOR_STORE_OK) {
            rc = creor_index_status(s, txn, ix, sizeof(ix), "ra:%s:%s:", org,
                                    hdr->agent, id, 1);
        }

        if (rc == CREOR_STORE_OK) {
            rc = creor_index_status(s, txn, ix, sizeof(ix), "rp:%s:%s:", org,
                                    hdr->project, id, 1);
        }

        if (rc != CREOR_STORE_OK) {
            return rc;
        }

    } else if (old_status == hdr->status) {
        return CREOR_STORE_OK;
    }

    /* the old status's entries go, the new one's come */

    for (pass = 0; pass < 2; pass++) {
        status = pass ? hdr->status : old_status;
        on = pass;

        if (status == 0) {
            continue;
        }

        snprintf(st, sizeof(st), "%u", status);

        rc = creor_index_status(s, txn, ix, sizeof(ix), "rs:%s:%s:", org, st,
                                id, on);

        if (rc == CREOR_STORE_OK) {
            rc = snprintf(ix, sizeof(ix), "ras:%s:%s:%s:", org, hdr->agent,
                          st);
            rc = creor_index_set(s, txn, ix, rc, id, strlen(id), on);
        }

        if (rc == CREOR_STORE_OK) {
            rc = snprintf(ix, sizeof(ix), "rps:%s:%s:%s:", org, hdr->project,
                          st);
            rc = creor_index_set(s, txn, ix, rc, id, strlen(id), on);
        }

        if (rc != CREOR_STORE_OK) {
            return rc;
        }
    }

    return CREOR_STORE_OK;
}


/*
 * An agent's indexes: by status in its organization and its project, and
 * by project.  old_status NULL: a new agent, which the caller has put;
 * new_status NULL: deleted, which the caller does.
 */

int
creor_index_agent(creor_store_t *s, MDB_txn *txn, const char *org,
    const char *project, const char *id, const char *old_status,
    const char *new_status)
{
    int          rc, pass, n;
    char         ix[CREOR_STORE_KEY_MAX];
    const char  *status;

    if (old_status && new_status && strcmp(old_status, new_status) == 0) {
        return CREOR_STORE_OK;
    }

    if (old_status == NULL || new_status == NULL) {
        n = snprintf(ix, sizeof(ix), "a:%s:", org);

        rc = creor_index_count(s, txn, ix, n, id, strlen(id),
                               old_status ? -1 : 1);

        if (rc == CREOR_STORE_OK) {
            rc = creor_index_status(s, txn, ix, sizeof(ix), "ap:%s:%s:", org,
                                    project, id, old_status == NULL);
        }

        if (rc != CREOR_STORE_OK) {
            return rc;
        }
    }

    for (pass = 0; pass < 2; pass++) {
        status = pass ? new_status : old_status;

        if (status == NULL) {
            continue;
        }

        rc = creor_index_status(s, txn, ix, sizeof(ix), "as:%s:%s:", org,
                                status, id, pass);

        if (rc == CREOR_STORE_OK) {
            n = snprintf(ix, sizeof(ix), "aps:%s:%s:%s:", org, project,
                         status);
            rc = creor_index_set(s, txn, ix, n, id, strlen(id), pass);
        }

        if (rc != CREOR_STORE_OK) {
            return rc;
        }
    }

    return CREOR_STORE_OK;
}


/*
 * A store written before the indexes (no "m:index"), or one to index
 * anew (rebuild): one step drops or builds at most CREOR_INDEX_BATCH
 * entries in one write transaction and records where it stopped in
 * "m:index_from", so steps of any process continue one another and a
 * killed one loses nothing.  Returns CREOR_STORE_OK when done,
 * CREOR_STORE_EXISTS when steps remain.
 */

static const char  *creor_index_prefixes[] = {
    "n:", "nc:", "rs:", "ra:", "ras:", "rp:", "rps:", "as:", "ap:", "aps:",
    NULL
};


/* deletes up to CREOR_INDEX_BATCH index entries, counted in n */

static int
creor_index_drop_batch(MDB_cursor *cur, size_t *n)
{
    int           rc;
    MDB_val       k, v;
    const char  **p;

    for (p = creor_index_prefixes; *p && *n < CREOR_INDEX_BATCH; p++) {
        k.mv_data = (void *) *p;
        k.mv_size = strlen(*p);

        for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
             rc == 0 && *n < CREOR_INDEX_BATCH
             && creor_index_in(&k, *p, strlen(*p));
             rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT))
        {
            rc = mdb_cursor_del(cur, 0);
            if (rc != 0) {
                break;
            }

            (*n)++;
        }

        if (rc != 0 && rc != MDB_NOTFOUND) {
            return rc;
        }
    }

    return 0;
}


/*
 * "creor index check": every counter against its index, every chunk
 * against the items from its id to the next chunk, and its size.  A walk
 * of everything, for tests and for doubt; errors are counted and printed.
 */

int
creor_index_check(creor_store_t *s, size_t *indexes, size_t *errors)
{
    int          rc, crc;
    char         ix[CREOR_STORE_KEY_MAX], ck[CREOR_STORE_KEY_MAX];
    size_t       ixlen;
    MDB_val      k, v, ik, iv, kk, cv;
    MDB_txn     *txn;
    uint64_t     total, items, m, in, sum;
    MDB_cursor  *ncur, *icur, *ccur;

    *indexes = 0;
    *errors = 0;

    txn = creor_store_read(s);
    if (txn == NULL) {
        return CREOR_STORE_ERROR;
    }

    if (mdb_cursor_open(txn, s->dbi, &ncur) != 0
        || mdb_cursor_open(txn, s->dbi, &icur) != 0
        || mdb_cursor_open(txn, s->dbi, &ccur) != 0)
    {
        creor_store_read_done(s);
        return CREOR_STORE_ERROR;
    }

    k.mv_data = "n:";
    k.mv_size = 2;

    for (rc = mdb_cursor_get(ncur, &k, &v, MDB_SET_RANGE);
         rc == 0 && creor_index_in(&k, "n:", 2);
         rc = mdb_cursor_get(ncur, &k, &v, MDB_NEXT))
    {
        ixlen = k.mv_size - 2;

        if (ixlen + 3 >= sizeof(ix) || v.mv_size != sizeof(uint64_t)) {
            (*errors)++;
            continue;
        }

        memcpy(ix, (char *) k.mv_data + 2, ixlen);
        memcpy(&total, v.mv_data, sizeof(uint64_t));
        memcpy(ck, "nc:", 3);
        memcpy(ck + 3, ix, ixlen);
        (*indexes)++;

        /* the chunks in order, the items counted between them */

        kk.mv_data = ck;
        kk.mv_size = 3 + ixlen;
        crc = mdb_cursor_get(ccur, &kk, &cv, MDB_SET_RANGE);

        ik.mv_data = ix;
        ik.mv_size = ixlen;

        items = 0;
        sum = 0;
        m = 0;
        in = 0;

        for (rc = mdb_cursor_get(icur, &ik, &iv, MDB_SET_RANGE);
             rc == 0 && creor_index_in(&ik, ix, ixlen);
             rc = mdb_cursor_get(icur, &ik, &iv, MDB_NEXT))
        {
            /* chunks that start at or before this item close the last */

            while (crc == 0 && creor_index_in(&kk, ck, 3 + ixlen)
                   && creor_index_cmp((char *) kk.mv_data + 3,
                                      kk.mv_size - 3, &ik) <= 0)
            {
                if (items && in != m) {
                    (*errors)++;
                    fprintf(stderr, "creor: chunk of %.*s holds %llu "
                            "items, says %llu\n", (int) ixlen, ix,
                            (unsigned long long) in, (unsigned long long) m);
                }

                m = 0;

                if (cv.mv_size == sizeof(uint64_t)) {
                    memcpy(&m, cv.mv_data, sizeof(uint64_t));
                }

                if (m == 0 || m > 2 * CREOR_INDEX_CHUNK) {
                    (*errors)++;
                    fprintf(stderr, "creor: chunk of %.*s says %llu\n",
                            (int) ixlen, ix, (unsigned long long) m);
                }

                sum += m;
                in = 0;
                crc = mdb_cursor_get(ccur, &kk, &cv, MDB_NEXT);
            }

            if (sum == 0 && items == 0) {
                (*errors)++;
                fprintf(stderr, "creor: an item of %.*s before its chunks\n",
                        (int) ixlen, ix);
            }

            items++;
            in++;
        }

        if (items && in != m) {
            (*errors)++;
            fprintf(stderr, "creor: last chunk of %.*s holds %llu items, "
                    "says %llu\n", (int) ixlen, ix, (unsigned long long) in,
                    (unsigned long long) m);
        }

        if (crc == 0 && creor_index_in(&kk, ck, 3 + ixlen)) {
            (*errors)++;
            fprintf(stderr, "creor: chunks of %.*s past its items\n",
                    (int) ixlen, ix);
        }

        if (items != total || (items && sum != total)) {
            (*errors)++;
            fprintf(stderr, "creor: %.*s holds %llu items, counts %llu, "
                    "its chunks %llu\n", (int) ixlen, ix,
                    (unsigned long long) items, (unsigned long long) total,
                    (unsigned long long) sum);
        }
    }

    mdb_cursor_close(ccur);
    mdb_cursor_close(icur);
    mdb_cursor_close(ncur);
    creor_store_read_done(s);

    return (rc == 0 || rc == MDB_NOTFOUND) ? CREOR_STORE_OK
                                           : CREOR_STORE_ERROR;
}


/*
 * Makes the store look as one written before the indexes: "creor index
 * drop", for tests of the upgrade.
 */

int
creor_index_drop(creor_store_t *s)
{
    int          rc;
    size_t       n;
    MDB_txn     *txn;
    MDB_cursor  *cur;

    do {
        rc = creor_store_write(s, &txn);
        if (rc != CREOR_STORE_OK) {
            return rc;
        }

        (void) creor_store_del(s, txn, "m:index");
        (void) creor_store_del(s, txn, "m:index_from");

        if (mdb_cursor_open(txn, s->dbi, &cur) != 0) {
            creor_store_abort(txn);
            return CREOR_STORE_ERROR;
        }

        n = 0;
        rc = creor_index_drop_batch(cur, &n);
        mdb_cursor_close(cur);

        if (rc != 0) {
            creor_store_abort(txn);
            return creor_store_rc(rc);
        }

        rc = creor_store_commit(txn);
        if (rc != CREOR_STORE_OK) {
            return rc;
        }

    } while (n == CREOR_INDEX_BATCH);

    return CREOR_STORE_OK;
}


int
creor_index_upgrade(creor_store_t *s, int rebuild, size_t *done)
{
    int                 rc;
    char                from[CREOR_STORE_KEY_MAX], id[CREOR_ID_MAX],
                        org[CREOR_ID_MAX], *colon;
    size_t              n, flen;
    MDB_val             k, v;
    MDB_txn            *txn;
    MDB_cursor         *cur;
    creor_run_hdr_t     rh;
    creor_agent_hdr_t   ah;

    rc = creor_store_write(s, &txn);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    if (rebuild) {
        (void) creor_store_del(s, txn, "m:index");
        (void) creor_store_del(s, txn, "m:index_from");
    }

    rc = creor_store_get(s, txn, "m:index", &v);

    if (rc == CREOR_STORE_OK && v.mv_size == sizeof(CREOR_INDEX_VERSION) - 1
        && memcmp(v.mv_data, CREOR_INDEX_VERSION, v.mv_size) == 0)
    {
        creor_store_abort(txn);
        return CREOR_STORE_OK;
    }

    /* where the last step stopped: none or "d" (drop), "a:..." or "r:..." */

    rc = creor_store_get(s, txn, "m:index_from", &v);

    flen = 0;

    if (rc == CREOR_STORE_OK && v.mv_size < sizeof(from)) {
        memcpy(from, v.mv_data, v.mv_size);
        flen = v.mv_size;
    }

    if (mdb_cursor_open(txn, s->dbi, &cur) != 0) {
        creor_store_abort(txn);
        return CREOR_STORE_ERROR;
    }

    n = 0;
    rc = 0;

    if (flen == 0 || (flen == 1 && from[0] == 'd')) {

        /* what a rebuild or a killed step left goes first */

        rc = creor_index_drop_batch(cur, &n);
        if (rc != 0) {
            goto failed;
        }

        if (n < CREOR_INDEX_BATCH) {
            memcpy(from, "a:", 2);
            flen = 2;

        } else {
            from[0] = 'd';
            flen = 1;
        }

        n = 0;                          /* dropped entries are no records */

    } else {
        k.mv_data = from;
        k.mv_size = flen;

        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);

        if (rc == 0 && k.mv_size == flen && memcmp(k.mv_data, from, flen) == 0)
        {
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }

        for ( /* void */ ;
             rc == 0 && n < CREOR_INDEX_BATCH && k.mv_size < sizeof(from)
             && creor_index_in(&k, from, 2);
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        {
            memcpy(from + 2, (char *) k.mv_data + 2, k.mv_size - 2);
            flen = k.mv_size;
            from[flen] = '\0';
            n++;

            colon = strchr(from + 2, ':');

            if (colon == NULL || (size_t) (colon - from - 2) >= sizeof(org)
                || strlen(colon + 1) >= sizeof(id))
            {
                continue;
            }

            memcpy(org, from + 2, colon - from - 2);
            org[colon - from - 2] = '\0';
            strcpy(id, colon + 1);

            /* the writes below move the cursor's page: it is found again */

            if (from[0] == 'a') {
                if (v.mv_size <= sizeof(creor_agent_hdr_t)) {
                    continue;
                }

                memcpy(&ah, v.mv_data, sizeof(creor_agent_hdr_t));
                ah.project[CREOR_ID_MAX - 1] = '\0';
                ah.status[CREOR_AGENT_STATUS_MAX - 1] = '\0';

                rc = creor_index_agent(s, txn, org, ah.project, id, NULL,
                                       ah.status);

            } else {
                if (v.mv_size <= sizeof(creor_run_hdr_t)) {
                    continue;
                }

                memcpy(&rh, v.mv_data, sizeof(creor_run_hdr_t));
                memcpy(rh.org, org, sizeof(org));
                rh.project[CREOR_ID_MAX - 1] = '\0';
                rh.agent[CREOR_ID_MAX - 1] = '\0';

                rc = creor_index_run(s, txn, &rh, id, 0);
            }

            if (rc != CREOR_STORE_OK) {
                mdb_cursor_close(cur);
                creor_store_abort(txn);
                return rc;
            }

            k.mv_data = from;
            k.mv_size = flen;

            rc = mdb_cursor_get(cur, &k, &v, MDB_SET);
            if (rc != 0) {
                goto failed;
            }
        }

        if (rc != 0 && rc != MDB_NOTFOUND) {
            goto failed;
        }

        if (n < CREOR_INDEX_BATCH) {

            /* this collection is done: the next, or the end */

            if (from[0] == 'a') {
                memcpy(from, "r:", 2);
                flen = 2;

            } else {
                flen = 0;
            }
        }
    }

    mdb_cursor_close(cur);

    if (flen) {
        rc = creor_store_put(s, txn, "m:index_from", from, flen, 0);

    } else {
        (void) creor_store_del(s, txn, "m:index_from");
        rc = creor_store_put(s, txn, "m:index", CREOR_INDEX_VERSION,
                             sizeof(CREOR_INDEX_VERSION) - 1, 0);
    }

    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return rc;
    }

    rc = creor_store_commit(txn);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    if (done) {
        *done += n;
    }

    return flen ? CREOR_STORE_EXISTS : CREOR_STORE_OK;

failed:

    mdb_cursor_close(cur);
    creor_store_abort(txn);

    return creor_store_rc(rc);
}
