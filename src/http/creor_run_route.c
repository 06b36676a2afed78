
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The run a route names (":run"), for the handlers of runs, their events
 * and their files: loaded, or the request's 404 or store error sent.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


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


/*
 * The same in a read transaction of its own, for a handler that only
 * reads the run; NGX_DECLINED: the failure is sent (the request's end
 * ends the transaction).
 */

ngx_int_t
creor_runs_route_load(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_run_t *run)
{
    MDB_txn  *txn;

    txn = creor_store_read(&ctx->mcf->store);
    if (txn == NULL) {
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    if (creor_runs_route_run(r, ctx, txn, run) != NGX_OK) {
        return NGX_DECLINED;
    }

    creor_store_read_done(&ctx->mcf->store);

    return NGX_OK;
}


/*
 * The same in a write transaction, for a handler that changes the run:
 * on NGX_OK the caller ends *txn; on NGX_DECLINED the failure is sent and
 * the transaction is gone.
 */

ngx_int_t
creor_runs_route_write(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    MDB_txn **txn, creor_run_t *run)
{
    int  rc;

    rc = creor_store_write(&ctx->mcf->store, txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    if (creor_runs_route_run(r, ctx, *txn, run) != NGX_OK) {
        creor_store_abort(*txn);
        return NGX_DECLINED;
    }

    return NGX_OK;
}
