
/*
 * Copyright (C) ngx_creor_module authors
 *
 * What the handlers of a route's object share: "open a transaction, load
 * the object the route names or fail with 404, abort on failure", the
 * end of their write transaction, and the answer to a delete.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


/*
 * The object of obj's kind that the route names (the scope checked it),
 * into rec.  With txn, in a write transaction left open for the caller on
 * NGX_OK; without, in the read transaction, ended here (obj->load copies
 * what rec needs).  Otherwise the request has its envelope: NGX_DECLINED.
 */

ngx_int_t
creor_object_load(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_object_t *obj, MDB_txn **txn, void *rec)
{
    ngx_int_t       rc;
    MDB_txn        *t;
    creor_store_t  *st;

    st = &ctx->mcf->store;

    if (txn) {
        rc = creor_store_write(st, &t);
        if (rc != CREOR_STORE_OK) {
            return creor_fail_store(r, rc);
        }

    } else {
        t = creor_store_read(st);
        if (t == NULL) {
            return creor_fail_store(r, CREOR_STORE_ERROR);
        }
    }

    rc = creor_object_get(r, ctx, obj, t, rec);

    if (txn == NULL) {
        creor_store_read_done(st);

    } else if (rc == NGX_OK) {
        *txn = t;

    } else {
        creor_store_abort(t);
    }

    return rc;
}


/* the same in the caller's transaction, which it ends */

ngx_int_t
creor_object_get(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_object_t *obj, MDB_txn *txn, void *rec)
{
    ngx_int_t  rc;

    rc = obj->load(&ctx->mcf->store, txn, r->pool, &ctx->who.org,
                   &ctx->ids[obj->kind], rec);

    if (rc == CREOR_STORE_NOTFOUND) {
        return creor_fail(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND", NULL,
                          "No such %s.", obj->name);
    }

    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    return NGX_OK;
}


/*
 * Ends a handler's write transaction: committed if rc, the outcome of
 * the work done in it, is CREOR_STORE_OK, aborted otherwise.  NGX_OK, or
 * the request has the store's envelope.
 */

ngx_int_t
creor_object_commit(ngx_http_request_t *r, MDB_txn *txn, ngx_int_t rc)
{
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return creor_fail_store(r, rc);
    }

    rc = creor_store_commit(txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    return NGX_OK;
}


/* {"id": ..., "object": ..., "deleted": true} */

ngx_int_t
creor_object_deleted(ngx_http_request_t *r, ngx_str_t *id,
    const char *object)
{
    yajl_gen  g;

    g = creor_gen_create(r);
    if (g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    yajl_gen_map_open(g);
    creor_gen_kv_ngx(g, "id", id);
    creor_gen_kv(g, "object", object);
    creor_gen_kv_bool(g, "deleted", 1);
    yajl_gen_map_close(g);

    return creor_send_json(r, NGX_HTTP_OK, g);
}
