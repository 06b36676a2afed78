
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The LMDB store: one environment, one database, keys prefixed by kind.
 * docs/architecture.md lists the layout.  Plain C: the admin command line
 * links this file too.
 */


#ifndef _CREOR_STORE_H_INCLUDED_
#define _CREOR_STORE_H_INCLUDED_


#include <lmdb.h>

#include "creor_core.h"


#define CREOR_STORE_OK          0
#define CREOR_STORE_NOTFOUND    1
#define CREOR_STORE_FULL        2
#define CREOR_STORE_EXISTS      3
#define CREOR_STORE_ERROR      -1

#define CREOR_STORE_KEY_MAX     256

/* creor_store_open() modes */
#define CREOR_STORE_NOSYNC      0
#define CREOR_STORE_SYNC        1
#define CREOR_STORE_EPHEMERAL   2       /* counters: no fsync at all */


/* a usage aggregate's dimensions, in the order of its key */
#define CREOR_USAGE_ORG         0
#define CREOR_USAGE_PROJECT     1
#define CREOR_USAGE_KEY         2
#define CREOR_USAGE_AGENT       3
#define CREOR_USAGE_MODEL       4
#define CREOR_USAGE_DIMS        5

#define CREOR_USAGE_KEY_MAX     480     /* LMDB's limit is 511 */
#define CREOR_USAGE_MODEL_MAX   256     /* longer names are cut */
#define CREOR_USAGE_DAY_LEN     8       /* yyyymmdd */


typedef struct {
    const char  *data[CREOR_USAGE_DIMS];
    size_t       len[CREOR_USAGE_DIMS];
    char         day[CREOR_USAGE_DAY_LEN + 1];
} creor_usage_dims_t;


typedef struct {
    MDB_env     *env;
    MDB_dbi      dbi;
    MDB_txn     *rtxn;              /* reused read transaction */
    int          rtxn_active;
    int          nosync;
    int          deferred;          /* commits wait for a later synced one */
    int          left_open;         /* write transactions a path forgot */
    MDB_txn     *group;             /* the turn's transaction: group commit */
    int          grouping;          /* write transactions join the group */
    int          group_failed;      /* the error of a group commit, or 0 */
    uint64_t     group_writes;      /* transactions that joined a group */
    uint8_t      secret[CREOR_SERVER_SECRET_MAX];
    size_t       secret_len;
} creor_store_t;


int creor_store_open(creor_store_t *s, const char *path, size_t map_size,
    int mode, char *err, size_t errlen);
void creor_store_close(creor_store_t *s);
int creor_store_reader_check(creor_store_t *s);
int creor_store_init_secret(creor_store_t *s, const uint8_t *file_secret,
    size_t len, char *err, size_t errlen);
int creor_store_stats(creor_store_t *s, size_t *used, size_t *map_size,
    size_t *entries);

/*
 * A write transaction begun with creor_store_write() ends with
 * creor_store_commit() (which ends it even when it fails) or
 * creor_store_abort(), never with LMDB's own calls: the store keeps
 * track of it, and creor_store_release() ends one a path forgot.
 */

MDB_txn *creor_store_read(creor_store_t *s);
void creor_store_read_done(creor_store_t *s);
int creor_store_write(creor_store_t *s, MDB_txn **txn);
int creor_store_commit(MDB_txn *txn);
void creor_store_abort(MDB_txn *txn);
int creor_store_release(creor_store_t *s);
int creor_store_commit_nosync(creor_store_t *s, MDB_txn *txn);
int creor_store_group_commit(creor_store_t *s);
void creor_store_defer_sync(creor_store_t *s, int on);
int creor_store_flush(creor_store_t *s);
int creor_store_rc(int rc);

int creor_store_get(creor_store_t *s, MDB_txn *txn, const char *key,
    MDB_val *val);
int creor_store_put(creor_store_t *s, MDB_txn *txn, const char *key,
    const void *data, size_t len, unsigned flags);
int creor_store_del(creor_store_t *s, MDB_txn *txn, const char *key);

/*
 * A walk over the keys that begin with a prefix, in key order:
 *
 *     if (creor_scan_open(s, txn, &sc, prefix, plen, NULL, 0) != OK) ...
 *     while (creor_scan_next(&sc) == 1) { sc.key, sc.val, sc.rest }
 *     creor_scan_close(&sc);
 *
 * "from" starts the walk at a later key (a cursor, the next event); a key
 * equal to the prefix itself is not part of the walk.
 */

typedef struct {
    MDB_cursor  *cur;
    const char  *prefix;
    size_t       plen;
    MDB_val      key;
    MDB_val      val;
    const char  *rest;              /* the key after the prefix */
    size_t       rest_len;
    int          started;
} creor_scan_t;

int creor_scan_open(creor_store_t *s, MDB_txn *txn, creor_scan_t *sc,
    const char *prefix, size_t plen, const char *from, size_t from_len);
int creor_scan_open_dbi(MDB_txn *txn, MDB_dbi dbi, creor_scan_t *sc,
    const char *prefix, size_t plen, const char *from, size_t from_len);
int creor_scan_next(creor_scan_t *sc);
int creor_scan_prev(creor_scan_t *sc);
void creor_scan_rewind(creor_scan_t *sc);
int creor_scan_del(creor_scan_t *sc);
void creor_scan_close(creor_scan_t *sc);
int creor_scan_count(creor_store_t *s, MDB_txn *txn, const char *prefix,
    size_t plen, size_t max, size_t *n);

int creor_store_make_id(creor_store_t *s, MDB_txn *txn, char *out,
    size_t size, const char *prefix);
typedef int (*creor_store_expired_pt)(const MDB_val *val, int64_t now);

int creor_store_purge(creor_store_t *s, const char *prefix, char *from,
    size_t batch, int64_t now, creor_store_expired_pt expired,
    size_t *purged);

/* 1: delete the entry, 0: keep it, -1: fail (the batch is undone) */
typedef int (*creor_store_drop_pt)(MDB_txn *txn, const MDB_val *key,
    const MDB_val *val, int64_t now, void *data);

int creor_store_purge_txn(creor_store_t *s, const char *prefix, char *from,
    size_t batch, int64_t now, creor_store_drop_pt drop, void *data,
    size_t *purged);
void creor_usage_day(char *out, int64_t ms);
int creor_usage_key(char *out, size_t *len, const creor_usage_dims_t *d);
int creor_usage_parse(const char *key, size_t len, creor_usage_dims_t *d);
int creor_usage_merge(creor_store_t *s, MDB_txn *txn, const char *key,
    size_t len, const creor_usage_rec_t *add);
int creor_org_create(creor_store_t *s, const char *name, char *id);
int creor_project_create(creor_store_t *s, MDB_txn *txn, const char *org,
    creor_project_rec_t *rec, char *id);
int creor_key_issue(creor_store_t *s, MDB_txn *txn, creor_key_rec_t *rec,
    char *token);
int creor_key_get(creor_store_t *s, MDB_txn *txn, const char *id,
    creor_key_rec_t *rec);
int creor_key_put(creor_store_t *s, MDB_txn *txn, creor_key_rec_t *rec);


/* outside the store, transactions begin and end through it only */

#ifndef CREOR_STORE_INTERNAL
#pragma GCC poison mdb_txn_begin mdb_txn_commit mdb_txn_abort
#endif


#endif /* _CREOR_STORE_H_INCLUDED_ */
