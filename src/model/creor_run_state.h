
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The state machine of a run (creor_run_state.c); included from
 * ngx_creor.h.
 */


#ifndef _CREOR_RUN_STATE_H_INCLUDED_
#define _CREOR_RUN_STATE_H_INCLUDED_


ngx_int_t creor_run_event(creor_store_t *st, MDB_txn *txn, creor_run_t *run,
    const char *type, size_t type_len, creor_json_t *value);
ngx_int_t creor_run_commit(creor_store_t *st, MDB_txn *txn,
    creor_run_t *run, ngx_flag_t sync);
ngx_int_t creor_run_fail(creor_store_t *st, MDB_txn *txn, creor_run_t *run,
    const char *type, const char *reason);
ngx_int_t creor_runs_cancel_agent(creor_store_t *st, MDB_txn *txn,
    ngx_pool_t *pool, ngx_str_t *org, ngx_str_t *agent, ngx_flag_t *more);


#endif /* _CREOR_RUN_STATE_H_INCLUDED_ */
