
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The request pipeline of a creor_api location: route, query, credentials,
 * permission, scope, body, handler; and the JSON responses, errors
 * included.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_ARGS_MAX  32


static ngx_uint_t creor_status_error(ngx_uint_t status, const char **code,
    const char **msg);
static ngx_int_t creor_error_page(ngx_http_request_t *r);
static ngx_int_t creor_error_body(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, const char *param,
    ngx_str_t *out);
static ngx_int_t creor_parse_args(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
static ngx_int_t creor_check_args(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
static ngx_int_t creor_check_content_type(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx);
static void creor_request_id(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
static void creor_body_handler(ngx_http_request_t *r);
static ngx_int_t creor_body_step(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
static void creor_steps_handler(ngx_event_t *ev);
static void creor_steps_cleanup(void *data);
static ngx_int_t creor_dispatch(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
static ngx_int_t creor_dispatch_route(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx);
static ngx_int_t creor_park(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    u_char *data, size_t len);
static void creor_park_cleanup(void *data);
static void creor_group_post(ngx_creor_main_conf_t *mcf);
static void creor_group_handler(ngx_event_t *ev);
static ngx_int_t creor_send_out(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    u_char *data, size_t len);
static ngx_int_t creor_send_failure(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx);


/* work that is spread over turns of the event loop (creor_steps()) */

typedef struct {
    ngx_event_t             ev;
    ngx_http_request_t     *r;
    creor_step_pt           step;

    /* creor_body_step(): where the body is read up to */
    ngx_chain_t            *cl;
    off_t                   off;
    u_char                 *pos;
    unsigned                started:1;
} creor_steps_t;


static ngx_str_t    creor_json_type = ngx_string("application/json");

/* answers waiting for the turn's group commit */
static ngx_queue_t  creor_parked;
static ngx_event_t  creor_group_ev;

static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_creor_main_conf_t *
creor_main_conf(ngx_http_request_t *r)
{
    return ngx_http_get_module_main_conf(r, ngx_creor_module);
}


/*
 * $request_id, which every response carries: nginx's own handler makes
 * it with one RAND_bytes() call per request, the most expensive step of
 * a GET after the HMAC.  The same 16 random bytes in hex come from the
 * pool of creor_random_pooled(), stored as the variable's cached value so
 * that logs and other modules read the same id.  One already evaluated
 * (by a module of an earlier phase) is kept.
 */

static void
creor_request_id(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    u_char                     *id;
    uint8_t                     raw[16];
    ngx_http_variable_value_t  *vv;

    vv = &r->variables[ctx->mcf->request_id_index];

    if (!vv->valid && !vv->not_found) {
        id = ngx_pnalloc(r->pool, 2 * sizeof(raw));

        if (id == NULL || creor_random_pooled(raw, sizeof(raw)) != 0) {
            vv = ngx_http_get_indexed_variable(r,
                                               ctx->mcf->request_id_index);
            if (vv == NULL || vv->not_found) {
                return;
            }

        } else {
            ngx_hex_dump(id, raw, sizeof(raw));

            vv->data = id;
            vv->len = 2 * sizeof(raw);
            vv->valid = 1;
            vv->no_cacheable = 0;
            vv->not_found = 0;
        }
    }

    if (vv->not_found) {
        return;
    }

    ctx->request_id.data = vv->data;
    ctx->request_id.len = vv->len;
}


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


/*
 * The code and message of an error nginx made itself: a bad request line,
 * headers or URI too large, a body over client_max_body_size.
 */

static ngx_uint_t
creor_status_error(ngx_uint_t status, const char **code, const char **msg)
{
    switch (status) {

    case NGX_HTTP_REQUEST_TIME_OUT:
        *code = "REQUEST_TIMEOUT";
        *msg = "The request was not received in time.";
        return status;

    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        *code = "BODY_TOO_LARGE";
        *msg = "The request body is too large.";
        return status;

    case NGX_HTTP_REQUEST_URI_TOO_LARGE:
        *code = "URI_TOO_LONG";
        *msg = "The request URI is too long.";
        return status;

    case NGX_HTTP_REQUEST_HEADER_TOO_LARGE:
        *code = "HEADER_TOO_LARGE";
        *msg = "A request header is too large.";
        return NGX_HTTP_BAD_REQUEST;

    case NGX_HTTP_NOT_FOUND:
        *code = "NOT_FOUND";
        *msg = "Not found.";
        return status;

    case NGX_HTTP_NOT_ALLOWED:
        *code = "METHOD_NOT_ALLOWED";
        *msg = "The method is not allowed.";
        return status;

    case NGX_HTTP_SERVICE_UNAVAILABLE:
        *code = "SERVICE_UNAVAILABLE";
        *msg = "The service is unavailable.";
        return status;

    case NGX_HTTP_NOT_IMPLEMENTED:
        *code = "NOT_IMPLEMENTED";
        *msg = "The request's transfer coding is not supported.";
        return status;

    case NGX_HTTP_VERSION_NOT_SUPPORTED:
        *code = "HTTP_VERSION_NOT_SUPPORTED";
        *msg = "The HTTP version is not supported.";
        return status;

    default:
        if (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
            *code = "INTERNAL_ERROR";
            *msg = "Internal error.";
            return status;
        }

        *code = "BAD_REQUEST";
        *msg = "The request is malformed.";
        return NGX_HTTP_BAD_REQUEST;
    }
}


/* the target of an error_page redirect */

static ngx_int_t
creor_error_page(ngx_http_request_t *r)
{
    ngx_uint_t   status;
    const char  *code, *msg;

    status = creor_status_error(r->err_status, &code, &msg);

    creor_fail(r, status, code, NULL, "%s", msg);

    return creor_send_failure(r, ngx_http_get_module_ctx(r, ngx_creor_module));
}


/*
 * An error that nginx answers itself inside a creor_api location (a body
 * over client_max_body_size found before the handler runs, a bad chunk,
 * a 500) would be an HTML page: these filters put the envelope in its
 * place, so every answer of the API is JSON.
 */

static ngx_int_t
creor_error_header_filter(ngx_http_request_t *r)
{
    ngx_str_t              body;
    ngx_uint_t             status;
    const char            *code, *msg;
    ngx_creor_ctx_t       *ctx;
    ngx_creor_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_creor_module);
    ctx = ngx_http_get_module_ctx(r, ngx_creor_module);

    if (lcf->api && r == r->main && creor_cors_headers(r) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!lcf->api || r != r->main
        || r->headers_out.status < NGX_HTTP_BAD_REQUEST
        || (ctx && ctx->sending))
    {
        return ngx_http_next_header_filter(r);
    }

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_creor_ctx_t));
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        ctx->mcf = creor_main_conf(r);
        ngx_http_set_ctx(r, ctx, ngx_creor_module);

        creor_request_id(r, ctx);
    }

    status = creor_status_error(r->headers_out.status, &code, &msg);

    if (creor_error_body(r, status, code, msg, NULL, &body) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->replacement = body;
    ctx->replace = 1;

    r->headers_out.status = status;
    r->headers_out.status_line.len = 0;
    r->headers_out.content_type = creor_json_type;
    r->headers_out.content_type_len = creor_json_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = body.len;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    if (ctx->request_id.len
        && creor_add_header(r, "X-Request-Id", &ctx->request_id) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
creor_error_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t        *b;
    ngx_chain_t      *cl, out;
    ngx_creor_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_creor_module);

    if (ctx == NULL || !ctx->replace) {
        return ngx_http_next_body_filter(r, in);
    }

    /* nginx's page is consumed unsent */

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    if (ctx->replaced || in == NULL) {
        return NGX_OK;
    }

    ctx->replaced = 1;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = ctx->replacement.data;
    b->last = b->pos + ctx->replacement.len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


ngx_int_t
creor_error_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = creor_error_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = creor_error_body_filter;

    return creor_chat_filter_init(cf);
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
 * Runs step() on the next turn of the event loop, and on the turns after
 * while it says NGX_AGAIN, so that a large body or upload never holds the
 * worker in one long call: other connections are served between the
 * pieces.  The final result of step() finalizes the request; the caller
 * returns NGX_DONE, as given.
 */

ngx_int_t
creor_steps(ngx_http_request_t *r, ngx_creor_ctx_t *ctx, creor_step_pt step)
{
    creor_steps_t       *st;
    ngx_pool_cleanup_t  *cln;

    st = ctx->steps;

    if (st == NULL) {
        st = ngx_pcalloc(r->pool, sizeof(creor_steps_t));
        if (st == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->steps = st;
    }

    if (st->r == NULL) {
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cln->handler = creor_steps_cleanup;
        cln->data = st;

        st->r = r;
        st->ev.handler = creor_steps_handler;
        st->ev.data = st;
        st->ev.log = r->connection->log;
    }

    st->step = step;

    r->main->count++;
    ngx_post_event(&st->ev, &ngx_posted_next_events);

    return NGX_DONE;
}


static void
creor_steps_handler(ngx_event_t *ev)
{
    ngx_int_t            rc;
    creor_steps_t       *st;
    ngx_connection_t    *c;
    ngx_creor_ctx_t     *ctx;
    ngx_http_request_t  *r;

    st = ev->data;
    r = st->r;
    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_creor_module);

    rc = st->step(r, ctx);

    if (rc == NGX_AGAIN) {
        ngx_post_event(ev, &ngx_posted_next_events);
        return;
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
creor_steps_cleanup(void *data)
{
    creor_steps_t  *st = data;

    if (st->ev.posted) {
        ngx_delete_posted_event(&st->ev);
    }
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


static ngx_int_t
creor_dispatch_route(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    u_char                 err[128];
    ngx_int_t              rc;
    ngx_flag_t             too_many;
    ngx_creor_loc_conf_t  *lcf;

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

        if (ctx->route->flags & CREOR_ROUTE_JSON_SCAN) {
            return creor_handler_done(r, ctx, ctx->route->handler(r, ctx));
        }

        if (ctx->body.len == 0 || ctx->multipart) {
            ctx->json = ngx_pcalloc(r->pool, sizeof(creor_json_t));
            if (ctx->json == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
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
                    creor_fail(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                               "BODY_TOO_LARGE", NULL, "%s", err);

                } else {
                    creor_fail(r, NGX_HTTP_BAD_REQUEST, "INVALID_JSON", NULL,
                               "%s", err);
                }

                return creor_send_failure(r, ctx);
            }

            if (ctx->json->type != CREOR_JSON_OBJECT) {
                creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR", NULL,
                           "The body must be a JSON object.");
                return creor_send_failure(r, ctx);
            }
        }

        /* a form's ids are checked by its handler once it is parsed */

        if (!ctx->multipart && creor_scope_body(r, ctx, ctx->json) != NGX_OK)
        {
            return creor_send_failure(r, ctx);
        }
    }

    return creor_handler_done(r, ctx, ctx->route->handler(r, ctx));
}


/* what follows a handler, or the last step of one (creor_steps()) */

ngx_int_t
creor_handler_done(ngx_http_request_t *r, ngx_creor_ctx_t *ctx, ngx_int_t rc)
{
    /* a read transaction never outlives the event that opened it */

    creor_store_read_done(&ctx->mcf->store);

    /*
     * Handlers answer before they return, which ends deferred syncing;
     * one that did not must not leave the worker's commits unsynced.
     */

    if (ctx->mcf->store.deferred) {
        creor_store_defer_sync(&ctx->mcf->store, 0);
        (void) mdb_env_sync(ctx->mcf->store.env, 1);
    }

    if (rc == NGX_DECLINED) {
        return creor_send_failure(r, ctx);
    }

    return rc;
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


creor_arg_t *
creor_arg(ngx_creor_ctx_t *ctx, const char *name)
{
    size_t        len;
    ngx_uint_t    i;
    creor_arg_t  *args;

    len = ngx_strlen(name);
    args = ctx->args.elts;

    for (i = 0; i < ctx->args.nelts; i++) {
        if (args[i].name.len == len
            && ngx_strncmp(args[i].name.data, name, len) == 0)
        {
            return &args[i];
        }
    }

    return NULL;
}


/* NGX_OK and *out, NGX_DECLINED when absent, NGX_ERROR (failed) if bad */

ngx_int_t
creor_arg_uint(ngx_http_request_t *r, ngx_creor_ctx_t *ctx, const char *name,
    ngx_uint_t min, ngx_uint_t max, ngx_uint_t *out)
{
    ngx_int_t     n;
    creor_arg_t  *arg;

    arg = creor_arg(ctx, name);
    if (arg == NULL) {
        return NGX_DECLINED;
    }

    n = (arg->value.len > 0 && arg->value.len <= 9)
        ? ngx_atoi(arg->value.data, arg->value.len) : NGX_ERROR;

    if (n == NGX_ERROR || (ngx_uint_t) n < min || (ngx_uint_t) n > max) {
        creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR", name,
                   "'%s' must be an integer from %ui to %ui.", name, min,
                   max);
        return NGX_ERROR;
    }

    *out = n;

    return NGX_OK;
}


/* unknown members of a request object: "settings.foo" for nested ones */

ngx_int_t
creor_check_fields(ngx_http_request_t *r, creor_json_t *obj,
    const char **allowed, const char *prefix)
{
    u_char        *param;
    const char   **a;
    creor_json_t  *c;

    for (c = obj->child; c; c = c->next) {

        for (a = allowed; *a; a++) {
            if (ngx_strlen(*a) == c->key.len
                && ngx_strncmp(*a, c->key.data, c->key.len) == 0)
            {
                break;
            }
        }

        if (*a) {
            continue;
        }

        param = ngx_pnalloc(r->pool, ngx_strlen(prefix) + c->key.len + 1);
        if (param == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(param, "%s%V%Z", prefix, &c->key);

        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "UNKNOWN_PARAMETER",
                          (char *) param, "Unknown parameter '%s'.", param);
    }

    return NGX_OK;
}


ngx_str_t *
creor_header(ngx_http_request_t *r, const char *name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i].value;
        }
    }
}


ngx_int_t
creor_add_header(ngx_http_request_t *r, const char *name, ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;

    return NGX_OK;
}


/*
 * Records the error for the pipeline to send and returns NGX_DECLINED,
 * so a handler can "return creor_fail(...)".
 */

ngx_int_t
creor_fail(ngx_http_request_t *r, ngx_uint_t status, const char *code,
    const char *param, const char *fmt, ...)
{
    u_char           *p, buf[512];
    va_list           args;
    ngx_creor_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_creor_module);

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + sizeof(buf), fmt, args);
    va_end(args);

    ctx->err_status = status;
    ctx->err_code = code;
    ctx->err_param = param;
    ctx->err_message.len = p - buf;
    ctx->err_message.data = ngx_pnalloc(r->pool, p - buf);

    if (ctx->err_message.data == NULL) {
        ctx->err_message.len = 0;

    } else {
        ngx_memcpy(ctx->err_message.data, buf, p - buf);
    }

    return NGX_DECLINED;
}


ngx_int_t
creor_fail_store(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_creor_ctx_t  *ctx;

    if (rc == CREOR_STORE_FULL) {
        ctx = ngx_http_get_module_ctx(r, ngx_creor_module);
        ctx->retry_after = 30;

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "creor_store: the store is full");

        return creor_fail(r, NGX_HTTP_SERVICE_UNAVAILABLE, "STORE_FULL", NULL,
                          "The store is full.");
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "creor_store: operation failed: %i", rc);

    return creor_fail(r, NGX_HTTP_INTERNAL_SERVER_ERROR, "INTERNAL_ERROR",
                      NULL, "The store failed.");
}


static ngx_int_t
creor_send_failure(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    u_char     *p;
    ngx_str_t   v;

    if (ctx->err_status == 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->retry_after) {
        p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        v.data = p;
        v.len = ngx_sprintf(p, "%ui", ctx->retry_after) - p;

        if (creor_add_header(r, "Retry-After", &v) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    p = ngx_pnalloc(r->pool, ctx->err_message.len + 1);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(p, ctx->err_message.data, ctx->err_message.len);
    p[ctx->err_message.len] = '\0';

    return creor_send_error(r, ctx->err_status, ctx->err_code, (char *) p,
                            ctx->err_param);
}


static const char *
creor_error_type(ngx_uint_t status)
{
    switch (status) {
    case NGX_HTTP_UNAUTHORIZED:
        return "authentication_error";
    case NGX_HTTP_FORBIDDEN:
        return "permission_denied";
    case NGX_HTTP_NOT_FOUND:
        return "not_found";
    case NGX_HTTP_CONFLICT:
        return "conflict";
    case 422:
        return "unprocessable_entity";
    case NGX_HTTP_TOO_MANY_REQUESTS:
        return "rate_limit_exceeded";
    case NGX_HTTP_BAD_GATEWAY:
    case NGX_HTTP_GATEWAY_TIME_OUT:
        return "provider_error";
    case NGX_HTTP_SERVICE_UNAVAILABLE:
        return "service_unavailable";
    case NGX_HTTP_NOT_IMPLEMENTED:
    case NGX_HTTP_VERSION_NOT_SUPPORTED:
        return "invalid_request";       /* the client's, though 5xx */
    default:
        return status >= 500 ? "internal_error" : "invalid_request";
    }
}


ngx_int_t
creor_send_error(ngx_http_request_t *r, ngx_uint_t status, const char *code,
    const char *message, const char *param)
{
    ngx_str_t  out;

    if (creor_error_body(r, status, code, message, param, &out) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return creor_send_raw(r, status, out.data, out.len);
}


static ngx_int_t
creor_error_body(ngx_http_request_t *r, ngx_uint_t status, const char *code,
    const char *message, const char *param, ngx_str_t *out)
{
    yajl_gen          g;
    ngx_creor_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_creor_module);

    g = creor_gen_create(r);
    if (g == NULL) {
        return NGX_ERROR;
    }

    yajl_gen_map_open(g);
    creor_gen_str(g, "error");
    yajl_gen_map_open(g);
    creor_gen_kv(g, "type",
                 ctx->err_type ? ctx->err_type : creor_error_type(status));
    creor_gen_kv(g, "code", code);

    /* names from the request are checked UTF-8; never emit bad text */

    creor_gen_kv(g, "message",
                 creor_utf8_valid((u_char *) message, ngx_strlen(message))
                 ? message : "Invalid parameter.");

    if (param) {
        creor_gen_kv(g, "param",
                     creor_utf8_valid((u_char *) param, ngx_strlen(param))
                     ? param : "?");
    }

    creor_gen_kv_ngx(g, "request_id", &ctx->request_id);
    yajl_gen_map_close(g);
    yajl_gen_map_close(g);

    return creor_gen_result(r, g, out);
}


ngx_int_t
creor_send_json(ngx_http_request_t *r, ngx_uint_t status, yajl_gen g)
{
    ngx_str_t  out;

    if (creor_gen_result(r, g, &out) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return creor_send_raw(r, status, out.data, out.len);
}


ngx_int_t
creor_send_raw(ngx_http_request_t *r, ngx_uint_t status, u_char *data,
    size_t len)
{
    ngx_creor_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_creor_module);

    r->headers_out.status = status;
    r->headers_out.content_type = creor_json_type;
    r->headers_out.content_type_len = creor_json_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = len;

    if (ctx->idempotency_claimed
        && creor_idempotency_end(r, ctx, status, data, len) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "creor: idempotent response not stored");
    }

    if (ctx->in_group && r == r->main
        && ctx->group_mark != ctx->mcf->store.group_writes)
    {
        return creor_park(r, ctx, data, len);
    }

    return creor_send_out(r, ctx, data, len);
}


static ngx_int_t
creor_send_out(ngx_http_request_t *r, ngx_creor_ctx_t *ctx, u_char *data,
    size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    if (ctx->request_id.len
        && creor_add_header(r, "X-Request-Id", &ctx->request_id) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (len == 0) {
        r->header_only = 1;
    }

    ctx->sending = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = data;
    b->last = data + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * The answer waits: the request is held (r->main->count) until the group
 * it wrote in is committed, at the end of this turn of the event loop:
 * one sync for every request of the turn, and none answered before its
 * data is on disk.
 */

static ngx_int_t
creor_park(ngx_http_request_t *r, ngx_creor_ctx_t *ctx, u_char *data,
    size_t len)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        (void) creor_store_group_commit(&ctx->mcf->store);
        return creor_send_out(r, ctx, data, len);
    }

    cln->handler = creor_park_cleanup;
    cln->data = ctx;

    creor_group_post(ctx->mcf);

    ctx->request = r;
    ctx->parked_body.data = data;
    ctx->parked_body.len = len;
    ctx->is_parked = 1;
    ngx_queue_insert_tail(&creor_parked, &ctx->parked);

    r->main->count++;

    return NGX_DONE;
}


/* the group is committed at the end of this turn, answers parked or not */

static void
creor_group_post(ngx_creor_main_conf_t *mcf)
{
    if (creor_group_ev.handler == NULL) {
        ngx_queue_init(&creor_parked);
        creor_group_ev.handler = creor_group_handler;
        creor_group_ev.data = mcf;
        creor_group_ev.log = ngx_cycle->log;
    }

    if (!creor_group_ev.posted) {
        ngx_post_event(&creor_group_ev, &ngx_posted_events);
    }
}


static void
creor_park_cleanup(void *data)
{
    ngx_creor_ctx_t  *ctx = data;

    if (ctx->is_parked) {
        ctx->is_parked = 0;
        ngx_queue_remove(&ctx->parked);
    }
}


static void
creor_group_handler(ngx_event_t *ev)
{
    int                      failed;
    ngx_int_t                rc;
    ngx_queue_t             *q;
    creor_store_t           *st;
    ngx_creor_ctx_t         *ctx;
    ngx_connection_t        *c;
    ngx_http_request_t      *r;
    ngx_creor_main_conf_t   *mcf;

    mcf = ev->data;
    st = &mcf->store;

    (void) creor_store_group_commit(st);

    failed = st->group_failed;
    st->group_failed = 0;

    if (failed) {
        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "creor_store: a group commit failed (%d), "
                      "its requests get the store's error", failed);
    }

    while (!ngx_queue_empty(&creor_parked)) {
        q = ngx_queue_head(&creor_parked);
        ngx_queue_remove(q);

        ctx = ngx_queue_data(q, ngx_creor_ctx_t, parked);
        ctx->is_parked = 0;
        ctx->in_group = 0;

        r = ctx->request;
        c = r->connection;

        if (failed) {
            ctx->sending = 0;
            creor_fail_store(r, failed);
            rc = creor_send_failure(r, ctx);

        } else {
            rc = creor_send_out(r, ctx, ctx->parked_body.data,
                                ctx->parked_body.len);
        }

        ngx_http_finalize_request(r, rc);
        ngx_http_run_posted_requests(c);
    }
}
