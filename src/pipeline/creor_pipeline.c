
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The request pipeline of a creor_api location: route, query, credentials,
 * permission, scope, body, Idempotency-Key, handler.  The answers are made
 * by http/creor_response.c, which handlers call too.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_ARGS_MAX  32


static ngx_int_t creor_parse_args(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
static ngx_int_t creor_check_args(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
static ngx_int_t creor_check_content_type(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx);
static void creor_body_handler(ngx_http_request_t *r);
static ngx_int_t creor_body_step(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
static ngx_int_t creor_dispatch(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
static ngx_int_t creor_dispatch_route(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx);
static ngx_int_t creor_body_json(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);


ngx_int_t
ngx_creor_handle(ngx_http_request_t *r)
{
    ngx_int_t               rc;
    ngx_str_t               allow;
    ngx_creor_ctx_t        *ctx;
    ngx_creor_main_conf_t  *mcf;

    mcf = creor_main_conf(r);

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_creor_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->mcf = mcf;
    ngx_http_set_ctx(r, ctx, ngx_creor_module);

    creor_request_id(r, ctx);

    if (r->error_page && r->err_status >= NGX_HTTP_BAD_REQUEST) {
        return creor_error_page(r);
    }

    if (!mcf->opened) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "creor_api: no creor_store is configured");
        ngx_http_discard_request_body(r);
        creor_fail(r, NGX_HTTP_SERVICE_UNAVAILABLE, "STORE_UNAVAILABLE",
                   NULL, "The store is not available.");
        return creor_send_failure(r, ctx);
    }

    rc = creor_route(r, ctx, &allow);

    if (rc != NGX_OK) {
        ngx_http_discard_request_body(r);

        if (rc == NGX_HTTP_NOT_ALLOWED && r->method == NGX_HTTP_OPTIONS) {
            return creor_cors_options(r, ctx, &allow);
        }

        if (rc == NGX_HTTP_NOT_ALLOWED) {
            if (creor_add_header(r, "Allow", &allow) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            creor_fail(r, NGX_HTTP_NOT_ALLOWED, "METHOD_NOT_ALLOWED", NULL,
                       "Method %V is not allowed here.", &r->method_name);

        } else {
            creor_fail(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND", NULL,
                       "No such route.");
        }

        return creor_send_failure(r, ctx);
    }

    if (creor_parse_args(r, ctx) != NGX_OK) {
        ngx_http_discard_request_body(r);
        return creor_send_failure(r, ctx);
    }

    /* a file URL handed to an executor is its own credential */

    if ((ctx->route->flags & CREOR_ROUTE_SIGNED)
        && creor_arg(ctx, "signature"))
    {
        if (creor_runs_check_signature(r, ctx) != NGX_OK
            || creor_check_args(r, ctx) != NGX_OK)
        {
            return creor_send_failure(r, ctx);
        }

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return creor_dispatch(r, ctx);
    }

    /* health answers monitors and load balancers, which hold no key */

    if (ctx->route->flags & CREOR_ROUTE_PUBLIC) {
        if (creor_check_args(r, ctx) != NGX_OK) {
            ngx_http_discard_request_body(r);
            return creor_send_failure(r, ctx);
        }

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return creor_dispatch(r, ctx);
    }

    if (creor_authenticate(r, ctx) != NGX_OK) {

        /* bad credentials count against their address: key guessing */

        if (ctx->err_status == NGX_HTTP_UNAUTHORIZED) {
            (void) creor_ratelimit_anonymous(r, ctx);
        }

        ngx_http_discard_request_body(r);
        return creor_send_failure(r, ctx);
    }

    /* what the key may see and do, before the body is read */

    if (creor_ratelimit(r, ctx) != NGX_OK
        || creor_check_permission(r, ctx) != NGX_OK
        || creor_check_args(r, ctx) != NGX_OK
        || creor_scope_route(r, ctx) != NGX_OK)
    {
        ngx_http_discard_request_body(r);
        return creor_send_failure(r, ctx);
    }

    if (!(r->method & CREOR_METHOD_BODY)) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return creor_dispatch(r, ctx);
    }

    if (creor_check_content_type(r, ctx) != NGX_OK) {
        ngx_http_discard_request_body(r);
        return creor_send_failure(r, ctx);
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, creor_body_handler);

    if (rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE) {

        /* the rest of the body is unread: the connection cannot be kept */

        r->keepalive = 0;
        r->lingering_close = 1;

        creor_fail(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "BODY_TOO_LARGE",
                   NULL, "The request body is too large.");

        return creor_send_failure(r, ctx);
    }

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static ngx_int_t
creor_check_content_type(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    u_char           *p, *last;
    ngx_table_elt_t  *h;

    static ngx_str_t  form = ngx_string("multipart/form-data");

    if (r->headers_in.content_length_n <= 0 && !r->headers_in.chunked) {
        return NGX_OK;
    }

    h = r->headers_in.content_type;

    if (h != NULL) {
        p = h->value.data;
        last = p + h->value.len;

        while (p < last && *p == ' ') {
            p++;
        }

        if ((size_t) (last - p) >= creor_json_type.len
            && ngx_strncasecmp(p, creor_json_type.data, creor_json_type.len)
               == 0)
        {
            p += creor_json_type.len;

            if (p == last || *p == ';' || *p == ' ') {
                return NGX_OK;
            }
        }

        if ((ctx->route->flags & CREOR_ROUTE_MULTIPART)
            && (size_t) (last - p) >= form.len
            && ngx_strncasecmp(p, form.data, form.len) == 0)
        {
            ctx->multipart = 1;
            return NGX_OK;
        }
    }

    return creor_fail(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                      "UNSUPPORTED_MEDIA_TYPE", NULL,
                      (ctx->route->flags & CREOR_ROUTE_MULTIPART)
                      ? "The body must be application/json or "
                        "multipart/form-data."
                      : "The body must be application/json.");
}


static void
creor_body_handler(ngx_http_request_t *r)
{
    ngx_int_t         rc;
    ngx_creor_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_creor_module);

    rc = creor_body_step(r, ctx);

    if (rc == NGX_AGAIN) {
        rc = creor_steps(r, ctx, creor_body_step);
    }

    creor_store_guard(ctx->mcf, r->connection->log);

    ngx_http_finalize_request(r, rc);
}


/*
 * The body as one piece of memory, from buffers or the temporary file,
 * read CREOR_IO_CHUNK a turn; then the request goes on.
 */

static ngx_int_t
creor_body_step(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    size_t          len;
    ssize_t         n;
    ngx_buf_t      *b;
    ngx_chain_t    *cl;
    creor_steps_t  *st;

    st = ctx->steps;

    if (st == NULL || !st->started) {

        len = 0;

        if (r->request_body) {
            for (cl = r->request_body->bufs; cl; cl = cl->next) {
                b = cl->buf;
                len += b->in_file ? (size_t) (b->file_last - b->file_pos)
                                  : (size_t) (b->last - b->pos);
            }
        }

        if (len == 0) {
            return creor_dispatch(r, ctx);
        }

        ctx->body.data = ngx_pnalloc(r->pool, len);
        if (ctx->body.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->body.len = len;

        if (st == NULL) {
            st = ngx_pcalloc(r->pool, sizeof(creor_steps_t));
            if (st == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            ctx->steps = st;
        }

        st->started = 1;
        st->cl = r->request_body->bufs;
        st->off = st->cl->buf->file_pos;
        st->pos = ctx->body.data;
    }

    len = CREOR_IO_CHUNK;

    while (st->cl) {
        b = st->cl->buf;

        if (!b->in_file) {
            st->pos = ngx_cpymem(st->pos, b->pos, b->last - b->pos);

        } else if (st->off < b->file_last) {
            if (len == 0) {
                return NGX_AGAIN;
            }

            n = ngx_read_file(b->file, st->pos,
                              ngx_min((off_t) len, b->file_last - st->off),
                              st->off);
            if (n <= 0) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            st->pos += n;
            st->off += n;
            len -= n;
            continue;
        }

        st->cl = st->cl->next;

        if (st->cl) {
            st->off = st->cl->buf->file_pos;
        }
    }

    return creor_dispatch(r, ctx);
}


/*
 * Group commit (sync=on): what the request writes from its Idempotency-Key
 * claim to its answer joins the turn's group transaction (creor_store.c);
 * an answer that depends on it is parked until the group is on disk.
 */

static ngx_int_t
creor_dispatch(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    ngx_int_t       rc;
    creor_store_t  *st;

    st = &ctx->mcf->store;

    ctx->group_mark = st->group_writes;
    ctx->in_group = 1;
    st->grouping = 1;

    rc = creor_dispatch_route(r, ctx);

    st->grouping = 0;
    ctx->in_group = 0;

    /* a group is never left open past this turn: it holds LMDB's lock */

    if (st->group) {
        creor_group_post(ctx->mcf);
    }

    return rc;
}


/*
 * Idempotency-Key: claimed (or replayed) before the handler, kept from
 * the answer by the sender (ctx->keep), released with the pool if none.
 */

static ngx_int_t
creor_dispatch_route(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    ngx_int_t  rc;

    if (r->method & CREOR_METHOD_BODY) {

        rc = creor_idempotency_begin(r, ctx);

        if (rc == NGX_DECLINED) {
            return creor_send_failure(r, ctx);
        }

        if (rc == NGX_DONE) {
            return creor_idempotency_replay(r, ctx);
        }

        if (rc != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (!(ctx->route->flags & CREOR_ROUTE_JSON_SCAN)) {
            rc = creor_body_json(r, ctx);

            if (rc == NGX_DECLINED) {
                return creor_send_failure(r, ctx);
            }

            if (rc != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }
    }

    rc = ctx->route->handler(r, ctx);

    creor_idempotency_handled(ctx);

    return creor_handler_done(r, ctx, rc);
}


/*
 * The body as a JSON object, its ids in scope; a form's is an empty one.
 * NGX_DECLINED: an error to send.
 */

static ngx_int_t
creor_body_json(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    u_char                 err[128];
    ngx_flag_t             too_many;
    ngx_creor_loc_conf_t  *lcf;

    if (ctx->body.len == 0 || ctx->multipart) {
        ctx->json = ngx_pcalloc(r->pool, sizeof(creor_json_t));
        if (ctx->json == NULL) {
            return NGX_ERROR;
        }

        ctx->json->type = CREOR_JSON_OBJECT;
        ctx->json->pool = r->pool;

    } else {
        lcf = ngx_http_get_module_loc_conf(r, ngx_creor_module);

        ctx->json = creor_json_parse_max(r->pool, ctx->body.data,
                                         ctx->body.len,
                                         lcf->json_max_values, &too_many,
                                         err, sizeof(err));
        if (ctx->json == NULL) {
            if (too_many) {
                return creor_fail(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                  "BODY_TOO_LARGE", NULL, "%s", err);
            }

            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "INVALID_JSON", NULL,
                              "%s", err);
        }

        if (ctx->json->type != CREOR_JSON_OBJECT) {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                              NULL, "The body must be a JSON object.");
        }
    }

    /* a form's ids are checked by its handler once it is parsed */

    if (!ctx->multipart && creor_scope_body(r, ctx, ctx->json) != NGX_OK) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * Query arguments, unescaped; a name given twice or a value that is not
 * UTF-8 is refused here, unknown names after the route is known.
 */

static ngx_int_t
creor_parse_args(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    u_char       *p, *last, *amp, *eq, *dst, *src;
    ngx_str_t    *s;
    ngx_uint_t    i, k;
    creor_arg_t  *arg, *args;

    if (ngx_array_init(&ctx->args, r->pool, 4, sizeof(creor_arg_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = r->args.data;
    last = p + r->args.len;

    while (p < last) {
        amp = ngx_strlchr(p, last, '&');
        if (amp == NULL) {
            amp = last;
        }

        if (amp == p) {
            p++;
            continue;
        }

        if (ctx->args.nelts == CREOR_ARGS_MAX) {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                              NULL, "Too many query parameters.");
        }

        arg = ngx_array_push(&ctx->args);
        if (arg == NULL) {
            return NGX_ERROR;
        }

        eq = ngx_strlchr(p, amp, '=');

        arg->name.data = p;
        arg->name.len = (eq ? eq : amp) - p;
        arg->value.data = eq ? eq + 1 : amp;
        arg->value.len = eq ? amp - eq - 1 : 0;

        for (k = 0; k < 2; k++) {
            s = k ? &arg->value : &arg->name;

            dst = ngx_pnalloc(r->pool, s->len + 1);
            if (dst == NULL) {
                return NGX_ERROR;
            }

            src = s->data;
            s->data = dst;
            ngx_unescape_uri(&dst, &src, s->len, 0);
            s->len = dst - s->data;
            *dst = '\0';

            if (!creor_utf8_valid(s->data, s->len)
                || ngx_strlchr(s->data, s->data + s->len, '\0'))
            {
                return creor_fail(r, NGX_HTTP_BAD_REQUEST,
                                  "VALIDATION_ERROR", NULL,
                                  "A query parameter is not valid UTF-8.");
            }
        }

        args = ctx->args.elts;

        for (i = 0; i < ctx->args.nelts - 1; i++) {
            if (args[i].name.len == arg->name.len
                && ngx_strncmp(args[i].name.data, arg->name.data,
                               arg->name.len) == 0)
            {
                return creor_fail(r, NGX_HTTP_BAD_REQUEST,
                                  "VALIDATION_ERROR",
                                  (char *) arg->name.data,
                                  "Query parameter '%V' is given twice.",
                                  &arg->name);
            }
        }

        p = amp;
    }

    return NGX_OK;
}


static ngx_int_t
creor_check_args(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    ngx_uint_t    i;
    const char  **q;
    creor_arg_t  *args;

    args = ctx->args.elts;

    for (i = 0; i < ctx->args.nelts; i++) {

        for (q = ctx->route->query; q && *q; q++) {
            if (ngx_strlen(*q) == args[i].name.len
                && ngx_strncmp(*q, args[i].name.data, args[i].name.len) == 0)
            {
                break;
            }
        }

        if (q == NULL || *q == NULL) {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "UNKNOWN_PARAMETER",
                              (char *) args[i].name.data,
                              "Unknown query parameter '%V'.",
                              &args[i].name);
        }
    }

    return NGX_OK;
}