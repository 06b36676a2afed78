
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The capture filter (creor_capture.c).  A subrequest whose ctx has the
 * member at "owner" set (ctx->job for the engine's jobs, ctx->chat for a
 * provider call) is captured: its header never reaches the client; the
 * capture's header and body hooks are given it and that member instead.
 * A capture may pass output on below the filter with
 * creor_capture_next_body().
 */


#ifndef _CREOR_CAPTURE_H_INCLUDED_
#define _CREOR_CAPTURE_H_INCLUDED_


typedef struct {
    size_t                  owner;      /* offsetof(ngx_creor_ctx_t, ...) */
    ngx_int_t             (*header)(ngx_http_request_t *r, void *owner);
    ngx_int_t             (*body)(ngx_http_request_t *r, ngx_chain_t *in,
                                  void *owner);
} creor_capture_t;


ngx_int_t creor_capture_filter_init(ngx_conf_t *cf);
ngx_int_t creor_capture_add(creor_capture_t *capture);
ngx_int_t creor_capture_next_body(ngx_http_request_t *r, ngx_chain_t *in);


#endif /* _CREOR_CAPTURE_H_INCLUDED_ */
