
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The detached-job engine, included from ngx_creor.h.  A kind of
 * background job is a file of its own with two parts: a creor_job_kind_t
 * (what its detached request does with each piece of the reply) and a
 * line in creor_job_kinds[] of creor_tick.c (a creor_job_queue_t: when
 * the worker's tick looks at its queue in the store).
 */


#ifndef _CREOR_ENGINE_H_INCLUDED_
#define _CREOR_ENGINE_H_INCLUDED_


/*
 * creor_job.c: a detached request to an internal location.  A kind says
 * what to do with the reply's status (header), each piece of its body
 * (piece, then pieces_done once per buffer chain, with a pool that lives
 * until then) and its end: finish is called once the call is over or
 * timed out and must end in creor_job_destroy(); end is called by
 * creor_job_destroy() itself, whoever calls it.
 */
typedef struct creor_job_s  creor_job_t;

typedef struct {
    const char             *action;     /* for the log: "calling ..." */
    ngx_int_t             (*header)(creor_job_t *job, ngx_http_request_t *r);
    ngx_int_t             (*piece)(creor_job_t *job, u_char *p, size_t len,
                                   ngx_pool_t *pool);
    void                  (*pieces_done)(creor_job_t *job, ngx_pool_t *pool);
    void                  (*finish)(creor_job_t *job);
    void                  (*end)(creor_job_t *job);
} creor_job_kind_t;

struct creor_job_s {
    creor_job_kind_t       *kind;
    void                   *data;       /* the kind's */
    ngx_pool_t             *pool;       /* the job's: log, data, request */
    ngx_connection_t       *c;          /* no client, no socket */
    ngx_http_request_t     *r;
    ngx_event_t             timer;
    ngx_uint_t              status;     /* the location's HTTP status */
    ngx_int_t               rc;         /* how the subrequest ended */
    unsigned                done:1;     /* the call is over */
    unsigned                timed_out:1;
    unsigned                ignore_body:1;
    unsigned                destroyed:1;
};

void creor_job_init(ngx_creor_main_conf_t *mcf);
creor_job_t *creor_job_create(creor_job_kind_t *kind, size_t size,
    ngx_str_t *uri, ngx_str_t *body, ngx_keyval_t *headers,
    ngx_uint_t nheaders);
void creor_job_run(creor_job_t *job, ngx_msec_t timeout);
void creor_job_destroy(creor_job_t *job);


/* the job kind's capture of its replies (creor_capture.c) */
ngx_int_t creor_job_filter_init(ngx_conf_t *cf);


/*
 * creor_tick.c: the worker's tick, which drives the kinds of
 * creor_job_kinds[].  Every hook may be NULL; "now" is creor_now_ms().
 */
typedef struct {
    const char             *name;
    void                  (*init)(ngx_creor_main_conf_t *mcf);

    /* commits were made (events stored here or elsewhere): also exiting */
    void                  (*changed)(int64_t now);

    /* the same moment, while the worker is not exiting: claim what is due */
    void                  (*scan)(int64_t now);

    /* every 200 ms and at once when work is queued (CREOR_CHANGED_WORK) */
    void                  (*every)(int64_t now);

    /* every tick (5 ms busy, 200 ms idle), while not exiting */
    void                  (*tick)(int64_t now);

    /* the worker stops (quit, reload): give the jobs back at once */
    void                  (*release)(void);

    /* jobs in flight: the tick stays fast, other workers wake this one */
    ngx_uint_t            (*busy)(void);
} creor_job_queue_t;

ngx_int_t creor_dispatch_init(ngx_cycle_t *cycle, ngx_creor_main_conf_t *mcf);
void creor_tick_again(void);

/* creor_legs.c: run legs, the first kind */
void creor_legs_init(ngx_creor_main_conf_t *mcf);
void creor_legs_changed(int64_t now);
void creor_legs_every(int64_t now);
void creor_legs_release(void);
ngx_uint_t creor_legs_busy(void);


/* creor_builtin.c */
typedef struct creor_builtin_s  creor_builtin_t;

ngx_int_t creor_builtin_claim(MDB_txn *txn, creor_run_t *run,
    ngx_array_t *providers, creor_provider_t **pv, const char **fail);
ngx_int_t creor_builtin_started(creor_store_t *st, MDB_txn *txn,
    creor_run_t *run);
ngx_int_t creor_builtin_body(creor_store_t *st, creor_run_t *run,
    ngx_pool_t *pool, ngx_str_t *out);
creor_builtin_t *creor_builtin_create(ngx_pool_t *pool, creor_run_t *run);
ngx_int_t creor_builtin_events(creor_builtin_t *bi, ngx_str_t *run_id,
    ngx_array_t *lines, ngx_pool_t *pool);
void creor_builtin_failed(creor_builtin_t *bi);
ngx_flag_t creor_builtin_retryable(ngx_uint_t status);


/* creor_executor.c: the executor contract, what a leg sends */
ngx_int_t creor_run_leg_body(creor_store_t *st, MDB_txn *txn,
    ngx_pool_t *pool, creor_run_t *run, ngx_str_t *out);


#endif /* _CREOR_ENGINE_H_INCLUDED_ */
