
/*
 * Copyright (C) ngx_creor_module authors
 */


#ifndef _CREOR_SSRF_H_INCLUDED_
#define _CREOR_SSRF_H_INCLUDED_


/* included by ngx_creor.h */

/* a URL taken apart */
typedef struct {
    ngx_str_t               scheme;
    ngx_str_t               host;       /* without brackets */
    ngx_str_t               host_header;    /* with the port if not default */
    ngx_str_t               uri;
    in_port_t               port;
    ngx_flag_t              literal;    /* the host is an address */
    ngx_addr_t              addr;
} creor_ssrf_url_t;


ngx_int_t creor_ssrf_url_parse(ngx_pool_t *pool, u_char *data, size_t len,
    creor_ssrf_url_t *u);
ngx_flag_t creor_ssrf_host_private(ngx_str_t *host);
ngx_flag_t creor_ssrf_addr_private(struct sockaddr *sa);
ngx_int_t creor_ssrf_check_url(ngx_http_request_t *r, creor_json_t *url,
    const char *param, size_t max);
ngx_int_t creor_ssrf_check_name(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_json_t *url, const char *param, creor_handler_pt handler);
ngx_resolver_ctx_t *creor_ssrf_resolve_start(ngx_http_core_loc_conf_t *clcf,
    ngx_str_t *host, ngx_resolver_handler_pt handler, void *data);
ngx_flag_t creor_ssrf_resolved_private(ngx_resolver_ctx_t *rctx);


#endif /* _CREOR_SSRF_H_INCLUDED_ */
