
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The runs API (creor_runs.c); included from ngx_creor.h.
 */


#ifndef _CREOR_RUNS_H_INCLUDED_
#define _CREOR_RUNS_H_INCLUDED_


ngx_int_t creor_runs_start(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    ngx_str_t *agent_id, creor_json_t *inputs, ngx_flag_t followup,
    MDB_txn *txn, creor_run_t *run);
ngx_int_t creor_runs_accepted(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    MDB_txn *txn, creor_run_t *run);
ngx_int_t creor_runs_create(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_runs_get(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_runs_list(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_runs_cancel(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_runs_signal(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);


#endif /* _CREOR_RUNS_H_INCLUDED_ */
