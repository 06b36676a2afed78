
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Records that expire (creor_expire.c): each kind is purged a batch at a
 * time from the housekeeping timer, resuming where the last batch
 * stopped.
 */


#ifndef _CREOR_EXPIRE_H_INCLUDED_
#define _CREOR_EXPIRE_H_INCLUDED_


/* where a kind is kept */
#define CREOR_EXPIRE_STORE      0
#define CREOR_EXPIRE_COUNTERS   1
#define CREOR_EXPIRE_ANON       2       /* the counters' "anon" database */


typedef struct {
    const char               *name;     /* for the log: "cursor" */
    ngx_uint_t                where;
    const char               *prefix;   /* its keys */
    size_t                    batch;
    size_t                    size;     /* begins with its expiry (int64) */
    creor_store_expired_pt    expired;  /* or says so itself */
    ngx_flag_t                us;       /* its times are microseconds */
    char                      from[CREOR_STORE_KEY_MAX];    /* resume */
} creor_expiring_t;


void creor_expire(ngx_creor_main_conf_t *mcf, creor_expiring_t *kind,
    ngx_log_t *log);


#endif /* _CREOR_EXPIRE_H_INCLUDED_ */
