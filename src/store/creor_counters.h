
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The rate limits' counters (creor_counters.c): in the counters
 * environment, a theoretical arrival time by key, in its main database
 * (credentials') or a named one (client addresses').
 */


#ifndef _CREOR_COUNTERS_H_INCLUDED_
#define _CREOR_COUNTERS_H_INCLUDED_


#include "creor_store.h"


int creor_counters_open(creor_store_t *s, const char *name, MDB_dbi *dbi);
int creor_counters_drop(creor_store_t *s, MDB_dbi dbi);
int creor_counters_entries(MDB_txn *txn, MDB_dbi dbi, size_t *n);
int creor_counter_get(MDB_txn *txn, MDB_dbi dbi, const char *key,
    size_t len, int64_t *tat);
int creor_counter_put(MDB_txn *txn, MDB_dbi dbi, const char *key,
    size_t len, int64_t tat);
int creor_counter_del(MDB_txn *txn, MDB_dbi dbi, const char *key,
    size_t len);


#endif /* _CREOR_COUNTERS_H_INCLUDED_ */
