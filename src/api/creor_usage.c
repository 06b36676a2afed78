
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Usage metering (SPEC 9.3, 10): aggregates per organization, day,
 * project, key, agent and model, "u:" records of the main store.
 *
 * Chat completions are added to a bounded table of the worker and
 * written once a second, in one transaction for the whole table, so
 * metering costs a completion a lookup in memory, not a commit.  Runs
 * add theirs in the very transaction that makes them terminal.
 * docs/architecture.md explains what a crash can lose.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_USAGE_BATCH        256    /* distinct aggregates a second */
#define CREOR_USAGE_INTERVAL     1000   /* ms between writes */
#define CREOR_USAGE_DAYS         30     /* the default range */
#define CREOR_USAGE_RANGE_MAX    366    /* days of one query */
#define CREOR_DAY_MS             86400000LL


typedef struct {
    char                    key[CREOR_USAGE_KEY_MAX];
    size_t                  len;
    uint32_t                hash;
    creor_usage_rec_t       rec;
} creor_usage_entry_t;


typedef struct {
    ngx_str_node_t          sn;
    creor_usage_rec_t       rec;
} creor_usage_group_t;


static ngx_int_t creor_usage_flush_batch(ngx_log_t *log);
static void creor_usage_timer(ngx_event_t *ev);
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


/* the worker's table: at most CREOR_USAGE_BATCH entries, always */

static creor_usage_entry_t     creor_usage_batch[CREOR_USAGE_BATCH];
static ngx_uint_t              creor_usage_n;
static ngx_creor_main_conf_t  *creor_usage_mcf;
static ngx_event_t             creor_usage_event;


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
 * Adds a finished completion to the worker's table; the timer writes
 * it within CREOR_USAGE_INTERVAL.  A full table is written first; if
 * that fails too the completion is not counted (and logged): memory
 * stays bounded whatever the store does.
 */

ngx_int_t
creor_usage_add(ngx_creor_main_conf_t *mcf, creor_usage_t *u, ngx_log_t *log)
{
    char                  key[CREOR_USAGE_KEY_MAX];
    size_t                len;
    int64_t               ms;
    uint32_t              hash;
    ngx_uint_t            i;
    creor_usage_dims_t    d;
    creor_usage_entry_t  *e;

    static int64_t        day = -1;
    static char           today[CREOR_USAGE_DAY_LEN + 1];

    d.data[CREOR_USAGE_ORG] = (char *) u->org.data;
    d.len[CREOR_USAGE_ORG] = u->org.len;
    d.data[CREOR_USAGE_PROJECT] = (char *) u->project.data;
    d.len[CREOR_USAGE_PROJECT] = u->project.len;
    d.data[CREOR_USAGE_KEY] = (char *) u->key_id.data;
    d.len[CREOR_USAGE_KEY] = u->key_id.len;
    d.data[CREOR_USAGE_AGENT] = (char *) u->agent.data;
    d.len[CREOR_USAGE_AGENT] = u->agent.len;
    d.data[CREOR_USAGE_MODEL] = (char *) u->model.data;
    d.len[CREOR_USAGE_MODEL] = u->model.len;

    /* gmtime_r() once a day, not once a completion */

    ms = u->time_ms ? u->time_ms : creor_now_ms();

    if (ms / 86400000 != day || day == -1) {
        day = ms / 86400000;
        creor_usage_day(today, ms);
    }

    ngx_memcpy(d.day, today, sizeof(d.day));

    if (creor_usage_key(key, &len, &d) != CREOR_STORE_OK) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "creor: usage of \"%V\" not counted: bad dimensions",
                      &u->org);
        return NGX_ERROR;
    }

    hash = ngx_crc32_long((u_char *) key, len);

    for (i = 0; i < creor_usage_n; i++) {
        e = &creor_usage_batch[i];

        if (e->hash == hash && e->len == len
            && ngx_memcmp(e->key, key, len) == 0)
        {
            goto found;
        }
    }

    if (creor_usage_n == CREOR_USAGE_BATCH
        && creor_usage_flush_batch(log) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "creor: usage of \"%V\" not counted: store failed",
                      &u->org);
        return NGX_ERROR;
    }

    creor_usage_mcf = mcf;

    e = &creor_usage_batch[creor_usage_n++];
    ngx_memcpy(e->key, key, len);
    e->len = len;
    e->hash = hash;
    ngx_memzero(&e->rec, sizeof(creor_usage_rec_t));

found:

    e->rec.requests += u->requests;
    e->rec.runs += u->runs;
    e->rec.input_tokens += u->input_tokens;
    e->rec.output_tokens += u->output_tokens;

    if (!creor_usage_event.timer_set) {
        creor_usage_event.handler = creor_usage_timer;
        creor_usage_event.log = ngx_cycle->log;
        creor_usage_event.cancelable = 1;
        ngx_add_timer(&creor_usage_event, CREOR_USAGE_INTERVAL);
    }

    return NGX_OK;
}


/* what the worker has not written yet: on exit, before the store closes */

void
creor_usage_flush(ngx_log_t *log)
{
    if (creor_usage_event.timer_set) {
        ngx_del_timer(&creor_usage_event);
    }

    (void) creor_usage_flush_batch(log);
}


/*
 * One transaction for the whole table, committed as the store commits
 * (synced with sync=on): a failed one leaves the table as it was, so no
 * completion is counted twice or lost to a passing error.
 */

static ngx_int_t
creor_usage_flush_batch(ngx_log_t *log)
{
    int             rc;
    MDB_txn        *txn;
    ngx_uint_t      i;
    creor_store_t  *st;

    if (creor_usage_n == 0 || creor_usage_mcf == NULL
        || !creor_usage_mcf->opened)
    {
        return NGX_OK;
    }

    st = &creor_usage_mcf->store;

    rc = creor_store_write(st, &txn);

    if (rc == CREOR_STORE_OK) {
        for (i = 0; i < creor_usage_n; i++) {
            rc = creor_usage_merge(st, txn, creor_usage_batch[i].key,
                                   creor_usage_batch[i].len,
                                   &creor_usage_batch[i].rec);
            if (rc != CREOR_STORE_OK) {
                creor_store_abort(txn);
                break;
            }
        }
    }

    if (rc == CREOR_STORE_OK) {
        rc = creor_store_commit(txn);
    }

    if (rc != CREOR_STORE_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "creor: writing %ui usage records failed: %d",
                      creor_usage_n, rc);
        return NGX_ERROR;
    }

    creor_usage_n = 0;

    return NGX_OK;
}


static void
creor_usage_timer(ngx_event_t *ev)
{
    if (creor_usage_flush_batch(ev->log) != NGX_OK && creor_usage_n) {
        ngx_add_timer(ev, CREOR_USAGE_INTERVAL);
    }
}


/*
 * A run that reached a terminal state, in the transaction that put it
 * there: counted exactly when that commit succeeds.
 */

ngx_int_t
creor_usage_run(creor_store_t *st, MDB_txn *txn, creor_run_t *run)
{
    char                key[CREOR_USAGE_KEY_MAX];
    size_t              len;
    creor_json_t       *v;
    creor_usage_rec_t   rec;
    creor_usage_dims_t  d;

    ngx_memzero(&d, sizeof(creor_usage_dims_t));

    d.data[CREOR_USAGE_ORG] = run->hdr.org;
    d.len[CREOR_USAGE_ORG] = ngx_strlen(run->hdr.org);
    d.data[CREOR_USAGE_PROJECT] = run->hdr.project;
    d.len[CREOR_USAGE_PROJECT] = ngx_strlen(run->hdr.project);
    d.data[CREOR_USAGE_AGENT] = run->hdr.agent;
    d.len[CREOR_USAGE_AGENT] = ngx_strlen(run->hdr.agent);

    v = creor_json_get(run->doc, "keyId");

    if (v && v->type == CREOR_JSON_STRING) {
        d.data[CREOR_USAGE_KEY] = (char *) v->str.data;
        d.len[CREOR_USAGE_KEY] = v->str.len;
    }

    /* the run's chatModelId overrides the agent's model (SPEC 9.4) */

    v = creor_json_get(run->doc, "chatModelId");

    if (v == NULL || v->type != CREOR_JSON_STRING || v->str.len == 0) {
        v = creor_json_get(run->doc, "agentModel");
    }

    if (v && v->type == CREOR_JSON_STRING) {
        d.data[CREOR_USAGE_MODEL] = (char *) v->str.data;
        d.len[CREOR_USAGE_MODEL] = v->str.len;
    }

    creor_usage_day(d.day, run->hdr.completed_ms);

    if (creor_usage_key(key, &len, &d) != CREOR_STORE_OK) {
        return CREOR_STORE_ERROR;
    }

    ngx_memzero(&rec, sizeof(creor_usage_rec_t));
    rec.runs = 1;
    rec.input_tokens = run->hdr.input_tokens;
    rec.output_tokens = run->hdr.output_tokens;

    return creor_usage_merge(st, txn, key, len, &rec);
}


/*
 * GET /v1/usage?start=&end=&group_by=: one range scan of the caller's
 * organization, from its first day to its last, grouped in memory.
 */

ngx_int_t
creor_usage_get(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int                   rc;
    char                  first[CREOR_USAGE_DAY_LEN + 1];
    char                  last[CREOR_USAGE_DAY_LEN + 1];
    size_t                plen;
    int64_t               start, end, now;
    MDB_val               k, v;
    MDB_txn              *txn;
    yajl_gen              g;
    ngx_str_t             name, s;
    ngx_int_t             has_start, has_end;
    ngx_uint_t            by, i;
    MDB_cursor           *cur;
    ngx_array_t           groups;
    creor_arg_t          *arg;
    ngx_rbtree_t          tree;
    creor_store_t        *st;
    ngx_rbtree_node_t     sentinel;
    creor_usage_rec_t     rec, totals;
    creor_usage_dims_t    d;
    creor_usage_group_t **gr;
    u_char                prefix[CREOR_STORE_KEY_MAX];

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

    if (ngx_array_init(&groups, r->pool, 16, sizeof(creor_usage_group_t *))
        != NGX_OK)
    {
        creor_store_read_done(st);
        return NGX_ERROR;
    }

    ngx_rbtree_init(&tree, &sentinel, ngx_str_rbtree_insert_value);

    plen = ngx_snprintf(prefix, sizeof(prefix), "u:%V:", &ctx->who.org)
           - prefix;

    if (mdb_cursor_open(txn, st->dbi, &cur) != 0) {
        creor_store_read_done(st);
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    k.mv_data = prefix;
    k.mv_size = ngx_cpymem(prefix + plen, first, CREOR_USAGE_DAY_LEN)
                - prefix;

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        if (k.mv_size <= plen + CREOR_USAGE_DAY_LEN
            || ngx_memcmp(k.mv_data, prefix, plen) != 0
            || ngx_memcmp((u_char *) k.mv_data + plen, last,
                          CREOR_USAGE_DAY_LEN)
               > 0)
        {
            break;
        }

        if (v.mv_size != sizeof(creor_usage_rec_t)
            || creor_usage_parse(k.mv_data, k.mv_size, &d) != CREOR_STORE_OK)
        {
            continue;
        }

        creor_usage_dims_str(&d, CREOR_USAGE_PROJECT, &s);

        if (ctx->who.project.len
            && (s.len != ctx->who.project.len
                || ngx_strncmp(s.data, ctx->who.project.data, s.len) != 0))
        {
            continue;
        }

        creor_usage_dims_str(&d, CREOR_USAGE_AGENT, &s);

        if (ctx->who.app.len
            && (s.len != ctx->who.app.len
                || ngx_strncmp(s.data, ctx->who.app.data, s.len) != 0))
        {
            continue;
        }

        if (by == 0) {
            name.data = (u_char *) d.day;
            name.len = CREOR_USAGE_DAY_LEN;

        } else {
            creor_usage_dims_str(&d, creor_usage_group_dim[by], &name);

            /* the store may have been written by another tool */

            if (!creor_utf8_valid(name.data, name.len)) {
                name.len = 0;
            }
        }

        ngx_memcpy(&rec, v.mv_data, sizeof(creor_usage_rec_t));

        if (creor_usage_group(r->pool, &tree, &groups, &name, &rec)
            != NGX_OK)
        {
            mdb_cursor_close(cur);
            creor_store_read_done(st);
            return NGX_ERROR;
        }
    }

    mdb_cursor_close(cur);
    creor_store_read_done(st);

    if (rc != 0 && rc != MDB_NOTFOUND) {
        return creor_fail_store(r, creor_store_rc(rc));
    }

    ngx_qsort(groups.elts, groups.nelts, sizeof(creor_usage_group_t *),
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
    gr = groups.elts;

    for (i = 0; i < groups.nelts; i++) {
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
