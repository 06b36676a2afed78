
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Rate limits (SPEC 7): GCRA, one theoretical arrival time per limited
 * thing, in a second LMDB environment opened without fsync (a counter
 * lost with the machine is harmless).  Every limit a request is subject
 * to is checked and updated in one write transaction, so the limit is
 * exact whichever worker each request lands on.
 *
 * Counters of credentials live in the environment's main database; those
 * of client addresses (requests without valid credentials) in the named
 * database "anon", bounded to a share of the map: a flood of new
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


typedef struct {
    creor_rate_t   *rate;
    MDB_dbi         dbi;
    ngx_uint_t      found;
    char            key[CREOR_STORE_KEY_MAX];
    int64_t         interval;       /* microseconds per request */
    int64_t         capacity;       /* count + burst */
    int64_t         tat;            /* new theoretical arrival time */
    int64_t         remaining;
    int64_t         retry;          /* microseconds until admitted */
} creor_rl_check_t;


static ngx_int_t creor_rl_run(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_rl_check_t *checks, ngx_uint_t n);
static int creor_rl_update(ngx_creor_main_conf_t *mcf,
    creor_rl_check_t *checks, ngx_uint_t n, int64_t now, ngx_uint_t *denied);
static int creor_rl_evict(ngx_creor_main_conf_t *mcf, MDB_txn *txn,
    int64_t now);
static void creor_rl_relieve(ngx_creor_main_conf_t *mcf, ngx_log_t *log,
    int64_t now);
static int creor_rl_expired(const MDB_val *val, int64_t now);
static ngx_int_t creor_rl_headers(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, creor_rl_check_t *c, int64_t now);
static u_char *creor_rl_int(u_char *p, int64_t n);
static int64_t creor_now_us(void);


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

    rc = creor_rl_update(mcf, checks, n, now, &denied);

    /*
     * A credential's counter never waits for room: anonymous counters
     * make way, then idle ones; should the map still be full, the
     * request goes uncounted rather than failing.
     */

    if (rc == CREOR_STORE_FULL && ctx->authenticated) {
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
    int64_t            tat, limit;
    MDB_val            key, val;
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

        c->interval = (int64_t) c->rate->period_ms * 1000 / c->rate->count;
        c->capacity = (int64_t) c->rate->count + c->rate->burst;

        key.mv_data = c->key;
        key.mv_size = ngx_strlen(c->key);

        tat = now;

        rc = creor_store_rc(mdb_get(txn, c->dbi, &key, &val));

        c->found = (rc == CREOR_STORE_OK);

        if (rc == CREOR_STORE_OK && val.mv_size == sizeof(int64_t)) {
            ngx_memcpy(&tat, val.mv_data, sizeof(int64_t));

            if (tat < now) {
                tat = now;
            }

        } else if (rc != CREOR_STORE_OK && rc != CREOR_STORE_NOTFOUND) {
            creor_store_abort(txn);
            return rc;
        }

        limit = now + c->capacity * c->interval;

        if (tat + c->interval > limit) {
            c->retry = tat + c->interval - limit;
            c->remaining = 0;
            c->tat = tat;
            *denied = 1;
            continue;
        }

        c->tat = tat + c->interval;
        c->retry = 0;
        c->remaining = (limit - c->tat) / c->interval;
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

        key.mv_data = c->key;
        key.mv_size = ngx_strlen(c->key);
        val.mv_data = &c->tat;
        val.mv_size = sizeof(int64_t);

        rc = creor_store_rc(mdb_put(txn, c->dbi, &key, &val, 0));
        if (rc != CREOR_STORE_OK) {
            creor_store_abort(txn);
            return rc;
        }
    }

    return creor_store_commit(txn);
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
    size_t         victim_len;
    int64_t        tat, soonest;
    MDB_val        k, v;
    MDB_stat       st;
    ngx_uint_t     i, evicted;
    MDB_cursor    *cur;
    u_char         victim[CREOR_STORE_KEY_MAX];
    static size_t  from_len;
    static u_char  from[CREOR_STORE_KEY_MAX];

    rc = mdb_stat(txn, mcf->counters_anon, &st);
    if (rc != 0) {
        return creor_store_rc(rc);
    }

    if (st.ms_entries < mcf->counters_anon_max) {
        return CREOR_STORE_OK;
    }

    rc = mdb_cursor_open(txn, mcf->counters_anon, &cur);
    if (rc != 0) {
        return creor_store_rc(rc);
    }

    k.mv_data = from;
    k.mv_size = from_len;

    rc = from_len ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
                  : MDB_NOTFOUND;

    if (rc == MDB_NOTFOUND) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }

    evicted = 0;
    victim_len = 0;
    soonest = INT64_MAX;

    for (i = 0; rc == 0 && i < CREOR_RL_EVICT_SAMPLE; i++) {

        if (creor_rl_expired(&v, now)) {
            rc = mdb_cursor_del(cur, 0);
            if (rc != 0) {
                break;
            }

            evicted++;

        } else if (k.mv_size <= sizeof(victim)) {
            ngx_memcpy(&tat, v.mv_data, sizeof(int64_t));

            if (tat < soonest) {
                soonest = tat;
                victim_len = k.mv_size;
                ngx_memcpy(victim, k.mv_data, k.mv_size);
            }
        }

        /* after a deletion the cursor is on the next entry already */

        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);

        if (rc == MDB_NOTFOUND) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        }
    }

    from_len = 0;

    if (rc == 0 && k.mv_size <= sizeof(from)) {
        from_len = k.mv_size;
        ngx_memcpy(from, k.mv_data, k.mv_size);
    }

    mdb_cursor_close(cur);

    if (rc != 0 && rc != MDB_NOTFOUND) {
        return creor_store_rc(rc);
    }

    if (evicted || victim_len == 0) {
        return CREOR_STORE_OK;
    }

    k.mv_data = victim;
    k.mv_size = victim_len;

    return creor_store_rc(mdb_del(txn, mcf->counters_anon, &k, NULL));
}


/* the counters map is full: anonymous counters go, then idle ones */

static void
creor_rl_relieve(ngx_creor_main_conf_t *mcf, ngx_log_t *log, int64_t now)
{
    size_t        n;
    MDB_txn      *txn;
    static char   from[CREOR_STORE_KEY_MAX];

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "creor: rate limit counters are full, "
                  "dropping the anonymous ones");

    if (creor_store_write(&mcf->counters, &txn) == CREOR_STORE_OK) {
        if (mdb_drop(txn, mcf->counters_anon, 0) == 0) {
            (void) creor_store_commit(txn);

        } else {
            creor_store_abort(txn);
        }
    }

    (void) creor_store_purge(&mcf->counters, "k:", from,
                             CREOR_RL_PURGE_BATCH, now, creor_rl_expired,
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
    u_char     *p;
    int64_t     reset;
    ngx_str_t   v;

    p = ngx_pnalloc(r->pool, 5 * NGX_INT64_LEN + 64);
    if (p == NULL) {
        return NGX_ERROR;
    }

    /* seconds until the bucket is full again */

    reset = (c->tat - now + 999999) / 1000000;

    v.data = p;
    p = creor_rl_int(p, c->capacity);
    v.len = p - v.data;

    if (creor_add_header(r, "X-RateLimit-Limit", &v) != NGX_OK) {
        return NGX_ERROR;
    }

    v.data = p;
    p = creor_rl_int(p, c->remaining);
    v.len = p - v.data;
    ctx->ratelimit_remaining = v;

    if (creor_add_header(r, "X-RateLimit-Remaining", &v) != NGX_OK) {
        return NGX_ERROR;
    }

    v.data = p;
    p = creor_rl_int(p, now / 1000000 + reset);
    v.len = p - v.data;

    if (creor_add_header(r, "X-RateLimit-Reset", &v) != NGX_OK) {
        return NGX_ERROR;
    }

    v.data = p;
    p = ngx_cpymem(p, "\"default\";q=", sizeof("\"default\";q=") - 1);
    p = creor_rl_int(p, c->capacity);
    p = ngx_cpymem(p, ";w=", sizeof(";w=") - 1);
    p = creor_rl_int(p, c->rate->period_ms / 1000);
    v.len = p - v.data;

    if (creor_add_header(r, "RateLimit-Policy", &v) != NGX_OK) {
        return NGX_ERROR;
    }

    v.data = p;
    p = ngx_cpymem(p, "\"default\";r=", sizeof("\"default\";r=") - 1);
    p = creor_rl_int(p, c->remaining);
    p = ngx_cpymem(p, ";t=", sizeof(";t=") - 1);
    p = creor_rl_int(p, reset);
    v.len = p - v.data;

    return creor_add_header(r, "RateLimit", &v);
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


/* counters whose bucket is full again are the same as no counter */

static int
creor_rl_expired(const MDB_val *val, int64_t now)
{
    int64_t  tat;

    if (val->mv_size != sizeof(int64_t)) {
        return 1;
    }

    ngx_memcpy(&tat, val->mv_data, sizeof(int64_t));

    return tat < now;
}


/*
 * Idle counters a batch a turn: credentials', anonymous ones, and "a:"
 * ones in the main database left by versions before "anon".  Named
 * databases of other features in the environment are not visited.
 */

void
creor_ratelimit_purge(ngx_creor_main_conf_t *mcf, ngx_log_t *log)
{
    size_t          n;
    ngx_uint_t      i;
    creor_store_t   anon;

    static struct {
        const char   *prefix;
        ngx_uint_t    anon;
        char          from[CREOR_STORE_KEY_MAX];
    } parts[] = {
        { "k:", 0, "" },
        { "a:", 0, "" },
        { "", 1, "" }
    };

    /* the same environment, seen through the anonymous database */

    anon = mcf->counters;
    anon.dbi = mcf->counters_anon;

    for (i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        if (creor_store_purge(parts[i].anon ? &anon : &mcf->counters,
                              parts[i].prefix, parts[i].from,
                              CREOR_RL_PURGE_BATCH, creor_now_us(),
                              creor_rl_expired, &n)
            != CREOR_STORE_OK)
        {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "creor: counter purge failed");
        }
    }
}


ngx_int_t
creor_ratelimit_init(ngx_creor_main_conf_t *mcf, ngx_log_t *log)
{
    int       rc;
    MDB_txn  *txn;

    mcf->counters_anon_max = mcf->counters_size / CREOR_RL_ANON_COST;

    rc = creor_store_write(&mcf->counters, &txn);

    if (rc == CREOR_STORE_OK) {
        rc = creor_store_rc(mdb_dbi_open(txn, "anon", MDB_CREATE,
                                         &mcf->counters_anon));
        if (rc == CREOR_STORE_OK) {
            rc = creor_store_commit(txn);

        } else {
            creor_store_abort(txn);
        }
    }

    if (rc != CREOR_STORE_OK) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "creor_store: cannot open the anonymous counters (%d)",
                      rc);
        return NGX_ERROR;
    }

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


static int64_t
creor_now_us(void)
{
    struct timeval  tv;

    ngx_gettimeofday(&tv);

    return (int64_t) tv.tv_sec * 1000000 + tv.tv_usec;
}
