
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The object a route names (creor_object.c): read it in a read or a
 * write transaction or fail the request with 404 or the store's envelope;
 * end the write transaction; answer a delete.
 */


#ifndef _CREOR_OBJECT_H_INCLUDED_
#define _CREOR_OBJECT_H_INCLUDED_


/* reads the object id of org into rec: CREOR_STORE_OK, _NOTFOUND... */
typedef ngx_int_t (*creor_object_load_pt)(creor_store_t *st, MDB_txn *txn,
    ngx_pool_t *pool, ngx_str_t *org, ngx_str_t *id, void *rec);

typedef struct {
    ngx_uint_t              kind;       /* the route's id: CREOR_ID_* */
    const char             *name;       /* "No such <name>." */
    creor_object_load_pt    load;
} creor_object_t;


ngx_int_t creor_object_load(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_object_t *obj, MDB_txn **txn, void *rec);
ngx_int_t creor_object_get(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_object_t *obj, MDB_txn *txn, void *rec);
ngx_int_t creor_object_commit(ngx_http_request_t *r, MDB_txn *txn,
    ngx_int_t rc);
ngx_int_t creor_object_deleted(ngx_http_request_t *r, ngx_str_t *id,
    const char *object);


#endif /* _CREOR_OBJECT_H_INCLUDED_ */
