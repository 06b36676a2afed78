
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Rate limits (SPEC 7): GCRA, one theoretical arrival time per limited
 * thing, in a second LMDB environment opened without fsync (a counter
 * lost with the machine is harmless).  Every limit a request is subject
 * to is checked and updated in one write transaction, so the limit is
 * exact whichever worker each request lands on.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_RL_PURGE_BATCH  2000


typedef struct {
    creor_rate_t   *rate;
    char            key[CREOR_STORE_KEY_MAX];
    int64_t         interval;       /* microseconds per request */
    int64_t         capacity;       /* count + burst */
    int64_t         tat;            /* new theoretical arrival time */
    int64_t         remaining;
    int64_t         retry;          /* microseconds until admitted */
} creor_rl_check_t;


static ngx_int_t creor_rl_run(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_rl_check_t *checks, ngx_uint_t n);
static ngx_int_t creor_rl_headers(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, creor_rl_check_t *c, int64_t now);
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
            ngx_snprintf((u_char *) checks[n].key, CREOR_STORE_KEY_MAX,
                         "k:%V%Z", &ctx->who.key_id);
            n++;
        }

    } else if (!lcf->rate.off) {
        checks[n].rate = &lcf->rate;
        ngx_snprintf((u_char *) checks[n].key, CREOR_STORE_KEY_MAX, "k:%V%Z",
                     &ctx->who.key_id);
        n++;
    }

    if (!ctx->mcf->global.off && ctx->mcf->global.set) {
        checks[n].rate = &ctx->mcf->global;
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
    int                rc;
    int64_t            now, tat, limit;
    MDB_val            val;
    MDB_txn           *txn;
    ngx_uint_t         i, denied;
    creor_store_t     *st;
    creor_rl_check_t  *c;

    st = &ctx->mcf->counters;

    rc = creor_store_write(st, &txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    now = creor_now_us();
    denied = 0;

    for (i = 0; i < n; i++) {
        c = &checks[i];

        c->interval = (int64_t) c->rate->period_ms * 1000 / c->rate->count;
        c->capacity = (int64_t) c->rate->count + c->rate->burst;

        tat = now;

        rc = creor_store_get(st, txn, c->key, &val);

        if (rc == CREOR_STORE_OK && val.mv_size == sizeof(int64_t)) {
            ngx_memcpy(&tat, val.mv_data, sizeof(int64_t));

            if (tat < now) {
                tat = now;
            }

        } else if (rc != CREOR_STORE_OK && rc != CREOR_STORE_NOTFOUND) {
            mdb_txn_abort(txn);
            return creor_fail_store(r, rc);
        }

        limit = now + c->capacity * c->interval;

        if (tat + c->interval > limit) {
            c->retry = tat + c->interval - limit;
            c->remaining = 0;
            c->tat = tat;
            denied = 1;
            continue;
        }

        c->tat = tat + c->interval;
        c->retry = 0;
        c->remaining = (limit - c->tat) / c->interval;
    }

    if (denied) {
        mdb_txn_abort(txn);

    } else {
        for (i = 0; i < n; i++) {
            rc = creor_store_put(st, txn, checks[i].key, &checks[i].tat,
                                 sizeof(int64_t), 0);
            if (rc != CREOR_STORE_OK) {
                mdb_txn_abort(txn);
                return creor_fail_store(r, rc);
            }
        }

        rc = creor_store_commit(txn);
        if (rc != CREOR_STORE_OK) {
            return creor_fail_store(r, rc);
        }
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


/* X-RateLimit-* (seed 001) and the IETF RateLimit fields */

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
    v.len = ngx_sprintf(p, "%L", c->capacity) - p;
    p += v.len;

    if (creor_add_header(r, "X-RateLimit-Limit", &v) != NGX_OK) {
        return NGX_ERROR;
    }

    v.data = p;
    v.len = ngx_sprintf(p, "%L", c->remaining) - p;
    p += v.len;
    ctx->ratelimit_remaining = v;

    if (creor_add_header(r, "X-RateLimit-Remaining", &v) != NGX_OK) {
        return NGX_ERROR;
    }

    v.data = p;
    v.len = ngx_sprintf(p, "%L", now / 1000000 + reset) - p;
    p += v.len;

    if (creor_add_header(r, "X-RateLimit-Reset", &v) != NGX_OK) {
        return NGX_ERROR;
    }

    v.data = p;
    v.len = ngx_sprintf(p, "\"default\";q=%L;w=%uD", c->capacity,
                        c->rate->period_ms / 1000) - p;
    p += v.len;

    if (creor_add_header(r, "RateLimit-Policy", &v) != NGX_OK) {
        return NGX_ERROR;
    }

    v.data = p;
    v.len = ngx_sprintf(p, "\"default\";r=%L;t=%L", c->remaining, reset) - p;

    return creor_add_header(r, "RateLimit", &v);
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


void
creor_ratelimit_purge(ngx_creor_main_conf_t *mcf, ngx_log_t *log)
{
    size_t       n;
    static char  from[CREOR_STORE_KEY_MAX];

    if (creor_store_purge(&mcf->counters, "", from, CREOR_RL_PURGE_BATCH,
                          creor_now_us(), creor_rl_expired, &n)
        != CREOR_STORE_OK)
    {
        ngx_log_error(NGX_LOG_WARN, log, 0, "creor: counter purge failed");
    }
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
