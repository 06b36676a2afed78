
/*
 * Copyright (C) ngx_creor_module authors
 *
 * List cursors (creor_cursor.c): "c:<token>" holds what a cursor is
 * bound to and the store key of the last item sent (SPEC 5).
 */


#ifndef _CREOR_CURSOR_H_INCLUDED_
#define _CREOR_CURSOR_H_INCLUDED_


#include <openssl/sha.h>


#define CREOR_CURSOR_PREFIX     "cur_"
#define CREOR_CURSOR_LEN        (4 + CREOR_SECRET_B62_LEN)


#define CREOR_CURSOR_PURGE  1000    /* cursors purged a housekeeping turn */


typedef struct {
    int64_t     expires_ms;
    char        org[CREOR_ID_MAX];
    char        route[32];
    uint8_t     filters[SHA256_DIGEST_LENGTH];
    uint8_t     desc;
    uint8_t     reserved;
    uint16_t    after_len;
    char        after[CREOR_STORE_KEY_MAX];
} creor_cursor_rec_t;


ngx_int_t creor_cursor_get(creor_store_t *st, ngx_str_t *token,
    creor_cursor_rec_t *rec);
ngx_int_t creor_cursor_put(creor_store_t *st, creor_cursor_rec_t *rec,
    u_char *token);


#endif /* _CREOR_CURSOR_H_INCLUDED_ */
