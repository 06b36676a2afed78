
/*
 * Copyright (C) ngx_creor_module authors
 *
 * JSON through yajl: a request body is parsed into a tree allocated from
 * the request pool, so nothing is freed by hand; a hostile body costs at
 * most a copy of its strings and creor_json_max_values nodes of 72 bytes.
 * Responses are made with yajl's generator.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <yajl/yajl_parse.h>
#include <yajl/yajl_gen.h>

#include "ngx_creor.h"


/* duplicate member names are looked for, so objects are kept small */
#define CREOR_JSON_MAX_MEMBERS  1024


typedef struct {
    creor_json_t   *node;
    creor_json_t   *last;           /* its last child */
} creor_json_open_t;


typedef struct {
    ngx_pool_t         *pool;
    creor_json_t       *root;
    ngx_str_t           key;        /* pending member name */
    ngx_uint_t          depth;      /* open arrays and objects */
    ngx_uint_t          values;
    ngx_uint_t          max;        /* values allowed, 0: any number */
    ngx_flag_t          too_many;
    const char         *error;
    creor_json_open_t   open[CREOR_JSON_MAX_DEPTH];
} creor_json_parser_t;


/* creor_json_scan(): what a tree would check, without the tree */

#define CREOR_JSON_SCAN_KEYS  64        /* member names on the stack */

typedef struct {
    ngx_uint_t          object;
    ngx_uint_t          first;      /* its member names in keys */
    ngx_int_t           member;     /* its index in m, or NGX_DECLINED */
} creor_json_level_t;


typedef struct {
    ngx_pool_t           *pool;
    yajl_handle           h;
    u_char               *data;
    u_char               *last;
    ngx_uint_t            root;       /* type of the root, +1; 0: none */
    ngx_str_t             key;        /* pending member name */
    u_char               *key_end;    /* in the text */
    ngx_uint_t            depth;
    ngx_uint_t            values;
    ngx_uint_t            max;
    ngx_flag_t            too_many;
    const char           *error;
    creor_json_member_t  *m;
    ngx_uint_t            n;
    ngx_str_t            *keys;       /* names of the open objects */
    ngx_uint_t            nkeys;
    ngx_uint_t            nalloc;
    creor_json_level_t    open[CREOR_JSON_MAX_DEPTH];
} creor_json_scanner_t;


static int32_t creor_utf8_next(u_char **pp, u_char *last);
static ngx_int_t creor_json_check_text(u_char *p, size_t len);
static ngx_int_t creor_json_escape_u(u_char *p, ngx_uint_t *high,
    uint32_t *cp);
static creor_json_t *creor_json_add(creor_json_parser_t *p, ngx_uint_t type);
static int creor_json_null(void *ctx);
static int creor_json_boolean(void *ctx, int b);
static int creor_json_number(void *ctx, const char *s, size_t len);
static int creor_json_string(void *ctx, const unsigned char *s, size_t len);
static int creor_json_start_map(void *ctx);
static int creor_json_map_key(void *ctx, const unsigned char *s, size_t len);
static int creor_json_end(void *ctx);
static int creor_json_start_array(void *ctx);
static ngx_int_t creor_json_scan_fast(creor_json_scanner_t *sc);
static u_char *creor_json_space(u_char *p, u_char *last);
static u_char *creor_json_fast_string(u_char *p, u_char *last,
    ngx_flag_t *esc);
static u_char *creor_json_fast_literal(u_char *p, u_char *last,
    creor_json_member_t *mb);
static u_char *creor_json_fast_number(u_char *p, u_char *last);
static ngx_int_t creor_json_scan_name(creor_json_scanner_t *sc);
static ngx_int_t creor_json_scan_value(creor_json_scanner_t *sc,
    ngx_uint_t type, const u_char *s, size_t len);
static int creor_json_scan_null(void *ctx);
static int creor_json_scan_boolean(void *ctx, int b);
static int creor_json_scan_number(void *ctx, const char *s, size_t len);
static int creor_json_scan_string(void *ctx, const unsigned char *s,
    size_t len);
static int creor_json_scan_start_map(void *ctx);
static int creor_json_scan_map_key(void *ctx, const unsigned char *s,
    size_t len);
static int creor_json_scan_start_array(void *ctx);
static int creor_json_scan_end(void *ctx);
static void creor_gen_cleanup(void *data);


static yajl_callbacks  creor_json_callbacks = {
    creor_json_null,
    creor_json_boolean,
    NULL,
    NULL,
    creor_json_number,
    creor_json_string,
    creor_json_start_map,
    creor_json_map_key,
    creor_json_end,
    creor_json_start_array,
    creor_json_end
};


static yajl_callbacks  creor_json_scan_callbacks = {
    creor_json_scan_null,
    creor_json_scan_boolean,
    NULL,
    NULL,
    creor_json_scan_number,
    creor_json_scan_string,
    creor_json_scan_start_map,
    creor_json_scan_map_key,
    creor_json_scan_end,
    creor_json_scan_start_array,
    creor_json_scan_end
};


creor_json_t *
creor_json_parse(ngx_pool_t *pool, u_char *data, size_t len, u_char *err,
    size_t errlen)
{
    return creor_json_parse_max(pool, data, len, 0, NULL, err, errlen);
}


/*
 * Values are counted as yajl reports them: a body with more than max is
 * refused when the first value too many is seen, so the tree it would
 * have made (72 bytes a value) is never built.
 */

creor_json_t *
creor_json_parse_max(ngx_pool_t *pool, u_char *data, size_t len,
    ngx_uint_t max, ngx_flag_t *too_many, u_char *err, size_t errlen)
{
    yajl_handle           h;
    yajl_status           st;
    creor_json_parser_t   p;

    if (too_many) {
        *too_many = 0;
    }

    if (creor_json_check_text(data, len) != NGX_OK) {
        ngx_cpystrn(err, (u_char *) "The body is not valid UTF-8 text, or has "
                    "an unpaired surrogate escape.", errlen);
        return NULL;
    }

    ngx_memzero(&p, sizeof(creor_json_parser_t));
    p.pool = pool;
    p.max = max;

    h = yajl_alloc(&creor_json_callbacks, NULL, &p);
    if (h == NULL) {
        ngx_cpystrn(err, (u_char *) "out of memory", errlen);
        return NULL;
    }

    st = yajl_parse(h, data, len);

    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
    }

    if (st != yajl_status_ok) {
        if (too_many) {
            *too_many = p.too_many;
        }

        if (p.error) {
            ngx_cpystrn(err, (u_char *) p.error, errlen);

        } else {
            ngx_snprintf(err, errlen - 1, "Invalid JSON at byte %uz.%Z",
                         yajl_get_bytes_consumed(h));
        }

        yajl_free(h);
        return NULL;
    }

    yajl_free(h);

    if (p.root == NULL) {
        ngx_cpystrn(err, (u_char *) "The body is empty.", errlen);
    }

    return p.root;
}


/*
 * The checks of creor_json_parse_max() (text, values, depth, member
 * names) without a tree: only the members listed in m are reported,
 * with where their values are in the text, for a handler that passes the
 * client's bytes on.  *root is the type of the document's root, +1 (0:
 * an empty document).
 */

ngx_int_t
creor_json_scan(ngx_pool_t *pool, u_char *data, size_t len, ngx_uint_t max,
    creor_json_member_t *m, ngx_uint_t n, ngx_uint_t *root,
    ngx_flag_t *too_many, u_char *err, size_t errlen)
{
    ngx_uint_t             i;
    ngx_str_t              keys[CREOR_JSON_SCAN_KEYS];
    yajl_status            st;
    creor_json_scanner_t   sc;

    *too_many = 0;
    *root = 0;

    sc.pool = pool;
    sc.data = data;
    sc.last = data + len;
    sc.root = 0;
    sc.key.len = 0;
    sc.key_end = NULL;
    sc.depth = 0;
    sc.values = 0;
    sc.max = max;
    sc.too_many = 0;
    sc.error = NULL;
    sc.m = m;
    sc.n = n;
    sc.keys = keys;
    sc.nkeys = 0;
    sc.nalloc = CREOR_JSON_SCAN_KEYS;

    if (creor_json_scan_fast(&sc) == NGX_OK) {
        *root = CREOR_JSON_OBJECT + 1;
        return NGX_OK;
    }

    /* anything else is yajl's to decide, as a tree's parse would */

    for (i = 0; i < n; i++) {
        m[i].found = 0;
    }

    sc.depth = 0;
    sc.values = 0;
    sc.nkeys = 0;
    sc.error = NULL;

    if (creor_json_check_text(data, len) != NGX_OK) {
        ngx_cpystrn(err, (u_char *) "The body is not valid UTF-8 text, or has "
                    "an unpaired surrogate escape.", errlen);
        return NGX_ERROR;
    }

    sc.h = yajl_alloc(&creor_json_scan_callbacks, NULL, &sc);
    if (sc.h == NULL) {
        ngx_cpystrn(err, (u_char *) "out of memory", errlen);
        return NGX_ERROR;
    }

    st = yajl_parse(sc.h, data, len);

    if (st == yajl_status_ok) {
        st = yajl_complete_parse(sc.h);
    }

    if (st != yajl_status_ok) {
        *too_many = sc.too_many;

        if (sc.error) {
            ngx_cpystrn(err, (u_char *) sc.error, errlen);

        } else {
            ngx_snprintf(err, errlen - 1, "Invalid JSON at byte %uz.%Z",
                         yajl_get_bytes_consumed(sc.h));
        }

        yajl_free(sc.h);
        return NGX_ERROR;
    }

    yajl_free(sc.h);

    if (sc.root == 0) {
        ngx_cpystrn(err, (u_char *) "The body is empty.", errlen);
    }

    *root = sc.root;

    return NGX_OK;
}


/*
 * The usual body in one pass, without yajl: an object, strictly valid
 * JSON and UTF-8, no member name with an escape, within the limits.
 * NGX_DECLINED for anything else, which the yajl scan then decides with
 * its error message: this pass never refuses a body itself.
 */

static ngx_int_t
creor_json_scan_fast(creor_json_scanner_t *sc)
{
    u_char               *p, *last, *s;
    ngx_int_t             i;
    ngx_flag_t            esc;
    creor_json_level_t   *open;
    creor_json_member_t  *mb;

    p = sc->data;
    last = sc->last;

    p = creor_json_space(p, last);

    if (p == last || *p != '{') {
        return NGX_DECLINED;
    }

    mb = NULL;

value:

    /* a value starts at p */

    if (sc->max && ++sc->values > sc->max) {
        return NGX_DECLINED;
    }

    i = NGX_DECLINED;

    if (sc->depth && sc->open[sc->depth - 1].object) {
        i = creor_json_scan_name(sc);
        if (i == NGX_ERROR) {
            return NGX_DECLINED;
        }
    }

    mb = (i >= 0) ? &sc->m[i] : NULL;

    if (mb) {
        mb->found = 1;
        mb->start = p;
    }

    switch (*p) {

    case '{':
    case '[':
        if (sc->depth == CREOR_JSON_MAX_DEPTH) {
            return NGX_DECLINED;
        }

        open = &sc->open[sc->depth++];
        open->object = (*p == '{');
        open->first = sc->nkeys;
        open->member = i;

        if (mb) {
            mb->type = open->object ? CREOR_JSON_OBJECT : CREOR_JSON_ARRAY;
        }

        p = creor_json_space(p + 1, last);

        if (p == last) {
            return NGX_DECLINED;
        }

        if (*p == (open->object ? '}' : ']')) {
            goto close;
        }

        if (open->object) {
            goto name;
        }

        goto value;

    case '"':
        s = creor_json_fast_string(p + 1, last, &esc);

        if (s == NULL || (mb && esc)) {
            return NGX_DECLINED;
        }

        if (mb) {
            mb->type = CREOR_JSON_STRING;
            mb->str.data = p + 1;
            mb->str.len = s - 1 - (p + 1);
        }

        p = s;
        break;

    case 't':
    case 'f':
    case 'n':
        p = creor_json_fast_literal(p, last, mb);

        if (p == NULL) {
            return NGX_DECLINED;
        }

        break;

    default:
        p = creor_json_fast_number(p, last);

        if (p == NULL) {
            return NGX_DECLINED;
        }

        if (mb) {
            mb->type = CREOR_JSON_NUMBER;
        }
    }

    if (mb) {
        mb->end = p;
    }

next:

    /* after a value: a comma or the end of its container */

    p = creor_json_space(p, last);

    if (sc->depth == 0) {
        return (p == last) ? NGX_OK : NGX_DECLINED;
    }

    if (p == last) {
        return NGX_DECLINED;
    }

    open = &sc->open[sc->depth - 1];

    if (*p == (open->object ? '}' : ']')) {
        goto close;
    }

    if (*p != ',') {
        return NGX_DECLINED;
    }

    p = creor_json_space(p + 1, last);

    if (p == last) {
        return NGX_DECLINED;
    }

    if (!open->object) {
        goto value;
    }

name:

    /* a member name, without escapes, and its colon */

    if (*p != '"') {
        return NGX_DECLINED;
    }

    s = creor_json_fast_string(p + 1, last, &esc);

    if (s == NULL || esc) {
        return NGX_DECLINED;
    }

    sc->key.data = p + 1;
    sc->key.len = s - 1 - (p + 1);

    p = creor_json_space(s, last);

    if (p == last || *p != ':') {
        return NGX_DECLINED;
    }

    p = creor_json_space(p + 1, last);

    if (p == last) {
        return NGX_DECLINED;
    }

    goto value;

close:

    open = &sc->open[--sc->depth];
    sc->nkeys = open->first;
    p++;

    if (open->member >= 0) {
        sc->m[open->member].end = p;
    }

    goto next;
}


static u_char *
creor_json_space(u_char *p, u_char *last)
{
    while (p < last
           && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    {
        p++;
    }

    return p;
}


/*
 * Past the closing quote of the string whose text starts at p, or NULL
 * if it is not one creor_json_check_text() and yajl would both take (or
 * has \u0000); *esc: it has escapes.
 */

static u_char *
creor_json_fast_string(u_char *p, u_char *last, ngx_flag_t *esc)
{
    u_char      c;
    uint32_t    cp;
    ngx_uint_t  high;

    *esc = 0;
    high = 0;

    while (p < last) {
        c = *p;

        if (c >= 0x80) {
            if (high || creor_utf8_next(&p, last) < 0) {
                return NULL;
            }

            continue;
        }

        if (c < 0x20) {
            return NULL;
        }

        if (c != '\\') {
            if (high) {
                return NULL;
            }

            p++;

            if (c == '"') {
                return p;
            }

            continue;
        }

        *esc = 1;

        if (last - p < 2) {
            return NULL;
        }

        if (p[1] != 'u') {
            if (high || ngx_strlchr((u_char *) "\"\\/bfnrt",
                                    (u_char *) "\"\\/bfnrt" + 8, p[1])
                        == NULL)
            {
                return NULL;
            }

            p += 2;
            continue;
        }

        if (last - p < 6) {
            return NULL;
        }

        if (creor_json_escape_u(p, &high, &cp) != NGX_OK || cp == 0) {
            return NULL;
        }

        p += 6;
    }

    return NULL;
}


/* true, false or null at p: what follows it, or NULL */

static u_char *
creor_json_fast_literal(u_char *p, u_char *last, creor_json_member_t *mb)
{
    ngx_uint_t  i;

    static const struct {
        const char  *text;
        size_t       len;
        ngx_uint_t   type;
    } literals[] = {
        { "true", 4, CREOR_JSON_TRUE },
        { "false", 5, CREOR_JSON_FALSE },
        { "null", 4, CREOR_JSON_NULL }
    };

    for (i = 0; i < 3; i++) {
        if (*p == literals[i].text[0]) {
            break;
        }
    }

    if (i == 3 || (size_t) (last - p) < literals[i].len
        || ngx_strncmp(p, literals[i].text, literals[i].len) != 0)
    {
        return NULL;
    }

    if (mb) {
        mb->type = literals[i].type;
    }

    return p + literals[i].len;
}


/* past the number at p, in JSON's strict grammar, or NULL */

static u_char *
creor_json_fast_number(u_char *p, u_char *last)
{
    if (*p == '-') {
        p++;
    }

    if (p == last || *p < '0' || *p > '9') {
        return NULL;
    }

    if (*p++ != '0') {
        while (p < last && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < last && *p == '.') {
        p++;

        if (p == last || *p < '0' || *p > '9') {
            return NULL;
        }

        while (p < last && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < last && (*p == 'e' || *p == 'E')) {
        p++;

        if (p < last && (*p == '+' || *p == '-')) {
            p++;
        }

        if (p == last || *p < '0' || *p > '9') {
            return NULL;
        }

        while (p < last && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    return p;
}


/*
 * The pending member name of the innermost object: its limits checked
 * and kept; the index in m of the member it names, or NGX_DECLINED.
 */

static ngx_int_t
creor_json_scan_name(creor_json_scanner_t *sc)
{
    ngx_str_t           *k;
    ngx_int_t            parent;
    ngx_uint_t           i;
    creor_json_level_t  *open;
    creor_json_member_t *mb;

    open = &sc->open[sc->depth - 1];

    if (sc->nkeys - open->first == CREOR_JSON_MAX_MEMBERS) {
        sc->error = "An object has too many members.";
        return NGX_ERROR;
    }

    for (i = open->first; i < sc->nkeys; i++) {
        if (sc->keys[i].len == sc->key.len
            && ngx_memcmp(sc->keys[i].data, sc->key.data, sc->key.len) == 0)
        {
            sc->error = "An object has a duplicate member name.";
            return NGX_ERROR;
        }
    }

    if (sc->nkeys == sc->nalloc) {
        k = ngx_palloc(sc->pool, 2 * sc->nalloc * sizeof(ngx_str_t));
        if (k == NULL) {
            sc->error = "out of memory";
            return NGX_ERROR;
        }

        ngx_memcpy(k, sc->keys, sc->nkeys * sizeof(ngx_str_t));
        sc->keys = k;
        sc->nalloc *= 2;
    }

    sc->keys[sc->nkeys++] = sc->key;

    parent = (sc->depth == 1) ? -1 : open->member;

    if (parent == NGX_DECLINED) {
        return NGX_DECLINED;
    }

    for (i = 0; i < sc->n; i++) {
        mb = &sc->m[i];

        if (mb->parent == parent
            && mb->name.len == sc->key.len
            && ngx_memcmp(mb->name.data, sc->key.data, sc->key.len) == 0)
        {
            return i;
        }
    }

    return NGX_DECLINED;
}


/* a value: counted, its member name checked, reported if it is listed */

static ngx_int_t
creor_json_scan_value(creor_json_scanner_t *sc, ngx_uint_t type,
    const u_char *s, size_t len)
{
    u_char               *p;
    ngx_int_t             i;
    creor_json_member_t  *mb;

    if (sc->max && ++sc->values > sc->max) {
        sc->error = "The body has too many JSON values.";
        sc->too_many = 1;
        return NGX_ERROR;
    }

    if (sc->depth == 0) {
        sc->root = type + 1;
        return NGX_DECLINED;
    }

    if (!sc->open[sc->depth - 1].object) {
        return NGX_DECLINED;
    }

    i = creor_json_scan_name(sc);

    if (i < 0) {
        return i;
    }

    mb = &sc->m[i];
    mb->found = 1;
    mb->type = type;

    /* the value starts after the name's ':' */

    for (p = sc->key_end;
         p < sc->last && (*p == ':' || *p == ' ' || *p == '\t'
                          || *p == '\r' || *p == '\n' || *p == '\f'
                          || *p == '\v');
         p++)
    {
        /* void */
    }

    mb->start = p;
    mb->end = sc->data + yajl_get_bytes_consumed(sc->h);

    if (type == CREOR_JSON_STRING) {
        mb->str.data = ngx_pnalloc(sc->pool, len + 1);
        if (mb->str.data == NULL) {
            sc->error = "out of memory";
            return NGX_ERROR;
        }

        ngx_memcpy(mb->str.data, s, len);
        mb->str.data[len] = '\0';
        mb->str.len = len;
    }

    return i;
}


static int
creor_json_scan_null(void *ctx)
{
    return creor_json_scan_value(ctx, CREOR_JSON_NULL, NULL, 0) != NGX_ERROR;
}


static int
creor_json_scan_boolean(void *ctx, int b)
{
    return creor_json_scan_value(ctx, b ? CREOR_JSON_TRUE : CREOR_JSON_FALSE,
                                 NULL, 0)
           != NGX_ERROR;
}


static int
creor_json_scan_number(void *ctx, const char *s, size_t len)
{
    return creor_json_scan_value(ctx, CREOR_JSON_NUMBER, NULL, 0)
           != NGX_ERROR;
}


static int
creor_json_scan_string(void *ctx, const unsigned char *s, size_t len)
{
    creor_json_scanner_t  *sc = ctx;

    if (creor_json_scan_value(sc, CREOR_JSON_STRING, s, len) == NGX_ERROR) {
        return 0;
    }

    if (ngx_strlchr((u_char *) s, (u_char *) s + len, '\0')) {
        sc->error = "Strings may not contain \\u0000.";
        return 0;
    }

    return 1;
}


static int
creor_json_scan_open(creor_json_scanner_t *sc, ngx_uint_t type)
{
    ngx_int_t            i;
    creor_json_level_t  *open;

    if (sc->depth == CREOR_JSON_MAX_DEPTH) {
        sc->error = "JSON nesting is too deep.";
        return 0;
    }

    i = creor_json_scan_value(sc, type, NULL, 0);
    if (i == NGX_ERROR) {
        return 0;
    }

    open = &sc->open[sc->depth++];
    open->object = (type == CREOR_JSON_OBJECT);
    open->first = sc->nkeys;
    open->member = i;

    return 1;
}


static int
creor_json_scan_start_map(void *ctx)
{
    return creor_json_scan_open(ctx, CREOR_JSON_OBJECT);
}


static int
creor_json_scan_start_array(void *ctx)
{
    return creor_json_scan_open(ctx, CREOR_JSON_ARRAY);
}


static int
creor_json_scan_map_key(void *ctx, const unsigned char *s, size_t len)
{
    creor_json_scanner_t  *sc = ctx;

    if (ngx_strlchr((u_char *) s, (u_char *) s + len, '\0')) {
        sc->error = "Strings may not contain \\u0000.";
        return 0;
    }

    /* a name with escapes is in yajl's buffer, which a value reuses */

    if ((u_char *) s >= sc->data && (u_char *) s < sc->last) {
        sc->key.data = (u_char *) s;

    } else {
        sc->key.data = ngx_pnalloc(sc->pool, len + 1);
        if (sc->key.data == NULL) {
            sc->error = "out of memory";
            return 0;
        }

        ngx_memcpy(sc->key.data, s, len);
    }

    sc->key.len = len;
    sc->key_end = sc->data + yajl_get_bytes_consumed(sc->h);

    return 1;
}


static int
creor_json_scan_end(void *ctx)
{
    creor_json_scanner_t  *sc = ctx;

    creor_json_level_t  *open;

    open = &sc->open[--sc->depth];
    sc->nkeys = open->first;

    if (open->member >= 0) {
        sc->m[open->member].end = sc->data + yajl_get_bytes_consumed(sc->h);
    }

    return 1;
}


/* the code point of the strictly valid UTF-8 sequence at *pp, or -1 */

static int32_t
creor_utf8_next(u_char **pp, u_char *last)
{
    u_char      *p;
    uint32_t     cp, min;
    ngx_uint_t   n, i;

    p = *pp;

    if (*p < 0x80) {
        (*pp)++;
        return *p;
    }

    if (*p >= 0xc2 && *p <= 0xdf) {
        n = 1; cp = *p & 0x1f; min = 0x80;

    } else if (*p >= 0xe0 && *p <= 0xef) {
        n = 2; cp = *p & 0x0f; min = 0x800;

    } else if (*p >= 0xf0 && *p <= 0xf4) {
        n = 3; cp = *p & 0x07; min = 0x10000;

    } else {
        return -1;
    }

    if ((size_t) (last - p) <= n) {
        return -1;
    }

    for (i = 1; i <= n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return -1;
        }

        cp = (cp << 6) | (p[i] & 0x3f);
    }

    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return -1;
    }

    *pp = p + n + 1;

    return (int32_t) cp;
}


ngx_flag_t
creor_utf8_valid(u_char *p, size_t len)
{
    u_char  *last;

    last = p + len;

    while (p < last) {
        if (creor_utf8_next(&p, last) < 0) {
            return 0;
        }
    }

    return 1;
}


/*
 * yajl lets overlong forms, encoded surrogates and code points past
 * U+10FFFF through, and turns an unpaired surrogate escape into "?":
 * the text is checked strictly first, so what is stored is valid UTF-8
 * and means what the client wrote.
 */

static ngx_int_t
creor_json_check_text(u_char *p, size_t len)
{
    u_char      *last, c;
    uint32_t     cp;
    ngx_uint_t   in_string, high;

    last = p + len;
    in_string = 0;
    high = 0;           /* a high surrogate escape waits for its pair */

    while (p < last) {
        c = *p;

        if (c >= 0x80) {
            if (high || creor_utf8_next(&p, last) < 0) {
                return NGX_ERROR;
            }

            continue;
        }

        if (c == '"') {
            if (high) {
                return NGX_ERROR;
            }

            in_string = !in_string;
            p++;
            continue;
        }

        if (c != '\\' || !in_string) {
            if (high) {
                return NGX_ERROR;
            }

            p++;
            continue;
        }

        /* an escape inside a string */

        if (last - p < 2) {
            return NGX_ERROR;
        }

        if (p[1] != 'u') {
            if (high) {
                return NGX_ERROR;
            }

            p += 2;
            continue;
        }

        if (last - p < 6) {
            return NGX_ERROR;
        }

        if (creor_json_escape_u(p, &high, &cp) != NGX_OK) {
            return NGX_ERROR;
        }

        p += 6;
    }

    return high ? NGX_ERROR : NGX_OK;
}


/*
 * The \uXXXX escape at p (6 bytes are there): its code point in *cp;
 * *high tracks a high surrogate waiting for its low one.  NGX_ERROR for
 * a digit that is not hex or a surrogate out of its pair.
 */

static ngx_int_t
creor_json_escape_u(u_char *p, ngx_uint_t *high, uint32_t *cp)
{
    u_char      c;
    ngx_uint_t  i;

    *cp = 0;

    for (i = 2; i < 6; i++) {

        /* digits before the case fold: 0x10-0x19 | 0x20 are digits */

        c = p[i];

        if (c >= '0' && c <= '9') {
            *cp = (*cp << 4) | (c - '0');
            continue;
        }

        c |= 0x20;

        if (c < 'a' || c > 'f') {
            return NGX_ERROR;
        }

        *cp = (*cp << 4) | (c - 'a' + 10);
    }

    if (*cp >= 0xd800 && *cp <= 0xdbff) {
        if (*high) {
            return NGX_ERROR;
        }

        *high = 1;
        return NGX_OK;
    }

    if (*cp >= 0xdc00 && *cp <= 0xdfff) {
        if (!*high) {
            return NGX_ERROR;
        }

        *high = 0;
        return NGX_OK;
    }

    return *high ? NGX_ERROR : NGX_OK;
}


static creor_json_t *
creor_json_add(creor_json_parser_t *p, ngx_uint_t type)
{
    creor_json_t       *v, *c, *cur;
    creor_json_open_t  *open;

    if (p->max && ++p->values > p->max) {
        p->error = "The body has too many JSON values.";
        p->too_many = 1;
        return NULL;
    }

    v = ngx_pcalloc(p->pool, sizeof(creor_json_t));
    if (v == NULL) {
        p->error = "out of memory";
        return NULL;
    }

    v->type = type;
    v->pool = p->pool;

    if (p->depth == 0) {
        p->root = v;
        return v;
    }

    open = &p->open[p->depth - 1];
    cur = open->node;

    if (cur->type == CREOR_JSON_OBJECT) {
        if (cur->count == CREOR_JSON_MAX_MEMBERS) {
            p->error = "An object has too many members.";
            return NULL;
        }

        for (c = cur->child; c; c = c->next) {
            if (c->key.len == p->key.len
                && ngx_memcmp(c->key.data, p->key.data, p->key.len) == 0)
            {
                p->error = "An object has a duplicate member name.";
                return NULL;
            }
        }

        v->key = p->key;
    }

    if (open->last) {
        open->last->next = v;

    } else {
        cur->child = v;
    }

    open->last = v;
    cur->count++;

    return v;
}


static int
creor_json_null(void *ctx)
{
    return creor_json_add(ctx, CREOR_JSON_NULL) != NULL;
}


static int
creor_json_boolean(void *ctx, int b)
{
    return creor_json_add(ctx, b ? CREOR_JSON_TRUE : CREOR_JSON_FALSE)
           != NULL;
}


static int
creor_json_number(void *ctx, const char *s, size_t len)
{
    u_char        *buf;
    creor_json_t  *v;

    v = creor_json_add(ctx, CREOR_JSON_NUMBER);
    if (v == NULL) {
        return 0;
    }

    buf = ngx_pnalloc(((creor_json_parser_t *) ctx)->pool, len + 1);
    if (buf == NULL) {
        return 0;
    }

    ngx_memcpy(buf, s, len);
    buf[len] = '\0';

    v->str.data = buf;
    v->str.len = len;
    v->num = strtod((char *) buf, NULL);

    return 1;
}


static ngx_int_t
creor_json_copy(creor_json_parser_t *p, ngx_str_t *dst, const u_char *s,
    size_t len)
{
    if (ngx_strlchr((u_char *) s, (u_char *) s + len, '\0')) {
        p->error = "Strings may not contain \\u0000.";
        return NGX_ERROR;
    }

    dst->data = ngx_pnalloc(p->pool, len + 1);
    if (dst->data == NULL) {
        p->error = "out of memory";
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, s, len);
    dst->data[len] = '\0';
    dst->len = len;

    return NGX_OK;
}


static int
creor_json_string(void *ctx, const unsigned char *s, size_t len)
{
    creor_json_t  *v;

    v = creor_json_add(ctx, CREOR_JSON_STRING);
    if (v == NULL) {
        return 0;
    }

    return creor_json_copy(ctx, &v->str, s, len) == NGX_OK;
}


static int
creor_json_open(creor_json_parser_t *p, ngx_uint_t type)
{
    creor_json_t  *v;

    if (p->depth == CREOR_JSON_MAX_DEPTH) {
        p->error = "JSON nesting is too deep.";
        return 0;
    }

    v = creor_json_add(p, type);
    if (v == NULL) {
        return 0;
    }

    p->open[p->depth].node = v;
    p->open[p->depth].last = NULL;
    p->depth++;

    return 1;
}


static int
creor_json_start_map(void *ctx)
{
    return creor_json_open(ctx, CREOR_JSON_OBJECT);
}


static int
creor_json_start_array(void *ctx)
{
    return creor_json_open(ctx, CREOR_JSON_ARRAY);
}


static int
creor_json_map_key(void *ctx, const unsigned char *s, size_t len)
{
    creor_json_parser_t  *p = ctx;

    return creor_json_copy(p, &p->key, s, len) == NGX_OK;
}


static int
creor_json_end(void *ctx)
{
    creor_json_parser_t  *p = ctx;

    p->depth--;

    return 1;
}


creor_json_t *
creor_json_get(creor_json_t *obj, const char *name)
{
    size_t         len;
    creor_json_t  *c;

    if (obj == NULL || obj->type != CREOR_JSON_OBJECT) {
        return NULL;
    }

    len = ngx_strlen(name);

    for (c = obj->child; c; c = c->next) {
        if (c->key.len == len && ngx_memcmp(c->key.data, name, len) == 0) {
            return c;
        }
    }

    return NULL;
}


ngx_flag_t
creor_json_is_int(creor_json_t *v)
{
    if (v == NULL || v->type != CREOR_JSON_NUMBER) {
        return 0;
    }

    return ngx_strlchr(v->str.data, v->str.data + v->str.len, '.') == NULL
           && ngx_strlchr(v->str.data, v->str.data + v->str.len, 'e') == NULL
           && ngx_strlchr(v->str.data, v->str.data + v->str.len, 'E') == NULL
           && v->num >= -9007199254740991.0 && v->num <= 9007199254740991.0;
}


const char *
creor_json_type_name(creor_json_t *v)
{
    static const char  *names[] = {
        "null", "boolean", "boolean", "number", "string", "array", "object"
    };

    return names[v->type];
}


/*
 * The generator allocates with malloc(); a pool cleanup frees it on
 * every path out of the request.
 */

yajl_gen
creor_gen_create(ngx_http_request_t *r)
{
    return creor_gen_pool(r->pool);
}


yajl_gen
creor_gen_pool(ngx_pool_t *pool)
{
    yajl_gen             g;
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    g = yajl_gen_alloc(NULL);
    if (g == NULL) {
        return NULL;
    }

    cln->handler = creor_gen_cleanup;
    cln->data = g;

    return g;
}


static void
creor_gen_cleanup(void *data)
{
    yajl_gen_free(data);
}


void
creor_gen_str(yajl_gen g, const char *s)
{
    yajl_gen_string(g, (const unsigned char *) s, ngx_strlen(s));
}


void
creor_gen_ngx_str(yajl_gen g, ngx_str_t *s)
{
    yajl_gen_string(g, s->data, s->len);
}


void
creor_gen_kv(yajl_gen g, const char *key, const char *value)
{
    creor_gen_str(g, key);
    creor_gen_str(g, value);
}


void
creor_gen_kv_ngx(yajl_gen g, const char *key, ngx_str_t *value)
{
    creor_gen_str(g, key);
    creor_gen_ngx_str(g, value);
}


/* empty strings are null on the wire */

void
creor_gen_kv_or_null(yajl_gen g, const char *key, const char *value)
{
    creor_gen_str(g, key);

    if (value == NULL || value[0] == '\0') {
        yajl_gen_null(g);

    } else {
        creor_gen_str(g, value);
    }
}


void
creor_gen_kv_int(yajl_gen g, const char *key, int64_t value)
{
    creor_gen_str(g, key);
    yajl_gen_integer(g, value);
}


void
creor_gen_kv_bool(yajl_gen g, const char *key, ngx_flag_t value)
{
    creor_gen_str(g, key);
    yajl_gen_bool(g, value ? 1 : 0);
}


void
creor_gen_kv_time(yajl_gen g, const char *key, int64_t ms)
{
    char  buf[CREOR_TIME_LEN];

    creor_gen_str(g, key);

    if (ms == 0) {
        yajl_gen_null(g);
        return;
    }

    yajl_gen_string(g, (u_char *) buf, creor_time_rfc3339(buf, ms));
}


void
creor_gen_value(yajl_gen g, creor_json_t *v)
{
    creor_json_t  *c;

    switch (v->type) {

    case CREOR_JSON_NULL:
        yajl_gen_null(g);
        break;

    case CREOR_JSON_FALSE:
    case CREOR_JSON_TRUE:
        yajl_gen_bool(g, v->type == CREOR_JSON_TRUE);
        break;

    case CREOR_JSON_NUMBER:
        yajl_gen_number(g, (char *) v->str.data, v->str.len);
        break;

    case CREOR_JSON_STRING:
        yajl_gen_string(g, v->str.data, v->str.len);
        break;

    case CREOR_JSON_ARRAY:
        yajl_gen_array_open(g);
        for (c = v->child; c; c = c->next) {
            creor_gen_value(g, c);
        }
        yajl_gen_array_close(g);
        break;

    default: /* CREOR_JSON_OBJECT */
        yajl_gen_map_open(g);
        for (c = v->child; c; c = c->next) {
            yajl_gen_string(g, c->key.data, c->key.len);
            creor_gen_value(g, c);
        }
        yajl_gen_map_close(g);
        break;
    }
}


/* copies the generated text into the request pool */

ngx_int_t
creor_gen_result(ngx_http_request_t *r, yajl_gen g, ngx_str_t *out)
{
    return creor_gen_result_pool(r->pool, g, out);
}


ngx_int_t
creor_gen_result_pool(ngx_pool_t *pool, yajl_gen g, ngx_str_t *out)
{
    size_t                len;
    const unsigned char  *buf;

    if (yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok) {
        return NGX_ERROR;
    }

    out->data = ngx_pnalloc(pool, len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, buf, len);
    out->len = len;

    yajl_gen_clear(g);

    return NGX_OK;
}


creor_json_t *
creor_json_new(ngx_pool_t *pool, ngx_uint_t type, const char *s, size_t len)
{
    creor_json_t  *v;

    v = ngx_pcalloc(pool, sizeof(creor_json_t));
    if (v == NULL) {
        return NULL;
    }

    v->type = type;
    v->pool = pool;

    if (s) {
        v->str.data = ngx_pnalloc(pool, len + 1);
        if (v->str.data == NULL) {
            return NULL;
        }

        ngx_memcpy(v->str.data, s, len);
        v->str.data[len] = '\0';
        v->str.len = len;
    }

    return v;
}


/*
 * Replaces or appends member name of obj with a shallow copy of v, so v
 * may stay a member of another tree.
 */

ngx_int_t
creor_json_set(creor_json_t *obj, const char *name, creor_json_t *src)
{
    creor_json_t  *c, **pp, *v;

    if (src == NULL) {
        return NGX_ERROR;
    }

    v = ngx_palloc(obj->pool, sizeof(creor_json_t));
    if (v == NULL) {
        return NGX_ERROR;
    }

    *v = *src;

    v->key.data = (u_char *) name;
    v->key.len = ngx_strlen(name);
    v->next = NULL;

    for (pp = &obj->child; *pp; pp = &(*pp)->next) {
        c = *pp;

        if (c->key.len == v->key.len
            && ngx_memcmp(c->key.data, name, v->key.len) == 0)
        {
            v->next = c->next;
            *pp = v;

            return NGX_OK;
        }
    }

    *pp = v;
    obj->count++;

    return NGX_OK;
}


void
creor_json_unset(creor_json_t *obj, const char *name)
{
    size_t         len;
    creor_json_t  *c, **pp;

    len = ngx_strlen(name);

    for (pp = &obj->child; *pp; pp = &(*pp)->next) {
        c = *pp;

        if (c->key.len == len && ngx_memcmp(c->key.data, name, len) == 0) {
            *pp = c->next;
            obj->count--;
            return;
        }
    }
}

/* appends a shallow copy of v to the array arr */

ngx_int_t
creor_json_push(creor_json_t *arr, creor_json_t *src)
{
    creor_json_t  *v, **pp;

    if (src == NULL) {
        return NGX_ERROR;
    }

    v = ngx_palloc(arr->pool, sizeof(creor_json_t));
    if (v == NULL) {
        return NGX_ERROR;
    }

    *v = *src;

    v->key.data = NULL;
    v->key.len = 0;
    v->next = NULL;

    for (pp = &arr->child; *pp; pp = &(*pp)->next) { /* void */ }

    *pp = v;
    arr->count++;

    return NGX_OK;
}

