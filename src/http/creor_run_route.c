
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The run a route names (":run") for the handlers of runs, their events
 * and their files: creor_run_object, for creor_object_load() (a read or
 * write transaction of its own) and creor_object_get() (the caller's).
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
