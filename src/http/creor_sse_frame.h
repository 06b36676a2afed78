
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Server-sent events towards a client (creor_sse_frame.c): the response
 * header of a stream, the malloc()ed buffers a stream writes, and a
 * provider's events re-framed.
 */


#ifndef _CREOR_SSE_FRAME_H_INCLUDED_
#define _CREOR_SSE_FRAME_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define CREOR_SSE_EVENT_MAX  (4 * 1024 * 1024)


/* a provider's event stream, re-framed towards the client */
typedef struct {
    u_char                 *event;      /* an unfinished event, malloc()ed */
    size_t                  len;
    size_t                  size;
    size_t                  scanned;    /* where its unfinished line starts */
    ngx_chain_t            *free;
    ngx_chain_t            *busy;
    ngx_chain_t            *held;       /* the provider's, till sent */
    ngx_str_t               request_id;
    int64_t                 input_tokens;
    int64_t                 output_tokens;
    unsigned                strip_usage:1;  /* the client did not ask */
    unsigned                started:1;      /* the client has the header */
    unsigned                usage:1;        /* tokens are known */
    unsigned                finished:1;     /* data: [DONE] was seen */
} creor_sse_frame_t;


ngx_int_t creor_sse_headers(ngx_http_request_t *r, ngx_str_t *request_id);
void creor_sse_bufs_update(ngx_http_request_t *r, ngx_chain_t **free,
    ngx_chain_t **busy, ngx_chain_t **out, ngx_buf_tag_t tag);
void creor_sse_bufs_free(ngx_chain_t *cl);

void creor_sse_frame_reset(creor_sse_frame_t *f);
void creor_sse_frame_free(void *data);
ngx_int_t creor_sse_frame_feed(creor_sse_frame_t *f, ngx_http_request_t *r,
    ngx_chain_t *in, ngx_chain_t **out);
ngx_int_t creor_sse_frame_hold(creor_sse_frame_t *f, ngx_http_request_t *r,
    ngx_chain_t *in);
ngx_int_t creor_sse_frame_header(creor_sse_frame_t *f, ngx_http_request_t *r);
ngx_int_t creor_sse_frame_write(creor_sse_frame_t *f, ngx_http_request_t *r,
    ngx_str_t *data);
ngx_int_t creor_sse_frame_flush(creor_sse_frame_t *f, ngx_http_request_t *r);
void creor_sse_frame_update(creor_sse_frame_t *f, ngx_http_request_t *r,
    ngx_chain_t *out);
ngx_int_t creor_sse_frame_usage(creor_sse_frame_t *f, u_char *p,
    u_char *last);


#endif /* _CREOR_SSE_FRAME_H_INCLUDED_ */
