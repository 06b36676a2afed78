
/*
 * Copyright (C) ngx_creor_module authors
 *
 * creor_json_scan() against creor_json_parse_max() on any bytes: the
 * chat body's one-pass check must decide exactly as the tree's parse
 * does (accepted or not, too many values or not, the root's type), and
 * report a member where the tree has it, with the same string value and
 * its bytes inside the text.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"
#include "input.h"


#define CREOR_FUZZ_MAX  64


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char               *buf, err[128], err2[128];
    ngx_str_t             in;
    ngx_uint_t            i, root;
    ngx_flag_t            too_many, too_many2;
    ngx_pool_t           *pool;
    creor_json_t         *tree, *v, *parent;
    creor_json_member_t   m[3];

    pool = creor_fuzz_input(data, size, &in);
    if (pool == NULL) {
        return 0;
    }

    buf = in.data;

    ngx_memzero(m, sizeof(m));
    ngx_str_set(&m[0].name, "model");
    m[0].parent = -1;
    ngx_str_set(&m[1].name, "stream_options");
    m[1].parent = -1;
    ngx_str_set(&m[2].name, "include_usage");
    m[2].parent = 1;

    err[0] = '\0';
    err2[0] = '\0';
    too_many = 0;
    too_many2 = 0;

    if (creor_json_scan(pool, buf, size, CREOR_FUZZ_MAX, m, 3, &root,
                        &too_many, err, sizeof(err))
        != NGX_OK)
    {
        root = (ngx_uint_t) -1;
    }

    tree = creor_json_parse_max(pool, buf, size, CREOR_FUZZ_MAX, &too_many2,
                                err2, sizeof(err2));

    if ((root != (ngx_uint_t) -1 && root != 0) != (tree != NULL)) {
        abort();
    }

    if (too_many != too_many2) {
        abort();
    }

    if (tree == NULL) {
        ngx_destroy_pool(pool);
        return 0;
    }

    if (root != tree->type + 1) {
        abort();
    }

    if (tree->type != CREOR_JSON_OBJECT) {
        ngx_destroy_pool(pool);
        return 0;
    }

    for (i = 0; i < 3; i++) {
        if (m[i].parent == -1) {
            v = creor_json_get(tree, (char *) m[i].name.data);

        } else {
            parent = creor_json_get(tree, "stream_options");
            v = (parent && parent->type == CREOR_JSON_OBJECT)
                ? creor_json_get(parent, (char *) m[i].name.data) : NULL;

            /* a member of a parent the scan did not find is not looked for */

            if (!m[m[i].parent].found) {
                continue;
            }
        }

        if ((v != NULL) != (m[i].found != 0)) {
            abort();
        }

        if (v == NULL) {
            continue;
        }

        if (m[i].type != v->type
            || m[i].start < buf || m[i].end > buf + size
            || m[i].start >= m[i].end)
        {
            abort();
        }

        if (v->type == CREOR_JSON_STRING
            && (m[i].str.len != v->str.len
                || ngx_memcmp(m[i].str.data, v->str.data, v->str.len) != 0))
        {
            abort();
        }
    }

    ngx_destroy_pool(pool);

    return 0;
}
