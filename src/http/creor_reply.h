
/*
 * Copyright (C) ngx_creor_module authors
 */


#ifndef _CREOR_REPLY_H_INCLUDED_
#define _CREOR_REPLY_H_INCLUDED_


/* included by ngx_creor.h */

ngx_int_t creor_commit_or_fail(ngx_http_request_t *r, MDB_txn *txn, int rc);
ngx_int_t creor_send_deleted(ngx_http_request_t *r, const char *object,
    ngx_str_t *id);


#endif /* _CREOR_REPLY_H_INCLUDED_ */
