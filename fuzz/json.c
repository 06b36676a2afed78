
/*
 * Copyright (C) ngx_creor_module authors
 *
 * creor_json_parse() and creor_utf8_valid() on any bytes.  Besides not
 * crashing: creor_utf8_valid() agrees with the table of well-formed
 * sequences of Unicode (chapter 3, table 3-7); text that is not UTF-8 is
 * refused; a tree that is accepted holds only valid UTF-8 strings without
 * NUL, no deeper than the limit, and generates JSON that parses again to
 * the same text; with creor_json_max_values set to its number of values
 * it is accepted, with one less refused as too many.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"
#include "input.h"


static ngx_flag_t creor_fuzz_utf8(u_char *p, size_t len);
static ngx_uint_t creor_fuzz_check(creor_json_t *v, ngx_uint_t depth,
    ngx_flag_t member);
static void creor_fuzz_gen(ngx_pool_t *pool, creor_json_t *v,
    ngx_str_t *out);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char        *buf, err[128];
    ngx_str_t      in, text, again;
    ngx_pool_t    *pool;
    ngx_flag_t     utf8, too_many;
    ngx_uint_t     values;
    creor_json_t  *root, *copy;

    pool = creor_fuzz_input(data, size, &in);
    if (pool == NULL) {
        return 0;
    }

    buf = in.data;

    utf8 = creor_utf8_valid(buf, size);

    if (utf8 != creor_fuzz_utf8(buf, size)) {
        abort();
    }

    err[0] = '\0';
    root = creor_json_parse(pool, buf, size, err, sizeof(err));

    if (root == NULL) {
        if (err[0] == '\0' || ngx_strlen(err) >= sizeof(err)) {
            abort();
        }

        ngx_destroy_pool(pool);
        return 0;
    }

    if (!utf8) {
        abort();                /* invalid UTF-8 was accepted */
    }

    values = creor_fuzz_check(root, 0, 0);

    /* creor_json_max_values: exactly as many values pass, one more not */

    if (creor_json_parse_max(pool, buf, size, values, &too_many, err,
                             sizeof(err))
        == NULL)
    {
        abort();
    }

    if (values > 1
        && (creor_json_parse_max(pool, buf, size, values - 1, &too_many, err,
                                 sizeof(err))
            != NULL
            || !too_many))
    {
        abort();
    }

    creor_fuzz_gen(pool, root, &text);

    copy = creor_json_parse(pool, text.data, text.len, err, sizeof(err));
    if (copy == NULL) {
        abort();                /* what we generate we cannot read */
    }

    creor_fuzz_gen(pool, copy, &again);

    if (again.len != text.len
        || ngx_memcmp(again.data, text.data, text.len) != 0)
    {
        abort();
    }

    ngx_destroy_pool(pool);

    return 0;
}


/* the same question answered another way: byte ranges, no arithmetic */

static ngx_flag_t
creor_fuzz_utf8(u_char *p, size_t len)
{
    u_char  lo, hi;
    size_t  i, n, k;

    for (i = 0; i < len; i += n + 1) {
        lo = 0x80;
        hi = 0xbf;

        if (p[i] <= 0x7f) {
            n = 0;

        } else if (p[i] >= 0xc2 && p[i] <= 0xdf) {
            n = 1;

        } else if (p[i] >= 0xe0 && p[i] <= 0xef) {
            n = 2;
            lo = (p[i] == 0xe0) ? 0xa0 : 0x80;
            hi = (p[i] == 0xed) ? 0x9f : 0xbf;

        } else if (p[i] >= 0xf0 && p[i] <= 0xf4) {
            n = 3;
            lo = (p[i] == 0xf0) ? 0x90 : 0x80;
            hi = (p[i] == 0xf4) ? 0x8f : 0xbf;

        } else {
            return 0;
        }

        if (len - i <= n) {
            return 0;
        }

        for (k = 1; k <= n; k++) {
            if (p[i + k] < lo || p[i + k] > hi) {
                return 0;
            }

            lo = 0x80;
            hi = 0xbf;
        }
    }

    return 1;
}


/* the tree is well formed; returns how many values it has */

static ngx_uint_t
creor_fuzz_check(creor_json_t *v, ngx_uint_t depth, ngx_flag_t member)
{
    ngx_uint_t     n, values;
    creor_json_t  *c;

    if (v->type > CREOR_JSON_OBJECT) {
        abort();
    }

    if (v->type == CREOR_JSON_STRING
        && (!creor_utf8_valid(v->str.data, v->str.len)
            || ngx_strlchr(v->str.data, v->str.data + v->str.len, '\0')
            || v->str.data[v->str.len] != '\0'))
    {
        abort();
    }

    if (member && !creor_utf8_valid(v->key.data, v->key.len)) {
        abort();
    }

    if (v->type != CREOR_JSON_ARRAY && v->type != CREOR_JSON_OBJECT) {
        return 1;
    }

    if (depth + 1 > CREOR_JSON_MAX_DEPTH) {
        abort();
    }

    n = 0;
    values = 1;

    for (c = v->child; c; c = c->next) {
        values += creor_fuzz_check(c, depth + 1,
                                   v->type == CREOR_JSON_OBJECT);
        n++;
    }

    if (n != v->count) {
        abort();
    }

    return values;
}


static void
creor_fuzz_gen(ngx_pool_t *pool, creor_json_t *v, ngx_str_t *out)
{
    yajl_gen  g;

    g = creor_gen_pool(pool);
    if (g == NULL) {
        abort();
    }

    creor_gen_value(g, v);

    if (creor_gen_result_pool(pool, g, out) != NGX_OK) {
        abort();
    }
}
