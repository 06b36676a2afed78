
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The run a route names (":run") for the handlers of runs, their events
 * and their files: creor_run_object, for creor_object_load() (a read or
 * write transaction of its own), and creor_runs_route_run() in the
 * caller's transaction.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


static ngx_int_t creor_run_object_load(creor_store_t *st, MDB_txn *txn,
    ngx_pool_t *pool, ngx_str_t *org, ngx_str_t *id, void *rec);


creor_object_t  creor_run_object = {
    CREOR_ID_RUN, "run", creor_run_object_load
};


static ngx_int_t
creor_run_object_load(creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool,
    ngx_str_t *org, ngx_str_t *id, void *rec)
{
    return creor_run_load(st, txn, pool, org, id, rec);
}


/* the route's run, which the scope checked: gone is not found */

ngx_int_t
creor_runs_route_run(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    MDB_txn *txn, creor_run_t *run)
{
    int  rc;

    rc = creor_run_load(&ctx->mcf->store, txn, r->pool, &ctx->who.org,
                        &ctx->ids[CREOR_ID_RUN], run);

    if (rc == CREOR_STORE_NOTFOUND) {
        return creor_fail(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND", NULL,
                          "No such run.");
    }

    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    return NGX_OK;
}
