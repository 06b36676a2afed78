
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Projects and API keys as the handlers read them (creor_tenancy.c), in
 * the shape of creor_object_t's load; their writes are the store's
 * (creor_project_create(), creor_key_issue(), creor_key_put()).
 */


#ifndef _CREOR_TENANCY_H_INCLUDED_
#define _CREOR_TENANCY_H_INCLUDED_


ngx_int_t creor_project_load(creor_store_t *st, MDB_txn *txn,
    ngx_pool_t *pool, ngx_str_t *org, ngx_str_t *id, void *rec);
ngx_int_t creor_project_decode(const MDB_val *val, creor_project_rec_t *rec);
ngx_int_t creor_key_load(creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool,
    ngx_str_t *org, ngx_str_t *id, void *rec);


#endif /* _CREOR_TENANCY_H_INCLUDED_ */
