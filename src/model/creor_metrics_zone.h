
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The layout of the host-wide metrics in the shared zone
 * (creor_metrics_zone.c counts, creor_metrics.c serves them).
 */


#ifndef _CREOR_METRICS_ZONE_H_INCLUDED_
#define _CREOR_METRICS_ZONE_H_INCLUDED_


/* route slots: the table's first, then three of our own */
#define CREOR_M_ROUTES       64
#define CREOR_M_NONE         (CREOR_M_ROUTES - 3)   /* no route matched */
#define CREOR_M_OPTIONS      (CREOR_M_ROUTES - 2)
#define CREOR_M_OTHER        (CREOR_M_ROUTES - 1)   /* past the slots */

#define CREOR_M_STATUSES     40
#define CREOR_M_BOUNDS       11     /* histogram buckets, +Inf aside */
#define CREOR_M_MODELS       32     /* the last one is "other" */
#define CREOR_M_MODEL_LEN    64

#define CREOR_M_IDEMPOTENT   3      /* miss, hit, conflict */
#define CREOR_M_LEGS         3
#define CREOR_M_HEALTH_EVERY 1000   /* ms between real health checks */

#define CREOR_M_LINE         512


typedef struct {
    ngx_atomic_t            buckets[CREOR_M_BOUNDS + 1];
    ngx_atomic_t            sum_ms;
} creor_histogram_t;


typedef struct {
    ngx_atomic_t            in;
    ngx_atomic_t            out;
    ngx_atomic_t            len;        /* set last: the name is written */
    u_char                  name[CREOR_M_MODEL_LEN];
} creor_metrics_model_t;


struct creor_metrics_s {
    ngx_atomic_t            start_ms;
    ngx_atomic_t            requests[CREOR_M_ROUTES][CREOR_M_STATUSES];
    creor_histogram_t       duration[CREOR_M_ROUTES];
    ngx_atomic_t            ratelimited;
    ngx_atomic_t            idempotent[CREOR_M_IDEMPOTENT];
    ngx_atomic_t            legs[CREOR_M_LEGS];
    ngx_atomic_t            webhooks[2];    /* failure, success */
    ngx_atomic_t            sse;
    creor_histogram_t       provider;

    /* last success and failure (ms): [0] executor, [1] provider */
    ngx_atomic_t            last_ok[2];
    ngx_atomic_t            last_fail[2];

    ngx_atomic_t            health_ms;
    ngx_atomic_t            health_store;
    ngx_atomic_t            health_counters;

    ngx_atomic_t            models_lock;
    creor_metrics_model_t   models[CREOR_M_MODELS];
};


creor_metrics_t *creor_metrics_get(void);
void creor_metrics_observe(creor_histogram_t *h, const ngx_msec_t *bounds,
    ngx_msec_t ms);


#endif /* _CREOR_METRICS_ZONE_H_INCLUDED_ */
