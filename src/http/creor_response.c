
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The answers of the API: JSON responses, the error envelope, the
 * request's headers, query arguments and fields as handlers read them,
 * and the group commit that holds an answer until its writes are on disk.
 * Handlers and the pipeline call these; they call nothing above them.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


static ngx_table_elt_t *creor_header_find(ngx_list_t *list,
    const char *name, ngx_flag_t live);
static const char *creor_error_type(ngx_uint_t status);
static ngx_int_t creor_send_out(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    u_char *data, size_t len);
static ngx_int_t creor_park(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    u_char *data, size_t len);
static void creor_park_cleanup(void *data);
static void creor_group_handler(ngx_event_t *ev);


ngx_str_t  creor_json_type = ngx_string("application/json");

/* answers waiting for the turn's group commit */
static ngx_queue_t  creor_parked;
static ngx_event_t  creor_group_ev;


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

void
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


/* what follows a handler, or the last step of one (creor_steps()) */

ngx_int_t
creor_handler_done(ngx_http_request_t *r, ngx_creor_ctx_t *ctx, ngx_int_t rc)
{
    /* a read transaction never outlives the event that opened it */

    creor_store_read_done(&ctx->mcf->store);

    if (rc == NGX_DECLINED) {
        return creor_send_failure(r, ctx);
    }

    return rc;
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
    ngx_table_elt_t  *h;

    h = creor_header_find(&r->headers_in.headers, name, 0);

    return h ? &h->value : NULL;
}


/* a header of the response (one not removed), by name */

ngx_table_elt_t *
creor_header_out(ngx_http_request_t *r, const char *name)
{
    return creor_header_find(&r->headers_out.headers, name, 1);
}


static ngx_table_elt_t *
creor_header_find(ngx_list_t *list, const char *name, ngx_flag_t live)
{
    size_t            len;
    creor_headers_t   w;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);

    creor_headers_init(&w, list);

    while ((h = creor_headers_next(&w)) != NULL) {
        if ((h->hash || !live) && h->key.len == len
            && ngx_strncasecmp(h->key.data, (u_char *) name, len) == 0)
        {
            return h;
        }
    }

    return NULL;
}


/* the headers of a list, request's or response's, in turn; NULL after */

void
creor_headers_init(creor_headers_t *w, ngx_list_t *list)
{
    w->part = &list->part;
    w->i = 0;
}


ngx_table_elt_t *
creor_headers_next(creor_headers_t *w)
{
    ngx_table_elt_t  *h;

    while (w->i >= w->part->nelts) {
        if (w->part->next == NULL) {
            return NULL;
        }

        w->part = w->part->next;
        w->i = 0;
    }

    h = w->part->elts;

    return &h[w->i++];
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


ngx_int_t
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


ngx_int_t
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

    if (ctx->keep) {
        (void) ctx->keep(r, ctx, status, data, len);
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

void
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


/*
 * The request headers of a POST of JSON: Content-Type, and room for n
 * more: a job's detached request, a chat completion's subrequest.
 */

ngx_int_t
creor_json_request_headers(ngx_http_request_t *r, ngx_uint_t n)
{
    ngx_table_elt_t  *h;

    if (ngx_list_init(&r->headers_in.headers, r->pool, n + 2,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    h = ngx_list_push(&r->headers_in.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&h->key, "Content-Type");
    h->value = creor_json_type;
    h->lowcase_key = (u_char *) "content-type";
    h->hash = ngx_hash_key(h->lowcase_key, h->key.len);
    r->headers_in.content_type = h;

    return NGX_OK;
}


/* a variable's value: the string itself, evaluated each time */

ngx_int_t
creor_variable_str(ngx_http_variable_value_t *v, ngx_str_t *s)
{
    v->data = s->data;
    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
