
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Directives, configuration, the store's life in each worker, variables.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_COUNTERS_MAP_SIZE      (256 * 1024 * 1024)

#define NGX_CREOR_PURGE_BATCH        2000


static ngx_int_t ngx_creor_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_creor_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static void *ngx_creor_create_main_conf(ngx_conf_t *cf);
static char *ngx_creor_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_creor_create_loc_conf(ngx_conf_t *cf);
static char *ngx_creor_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_creor_store(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_creor_secret_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_creor_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_creor_handler(ngx_http_request_t *r);
static char *ngx_creor_retry_schedule(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_creor_init_zone(ngx_shm_zone_t *shm_zone, void *data);
static ngx_int_t ngx_creor_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_creor_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_creor_init_process(ngx_cycle_t *cycle);
static void ngx_creor_exit_process(ngx_cycle_t *cycle);
static void ngx_creor_housekeeping(ngx_event_t *ev);
static char *ngx_creor_at_least_one(ngx_conf_t *cf, void *post, void *data);


/*
 * What expires, purged a batch a housekeeping turn: cursors, idempotent
 * responses; credentials', old "a:" and anonymous rate counters.
 */

static creor_expiring_t  ngx_creor_expiring[] = {
    { "cursor", CREOR_EXPIRE_STORE, "c:", CREOR_CURSOR_PURGE,
      sizeof(creor_cursor_rec_t), NULL, 0, "" },
    { "idempotency", CREOR_EXPIRE_STORE, "i:", NGX_CREOR_PURGE_BATCH, 0,
      creor_idempotency_expired, 0, "" },
    { "counter", CREOR_EXPIRE_COUNTERS, "k:", NGX_CREOR_PURGE_BATCH,
      sizeof(int64_t), NULL, 1, "" },
    { "counter", CREOR_EXPIRE_COUNTERS, "a:", NGX_CREOR_PURGE_BATCH,
      sizeof(int64_t), NULL, 1, "" },
    { "counter", CREOR_EXPIRE_ANON, "", NGX_CREOR_PURGE_BATCH,
      sizeof(int64_t), NULL, 1, "" }
};


static ngx_conf_post_t  creor_json_max_values_post = {
    ngx_creor_at_least_one
};


static ngx_command_t  ngx_creor_commands[] = {

    { ngx_string("creor_store"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_creor_store,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("creor_secret_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_creor_secret_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("creor_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_creor_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("creor_rate_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      creor_rate_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_creor_loc_conf_t, rate),
      NULL },

    { ngx_string("creor_rate_limit_anonymous"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      creor_rate_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_creor_loc_conf_t, anonymous),
      NULL },

    { ngx_string("creor_rate_limit_global"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      creor_rate_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_creor_main_conf_t, global),
      NULL },

    { ngx_string("creor_idempotency_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_creor_main_conf_t, idempotency_ttl),
      NULL },

    { ngx_string("creor_executor"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_creor_loc_conf_t, executor),
      NULL },

    { ngx_string("creor_run_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_creor_main_conf_t, run_timeout),
      NULL },

    { ngx_string("creor_run_lease"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_creor_main_conf_t, run_lease),
      NULL },

    { ngx_string("creor_executor_retries"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_creor_main_conf_t, executor_retries),
      NULL },

    { ngx_string("creor_files_path"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_creor_main_conf_t, files_path),
      NULL },

    { ngx_string("creor_sse_keepalive"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_creor_loc_conf_t, sse_keepalive),
      NULL },

    { ngx_string("creor_json_max_values"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_creor_loc_conf_t, json_max_values),
      &creor_json_max_values_post },

    { ngx_string("creor_provider"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      creor_provider_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("creor_provider_retries"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_creor_loc_conf_t, provider_retries),
      NULL },

    { ngx_string("creor_webhook_proxy"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_creor_main_conf_t, webhook_proxy),
      NULL },

    { ngx_string("creor_webhook_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_creor_main_conf_t, webhook_timeout),
      NULL },

    { ngx_string("creor_webhook_retention"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_creor_main_conf_t, webhook_retention),
      NULL },

    { ngx_string("creor_housekeeping_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_creor_main_conf_t, housekeeping),
      NULL },

    { ngx_string("creor_webhook_retry_schedule"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_creor_retry_schedule,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("creor_webhook_allow_private"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_creor_main_conf_t, webhook_allow_private),
      NULL },

    { ngx_string("creor_idempotency_required"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_creor_loc_conf_t, idempotency_required),
      NULL },

    { ngx_string("creor_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      creor_metrics_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("creor_cors"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      creor_cors_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_creor_loc_conf_t, cors),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_creor_module_ctx = {
    ngx_creor_add_variables,               /* preconfiguration */
    ngx_creor_postconfiguration,           /* postconfiguration */

    ngx_creor_create_main_conf,            /* create main configuration */
    ngx_creor_init_main_conf,              /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_creor_create_loc_conf,             /* create location configuration */
    ngx_creor_merge_loc_conf               /* merge location configuration */
};


ngx_module_t  ngx_creor_module = {
    NGX_MODULE_V1,
    &ngx_creor_module_ctx,                 /* module context */
    ngx_creor_commands,                    /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_creor_init_module,                 /* init module */
    ngx_creor_init_process,                /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_creor_exit_process,                /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_creor_vars[] = {

    { ngx_string("creor_org"), NULL, ngx_creor_variable,
      offsetof(ngx_creor_ctx_t, who.org), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("creor_project"), NULL, ngx_creor_variable,
      offsetof(ngx_creor_ctx_t, who.project), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("creor_key_id"), NULL, ngx_creor_variable,
      offsetof(ngx_creor_ctx_t, who.key_id), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("creor_route"), NULL, ngx_creor_variable,
      offsetof(ngx_creor_ctx_t, route_name), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("creor_idempotent"), NULL, ngx_creor_variable,
      offsetof(ngx_creor_ctx_t, idempotent), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("creor_ratelimit_remaining"), NULL, ngx_creor_variable,
      offsetof(ngx_creor_ctx_t, ratelimit_remaining),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("creor_tokens_in"), NULL, ngx_creor_variable,
      offsetof(ngx_creor_ctx_t, tokens_in), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("creor_tokens_out"), NULL, ngx_creor_variable,
      offsetof(ngx_creor_ctx_t, tokens_out), NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_int_t
ngx_creor_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_creor_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
        var->index = v->index;
    }

    return creor_webhooks_add_variables(cf);
}


static ngx_int_t
ngx_creor_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_str_t        *s;
    ngx_creor_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_creor_module);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = (ngx_str_t *) ((u_char *) ctx + data);

    if (s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    return creor_variable_str(v, s);
}


static void *
ngx_creor_create_main_conf(ngx_conf_t *cf)
{
    ngx_creor_main_conf_t  *mcf;

    mcf = ngx_pcalloc(cf->pool, sizeof(ngx_creor_main_conf_t));
    if (mcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     mcf->path = { 0, NULL };
     *     mcf->secret = { 0, NULL };
     *     mcf->opened = 0;
     */

    mcf->map_size = NGX_CONF_UNSET_SIZE;
    mcf->counters_size = NGX_CONF_UNSET_SIZE;
    mcf->sync = NGX_CONF_UNSET;
    mcf->request_id_index = NGX_ERROR;
    mcf->idempotency_ttl = NGX_CONF_UNSET_MSEC;
    mcf->run_timeout = NGX_CONF_UNSET_MSEC;
    mcf->run_lease = NGX_CONF_UNSET_MSEC;
    mcf->executor_retries = NGX_CONF_UNSET_UINT;
    mcf->webhook_timeout = NGX_CONF_UNSET_MSEC;
    mcf->webhook_schedule = NGX_CONF_UNSET_PTR;
    mcf->webhook_retention = NGX_CONF_UNSET_MSEC;
    mcf->housekeeping = NGX_CONF_UNSET_MSEC;
    mcf->webhook_allow_private = NGX_CONF_UNSET;

    return mcf;
}


static char *
ngx_creor_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_creor_main_conf_t  *mcf = conf;

    ngx_str_t  name = ngx_string("request_id");

    ngx_conf_init_size_value(mcf->map_size, 1024 * 1024 * 1024);
    ngx_conf_init_size_value(mcf->counters_size, CREOR_COUNTERS_MAP_SIZE);
    ngx_conf_init_value(mcf->sync, 1);
    ngx_conf_init_msec_value(mcf->idempotency_ttl, 86400000);
    ngx_conf_init_msec_value(mcf->run_timeout, 600000);
    ngx_conf_init_msec_value(mcf->run_lease, 30000);
    ngx_conf_init_uint_value(mcf->executor_retries, 2);
    ngx_conf_init_msec_value(mcf->webhook_timeout, 10000);
    ngx_conf_init_msec_value(mcf->webhook_retention,
                             (ngx_msec_t) 30 * 86400000);
    ngx_conf_init_msec_value(mcf->housekeeping, 30000);

    if (mcf->housekeeping < 100) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"creor_housekeeping_interval\" must be at "
                           "least 100ms");
        return NGX_CONF_ERROR;
    }
    ngx_conf_init_value(mcf->webhook_allow_private, 0);

    if (mcf->webhook_schedule == NGX_CONF_UNSET_PTR) {
        static ngx_msec_t  schedule[] = {
            60000, 300000, 1800000, 7200000, 43200000
        };

        mcf->webhook_schedule = ngx_array_create(cf->pool, 5,
                                                 sizeof(ngx_msec_t));
        if (mcf->webhook_schedule == NULL) {
            return NGX_CONF_ERROR;
        }

        mcf->webhook_schedule->nelts = 5;
        ngx_memcpy(mcf->webhook_schedule->elts, schedule, sizeof(schedule));
    }

    if (mcf->run_lease < 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"creor_run_lease\" must be at least 1s");
        return NGX_CONF_ERROR;
    }

    if (mcf->files_path.len) {
        if (ngx_conf_full_name(cf->cycle, &mcf->files_path, 0) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

    } else if (mcf->path.len) {
        mcf->files_path.len = mcf->path.len + sizeof("/files") - 1;
        mcf->files_path.data = ngx_pnalloc(cf->pool, mcf->files_path.len);
        if (mcf->files_path.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(ngx_cpymem(mcf->files_path.data, mcf->path.data,
                              mcf->path.len),
                   "/files", sizeof("/files") - 1);
    }

    if (!mcf->global.set) {
        mcf->global.off = 1;
    }

    mcf->request_id_index = ngx_http_get_variable_index(cf, &name);
    if (mcf->request_id_index == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_creor_create_loc_conf(ngx_conf_t *cf)
{
    ngx_creor_loc_conf_t  *lcf;

    lcf = ngx_pcalloc(cf->pool, sizeof(ngx_creor_loc_conf_t));
    if (lcf == NULL) {
        return NULL;
    }

    lcf->api = NGX_CONF_UNSET;
    lcf->idempotency_required = NGX_CONF_UNSET;
    lcf->sse_keepalive = NGX_CONF_UNSET_MSEC;
    lcf->cors = NGX_CONF_UNSET_PTR;
    lcf->json_max_values = NGX_CONF_UNSET_UINT;
    lcf->providers = NGX_CONF_UNSET_PTR;
    lcf->provider_retries = NGX_CONF_UNSET_UINT;

    return lcf;
}


static char *
ngx_creor_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_creor_loc_conf_t  *prev = parent;
    ngx_creor_loc_conf_t  *conf = child;

    ngx_conf_merge_value(conf->api, prev->api, 0);
    ngx_conf_merge_value(conf->idempotency_required,
                         prev->idempotency_required, 0);
    ngx_conf_merge_str_value(conf->executor, prev->executor, "");

    /* "creor_executor builtin;" says explicitly what no executor means */

    if (conf->executor.len == 7
        && ngx_strncmp(conf->executor.data, "builtin", 7) == 0)
    {
        conf->executor.len = 0;
    }
    ngx_conf_merge_msec_value(conf->sse_keepalive, prev->sse_keepalive,
                              15000);
    ngx_conf_merge_ptr_value(conf->cors, prev->cors, NULL);
    ngx_conf_merge_uint_value(conf->json_max_values, prev->json_max_values,
                              CREOR_JSON_MAX_VALUES);
    ngx_conf_merge_ptr_value(conf->providers, prev->providers, NULL);
    ngx_conf_merge_uint_value(conf->provider_retries,
                              prev->provider_retries, 0);

    /* SPEC 7 defaults: 60r/m burst=10 a credential, 60r/m an address */

    if (!conf->rate.set) {
        if (prev->rate.set) {
            conf->rate = prev->rate;

        } else {
            conf->rate.count = 60;
            conf->rate.period_ms = 60000;
            conf->rate.burst = 10;
        }
    }

    if (!conf->anonymous.set) {
        if (prev->anonymous.set) {
            conf->anonymous = prev->anonymous;

        } else {
            conf->anonymous.count = 60;
            conf->anonymous.period_ms = 60000;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_creor_store(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_creor_main_conf_t  *mcf = conf;

    off_t       size;
    ngx_str_t  *value, s;
    ngx_uint_t  i;

    static ngx_str_t  zone = ngx_string("creor");

    if (mcf->path.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    mcf->path = value[1];

    if (ngx_conf_full_name(cf->cycle, &mcf->path, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* wakeup counters and metrics the workers share: LMDB notifies nobody */

    mcf->shm_zone = ngx_shared_memory_add(cf, &zone, 256 * 1024,
                                          &ngx_creor_module);
    if (mcf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    mcf->shm_zone->init = ngx_creor_init_zone;
    mcf->shm_zone->data = mcf;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "map_size=", 9) == 0) {
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;

            size = ngx_parse_offset(&s);

            /* LMDB needs room for its meta pages and a few trees */

            if (size == NGX_ERROR || size < 256 * 1024) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid map_size \"%V\" in "
                                   "\"creor_store\", at least 256k",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            mcf->map_size = (size_t) size;
            continue;
        }

        if (ngx_strncmp(value[i].data, "counters=", 9) == 0) {
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;

            size = ngx_parse_offset(&s);

            if (size == NGX_ERROR || size < 256 * 1024) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid counters size \"%V\" in "
                                   "\"creor_store\", at least 256k",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            mcf->counters_size = (size_t) size;
            continue;
        }

        if (ngx_strcmp(value[i].data, "sync=on") == 0) {
            mcf->sync = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "sync=off") == 0) {
            mcf->sync = 0;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"creor_store\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    /* credentials' counters in shared memory, as many as the map holds */

    if (creor_ratelimit_zone(cf, mcf,
                             mcf->counters_size == NGX_CONF_UNSET_SIZE
                             ? CREOR_COUNTERS_MAP_SIZE : mcf->counters_size)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_creor_secret_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_creor_main_conf_t  *mcf = conf;

    u_char           *p;
    ssize_t           n;
    ngx_str_t        *value, name;
    ngx_file_t        file;
    ngx_file_info_t   fi;

    if (mcf->secret.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = name;
    file.log = cf->log;

    file.fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "creor_secret_file: "
                           ngx_open_file_n " \"%V\" failed", &name);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) < 32
        || ngx_file_size(&fi) > CREOR_SERVER_SECRET_MAX)
    {
        ngx_close_file(file.fd);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "creor_secret_file \"%V\" must hold 32 to %d "
                           "bytes", &name, CREOR_SERVER_SECRET_MAX);
        return NGX_CONF_ERROR;
    }

    p = ngx_pnalloc(cf->pool, ngx_file_size(&fi));
    if (p == NULL) {
        ngx_close_file(file.fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_file(&file, p, ngx_file_size(&fi), 0);

    ngx_close_file(file.fd);

    if (n != ngx_file_size(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "creor_secret_file: cannot read \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    mcf->secret.data = p;
    mcf->secret.len = n;

    return NGX_CONF_OK;
}


/* creor_webhook_retry_schedule 1m 5m 30m 2h 12h; */

static char *
ngx_creor_retry_schedule(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_creor_main_conf_t  *mcf = conf;

    ngx_str_t   *value;
    ngx_msec_t  *t;
    ngx_uint_t   i;

    if (mcf->webhook_schedule != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    mcf->webhook_schedule = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                             sizeof(ngx_msec_t));
    if (mcf->webhook_schedule == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        t = ngx_array_push(mcf->webhook_schedule);
        if (t == NULL) {
            return NGX_CONF_ERROR;
        }

        *t = ngx_parse_time(&value[i], 0);

        if (*t == (ngx_msec_t) NGX_ERROR || *t == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"creor_webhook_retry_schedule\": invalid "
                               "time \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/*
 * What a shared zone holds already: the old cycle's (a reload), or what
 * outlived it; NULL when the zone is new and its object is to be made.
 */

void *
creor_zone_data(ngx_shm_zone_t *shm_zone, void *old)
{
    ngx_slab_pool_t  *shpool;

    if (old) {
        return old;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    return shm_zone->shm.exists ? shpool->data : NULL;
}


static ngx_int_t
ngx_creor_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_creor_main_conf_t  *omcf = data;

    ngx_slab_pool_t        *shpool;
    ngx_creor_main_conf_t  *mcf;

    mcf = shm_zone->data;

    mcf->shared = creor_zone_data(shm_zone, omcf ? omcf->shared : NULL);

    if (mcf->shared) {
        creor_metrics_attach(mcf->shared);
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    mcf->shared = ngx_slab_calloc(shpool, sizeof(creor_shared_t));
    if (mcf->shared == NULL) {
        return NGX_ERROR;
    }

    mcf->shared->metrics = creor_metrics_zone(shpool);
    if (mcf->shared->metrics == NULL) {
        return NGX_ERROR;
    }

    shpool->data = mcf->shared;
    creor_metrics_attach(mcf->shared);

    return NGX_OK;
}


static char *
ngx_creor_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_creor_loc_conf_t  *lcf = conf;

    ngx_creor_main_conf_t     *mcf;
    ngx_http_core_loc_conf_t  *clcf;

    if (lcf->api != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    lcf->api = 1;

    /* executor calls are made in the server of the first API location */

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_creor_module);

    if (mcf->api_ctx == NULL) {
        mcf->api_ctx = cf->ctx;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_creor_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_creor_handler(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    rc = ngx_creor_handle(r);

    creor_store_guard(creor_main_conf(r), r->connection->log);

    return rc;
}


/*
 * A route table whose scope is not declared stops here, and nginx -t;
 * the Authorization header's handler is replaced (creor_auth.c).
 */

static ngx_int_t
ngx_creor_postconfiguration(ngx_conf_t *cf)
{
    if (creor_scope_init(cf) != NGX_OK
        || creor_auth_init(cf) != NGX_OK
        || creor_error_filter_init(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /*
     * above the error filter: a provider's or a job's reply is never an
     * error page
     */

    if (creor_capture_filter_init(cf) != NGX_OK
        || creor_chat_filter_init(cf) != NGX_OK
        || creor_job_filter_init(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return creor_metrics_init(cf);
}


/*
 * Runs in the master (as root) before the workers fork: the store
 * directory and LMDB's files must belong to the worker user, who opens
 * them after fork; the command line may have made them as root.
 */

static ngx_int_t
ngx_creor_init_module(ngx_cycle_t *cycle)
{
    u_char                 *p;
    ngx_uint_t              i;
    ngx_core_conf_t        *ccf;
    ngx_creor_main_conf_t  *mcf;
    u_char                  name[NGX_MAX_PATH];
    u_char                  files_dir[NGX_MAX_PATH];

    static const char      *files[] = {
        "", "/data.mdb", "/lock.mdb",
        "/counters", "/counters/data.mdb", "/counters/lock.mdb"
    };

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_creor_module);

    if (mcf == NULL || mcf->path.len == 0) {
        return NGX_OK;
    }

    if (mcf->path.len + sizeof("/counters/data.mdb") > NGX_MAX_PATH) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "creor_store path \"%V\" is too long", &mcf->path);
        return NGX_ERROR;
    }

    p = ngx_cpymem(name, mcf->path.data, mcf->path.len);
    *p = '\0';

    if (ngx_create_dir(name, 0700) == NGX_FILE_ERROR
        && ngx_errno != NGX_EEXIST)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      ngx_create_dir_n " \"%s\" failed", name);
        return NGX_ERROR;
    }

    ngx_cpystrn(p, (u_char *) "/counters", sizeof("/counters"));

    if (ngx_create_dir(name, 0700) == NGX_FILE_ERROR
        && ngx_errno != NGX_EEXIST)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      ngx_create_dir_n " \"%s\" failed", name);
        return NGX_ERROR;
    }

    if (mcf->files_path.len >= NGX_MAX_PATH) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "creor_files_path \"%V\" is too long", &mcf->files_path);
        return NGX_ERROR;
    }

    ngx_cpystrn(files_dir, mcf->files_path.data, mcf->files_path.len + 1);

    if (ngx_create_dir(files_dir, 0700) == NGX_FILE_ERROR
        && ngx_errno != NGX_EEXIST)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      ngx_create_dir_n " \"%s\" failed", files_dir);
        return NGX_ERROR;
    }

    if (creor_wakeup_init_module(cycle, mcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (geteuid() != 0) {
        return NGX_OK;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    if (chown((char *) files_dir, ccf->user, ccf->group) == -1) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      "chown(\"%s\") failed", files_dir);
        return NGX_ERROR;
    }

    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        ngx_cpystrn(p, (u_char *) files[i], sizeof("/counters/data.mdb"));

        if (chown((char *) name, ccf->user, ccf->group) == -1
            && ngx_errno != NGX_ENOENT)
        {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                          "chown(\"%s\") failed", name);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_creor_init_process(ngx_cycle_t *cycle)
{
    int                     rc;
    char                    err[512];
    size_t                  indexed;
    u_char                  path[NGX_MAX_PATH];
    ngx_creor_main_conf_t  *mcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_creor_module);

    if (mcf == NULL || mcf->path.len == 0) {
        return NGX_OK;
    }

    ngx_cpystrn(path, mcf->path.data, mcf->path.len + 1);

    if (creor_store_open(&mcf->store, (char *) path, mcf->map_size,
                         mcf->sync ? CREOR_STORE_SYNC : CREOR_STORE_NOSYNC,
                         err, sizeof(err))
        != CREOR_STORE_OK)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0, "creor_store: %s", err);
        return NGX_ERROR;
    }

    ngx_cpystrn(ngx_cpymem(path, mcf->path.data, mcf->path.len),
                (u_char *) "/counters", sizeof("/counters"));

    if (creor_store_open(&mcf->counters, (char *) path, mcf->counters_size,
                         CREOR_STORE_EPHEMERAL, err, sizeof(err))
        != CREOR_STORE_OK)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0, "creor_store: %s", err);
        creor_store_close(&mcf->store);
        return NGX_ERROR;
    }

    if (creor_ratelimit_init(mcf, cycle->log) != NGX_OK) {
        creor_store_close(&mcf->counters);
        creor_store_close(&mcf->store);
        return NGX_ERROR;
    }

    if (creor_store_init_secret(&mcf->store, mcf->secret.data,
                                mcf->secret.len, err, sizeof(err))
        != CREOR_STORE_OK)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0, "creor_store: %s", err);
        creor_store_close(&mcf->store);
        return NGX_ERROR;
    }

    /*
     * A store of a version without indexes is indexed before the worker
     * serves; the workers' steps continue one another (creor_index.c).
     */

    indexed = 0;

    do {
        rc = creor_index_upgrade(&mcf->store, 0, &indexed);
    } while (rc == CREOR_STORE_EXISTS);

    if (rc != CREOR_STORE_OK) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "creor_store: cannot build the indexes");
        creor_store_close(&mcf->store);
        return NGX_ERROR;
    }

    if (indexed) {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "creor_store: indexed %uz records", indexed);
    }

    mcf->opened = 1;

    /* once in a store's life: counts of what an older version stored */

    if (creor_counts_init(&mcf->store, cycle->log) != NGX_OK) {
        return NGX_ERROR;
    }

    if (creor_changed_listen(CREOR_CHANGED_EVENTS, creor_sse_notify)
        != NGX_OK
        || creor_changed_listen(CREOR_CHANGED_REAP, creor_runs_reap_kick)
           != NGX_OK
        || creor_changed_watch(creor_sse_shutdown, creor_sse_count)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (mcf->api_ctx && creor_dispatch_init(cycle, mcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (creor_wakeup_init_process(cycle, mcf) != NGX_OK) {
        return NGX_ERROR;
    }

    mcf->timer.handler = ngx_creor_housekeeping;
    mcf->timer.data = mcf;
    mcf->timer.log = cycle->log;
    mcf->timer.cancelable = 1;

    ngx_add_timer(&mcf->timer, mcf->housekeeping
                               + ngx_random() % ngx_min(mcf->housekeeping,
                                                        1000));

    /* runs of agents deleted when a worker stopped half way */

    creor_runs_reap_kick(mcf);

    return NGX_OK;
}


static void
ngx_creor_exit_process(ngx_cycle_t *cycle)
{
    ngx_creor_main_conf_t  *mcf;

    creor_wakeup_exit_process();

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_creor_module);

    if (mcf && mcf->opened) {
        creor_usage_flush(cycle->log);
        creor_ratelimit_exit(mcf, cycle->log);
        creor_store_close(&mcf->counters);
        creor_store_close(&mcf->store);
        mcf->opened = 0;
    }
}


/*
 * Stale readers of dead processes; expired cursors, responses, counters;
 * finished webhook deliveries and those of deleted endpoints.
 */

static void
ngx_creor_housekeeping(ngx_event_t *ev)
{
    ngx_int_t               dead;
    ngx_uint_t              i;
    ngx_creor_main_conf_t  *mcf;

    mcf = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    dead = creor_store_reader_check(&mcf->store);
    if (dead > 0) {
        ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                      "creor_store: cleared %i stale readers", dead);
    }

    (void) creor_store_reader_check(&mcf->counters);

    creor_runs_reap_kick(mcf);

    for (i = 0; i < sizeof(ngx_creor_expiring) / sizeof(creor_expiring_t);
         i++)
    {
        creor_expire(mcf, &ngx_creor_expiring[i], ev->log);
    }

    creor_webhooks_purge(mcf, ev->log);

    creor_store_guard(mcf, ev->log);

    ngx_add_timer(ev, mcf->housekeeping);
}


/* nginx's own bounds check would not name the directive */

static char *
ngx_creor_at_least_one(ngx_conf_t *cf, void *post, void *data)
{
    ngx_int_t  *np = data;

    if (*np < 1) {
        return "must be at least 1";
    }

    return NGX_CONF_OK;
}
