
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The error filter of a creor_api location: an error nginx answers itself
 * (a bad request line, a body over client_max_body_size, a 500) gets the
 * JSON envelope in place of nginx's HTML page, and the target of an
 * error_page redirect answers with it too.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


static ngx_uint_t creor_status_error(ngx_uint_t status, const char **code,
    const char **msg);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


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

ngx_int_t
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

    return NGX_OK;
}