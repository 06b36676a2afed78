
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The capture filter, the top header and body filter (above the error
 * filter of creor_error_filter.c), as lua-nginx-module keeps its own in
 * ngx_http_lua_capturefilter.c.  The output of a subrequest made for a
 * capture (the engine's jobs; any other that adds itself with
 * creor_capture_add()) is given to that capture and never reaches the
 * client as it is: its header is not sent, its body is consumed, or
 * passed on below the filter by the capture itself
 * (creor_capture_next_body()).  A capture knows its subrequests by a
 * member of their ctx: ctx->job for a job.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_CAPTURES_MAX     4


static void *creor_capture_find(ngx_http_request_t *r,
    creor_capture_t **capture);
static ngx_int_t creor_capture_header_filter(ngx_http_request_t *r);
static ngx_int_t creor_capture_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;

static creor_capture_t  *creor_captures[CREOR_CAPTURES_MAX];
static ngx_uint_t        creor_ncaptures;


/*
 * The top filter, so nothing of a captured reply reaches the postpone or
 * write filters (of a job, the socketless connection).
 */

ngx_int_t
creor_capture_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = creor_capture_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = creor_capture_body_filter;

    return NGX_OK;
}


/* at configuration: another kind of subrequest whose output is taken */

ngx_int_t
creor_capture_add(creor_capture_t *capture)
{
    ngx_uint_t  i;

    for (i = 0; i < creor_ncaptures; i++) {
        if (creor_captures[i] == capture) {
            return NGX_OK;              /* a reload configures again */
        }
    }

    if (creor_ncaptures == CREOR_CAPTURES_MAX) {
        return NGX_ERROR;
    }

    creor_captures[creor_ncaptures++] = capture;

    return NGX_OK;
}


/* for a capture that sends on what it took: the filters below this one */

ngx_int_t
creor_capture_next_body(ngx_http_request_t *r, ngx_chain_t *in)
{
    return ngx_http_next_body_filter(r, in);
}


static void *
creor_capture_find(ngx_http_request_t *r, creor_capture_t **capture)
{
    void             *owner;
    ngx_uint_t        i;
    ngx_creor_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_creor_module);

    if (ctx == NULL) {
        return NULL;
    }

    for (i = 0; i < creor_ncaptures; i++) {
        owner = *(void **) ((u_char *) ctx + creor_captures[i]->owner);

        if (owner) {
            *capture = creor_captures[i];
            return owner;
        }
    }

    return NULL;
}


static ngx_int_t
creor_capture_header_filter(ngx_http_request_t *r)
{
    void             *owner;
    creor_capture_t  *capture;

    owner = creor_capture_find(r, &capture);

    if (owner == NULL) {
        return ngx_http_next_header_filter(r);
    }

    r->header_sent = 1;

    return capture->header(r, owner);
}


static ngx_int_t
creor_capture_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    void             *owner;
    creor_capture_t  *capture;

    owner = creor_capture_find(r, &capture);

    if (owner == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    return capture->body(r, in, owner);
}
