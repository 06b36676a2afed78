
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Usage: its records (creor_usage.c) and the worker's meter
 * (creor_usage_batch.c).  Included from ngx_creor.h, after the types it
 * names.
 */


#ifndef _CREOR_USAGE_H_INCLUDED_
#define _CREOR_USAGE_H_INCLUDED_


/* a finished chat completion or run, for the usage aggregates */
typedef struct {
    ngx_str_t               org;
    ngx_str_t               project;    /* may be empty */
    ngx_str_t               key_id;     /* may be empty */
    ngx_str_t               agent;      /* may be empty */
    ngx_str_t               model;      /* "provider/name" as asked */
    int64_t                 input_tokens;
    int64_t                 output_tokens;
    ngx_uint_t              requests;   /* 1 for a chat completion */
    ngx_uint_t              runs;       /* 1 for a finished run */
    int64_t                 time_ms;    /* when it finished */
} creor_usage_t;


/* an aggregate of a range walk: NGX_OK goes on, anything else stops it */
typedef ngx_int_t (*creor_usage_each_pt)(creor_usage_dims_t *d,
    creor_usage_rec_t *rec, void *data);


/* creor_usage.c */
ngx_int_t creor_usage_run(creor_store_t *st, MDB_txn *txn, creor_run_t *run);
ngx_int_t creor_usage_range(creor_store_t *st, MDB_txn *txn, ngx_str_t *org,
    const char *first, const char *last, creor_usage_each_pt each,
    void *data);

/* creor_usage_batch.c */
ngx_int_t creor_usage_add(ngx_creor_main_conf_t *mcf, creor_usage_t *u,
    ngx_log_t *log);
void creor_usage_flush(ngx_log_t *log);


#endif /* _CREOR_USAGE_H_INCLUDED_ */
