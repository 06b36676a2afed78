
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Work spread over turns of the event loop (creor_steps.c); included from
 * ngx_creor.h once the request's context is declared.
 */


#ifndef _CREOR_STEPS_H_INCLUDED_
#define _CREOR_STEPS_H_INCLUDED_


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


ngx_int_t creor_steps(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_step_pt step);


#endif /* _CREOR_STEPS_H_INCLUDED_ */
