
/*
 * Copyright (C) ngx_creor_module authors
 */


#ifndef _CREOR_CHAT_H_INCLUDED_
#define _CREOR_CHAT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


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


/* a chat completion: the client's request and its provider calls */
typedef struct {
    ngx_http_request_t     *r;
    ngx_http_request_t     *sr;         /* the current call */
    ngx_creor_ctx_t        *ctx;        /* the client request's */
    creor_provider_t       *provider;
    ngx_str_t               model;      /* as asked: "provider/name" */
    ngx_str_t               body;       /* towards the provider */
    ngx_uint_t              tries;
    ngx_uint_t              retries;

    /* the current call */
    ngx_msec_t              start;      /* of the current call */
    ngx_uint_t              status;     /* the provider's; 0: none */
    ngx_int_t               rc;         /* how the subrequest ended */
    ngx_str_t               retry_after;
    ngx_chain_t            *answer;     /* a non-stream answer, an error */
    ngx_chain_t           **last;
    size_t                  size;

    creor_sse_frame_t       frame;
    ngx_event_t             renew;      /* of an idempotency claim */

    unsigned                stream:1;
    unsigned                done:1;     /* the call is over */
    unsigned                complete:1; /* its answer's end was seen */
    unsigned                finished:1; /* the client's answer is made */
    unsigned                overflow:1;
} creor_chat_t;


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


#endif /* _CREOR_CHAT_H_INCLUDED_ */
