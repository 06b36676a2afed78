
/*
 * Copyright (C) ngx_creor_module authors
 */


#ifndef _CREOR_SIGN_H_INCLUDED_
#define _CREOR_SIGN_H_INCLUDED_


/* included by ngx_creor.h */

#define CREOR_SIGN_SECRET_BYTES  32

void creor_sign_secret(char *out);
ngx_int_t creor_sign_headers(ngx_pool_t *pool, const char *event_id,
    const char *type, ngx_str_t *body, const char *secret,
    const char *old_secret, ngx_keyval_t **headers, ngx_uint_t *n);


#endif /* _CREOR_SIGN_H_INCLUDED_ */
