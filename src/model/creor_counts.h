
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Agents and runs by status: one record, "m:counts", changed in the
 * transaction of every change of a status (creor_counts.c).
 */


#ifndef _CREOR_COUNTS_H_INCLUDED_
#define _CREOR_COUNTS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "creor_store.h"


#define CREOR_COUNTS_MAX     8

typedef struct {
    uint32_t                version;
    uint32_t                reserved;
    int64_t                 runs[CREOR_COUNTS_MAX];     /* CREOR_RUN_* */
    int64_t                 agents[CREOR_COUNTS_MAX];   /* idle, queued... */
} creor_counts_t;


ngx_int_t creor_counts_init(creor_store_t *st, ngx_log_t *log);
ngx_int_t creor_counts_read(creor_store_t *st, creor_counts_t *counts);
ngx_int_t creor_counts_run(creor_store_t *st, MDB_txn *txn, ngx_uint_t from,
    ngx_uint_t to);
ngx_int_t creor_counts_agent(creor_store_t *st, MDB_txn *txn,
    const char *from, const char *to);
const char *creor_agent_status_name(ngx_uint_t i);


#endif /* _CREOR_COUNTS_H_INCLUDED_ */
