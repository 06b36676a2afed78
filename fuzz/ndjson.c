
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The executor's NDJSON reply as a leg's piece handler takes it
 * (creor_legs.c, creor_executor.c): the input's first byte sets the size
 * of the buffers it arrives in, the rest is the reply.  Each buffer goes
 * through creor_leg_feed() with a pool of its own, and each complete line
 * through creor_leg_line().
 * The lines and what is left over put together are the reply again; the
 * feed fails as soon as a line is longer than the limit, and only then
 * (a limit of 200 bytes here, so that inputs reach it).
 */


#define CREOR_LINE_MAX  200

#include "../src/engine/creor_executor.c"


static size_t creor_fuzz_longest(u_char *p, size_t len);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char        *reply, *p, *last, *seen, *buf;
    size_t         chunk, n;
    ngx_int_t      rc;
    ngx_str_t     *line, copy;
    ngx_uint_t     i;
    ngx_pool_t    *pool, *own;
    const char    *type;
    ngx_array_t    lines;
    creor_leg_t    leg;
    creor_json_t  *value;

    if (size == 0) {
        return 0;
    }

    own = ngx_create_pool(1024, ngx_cycle->log);
    if (own == NULL) {
        return 0;
    }

    chunk = data[0] % 64 + 1;
    n = size - 1;

    reply = ngx_pnalloc(own, n);
    seen = ngx_pnalloc(own, n + 1);
    if (reply == NULL || seen == NULL) {
        ngx_destroy_pool(own);
        return 0;
    }

    ngx_memcpy(reply, data + 1, n);

    ngx_memzero(&leg, sizeof(creor_leg_t));
    ngx_str_set(&leg.run_id, "run_fuzz");

    p = reply;
    last = reply + n;
    copy.data = seen;
    copy.len = 0;

    while (p < last) {
        pool = ngx_create_pool(16384, ngx_cycle->log);
        if (pool == NULL
            || ngx_array_init(&lines, pool, 8, sizeof(ngx_str_t)) != NGX_OK)
        {
            abort();
        }

        /* the buffer itself is a copy of its exact size, as nginx's is */

        chunk = ngx_min(chunk, (size_t) (last - p));

        buf = ngx_pnalloc(pool, chunk);
        if (buf == NULL) {
            abort();
        }

        ngx_memcpy(buf, p, chunk);

        rc = creor_leg_feed(&leg, buf, chunk, &lines, pool);
        p += chunk;

        if ((rc != NGX_OK)
            != (creor_fuzz_longest(reply, p - reply) > CREOR_LINE_MAX))
        {
            abort();
        }

        if (rc != NGX_OK) {
            /* the body filter takes no more of this call */
            ngx_destroy_pool(pool);
            creor_leg_line_free(&leg);
            ngx_destroy_pool(own);
            return 0;
        }
        line = lines.elts;

        for (i = 0; i < lines.nelts; i++) {
            if (copy.len + line[i].len + 1 > n) {
                abort();
            }

            copy.data = ngx_cpymem(copy.data, line[i].data, line[i].len);
            *copy.data++ = '\n';
            copy.len += line[i].len + 1;

            type = NULL;
            rc = creor_leg_line(pool, &line[i], &type, &value);

            if (rc == NGX_OK
                && (type == NULL
                    || (value && value->type != CREOR_JSON_OBJECT)))
            {
                abort();
            }
        }

        ngx_destroy_pool(pool);
    }

    /* the lines, then the line still being received, are the reply */

    if (copy.len + leg.line_len != n
        || ngx_memcmp(seen, reply, copy.len) != 0
        || (leg.line_len
            && ngx_memcmp(leg.line, reply + copy.len, leg.line_len) != 0))
    {
        abort();
    }

    creor_leg_line_free(&leg);
    ngx_destroy_pool(own);

    return 0;
}


/* the longest line of what arrived so far, the one still open included */

static size_t
creor_fuzz_longest(u_char *p, size_t len)
{
    u_char  *nl, *last;
    size_t   n, max;

    last = p + len;
    max = 0;

    while (p < last) {
        nl = memchr(p, '\n', last - p);
        n = (nl ? nl : last) - p;
        max = ngx_max(max, n);
        p = nl ? nl + 1 : last;
    }

    return max;
}
