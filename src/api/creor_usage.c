
/*
 * Copyright (C) ngx_creor_module authors
 *
 * GET /v1/usage (SPEC 9.3, 10): the caller's usage aggregates over a range
 * of days, grouped by day, model, key or agent.  The records and the
 * meter that writes them: src/model/creor_usage*.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_USAGE_DAYS         30     /* the default range */
#define CREOR_USAGE_RANGE_MAX    366    /* days of one query */
#define CREOR_DAY_MS             86400000LL


typedef struct {
    ngx_str_node_t          sn;
    creor_usage_rec_t       rec;
} creor_usage_group_t;


/* a range walk's groups, by group_by */
typedef struct {
    ngx_creor_ctx_t        *ctx;
    ngx_pool_t             *pool;
    ngx_rbtree_t            tree;
    ngx_rbtree_node_t       sentinel;
    ngx_array_t             groups;     /* of creor_usage_group_t * */
    ngx_uint_t              by;
} creor_usage_walk_t;


static ngx_int_t creor_usage_each(creor_usage_dims_t *d,
    creor_usage_rec_t *rec, void *data);
static void creor_usage_dims_str(creor_usage_dims_t *d, ngx_uint_t i,
    ngx_str_t *s);
static ngx_int_t creor_usage_time_arg(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, const char *name, ngx_flag_t end, int64_t *ms);
static ngx_int_t creor_usage_parse_time(ngx_str_t *s, ngx_flag_t end,
    int64_t *ms);
static int64_t creor_usage_days(int64_t y, ngx_uint_t m, ngx_uint_t d);
static ngx_int_t creor_usage_group(ngx_pool_t *pool, ngx_rbtree_t *tree,
    ngx_array_t *groups, ngx_str_t *name, creor_usage_rec_t *rec);
static int ngx_libc_cdecl creor_usage_cmp(const void *a, const void *b);
static void creor_usage_counts(yajl_gen g, creor_usage_rec_t *rec);
static void creor_usage_gen_date(yajl_gen g, u_char *day);


static const char  *creor_usage_group_by[] = {
    "day", "model", "key", "agent", NULL
};

/* the group's name in the answer, by group_by */
static const char  *creor_usage_group_field[] = {
    "date", "model", "key_id", "agent_id"
};

static const ngx_uint_t  creor_usage_group_dim[] = {
    0, CREOR_USAGE_MODEL, CREOR_USAGE_KEY, CREOR_USAGE_AGENT
};


/*
 * GET /v1/usage?start=&end=&group_by=: one range scan of the caller's
 * organization, from its first day to its last, grouped in memory.
 */

ngx_int_t
creor_usage_get(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    char                  first[CREOR_USAGE_DAY_LEN + 1];
    char                  last[CREOR_USAGE_DAY_LEN + 1];
    int64_t               start, end, now;
    MDB_txn              *txn;
    yajl_gen              g;
    ngx_str_t             name;
    ngx_int_t             rc, has_start, has_end;
    ngx_uint_t            by, i;
    creor_arg_t          *arg;
    creor_store_t        *st;
    creor_usage_rec_t     totals;
    creor_usage_walk_t    w;
    creor_usage_group_t **gr;

    by = 0;
    arg = creor_arg(ctx, "group_by");

    if (arg) {
        for (by = 0; creor_usage_group_by[by]; by++) {
            if (ngx_strlen(creor_usage_group_by[by]) == arg->value.len
                && ngx_strncmp(creor_usage_group_by[by], arg->value.data,
                               arg->value.len)
                   == 0)
            {
                break;
            }
        }

        if (creor_usage_group_by[by] == NULL) {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                              "group_by", "'group_by' must be day, model, "
                              "key or agent.");
        }
    }

    now = creor_now_ms();

    has_start = creor_usage_time_arg(r, ctx, "start", 0, &start);
    has_end = creor_usage_time_arg(r, ctx, "end", 1, &end);

    if (has_start == NGX_ERROR || has_end == NGX_ERROR) {
        return NGX_DECLINED;
    }

    /* the last 30 days, today included, unless told otherwise */

    if (has_end == NGX_DECLINED) {
        end = (has_start == NGX_DECLINED || start <= now) ? now : start;
    }

    if (has_start == NGX_DECLINED) {
        start = end - end % CREOR_DAY_MS
                - (CREOR_USAGE_DAYS - 1) * CREOR_DAY_MS;
    }

    if (start > end) {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                          "start", "'start' is after 'end'.");
    }

    if (end / CREOR_DAY_MS - start / CREOR_DAY_MS >= CREOR_USAGE_RANGE_MAX) {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                          "end", "The range is at most %d days.",
                          CREOR_USAGE_RANGE_MAX);
    }

    creor_usage_day(first, start);
    creor_usage_day(last, end);

    st = &ctx->mcf->store;

    txn = creor_store_read(st);
    if (txn == NULL) {
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    /* X-Project-Id narrows an organization key's view; a bound key's is */

    if (creor_scope_project(r, ctx, txn) != NGX_OK) {
        creor_store_read_done(st);
        return NGX_DECLINED;
    }

    w.ctx = ctx;
    w.pool = r->pool;
    w.by = by;

    if (ngx_array_init(&w.groups, r->pool, 16, sizeof(creor_usage_group_t *))
        != NGX_OK)
    {
        creor_store_read_done(st);
        return NGX_ERROR;
    }

    ngx_rbtree_init(&w.tree, &w.sentinel, ngx_str_rbtree_insert_value);

    rc = creor_usage_range(st, txn, &ctx->who.org, first, last,
                           creor_usage_each, &w);

    creor_store_read_done(st);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc != NGX_OK) {
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    ngx_qsort(w.groups.elts, w.groups.nelts, sizeof(creor_usage_group_t *),
              creor_usage_cmp);

    g = creor_gen_create(r);
    if (g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    yajl_gen_map_open(g);
    creor_gen_kv(g, "object", "usage");
    creor_gen_kv(g, "group_by", creor_usage_group_by[by]);

    creor_gen_str(g, "start");
    creor_usage_gen_date(g, (u_char *) first);
    creor_gen_str(g, "end");
    creor_usage_gen_date(g, (u_char *) last);

    creor_gen_str(g, "data");
    yajl_gen_array_open(g);

    ngx_memzero(&totals, sizeof(creor_usage_rec_t));
    gr = w.groups.elts;

    for (i = 0; i < w.groups.nelts; i++) {
        yajl_gen_map_open(g);
        creor_gen_str(g, creor_usage_group_field[by]);

        name = gr[i]->sn.str;

        if (by == 0) {
            creor_usage_gen_date(g, name.data);

        } else if (name.len) {
            creor_gen_ngx_str(g, &name);

        } else {
            yajl_gen_null(g);
        }

        creor_usage_counts(g, &gr[i]->rec);
        yajl_gen_map_close(g);

        totals.requests += gr[i]->rec.requests;
        totals.runs += gr[i]->rec.runs;
        totals.input_tokens += gr[i]->rec.input_tokens;
        totals.output_tokens += gr[i]->rec.output_tokens;
    }

    yajl_gen_array_close(g);

    creor_gen_str(g, "totals");
    yajl_gen_map_open(g);
    creor_usage_counts(g, &totals);
    yajl_gen_map_close(g);

    yajl_gen_map_close(g);

    return creor_send_json(r, NGX_HTTP_OK, g);
}


/* an aggregate the caller sees, added to its group */

static ngx_int_t
creor_usage_each(creor_usage_dims_t *d, creor_usage_rec_t *rec, void *data)
{
    creor_usage_walk_t *w = data;

    ngx_str_t          name, s;
    ngx_creor_ctx_t   *ctx;

    ctx = w->ctx;

    creor_usage_dims_str(d, CREOR_USAGE_PROJECT, &s);

    if (ctx->who.project.len
        && (s.len != ctx->who.project.len
            || ngx_strncmp(s.data, ctx->who.project.data, s.len) != 0))
    {
        return NGX_OK;
    }

    creor_usage_dims_str(d, CREOR_USAGE_AGENT, &s);

    if (ctx->who.app.len
        && (s.len != ctx->who.app.len
            || ngx_strncmp(s.data, ctx->who.app.data, s.len) != 0))
    {
        return NGX_OK;
    }

    if (w->by == 0) {
        name.data = (u_char *) d->day;
        name.len = CREOR_USAGE_DAY_LEN;

    } else {
        creor_usage_dims_str(d, creor_usage_group_dim[w->by], &name);

        /* the store may have been written by another tool */

        if (!creor_utf8_valid(name.data, name.len)) {
            name.len = 0;
        }
    }

    return creor_usage_group(w->pool, &w->tree, &w->groups, &name, rec);
}


static void
creor_usage_dims_str(creor_usage_dims_t *d, ngx_uint_t i, ngx_str_t *s)
{
    s->data = (u_char *) d->data[i];
    s->len = d->len[i];
}


/* NGX_OK and *ms, NGX_DECLINED if absent, NGX_ERROR (failed) if bad */

static ngx_int_t
creor_usage_time_arg(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    const char *name, ngx_flag_t end, int64_t *ms)
{
    creor_arg_t  *arg;

    arg = creor_arg(ctx, name);

    if (arg == NULL) {
        return NGX_DECLINED;
    }

    if (creor_usage_parse_time(&arg->value, end, ms) != NGX_OK) {
        creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR", name,
                   "'%s' must be an RFC 3339 date or time, "
                   "e.g. 2026-01-15 or 2026-01-15T08:00:00Z.", name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * "yyyy-mm-dd" (its first millisecond, or its last one for an end) or
 * "yyyy-mm-ddThh:mm:ss[.fraction](Z|+hh:mm|-hh:mm)", as ms since 1970.
 */

static ngx_int_t
creor_usage_parse_time(ngx_str_t *s, ngx_flag_t end, int64_t *ms)
{
    u_char      *p, *last;
    int64_t      t, off;
    ngx_uint_t   i, n, v[6], mdays;

    static const ngx_uint_t  widths[] = { 4, 2, 2, 2, 2, 2 };
    static const u_char      seps[] = "--T::";
    static const ngx_uint_t  month_days[] = {
        31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
    };

    p = s->data;
    last = p + s->len;

    for (i = 0; i < 6; i++) {

        if (i == 3 && p == last) {
            break;
        }

        if (i > 0) {
            if (p == last
                || (*p != seps[i - 1]
                    && !(i == 3 && (*p == 't' || *p == ' '))))
            {
                return NGX_ERROR;
            }

            p++;
        }

        v[i] = 0;

        for (n = 0; n < widths[i]; n++, p++) {
            if (p == last || *p < '0' || *p > '9') {
                return NGX_ERROR;
            }

            v[i] = v[i] * 10 + (*p - '0');
        }
    }

    if (v[1] < 1 || v[1] > 12 || v[2] < 1) {
        return NGX_ERROR;
    }

    mdays = month_days[v[1] - 1];

    if (v[1] == 2
        && v[0] % 4 == 0 && (v[0] % 100 != 0 || v[0] % 400 == 0))
    {
        mdays = 29;
    }

    if (v[2] > mdays) {
        return NGX_ERROR;
    }

    t = creor_usage_days(v[0], v[1], v[2]) * CREOR_DAY_MS;

    if (i == 3) {
        *ms = end ? t + CREOR_DAY_MS - 1 : t;
        return NGX_OK;
    }

    if (v[3] > 23 || v[4] > 59 || v[5] > 60) {
        return NGX_ERROR;
    }

    t += ((int64_t) v[3] * 3600 + v[4] * 60 + v[5]) * 1000;

    if (p < last && *p == '.') {
        for (p++, n = 0; p < last && *p >= '0' && *p <= '9'; p++, n++) {
            if (n < 3) {
                t += (*p - '0') * (n == 0 ? 100 : (n == 1 ? 10 : 1));
            }
        }

        if (n == 0) {
            return NGX_ERROR;
        }
    }

    if (p < last && (*p == 'Z' || *p == 'z')) {
        p++;
        off = 0;

    } else if (last - p == 6 && (*p == '+' || *p == '-') && p[3] == ':'
               && p[1] >= '0' && p[1] <= '2' && p[2] >= '0' && p[2] <= '9'
               && p[4] >= '0' && p[4] <= '5' && p[5] >= '0' && p[5] <= '9')
    {
        off = ((p[1] - '0') * 10 + (p[2] - '0')) * 60
              + (p[4] - '0') * 10 + (p[5] - '0');

        if (off > 23 * 60 + 59) {
            return NGX_ERROR;
        }

        t -= (*p == '+' ? off : -off) * 60000;
        p += 6;

    } else {
        return NGX_ERROR;
    }

    if (p != last) {
        return NGX_ERROR;
    }

    *ms = t;

    return NGX_OK;
}


/* days since 1970-01-01 of a proleptic Gregorian date */

static int64_t
creor_usage_days(int64_t y, ngx_uint_t m, ngx_uint_t d)
{
    int64_t  era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + doe - 719468;
}


static ngx_int_t
creor_usage_group(ngx_pool_t *pool, ngx_rbtree_t *tree, ngx_array_t *groups,
    ngx_str_t *name, creor_usage_rec_t *rec)
{
    uint32_t              hash;
    ngx_str_node_t       *sn;
    creor_usage_group_t  *gr, **p;

    hash = ngx_crc32_short(name->data, name->len);
    sn = ngx_str_rbtree_lookup(tree, name, hash);

    if (sn) {
        gr = (creor_usage_group_t *) sn;

    } else {
        gr = ngx_pcalloc(pool, sizeof(creor_usage_group_t));
        if (gr == NULL) {
            return NGX_ERROR;
        }

        gr->sn.str.data = ngx_pstrdup(pool, name);
        if (gr->sn.str.data == NULL && name->len) {
            return NGX_ERROR;
        }

        gr->sn.str.len = name->len;
        gr->sn.node.key = hash;
        ngx_rbtree_insert(tree, &gr->sn.node);

        p = ngx_array_push(groups);
        if (p == NULL) {
            return NGX_ERROR;
        }

        *p = gr;
    }

    gr->rec.requests += rec->requests;
    gr->rec.runs += rec->runs;
    gr->rec.input_tokens += rec->input_tokens;
    gr->rec.output_tokens += rec->output_tokens;

    return NGX_OK;
}


static int ngx_libc_cdecl
creor_usage_cmp(const void *a, const void *b)
{
    ngx_int_t             rc;
    creor_usage_group_t  *x, *y;

    x = *(creor_usage_group_t **) a;
    y = *(creor_usage_group_t **) b;

    rc = ngx_memn2cmp(x->sn.str.data, y->sn.str.data, x->sn.str.len,
                      y->sn.str.len);

    return rc < 0 ? -1 : (rc > 0 ? 1 : 0);
}


static void
creor_usage_counts(yajl_gen g, creor_usage_rec_t *rec)
{
    creor_gen_kv_int(g, "requests", rec->requests);
    creor_gen_kv_int(g, "runs", rec->runs);
    creor_gen_kv_int(g, "input_tokens", rec->input_tokens);
    creor_gen_kv_int(g, "output_tokens", rec->output_tokens);
    creor_gen_kv_int(g, "total_tokens",
                     rec->input_tokens + rec->output_tokens);
}


/* "yyyymmdd" of a key as "yyyy-mm-dd" */

static void
creor_usage_gen_date(yajl_gen g, u_char *day)
{
    u_char  date[sizeof("yyyy-mm-dd") - 1];

    ngx_memcpy(date, day, 4);
    date[4] = '-';
    ngx_memcpy(date + 5, day + 4, 2);
    date[7] = '-';
    ngx_memcpy(date + 8, day + 6, 2);

    yajl_gen_string(g, date, sizeof(date));
}
