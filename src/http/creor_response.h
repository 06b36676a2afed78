
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The answers of the API (creor_response.c); included from ngx_creor.h
 * once the request's context is declared.
 */


#ifndef _CREOR_RESPONSE_H_INCLUDED_
#define _CREOR_RESPONSE_H_INCLUDED_


/* a walk over a list of headers (creor_headers_next()) */
typedef struct {
    ngx_list_part_t        *part;
    ngx_uint_t              i;
} creor_headers_t;


extern ngx_str_t  creor_json_type;


ngx_creor_main_conf_t *creor_main_conf(ngx_http_request_t *r);
void creor_request_id(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_handler_done(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    ngx_int_t rc);

creor_arg_t *creor_arg(ngx_creor_ctx_t *ctx, const char *name);
ngx_int_t creor_arg_uint(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    const char *name, ngx_uint_t min, ngx_uint_t max, ngx_uint_t *out);
ngx_int_t creor_check_fields(ngx_http_request_t *r, creor_json_t *obj,
    const char **allowed, const char *prefix);
ngx_str_t *creor_header(ngx_http_request_t *r, const char *name);
ngx_table_elt_t *creor_header_out(ngx_http_request_t *r, const char *name);
void creor_headers_init(creor_headers_t *w, ngx_list_t *list);
ngx_table_elt_t *creor_headers_next(creor_headers_t *w);
ngx_int_t creor_add_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value);

ngx_int_t creor_fail(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *param, const char *fmt, ...);
ngx_int_t creor_fail_store(ngx_http_request_t *r, ngx_int_t rc);
ngx_int_t creor_send_failure(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, const char *param);
ngx_int_t creor_error_body(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, const char *param,
    ngx_str_t *out);
ngx_int_t creor_send_json(ngx_http_request_t *r, ngx_uint_t status,
    yajl_gen g);
ngx_int_t creor_send_raw(ngx_http_request_t *r, ngx_uint_t status,
    u_char *data, size_t len);
void creor_group_post(ngx_creor_main_conf_t *mcf);
ngx_int_t creor_json_request_headers(ngx_http_request_t *r, ngx_uint_t n);
ngx_int_t creor_variable_str(ngx_http_variable_value_t *v, ngx_str_t *s);


#endif /* _CREOR_RESPONSE_H_INCLUDED_ */
