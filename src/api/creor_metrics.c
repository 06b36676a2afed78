
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Host-wide metrics: requests by route and status with their durations,
 * idempotency outcomes and rate limited requests, counted by a log phase
 * handler into the shared zone (creor_metrics_zone.c keeps the rest);
 * and the creor_metrics location that serves them all in Prometheus'
 * text format 0.0.4.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"
#include "creor_metrics_zone.h"


/* where the exposition is written: a chain of buffers from the pool */
typedef struct {
    ngx_pool_t             *pool;
    ngx_chain_t            *out;
    ngx_chain_t           **last;
    ngx_buf_t              *b;
    size_t                  size;
} creor_exposition_t;


static ngx_int_t creor_metrics_log(ngx_http_request_t *r);
static ngx_uint_t creor_metrics_status(ngx_uint_t status);
static ngx_int_t creor_metrics_handler(ngx_http_request_t *r);
static ngx_int_t creor_metrics_write(ngx_http_request_t *r,
    creor_exposition_t *e);
static ngx_int_t creor_exp_printf(creor_exposition_t *e, const char *fmt,
    ...);
static ngx_int_t creor_exp_head(creor_exposition_t *e, const char *name,
    const char *type, const char *help);
static ngx_int_t creor_exp_by_status(creor_exposition_t *e,
    const char *name, const char *help, const char *(*status)(ngx_uint_t),
    ngx_uint_t first, ngx_uint_t last, int64_t *counts);
static ngx_int_t creor_exp_histogram(creor_exposition_t *e,
    const char *name, const char *labels, creor_histogram_t *h,
    const char **le);
static const char *creor_metrics_route_name(ngx_uint_t i);


static ngx_uint_t        creor_metrics_nroutes;


/* exact statuses worth a series of their own; others by class */

static ngx_uint_t  creor_metrics_codes[] = {
    200, 201, 202, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 406,
    408, 409, 410, 411, 412, 413, 414, 415, 416, 422, 429, 431, 444, 499,
    500, 501, 502, 503, 504, 505, 0
};

static const char  *creor_metrics_classes[] = {
    "1xx", "2xx", "3xx", "4xx", "5xx"
};

#define CREOR_M_CLASS  (CREOR_M_STATUSES - 5)


static const ngx_msec_t  creor_request_bounds[CREOR_M_BOUNDS] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000
};

static const char  *creor_request_le[CREOR_M_BOUNDS + 1] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
    "10", "+Inf"
};

static const char  *creor_provider_le[CREOR_M_BOUNDS + 1] = {
    "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "120", "300",
    "+Inf"
};

static const char  *creor_idempotent_names[CREOR_M_IDEMPOTENT] = {
    "miss", "hit", "conflict"
};

static const char  *creor_leg_names[CREOR_M_LEGS] = {
    "ok", "failed", "aborted"
};


ngx_int_t
creor_metrics_init(ngx_conf_t *cf)
{
    creor_route_t              *rt;
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    rt = creor_route_table();

    for (creor_metrics_nroutes = 0;
         rt[creor_metrics_nroutes].pattern;
         creor_metrics_nroutes++)
    {
        /* void */
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = creor_metrics_log;

    return NGX_OK;
}


static ngx_int_t
creor_metrics_log(ngx_http_request_t *r)
{
    ngx_int_t              ms;
    ngx_uint_t             route, status, i;
    ngx_time_t            *tp;
    creor_metrics_t       *m;
    ngx_creor_ctx_t       *ctx;
    ngx_creor_loc_conf_t  *lcf;

    m = creor_metrics_get();

    if (m == NULL) {
        return NGX_OK;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_creor_module);
    ctx = ngx_http_get_module_ctx(r, ngx_creor_module);

    /* jobs (executor calls, deliveries) are requests of ours too */

    if ((ctx == NULL && !lcf->api) || (ctx && ctx->job)) {
        return NGX_OK;
    }

    if (r->method == NGX_HTTP_OPTIONS) {
        route = CREOR_M_OPTIONS;

    } else if (ctx && ctx->route) {
        route = ctx->route - creor_route_table();

        if (route >= creor_metrics_nroutes || route >= CREOR_M_NONE) {
            route = CREOR_M_OTHER;
        }

    } else {
        route = CREOR_M_NONE;
    }

    /* as $status has it */

    status = r->err_status ? r->err_status : r->headers_out.status;

    ngx_atomic_fetch_add(&m->requests[route]
                                             [creor_metrics_status(status)],
                         1);

    tp = ngx_timeofday();
    ms = (ngx_int_t) ((tp->sec - r->start_sec) * 1000
                      + (tp->msec - r->start_msec));

    creor_metrics_observe(&m->duration[route],
                            creor_request_bounds, ngx_max(ms, 0));

    if (ctx == NULL) {
        return NGX_OK;
    }

    if (ctx->err_status == NGX_HTTP_TOO_MANY_REQUESTS) {
        ngx_atomic_fetch_add(&m->ratelimited, 1);
    }

    for (i = 0; ctx->idempotent.len && i < CREOR_M_IDEMPOTENT; i++) {
        if (ctx->idempotent.len == ngx_strlen(creor_idempotent_names[i])
            && ngx_strncmp(ctx->idempotent.data, creor_idempotent_names[i],
                           ctx->idempotent.len) == 0)
        {
            ngx_atomic_fetch_add(&m->idempotent[i], 1);
            break;
        }
    }

    return NGX_OK;
}


static ngx_uint_t
creor_metrics_status(ngx_uint_t status)
{
    ngx_uint_t  i;

    for (i = 0; creor_metrics_codes[i]; i++) {
        if (creor_metrics_codes[i] == status) {
            return i;
        }
    }

    /* 0 (nothing sent) and the unusual go to their class, or 5xx */

    if (status >= 100 && status < 600) {
        return CREOR_M_CLASS + status / 100 - 1;
    }

    return CREOR_M_CLASS + 4;
}


ngx_uint_t
creor_metrics_sse_count(void)
{
    ngx_atomic_int_t   n;
    creor_metrics_t   *m;

    m = creor_metrics_get();

    if (m == NULL) {
        return creor_sse_count();
    }

    n = (ngx_atomic_int_t) m->sse;

    return n > 0 ? (ngx_uint_t) n : 0;
}


char *
creor_metrics_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == creor_metrics_handler) {
        return "is duplicate";
    }

    clcf->handler = creor_metrics_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
creor_metrics_handler(ngx_http_request_t *r)
{
    ngx_int_t            rc;
    creor_exposition_t   e;

    static ngx_str_t  type =
        ngx_string("text/plain; version=0.0.4; charset=utf-8");

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (creor_metrics_get() == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "creor_metrics: no creor_store is configured");
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    ngx_memzero(&e, sizeof(creor_exposition_t));
    e.pool = r->pool;
    e.last = &e.out;

    if (creor_metrics_write(r, &e) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_type = type;
    r->headers_out.content_type_len = type.len;
    r->headers_out.content_length_n = e.size;

    if (e.size == 0 || r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    e.b->last_buf = 1;
    e.b->last_in_chain = 1;

    return ngx_http_output_filter(r, e.out);
}


static ngx_int_t
creor_metrics_write(ngx_http_request_t *r, creor_exposition_t *e)
{
    size_t                  used, map_size, entries;
    ngx_uint_t              i, j, total;
    const char             *name;
    creor_counts_t          counts;
    creor_metrics_t        *m;
    creor_metrics_model_t  *model;
    ngx_creor_main_conf_t  *mcf;
    u_char                  labels[128], status[NGX_INT_T_LEN + 1];

    m = creor_metrics_get();
    mcf = creor_main_conf(r);

    if (creor_exp_head(e, "creor_info", "gauge",
                       "The module's version.") != NGX_OK
        || creor_exp_printf(e, "creor_info{version=\"%s\"} 1\n",
                            CREOR_VERSION) != NGX_OK
        || creor_exp_head(e, "creor_start_time_seconds", "gauge",
                          "When the metrics zone was made, Unix time.")
           != NGX_OK
        || creor_exp_printf(e, "creor_start_time_seconds %L\n",
                            (int64_t) m->start_ms / 1000) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* requests: series that have counted something */

    if (creor_exp_head(e, "creor_http_requests_total", "counter",
                       "Requests answered by creor_api locations, by route "
                       "and status.") != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < CREOR_M_ROUTES; i++) {
        name = creor_metrics_route_name(i);
        if (name == NULL) {
            continue;
        }

        for (j = 0; j < CREOR_M_STATUSES; j++) {
            if (m->requests[i][j] == 0) {
                continue;
            }

            if (j < CREOR_M_CLASS) {
                ngx_sprintf(status, "%ui%Z", creor_metrics_codes[j]);

            } else {
                ngx_cpystrn(status,
                            (u_char *) creor_metrics_classes[j - CREOR_M_CLASS],
                            sizeof(status));
            }

            if (creor_exp_printf(e, "creor_http_requests_total{route=\"%s\","
                                 "status=\"%s\"} %uA\n", name, status,
                                 m->requests[i][j])
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    if (creor_exp_head(e, "creor_http_request_duration_seconds", "histogram",
                       "Time from the first byte of a request to its log "
                       "line, by route; event streams count while open.")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < CREOR_M_ROUTES; i++) {
        name = creor_metrics_route_name(i);
        if (name == NULL) {
            continue;
        }

        for (total = 0, j = 0; j <= CREOR_M_BOUNDS; j++) {
            total += m->duration[i].buckets[j];
        }

        if (total == 0) {
            continue;
        }

        ngx_snprintf(labels, sizeof(labels), "route=\"%s\"%Z", name);

        if (creor_exp_histogram(e, "creor_http_request_duration_seconds",
                                (char *) labels, &m->duration[i],
                                creor_request_le)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (creor_exp_head(e, "creor_ratelimited_total", "counter",
                       "Requests refused with 429 by a rate limit.") != NGX_OK
        || creor_exp_printf(e, "creor_ratelimited_total %uA\n",
                            m->ratelimited) != NGX_OK
        || creor_exp_head(e, "creor_idempotent_total", "counter",
                          "Requests with an Idempotency-Key, by outcome.")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < CREOR_M_IDEMPOTENT; i++) {
        if (creor_exp_printf(e, "creor_idempotent_total{outcome=\"%s\"} %uA\n",
                             creor_idempotent_names[i], m->idempotent[i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    /* what the store holds: the counts record, one read */

    if (mcf->opened && creor_counts_read(&mcf->store, &counts) == NGX_OK) {

        if (creor_exp_by_status(e, "creor_runs",
                                "Runs in the store, by status.",
                                creor_run_status_name, CREOR_RUN_QUEUED,
                                CREOR_RUN_CANCELLED, counts.runs)
            != NGX_OK
            || creor_exp_by_status(e, "creor_agents",
                                   "Agents in the store, by status.",
                                   creor_agent_status_name, 1,
                                   CREOR_COUNTS_MAX - 1, counts.agents)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (creor_exp_head(e, "creor_executor_legs_total", "counter",
                       "Executor calls, by how they ended.") != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < CREOR_M_LEGS; i++) {
        if (creor_exp_printf(e, "creor_executor_legs_total{outcome=\"%s\"} "
                             "%uA\n", creor_leg_names[i], m->legs[i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (creor_exp_head(e, "creor_chat_tokens_total", "counter",
                       "Chat completion tokens, by direction and model.")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < CREOR_M_MODELS; i++) {
        model = &m->models[i];

        if (model->len == 0 || (model->in == 0 && model->out == 0)) {
            continue;
        }

        if (creor_exp_printf(e, "creor_chat_tokens_total{direction=\"in\","
                             "model=\"%*s\"} %uA\n"
                             "creor_chat_tokens_total{direction=\"out\","
                             "model=\"%*s\"} %uA\n",
                             (size_t) model->len, model->name, model->in,
                             (size_t) model->len, model->name, model->out)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (creor_exp_head(e, "creor_provider_duration_seconds", "histogram",
                       "Duration of model provider calls.") != NGX_OK
        || creor_exp_histogram(e, "creor_provider_duration_seconds", NULL,
                               &m->provider, creor_provider_le) != NGX_OK
        || creor_exp_head(e, "creor_webhook_deliveries_total", "counter",
                          "Webhook delivery attempts, by outcome.") != NGX_OK
        || creor_exp_printf(e, "creor_webhook_deliveries_total"
                            "{outcome=\"success\"} %uA\n"
                            "creor_webhook_deliveries_total"
                            "{outcome=\"failure\"} %uA\n",
                            m->webhooks[1], m->webhooks[0]) != NGX_OK
        || creor_exp_head(e, "creor_sse_subscribers", "gauge",
                          "Open event streams.") != NGX_OK
        || creor_exp_printf(e, "creor_sse_subscribers %ui\n",
                            creor_metrics_sse_count()) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (mcf->opened
        && creor_store_stats(&mcf->store, &used, &map_size, &entries)
           == CREOR_STORE_OK)
    {
        if (creor_exp_head(e, "creor_store_bytes", "gauge",
                           "Bytes of the store's map in use.") != NGX_OK
            || creor_exp_printf(e, "creor_store_bytes %uz\n", used) != NGX_OK
            || creor_exp_head(e, "creor_store_map_bytes", "gauge",
                              "Size of the store's map (map_size).")
               != NGX_OK
            || creor_exp_printf(e, "creor_store_map_bytes %uz\n", map_size)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static const char *
creor_metrics_route_name(ngx_uint_t i)
{
    switch (i) {
    case CREOR_M_NONE:
        return "none";
    case CREOR_M_OPTIONS:
        return "options";
    case CREOR_M_OTHER:
        return "other";
    default:
        return i < creor_metrics_nroutes ? creor_route_table()[i].name
                                         : NULL;
    }
}


static ngx_int_t
creor_exp_head(creor_exposition_t *e, const char *name, const char *type,
    const char *help)
{
    return creor_exp_printf(e, "# HELP %s %s\n# TYPE %s %s\n", name, help,
                            name, type);
}


/* a gauge by status, from first to last or the first status without name */

static ngx_int_t
creor_exp_by_status(creor_exposition_t *e, const char *name,
    const char *help, const char *(*status)(ngx_uint_t), ngx_uint_t first,
    ngx_uint_t last, int64_t *counts)
{
    ngx_uint_t  i;

    if (creor_exp_head(e, name, "gauge", help) != NGX_OK) {
        return NGX_ERROR;
    }

    for (i = first; i <= last && status(i); i++) {
        if (creor_exp_printf(e, "%s{status=\"%s\"} %L\n", name, status(i),
                             counts[i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* buckets are counted apart; their running sum is what Prometheus reads */

static ngx_int_t
creor_exp_histogram(creor_exposition_t *e, const char *name,
    const char *labels, creor_histogram_t *h, const char **le)
{
    ngx_uint_t         j;
    const char        *sep;
    ngx_atomic_uint_t  total, sum;

    sep = labels ? "," : "";
    labels = labels ? labels : "";

    sum = h->sum_ms;

    for (total = 0, j = 0; j <= CREOR_M_BOUNDS; j++) {
        total += h->buckets[j];

        if (creor_exp_printf(e, "%s_bucket{%s%sle=\"%s\"} %uA\n", name,
                             labels, sep, le[j], total)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (labels[0]) {
        return creor_exp_printf(e, "%s_sum{%s} %uA.%03uA\n%s_count{%s} %uA\n",
                                name, labels, sum / 1000, sum % 1000,
                                name, labels, total);
    }

    return creor_exp_printf(e, "%s_sum %uA.%03uA\n%s_count %uA\n",
                            name, sum / 1000, sum % 1000, name, total);
}


static ngx_int_t
creor_exp_printf(creor_exposition_t *e, const char *fmt, ...)
{
    u_char       *p;
    va_list       args;
    ngx_chain_t  *cl;

    if (e->b == NULL || (size_t) (e->b->end - e->b->last) < CREOR_M_LINE) {
        e->b = ngx_create_temp_buf(e->pool, 16384);
        cl = ngx_alloc_chain_link(e->pool);
        if (e->b == NULL || cl == NULL) {
            return NGX_ERROR;
        }

        cl->buf = e->b;
        cl->next = NULL;
        *e->last = cl;
        e->last = &cl->next;
    }

    va_start(args, fmt);
    p = ngx_vslprintf(e->b->last, e->b->last + CREOR_M_LINE, fmt, args);
    va_end(args);

    e->size += p - e->b->last;
    e->b->last = p;

    return NGX_OK;
}
