
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Rate limits (SPEC 7): GCRA, one theoretical arrival time (tat) per
 * limited thing.  A tat only ever grows, which is what lets copies of it
 * be merged by taking the larger.
 *
 * Credentials' counters (and the global one) are checked and updated in
 * a table in shared memory, under a spin lock per bucket: exact across
 * the workers of the host and of a reload (the zone outlives the cycle),
 * for the price of one atomic operation.  Their home is the counters
 * environment: a key not in the table is read from it, and a timer
 * writes back the counters that changed, once a second, from one worker.
 *
 * Counters of client addresses (requests without valid credentials) are
 * checked in one write transaction of the counters environment, in the
 * named database "anon", bounded to a share of the map: a flood of new
 * addresses evicts anonymous counters, idle ones first, and never takes
 * the room of a credential's.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_RL_PURGE_BATCH   2000
#define CREOR_RL_EVICT_SAMPLE  8

/* bytes of map per anonymous counter allowed: a quarter of the map */
#define CREOR_RL_ANON_COST     512

/* the shared table: a bucket of 8 a 128 KB of counters map, 16..2048 */
#define CREOR_RL_BUCKET_MAP    (128 * 1024)
#define CREOR_RL_BUCKETS_MIN   16
#define CREOR_RL_BUCKETS_MAX   2048
#define CREOR_RL_WAYS          8
#define CREOR_RL_KEY_LEN       40       /* "k:key_<ulid>" is 32 */
#define CREOR_RL_FLUSH         1000     /* ms between write-backs */
#define CREOR_RL_BATCH         256      /* counters a write transaction */
#define CREOR_RL_TRIES         4


typedef struct {
    int64_t         tat;
    int64_t         flushed;        /* the environment holds at least it */
    uint32_t        len;            /* 0: a free way */
    char            key[CREOR_RL_KEY_LEN];
} creor_rl_way_t;


typedef struct {
    ngx_atomic_t    lock;           /* the holder's pid, or 0 */
    ngx_atomic_t    gen;            /* moves when a key leaves the bucket */
    creor_rl_way_t  ways[CREOR_RL_WAYS];
} creor_rl_bucket_t;


struct creor_rl_table_s {
    ngx_atomic_t        flushed_ms;     /* the last write-back, any worker */
    ngx_uint_t          nbuckets;
    creor_rl_bucket_t   buckets[1];
};


typedef struct {
    creor_rate_t       *rate;
    MDB_dbi             dbi;
    ngx_uint_t          found;
    char                key[CREOR_STORE_KEY_MAX];
    size_t              len;
    int64_t             interval;       /* microseconds per request */
    int64_t             capacity;       /* count + burst */
    int64_t             tat;            /* new theoretical arrival time */
    int64_t             remaining;
    int64_t             retry;          /* microseconds until admitted */

    /* in the shared table */
    creor_rl_bucket_t  *bucket;
    creor_rl_way_t     *way;
    ngx_atomic_uint_t   gen;
    ngx_uint_t          loaded;
    ngx_uint_t          full;
    int64_t             stored;         /* the tat read from the environment */
} creor_rl_check_t;


/* a counter to write back: the way it came from, to mark it written */

typedef struct {
    creor_rl_bucket_t  *bucket;
    uint32_t            len;
    char                key[CREOR_RL_KEY_LEN];
    int64_t             tat;
} creor_rl_dirty_t;


static ngx_int_t creor_rl_run(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_rl_check_t *checks, ngx_uint_t n);
static int creor_rl_update(ngx_creor_main_conf_t *mcf,
    creor_rl_check_t *checks, ngx_uint_t n, int64_t now, ngx_uint_t *denied);
static ngx_uint_t creor_rl_gcra(creor_rl_check_t *c, int64_t tat,
    int64_t now);
static int creor_rl_shared(ngx_creor_main_conf_t *mcf,
    creor_rl_check_t *checks, ngx_uint_t n, int64_t now, ngx_uint_t *denied);
static creor_rl_way_t *creor_rl_find(creor_rl_check_t *c);
static creor_rl_way_t *creor_rl_install(creor_rl_check_t *c, int64_t now);
static int creor_rl_load(ngx_creor_main_conf_t *mcf,
    creor_rl_check_t *checks, ngx_uint_t n);
static void creor_rl_lock(creor_rl_check_t *checks, ngx_uint_t n);
static void creor_rl_unlock(creor_rl_check_t *checks, ngx_uint_t n);
static void creor_rl_spin(creor_rl_bucket_t *b);
static void creor_rl_flush_timer(ngx_event_t *ev);
static int creor_rl_flush(ngx_creor_main_conf_t *mcf,
    creor_rl_bucket_t *from, ngx_uint_t nbuckets, int64_t now,
    ngx_log_t *log);
static int creor_rl_write(ngx_creor_main_conf_t *mcf,
    creor_rl_dirty_t *dirty, ngx_uint_t n, ngx_log_t *log);
static ngx_int_t creor_rl_init_zone(ngx_shm_zone_t *shm_zone, void *data);
static int creor_rl_evict(ngx_creor_main_conf_t *mcf, MDB_txn *txn,
    int64_t now);
static void creor_rl_relieve(ngx_creor_main_conf_t *mcf, ngx_log_t *log,
    int64_t now);
static ngx_int_t creor_rl_headers(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, creor_rl_check_t *c, int64_t now);
static u_char *creor_rl_int(u_char *p, int64_t n);
static int creor_ratelimit_expired(const MDB_val *val, int64_t now);


ngx_int_t
creor_ratelimit(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    ngx_uint_t             n;
    creor_rate_t           own;
    creor_rl_check_t       checks[2];
    ngx_creor_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_creor_module);
    n = 0;

    /* a key's own rateLimit wins over the location's */

    if (ctx->who.key.rate_limit[0]) {
        ngx_memzero(&own, sizeof(creor_rate_t));

        if (creor_rate_parse(ctx->who.key.rate_limit,
                             ngx_strlen(ctx->who.key.rate_limit),
                             &own.count, &own.period_ms, &own.burst)
            == 0)
        {
            checks[n].rate = ngx_palloc(r->pool, sizeof(creor_rate_t));
            if (checks[n].rate == NULL) {
                return NGX_ERROR;
            }

            *checks[n].rate = own;
            checks[n].dbi = ctx->mcf->counters.dbi;
            ngx_snprintf((u_char *) checks[n].key, CREOR_STORE_KEY_MAX,
                         "k:%V%Z", &ctx->who.key_id);
            n++;
        }

    } else if (!lcf->rate.off) {
        checks[n].rate = &lcf->rate;
        checks[n].dbi = ctx->mcf->counters.dbi;
        ngx_snprintf((u_char *) checks[n].key, CREOR_STORE_KEY_MAX, "k:%V%Z",
                     &ctx->who.key_id);
        n++;
    }

    if (!ctx->mcf->global.off && ctx->mcf->global.set) {
        checks[n].rate = &ctx->mcf->global;
        checks[n].dbi = ctx->mcf->counters.dbi;
        ngx_cpystrn((u_char *) checks[n].key, (u_char *) "g", 2);
        n++;
    }

    if (n == 0) {
        return NGX_OK;
    }

    return creor_rl_run(r, ctx, checks, n);
}


/* requests without valid credentials, by client address: key guessing */

ngx_int_t
creor_ratelimit_anonymous(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    ngx_creor_loc_conf_t  *lcf;
    creor_rl_check_t       check;

    lcf = ngx_http_get_module_loc_conf(r, ngx_creor_module);

    if (lcf->anonymous.off) {
        return NGX_OK;
    }

    check.rate = &lcf->anonymous;
    check.dbi = ctx->mcf->counters_anon;
    ngx_snprintf((u_char *) check.key, CREOR_STORE_KEY_MAX, "a:%V%Z",
                 &r->connection->addr_text);

    return creor_rl_run(r, ctx, &check, 1);
}


/*
 * GCRA: a request at "now" moves the arrival time to max(tat, now) plus
 * one interval; it is admitted while that stays within capacity
 * intervals of now.  A fresh "60r/m burst=10" admits 70 at once, then
 * one a second.
 */

static ngx_int_t
creor_rl_run(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_rl_check_t *checks, ngx_uint_t n)
{
    int                     rc;
    int64_t                 now;
    ngx_uint_t              i, denied;
    ngx_creor_main_conf_t  *mcf;

    mcf = ctx->mcf;
    now = creor_now_us();

    if (mcf->rl && checks[0].dbi != mcf->counters_anon) {
        rc = creor_rl_shared(mcf, checks, n, now, &denied);

    } else {
        rc = creor_rl_update(mcf, checks, n, now, &denied);
    }

    /*
     * A credential's counter never waits for room: anonymous counters
     * make way, then idle ones; should the map still be full, the
     * request goes uncounted rather than failing.
     */

    if (rc == CREOR_STORE_FULL && ctx->authenticated && mcf->rl == NULL) {
        creor_rl_relieve(mcf, r->connection->log, now);
        rc = creor_rl_update(mcf, checks, n, now, &denied);
    }

    if (rc != CREOR_STORE_OK) {

        if (!ctx->authenticated || rc == CREOR_STORE_FULL) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "creor: rate limit counters failed (%d), "
                          "request not counted", rc);

            /* a request without valid credentials keeps its 401 */

            return NGX_OK;
        }

        return creor_fail_store(r, rc);
    }

    if (creor_rl_headers(r, ctx, &checks[0], now) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!denied) {
        return NGX_OK;
    }

    for (i = 0; i < n; i++) {
        if (checks[i].retry > checks[0].retry) {
            checks[0].retry = checks[i].retry;
        }
    }

    ctx->retry_after = (ngx_uint_t) ((checks[0].retry + 999999) / 1000000);

    if (ctx->retry_after == 0) {
        ctx->retry_after = 1;
    }

    return creor_fail(r, NGX_HTTP_TOO_MANY_REQUESTS, "RATE_LIMIT_EXCEEDED",
                      NULL, "Rate limit exceeded; retry in %ui s.",
                      ctx->retry_after);
}


/* one write transaction: every limit checked, all updated or none */

static int
creor_rl_update(ngx_creor_main_conf_t *mcf, creor_rl_check_t *checks,
    ngx_uint_t n, int64_t now, ngx_uint_t *denied)
{
    int                rc;
    int64_t            tat;
    MDB_txn           *txn;
    ngx_uint_t         i;
    creor_rl_check_t  *c;

    *denied = 0;

    rc = creor_store_write(&mcf->counters, &txn);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    for (i = 0; i < n; i++) {
        c = &checks[i];

        rc = creor_counter_get(txn, c->dbi, c->key, ngx_strlen(c->key),
                               &tat);

        c->found = (rc == CREOR_STORE_OK);

        if (rc != CREOR_STORE_OK && rc != CREOR_STORE_NOTFOUND) {
            creor_store_abort(txn);
            return rc;
        }

        *denied |= creor_rl_gcra(c, tat, now);
    }

    if (*denied) {
        creor_store_abort(txn);
        return CREOR_STORE_OK;
    }

    for (i = 0; i < n; i++) {
        c = &checks[i];

        if (!c->found && c->dbi == mcf->counters_anon) {
            rc = creor_rl_evict(mcf, txn, now);
            if (rc != CREOR_STORE_OK) {
                creor_store_abort(txn);
                return rc;
            }
        }

        rc = creor_counter_put(txn, c->dbi, c->key, ngx_strlen(c->key),
                               c->tat);
        if (rc != CREOR_STORE_OK) {
            creor_store_abort(txn);
            return rc;
        }
    }

    return creor_store_commit(txn);
}


/* one limit at "now" from the stored tat (0: none); 1 if denied */

static ngx_uint_t
creor_rl_gcra(creor_rl_check_t *c, int64_t tat, int64_t now)
{
    int64_t  limit;

    c->interval = (int64_t) c->rate->period_ms * 1000 / c->rate->count;
    c->capacity = (int64_t) c->rate->count + c->rate->burst;

    if (tat < now) {
        tat = now;
    }

    limit = now + c->capacity * c->interval;

    if (tat + c->interval > limit) {
        c->retry = tat + c->interval - limit;
        c->remaining = 0;
        c->tat = tat;
        return 1;
    }

    c->tat = tat + c->interval;
    c->retry = 0;
    c->remaining = (limit - c->tat) / c->interval;

    return 0;
}


/*
 * The credential's and the global limit in the shared table, all
 * updated or none, under the locks of their buckets.  A key the table
 * lacks is read from the environment with no lock held, then installed
 * unless a key left its bucket meanwhile (its tat, written back before
 * it left, may be newer than the one read): then it is read again.
 */

static int
creor_rl_shared(ngx_creor_main_conf_t *mcf, creor_rl_check_t *checks,
    ngx_uint_t n, int64_t now, ngx_uint_t *denied)
{
    int                rc;
    ngx_uint_t         i, try, missing;
    creor_rl_check_t  *c;

    *denied = 0;

    for (i = 0; i < n; i++) {
        c = &checks[i];

        c->len = ngx_strlen(c->key);

        if (c->len >= CREOR_RL_KEY_LEN) {
            return creor_rl_update(mcf, checks, n, now, denied);
        }

        c->bucket = &mcf->rl->buckets[ngx_crc32_short((u_char *) c->key,
                                                      c->len)
                                      % mcf->rl->nbuckets];
        c->loaded = 0;
    }

    for (try = 0; try < CREOR_RL_TRIES; try++) {

        creor_rl_lock(checks, n);

        missing = 0;

        for (i = 0; i < n; i++) {
            c = &checks[i];
            c->full = 0;
            c->way = creor_rl_find(c);

            if (c->way == NULL && c->loaded && c->gen == c->bucket->gen) {
                c->way = creor_rl_install(c, now);
                c->full = (c->way == NULL);
            }

            if (c->way == NULL) {
                c->gen = c->bucket->gen;
                c->loaded = 0;
                missing = 1;
            }
        }

        if (!missing) {
            for (i = 0; i < n; i++) {
                *denied |= creor_rl_gcra(&checks[i], checks[i].way->tat, now);
            }

            if (!*denied) {
                for (i = 0; i < n; i++) {
                    checks[i].way->tat = checks[i].tat;
                }
            }

            creor_rl_unlock(checks, n);
            return CREOR_STORE_OK;
        }

        creor_rl_unlock(checks, n);

        /* a bucket of busy counters not yet written back: write them */

        for (i = 0; i < n; i++) {
            if (checks[i].full) {
                (void) creor_rl_flush(mcf, checks[i].bucket, 1, now,
                                      ngx_cycle->log);
            }
        }

        rc = creor_rl_load(mcf, checks, n);
        if (rc != CREOR_STORE_OK) {
            return rc;
        }
    }

    /* the buckets kept changing under us: uncounted, with a warning */

    return CREOR_STORE_FULL;
}


static creor_rl_way_t *
creor_rl_find(creor_rl_check_t *c)
{
    creor_rl_way_t  *w, *last;

    w = c->bucket->ways;

    for (last = w + CREOR_RL_WAYS; w < last; w++) {
        if (w->len == c->len && ngx_memcmp(w->key, c->key, c->len) == 0) {
            return w;
        }
    }

    return NULL;
}


/*
 * A way for the key just read: a free one, else one that carries no
 * information (its bucket is full again, or the environment has its
 * tat), the soonest idle first.  None: every counter of the bucket is
 * busy and not written back yet.
 */

static creor_rl_way_t *
creor_rl_install(creor_rl_check_t *c, int64_t now)
{
    creor_rl_way_t  *w, *last, *victim;

    victim = NULL;
    w = c->bucket->ways;

    for (last = w + CREOR_RL_WAYS; w < last; w++) {

        if (w->len == 0) {
            victim = w;
            break;
        }

        if ((w->tat <= now || w->tat <= w->flushed)
            && (victim == NULL || w->tat < victim->tat))
        {
            victim = w;
        }
    }

    if (victim == NULL) {
        return NULL;
    }

    if (victim->len) {
        c->bucket->gen++;
    }

    victim->tat = c->stored;
    victim->flushed = c->stored;
    victim->len = (uint32_t) c->len;
    ngx_memcpy(victim->key, c->key, c->len);

    return victim;
}


/* the stored tat of the keys the table lacks: one read transaction */

static int
creor_rl_load(ngx_creor_main_conf_t *mcf, creor_rl_check_t *checks,
    ngx_uint_t n)
{
    int                rc;
    MDB_txn           *txn;
    ngx_uint_t         i;
    creor_rl_check_t  *c;

    txn = creor_store_read(&mcf->counters);
    if (txn == NULL) {
        return CREOR_STORE_ERROR;
    }

    rc = CREOR_STORE_OK;

    for (i = 0; i < n; i++) {
        c = &checks[i];

        if (c->way) {
            continue;
        }

        rc = creor_counter_get(txn, mcf->counters.dbi, c->key, c->len,
                               &c->stored);

        if (rc != CREOR_STORE_OK && rc != CREOR_STORE_NOTFOUND) {
            break;
        }

        rc = CREOR_STORE_OK;
        c->loaded = 1;
    }

    creor_store_read_done(&mcf->counters);

    return rc;
}


/* buckets in address order, so two workers never wait for each other */

static void
creor_rl_lock(creor_rl_check_t *checks, ngx_uint_t n)
{
    if (n == 2 && checks[1].bucket < checks[0].bucket) {
        creor_rl_spin(checks[1].bucket);
        creor_rl_spin(checks[0].bucket);
        return;
    }

    creor_rl_spin(checks[0].bucket);

    if (n == 2 && checks[1].bucket != checks[0].bucket) {
        creor_rl_spin(checks[1].bucket);
    }
}


static void
creor_rl_unlock(creor_rl_check_t *checks, ngx_uint_t n)
{
    ngx_memory_barrier();

    checks[0].bucket->lock = 0;

    if (n == 2) {
        checks[1].bucket->lock = 0;
    }
}


/*
 * The lock is held for a few comparisons and stores, never across a
 * system call.  A holder killed with the lock (the pid in it is gone) is
 * taken over, as nginx does with its own shared mutexes.
 */

static void
creor_rl_spin(creor_rl_bucket_t *b)
{
    ngx_uint_t         spins;
    ngx_atomic_uint_t  pid;

    for (spins = 1; /* void */; spins++) {

        pid = b->lock;

        if (pid == 0
            && ngx_atomic_cmp_set(&b->lock, 0, (ngx_atomic_uint_t) ngx_pid))
        {
            return;
        }

        if (spins % 256) {
            ngx_cpu_pause();
            continue;
        }

        if (pid != 0 && kill((ngx_pid_t) pid, 0) == -1
            && ngx_errno == NGX_ESRCH
            && ngx_atomic_cmp_set(&b->lock, pid,
                                  (ngx_atomic_uint_t) ngx_pid))
        {
            return;
        }

        ngx_sched_yield();
    }
}


/*
 * Write-back, once a second from whichever worker comes first: what
 * changed in the table since it was last written, except counters whose
 * bucket is full again (an older tat in the environment means the same).
 */

static void
creor_rl_flush_timer(ngx_event_t *ev)
{
    int64_t                 now;
    ngx_msec_t              ms, last;
    ngx_creor_main_conf_t  *mcf;

    mcf = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ms = ngx_current_msec;
    last = mcf->rl->flushed_ms;

    if (ms - last >= CREOR_RL_FLUSH - CREOR_RL_FLUSH / 10
        && ngx_atomic_cmp_set(&mcf->rl->flushed_ms, last, ms))
    {
        now = creor_now_us();

        if (creor_rl_flush(mcf, mcf->rl->buckets, mcf->rl->nbuckets, now,
                           ev->log)
            != CREOR_STORE_OK)
        {
            ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                          "creor: rate limit counters not written back");
        }
    }

    ngx_add_timer(ev, CREOR_RL_FLUSH);
}


static int
creor_rl_flush(ngx_creor_main_conf_t *mcf, creor_rl_bucket_t *from,
    ngx_uint_t nbuckets, int64_t now, ngx_log_t *log)
{
    int                 rc, failed;
    ngx_uint_t          i, j, k, n;
    creor_rl_way_t     *w;
    creor_rl_dirty_t   *d;
    creor_rl_bucket_t  *b;

    static creor_rl_dirty_t  dirty[CREOR_RL_BATCH];

    failed = CREOR_STORE_OK;
    n = 0;

    for (i = 0; i <= nbuckets; i++) {

        if (i < nbuckets) {
            b = &from[i];

            /* an unlocked look first: most buckets have nothing to write */

            for (j = 0; j < CREOR_RL_WAYS; j++) {
                w = &b->ways[j];

                if (w->len && w->tat > w->flushed && w->tat > now) {
                    break;
                }
            }

            if (j == CREOR_RL_WAYS) {
                continue;
            }

            if (n + CREOR_RL_WAYS <= CREOR_RL_BATCH) {
                creor_rl_spin(b);

                for (j = 0; j < CREOR_RL_WAYS; j++) {
                    w = &b->ways[j];

                    if (w->len && w->tat > w->flushed && w->tat > now) {
                        d = &dirty[n++];
                        d->bucket = b;
                        d->len = w->len;
                        ngx_memcpy(d->key, w->key, w->len);
                        d->tat = w->tat;
                    }
                }

                ngx_memory_barrier();
                b->lock = 0;

                continue;
            }

            /* the batch is full: write it, then look at this bucket again */

            i--;
        }

        if (n == 0) {
            continue;
        }

        rc = creor_rl_write(mcf, dirty, n, log);

        if (rc != CREOR_STORE_OK) {
            failed = rc;
            n = 0;
            continue;
        }

        /* written: the ways that still hold what was written are clean */

        for (k = 0; k < n; k++) {
            d = &dirty[k];
            b = d->bucket;

            creor_rl_spin(b);

            for (j = 0; j < CREOR_RL_WAYS; j++) {
                w = &b->ways[j];

                if (w->len == d->len && ngx_memcmp(w->key, d->key, d->len) == 0
                    && w->flushed < d->tat)
                {
                    w->flushed = d->tat;
                }
            }

            ngx_memory_barrier();
            b->lock = 0;
        }

        n = 0;
    }

    return failed;
}


/* one write transaction; a stored tat larger than ours is kept */

static int
creor_rl_write(ngx_creor_main_conf_t *mcf, creor_rl_dirty_t *dirty,
    ngx_uint_t n, ngx_log_t *log)
{
    int          rc;
    int64_t      stored;
    MDB_txn     *txn;
    ngx_uint_t   i, retried;

    for (retried = 0; /* void */; retried++) {

        rc = creor_store_write(&mcf->counters, &txn);
        if (rc != CREOR_STORE_OK) {
            return rc;
        }

        for (i = 0; i < n; i++) {
            rc = creor_counter_get(txn, mcf->counters.dbi, dirty[i].key,
                                   dirty[i].len, &stored);

            if (rc == CREOR_STORE_OK && stored >= dirty[i].tat) {
                continue;
            }

            if (rc != CREOR_STORE_OK && rc != CREOR_STORE_NOTFOUND) {
                break;
            }

            rc = creor_counter_put(txn, mcf->counters.dbi, dirty[i].key,
                                   dirty[i].len, dirty[i].tat);
            if (rc != CREOR_STORE_OK) {
                break;
            }
        }

        if (rc == CREOR_STORE_OK) {
            rc = creor_store_commit(txn);

        } else {
            creor_store_abort(txn);
        }

        /* credentials' counters make room: anonymous and idle ones go */

        if (rc != CREOR_STORE_FULL || retried) {
            return rc;
        }

        creor_rl_relieve(mcf, log, creor_now_us());
    }
}


/*
 * Room for one more anonymous counter once there are as many as allowed:
 * from where the last eviction stopped, a few counters are visited; the
 * idle ones (bucket full again) go, or if none is, the one that will be
 * idle soonest.  Bounded work, whatever the number of addresses.
 */

static int
creor_rl_evict(ngx_creor_main_conf_t *mcf, MDB_txn *txn, int64_t now)
{
    int            rc;
    size_t         n, victim_len;
    int64_t        tat, soonest;
    ngx_uint_t     i, evicted;
    creor_scan_t   sc;
    u_char         victim[CREOR_STORE_KEY_MAX];
    static size_t  from_len;
    static u_char  from[CREOR_STORE_KEY_MAX];

    rc = creor_counters_entries(txn, mcf->counters_anon, &n);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    if (n < mcf->counters_anon_max) {
        return CREOR_STORE_OK;
    }

    rc = creor_scan_open_dbi(txn, mcf->counters_anon, &sc, "", 0,
                             (char *) from, from_len);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    evicted = 0;
    victim_len = 0;
    soonest = INT64_MAX;

    for (i = 0; i < CREOR_RL_EVICT_SAMPLE; i++) {

        /* past the last counter, the walk goes on from the first */

        rc = creor_scan_next(&sc);

        if (rc == 0) {
            creor_scan_rewind(&sc);
            rc = creor_scan_next(&sc);
        }

        if (rc != 1) {
            break;
        }

        if (creor_ratelimit_expired(&sc.val, now)) {
            rc = creor_scan_del(&sc);
            if (rc != CREOR_STORE_OK) {
                from_len = 0;
                creor_scan_close(&sc);
                return rc;
            }

            evicted++;

        } else if (sc.key.mv_size <= sizeof(victim)) {
            ngx_memcpy(&tat, sc.val.mv_data, sizeof(int64_t));

            if (tat < soonest) {
                soonest = tat;
                victim_len = sc.key.mv_size;
                ngx_memcpy(victim, sc.key.mv_data, sc.key.mv_size);
            }
        }
    }

    /* the next eviction starts where this one stopped */

    from_len = 0;

    if (i == CREOR_RL_EVICT_SAMPLE) {
        rc = creor_scan_next(&sc);

        if (rc == 0) {
            creor_scan_rewind(&sc);
            rc = creor_scan_next(&sc);
        }

        if (rc == 1 && sc.key.mv_size <= sizeof(from)) {
            from_len = sc.key.mv_size;
            ngx_memcpy(from, sc.key.mv_data, sc.key.mv_size);
        }
    }

    creor_scan_close(&sc);

    if (rc == -1) {
        return CREOR_STORE_ERROR;
    }

    if (evicted || victim_len == 0) {
        return CREOR_STORE_OK;
    }

    return creor_counter_del(txn, mcf->counters_anon, (char *) victim,
                             victim_len);
}


/* the counters map is full: anonymous counters go, then idle ones */

static void
creor_rl_relieve(ngx_creor_main_conf_t *mcf, ngx_log_t *log, int64_t now)
{
    size_t        n;
    static char   from[CREOR_STORE_KEY_MAX];

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "creor: rate limit counters are full, "
                  "dropping the anonymous ones");

    (void) creor_counters_drop(&mcf->counters, mcf->counters_anon);

    (void) creor_store_purge(&mcf->counters, "k:", from,
                             CREOR_RL_PURGE_BATCH, now, creor_ratelimit_expired,
                             &n);
}


/*
 * X-RateLimit-* (seed 001) and the IETF RateLimit fields.  Every
 * authenticated response carries five of them: the numbers are written
 * by hand, ngx_sprintf() would cost more than the counter's transaction.
 */

static ngx_int_t
creor_rl_headers(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_rl_check_t *c, int64_t now)
{
    u_char      *p, *start, *end[5];
    int64_t      reset;
    ngx_str_t    v;
    ngx_uint_t   i;

    static const char  *names[5] = {
        "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
        "RateLimit-Policy", "RateLimit"
    };

    p = ngx_pnalloc(r->pool, 5 * NGX_INT64_LEN + 64);
    if (p == NULL) {
        return NGX_ERROR;
    }

    /* seconds until the bucket is full again */

    reset = (c->tat - now + 999999) / 1000000;

    /* the values one after the other, then a header for each */

    start = p;

    p = creor_rl_int(p, c->capacity);
    end[0] = p;

    p = creor_rl_int(p, c->remaining);
    end[1] = p;

    p = creor_rl_int(p, now / 1000000 + reset);
    end[2] = p;

    p = ngx_cpymem(p, "\"default\";q=", sizeof("\"default\";q=") - 1);
    p = creor_rl_int(p, c->capacity);
    p = ngx_cpymem(p, ";w=", sizeof(";w=") - 1);
    p = creor_rl_int(p, c->rate->period_ms / 1000);
    end[3] = p;

    p = ngx_cpymem(p, "\"default\";r=", sizeof("\"default\";r=") - 1);
    p = creor_rl_int(p, c->remaining);
    p = ngx_cpymem(p, ";t=", sizeof(";t=") - 1);
    p = creor_rl_int(p, reset);
    end[4] = p;

    for (i = 0; i < 5; i++) {
        v.data = start;
        v.len = end[i] - start;
        start = end[i];

        if (i == 1) {
            ctx->ratelimit_remaining = v;
        }

        if (creor_add_header(r, names[i], &v) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* decimal of a non-negative number; a negative one is written as 0 */

static u_char *
creor_rl_int(u_char *p, int64_t n)
{
    u_char  *s;
    u_char   tmp[NGX_INT64_LEN];

    s = tmp + sizeof(tmp);

    do {
        *--s = (u_char) ('0' + (n > 0 ? n % 10 : 0));
        n /= 10;
    } while (n > 0);

    return ngx_cpymem(p, s, tmp + sizeof(tmp) - s);
}


/*
 * Counters whose bucket is full again are the same as no counter: the
 * housekeeping purges them with it (ngx_creor_module.c), credentials',
 * anonymous ones, and "a:" ones in the main database left by versions
 * before "anon".
 */

static int
creor_ratelimit_expired(const MDB_val *val, int64_t now)
{
    int64_t  tat;

    if (val->mv_size != sizeof(int64_t)) {
        return 1;
    }

    ngx_memcpy(&tat, val->mv_data, sizeof(int64_t));

    return tat < now;
}


ngx_int_t
creor_ratelimit_init(ngx_creor_main_conf_t *mcf, ngx_log_t *log)
{
    int  rc;

    mcf->counters_anon_max = mcf->counters_size / CREOR_RL_ANON_COST;

    rc = creor_counters_open(&mcf->counters, "anon", &mcf->counters_anon);

    if (rc != CREOR_STORE_OK) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "creor_store: cannot open the anonymous counters (%d)",
                      rc);
        return NGX_ERROR;
    }

    if (mcf->rl) {
        mcf->rl_timer.handler = creor_rl_flush_timer;
        mcf->rl_timer.data = mcf;
        mcf->rl_timer.log = log;
        mcf->rl_timer.cancelable = 1;

        ngx_add_timer(&mcf->rl_timer, CREOR_RL_FLUSH);
    }

    return NGX_OK;
}


/* a worker that stops writes back whatever changed: a stop loses nothing */

void
creor_ratelimit_exit(ngx_creor_main_conf_t *mcf, ngx_log_t *log)
{
    if (mcf->rl == NULL) {
        return;
    }

    if (creor_rl_flush(mcf, mcf->rl->buckets, mcf->rl->nbuckets,
                       creor_now_us(), log)
        != CREOR_STORE_OK)
    {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "creor: rate limit counters not written back");
    }
}


/*
 * The shared table outlives a reload: a zone of its own, sized with the
 * counters map (2048 buckets, 16384 counters in about 1 MB, from 256m).
 */

ngx_int_t
creor_ratelimit_zone(ngx_conf_t *cf, ngx_creor_main_conf_t *mcf,
    size_t counters_size)
{
    size_t            size;
    ngx_uint_t        n;
    static ngx_str_t  name = ngx_string("creor_counters");

    n = counters_size / CREOR_RL_BUCKET_MAP;
    n = ngx_max(n, CREOR_RL_BUCKETS_MIN);
    n = ngx_min(n, CREOR_RL_BUCKETS_MAX);

    mcf->rl_buckets = n;
    size = offsetof(creor_rl_table_t, buckets) + n * sizeof(creor_rl_bucket_t);

    mcf->counters_zone = ngx_shared_memory_add(cf, &name, size + 64 * 1024,
                                               &ngx_creor_module);
    if (mcf->counters_zone == NULL) {
        return NGX_ERROR;
    }

    mcf->counters_zone->init = creor_rl_init_zone;
    mcf->counters_zone->data = mcf;

    return NGX_OK;
}


static ngx_int_t
creor_rl_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_creor_main_conf_t  *omcf = data;

    ngx_slab_pool_t        *shpool;
    ngx_creor_main_conf_t  *mcf;

    mcf = shm_zone->data;

    mcf->rl = creor_zone_data(shm_zone, omcf ? omcf->rl : NULL);

    if (mcf->rl) {
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    mcf->rl = ngx_slab_calloc(shpool, offsetof(creor_rl_table_t, buckets)
                                      + mcf->rl_buckets
                                        * sizeof(creor_rl_bucket_t));
    if (mcf->rl == NULL) {
        return NGX_ERROR;
    }

    mcf->rl->nbuckets = mcf->rl_buckets;

    shpool->data = mcf->rl;

    return NGX_OK;
}


/* "rate [burst=n] | off" */

char *
creor_rate_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char        *p;
    ngx_str_t     *value, s;
    creor_rate_t  *rt;

    rt = (creor_rate_t *) ((u_char *) conf + cmd->offset);

    if (rt->set) {
        return "is duplicate";
    }

    rt->set = 1;
    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        rt->off = 1;
        return NGX_CONF_OK;
    }

    s.len = value[1].len + (cf->args->nelts == 3 ? value[2].len + 1 : 0);
    s.data = ngx_pnalloc(cf->pool, s.len);
    if (s.data == NULL) {
        return NGX_CONF_ERROR;
    }

    p = ngx_cpymem(s.data, value[1].data, value[1].len);

    if (cf->args->nelts == 3) {
        *p++ = ' ';
        ngx_memcpy(p, value[2].data, value[2].len);
    }

    if (creor_rate_parse((char *) s.data, s.len, &rt->count, &rt->period_ms,
                         &rt->burst)
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid rate \"%V\" in \"%V\", "
                           "use \"<n>r/s|m|h [burst=<n>]\" or \"off\"",
                           &s, &cmd->name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
