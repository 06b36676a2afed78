
/*
 * Copyright (C) ngx_creor_module authors
 */


#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/hmac.h>
#include <openssl/evp.h>

#define CREOR_STORE_INTERNAL

#include "creor_store.h"


#define CREOR_SECRET_CHECK  "creor-secret-check"

/* LMDB has one writer per environment; a process uses a few at most */
#define CREOR_STORE_WRITERS  8


static int creor_store_begin(creor_store_t *s, MDB_txn **txn);
static int creor_store_secret_check(creor_store_t *s, uint8_t *out);
static void creor_store_chown(const char *dir, const char *file,
    struct stat *owner);
static void creor_usage_digits(char *out, int v, int width);
static void creor_store_track(MDB_txn *txn);
static void creor_store_forget(MDB_txn *txn);
static int creor_scan_at(creor_scan_t *sc, int rc);


/*
 * The write transactions this process has open.  One left open holds
 * LMDB's writer lock, and every writer of every process waits for it.
 */

static MDB_txn  *creor_store_writers[CREOR_STORE_WRITERS];


int
creor_store_open(creor_store_t *s, const char *path, size_t map_size,
    int mode, char *err, size_t errlen)
{
    int          rc;
    MDB_txn     *txn;
    unsigned     flags;
    struct stat  st;

    memset(s, 0, sizeof(creor_store_t));

    if (stat(path, &st) == -1) {
        if (mkdir(path, 0700) == -1 && errno != EEXIST) {
            snprintf(err, errlen, "mkdir(\"%s\") failed: %s", path,
                     strerror(errno));
            return CREOR_STORE_ERROR;
        }
    }

    rc = mdb_env_create(&s->env);
    if (rc != 0) {
        goto failed;
    }

    /* 0 keeps the size the environment already has */

    if (map_size) {
        rc = mdb_env_set_mapsize(s->env, map_size);
        if (rc != 0) {
            goto failed;
        }
    }

    rc = mdb_env_set_maxreaders(s->env, 1024);
    if (rc != 0) {
        goto failed;
    }

    /* named databases: the counters' anonymous ones */

    rc = mdb_env_set_maxdbs(s->env, 8);
    if (rc != 0) {
        goto failed;
    }

    /*
     * MDB_NOTLS: a worker keeps one read transaction for its life and
     * may open a write transaction while it is reset.
     */

    flags = MDB_NOTLS | MDB_NORDAHEAD;

    if (mode != CREOR_STORE_SYNC) {
        flags |= MDB_NOSYNC;
        s->nosync = 1;
    }

    /* counters change on every request: write in place, never flush */

    if (mode == CREOR_STORE_EPHEMERAL) {
        flags |= MDB_WRITEMAP | MDB_NOMETASYNC;
    }

    rc = mdb_env_open(s->env, path, flags, 0600);
    if (rc != 0) {
        goto failed;
    }

    /*
     * The command line, run as root, may make the files before a worker
     * does: they go to whoever owns the directory, the workers' user once
     * nginx's master has given it to them.
     */

    if (geteuid() == 0 && stat(path, &st) == 0 && st.st_uid != 0) {
        creor_store_chown(path, "/data.mdb", &st);
        creor_store_chown(path, "/lock.mdb", &st);
    }

    (void) creor_store_reader_check(s);

    rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != 0) {
        goto failed;
    }

    rc = mdb_dbi_open(txn, NULL, 0, &s->dbi);
    if (rc != 0) {
        mdb_txn_abort(txn);
        goto failed;
    }

    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        goto failed;
    }

    rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->rtxn);
    if (rc != 0) {
        goto failed;
    }

    mdb_txn_reset(s->rtxn);

    return CREOR_STORE_OK;

failed:

    snprintf(err, errlen, "LMDB environment \"%s\": %s", path,
             mdb_strerror(rc));

    if (s->env) {
        mdb_env_close(s->env);
        s->env = NULL;
    }

    return CREOR_STORE_ERROR;
}



static void
creor_store_chown(const char *dir, const char *file, struct stat *owner)
{
    char  name[PATH_MAX];

    if ((size_t) snprintf(name, sizeof(name), "%s%s", dir, file)
        < sizeof(name))
    {
        (void) chown(name, owner->st_uid, owner->st_gid);
    }
}

void
creor_store_close(creor_store_t *s)
{
    (void) creor_store_release(s);
    (void) creor_store_group_commit(s);

    if (s->rtxn) {
        mdb_txn_abort(s->rtxn);
        s->rtxn = NULL;
    }

    if (s->env) {
        mdb_env_close(s->env);
        s->env = NULL;
    }
}


/* frees reader slots of processes that died holding them */

int
creor_store_reader_check(creor_store_t *s)
{
    int  dead;

    dead = 0;

    if (mdb_reader_check(s->env, &dead) != 0) {
        return -1;
    }

    return dead;
}


/*
 * The server secret: from creor_secret_file, or generated into the store
 * ("m:secret") by whichever process opens it first.  With a file, only
 * an HMAC check value is stored, so the command line can tell a wrong
 * --secret-file from a right one.
 */

int
creor_store_init_secret(creor_store_t *s, const uint8_t *file_secret,
    size_t len, char *err, size_t errlen)
{
    int      rc;
    MDB_val  val;
    MDB_txn *txn;
    uint8_t  check[CREOR_HASH_LEN];

    rc = creor_store_write(s, &txn);
    if (rc != CREOR_STORE_OK) {
        snprintf(err, errlen, "cannot begin a write transaction");
        return rc;
    }

    if (file_secret) {
        if (len > sizeof(s->secret)) {
            len = sizeof(s->secret);
        }

        memcpy(s->secret, file_secret, len);
        s->secret_len = len;

    } else {
        rc = creor_store_get(s, txn, "m:secret", &val);

        if (rc == CREOR_STORE_OK && val.mv_size == CREOR_SECRET_LEN) {
            memcpy(s->secret, val.mv_data, val.mv_size);
            s->secret_len = val.mv_size;

        } else if (rc == CREOR_STORE_NOTFOUND) {
            rc = creor_store_get(s, txn, "m:secret_check", &val);
            if (rc == CREOR_STORE_OK) {
                creor_store_abort(txn);
                snprintf(err, errlen, "the store's keys were made with a "
                         "secret file; give it with --secret-file");
                return CREOR_STORE_ERROR;
            }

            if (creor_random(s->secret, CREOR_SECRET_LEN) != 0) {
                creor_store_abort(txn);
                snprintf(err, errlen, "no random bytes");
                return CREOR_STORE_ERROR;
            }

            s->secret_len = CREOR_SECRET_LEN;

            rc = creor_store_put(s, txn, "m:secret", s->secret,
                                 s->secret_len, 0);
            if (rc != CREOR_STORE_OK) {
                creor_store_abort(txn);
                snprintf(err, errlen, "cannot store the secret");
                return rc;
            }

        } else {
            creor_store_abort(txn);
            snprintf(err, errlen, "cannot read the secret");
            return CREOR_STORE_ERROR;
        }
    }

    if (creor_store_secret_check(s, check) != 0) {
        creor_store_abort(txn);
        snprintf(err, errlen, "HMAC failed");
        return CREOR_STORE_ERROR;
    }

    rc = creor_store_get(s, txn, "m:secret_check", &val);

    if (rc == CREOR_STORE_OK) {
        if (val.mv_size != CREOR_HASH_LEN
            || !creor_hash_equal(val.mv_data, check))
        {
            creor_store_abort(txn);
            snprintf(err, errlen, "the secret does not match the one the "
                     "store's keys were made with");
            return CREOR_STORE_ERROR;
        }

        creor_store_abort(txn);
        return CREOR_STORE_OK;
    }

    rc = creor_store_put(s, txn, "m:secret_check", check, CREOR_HASH_LEN, 0);
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        snprintf(err, errlen, "cannot store the secret check");
        return rc;
    }

    rc = creor_store_commit(txn);
    if (rc != CREOR_STORE_OK) {
        snprintf(err, errlen, "cannot commit the secret");
    }

    return rc;
}


static int
creor_store_secret_check(creor_store_t *s, uint8_t *out)
{
    return creor_hash_secret(out, s->secret, s->secret_len,
                             CREOR_SECRET_CHECK,
                             sizeof(CREOR_SECRET_CHECK) - 1);
}


int
creor_store_stats(creor_store_t *s, size_t *used, size_t *map_size,
    size_t *entries)
{
    MDB_stat      st;
    MDB_envinfo   info;
    MDB_txn      *txn;

    txn = creor_store_read(s);
    if (txn == NULL) {
        return CREOR_STORE_ERROR;
    }

    if (mdb_stat(txn, s->dbi, &st) != 0 || mdb_env_info(s->env, &info) != 0)
    {
        creor_store_read_done(s);
        return CREOR_STORE_ERROR;
    }

    creor_store_read_done(s);

    *used = (info.me_last_pgno + 1) * (size_t) st.ms_psize;
    *map_size = info.me_mapsize;
    *entries = st.ms_entries;

    return CREOR_STORE_OK;
}


/*
 * Another process (the command line, or a worker with another map_size
 * after a reload) may have grown the map: adopt its size and retry.
 */

MDB_txn *
creor_store_read(creor_store_t *s)
{
    int  rc;

    if (s->rtxn_active) {
        return s->rtxn;
    }

    rc = mdb_txn_renew(s->rtxn);

    if (rc == MDB_MAP_RESIZED) {
        mdb_txn_abort(s->rtxn);
        s->rtxn = NULL;

        if (mdb_env_set_mapsize(s->env, 0) != 0
            || mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->rtxn) != 0)
        {
            return NULL;
        }

        rc = 0;
    }

    if (rc != 0) {
        return NULL;
    }

    s->rtxn_active = 1;

    return s->rtxn;
}


void
creor_store_read_done(creor_store_t *s)
{
    if (s->rtxn_active) {
        mdb_txn_reset(s->rtxn);
        s->rtxn_active = 0;
    }
}


/*
 * Group commit (sync=on).  While s->grouping is set (the module sets it
 * around requests' handlers), a write transaction is a child of one
 * transaction left open for the rest of the turn of the event loop.  A
 * child's commit is a merge into it, without a system call; the module
 * commits the group once, with LMDB's own ordered flushes, for every
 * request of the turn (creor_store_group_commit()), and answers them
 * after that.  Any other write goes after the group: the group is
 * committed first, so no writer waits for the end of the turn.
 */

int
creor_store_write(creor_store_t *s, MDB_txn **txn)
{
    int  rc;

    /* a transaction of ours still open would wait for itself forever */

    s->left_open += creor_store_release(s);

    if (s->group) {
        if (s->grouping) {
            rc = mdb_txn_begin(s->env, s->group, 0, txn);
            if (rc != 0) {
                return creor_store_rc(rc);
            }

            s->group_writes++;
            creor_store_track(*txn);

            return CREOR_STORE_OK;
        }

        (void) creor_store_group_commit(s);
    }

    if (!s->grouping || s->nosync) {
        rc = creor_store_begin(s, txn);
        if (rc == CREOR_STORE_OK) {
            creor_store_track(*txn);
        }

        return rc;
    }

    /* the group's own commit syncs, whatever deferred syncing says */

    mdb_env_set_flags(s->env, MDB_NOSYNC, 0);
    rc = creor_store_begin(s, &s->group);
    mdb_env_set_flags(s->env, MDB_NOSYNC, s->deferred);

    if (rc != CREOR_STORE_OK) {
        s->group = NULL;
        return rc;
    }

    rc = mdb_txn_begin(s->env, s->group, 0, txn);

    if (rc != 0) {
        mdb_txn_abort(s->group);
        s->group = NULL;
        return creor_store_rc(rc);
    }

    s->group_writes++;
    creor_store_track(*txn);

    return CREOR_STORE_OK;
}


/* the group's changes on disk, or none of them; failures are remembered */

int
creor_store_group_commit(creor_store_t *s)
{
    int  rc;

    if (s->group == NULL) {
        return CREOR_STORE_OK;
    }

    /* a request's transaction left open is no part of the group */

    s->left_open += creor_store_release(s);

    mdb_env_set_flags(s->env, MDB_NOSYNC, 0);
    rc = creor_store_rc(mdb_txn_commit(s->group));
    mdb_env_set_flags(s->env, MDB_NOSYNC, s->deferred);

    s->group = NULL;

    if (rc != CREOR_STORE_OK) {
        s->group_failed = rc;
    }

    return rc;
}


static int
creor_store_begin(creor_store_t *s, MDB_txn **txn)
{
    int  rc;

    rc = mdb_txn_begin(s->env, NULL, 0, txn);

    if (rc == MDB_MAP_RESIZED) {
        if (mdb_env_set_mapsize(s->env, 0) != 0) {
            return CREOR_STORE_ERROR;
        }

        rc = mdb_txn_begin(s->env, NULL, 0, txn);
    }

    return creor_store_rc(rc);
}


/* LMDB ends the transaction whether the commit succeeds or not */

int
creor_store_commit(MDB_txn *txn)
{
    creor_store_forget(txn);

    return creor_store_rc(mdb_txn_commit(txn));
}


void
creor_store_abort(MDB_txn *txn)
{
    creor_store_forget(txn);

    mdb_txn_abort(txn);
}


/*
 * Aborts the write transaction of s that a path left open, if any, and
 * says how many it found: the caller logs what is a bug.
 */

int
creor_store_release(creor_store_t *s)
{
    int       i, n;
    MDB_txn  *txn;

    n = 0;

    for (i = 0; i < CREOR_STORE_WRITERS; i++) {
        txn = creor_store_writers[i];

        if (txn != NULL && mdb_txn_env(txn) == s->env) {
            creor_store_writers[i] = NULL;
            mdb_txn_abort(txn);
            n++;
        }
    }

    return n;
}


static void
creor_store_track(MDB_txn *txn)
{
    int  i;

    for (i = 0; i < CREOR_STORE_WRITERS; i++) {
        if (creor_store_writers[i] == NULL) {
            creor_store_writers[i] = txn;
            return;
        }
    }
}


static void
creor_store_forget(MDB_txn *txn)
{
    int  i;

    for (i = 0; i < CREOR_STORE_WRITERS; i++) {
        if (creor_store_writers[i] == txn) {
            creor_store_writers[i] = NULL;
            return;
        }
    }
}


/* a commit that need not reach the disk now: a later synced one takes it */

int
creor_store_commit_nosync(creor_store_t *s, MDB_txn *txn)
{
    int  rc;

    mdb_env_set_flags(s->env, MDB_NOSYNC, 1);
    rc = creor_store_commit(txn);
    mdb_env_set_flags(s->env, MDB_NOSYNC, s->nosync || s->deferred);

    return rc;
}


/*
 * While on, commits skip the fsync; the synced commit that ends the
 * stretch (or the flush made when it is turned off) makes them durable
 * together: one fsync for an idempotent request instead of two.
 */

void
creor_store_defer_sync(creor_store_t *s, int on)
{
    if (s->nosync) {
        return;
    }

    s->deferred = on;
    mdb_env_set_flags(s->env, MDB_NOSYNC, on);
}


int
creor_store_rc(int rc)
{
    switch (rc) {
    case 0:
        return CREOR_STORE_OK;
    case MDB_NOTFOUND:
        return CREOR_STORE_NOTFOUND;
    case MDB_KEYEXIST:
        return CREOR_STORE_EXISTS;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
    case ENOSPC:
        return CREOR_STORE_FULL;
    default:
        return CREOR_STORE_ERROR;
    }
}


int
creor_store_get(creor_store_t *s, MDB_txn *txn, const char *key,
    MDB_val *val)
{
    MDB_val  k;

    k.mv_data = (void *) key;
    k.mv_size = strlen(key);

    return creor_store_rc(mdb_get(txn, s->dbi, &k, val));
}


int
creor_store_put(creor_store_t *s, MDB_txn *txn, const char *key,
    const void *data, size_t len, unsigned flags)
{
    MDB_val  k, v;

    k.mv_data = (void *) key;
    k.mv_size = strlen(key);
    v.mv_data = (void *) data;
    v.mv_size = len;

    return creor_store_rc(mdb_put(txn, s->dbi, &k, &v, flags));
}


int
creor_store_del(creor_store_t *s, MDB_txn *txn, const char *key)
{
    MDB_val  k;

    k.mv_data = (void *) key;
    k.mv_size = strlen(key);

    return creor_store_rc(mdb_del(txn, s->dbi, &k, NULL));
}


int
creor_scan_open(creor_store_t *s, MDB_txn *txn, creor_scan_t *sc,
    const char *prefix, size_t plen, const char *from, size_t from_len)
{
    return creor_scan_open_dbi(txn, s->dbi, sc, prefix, plen, from,
                               from_len);
}


/* 1: an entry in key, val and rest; 0: the walk is over; -1: failed */

int
creor_scan_next(creor_scan_t *sc)
{
    int  rc;

    if (sc->cur == NULL) {
        return 0;
    }

    if (sc->started) {
        rc = mdb_cursor_get(sc->cur, &sc->key, &sc->val, MDB_NEXT);

    } else {
        sc->started = 1;
        rc = sc->key.mv_size
             ? mdb_cursor_get(sc->cur, &sc->key, &sc->val, MDB_SET_RANGE)
             : mdb_cursor_get(sc->cur, &sc->key, &sc->val, MDB_FIRST);
    }

    rc = creor_scan_at(sc, rc);

    /* the prefix alone would be a key of another kind: skip it */

    if (rc == 1 && sc->rest_len == 0) {
        return creor_scan_next(sc);
    }

    return rc;
}


/*
 * The same walk backwards, from the last entry before "from" (a key of
 * the walk, which needs one), latest first: a thread's runs before a run.
 */

int
creor_scan_prev(creor_scan_t *sc)
{
    int  rc;

    if (sc->cur == NULL) {
        return 0;
    }

    if (sc->started) {
        rc = mdb_cursor_get(sc->cur, &sc->key, &sc->val, MDB_PREV);

    } else {
        sc->started = 1;
        rc = mdb_cursor_get(sc->cur, &sc->key, &sc->val, MDB_SET_RANGE);
        rc = mdb_cursor_get(sc->cur, &sc->key, &sc->val,
                            rc == 0 ? MDB_PREV : MDB_LAST);
    }

    rc = creor_scan_at(sc, rc);

    /* the prefix alone sorts before every key of the walk: it is over */

    return (rc == 1 && sc->rest_len == 0) ? 0 : rc;
}


/* where the cursor moved (rc): an entry of the walk, or its end */

static int
creor_scan_at(creor_scan_t *sc, int rc)
{
    if (rc == MDB_NOTFOUND) {
        return 0;
    }

    if (rc != 0) {
        return -1;
    }

    if (sc->key.mv_size < sc->plen
        || memcmp(sc->key.mv_data, sc->prefix, sc->plen) != 0)
    {
        return 0;
    }

    sc->rest = (const char *) sc->key.mv_data + sc->plen;
    sc->rest_len = sc->key.mv_size - sc->plen;

    return 1;
}


/* removes the entry creor_scan_next() returned last */

int
creor_scan_del(creor_scan_t *sc)
{
    return creor_store_rc(mdb_cursor_del(sc->cur, 0));
}


void
creor_scan_close(creor_scan_t *sc)
{
    if (sc->cur) {
        mdb_cursor_close(sc->cur);
        sc->cur = NULL;
    }
}


/* how many keys begin with the prefix, counting no further than max */

int
creor_scan_count(creor_store_t *s, MDB_txn *txn, const char *prefix,
    size_t plen, size_t max, size_t *n)
{
    int           rc;
    creor_scan_t  sc;

    *n = 0;
    rc = 0;

    if (creor_scan_open(s, txn, &sc, prefix, plen, NULL, 0)
        != CREOR_STORE_OK)
    {
        return CREOR_STORE_ERROR;
    }

    while (*n < max && (rc = creor_scan_next(&sc)) == 1) {
        (*n)++;
    }

    creor_scan_close(&sc);

    return rc < 0 ? CREOR_STORE_ERROR : CREOR_STORE_OK;
}


/*
 * An id that sorts after every id the store has issued: the ULID of now,
 * or the last one plus one if another process got further within the
 * same millisecond.  Inside the creating transaction, so ids follow the
 * order in which the objects were committed.
 */

int
creor_store_make_id(creor_store_t *s, MDB_txn *txn, char *out, size_t size,
    const char *prefix)
{
    int      i, rc;
    size_t   n;
    uint8_t  b[16];
    MDB_val  val;

    n = strlen(prefix);

    if (n + CREOR_ULID_LEN + 1 > size) {
        return CREOR_STORE_ERROR;
    }

    creor_ulid_bytes(b, creor_now_ms());

    rc = creor_store_get(s, txn, "m:ulid", &val);

    if (rc == CREOR_STORE_OK && val.mv_size == sizeof(b)
        && memcmp(b, val.mv_data, sizeof(b)) <= 0)
    {
        memcpy(b, val.mv_data, sizeof(b));

        for (i = 15; i >= 0; i--) {
            if (++b[i] != 0) {
                break;
            }
        }

    } else if (rc != CREOR_STORE_OK && rc != CREOR_STORE_NOTFOUND) {
        return rc;
    }

    rc = creor_store_put(s, txn, "m:ulid", b, sizeof(b), 0);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    memcpy(out, prefix, n);
    creor_ulid_encode(out + n, b);
    out[n + CREOR_ULID_LEN] = '\0';

    return CREOR_STORE_OK;
}


/*
 * Deletes the entries under prefix that expired() says are expired: at
 * most batch deletions and five times as many visits a call, resuming
 * where the previous call stopped (from, CREOR_STORE_KEY_MAX bytes, ""
 * at first), so a large collection is reached whole, a turn at a time,
 * without one long write transaction.  Not synced: a purge lost with
 * the machine is done again.
 */

typedef struct {
    creor_store_expired_pt  expired;
} creor_store_expired_t;


static int
creor_store_expired_drop(MDB_txn *txn, const MDB_val *key,
    const MDB_val *val, int64_t now, void *data)
{
    creor_store_expired_t  *e = data;

    return e->expired(val, now);
}


int
creor_store_purge(creor_store_t *s, const char *prefix, char *from,
    size_t batch, int64_t now, creor_store_expired_pt expired,
    size_t *purged)
{
    creor_store_expired_t  e;

    e.expired = expired;

    return creor_store_purge_txn(s, prefix, from, batch, now,
                                 creor_store_expired_drop, &e, purged);
}


/*
 * The same walk, drop() deciding in the purge's transaction, where it may
 * also remove what the entry owns (its index entries, a counter's share):
 * a failure of either undoes the batch, so nothing is half removed.
 */

int
creor_store_purge_txn(creor_store_t *s, const char *prefix, char *from,
    size_t batch, int64_t now, creor_store_drop_pt drop, void *data,
    size_t *purged)
{
    int          rc, d;
    size_t       n, seen, plen;
    MDB_val      k, v;
    MDB_txn     *txn;
    MDB_cursor  *cur;

    *purged = 0;
    plen = strlen(prefix);

    rc = creor_store_write(s, &txn);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    if (mdb_cursor_open(txn, s->dbi, &cur) != 0) {
        creor_store_abort(txn);
        return CREOR_STORE_ERROR;
    }

    k.mv_data = from[0] ? from : (char *) prefix;
    k.mv_size = strlen(k.mv_data);

    rc = k.mv_size ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
                   : mdb_cursor_get(cur, &k, &v, MDB_FIRST);

    for (n = 0, seen = 0;
         rc == 0 && k.mv_size > plen && memcmp(k.mv_data, prefix, plen) == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        if (++seen > batch * 5 || n == batch) {
            break;
        }

        d = drop(txn, &k, &v, now, data);

        if (d == 0) {
            continue;
        }

        if (d < 0 || mdb_cursor_del(cur, 0) != 0) {
            mdb_cursor_close(cur);
            creor_store_abort(txn);
            return CREOR_STORE_ERROR;
        }

        n++;
    }

    if (rc == 0 && k.mv_size > plen && k.mv_size < CREOR_STORE_KEY_MAX
        && memcmp(k.mv_data, prefix, plen) == 0)
    {
        memcpy(from, k.mv_data, k.mv_size);
        from[k.mv_size] = '\0';

    } else {
        from[0] = '\0';
    }

    mdb_cursor_close(cur);

    if (n == 0) {
        creor_store_abort(txn);
        return CREOR_STORE_OK;
    }

    rc = creor_store_commit_nosync(s, txn);

    if (rc == CREOR_STORE_OK) {
        *purged = n;
    }

    return rc;
}


int
creor_org_create(creor_store_t *s, const char *name, char *id)
{
    int              rc;
    char             key[CREOR_STORE_KEY_MAX];
    MDB_txn         *txn;
    creor_org_rec_t  rec;

    memset(&rec, 0, sizeof(rec));
    rec.version = 1;
    rec.created_ms = creor_now_ms();
    snprintf(rec.name, sizeof(rec.name), "%s", name);

    rc = creor_store_write(s, &txn);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    rc = creor_store_make_id(s, txn, id, CREOR_ID_MAX, "org_");
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return rc;
    }

    snprintf(key, sizeof(key), "o:%s", id);

    rc = creor_store_put(s, txn, key, &rec, sizeof(rec), MDB_NOOVERWRITE);
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return rc;
    }

    return creor_store_commit(txn);
}


/* rec comes with its name and description */

int
creor_project_create(creor_store_t *s, MDB_txn *txn, const char *org,
    creor_project_rec_t *rec, char *id)
{
    int      rc;
    char     key[CREOR_STORE_KEY_MAX];
    MDB_val  val;

    snprintf(key, sizeof(key), "o:%s", org);

    rc = creor_store_get(s, txn, key, &val);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    rec->version = 1;
    rec->created_ms = creor_now_ms();

    rc = creor_store_make_id(s, txn, id, CREOR_ID_MAX, "proj_");
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    snprintf(key, sizeof(key), "p:%s:%s", org, id);

    return creor_store_put(s, txn, key, rec, sizeof(creor_project_rec_t),
                           MDB_NOOVERWRITE);
}


/*
 * Gives rec a new id (unless it has one: rotation) and a new secret, and
 * writes it with its organization index; token receives the one copy of
 * the secret there will ever be.
 */

int
creor_key_issue(creor_store_t *s, MDB_txn *txn, creor_key_rec_t *rec,
    char *token)
{
    int      rc;
    char     key[CREOR_STORE_KEY_MAX];
    char     b62[CREOR_SECRET_B62_LEN + 1];
    uint8_t  raw[CREOR_SECRET_LEN];

    if (rec->id[0] == '\0') {
        rc = creor_store_make_id(s, txn, rec->id, sizeof(rec->id), "key_");
        if (rc != CREOR_STORE_OK) {
            return rc;
        }

        rec->created_ms = creor_now_ms();
    }

    rec->version = CREOR_KEY_VERSION;

    if (creor_random(raw, sizeof(raw)) != 0) {
        return CREOR_STORE_ERROR;
    }

    creor_base62(b62, raw, sizeof(raw));

    if (creor_hash_secret(rec->hash, s->secret, s->secret_len, b62,
                          CREOR_SECRET_B62_LEN)
        != 0)
    {
        return CREOR_STORE_ERROR;
    }

    rc = creor_key_put(s, txn, rec);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    snprintf(key, sizeof(key), "ko:%s:%s", rec->org, rec->id);

    rc = creor_store_put(s, txn, key, "", 0, 0);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    /* "ck_" + the ULID of "key_<ulid>" + "_" + secret */

    snprintf(token, CREOR_ID_MAX + CREOR_SECRET_B62_LEN + 8, "ck_%s_%s",
             rec->id + 4, b62);

    return CREOR_STORE_OK;
}


int
creor_key_get(creor_store_t *s, MDB_txn *txn, const char *id,
    creor_key_rec_t *rec)
{
    int      rc;
    size_t   len;
    char     key[CREOR_STORE_KEY_MAX];
    MDB_val  val;

    /* read on every request: no snprintf() */

    len = strlen(id);

    if (len + 3 > sizeof(key)) {
        return CREOR_STORE_NOTFOUND;
    }

    key[0] = 'k';
    key[1] = ':';
    memcpy(key + 2, id, len + 1);

    rc = creor_store_get(s, txn, key, &val);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    if (val.mv_size != sizeof(creor_key_rec_t)) {
        return CREOR_STORE_ERROR;
    }

    memcpy(rec, val.mv_data, sizeof(creor_key_rec_t));

    return CREOR_STORE_OK;
}


int
creor_key_put(creor_store_t *s, MDB_txn *txn, creor_key_rec_t *rec)
{
    char  key[CREOR_STORE_KEY_MAX];

    snprintf(key, sizeof(key), "k:%s", rec->id);

    return creor_store_put(s, txn, key, rec, sizeof(creor_key_rec_t), 0);
}


/* "yyyymmdd" of the UTC day of ms, kept within years 1970..9999 */

void
creor_usage_day(char *out, int64_t ms)
{
    time_t     t;
    struct tm  tm;

    if (ms < 0) {
        ms = 0;

    } else if (ms > 253402300799999LL) {
        ms = 253402300799999LL;
    }

    t = (time_t) (ms / 1000);
    gmtime_r(&t, &tm);

    creor_usage_digits(out, tm.tm_year + 1900, 4);
    creor_usage_digits(out + 4, tm.tm_mon + 1, 2);
    creor_usage_digits(out + 6, tm.tm_mday, 2);
    out[CREOR_USAGE_DAY_LEN] = '\0';
}


static void
creor_usage_digits(char *out, int v, int width)
{
    while (width--) {
        out[width] = (char) ('0' + v % 10);
        v /= 10;
    }
}


/*
 * "u:<org>:<day>:<project>:<key>:<agent>:<model>": organization, then
 * day first, so a date range of one organization is one range of keys.
 * The ids cannot hold a ':' and the model comes last, so any model name
 * parses back; one longer than CREOR_USAGE_MODEL_MAX bytes is cut at a
 * character boundary.
 */

int
creor_usage_key(char *out, size_t *len, const creor_usage_dims_t *d)
{
    int     i;
    char   *p;
    size_t  n;

    if (d->len[CREOR_USAGE_ORG] == 0 || strlen(d->day) != CREOR_USAGE_DAY_LEN)
    {
        return CREOR_STORE_ERROR;
    }

    p = out;
    memcpy(p, "u:", 2);
    p += 2;

    for (i = 0; i < CREOR_USAGE_DIMS; i++) {
        n = d->len[i];

        if (i == CREOR_USAGE_MODEL) {
            if (n > CREOR_USAGE_MODEL_MAX) {
                n = CREOR_USAGE_MODEL_MAX;

                while (n && ((unsigned char) d->data[i][n] & 0xc0) == 0x80) {
                    n--;
                }
            }

        } else if (n >= CREOR_ID_MAX
                   || (n && memchr(d->data[i], ':', n) != NULL))
        {
            return CREOR_STORE_ERROR;
        }

        if (n) {
            memcpy(p, d->data[i], n);
            p += n;
        }

        if (i == CREOR_USAGE_ORG) {
            *p++ = ':';
            memcpy(p, d->day, CREOR_USAGE_DAY_LEN);
            p += CREOR_USAGE_DAY_LEN;
        }

        if (i != CREOR_USAGE_MODEL) {
            *p++ = ':';
        }
    }

    *len = p - out;

    return CREOR_STORE_OK;
}


/* the dimensions point into key */

int
creor_usage_parse(const char *key, size_t len, creor_usage_dims_t *d)
{
    int          i;
    const char  *p, *last, *c;

    if (len < 2 || memcmp(key, "u:", 2) != 0) {
        return CREOR_STORE_ERROR;
    }

    p = key + 2;
    last = key + len;

    for (i = 0; i < CREOR_USAGE_MODEL; i++) {
        c = memchr(p, ':', last - p);
        if (c == NULL) {
            return CREOR_STORE_ERROR;
        }

        d->data[i] = p;
        d->len[i] = c - p;
        p = c + 1;

        if (i == CREOR_USAGE_ORG) {
            if (last - p < CREOR_USAGE_DAY_LEN + 1
                || p[CREOR_USAGE_DAY_LEN] != ':')
            {
                return CREOR_STORE_ERROR;
            }

            memcpy(d->day, p, CREOR_USAGE_DAY_LEN);
            d->day[CREOR_USAGE_DAY_LEN] = '\0';
            p += CREOR_USAGE_DAY_LEN + 1;
        }
    }

    d->data[CREOR_USAGE_MODEL] = p;
    d->len[CREOR_USAGE_MODEL] = last - p;

    return CREOR_STORE_OK;
}


/* adds to the aggregate: one read and one write, whatever its history */

int
creor_usage_merge(creor_store_t *s, MDB_txn *txn, const char *key,
    size_t len, const creor_usage_rec_t *add)
{
    int                rc;
    MDB_val            k, v;
    creor_usage_rec_t  rec;

    k.mv_data = (void *) key;
    k.mv_size = len;

    rc = mdb_get(txn, s->dbi, &k, &v);

    if (rc == 0 && v.mv_size == sizeof(creor_usage_rec_t)) {
        memcpy(&rec, v.mv_data, sizeof(creor_usage_rec_t));

    } else if (rc == 0 || rc == MDB_NOTFOUND) {
        memset(&rec, 0, sizeof(creor_usage_rec_t));

    } else {
        return creor_store_rc(rc);
    }

    rec.version = 1;
    rec.requests += add->requests;
    rec.runs += add->runs;
    rec.input_tokens += add->input_tokens;
    rec.output_tokens += add->output_tokens;

    v.mv_data = &rec;
    v.mv_size = sizeof(creor_usage_rec_t);

    return creor_store_rc(mdb_put(txn, s->dbi, &k, &v, 0));
}


/* what commits left unsynced (deferred syncing, nosync) on disk now */

int
creor_store_flush(creor_store_t *s)
{
    return creor_store_rc(mdb_env_sync(s->env, 1));
}


/* a walk over another database of the environment (counters') */

int
creor_scan_open_dbi(MDB_txn *txn, MDB_dbi dbi, creor_scan_t *sc,
    const char *prefix, size_t plen, const char *from, size_t from_len)
{
    memset(sc, 0, sizeof(creor_scan_t));

    if (mdb_cursor_open(txn, dbi, &sc->cur) != 0) {
        sc->cur = NULL;
        return CREOR_STORE_ERROR;
    }

    sc->prefix = prefix;
    sc->plen = plen;

    if (from && from_len) {
        sc->key.mv_data = (void *) from;
        sc->key.mv_size = from_len;

    } else {
        sc->key.mv_data = (void *) prefix;
        sc->key.mv_size = plen;
    }

    return CREOR_STORE_OK;
}


/* the walk starts again from its prefix: one that wraps around */

void
creor_scan_rewind(creor_scan_t *sc)
{
    sc->started = 0;
    sc->key.mv_data = (void *) sc->prefix;
    sc->key.mv_size = sc->plen;
}
