
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Run records (creor_run.c); included from ngx_creor.h.
 */


#ifndef _CREOR_RUN_H_INCLUDED_
#define _CREOR_RUN_H_INCLUDED_


/* a run loaded from the store: the header and its JSON document */
typedef struct {
    char                    key[CREOR_STORE_KEY_MAX];
    ngx_str_t               id;
    creor_run_hdr_t         hdr;
    creor_json_t           *doc;
    ngx_pool_t             *pool;
    ngx_flag_t              sync;       /* a state change: commit synced */
} creor_run_t;


ngx_int_t creor_run_load(creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool,
    ngx_str_t *org, ngx_str_t *id, creor_run_t *run);
ngx_int_t creor_run_load_any(creor_store_t *st, MDB_txn *txn,
    ngx_pool_t *pool, ngx_str_t *id, creor_run_t *run);
ngx_int_t creor_run_header(creor_store_t *st, MDB_txn *txn, ngx_str_t *id,
    creor_run_hdr_t *hdr);
ngx_int_t creor_run_save(creor_store_t *st, MDB_txn *txn, creor_run_t *run);
ngx_int_t creor_run_queue(creor_store_t *st, MDB_txn *txn, creor_run_t *run,
    ngx_flag_t on);
ngx_int_t creor_run_index(creor_store_t *st, MDB_txn *txn, creor_run_t *run,
    ngx_uint_t old);
void creor_run_json(yajl_gen g, creor_run_t *run);
void creor_run_doc_str(yajl_gen g, creor_run_t *run, const char *name,
    const char *key);
const char *creor_run_status_name(ngx_uint_t status);
ngx_int_t creor_run_status_parse(ngx_str_t *s);
void creor_file_signature(ngx_creor_main_conf_t *mcf, ngx_str_t *run,
    ngx_str_t *file, time_t expires, u_char *hex);


#endif /* _CREOR_RUN_H_INCLUDED_ */
