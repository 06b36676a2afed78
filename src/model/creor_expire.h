
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Records that expire (creor_expire.c): each kind is purged a batch at a
 * time from the housekeeping timer, resuming where the last batch
 * stopped.
 */


#ifndef _CREOR_EXPIRE_H_INCLUDED_
#define _CREOR_EXPIRE_H_INCLUDED_


typedef struct {
    const char               *name;     /* for the log: "cursor" */
    const char               *prefix;   /* its store keys */
    size_t                    batch;
    size_t                    size;     /* begins with its expiry (int64) */
    creor_store_expired_pt    expired;  /* or says so itself */
    char                      from[CREOR_STORE_KEY_MAX];
} creor_expiring_t;


void creor_expire(creor_store_t *st, creor_expiring_t *kind, ngx_log_t *log);


#endif /* _CREOR_EXPIRE_H_INCLUDED_ */
