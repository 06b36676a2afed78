
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Host-wide counts in the shared zone, kept by every worker with atomic
 * adds: executor legs, provider calls and chat tokens, webhook
 * deliveries, event stream subscribers, the last outcome of executor and
 * provider calls that /v1/system/health reports, and when the store was
 * last checked.  The creor_metrics location serves them with the request
 * counts (creor_metrics.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"
#include "creor_metrics_zone.h"


static ngx_uint_t creor_metrics_model(ngx_str_t *model);


static creor_metrics_t  *creor_metrics;


static const ngx_msec_t  creor_provider_bounds[CREOR_M_BOUNDS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, 300000
};


/* in the master, when the zone is made; workers inherit the pointer */

creor_metrics_t *
creor_metrics_zone(ngx_slab_pool_t *shpool)
{
    creor_metrics_t  *m;

    m = ngx_slab_calloc(shpool, sizeof(creor_metrics_t));
    if (m == NULL) {
        return NULL;
    }

    m->start_ms = creor_now_ms();
    m->health_store = 1;
    m->health_counters = 1;

    ngx_memcpy(m->models[CREOR_M_MODELS - 1].name, "other", 5);
    m->models[CREOR_M_MODELS - 1].len = 5;

    return m;
}


void
creor_metrics_attach(creor_shared_t *shared)
{
    creor_metrics = shared->metrics;
}


creor_metrics_t *
creor_metrics_get(void)
{
    return creor_metrics;
}


void
creor_metrics_observe(creor_histogram_t *h, const ngx_msec_t *bounds,
    ngx_msec_t ms)
{
    ngx_uint_t  i;

    for (i = 0; i < CREOR_M_BOUNDS; i++) {
        if (ms <= bounds[i]) {
            break;
        }
    }

    ngx_atomic_fetch_add(&h->buckets[i], 1);
    ngx_atomic_fetch_add(&h->sum_ms, ms);
}


void
creor_metrics_leg(ngx_uint_t outcome)
{
    if (creor_metrics == NULL || outcome >= CREOR_M_LEGS) {
        return;
    }

    ngx_atomic_fetch_add(&creor_metrics->legs[outcome], 1);

    if (outcome == CREOR_LEG_OK) {
        creor_metrics->last_ok[0] = creor_now_ms();

    } else if (outcome == CREOR_LEG_FAILED) {
        creor_metrics->last_fail[0] = creor_now_ms();
    }
}


void
creor_metrics_provider(ngx_msec_t duration, ngx_uint_t ok)
{
    if (creor_metrics == NULL) {
        return;
    }

    creor_metrics_observe(&creor_metrics->provider, creor_provider_bounds,
                            duration);

    if (ok) {
        creor_metrics->last_ok[1] = creor_now_ms();

    } else {
        creor_metrics->last_fail[1] = creor_now_ms();
    }
}


void
creor_metrics_chat(ngx_str_t *model, int64_t in, int64_t out)
{
    creor_metrics_model_t  *m;

    if (creor_metrics == NULL) {
        return;
    }

    m = &creor_metrics->models[creor_metrics_model(model)];

    ngx_atomic_fetch_add(&m->in, ngx_max(in, 0));
    ngx_atomic_fetch_add(&m->out, ngx_max(out, 0));
}


/*
 * The model's slot: names are taken by first use, under a lock, and never
 * change; past the slots every model is "other", so clients that make up
 * names cannot grow the series.
 */

static ngx_uint_t
creor_metrics_model(ngx_str_t *model)
{
    u_char                  c, name[CREOR_M_MODEL_LEN];
    size_t                  len, n;
    ngx_uint_t              i;
    creor_metrics_model_t  *m;

    len = ngx_min(model->len, CREOR_M_MODEL_LEN);

    /* label values as Prometheus reads them, nothing to escape */

    for (n = 0; n < len; n++) {
        c = model->data[n];
        name[n] = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                   || (c >= '0' && c <= '9') || c == '.' || c == '_'
                   || c == '-' || c == '/' || c == ':') ? c : '_';
    }

    if (len == 0) {
        return CREOR_M_MODELS - 1;
    }

    for (i = 0; i < CREOR_M_MODELS - 1; i++) {
        m = &creor_metrics->models[i];

        if (m->len == 0) {
            ngx_spinlock(&creor_metrics->models_lock, ngx_pid, 1024);

            if (m->len == 0) {
                ngx_memcpy(m->name, name, len);
                ngx_memory_barrier();
                m->len = len;
                ngx_unlock(&creor_metrics->models_lock);
                return i;
            }

            ngx_unlock(&creor_metrics->models_lock);
        }

        if (m->len == len && ngx_memcmp(m->name, name, len) == 0) {
            return i;
        }
    }

    return CREOR_M_MODELS - 1;
}


void
creor_metrics_webhook(ngx_uint_t ok)
{
    if (creor_metrics) {
        ngx_atomic_fetch_add(&creor_metrics->webhooks[ok ? 1 : 0], 1);
    }
}


void
creor_metrics_sse(ngx_int_t delta)
{
    if (creor_metrics) {
        ngx_atomic_fetch_add(&creor_metrics->sse, delta);
    }
}


void
creor_metrics_last(ngx_uint_t provider, int64_t *ok_ms, int64_t *fail_ms)
{
    provider = provider ? 1 : 0;

    *ok_ms = creor_metrics ? (int64_t) creor_metrics->last_ok[provider] : 0;
    *fail_ms = creor_metrics ? (int64_t) creor_metrics->last_fail[provider]
                             : 0;
}


int64_t
creor_metrics_started(void)
{
    return creor_metrics ? (int64_t) creor_metrics->start_ms : creor_now_ms();
}


/*
 * NGX_OK: the caller checks now and reports with _health_set();
 * NGX_DECLINED: the last check's results, less than a second old.
 */

ngx_int_t
creor_metrics_health_due(ngx_uint_t *store_ok, ngx_uint_t *counters_ok)
{
    int64_t           now;
    ngx_atomic_uint_t  last;

    if (creor_metrics == NULL) {
        return NGX_OK;
    }

    now = creor_now_ms();
    last = creor_metrics->health_ms;

    if (now - (int64_t) last >= CREOR_M_HEALTH_EVERY
        && ngx_atomic_cmp_set(&creor_metrics->health_ms, last, now))
    {
        return NGX_OK;
    }

    *store_ok = creor_metrics->health_store;
    *counters_ok = creor_metrics->health_counters;

    return NGX_DECLINED;
}


void
creor_metrics_health_set(ngx_uint_t store_ok, ngx_uint_t counters_ok)
{
    if (creor_metrics) {
        creor_metrics->health_store = store_ok;
        creor_metrics->health_counters = counters_ok;
    }
}
