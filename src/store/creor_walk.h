
/*
 * Copyright (C) ngx_creor_module authors
 *
 * A list page's walk (creor_walk.c): the keys under a prefix in either
 * order, from one end, strictly past a key (a cursor), or from the n-th
 * entry of a counted index; an index's entries are resolved to their
 * records.
 *
 *     creor_walk_open(s, txn, &w, prefix, plen, primary, primary_len, desc)
 *     creor_walk_after(&w, after, len)   or   creor_walk_skip(&w, n)
 *     while (creor_walk_next(&w) == 1) { w.key: the entry; w.rkey, w.rval }
 *     creor_walk_close(&w)
 */


#ifndef _CREOR_WALK_H_INCLUDED_
#define _CREOR_WALK_H_INCLUDED_


#include "creor_store.h"


typedef struct {
    creor_store_t  *store;
    MDB_txn        *txn;
    MDB_cursor     *cur;
    const char     *prefix;
    size_t          plen;
    const char     *primary;        /* an index's records are primary+id */
    size_t          primary_len;
    int             desc;
    int             rc;             /* of the cursor's last move */
    int             started;
    MDB_val         key;            /* the entry */
    MDB_val         val;
    MDB_val         rkey;           /* its record: the entry, or primary's */
    MDB_val         rval;
    char            buf[2 * CREOR_STORE_KEY_MAX];
} creor_walk_t;


int creor_walk_open(creor_store_t *s, MDB_txn *txn, creor_walk_t *w,
    const char *prefix, size_t plen, const char *primary, size_t primary_len,
    int desc);
int creor_walk_after(creor_walk_t *w, const char *after, size_t len);
int creor_walk_skip(creor_walk_t *w, uint64_t skip);
int creor_walk_next(creor_walk_t *w);
void creor_walk_close(creor_walk_t *w);


#endif /* _CREOR_WALK_H_INCLUDED_ */
