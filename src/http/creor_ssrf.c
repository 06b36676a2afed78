
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Where a webhook may go (SPEC 11.4): http or https URLs whose host is
 * public, checked at registration (the literal address or the name's
 * every address, with nginx's resolver) and again at each delivery on
 * the address actually connected to.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


/* a request waiting for the resolver to check its URL's name */
typedef struct {
    ngx_http_request_t     *r;
    ngx_resolver_ctx_t     *rctx;       /* NULL once answered */
    creor_handler_pt        handler;    /* called again once checked */
    const char             *param;      /* the URL's field */
} creor_ssrf_check_t;


static void creor_ssrf_check_done(ngx_resolver_ctx_t *rctx);
static void creor_ssrf_check_cleanup(void *data);


/* ctx->data of a request whose URL's name was checked */
static u_char  creor_ssrf_checked;


/*
 * A URL (the field param) whose host is a name: every address it
 * resolves to (with the resolver of the location) must be public, as at
 * each delivery.  The handler is called again once checked (NGX_DONE
 * meanwhile).  Without a resolver, or for a name that does not resolve,
 * the deliveries check.
 */

ngx_int_t
creor_ssrf_check_name(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_json_t *url, const char *param, creor_handler_pt handler)
{
    creor_ssrf_url_t           u;
    creor_ssrf_check_t        *chk;
    ngx_resolver_ctx_t        *rctx;
    ngx_pool_cleanup_t        *cln;
    ngx_http_core_loc_conf_t  *clcf;

    if (ctx->data == &creor_ssrf_checked || ctx->mcf->webhook_allow_private
        || url == NULL || url->type != CREOR_JSON_STRING
        || creor_ssrf_url_parse(r->pool, url->str.data, url->str.len, &u)
           != NGX_OK
        || u.literal)
    {
        return NGX_OK;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    chk = ngx_pcalloc(r->pool, sizeof(creor_ssrf_check_t));
    if (chk == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rctx = creor_ssrf_resolve_start(clcf, &u.host, creor_ssrf_check_done,
                                    chk);

    if (rctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rctx == NGX_NO_RESOLVER) {
        return NGX_OK;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        ngx_resolve_name_done(rctx);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    chk->r = r;
    chk->rctx = rctx;
    chk->handler = handler;
    chk->param = param;

    cln->handler = creor_ssrf_check_cleanup;
    cln->data = chk;

    ctx->data = &creor_ssrf_checked;
    r->main->count++;

    if (ngx_resolve_name(rctx) != NGX_OK) {

        /* the resolver freed rctx */

        chk->rctx = NULL;
        r->main->count--;
        return NGX_OK;
    }

    return NGX_DONE;
}


static void
creor_ssrf_check_done(ngx_resolver_ctx_t *rctx)
{
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_creor_ctx_t     *ctx;
    ngx_http_request_t  *r;
    creor_ssrf_check_t  *chk;

    chk = rctx->data;
    r = chk->r;
    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_creor_module);

    rc = NGX_OK;

    if (rctx->state == NGX_OK && creor_ssrf_resolved_private(rctx)) {
        rc = creor_fail(r, NGX_HTTP_BAD_REQUEST, "PRIVATE_WEBHOOK_URL",
                        chk->param, "The URL's host resolves to a private, "
                        "loopback or link-local address.");
    }

    ngx_resolve_name_done(rctx);
    chk->rctx = NULL;

    if (rc == NGX_OK) {
        rc = chk->handler(r, ctx);
    }

    ngx_http_finalize_request(r, creor_handler_done(r, ctx, rc));
    ngx_http_run_posted_requests(c);
}


static void
creor_ssrf_check_cleanup(void *data)
{
    creor_ssrf_check_t  *chk = data;

    if (chk->rctx) {
        ngx_resolve_name_done(chk->rctx);
        chk->rctx = NULL;
    }
}


/*
 * A URL field at registration: a string of at most max bytes that
 * parses, whose host is not private by its name or as a literal address
 * (a name's addresses: creor_ssrf_check_name()).  NGX_OK, or the
 * request's failure is set.
 */

ngx_int_t
creor_ssrf_check_url(ngx_http_request_t *r, creor_json_t *url,
    const char *param, size_t max)
{
    creor_ssrf_url_t        u;
    ngx_creor_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_creor_module);

    if (url->type != CREOR_JSON_STRING
        || url->str.len > max
        || creor_ssrf_url_parse(r->pool, url->str.data, url->str.len, &u)
           != NGX_OK)
    {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR", param,
                          "'%s' must be an http or https URL without "
                          "credentials, of at most %uz bytes.", param, max);
    }

    if (!mcf->webhook_allow_private
        && (creor_ssrf_host_private(&u.host)
            || (u.literal && creor_ssrf_addr_private(u.addr.sockaddr))))
    {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "PRIVATE_WEBHOOK_URL",
                          param, "Webhooks cannot be sent to private, "
                          "loopback or link-local addresses.");
    }

    return NGX_OK;
}


/*
 * A name's resolution with the resolver of clcf, to be begun with
 * ngx_resolve_name(): NULL on error, NGX_NO_RESOLVER without one.
 */

ngx_resolver_ctx_t *
creor_ssrf_resolve_start(ngx_http_core_loc_conf_t *clcf, ngx_str_t *host,
    ngx_resolver_handler_pt handler, void *data)
{
    ngx_resolver_ctx_t  *rctx, temp;

    temp.name = *host;
    rctx = ngx_resolve_start(clcf->resolver, &temp);

    if (rctx == NULL || rctx == NGX_NO_RESOLVER) {
        return rctx;
    }

    rctx->name = *host;
    rctx->handler = handler;
    rctx->data = data;
    rctx->timeout = clcf->resolver_timeout;

    return rctx;
}


/* any of the answer's addresses private */

ngx_flag_t
creor_ssrf_resolved_private(ngx_resolver_ctx_t *rctx)
{
    ngx_uint_t  i;

    for (i = 0; i < rctx->naddrs; i++) {
        if (creor_ssrf_addr_private(rctx->addrs[i].sockaddr)) {
            return 1;
        }
    }

    return 0;
}


/*
 * http or https, no userinfo, a host (a name, an IPv4 address or an IPv6
 * one in brackets), an optional port; the rest is the URI.
 */

ngx_int_t
creor_ssrf_url_parse(ngx_pool_t *pool, u_char *data, size_t len,
    creor_ssrf_url_t *u)
{
    u_char      *p, *last, *host, *host_end, *port;
    ngx_int_t    n;
    in_port_t    def;

    ngx_memzero(u, sizeof(creor_ssrf_url_t));

    p = data;
    last = data + len;

    if (len > 7 && ngx_strncasecmp(p, (u_char *) "http://", 7) == 0) {
        ngx_str_set(&u->scheme, "http");
        def = 80;
        p += 7;

    } else if (len > 8 && ngx_strncasecmp(p, (u_char *) "https://", 8) == 0) {
        ngx_str_set(&u->scheme, "https");
        def = 443;
        p += 8;

    } else {
        return NGX_ERROR;
    }

    for (host = p; p < last && *p != '/' && *p != '?' && *p != '#'; p++) {
        if (*p == '@' || *p <= ' ' || *p >= 0x7f || *p == '\\') {
            return NGX_ERROR;
        }
    }

    host_end = p;

    u->uri.data = p;
    u->uri.len = last - p;

    /* no fragment is sent */

    port = NULL;

    if (host < host_end && *host == '[') {
        p = ngx_strlchr(host, host_end, ']');
        if (p == NULL) {
            return NGX_ERROR;
        }

        u->host.data = host + 1;
        u->host.len = p - host - 1;
        p++;

        if (p < host_end) {
            if (*p != ':') {
                return NGX_ERROR;
            }

            port = p + 1;
        }

    } else {
        p = ngx_strlchr(host, host_end, ':');

        u->host.data = host;
        u->host.len = (p ? p : host_end) - host;

        if (p) {
            port = p + 1;
        }
    }

    if (u->host.len == 0 || u->host.len > 253) {
        return NGX_ERROR;
    }

    u->port = def;

    if (port) {
        n = ngx_atoi(port, host_end - port);
        if (n < 1 || n > 65535) {
            return NGX_ERROR;
        }

        u->port = (in_port_t) n;
    }

    u->host_header.data = host;
    u->host_header.len = (u->port == def && port)
                         ? (size_t) (port - 1 - host)
                         : (size_t) (host_end - host);

    p = ngx_strlchr(u->uri.data, u->uri.data + u->uri.len, '#');
    if (p) {
        u->uri.len = p - u->uri.data;
    }

    if (u->uri.len == 0) {
        ngx_str_set(&u->uri, "/");
    }

    if (ngx_parse_addr(pool, &u->addr, u->host.data, u->host.len) == NGX_OK)
    {
        u->literal = 1;
        ngx_inet_set_port(u->addr.sockaddr, u->port);

    } else {

        /* a name: letters, digits, dots and dashes */

        for (p = u->host.data; p < u->host.data + u->host.len; p++) {
            if (!(isalnum(*p) || *p == '.' || *p == '-' || *p == '_')) {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


/* names that are private whatever they resolve to */

ngx_flag_t
creor_ssrf_host_private(ngx_str_t *host)
{
    size_t  n;

    n = host->len;

    if (n && host->data[n - 1] == '.') {
        n--;
    }

    return (n == 9 && ngx_strncasecmp(host->data, (u_char *) "localhost", 9)
                      == 0)
           || (n > 10 && ngx_strncasecmp(host->data + n - 10,
                                         (u_char *) ".localhost", 10) == 0)
           || (n == 24 && ngx_strncasecmp(host->data,
                              (u_char *) "metadata.google.internal", 24)
                          == 0);
}


/*
 * Loopback, private, link-local (169.254/16: cloud metadata), CGNAT,
 * unique-local, multicast, unspecified, reserved, and IPv6 forms that
 * carry an IPv4 address (mapped, compatible, NAT64, 6to4).
 */

ngx_flag_t
creor_ssrf_addr_private(struct sockaddr *sa)
{
    uint32_t              a;
    u_char               *b;
    struct sockaddr_in    sin;
    struct sockaddr_in6  *sin6;

    if (sa->sa_family == AF_INET6) {
        sin6 = (struct sockaddr_in6 *) sa;
        b = sin6->sin6_addr.s6_addr;

        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)
            || IN6_IS_ADDR_V4COMPAT(&sin6->sin6_addr)
            || IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr)
            || IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr)
            || (b[0] & 0xfe) == 0xfc                /* fc00::/7 */
            || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)     /* fe80::/10 */
            || (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)     /* site-local */
            || b[0] == 0xff                         /* multicast */
            || (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff
                && b[3] == 0x9b)                    /* 64:ff9b::/96 */
            || (b[0] == 0x20 && b[1] == 0x02)       /* 6to4 */
            || (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d
                && b[3] == 0xb8))                   /* documentation */
        {
            return 1;
        }

        return 0;
    }

    if (sa->sa_family != AF_INET) {
        return 1;
    }

    ngx_memcpy(&sin, sa, sizeof(struct sockaddr_in));
    a = ntohl(sin.sin_addr.s_addr);

    return (a >> 24) == 0                           /* 0/8 */
           || (a >> 24) == 10
           || (a >> 24) == 127
           || (a >> 16) == 0xa9fe                   /* 169.254/16 */
           || (a >> 20) == 0xac1                    /* 172.16/12 */
           || (a >> 16) == 0xc0a8                   /* 192.168/16 */
           || (a >> 22) == (0x64400000 >> 22)       /* 100.64/10 */
           || (a >> 8) == 0xc00000                  /* 192.0.0/24 */
           || (a >> 17) == (0xc6120000 >> 17)       /* 198.18/15 */
           || (a >> 28) >= 0xe;                     /* multicast, 240/4 */
}
