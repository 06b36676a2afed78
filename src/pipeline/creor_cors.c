
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Browsers (SPEC 3.2): OPTIONS of a route, a CORS preflight when
 * creor_cors allows the origin, and the CORS headers of every response
 * of an API location, error envelopes and event streams included.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


static ngx_str_t *creor_cors_origin(ngx_http_request_t *r,
    ngx_creor_loc_conf_t *lcf, ngx_flag_t *any);


static ngx_str_t  creor_cors_allow_headers = ngx_string(
    "Authorization, Content-Type, Idempotency-Key, Last-Event-ID, "
    "X-Project-Id, Accept, Cache-Control");

static ngx_str_t  creor_cors_expose_headers = ngx_string(
    "X-Request-Id, Retry-After, Idempotent-Replayed, X-RateLimit-Limit, "
    "X-RateLimit-Remaining, X-RateLimit-Reset, RateLimit, RateLimit-Policy");

static ngx_str_t  creor_cors_max_age = ngx_string("3600");
static ngx_str_t  creor_cors_vary = ngx_string("Origin");
static ngx_str_t  creor_cors_star = ngx_string("*");


/* creor_cors origin ... | off; an origin is "*" or scheme://host[:port] */

char *
creor_cors_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    u_char        *s, *last;
    ngx_str_t     *value, *origin;
    ngx_uint_t     i;
    ngx_array_t  **a;

    a = (ngx_array_t **) (p + cmd->offset);

    if (*a != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    *a = ngx_array_create(cf->pool, cf->args->nelts, sizeof(ngx_str_t));
    if (*a == NULL) {
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        return NGX_CONF_OK;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        s = value[i].data;
        last = s + value[i].len;

        if (value[i].len == 1 && s[0] == '*') {
            goto good;
        }

        if (value[i].len > 7 && ngx_strncasecmp(s, (u_char *) "http://", 7)
                                == 0)
        {
            s += 7;

        } else if (value[i].len > 8
                   && ngx_strncasecmp(s, (u_char *) "https://", 8) == 0)
        {
            s += 8;

        } else {
            goto bad;
        }

        /* a browser's Origin: no path, no query, no user */

        for ( /* void */ ; s < last; s++) {
            if (*s == '/' || *s == '?' || *s == '#' || *s == '@'
                || *s <= ' ' || *s >= 0x7f)
            {
                goto bad;
            }
        }

    good:

        origin = ngx_array_push(*a);
        if (origin == NULL) {
            return NGX_CONF_ERROR;
        }

        *origin = value[i];
        continue;

    bad:

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid origin \"%V\" in \"creor_cors\": "
                           "\"*\" or scheme://host[:port] expected",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * OPTIONS of a known path: a preflight from an allowed origin gets the
 * methods and headers it may use, any other gets Allow; 204 both.
 */

ngx_int_t
creor_cors_options(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    ngx_str_t *allow)
{
    u_char                *p;
    ngx_str_t              methods;
    ngx_flag_t             any;
    ngx_creor_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_creor_module);

    p = ngx_pnalloc(r->pool, allow->len + sizeof(", OPTIONS") - 1);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    methods.data = p;
    methods.len = ngx_sprintf(p, "%V, OPTIONS", allow) - p;

    if (creor_cors_origin(r, lcf, &any) != NULL
        && creor_header(r, "Access-Control-Request-Method") != NULL)
    {
        if (creor_add_header(r, "Access-Control-Allow-Methods", &methods)
               != NGX_OK
            || creor_add_header(r, "Access-Control-Allow-Headers",
                                &creor_cors_allow_headers) != NGX_OK
            || creor_add_header(r, "Access-Control-Max-Age",
                                &creor_cors_max_age) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else if (creor_add_header(r, "Allow", &methods) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return creor_send_raw(r, NGX_HTTP_NO_CONTENT, NULL, 0);
}


/* from the header filter, for every response of an API location */

ngx_int_t
creor_cors_headers(ngx_http_request_t *r)
{
    ngx_str_t             *origin;
    ngx_flag_t             any;
    ngx_creor_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_creor_module);

    if (lcf->cors == NULL || lcf->cors->nelts == 0) {
        return NGX_OK;
    }

    /* caches must keep answers to different origins apart */

    if (creor_add_header(r, "Vary", &creor_cors_vary) != NGX_OK) {
        return NGX_ERROR;
    }

    origin = creor_cors_origin(r, lcf, &any);
    if (origin == NULL) {
        return NGX_OK;
    }

    if (creor_add_header(r, "Access-Control-Allow-Origin",
                         any ? &creor_cors_star : origin) != NGX_OK
        || creor_add_header(r, "Access-Control-Expose-Headers",
                            &creor_cors_expose_headers) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the request's Origin if creor_cors allows it; *any: allowed by "*" */

static ngx_str_t *
creor_cors_origin(ngx_http_request_t *r, ngx_creor_loc_conf_t *lcf,
    ngx_flag_t *any)
{
    ngx_str_t   *origin, *allowed;
    ngx_uint_t   i;

    *any = 0;

    if (lcf->cors == NULL || lcf->cors->nelts == 0) {
        return NULL;
    }

    origin = creor_header(r, "Origin");
    if (origin == NULL || origin->len == 0) {
        return NULL;
    }

    allowed = lcf->cors->elts;

    for (i = 0; i < lcf->cors->nelts; i++) {

        if (allowed[i].len == 1 && allowed[i].data[0] == '*') {
            *any = 1;
            return origin;
        }

        if (allowed[i].len == origin->len
            && ngx_strncasecmp(allowed[i].data, origin->data, origin->len)
               == 0)
        {
            return origin;
        }
    }

    return NULL;
}
