
/*
 * Copyright (C) ngx_creor_module authors
 */


#ifndef _NGX_CREOR_H_INCLUDED_
#define _NGX_CREOR_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <yajl/yajl_gen.h>

#include "creor_store.h"
#include "creor_index.h"
#include "creor_counts.h"
#include "creor_events_walk.h"


#define CREOR_JSON_NULL      0
#define CREOR_JSON_FALSE     1
#define CREOR_JSON_TRUE      2
#define CREOR_JSON_NUMBER    3
#define CREOR_JSON_STRING    4
#define CREOR_JSON_ARRAY     5
#define CREOR_JSON_OBJECT    6

#define CREOR_JSON_MAX_DEPTH 32
#define CREOR_JSON_MAX_VALUES  100000   /* creor_json_max_values default */

/* permissions a role grants */
#define CREOR_PERM_READ      0x01
#define CREOR_PERM_WRITE     0x02       /* agents, runs, chat */
#define CREOR_PERM_ADMIN     0x04       /* keys, projects, webhooks */

#define CREOR_METHOD_BODY    (NGX_HTTP_POST|NGX_HTTP_PATCH|NGX_HTTP_PUT)

#define CREOR_ROUTE_PARAMS   3

/* route flags */
#define CREOR_ROUTE_IDEMPOTENCY_REQUIRED  0x01
#define CREOR_ROUTE_MULTIPART             0x02  /* body may be form-data */
#define CREOR_ROUTE_SIGNED                0x04  /* signed URL, no key */
#define CREOR_ROUTE_REPLAY_MARK           0x08  /* replay adds "replayed" */
#define CREOR_ROUTE_APP                   0x10  /* /v1/apps/:agent/... */

/*
 * Kinds of ids a request names: a route pattern's ":project", ":key",
 * ":agent", ":run", ":file", and the body ids a route declares
 * ("appId:agent").  creor_scope.c checks each against the credential.
 */
#define CREOR_ID_NONE        0
#define CREOR_ID_PROJECT     1
#define CREOR_ID_KEY         2
#define CREOR_ID_AGENT       3
#define CREOR_ID_RUN         4
#define CREOR_ID_FILE        5
#define CREOR_ID_WEBHOOK     6
#define CREOR_ID_DELIVERY    7
#define CREOR_ID_KINDS       8

/* what a route does to what it names (the route table's action) */
#define CREOR_DO_READ        1
#define CREOR_DO_CREATE      2
#define CREOR_DO_UPDATE      3
#define CREOR_DO_DELETE      4
#define CREOR_ROUTE_PUBLIC                0x20  /* no credentials: health */
/* the handler checks its JSON body itself (creor_json_scan()): no tree */
#define CREOR_ROUTE_JSON_SCAN             0x40

#define CREOR_VERSION             "0.2.0"

#define CREOR_FILES_MAX           10
#define CREOR_FILE_SIZE_MAX       (10 * 1024 * 1024)

/* the most a request's body or upload is read or written in one call */
#define CREOR_IO_CHUNK            (256 * 1024)

#define CREOR_LIST_MAX       100
#define CREOR_CURSOR_TTL     86400000   /* ms */


typedef struct creor_json_s  creor_json_t;

/*
 * A value of a parsed document: 72 bytes, a bound of the memory a body
 * costs (creor_json_max_values of them); the parser keeps the open
 * containers and their last children itself.
 */

struct creor_json_s {
    uint32_t                type;
    uint32_t                count;      /* children */
    ngx_str_t               key;        /* member name inside an object */
    ngx_str_t               str;        /* string, or number as written */
    double                  num;
    creor_json_t           *child;
    creor_json_t           *next;
    ngx_pool_t             *pool;       /* where its copies are made */
};


/*
 * A member creor_json_scan() reports: of the top-level object (parent
 * -1), or of the object that is member parent of this list.
 */

typedef struct {
    ngx_str_t               name;
    ngx_int_t               parent;
    ngx_flag_t              found;
    ngx_uint_t              type;
    ngx_str_t               str;        /* a string's value, copied */
    u_char                 *start;      /* the value's bytes in the text */
    u_char                 *end;
} creor_json_member_t;


#define CREOR_SHARED_SLOTS  4096

/*
 * What worker processes share besides the store: wakeup counters.
 * epoch moves on every commit that stores events; slots[hash of the run]
 * too, so a stream whose slot did not move need not look at the store.
 */
#define CREOR_WAKEUP_MAX    64
typedef struct creor_metrics_s  creor_metrics_t;
typedef struct creor_rl_table_s  creor_rl_table_t;

typedef struct {
    ngx_atomic_t            epoch;
    ngx_atomic_t            slots[CREOR_SHARED_SLOTS];
    ngx_atomic_t            listening[CREOR_WAKEUP_MAX];    /* by worker */
    creor_metrics_t        *metrics;    /* creor_metrics.c */
} creor_shared_t;


/* the eventfds of a cycle's workers (creor_wakeup.c) */
typedef struct {
    int                     fd[CREOR_WAKEUP_MAX];
    ngx_uint_t              n;
    int                     listening;  /* closed by its connection */
} creor_wakeup_t;

#define creor_shared_slot(id)                                                 \
    (ngx_crc32_short((id)->data, (id)->len) % CREOR_SHARED_SLOTS)


/* a rate: count per period, plus burst (SPEC 7) */
typedef struct {
    uint32_t                count;
    uint32_t                period_ms;
    uint32_t                burst;
    ngx_flag_t              off;
    ngx_flag_t              set;
} creor_rate_t;


typedef struct {
    ngx_str_t               path;
    size_t                  map_size;
    ngx_flag_t              sync;
    ngx_str_t               secret;
    creor_store_t           store;
    ngx_flag_t              opened;
    creor_store_t           counters;   /* rate limits: no fsync */
    size_t                  counters_size;
    MDB_dbi                 counters_anon;  /* by address, bounded */
    size_t                  counters_anon_max;
    ngx_shm_zone_t         *counters_zone;
    creor_rl_table_t       *rl;         /* credentials' counters, shared */
    ngx_uint_t              rl_buckets;
    ngx_event_t             rl_timer;
    ngx_event_t             timer;
    ngx_int_t               request_id_index;
    creor_rate_t            global;
    ngx_msec_t              idempotency_ttl;

    ngx_msec_t              run_timeout;
    ngx_msec_t              run_lease;
    ngx_uint_t              executor_retries;
    ngx_str_t               files_path;
    ngx_http_conf_ctx_t    *api_ctx;    /* where jobs' requests live */
    ngx_str_t               webhook_proxy;
    ngx_msec_t              webhook_timeout;
    ngx_array_t            *webhook_schedule;  /* of ngx_msec_t */
    ngx_flag_t              webhook_allow_private;
    ngx_msec_t              webhook_retention;
    ngx_msec_t              housekeeping;
    ngx_shm_zone_t         *shm_zone;
    creor_shared_t         *shared;
    creor_wakeup_t         *wakeup;
} ngx_creor_main_conf_t;


typedef struct {
    ngx_flag_t              api;
    ngx_str_t               executor;
    ngx_msec_t              sse_keepalive;
    creor_rate_t            rate;
    creor_rate_t            anonymous;
    ngx_flag_t              idempotency_required;
    ngx_array_t            *cors;       /* allowed origins; empty: off */
    ngx_uint_t              json_max_values;
    ngx_array_t            *providers;  /* of creor_provider_t */
    ngx_uint_t              provider_retries;
} ngx_creor_loc_conf_t;


/* creor_provider name uri; */
typedef struct {
    ngx_str_t               name;
    ngx_str_t               uri;
} creor_provider_t;


/* runs: records and their state machine (src/model/) */
#include "creor_run.h"
#include "creor_run_state.h"


/* who is calling, after authentication */
typedef struct {
    creor_key_rec_t         key;
    ngx_str_t               key_id;
    ngx_str_t               org;
    ngx_str_t               project;    /* bound, or from X-Project-Id */
    ngx_str_t               app;
    ngx_uint_t              perms;
} creor_principal_t;


typedef struct ngx_creor_ctx_s  ngx_creor_ctx_t;

typedef ngx_int_t (*creor_handler_pt)(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx);

/* one piece of a request's work: NGX_AGAIN for more on the next turn */
typedef ngx_int_t (*creor_step_pt)(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx);

/* a response about to be sent, kept for replay (creor_idempotency.c) */
typedef ngx_int_t (*creor_keep_pt)(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, ngx_uint_t status, u_char *data, size_t len);


typedef struct {
    ngx_uint_t              method;
    const char             *pattern;    /* "/v1/agents/:id" */
    const char             *name;       /* $creor_route */
    creor_handler_pt        handler;
    ngx_uint_t              perm;
    const char             *perm_name;
    const char            **query;      /* accepted query parameters */
    ngx_uint_t              flags;
    ngx_uint_t              action;     /* CREOR_DO_*; 0 fails startup */
    ngx_uint_t              creates;    /* CREOR_ID_* a create makes */
    const char            **body_ids;   /* "field:kind" the body names */
} creor_route_t;


typedef struct {
    ngx_str_t               name;
    ngx_str_t               value;
} creor_arg_t;


struct ngx_creor_ctx_s {
    ngx_creor_main_conf_t  *mcf;
    creor_route_t          *route;
    ngx_str_t               params[CREOR_ROUTE_PARAMS];
    ngx_str_t               ids[CREOR_ID_KINDS];    /* checked: scope.c */
    ngx_array_t             args;       /* of creor_arg_t */
    creor_principal_t       who;
    ngx_flag_t              authenticated;
    ngx_str_t               body;
    creor_json_t           *json;
    void                   *data;       /* the handler's own state */
    ngx_str_t               request_id;
    ngx_str_t               route_name;

    /* the error to send, set by creor_fail() */
    ngx_uint_t              err_status;
    const char             *err_code;
    const char             *err_param;
    const char             *err_type;       /* instead of the status' */
    ngx_str_t               err_message;
    ngx_uint_t              retry_after;

    ngx_str_t               ratelimit_remaining;
    ngx_str_t               idempotent;     /* miss, hit, conflict */
    u_char                 *idempotency_key;   /* store key of a claim */
    ngx_str_t               replay;             /* a stored response */
    unsigned                idempotency_claimed:1;
    creor_keep_pt           keep;           /* set while claimed */

    ngx_str_t               replacement;    /* envelope for nginx's error */
    unsigned                sending:1;
    unsigned                replace:1;
    unsigned                replaced:1;
    unsigned                multipart:1;
    unsigned                signed_url:1;

    void                   *job;        /* a detached job (creor_job.c) */
    void                   *sse;        /* an event stream */
    void                   *steps;      /* work over turns (creor_steps) */
    void                   *chat;       /* a provider call (chat) */

    ngx_str_t               tokens_in;
    ngx_str_t               tokens_out;

    /* group commit: an answer waits for the turn's sync (creor_response.c) */
    ngx_http_request_t     *request;
    ngx_queue_t             parked;
    uint64_t                group_mark;
    ngx_str_t               parked_body;
    unsigned                in_group:1;
    unsigned                is_parked:1;
};


/* a list walk, cursor or page mode (SPEC 5) */
typedef struct {
    ngx_str_t               prefix;     /* store keys of the collection */
    ngx_str_t               primary;    /* prefix is an index of these */
    ngx_flag_t              exact;      /* it holds what the key sees */
    ngx_uint_t              limit;
    ngx_flag_t              desc;
    ngx_flag_t              pages;      /* page=N may be asked for */
    ngx_flag_t              page_mode;
    ngx_uint_t              page;
    ngx_flag_t              offset_mode;    /* runs (seed 002) */
    ngx_uint_t              offset;
    ngx_str_t               after;      /* resume after this store key */
    ngx_str_t               filters;    /* canonical, binds the cursor */
    ngx_flag_t              has_more;
    ngx_str_t               next_cursor;
    ngx_uint_t              total;
} creor_page_t;


typedef ngx_int_t (*creor_page_item_pt)(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, MDB_val *key, MDB_val *val, yajl_gen g);


extern ngx_module_t  ngx_creor_module;


/* creor_txn_guard.c */
void creor_store_guard(ngx_creor_main_conf_t *mcf, ngx_log_t *log);

/* ngx_creor_module.c */
void *creor_zone_data(ngx_shm_zone_t *shm_zone, void *old);

/* creor_pipeline.c */
ngx_int_t ngx_creor_handle(ngx_http_request_t *r);

/* creor_error_filter.c */
ngx_int_t creor_error_filter_init(ngx_conf_t *cf);
ngx_int_t creor_error_page(ngx_http_request_t *r);

/* http/: creor_response.c, creor_steps.c */
#include "creor_response.h"
#include "creor_steps.h"
#include "creor_capture.h"

/* creor_router.c */
ngx_int_t creor_route(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    ngx_str_t *allow);
creor_route_t *creor_route_table(void);

/* creor_json.c */
creor_json_t *creor_json_parse(ngx_pool_t *pool, u_char *data, size_t len,
    u_char *err, size_t errlen);
creor_json_t *creor_json_parse_max(ngx_pool_t *pool, u_char *data,
    size_t len, ngx_uint_t max, ngx_flag_t *too_many, u_char *err,
    size_t errlen);
ngx_int_t creor_json_scan(ngx_pool_t *pool, u_char *data, size_t len,
    ngx_uint_t max, creor_json_member_t *m, ngx_uint_t n, ngx_uint_t *root,
    ngx_flag_t *too_many, u_char *err, size_t errlen);
creor_json_t *creor_json_get(creor_json_t *obj, const char *name);
creor_json_t *creor_json_new(ngx_pool_t *pool, ngx_uint_t type,
    const char *s, size_t len);
ngx_int_t creor_json_set(creor_json_t *obj, const char *name,
    creor_json_t *v);
void creor_json_unset(creor_json_t *obj, const char *name);
ngx_int_t creor_json_push(creor_json_t *arr, creor_json_t *v);
yajl_gen creor_gen_create(ngx_http_request_t *r);
yajl_gen creor_gen_pool(ngx_pool_t *pool);
void creor_gen_str(yajl_gen g, const char *s);
void creor_gen_ngx_str(yajl_gen g, ngx_str_t *s);
void creor_gen_kv(yajl_gen g, const char *key, const char *value);
void creor_gen_kv_ngx(yajl_gen g, const char *key, ngx_str_t *value);
void creor_gen_kv_or_null(yajl_gen g, const char *key, const char *value);
void creor_gen_kv_int(yajl_gen g, const char *key, int64_t value);
void creor_gen_kv_bool(yajl_gen g, const char *key, ngx_flag_t value);
void creor_gen_kv_time(yajl_gen g, const char *key, int64_t ms);
void creor_gen_value(yajl_gen g, creor_json_t *v);
ngx_int_t creor_gen_result(ngx_http_request_t *r, yajl_gen g, ngx_str_t *out);
ngx_int_t creor_gen_result_pool(ngx_pool_t *pool, yajl_gen g,
    ngx_str_t *out);
ngx_flag_t creor_json_is_int(creor_json_t *v);
ngx_flag_t creor_utf8_valid(u_char *p, size_t len);
const char *creor_json_type_name(creor_json_t *v);

/* creor_auth.c */
ngx_int_t creor_auth_init(ngx_conf_t *cf);
ngx_int_t creor_authenticate(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_check_permission(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx);

/* creor_scope.c */
ngx_int_t creor_scope_init(ngx_conf_t *cf);
ngx_int_t creor_scope_route(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_scope_body(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_json_t *body);
ngx_flag_t creor_scope_sees(ngx_creor_ctx_t *ctx, const char *project,
    ngx_str_t *agent);
ngx_flag_t creor_scope_sees_key(ngx_creor_ctx_t *ctx, creor_key_rec_t *rec);
ngx_int_t creor_scope_project(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    MDB_txn *txn);

/* creor_ratelimit.c, and its counters in the store: creor_counters.c */
#include "creor_counters.h"

ngx_int_t creor_ratelimit(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_ratelimit_anonymous(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx);
ngx_int_t creor_ratelimit_init(ngx_creor_main_conf_t *mcf, ngx_log_t *log);
void creor_ratelimit_exit(ngx_creor_main_conf_t *mcf, ngx_log_t *log);
ngx_int_t creor_ratelimit_zone(ngx_conf_t *cf, ngx_creor_main_conf_t *mcf,
    size_t counters_size);
char *creor_rate_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* creor_idempotency.c */
ngx_int_t creor_idempotency_begin(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx);
ngx_int_t creor_idempotency_replay(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx);
void creor_idempotency_handled(ngx_creor_ctx_t *ctx);
int creor_idempotency_expired(const MDB_val *val, int64_t now);
ngx_int_t creor_idempotency_renew(ngx_creor_ctx_t *ctx, ngx_log_t *log);
void creor_idempotency_release(ngx_creor_ctx_t *ctx);

/* creor_pagination.c */
ngx_int_t creor_page_parse(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_page_t *pg, ngx_flag_t page_mode_allowed);
ngx_int_t creor_page_send(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_page_t *pg, creor_page_item_pt item);
ngx_int_t creor_page_list(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_page_t *pg, creor_page_item_pt item, const char *fmt, ...);

/* runs: the API, its attachments, the route's run, the reaper */
#include "creor_runs.h"
#include "creor_run_files.h"
#include "creor_run_route.h"
#include "creor_reaper.h"

/* creor_events.c */
ngx_int_t creor_events_list(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_events_stream(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
void creor_sse_notify(ngx_creor_main_conf_t *mcf);
void creor_sse_shutdown(void);
ngx_uint_t creor_sse_count(void);

/* the detached-job engine (src/engine/) */
#include "creor_engine.h"

/* creor_webhooks.c: the API; the records, delivery, signatures, SSRF */
ngx_int_t creor_webhooks_create(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_webhooks_list(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_webhooks_get(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_webhooks_update(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_webhooks_delete(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_webhooks_rotate(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_webhooks_deliveries(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx);
ngx_int_t creor_webhooks_redeliver(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx);
ngx_int_t creor_webhooks_test(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_webhooks_run_secret(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx);

#include "creor_js.h"
#include "creor_sign.h"
#include "creor_ssrf.h"
#include "creor_webhook.h"
#include "creor_delivery.h"

/* creor_wakeup.c */
ngx_int_t creor_wakeup_init_module(ngx_cycle_t *cycle,
    ngx_creor_main_conf_t *mcf);
ngx_int_t creor_wakeup_init_process(ngx_cycle_t *cycle,
    ngx_creor_main_conf_t *mcf);
void creor_wakeup_exit_process(void);
void creor_wakeup_listen(ngx_creor_main_conf_t *mcf, ngx_flag_t on);
void creor_wakeup_others(void);

/* what a commit changed (creor_changed()) */
#define CREOR_CHANGED_EVENTS     0x01   /* run events stored: streams look */
#define CREOR_CHANGED_WORK       0x02   /* a leg queued: the engine looks */
#define CREOR_CHANGED_REAP       0x04   /* an agent deleted: cancel its runs */
#define CREOR_CHANGED_ELSEWHERE  0x08   /* another worker stored events */

typedef void (*creor_changed_pt)(ngx_creor_main_conf_t *mcf);

ngx_int_t creor_changed_listen(ngx_uint_t what, creor_changed_pt handler);
void creor_changed(ngx_creor_main_conf_t *mcf, ngx_str_t *run_id,
    ngx_uint_t what);
void creor_changed_look(ngx_creor_main_conf_t *mcf);

typedef void (*creor_stop_pt)(void);
typedef ngx_uint_t (*creor_busy_pt)(void);

ngx_int_t creor_changed_watch(creor_stop_pt stop, creor_busy_pt busy);
void creor_changed_stop(void);
ngx_uint_t creor_changed_busy(void);

/* creor_usage.c (api), and model/creor_usage.h */
ngx_int_t creor_usage_get(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
#include "creor_usage.h"

/* creor_system.c */
ngx_int_t creor_system_health(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_system_status(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);

/* creor_metrics.c, creor_metrics_zone.c: host-wide counts */
#define CREOR_LEG_OK         0      /* a leg-ending event arrived */
#define CREOR_LEG_FAILED     1      /* error status, refused, cut short */
#define CREOR_LEG_ABORTED    2      /* the run went on without it */

ngx_int_t creor_metrics_init(ngx_conf_t *cf);
creor_metrics_t *creor_metrics_zone(ngx_slab_pool_t *shpool);
void creor_metrics_attach(creor_shared_t *shared);
char *creor_metrics_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
void creor_metrics_leg(ngx_uint_t outcome);
void creor_metrics_chat(ngx_str_t *model, int64_t in, int64_t out);
void creor_metrics_provider(ngx_msec_t duration, ngx_uint_t ok);
void creor_metrics_webhook(ngx_uint_t ok);
void creor_metrics_sse(ngx_int_t delta);
ngx_uint_t creor_metrics_sse_count(void);
void creor_metrics_last(ngx_uint_t provider, int64_t *ok_ms,
    int64_t *fail_ms);
int64_t creor_metrics_started(void);
ngx_int_t creor_metrics_health_due(ngx_uint_t *store_ok,
    ngx_uint_t *counters_ok);
void creor_metrics_health_set(ngx_uint_t store_ok, ngx_uint_t counters_ok);

/* creor_cors.c */
char *creor_cors_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t creor_cors_options(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    ngx_str_t *allow);
ngx_int_t creor_cors_headers(ngx_http_request_t *r);

/* creor_chat.c */
ngx_int_t creor_chat_create(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_chat_filter_init(ngx_conf_t *cf);

/* creor_provider.c */
char *creor_provider_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
creor_provider_t *creor_provider_find(ngx_array_t *providers,
    ngx_str_t *model, ngx_str_t *name);

/* creor_multipart.c */
typedef struct {
    ngx_str_t               name;       /* the form field's name */
    ngx_str_t               filename;   /* the part's filename, if any */
    ngx_str_t               content_type;
    ngx_str_t               data;       /* the part's bytes, in the body */
    unsigned                is_file:1;  /* Content-Disposition filename= */
} creor_part_t;

ngx_int_t creor_multipart_parse(ngx_pool_t *pool, ngx_str_t *content_type,
    ngx_str_t *body, ngx_array_t *parts, u_char *err, size_t errlen);

/* resource handlers: api/creor_keys.c, creor_projects.c, creor_agents.c */
ngx_int_t creor_keys_create(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_keys_list(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_keys_get(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_keys_revoke(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_keys_rotate(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_projects_create(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_projects_list(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_projects_get(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_agents_create(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_agents_list(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_agents_get(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_agents_update(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_agents_delete(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);
ngx_int_t creor_agents_followup(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);

/* the route's object (http/creor_object.c); records (model/) */
#include "creor_object.h"
#include "creor_agent.h"
#include "creor_tenancy.h"
#include "creor_expire.h"
#include "creor_cursor.h"


#endif /* _NGX_CREOR_H_INCLUDED_ */
