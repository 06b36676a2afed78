
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The Idempotency-Key check of creor_idempotency.c on any header value:
 * what it accepts is 1 to 255 visible ASCII characters.
 */


#include "../src/pipeline/creor_idempotency.c"
#include "input.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t       i;
    ngx_str_t    key;
    ngx_pool_t  *pool;

    pool = creor_fuzz_input(data, size, &key);
    if (pool == NULL) {
        return 0;
    }

    if (creor_idem_key_valid(&key)) {
        if (key.len == 0 || key.len > CREOR_IDEM_KEY_MAX) {
            abort();
        }

        for (i = 0; i < key.len; i++) {
            if (key.data[i] <= ' ' || key.data[i] >= 0x7f) {
                abort();
            }
        }
    }

    ngx_destroy_pool(pool);

    return 0;
}
