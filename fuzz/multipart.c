
/*
 * Copyright (C) ngx_creor_module authors
 *
 * creor_multipart_parse(): the input's first line is the Content-Type,
 * the rest the body.  Parts that are accepted lie inside the body, have
 * a name, and are at most CREOR_MP_MAX_PARTS.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


static void creor_fuzz_within(ngx_str_t *s, ngx_str_t *body,
    ngx_flag_t may_copy);


static volatile u_char  creor_fuzz_sink;


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char        *nl, err[256];
    ngx_int_t      rc;
    ngx_str_t      ct, body;
    ngx_uint_t     i;
    ngx_pool_t    *pool;
    ngx_array_t    parts;
    creor_part_t  *part;

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return 0;
    }

    nl = memchr(data, '\n', size);

    /* copies of exactly their size: a read past either is a crash */

    ct.len = nl ? (size_t) (nl - data) : size;
    ct.data = ngx_pnalloc(pool, ct.len);
    body.len = nl ? size - ct.len - 1 : 0;
    body.data = ngx_pnalloc(pool, body.len);

    if (ct.data == NULL || body.data == NULL) {
        ngx_destroy_pool(pool);
        return 0;
    }

    ngx_memcpy(ct.data, data, ct.len);
    ngx_memcpy(body.data, data + size - body.len, body.len);

    err[0] = '\0';
    rc = creor_multipart_parse(pool, &ct, &body, &parts, err, sizeof(err));

    if (rc == NGX_DECLINED) {
        if (err[0] == '\0' || ngx_strlen(err) >= sizeof(err)) {
            abort();
        }

    } else if (rc == NGX_OK) {
        if (parts.nelts == 0 || parts.nelts > 64) {
            abort();
        }

        part = parts.elts;

        for (i = 0; i < parts.nelts; i++) {
            if (part[i].name.len == 0
                || part[i].is_file != (part[i].filename.data != NULL))
            {
                abort();
            }

            creor_fuzz_within(&part[i].data, &body, 0);
            creor_fuzz_within(&part[i].content_type, &body, 0);

            /* unescaped names are copies */
            creor_fuzz_within(&part[i].name, &body, 1);
            creor_fuzz_within(&part[i].filename, &body, 1);
        }

    } else {
        abort();                /* NGX_ERROR: only out of memory */
    }

    ngx_destroy_pool(pool);

    return 0;
}


static void
creor_fuzz_within(ngx_str_t *s, ngx_str_t *body, ngx_flag_t may_copy)
{
    if (s->data == NULL) {
        if (s->len) {
            abort();
        }

        return;
    }

    if (s->data >= body->data && s->data + s->len <= body->data + body->len)
    {
        return;
    }

    if (!may_copy) {
        abort();
    }

    /* a copy: its last byte must be readable, as ASan checks */

    if (s->len) {
        creor_fuzz_sink = s->data[s->len - 1];
    }
}
