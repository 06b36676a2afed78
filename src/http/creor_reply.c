
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Pieces of handlers' replies: the end of a write transaction, a
 * deletion's answer.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


/*
 * A handler's write transaction ends: aborted if the step before failed
 * (rc), else committed.  NGX_OK, or the request's failure is set.
 */

ngx_int_t
creor_commit_or_fail(ngx_http_request_t *r, MDB_txn *txn, int rc)
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


/* {"id", "object", "deleted": true} */

ngx_int_t
creor_send_deleted(ngx_http_request_t *r, const char *object, ngx_str_t *id)
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
