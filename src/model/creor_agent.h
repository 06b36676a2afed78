
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Agent records (creor_agent.c): "a:<org>:<agent id>", a fixed header
 * (creor_agent_hdr_t) that lists and scope checks read without parsing,
 * then the agent's public JSON.  Store codes (CREOR_STORE_*) out.
 */


#ifndef _CREOR_AGENT_H_INCLUDED_
#define _CREOR_AGENT_H_INCLUDED_


/* an agent read from the store */
typedef struct {
    creor_agent_hdr_t       hdr;
    ngx_str_t               json;       /* the public object */
} creor_agent_t;


ngx_int_t creor_agent_load(creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool,
    ngx_str_t *org, ngx_str_t *id, void *agent);
ngx_int_t creor_agent_decode(const MDB_val *val, creor_agent_t *agent);
ngx_int_t creor_agent_create(creor_store_t *st, MDB_txn *txn,
    ngx_pool_t *pool, ngx_str_t *org, ngx_str_t *project, creor_json_t *doc,
    ngx_str_t *json);
ngx_int_t creor_agent_save(creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool,
    ngx_str_t *org, creor_json_t *agent, creor_agent_hdr_t *hdr,
    ngx_str_t *json);
ngx_int_t creor_agent_track(creor_store_t *st, MDB_txn *txn,
    ngx_pool_t *pool, creor_run_t *run, ngx_flag_t latest);
ngx_int_t creor_agent_delete(creor_store_t *st, ngx_pool_t *pool,
    ngx_str_t *org, ngx_str_t *id, ngx_flag_t *more, ngx_log_t *log);


#endif /* _CREOR_AGENT_H_INCLUDED_ */
