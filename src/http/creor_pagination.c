
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Lists (SPEC 5).  A cursor is an opaque token naming a record in the
 * store ("c:<token>") that holds the organization, the route, a hash of
 * the filters and the store key of the last item sent; the next page
 * starts strictly after that key, so inserts and deletes between pages
 * never repeat or skip an item that existed throughout the walk.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/sha.h>

#include "ngx_creor.h"


#define CREOR_CURSOR_PREFIX     "cur_"
#define CREOR_CURSOR_LEN        (4 + CREOR_SECRET_B62_LEN)
#define CREOR_PURGE_BATCH       1000


typedef struct {
    int64_t     expires_ms;
    char        org[CREOR_ID_MAX];
    char        route[32];
    uint8_t     filters[SHA256_DIGEST_LENGTH];
    uint8_t     desc;
    uint8_t     reserved;
    uint16_t    after_len;
    char        after[CREOR_STORE_KEY_MAX];
} creor_cursor_rec_t;


static ngx_int_t creor_cursor_load(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, creor_page_t *pg, ngx_str_t *token);
static ngx_flag_t creor_cursor_valid(ngx_str_t *token);
static ngx_int_t creor_cursor_save(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, creor_page_t *pg, MDB_val *last);
static void creor_cursor_init(ngx_creor_ctx_t *ctx, creor_page_t *pg,
    creor_cursor_rec_t *rec);


/*
 * A list handler's preamble and its page: the collection or index under
 * the prefix fmt makes (ngx_sprintf()'s; NULL: pg->prefix is set), with
 * pg's filters, index and modes if pg is given; item as for
 * creor_page_send().
 */

ngx_int_t
creor_page_list(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_page_t *pg, creor_page_item_pt item, const char *fmt, ...)
{
    u_char        *p;
    va_list        args;
    creor_page_t   plain;

    if (pg == NULL) {
        ngx_memzero(&plain, sizeof(creor_page_t));
        pg = &plain;
    }

    if (fmt) {
        p = ngx_pnalloc(r->pool, CREOR_STORE_KEY_MAX);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        va_start(args, fmt);
        pg->prefix.len = ngx_vslprintf(p, p + CREOR_STORE_KEY_MAX, fmt, args)
                         - p;
        va_end(args);

        pg->prefix.data = p;
    }

    if (creor_page_parse(r, ctx, pg, pg->pages) != NGX_OK) {
        return NGX_DECLINED;
    }

    return creor_page_send(r, ctx, pg, item);
}


/*
 * pg->prefix and pg->filters are set by the caller; this reads limit,
 * order, cursor and (where allowed) page.
 */

ngx_int_t
creor_page_parse(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_page_t *pg, ngx_flag_t page_mode_allowed)
{
    u_char       *p;
    ngx_int_t     rc;
    creor_arg_t  *order, *cursor;

    pg->limit = 20;
    pg->desc = 1;

    /* a cursor resumes in the index it was made in */

    p = ngx_pnalloc(r->pool, pg->filters.len + 1 + pg->prefix.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    pg->filters.len = ngx_sprintf(p, "%V|%V", &pg->filters, &pg->prefix) - p;
    pg->filters.data = p;

    rc = creor_arg_uint(r, ctx, "limit", 1, CREOR_LIST_MAX, &pg->limit);
    if (rc == NGX_ERROR) {
        return NGX_DECLINED;
    }

    order = creor_arg(ctx, "order");

    if (order) {
        if (order->value.len == 3
            && ngx_strncmp(order->value.data, "asc", 3) == 0)
        {
            pg->desc = 0;

        } else if (order->value.len != 4
                   || ngx_strncmp(order->value.data, "desc", 4) != 0)
        {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                              "order", "'order' must be asc or desc.");
        }
    }

    cursor = creor_arg(ctx, "cursor");

    if (page_mode_allowed) {
        rc = creor_arg_uint(r, ctx, "page", 1, 1000000, &pg->page);
        if (rc == NGX_ERROR) {
            return NGX_DECLINED;
        }

        if (rc == NGX_OK) {
            if (cursor) {
                return creor_fail(r, NGX_HTTP_BAD_REQUEST,
                                  "VALIDATION_ERROR", "page",
                                  "'page' and 'cursor' cannot be combined.");
            }

            pg->page_mode = 1;
        }
    }

    if (cursor) {
        return creor_cursor_load(r, ctx, pg, &cursor->value);
    }

    return NGX_OK;
}


static ngx_int_t
creor_cursor_load(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_page_t *pg, ngx_str_t *token)
{
    int                  rc;
    char                 key[CREOR_STORE_KEY_MAX];
    MDB_val              val;
    MDB_txn             *txn;
    creor_cursor_rec_t   want, *rec;

    if (!creor_cursor_valid(token)) {
        goto invalid;
    }

    ngx_snprintf((u_char *) key, sizeof(key), "c:%V%Z", token);

    txn = creor_store_read(&ctx->mcf->store);
    if (txn == NULL) {
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    rc = creor_store_get(&ctx->mcf->store, txn, key, &val);

    if (rc == CREOR_STORE_NOTFOUND) {
        creor_store_read_done(&ctx->mcf->store);
        goto invalid;
    }

    if (rc != CREOR_STORE_OK || val.mv_size != sizeof(creor_cursor_rec_t)) {
        creor_store_read_done(&ctx->mcf->store);
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    rec = ngx_palloc(r->pool, sizeof(creor_cursor_rec_t));
    if (rec == NULL) {
        creor_store_read_done(&ctx->mcf->store);
        return NGX_ERROR;
    }

    ngx_memcpy(rec, val.mv_data, sizeof(creor_cursor_rec_t));
    creor_store_read_done(&ctx->mcf->store);

    creor_cursor_init(ctx, pg, &want);

    if (rec->expires_ms < creor_now_ms()
        || ngx_strcmp(rec->org, want.org) != 0
        || ngx_strcmp(rec->route, want.route) != 0
        || ngx_memcmp(rec->filters, want.filters, sizeof(want.filters)) != 0
        || rec->desc != want.desc
        || rec->after_len > sizeof(rec->after))
    {
        goto invalid;
    }

    pg->after.data = (u_char *) rec->after;
    pg->after.len = rec->after_len;

    return NGX_OK;

invalid:

    return creor_fail(r, NGX_HTTP_BAD_REQUEST, "INVALID_CURSOR", "cursor",
                      "The cursor is invalid or expired, or was made for "
                      "other filters.");
}


/*
 * The form creor_cursor_save() makes: only such a token becomes part of
 * a store key (a NUL would end the key early).
 */

static ngx_flag_t
creor_cursor_valid(ngx_str_t *token)
{
    return token->len == CREOR_CURSOR_LEN
           && ngx_strncmp(token->data, CREOR_CURSOR_PREFIX, 4) == 0
           && creor_is_b62((char *) token->data + 4, token->len - 4);
}


/* what a cursor is bound to: organization, route, filters, order */

static void
creor_cursor_init(ngx_creor_ctx_t *ctx, creor_page_t *pg,
    creor_cursor_rec_t *rec)
{
    ngx_memzero(rec, sizeof(creor_cursor_rec_t));

    ngx_cpystrn((u_char *) rec->org, ctx->who.org.data,
                ngx_min(ctx->who.org.len + 1, sizeof(rec->org)));
    ngx_cpystrn((u_char *) rec->route, ctx->route_name.data,
                ngx_min(ctx->route_name.len + 1, sizeof(rec->route)));

    SHA256(pg->filters.data, pg->filters.len, rec->filters);

    rec->desc = (uint8_t) pg->desc;
}


static ngx_int_t
creor_cursor_save(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_page_t *pg, MDB_val *last)
{
    int                 rc;
    char                key[CREOR_STORE_KEY_MAX];
    u_char             *token;
    MDB_txn            *txn;
    uint8_t             raw[CREOR_SECRET_LEN];
    creor_cursor_rec_t  rec;

    if (last->mv_size > sizeof(rec.after)) {
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    creor_cursor_init(ctx, pg, &rec);
    rec.expires_ms = creor_now_ms() + CREOR_CURSOR_TTL;
    rec.after_len = (uint16_t) last->mv_size;
    ngx_memcpy(rec.after, last->mv_data, last->mv_size);

    token = ngx_pnalloc(r->pool, CREOR_CURSOR_LEN + 1);
    if (token == NULL || creor_random(raw, sizeof(raw)) != 0) {
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    ngx_memcpy(token, CREOR_CURSOR_PREFIX, 4);
    creor_base62((char *) token + 4, raw, sizeof(raw));

    pg->next_cursor.data = token;
    pg->next_cursor.len = CREOR_CURSOR_LEN;

    ngx_snprintf((u_char *) key, sizeof(key), "c:%s%Z", token);

    rc = creor_store_write(&ctx->mcf->store, &txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    rc = creor_store_put(&ctx->mcf->store, txn, key, &rec, sizeof(rec), 0);
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return creor_fail_store(r, rc);
    }

    rc = creor_store_commit(txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    return NGX_OK;
}


/*
 * Walks the collection or index under pg->prefix (an index's items are
 * looked up under pg->primary); item() with g == NULL only answers
 * whether an entry passes the filters (NGX_OK or NGX_DECLINED).  With an
 * exact index, page and offset modes take the total from its counter
 * and skip by its chunks: no walk longer than a page and two chunks.
 */

ngx_int_t
creor_page_send(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_page_t *pg, creor_page_item_pt item)
{
    int             rc;
    u_char         *end, *pk;
    uint64_t        total;
    yajl_gen        g;
    MDB_val         k, v, last, ik, iv;
    MDB_txn        *txn;
    ngx_int_t       pass;
    ngx_uint_t      sent, skip, pages;
    ngx_flag_t      counted;
    MDB_cursor     *cur;
    MDB_cursor_op   step;
    creor_store_t  *st;

    st = &ctx->mcf->store;

    g = creor_gen_create(r);
    if (g == NULL) {
        return NGX_ERROR;
    }

    /* the first key past the collection: prefix with its last byte + 1 */

    end = ngx_pnalloc(r->pool, pg->prefix.len + pg->primary.len
                               + CREOR_STORE_KEY_MAX);
    if (end == NULL) {
        return NGX_ERROR;
    }

    pk = end + pg->prefix.len;
    ngx_memcpy(pk, pg->primary.data, pg->primary.len);

    ngx_memcpy(end, pg->prefix.data, pg->prefix.len);
    end[pg->prefix.len - 1]++;

    txn = creor_store_read(st);
    if (txn == NULL || mdb_cursor_open(txn, st->dbi, &cur) != 0) {
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    skip = pg->page_mode ? (pg->page - 1) * pg->limit
                         : (pg->offset_mode ? pg->offset : 0);
    counted = pg->exact && (pg->page_mode || pg->offset_mode);

    if (counted) {
        if (creor_index_total(st, txn, (char *) pg->prefix.data,
                              pg->prefix.len, &total)
            != CREOR_STORE_OK)
        {
            mdb_cursor_close(cur);
            return creor_fail_store(r, CREOR_STORE_ERROR);
        }

        pg->total = (ngx_uint_t) total;
    }

    if (counted && skip) {
        rc = creor_index_seek(st, txn, cur, (char *) pg->prefix.data,
                              pg->prefix.len, skip, pg->desc, &k, &v);

        if (rc == CREOR_STORE_NOTFOUND) {
            rc = MDB_NOTFOUND;

        } else if (rc != CREOR_STORE_OK) {
            mdb_cursor_close(cur);
            return creor_fail_store(r, CREOR_STORE_ERROR);
        }

        skip = 0;

    } else {
        if (pg->after.len) {
            k.mv_data = pg->after.data;
            k.mv_size = pg->after.len;

        } else if (pg->desc) {
            k.mv_data = end;
            k.mv_size = pg->prefix.len;

        } else {
            k.mv_data = pg->prefix.data;
            k.mv_size = pg->prefix.len;
        }

        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);

        if (pg->desc) {
            rc = (rc == MDB_NOTFOUND) ? mdb_cursor_get(cur, &k, &v, MDB_LAST)
                                      : mdb_cursor_get(cur, &k, &v, MDB_PREV);

        } else if (rc == 0 && pg->after.len && k.mv_size == pg->after.len
                   && ngx_memcmp(k.mv_data, pg->after.data, k.mv_size) == 0)
        {
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
    }

    step = pg->desc ? MDB_PREV : MDB_NEXT;
    sent = 0;
    last.mv_size = 0;
    last.mv_data = NULL;

    yajl_gen_map_open(g);
    creor_gen_kv(g, "object", "list");
    creor_gen_str(g, "data");
    yajl_gen_array_open(g);

    for ( /* void */ ;
         rc == 0 && k.mv_size > pg->prefix.len
         && ngx_memcmp(k.mv_data, pg->prefix.data, pg->prefix.len) == 0;
         rc = mdb_cursor_get(cur, &k, &v, step))
    {
        ik = k;
        iv = v;

        if (pg->primary.len) {

            /* an index entry: the item is the record of its id */

            if (k.mv_size - pg->prefix.len > CREOR_STORE_KEY_MAX) {
                continue;
            }

            ngx_memcpy(pk + pg->primary.len,
                       (u_char *) k.mv_data + pg->prefix.len,
                       k.mv_size - pg->prefix.len);

            ik.mv_data = pk;
            ik.mv_size = pg->primary.len + k.mv_size - pg->prefix.len;

            if (mdb_get(txn, st->dbi, &ik, &iv) != 0) {
                continue;
            }
        }

        pass = item(r, ctx, &ik, &iv, NULL);

        if (pass == NGX_ERROR) {
            mdb_cursor_close(cur);
            return creor_fail_store(r, CREOR_STORE_ERROR);
        }

        if (pass != NGX_OK) {
            continue;
        }

        if (!counted) {
            pg->total++;
        }

        if (skip) {
            skip--;
            continue;
        }

        if (sent == pg->limit) {
            pg->has_more = 1;

            /* without a counter, page and offset modes count every item */

            if (counted || (!pg->page_mode && !pg->offset_mode)) {
                break;
            }

            continue;
        }

        if (item(r, ctx, &ik, &iv, g) != NGX_OK) {
            mdb_cursor_close(cur);
            return creor_fail_store(r, CREOR_STORE_ERROR);
        }

        sent++;
        last = k;
    }

    yajl_gen_array_close(g);

    /* "last" points into the map: copy it before the txn ends */

    if (last.mv_size) {
        k.mv_data = ngx_pnalloc(r->pool, last.mv_size);
        if (k.mv_data == NULL) {
            mdb_cursor_close(cur);
            return NGX_ERROR;
        }

        ngx_memcpy(k.mv_data, last.mv_data, last.mv_size);
        k.mv_size = last.mv_size;
        last = k;
    }

    mdb_cursor_close(cur);
    creor_store_read_done(st);

    if (pg->has_more && !pg->page_mode && !pg->offset_mode) {
        if (creor_cursor_save(r, ctx, pg, &last) != NGX_OK) {
            return NGX_DECLINED;
        }
    }

    creor_gen_kv_bool(g, "has_more", pg->has_more);
    creor_gen_str(g, "next_cursor");

    if (pg->next_cursor.len) {
        creor_gen_ngx_str(g, &pg->next_cursor);

    } else {
        yajl_gen_null(g);
    }

    if (pg->page_mode) {
        pages = (pg->total + pg->limit - 1) / pg->limit;

        creor_gen_str(g, "meta");
        yajl_gen_map_open(g);
        creor_gen_kv_int(g, "total", pg->total);
        creor_gen_kv_int(g, "page", pg->page);
        creor_gen_kv_int(g, "limit", pg->limit);
        creor_gen_kv_int(g, "totalPages", pages);
        creor_gen_kv_bool(g, "hasNext", pg->page < pages);
        creor_gen_kv_bool(g, "hasPrev", pg->page > 1);
        yajl_gen_map_close(g);
    }

    if (pg->offset_mode) {
        creor_gen_kv_int(g, "total", pg->total);
        creor_gen_kv_int(g, "limit", pg->limit);
        creor_gen_kv_int(g, "offset", pg->offset);
    }

    yajl_gen_map_close(g);

    return creor_send_json(r, NGX_HTTP_OK, g);
}


static int
creor_cursor_expired(const MDB_val *val, int64_t now)
{
    int64_t  expires;

    if (val->mv_size != sizeof(creor_cursor_rec_t)) {
        return 1;
    }

    ngx_memcpy(&expires, val->mv_data, sizeof(int64_t));

    return expires < now;
}


void
creor_cursor_purge(ngx_creor_main_conf_t *mcf, ngx_log_t *log)
{
    size_t       n;
    static char  from[CREOR_STORE_KEY_MAX];

    if (creor_store_purge(&mcf->store, "c:", from, CREOR_PURGE_BATCH,
                          creor_now_ms(), creor_cursor_expired, &n)
        != CREOR_STORE_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0, "creor: cursor purge failed");
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                   "creor: purged %uz expired cursors", n);
}
