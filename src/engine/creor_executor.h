
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The executor contract (creor_executor.c) and the run leg it is spoken
 * over (creor_legs.c): included by those two, the built-in executor and
 * fuzz/ndjson.c.
 */


#ifndef _CREOR_EXECUTOR_H_INCLUDED_
#define _CREOR_EXECUTOR_H_INCLUDED_


#include "ngx_creor.h"


#ifndef CREOR_LINE_MAX                  /* fuzz/ndjson.c makes it small */
#define CREOR_LINE_MAX         (1024 * 1024)
#endif


/* a leg is a job (creor_job.c) of the legs' kind: its data */
typedef struct {
    ngx_queue_t             queue;
    creor_job_t            *job;
    ngx_str_t               run_id;
    creor_builtin_t        *builtin;    /* a built-in leg's state */
    u_char                 *line;       /* a line still being received */
    size_t                  line_len;
    size_t                  line_size;
    ngx_array_t            *lines;      /* complete ones, in this chain */
    int64_t                 renew_ms;
    unsigned                ended:1;    /* a leg-ending event arrived */
    unsigned                aborted:1;  /* the run went on without it */
    unsigned                failed:1;   /* a broken reply: a failed try */
} creor_leg_t;


/* creor_executor.c: the reply, NDJSON lines of events */
ngx_int_t creor_leg_feed(creor_leg_t *leg, u_char *p, size_t len,
    ngx_array_t *lines, ngx_pool_t *pool);
void creor_leg_line_free(creor_leg_t *leg);
ngx_int_t creor_leg_line(ngx_pool_t *pool, ngx_str_t *line,
    const char **type, creor_json_t **value);
void creor_leg_events(creor_leg_t *leg, ngx_array_t *lines,
    ngx_pool_t *pool);

/* creor_legs.c */
void creor_legs_failed(ngx_str_t *id, const char *what, ngx_int_t rc);


#endif /* _CREOR_EXECUTOR_H_INCLUDED_ */
