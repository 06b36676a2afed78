
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The rate limits' counters in their own environment, which is never
 * synced (creor_store_open(), CREOR_STORE_EPHEMERAL): a counter is an
 * int64_t by key.  The database of client addresses' counters is a named
 * one, so that a flood of them is bounded and dropped apart.
 */


#include <string.h>

#include "creor_counters.h"


/* the named database, made if it is not there */

int
creor_counters_open(creor_store_t *s, const char *name, MDB_dbi *dbi)
{
    int       rc;
    MDB_txn  *txn;

    rc = creor_store_write(s, &txn);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    rc = creor_store_rc(mdb_dbi_open(txn, name, MDB_CREATE, dbi));
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return rc;
    }

    return creor_store_commit(txn);
}


/* every counter of the database goes, the database stays */

int
creor_counters_drop(creor_store_t *s, MDB_dbi dbi)
{
    int       rc;
    MDB_txn  *txn;

    rc = creor_store_write(s, &txn);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    rc = creor_store_rc(mdb_drop(txn, dbi, 0));
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return rc;
    }

    return creor_store_commit(txn);
}


int
creor_counters_entries(MDB_txn *txn, MDB_dbi dbi, size_t *n)
{
    int       rc;
    MDB_stat  st;

    rc = mdb_stat(txn, dbi, &st);
    if (rc != 0) {
        return creor_store_rc(rc);
    }

    *n = st.ms_entries;

    return CREOR_STORE_OK;
}


/* *tat is 0 for a counter not there, or not a counter */

int
creor_counter_get(MDB_txn *txn, MDB_dbi dbi, const char *key, size_t len,
    int64_t *tat)
{
    int      rc;
    MDB_val  k, v;

    k.mv_data = (void *) key;
    k.mv_size = len;

    *tat = 0;

    rc = creor_store_rc(mdb_get(txn, dbi, &k, &v));

    if (rc == CREOR_STORE_OK && v.mv_size == sizeof(int64_t)) {
        memcpy(tat, v.mv_data, sizeof(int64_t));
    }

    return rc;
}


int
creor_counter_put(MDB_txn *txn, MDB_dbi dbi, const char *key, size_t len,
    int64_t tat)
{
    MDB_val  k, v;

    k.mv_data = (void *) key;
    k.mv_size = len;
    v.mv_data = &tat;
    v.mv_size = sizeof(int64_t);

    return creor_store_rc(mdb_put(txn, dbi, &k, &v, 0));
}


int
creor_counter_del(MDB_txn *txn, MDB_dbi dbi, const char *key, size_t len)
{
    MDB_val  k;

    k.mv_data = (void *) key;
    k.mv_size = len;

    return creor_store_rc(mdb_del(txn, dbi, &k, NULL));
}
