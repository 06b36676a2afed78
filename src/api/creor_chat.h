
/*
 * Copyright (C) ngx_creor_module authors
 */


#ifndef _CREOR_CHAT_H_INCLUDED_
#define _CREOR_CHAT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"
#include "creor_sse_frame.h"


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


#endif /* _CREOR_CHAT_H_INCLUDED_ */
