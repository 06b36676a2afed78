
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Indexes of runs and agents, their counters and the chunk counts that
 * let a list skip to a position.  Plain C: the command line links this
 * file too (bulk loads, rebuilds).  docs/architecture.md lists the keys.
 */


#ifndef _CREOR_INDEX_H_INCLUDED_
#define _CREOR_INDEX_H_INCLUDED_


#include "creor_store.h"
#include "creor_records.h"


#define CREOR_INDEX_VERSION       "1"


int creor_index_set(creor_store_t *s, MDB_txn *txn, const char *ix,
    size_t ixlen, const char *id, size_t idlen, int on);
int creor_index_count(creor_store_t *s, MDB_txn *txn, const char *ix,
    size_t ixlen, const char *id, size_t idlen, int delta);
int creor_index_total(creor_store_t *s, MDB_txn *txn, const char *ix,
    size_t ixlen, uint64_t *n);
int creor_index_seek(creor_store_t *s, MDB_txn *txn, MDB_cursor *cur,
    const char *ix, size_t ixlen, uint64_t skip, int desc, MDB_val *key,
    MDB_val *val);
int creor_index_run(creor_store_t *s, MDB_txn *txn,
    const creor_run_hdr_t *hdr, const char *id, uint32_t old_status);
int creor_index_agent(creor_store_t *s, MDB_txn *txn, const char *org,
    const char *project, const char *id, const char *old_status,
    const char *new_status);
int creor_index_upgrade(creor_store_t *s, int rebuild, size_t *done);
int creor_index_drop(creor_store_t *s);
int creor_index_check(creor_store_t *s, size_t *indexes, size_t *errors);


#endif /* _CREOR_INDEX_H_INCLUDED_ */
