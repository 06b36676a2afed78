
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Reading a run's stored events, "e:<run>:<seq>", and how far they go
 * (creor_events_walk.c).
 */


#ifndef _CREOR_EVENTS_WALK_H_INCLUDED_
#define _CREOR_EVENTS_WALK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "creor_store.h"


/* an event of the walk: NGX_OK for the next one, NGX_DONE to stop */
typedef ngx_int_t (*creor_event_pt)(uint32_t seq, MDB_val *val, void *data);


ngx_int_t creor_events_last(creor_store_t *st, MDB_txn *txn, ngx_str_t *org,
    ngx_str_t *run_id, uint32_t *seq, ngx_uint_t *status);
ngx_int_t creor_events_walk(creor_store_t *st, MDB_txn *txn,
    ngx_str_t *run_id, uint32_t after, creor_event_pt each, void *data);


#endif /* _CREOR_EVENTS_WALK_H_INCLUDED_ */
