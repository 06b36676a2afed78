
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Lists (SPEC 5).  A cursor is an opaque token naming a record in the
 * store (creor_cursor.c) that holds the organization, the route, a hash
 * of the filters and the store key of the last item sent; the next page
 * starts strictly after that key, so inserts and deletes between pages
 * never repeat or skip an item that existed throughout the walk.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"
#include "creor_walk.h"


static ngx_int_t creor_cursor_load(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, creor_page_t *pg, ngx_str_t *token);
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
    ngx_int_t            rc;
    creor_cursor_rec_t   want, *rec;

    rec = ngx_palloc(r->pool, sizeof(creor_cursor_rec_t));
    if (rec == NULL) {
        return NGX_ERROR;
    }

    rc = creor_cursor_get(&ctx->mcf->store, token, rec);

    if (rc == CREOR_STORE_NOTFOUND) {
        goto invalid;
    }

    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

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
    ngx_int_t           rc;
    u_char             *token;
    creor_cursor_rec_t  rec;

    if (last->mv_size > sizeof(rec.after)) {
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    creor_cursor_init(ctx, pg, &rec);
    rec.expires_ms = creor_now_ms() + CREOR_CURSOR_TTL;
    rec.after_len = (uint16_t) last->mv_size;
    ngx_memcpy(rec.after, last->mv_data, last->mv_size);

    token = ngx_pnalloc(r->pool, CREOR_CURSOR_LEN + 1);
    if (token == NULL) {
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    rc = creor_cursor_put(&ctx->mcf->store, &rec, token);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    pg->next_cursor.data = token;
    pg->next_cursor.len = CREOR_CURSOR_LEN;

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
    uint64_t        total;
    yajl_gen        g;
    MDB_val         k, last;
    MDB_txn        *txn;
    ngx_int_t       pass;
    ngx_uint_t      sent, skip, pages;
    ngx_flag_t      counted;
    creor_walk_t    w;
    creor_store_t  *st;

    st = &ctx->mcf->store;

    g = creor_gen_create(r);
    if (g == NULL) {
        return NGX_ERROR;
    }

    txn = creor_store_read(st);

    if (txn == NULL
        || creor_walk_open(st, txn, &w, (char *) pg->prefix.data,
                           pg->prefix.len, (char *) pg->primary.data,
                           pg->primary.len, pg->desc)
           != CREOR_STORE_OK)
    {
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
            creor_walk_close(&w);
            return creor_fail_store(r, CREOR_STORE_ERROR);
        }

        pg->total = (ngx_uint_t) total;
    }

    if (counted && skip) {
        rc = creor_walk_skip(&w, skip);
        skip = 0;

    } else {
        rc = creor_walk_after(&w, (char *) pg->after.data, pg->after.len);
    }

    if (rc != CREOR_STORE_OK) {
        creor_walk_close(&w);
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    sent = 0;
    last.mv_size = 0;
    last.mv_data = NULL;

    yajl_gen_map_open(g);
    creor_gen_kv(g, "object", "list");
    creor_gen_str(g, "data");
    yajl_gen_array_open(g);

    while ((rc = creor_walk_next(&w)) == 1) {

        pass = item(r, ctx, &w.rkey, &w.rval, NULL);

        if (pass == NGX_ERROR) {
            creor_walk_close(&w);
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

        if (item(r, ctx, &w.rkey, &w.rval, g) != NGX_OK) {
            creor_walk_close(&w);
            return creor_fail_store(r, CREOR_STORE_ERROR);
        }

        sent++;
        last = w.key;
    }

    if (rc < 0) {
        creor_walk_close(&w);
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    yajl_gen_array_close(g);

    /* "last" points into the map: copy it before the txn ends */

    if (last.mv_size) {
        k.mv_data = ngx_pnalloc(r->pool, last.mv_size);
        if (k.mv_data == NULL) {
            creor_walk_close(&w);
            return NGX_ERROR;
        }

        ngx_memcpy(k.mv_data, last.mv_data, last.mv_size);
        k.mv_size = last.mv_size;
        last = k;
    }

    creor_walk_close(&w);
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
