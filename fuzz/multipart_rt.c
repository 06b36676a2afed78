
/*
 * Copyright (C) ngx_creor_module authors
 *
 * creor_multipart_parse() on bodies made the way a client makes them:
 * the input is parts separated by 0xff, each a name, 0xfe, its data (a
 * file if the name starts with "f").  The body is written with CRLF and
 * quoted-string escapes, and parsing it must give the parts back.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define FUZZ_BOUNDARY  "creorB0undary"


static u_char *creor_fuzz_quote(u_char *d, u_char *s, size_t len);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char        *p, *last, *end, *sep, *b, err[256];
    ngx_int_t      rc;
    ngx_str_t      ct, body, *name, *value;
    ngx_uint_t     i, n;
    ngx_pool_t    *pool;
    ngx_array_t    parts, want;
    creor_part_t  *part;

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL
        || ngx_array_init(&want, pool, 8, 2 * sizeof(ngx_str_t)) != NGX_OK)
    {
        abort();
    }

    /* the parts wanted: name and data, pointers into the input */

    p = (u_char *) data;
    last = p + size;

    while (p < last) {
        end = memchr(p, 0xff, last - p);
        end = end ? end : last;
        sep = memchr(p, 0xfe, end - p);

        name = ngx_array_push(&want);
        if (name == NULL) {
            abort();
        }

        value = name + 1;
        name->data = p;
        name->len = (sep ? sep : end) - p;
        value->data = sep ? sep + 1 : end;
        value->len = end - value->data;

        /* a name is one header line; data must not hold the delimiter */

        if (name->len == 0 || want.nelts > 64
            || memchr(name->data, LF, name->len)
            || memchr(name->data, CR, name->len)
            || memmem(value->data, value->len, "--" FUZZ_BOUNDARY,
                      sizeof("--" FUZZ_BOUNDARY) - 1))
        {
            ngx_destroy_pool(pool);
            return 0;
        }

        p = end + 1;
    }

    if (want.nelts == 0) {
        ngx_destroy_pool(pool);
        return 0;
    }

    /* a file's name is written twice, escaped: twice its size each */

    body.data = ngx_pnalloc(pool, 5 * size + 160 * want.nelts + 64);
    if (body.data == NULL) {
        abort();
    }

    b = body.data;
    name = want.elts;

    for (i = 0; i < want.nelts; i++) {
        b = ngx_sprintf(b, "--" FUZZ_BOUNDARY "\r\n"
                        "Content-Disposition: form-data; name=\"");
        b = creor_fuzz_quote(b, name[2 * i].data, name[2 * i].len);
        *b++ = '"';

        if (name[2 * i].data[0] == 'f') {
            b = ngx_sprintf(b, "; filename=\"");
            b = creor_fuzz_quote(b, name[2 * i].data, name[2 * i].len);
            b = ngx_sprintf(b, "\"\r\nContent-Type: text/plain");
        }

        b = ngx_sprintf(b, "\r\n\r\n");
        b = ngx_cpymem(b, name[2 * i + 1].data, name[2 * i + 1].len);
        b = ngx_sprintf(b, "\r\n");
    }

    b = ngx_sprintf(b, "--" FUZZ_BOUNDARY "--\r\n");
    body.len = b - body.data;

    ngx_str_set(&ct, "multipart/form-data; boundary=" FUZZ_BOUNDARY);

    rc = creor_multipart_parse(pool, &ct, &body, &parts, err, sizeof(err));

    if (rc != NGX_OK || parts.nelts != want.nelts) {
        abort();
    }

    part = parts.elts;

    for (i = 0; i < parts.nelts; i++) {
        name = (ngx_str_t *) want.elts + 2 * i;
        value = name + 1;
        n = (name->data[0] == 'f');

        if (part[i].name.len != name->len
            || ngx_memcmp(part[i].name.data, name->data, name->len) != 0
            || part[i].data.len != value->len
            || ngx_memcmp(part[i].data.data, value->data, value->len) != 0
            || part[i].is_file != n
            || (n && (part[i].filename.len != name->len
                      || ngx_memcmp(part[i].filename.data, name->data,
                                    name->len) != 0)))
        {
            abort();
        }
    }

    ngx_destroy_pool(pool);

    return 0;
}


/* a quoted-string's content: \ before " and \ */

static u_char *
creor_fuzz_quote(u_char *d, u_char *s, size_t len)
{
    while (len--) {
        if (*s == '"' || *s == '\\') {
            *d++ = '\\';
        }

        *d++ = *s++;
    }

    return d;
}
