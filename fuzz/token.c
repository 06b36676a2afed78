
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The credential parsers: the input as a token (creor_parse_token()) and
 * as an Authorization value (creor_auth_token(): Bearer or Basic), whose
 * token is then parsed too.  An accepted token has the exact form.
 */


#include "../src/pipeline/creor_auth.c"
#include "input.h"


static void creor_fuzz_token(u_char *p, size_t len);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_str_t    value, token;
    ngx_pool_t  *pool;

    pool = creor_fuzz_input(data, size, &value);
    if (pool == NULL) {
        return 0;
    }

    creor_fuzz_token(value.data, value.len);

    if (creor_auth_token(pool, &value, &token) == NGX_OK) {
        if (token.len > value.len) {
            abort();
        }

        creor_fuzz_token(token.data, token.len);
    }

    ngx_destroy_pool(pool);

    return 0;
}


static void
creor_fuzz_token(u_char *p, size_t len)
{
    size_t         pre;
    creor_token_t  tok;

    if (creor_parse_token((char *) p, len, &tok) != 0) {
        return;
    }

    pre = (p[0] == 'c') ? 3 : 4;

    if (len != pre + CREOR_ULID_LEN + 1 + CREOR_SECRET_B62_LEN
        || tok.ulid != (char *) p + pre
        || tok.secret != tok.ulid + CREOR_ULID_LEN + 1
        || tok.secret_len != CREOR_SECRET_B62_LEN
        || !creor_is_id((char *) p, pre + CREOR_ULID_LEN,
                        pre == 3 ? "ck_" : "key_")
        || !creor_is_b62(tok.secret, tok.secret_len))
    {
        abort();
    }
}
