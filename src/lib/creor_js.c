
/*
 * Copyright (C) ngx_creor_module authors
 *
 * JSON as JavaScript writes it: an event's body (SPEC 11.2) must be
 * byte-identical to JSON.stringify(JSON.parse(body)), because seed 000's
 * verifier signs the re-serialized parsed body.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <math.h>

#include "ngx_creor.h"


static size_t creor_js_number(double d, u_char *buf);


/*
 * {"event_id","type","timestamp","data"}, compact and byte-identical to
 * JSON.stringify(JSON.parse(body)): numbers in JavaScript's shortest
 * form, control characters as lowercase \u00xx, "/" unescaped.
 */

ngx_int_t
creor_js_event_body(ngx_pool_t *pool, const char *event_id,
    const char *type, int64_t now, creor_json_t *data, ngx_str_t *out)
{
    u_char    *p, *last;
    yajl_gen   g;

    g = creor_gen_pool(pool);
    if (g == NULL) {
        return NGX_ERROR;
    }

    yajl_gen_map_open(g);
    creor_gen_kv(g, "event_id", event_id);
    creor_gen_kv(g, "type", type);
    creor_gen_kv_time(g, "timestamp", now);
    creor_gen_str(g, "data");

    if (data) {
        creor_js_gen(g, data);

    } else {
        yajl_gen_map_open(g);
        yajl_gen_map_close(g);
    }

    yajl_gen_map_close(g);

    if (creor_gen_result_pool(pool, g, out) != NGX_OK) {
        return NGX_ERROR;
    }

    /* yajl writes \u001F, JavaScript \u001f */

    last = out->data + out->len;

    for (p = out->data; p < last; p++) {
        if (*p != '\\' || p + 1 == last) {
            continue;
        }

        p++;

        if (*p == 'u' && last - p > 4) {
            p[1] = ngx_tolower(p[1]);
            p[2] = ngx_tolower(p[2]);
            p[3] = ngx_tolower(p[3]);
            p[4] = ngx_tolower(p[4]);
            p += 4;
        }
    }

    return NGX_OK;
}


/*
 * JSON.parse then JSON.stringify: an object's repeated name keeps its
 * first place and its last value; numbers are doubles.
 */

void
creor_js_gen(yajl_gen g, creor_json_t *v)
{
    size_t         n;
    u_char         buf[64];
    creor_json_t  *c, *d, *last;

    switch (v->type) {

    case CREOR_JSON_NUMBER:
        if (!isfinite(v->num)) {
            yajl_gen_null(g);
            break;
        }

        n = creor_js_number(v->num, buf);
        yajl_gen_number(g, (char *) buf, n);
        break;

    case CREOR_JSON_ARRAY:
        yajl_gen_array_open(g);
        for (c = v->child; c; c = c->next) {
            creor_js_gen(g, c);
        }
        yajl_gen_array_close(g);
        break;

    case CREOR_JSON_OBJECT:
        yajl_gen_map_open(g);

        for (c = v->child; c; c = c->next) {

            /* a name seen before was written there */

            for (d = v->child; d != c; d = d->next) {
                if (d->key.len == c->key.len
                    && ngx_strncmp(d->key.data, c->key.data, c->key.len)
                       == 0)
                {
                    break;
                }
            }

            if (d != c) {
                continue;
            }

            last = c;

            for (d = c->next; d; d = d->next) {
                if (d->key.len == c->key.len
                    && ngx_strncmp(d->key.data, c->key.data, c->key.len)
                       == 0)
                {
                    last = d;
                }
            }

            yajl_gen_string(g, c->key.data, c->key.len);
            creor_js_gen(g, last);
        }

        yajl_gen_map_close(g);
        break;

    default:
        creor_gen_value(g, v);
        break;
    }
}


/* Number.prototype.toString(): the shortest digits that read back */

static size_t
creor_js_number(double d, u_char *buf)
{
    int      i, k, e, nd;
    char     tmp[40], digits[24];
    u_char  *p;

    if (d == 0) {
        buf[0] = '0';
        return 1;
    }

    p = buf;

    if (d < 0) {
        *p++ = '-';
        d = -d;
    }

    for (i = 0; i < 17; i++) {
        (void) snprintf(tmp, sizeof(tmp), "%.*e", i, d);
        if (strtod(tmp, NULL) == d) {
            break;
        }
    }

    /* "d.ddde[+-]xx", or "de[+-]xx" */

    nd = 0;
    digits[nd++] = tmp[0];

    for (k = (tmp[1] == '.') ? 2 : 1; tmp[k] && tmp[k] != 'e'; k++) {
        digits[nd++] = tmp[k];
    }

    e = atoi(&tmp[k + 1]);

    while (nd > 1 && digits[nd - 1] == '0') {
        nd--;
    }

    k = nd;         /* digits */
    e = e + 1;      /* n: the value is 0.digits x 10^n */

    if (k <= e && e <= 21) {
        p = ngx_cpymem(p, digits, k);
        for (i = 0; i < e - k; i++) {
            *p++ = '0';
        }

    } else if (0 < e && e <= 21) {
        p = ngx_cpymem(p, digits, e);
        *p++ = '.';
        p = ngx_cpymem(p, digits + e, k - e);

    } else if (-6 < e && e <= 0) {
        *p++ = '0';
        *p++ = '.';
        for (i = 0; i < -e; i++) {
            *p++ = '0';
        }
        p = ngx_cpymem(p, digits, k);

    } else {
        *p++ = digits[0];

        if (k > 1) {
            *p++ = '.';
            p = ngx_cpymem(p, digits + 1, k - 1);
        }

        p = ngx_sprintf(p, "e%c%d", e - 1 < 0 ? '-' : '+',
                        e - 1 < 0 ? 1 - e : e - 1);
    }

    return p - buf;
}
