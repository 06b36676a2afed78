
/*
 * Copyright (C) ngx_creor_module authors
 *
 * List cursors: an opaque token names a record in the store
 * ("c:<token>") that holds the organization, the route, a hash of the
 * filters and the store key of the last item sent.  They expire after
 * CREOR_CURSOR_TTL.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_creor.h"




static ngx_flag_t creor_cursor_valid(ngx_str_t *token);




/* the cursor token names: a token of another form is not found */

ngx_int_t
creor_cursor_get(creor_store_t *st, ngx_str_t *token, creor_cursor_rec_t *rec)
{
    int       rc;
    char      key[CREOR_STORE_KEY_MAX];
    MDB_val   val;
    MDB_txn  *txn;

    if (!creor_cursor_valid(token)) {
        return CREOR_STORE_NOTFOUND;
    }

    ngx_snprintf((u_char *) key, sizeof(key), "c:%V%Z", token);

    txn = creor_store_read(st);
    if (txn == NULL) {
        return CREOR_STORE_ERROR;
    }

    rc = creor_store_get(st, txn, key, &val);

    if (rc == CREOR_STORE_OK) {
        if (val.mv_size == sizeof(creor_cursor_rec_t)) {
            ngx_memcpy(rec, val.mv_data, sizeof(creor_cursor_rec_t));

        } else {
            rc = CREOR_STORE_ERROR;
        }
    }

    creor_store_read_done(st);

    return (rc == CREOR_STORE_OK || rc == CREOR_STORE_NOTFOUND)
           ? rc : CREOR_STORE_ERROR;
}


/*
 * The form creor_cursor_put() makes: only such a token becomes part of
 * a store key (a NUL would end the key early).
 */

static ngx_flag_t
creor_cursor_valid(ngx_str_t *token)
{
    return token->len == CREOR_CURSOR_LEN
           && ngx_strncmp(token->data, CREOR_CURSOR_PREFIX, 4) == 0
           && creor_is_b62((char *) token->data + 4, token->len - 4);
}


/* stores rec under a new token (CREOR_CURSOR_LEN + 1 bytes), committed */

ngx_int_t
creor_cursor_put(creor_store_t *st, creor_cursor_rec_t *rec, u_char *token)
{
    int       rc;
    char      key[CREOR_STORE_KEY_MAX];
    MDB_txn  *txn;
    uint8_t   raw[CREOR_SECRET_LEN];

    if (creor_random(raw, sizeof(raw)) != 0) {
        return CREOR_STORE_ERROR;
    }

    ngx_memcpy(token, CREOR_CURSOR_PREFIX, 4);
    creor_base62((char *) token + 4, raw, sizeof(raw));

    ngx_snprintf((u_char *) key, sizeof(key), "c:%s%Z", token);

    rc = creor_store_write(st, &txn);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    rc = creor_store_put(st, txn, key, rec, sizeof(creor_cursor_rec_t), 0);
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return rc;
    }

    return creor_store_commit(txn);
}

