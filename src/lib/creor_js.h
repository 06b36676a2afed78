
/*
 * Copyright (C) ngx_creor_module authors
 */


#ifndef _CREOR_JS_H_INCLUDED_
#define _CREOR_JS_H_INCLUDED_


/* included by ngx_creor.h, after creor_json_t */

ngx_int_t creor_js_event_body(ngx_pool_t *pool, const char *event_id,
    const char *type, int64_t now, creor_json_t *data, ngx_str_t *out);
void creor_js_gen(yajl_gen g, creor_json_t *v);


#endif /* _CREOR_JS_H_INCLUDED_ */
