
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Project and API key records as the handlers read them: a project is
 * "p:<org>:<project id>", a creor_project_rec_t; a key is the store's
 * (creor_key_get()).
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_creor.h"


ngx_int_t
creor_project_load(creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool,
    ngx_str_t *org, ngx_str_t *id, void *rec)
{
    ngx_int_t  rc;
    char       key[CREOR_STORE_KEY_MAX];
    MDB_val    val;

    ngx_snprintf((u_char *) key, sizeof(key), "p:%V:%V%Z", org, id);

    rc = creor_store_get(st, txn, key, &val);

    return (rc == CREOR_STORE_OK) ? creor_project_decode(&val, rec) : rc;
}


ngx_int_t
creor_project_decode(const MDB_val *val, creor_project_rec_t *rec)
{
    if (val->mv_size != sizeof(creor_project_rec_t)) {
        return CREOR_STORE_ERROR;
    }

    ngx_memcpy(rec, val->mv_data, sizeof(creor_project_rec_t));

    return CREOR_STORE_OK;
}


/* the key id of org: the scope checked that it is org's */

ngx_int_t
creor_key_load(creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool,
    ngx_str_t *org, ngx_str_t *id, void *rec)
{
    char  sid[CREOR_ID_MAX];

    ngx_cpystrn((u_char *) sid, id->data, ngx_min(id->len + 1, sizeof(sid)));

    return creor_key_get(st, txn, sid, rec);
}
