
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The cursor check of creor_cursor.c on any query value: what it
 * accepts has the form creor_cursor_put() makes, so it can become a
 * store key.
 */


#include "../src/model/creor_cursor.c"
#include "input.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_str_t    token;
    ngx_pool_t  *pool;

    pool = creor_fuzz_input(data, size, &token);
    if (pool == NULL) {
        return 0;
    }

    if (creor_cursor_valid(&token)
        && (token.len != CREOR_CURSOR_LEN
            || ngx_strncmp(token.data, CREOR_CURSOR_PREFIX, 4) != 0
            || ngx_strlchr(token.data, token.data + token.len, '\0')
            || !creor_is_b62((char *) token.data + 4, token.len - 4)))
    {
        abort();
    }

    ngx_destroy_pool(pool);

    return 0;
}
