
/*
 * Copyright (C) ngx_creor_module authors
 *
 * What each harness does with its input first: a copy of exactly size
 * bytes in a pool of its own, so that a read past it is a crash.
 * Included by a harness after the code it tests.
 */


#ifndef _CREOR_FUZZ_INPUT_H_INCLUDED_
#define _CREOR_FUZZ_INPUT_H_INCLUDED_


/* the pool to destroy when done, or NULL: the input is passed over */

static ngx_pool_t *
creor_fuzz_input(const uint8_t *data, size_t size, ngx_str_t *in)
{
    ngx_pool_t  *pool;

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    in->len = size;
    in->data = ngx_pnalloc(pool, size);
    if (in->data == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    ngx_memcpy(in->data, data, size);

    return pool;
}


#endif /* _CREOR_FUZZ_INPUT_H_INCLUDED_ */
