
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Webhooks (SPEC 11): endpoints, events, signatures, delivery.
 *
 * An event is written in the transaction of the change it reports: one
 * delivery record per matching endpoint ("wl:<endpoint>:<delivery>") and
 * its entry in the due index ("wq:<due ms>:<endpoint>:<delivery>").  The
 * tick of every worker claims due deliveries under a lease (the entry
 * moves to the lease's end, so a dead worker's delivery comes due again)
 * and sends each as a job (creor_job.c) through creor_webhook_proxy, to
 * the address it resolved and checked itself.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <math.h>
#include <openssl/hmac.h>
#include <openssl/evp.h>

#include "ngx_creor.h"


#define CREOR_WH_VERSION        1
#define CREOR_WH_MAX            16          /* endpoints of an organization */
#define CREOR_WH_URL_MAX        2048
#define CREOR_WH_SECRET_MAX     64
#define CREOR_WH_SECRET_BYTES   32
#define CREOR_WH_ROTATION_MS    86400000    /* both secrets sign for 24h */
#define CREOR_WH_DISABLE_MS     (5 * 86400000LL)
#define CREOR_WH_ATTEMPTS       8           /* kept per delivery */
#define CREOR_WH_JOBS_MAX       64          /* a worker's calls in flight */
#define CREOR_WH_PER_ENDPOINT   4           /* of which to one endpoint */
#define CREOR_WH_SCAN_BATCH     64
#define CREOR_WH_SCAN_WALK      4096        /* due entries looked at */
#define CREOR_WH_LEASE_EXTRA    5000
#define CREOR_WH_RETRY_AFTER_MAX 3600000
#define CREOR_WH_PURGE          256         /* deliveries a housekeeping turn */

#define CREOR_HTTP_GONE         410

#define CREOR_WHD_PENDING       1
#define CREOR_WHD_SUCCEEDED     2
#define CREOR_WHD_FAILED        3           /* an attempt failed, will retry */
#define CREOR_WHD_DEAD          4


/* an endpoint: "w:<org>:<id>" */
typedef struct {
    uint32_t                version;
    uint32_t                active;
    uint32_t                events;     /* a bit per type; 0: every type */
    uint32_t                reserved;
    int64_t                 created_ms;
    int64_t                 updated_ms;
    int64_t                 old_until_ms;   /* the old secret signs until */
    int64_t                 failing_ms;     /* failing since, 0: not */
    char                    secret[CREOR_WH_SECRET_MAX];
    char                    old_secret[CREOR_WH_SECRET_MAX];
    char                    disabled[48];   /* why it was disabled */
    char                    description[256];
    char                    url[CREOR_WH_URL_MAX];
} creor_wh_rec_t;


/* an organization's secret for runs' own webhookUrl: "ws:<org>" */
typedef struct {
    int64_t                 old_until_ms;
    char                    secret[CREOR_WH_SECRET_MAX];
    char                    old_secret[CREOR_WH_SECRET_MAX];
} creor_wh_secret_t;


typedef struct {
    int64_t                 ms;
    int64_t                 duration_ms;
    uint32_t                status;     /* HTTP status, 0: none */
    uint32_t                reserved;
    char                    error[48];
} creor_whd_attempt_t;


/*
 * A delivery: "wl:<owner>:<id>", the header, then the URL and the body.
 * owner is the endpoint, or the organization for a run's webhookUrl.
 */
typedef struct {
    uint32_t                version;
    uint32_t                status;
    char                    org[CREOR_ID_MAX];
    char                    owner[CREOR_ID_MAX];
    char                    event_id[CREOR_ID_MAX];
    char                    type[32];
    int64_t                 created_ms;
    int64_t                 due_ms;     /* its "wq:" entry, 0: none */
    uint32_t                owner_pid;
    uint32_t                tries;      /* failed tries since (re)delivery */
    uint32_t                attempts;   /* all attempts */
    uint32_t                url_len;
    uint32_t                body_len;
    uint32_t                reserved;
    creor_whd_attempt_t     attempt[CREOR_WH_ATTEMPTS];    /* the latest */
} creor_whd_hdr_t;


typedef struct {
    char                    key[CREOR_STORE_KEY_MAX];
    creor_whd_hdr_t         hdr;
    ngx_str_t               url;
    ngx_str_t               body;
} creor_whd_t;


/* a URL taken apart */
typedef struct {
    ngx_str_t               scheme;
    ngx_str_t               host;       /* without brackets */
    ngx_str_t               host_header;    /* with the port if not default */
    ngx_str_t               uri;
    in_port_t               port;
    ngx_flag_t              literal;    /* the host is an address */
    ngx_addr_t              addr;
} creor_wh_url_t;


/* a delivery in flight: a job's data */
typedef struct {
    ngx_queue_t             queue;
    creor_job_t            *job;
    ngx_str_t               key;        /* "wl:<owner>:<id>" */
    ngx_str_t               owner;
    ngx_str_t               scheme;     /* the $creor_webhook_* variables */
    ngx_str_t               addr;
    ngx_str_t               uri;
    ngx_str_t               host;
    ngx_str_t               error;
    int64_t                 started_ms;
    int64_t                 retry_after_ms;
} creor_whd_job_t;


/* a create or patch waiting for the resolver to check its URL's name */
typedef struct {
    ngx_http_request_t     *r;
    ngx_resolver_ctx_t     *rctx;       /* NULL once answered */
    creor_handler_pt        handler;    /* called again once checked */
} creor_wh_check_t;


/* a delivery waiting for the resolver */
typedef struct {
    ngx_pool_t             *pool;
    creor_whd_t             whd;
    creor_wh_url_t          url;
    ngx_keyval_t           *headers;
    ngx_uint_t              nheaders;
} creor_whd_resolve_t;


static ngx_int_t creor_wh_parse(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_wh_rec_t *rec, ngx_flag_t create);
static ngx_int_t creor_wh_check_name(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, creor_handler_pt handler);
static void creor_wh_check_done(ngx_resolver_ctx_t *rctx);
static void creor_wh_check_cleanup(void *data);
static ngx_int_t creor_wh_url_parse(ngx_pool_t *pool, u_char *data,
    size_t len, creor_wh_url_t *u);
static ngx_flag_t creor_wh_host_private(ngx_str_t *host);
static ngx_flag_t creor_wh_addr_private(struct sockaddr *sa);
static ngx_int_t creor_webhooks_item(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, MDB_val *key, MDB_val *val, yajl_gen g);
static ngx_int_t creor_webhooks_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static void creor_wh_json(yajl_gen g, ngx_str_t *id, creor_wh_rec_t *rec,
    ngx_flag_t secret);
static ngx_int_t creor_wh_load(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    MDB_txn **txn, char *key, creor_wh_rec_t *rec);
static void creor_wh_new_secret(char *out);
static ngx_int_t creor_wh_run_secret(creor_store_t *st, MDB_txn *txn,
    const char *org, creor_wh_secret_t *sec);
static ngx_int_t creor_whd_item(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    MDB_val *key, MDB_val *val, yajl_gen g);
static void creor_whd_json(yajl_gen g, ngx_str_t *id, creor_whd_hdr_t *hdr);
static ngx_int_t creor_whd_read(MDB_val *val, creor_whd_t *whd);
static ngx_int_t creor_whd_write(creor_store_t *st, MDB_txn *txn,
    creor_whd_t *whd, int64_t due);
static ngx_int_t creor_wh_depth_add(creor_store_t *st, MDB_txn *txn,
    int64_t delta);
static ngx_int_t creor_whd_create(creor_store_t *st, MDB_txn *txn,
    const char *org, const char *owner, const char *event_id,
    const char *type, ngx_str_t *url, ngx_str_t *body, char *id);
static ngx_int_t creor_event_body(ngx_pool_t *pool, const char *event_id,
    const char *type, int64_t now, creor_json_t *data, ngx_str_t *out);
static void creor_gen_js(yajl_gen g, creor_json_t *v);
static size_t creor_js_number(double d, u_char *buf);
static ngx_uint_t creor_event_bit(const char *type, size_t len);
static void creor_wh_claim(ngx_str_t *key, int64_t now);
static void creor_wh_send(creor_whd_t *whd, creor_wh_url_t *u,
    ngx_keyval_t *headers, ngx_uint_t n, struct sockaddr *sa,
    socklen_t socklen);
static void creor_wh_resolved(ngx_resolver_ctx_t *rctx);
static ngx_int_t creor_wh_sign(ngx_pool_t *pool, creor_whd_t *whd,
    const char *secret, const char *old_secret, ngx_keyval_t **headers,
    ngx_uint_t *n);
static ngx_int_t creor_whd_header(creor_job_t *job, ngx_http_request_t *r);
static void creor_whd_finish(creor_job_t *job);
static void creor_whd_end(creor_job_t *job);
static void creor_wh_result(ngx_str_t *key, ngx_str_t *owner,
    ngx_uint_t status, const char *error, int64_t started,
    int64_t retry_after);
static ngx_uint_t creor_whd_count(ngx_str_t *owner);
static ngx_int_t creor_wq_owner(u_char *key, size_t len, ngx_str_t *owner);
static int creor_whd_drop(MDB_txn *txn, const MDB_val *key,
    const MDB_val *val, int64_t now, void *data);


static const char  *creor_event_types[] = {
    "agent.started", "agent.completed", "agent.failed", "run.completed",
    "run.failed", "run.cancelled", "run.awaiting_input", "usage.alert",
    "webhook.test", NULL
};

static const char  *creor_whd_status[] = {
    "", "pending", "succeeded", "failed", "dead"
};

static const char  *creor_wh_fields[] = {
    "url", "events", "description", "active", NULL
};

static const char  *creor_no_fields[] = { NULL };


/* ctx->data of a create or patch whose URL's name was checked */
static u_char  creor_wh_checked;


static creor_job_kind_t  creor_whd_kind = {
    "delivering a webhook",
    creor_whd_header,
    NULL,
    NULL,
    creor_whd_finish,
    creor_whd_end
};


static ngx_queue_t              creor_whd_jobs;
static ngx_uint_t               creor_nwhd;
static ngx_flag_t               creor_wh_again;     /* scan on next tick */
static int64_t                  creor_wh_next_scan;
static ngx_creor_main_conf_t   *creor_mcf;


/* the API */

ngx_int_t
creor_webhooks_create(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int              rc;
    char             key[CREOR_STORE_KEY_MAX], id[CREOR_ID_MAX];
    size_t           n;
    MDB_val          k, v;
    MDB_txn         *txn;
    yajl_gen         g;
    ngx_str_t        sid;
    MDB_cursor      *cur;
    creor_wh_rec_t   rec;

    ngx_memzero(&rec, sizeof(creor_wh_rec_t));
    rec.active = 1;

    if (creor_wh_parse(r, ctx, &rec, 1) != NGX_OK) {
        return NGX_DECLINED;
    }

    rc = creor_wh_check_name(r, ctx, creor_webhooks_create);
    if (rc != NGX_OK) {
        return rc;
    }

    rec.version = CREOR_WH_VERSION;
    rec.created_ms = creor_now_ms();
    rec.updated_ms = rec.created_ms;
    creor_wh_new_secret(rec.secret);

    rc = creor_store_write(&ctx->mcf->store, &txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    /* a bounded number per organization: an event's fan-out is bounded */

    n = 0;
    ngx_snprintf((u_char *) key, sizeof(key), "w:%V:%Z", &ctx->who.org);

    if (mdb_cursor_open(txn, ctx->mcf->store.dbi, &cur) != 0) {
        creor_store_abort(txn);
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    k.mv_data = key;
    k.mv_size = ngx_strlen(key);

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         rc == 0 && k.mv_size > ngx_strlen(key)
         && ngx_memcmp(k.mv_data, key, ngx_strlen(key)) == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        n++;
    }

    mdb_cursor_close(cur);

    if (n >= CREOR_WH_MAX) {
        creor_store_abort(txn);
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR", "url",
                          "An organization has at most %d webhook "
                          "endpoints.", CREOR_WH_MAX);
    }

    rc = creor_store_make_id(&ctx->mcf->store, txn, id, sizeof(id), "wh_");

    if (rc == CREOR_STORE_OK) {
        ngx_snprintf((u_char *) key, sizeof(key), "w:%V:%s%Z", &ctx->who.org,
                     id);
        rc = creor_store_put(&ctx->mcf->store, txn, key, &rec, sizeof(rec),
                             0);
    }

    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return creor_fail_store(r, rc);
    }

    rc = creor_store_commit(txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    g = creor_gen_create(r);
    if (g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    sid.data = (u_char *) id;
    sid.len = ngx_strlen(id);

    creor_wh_json(g, &sid, &rec, 1);

    return creor_send_json(r, NGX_HTTP_CREATED, g);
}


ngx_int_t
creor_webhooks_list(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    creor_page_t  pg;

    ngx_memzero(&pg, sizeof(creor_page_t));

    pg.prefix.data = ngx_pnalloc(r->pool, ctx->who.org.len + 3);
    if (pg.prefix.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pg.prefix.len = ngx_sprintf(pg.prefix.data, "w:%V:", &ctx->who.org)
                    - pg.prefix.data;

    if (creor_page_parse(r, ctx, &pg, 0) != NGX_OK) {
        return NGX_DECLINED;
    }

    return creor_page_send(r, ctx, &pg, creor_webhooks_item);
}


static ngx_int_t
creor_webhooks_item(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    MDB_val *key, MDB_val *val, yajl_gen g)
{
    ngx_str_t       id;
    creor_wh_rec_t  rec;

    if (val->mv_size != sizeof(creor_wh_rec_t)) {
        return NGX_ERROR;
    }

    /* an organization's: out of a bound key's reach */

    if (ctx->who.key.project[0] || ctx->who.key.app[0]) {
        return NGX_DECLINED;
    }

    if (g) {
        id.data = (u_char *) key->mv_data + 3 + ctx->who.org.len;
        id.len = key->mv_size - 3 - ctx->who.org.len;

        ngx_memcpy(&rec, val->mv_data, sizeof(rec));
        creor_wh_json(g, &id, &rec, 0);
    }

    return NGX_OK;
}


ngx_int_t
creor_webhooks_get(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    char            key[CREOR_STORE_KEY_MAX];
    yajl_gen        g;
    creor_wh_rec_t  rec;

    if (creor_wh_load(r, ctx, NULL, key, &rec) != NGX_OK) {
        return NGX_DECLINED;
    }

    g = creor_gen_create(r);
    if (g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    creor_wh_json(g, &ctx->ids[CREOR_ID_WEBHOOK], &rec, 0);

    return creor_send_json(r, NGX_HTTP_OK, g);
}


ngx_int_t
creor_webhooks_update(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int             rc;
    char            key[CREOR_STORE_KEY_MAX];
    MDB_txn        *txn;
    yajl_gen        g;
    uint32_t        was;
    creor_wh_rec_t  rec;

    rc = creor_wh_check_name(r, ctx, creor_webhooks_update);
    if (rc != NGX_OK) {
        return rc;
    }

    if (creor_wh_load(r, ctx, &txn, key, &rec) != NGX_OK) {
        return NGX_DECLINED;
    }

    was = rec.active;

    if (creor_wh_parse(r, ctx, &rec, 0) != NGX_OK) {
        creor_store_abort(txn);
        return NGX_DECLINED;
    }

    if (rec.active && !was) {
        rec.disabled[0] = '\0';
        rec.failing_ms = 0;
    }

    rec.updated_ms = creor_now_ms();

    rc = creor_store_put(&ctx->mcf->store, txn, key, &rec, sizeof(rec), 0);
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return creor_fail_store(r, rc);
    }

    rc = creor_store_commit(txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    g = creor_gen_create(r);
    if (g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    creor_wh_json(g, &ctx->ids[CREOR_ID_WEBHOOK], &rec, 0);

    return creor_send_json(r, NGX_HTTP_OK, g);
}


/*
 * Its deliveries stay, listed nowhere, until the housekeeping purge
 * (creor_webhooks_purge) or their coming due drops them: no transaction
 * here grows with their number.
 */

ngx_int_t
creor_webhooks_delete(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int             rc;
    char            key[CREOR_STORE_KEY_MAX];
    MDB_txn        *txn;
    yajl_gen        g;
    creor_wh_rec_t  rec;

    if (creor_wh_load(r, ctx, &txn, key, &rec) != NGX_OK) {
        return NGX_DECLINED;
    }

    rc = creor_store_del(&ctx->mcf->store, txn, key);
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return creor_fail_store(r, rc);
    }

    rc = creor_store_commit(txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    g = creor_gen_create(r);
    if (g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    yajl_gen_map_open(g);
    creor_gen_kv_ngx(g, "id", &ctx->ids[CREOR_ID_WEBHOOK]);
    creor_gen_kv(g, "object", "webhook");
    creor_gen_kv_bool(g, "deleted", 1);
    yajl_gen_map_close(g);

    return creor_send_json(r, NGX_HTTP_OK, g);
}


ngx_int_t
creor_webhooks_rotate(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int             rc;
    char            key[CREOR_STORE_KEY_MAX];
    MDB_txn        *txn;
    yajl_gen        g;
    creor_wh_rec_t  rec;

    if (creor_check_fields(r, ctx->json, creor_no_fields, "") != NGX_OK) {
        return NGX_DECLINED;
    }

    if (creor_wh_load(r, ctx, &txn, key, &rec) != NGX_OK) {
        return NGX_DECLINED;
    }

    ngx_memcpy(rec.old_secret, rec.secret, sizeof(rec.secret));
    creor_wh_new_secret(rec.secret);
    rec.updated_ms = creor_now_ms();
    rec.old_until_ms = rec.updated_ms + CREOR_WH_ROTATION_MS;

    rc = creor_store_put(&ctx->mcf->store, txn, key, &rec, sizeof(rec), 0);
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return creor_fail_store(r, rc);
    }

    rc = creor_store_commit(txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    g = creor_gen_create(r);
    if (g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    creor_wh_json(g, &ctx->ids[CREOR_ID_WEBHOOK], &rec, 1);

    return creor_send_json(r, NGX_HTTP_OK, g);
}


ngx_int_t
creor_webhooks_deliveries(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    u_char        *p;
    ngx_int_t      status;
    ngx_uint_t     i;
    creor_arg_t   *a;
    creor_page_t   pg;

    ngx_memzero(&pg, sizeof(creor_page_t));

    status = 0;
    a = creor_arg(ctx, "status");

    if (a) {
        for (i = 1; i <= CREOR_WHD_DEAD; i++) {
            if (a->value.len == ngx_strlen(creor_whd_status[i])
                && ngx_strncmp(a->value.data, creor_whd_status[i],
                               a->value.len) == 0)
            {
                status = i;
            }
        }

        if (status == 0) {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                              "status", "'status' must be pending, "
                              "succeeded, failed or dead.");
        }
    }

    ctx->data = (void *) (uintptr_t) status;

    p = ngx_pnalloc(r->pool, 32);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pg.filters.data = p;
    pg.filters.len = ngx_sprintf(p, "status=%i", status) - p;

    pg.prefix.data = ngx_pnalloc(r->pool,
                                 ctx->ids[CREOR_ID_WEBHOOK].len + 4);
    if (pg.prefix.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pg.prefix.len = ngx_sprintf(pg.prefix.data, "wl:%V:",
                                &ctx->ids[CREOR_ID_WEBHOOK])
                    - pg.prefix.data;

    if (creor_page_parse(r, ctx, &pg, 0) != NGX_OK) {
        return NGX_DECLINED;
    }

    return creor_page_send(r, ctx, &pg, creor_whd_item);
}


static ngx_int_t
creor_whd_item(ngx_http_request_t *r, ngx_creor_ctx_t *ctx, MDB_val *key,
    MDB_val *val, yajl_gen g)
{
    ngx_str_t        id;
    ngx_uint_t       status;
    creor_whd_hdr_t  hdr;

    if (val->mv_size < sizeof(creor_whd_hdr_t)) {
        return NGX_ERROR;
    }

    ngx_memcpy(&hdr, val->mv_data, sizeof(creor_whd_hdr_t));

    status = (uintptr_t) ctx->data;

    if (status && hdr.status != status) {
        return NGX_DECLINED;
    }

    if (g) {
        id.data = (u_char *) key->mv_data + 4
                  + ctx->ids[CREOR_ID_WEBHOOK].len;
        id.len = key->mv_size - 4 - ctx->ids[CREOR_ID_WEBHOOK].len;
        creor_whd_json(g, &id, &hdr);
    }

    return NGX_OK;
}


/* the same event again, at once, with its history kept */

ngx_int_t
creor_webhooks_redeliver(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int           rc;
    MDB_val       val;
    MDB_txn      *txn;
    yajl_gen      g;
    creor_whd_t   whd;

    if (creor_check_fields(r, ctx->json, creor_no_fields, "") != NGX_OK) {
        return NGX_DECLINED;
    }

    rc = creor_store_write(&ctx->mcf->store, &txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    ngx_snprintf((u_char *) whd.key, sizeof(whd.key), "wl:%V:%V%Z",
                 &ctx->ids[CREOR_ID_WEBHOOK], &ctx->ids[CREOR_ID_DELIVERY]);

    rc = creor_store_get(&ctx->mcf->store, txn, whd.key, &val);

    if (rc == CREOR_STORE_NOTFOUND) {
        creor_store_abort(txn);
        return creor_fail(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND", NULL,
                          "No such delivery.");
    }

    if (rc != CREOR_STORE_OK || creor_whd_read(&val, &whd) != NGX_OK) {
        creor_store_abort(txn);
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    if (whd.hdr.status == CREOR_WHD_PENDING
        || whd.hdr.status == CREOR_WHD_FAILED)
    {
        creor_store_abort(txn);
        return creor_fail(r, NGX_HTTP_CONFLICT, "DELIVERY_PENDING", NULL,
                          "This delivery is still being attempted.");
    }

    whd.hdr.status = CREOR_WHD_PENDING;
    whd.hdr.tries = 0;
    whd.hdr.owner_pid = 0;

    rc = creor_whd_write(&ctx->mcf->store, txn, &whd, creor_now_ms());

    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return creor_fail_store(r, rc);
    }

    rc = creor_store_commit(txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    creor_changed(ctx->mcf, NULL, CREOR_CHANGED_EVENTS);

    g = creor_gen_create(r);
    if (g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    creor_whd_json(g, &ctx->ids[CREOR_ID_DELIVERY], &whd.hdr);

    return creor_send_json(r, NGX_HTTP_ACCEPTED, g);
}


/* a webhook.test event for this endpoint alone */

ngx_int_t
creor_webhooks_test(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int               rc;
    char              key[CREOR_STORE_KEY_MAX], evt[CREOR_ID_MAX];
    char              id[CREOR_ID_MAX], owner[CREOR_ID_MAX];
    MDB_val           val;
    MDB_txn          *txn;
    yajl_gen          g;
    ngx_str_t         body, url, sid;
    creor_json_t     *data;
    creor_wh_rec_t    rec;
    creor_whd_t       whd;

    if (creor_check_fields(r, ctx->json, creor_no_fields, "") != NGX_OK) {
        return NGX_DECLINED;
    }

    if (creor_wh_load(r, ctx, &txn, key, &rec) != NGX_OK) {
        return NGX_DECLINED;
    }

    data = creor_json_new(r->pool, CREOR_JSON_OBJECT, NULL, 0);

    rc = creor_store_make_id(&ctx->mcf->store, txn, evt, sizeof(evt),
                             "evt_");

    if (data == NULL || rc != CREOR_STORE_OK
        || creor_json_set(data, "webhookId",
                          creor_json_new(r->pool, CREOR_JSON_STRING,
                                (char *) ctx->ids[CREOR_ID_WEBHOOK].data,
                                ctx->ids[CREOR_ID_WEBHOOK].len))
           != NGX_OK
        || creor_event_body(r->pool, evt, "webhook.test", creor_now_ms(),
                            data, &body)
           != NGX_OK)
    {
        creor_store_abort(txn);
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    url.data = (u_char *) rec.url;
    url.len = ngx_strlen(rec.url);

    ngx_cpystrn((u_char *) owner, ctx->ids[CREOR_ID_WEBHOOK].data,
                ctx->ids[CREOR_ID_WEBHOOK].len + 1);

    rc = creor_whd_create(&ctx->mcf->store, txn, ctx->who.key.org, owner, evt,
                          "webhook.test", &url, &body, id);

    if (rc == CREOR_STORE_OK) {
        ngx_snprintf((u_char *) whd.key, sizeof(whd.key), "wl:%s:%s%Z",
                     owner, id);
        rc = creor_store_get(&ctx->mcf->store, txn, whd.key, &val);
    }

    if (rc != CREOR_STORE_OK || creor_whd_read(&val, &whd) != NGX_OK) {
        creor_store_abort(txn);
        return creor_fail_store(r, rc ? rc : CREOR_STORE_ERROR);
    }

    rc = creor_store_commit(txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    creor_changed(ctx->mcf, NULL, CREOR_CHANGED_EVENTS);

    g = creor_gen_create(r);
    if (g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    sid.data = (u_char *) id;
    sid.len = ngx_strlen(id);

    creor_whd_json(g, &sid, &whd.hdr);

    return creor_send_json(r, NGX_HTTP_ACCEPTED, g);
}


/* GET and POST .../rotate: the secret that signs runs' own webhookUrl */

ngx_int_t
creor_webhooks_run_secret(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int                 rc;
    char                key[CREOR_STORE_KEY_MAX];
    MDB_txn            *txn;
    yajl_gen            g;
    creor_wh_secret_t   sec;

    if (ctx->who.key.project[0] || ctx->who.key.app[0]) {
        return creor_fail(r, NGX_HTTP_FORBIDDEN, "PERMISSION_DENIED", NULL,
                          "The run-webhook secret is the organization's: a "
                          "bound key cannot reach it.");
    }

    if (r->method == NGX_HTTP_POST
        && creor_check_fields(r, ctx->json, creor_no_fields, "") != NGX_OK)
    {
        return NGX_DECLINED;
    }

    rc = creor_store_write(&ctx->mcf->store, &txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    rc = creor_wh_run_secret(&ctx->mcf->store, txn, ctx->who.key.org, &sec);

    if (rc == CREOR_STORE_OK && r->method == NGX_HTTP_POST) {
        ngx_memcpy(sec.old_secret, sec.secret, sizeof(sec.secret));
        creor_wh_new_secret(sec.secret);
        sec.old_until_ms = creor_now_ms() + CREOR_WH_ROTATION_MS;

        ngx_snprintf((u_char *) key, sizeof(key), "ws:%V%Z", &ctx->who.org);
        rc = creor_store_put(&ctx->mcf->store, txn, key, &sec, sizeof(sec),
                             0);
    }

    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return creor_fail_store(r, rc);
    }

    rc = creor_store_commit(txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    g = creor_gen_create(r);
    if (g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    yajl_gen_map_open(g);
    creor_gen_kv(g, "object", "run_webhook_secret");
    creor_gen_kv(g, "secret", sec.secret);
    creor_gen_kv_time(g, "previousSecretExpiresAt",
                      sec.old_until_ms > creor_now_ms() ? sec.old_until_ms
                                                        : 0);
    yajl_gen_map_close(g);

    return creor_send_json(r, NGX_HTTP_OK, g);
}


/* the organization's run-webhook secret, made on first use */

static ngx_int_t
creor_wh_run_secret(creor_store_t *st, MDB_txn *txn, const char *org,
    creor_wh_secret_t *sec)
{
    int       rc;
    char      key[CREOR_STORE_KEY_MAX];
    MDB_val   val;

    ngx_snprintf((u_char *) key, sizeof(key), "ws:%s%Z", org);

    rc = creor_store_get(st, txn, key, &val);

    if (rc == CREOR_STORE_OK && val.mv_size == sizeof(creor_wh_secret_t)) {
        ngx_memcpy(sec, val.mv_data, sizeof(creor_wh_secret_t));
        return CREOR_STORE_OK;
    }

    if (rc != CREOR_STORE_NOTFOUND) {
        return CREOR_STORE_ERROR;
    }

    ngx_memzero(sec, sizeof(creor_wh_secret_t));
    creor_wh_new_secret(sec->secret);

    return creor_store_put(st, txn, key, sec, sizeof(creor_wh_secret_t), 0);
}


/* the endpoint the route names, in a write transaction if txn is given */

static ngx_int_t
creor_wh_load(ngx_http_request_t *r, ngx_creor_ctx_t *ctx, MDB_txn **txn,
    char *key, creor_wh_rec_t *rec)
{
    int       rc;
    MDB_val   val;
    MDB_txn  *t;

    ngx_snprintf((u_char *) key, CREOR_STORE_KEY_MAX, "w:%V:%V%Z",
                 &ctx->who.org, &ctx->ids[CREOR_ID_WEBHOOK]);

    if (txn) {
        rc = creor_store_write(&ctx->mcf->store, &t);
        if (rc != CREOR_STORE_OK) {
            creor_fail_store(r, rc);
            return NGX_ERROR;
        }

    } else {
        t = creor_store_read(&ctx->mcf->store);
        if (t == NULL) {
            creor_fail_store(r, CREOR_STORE_ERROR);
            return NGX_ERROR;
        }
    }

    rc = creor_store_get(&ctx->mcf->store, t, key, &val);

    if (rc == CREOR_STORE_OK && val.mv_size == sizeof(creor_wh_rec_t)) {
        ngx_memcpy(rec, val.mv_data, sizeof(creor_wh_rec_t));
    }

    if (txn == NULL) {
        creor_store_read_done(&ctx->mcf->store);

    } else if (rc != CREOR_STORE_OK || val.mv_size != sizeof(*rec)) {
        creor_store_abort(t);

    } else {
        *txn = t;
    }

    if (rc == CREOR_STORE_NOTFOUND) {
        creor_fail(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND", NULL,
                   "No such webhook.");
        return NGX_ERROR;
    }

    if (rc != CREOR_STORE_OK || val.mv_size != sizeof(*rec)) {
        creor_fail_store(r, CREOR_STORE_ERROR);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * A URL whose host is a name: every address it resolves to (with the
 * resolver of the location) must be public, as at each delivery.  The
 * handler is called again once checked (NGX_DONE meanwhile).  Without a
 * resolver, or for a name that does not resolve, the deliveries check.
 */

static ngx_int_t
creor_wh_check_name(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_handler_pt handler)
{
    creor_json_t              *url;
    creor_wh_url_t             u;
    creor_wh_check_t          *chk;
    ngx_resolver_ctx_t        *rctx, temp;
    ngx_pool_cleanup_t        *cln;
    ngx_http_core_loc_conf_t  *clcf;

    url = creor_json_get(ctx->json, "url");

    if (ctx->data == &creor_wh_checked || ctx->mcf->webhook_allow_private
        || url == NULL || url->type != CREOR_JSON_STRING
        || creor_wh_url_parse(r->pool, url->str.data, url->str.len, &u)
           != NGX_OK
        || u.literal)
    {
        return NGX_OK;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    temp.name = u.host;
    rctx = ngx_resolve_start(clcf->resolver, &temp);

    if (rctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rctx == NGX_NO_RESOLVER) {
        return NGX_OK;
    }

    chk = ngx_pcalloc(r->pool, sizeof(creor_wh_check_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (chk == NULL || cln == NULL) {
        ngx_resolve_name_done(rctx);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    chk->r = r;
    chk->rctx = rctx;
    chk->handler = handler;

    cln->handler = creor_wh_check_cleanup;
    cln->data = chk;

    rctx->name = u.host;
    rctx->handler = creor_wh_check_done;
    rctx->data = chk;
    rctx->timeout = clcf->resolver_timeout;

    ctx->data = &creor_wh_checked;
    r->main->count++;

    if (ngx_resolve_name(rctx) != NGX_OK) {

        /* the resolver freed rctx */

        chk->rctx = NULL;
        r->main->count--;
        return NGX_OK;
    }

    return NGX_DONE;
}


static void
creor_wh_check_done(ngx_resolver_ctx_t *rctx)
{
    ngx_int_t            rc;
    ngx_uint_t           i;
    ngx_connection_t    *c;
    ngx_creor_ctx_t     *ctx;
    creor_wh_check_t    *chk;
    ngx_http_request_t  *r;

    chk = rctx->data;
    r = chk->r;
    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_creor_module);

    rc = NGX_OK;

    for (i = 0; rctx->state == NGX_OK && i < rctx->naddrs; i++) {
        if (creor_wh_addr_private(rctx->addrs[i].sockaddr)) {
            rc = creor_fail(r, NGX_HTTP_BAD_REQUEST, "PRIVATE_WEBHOOK_URL",
                            "url", "The URL's host resolves to a private, "
                            "loopback or link-local address.");
            break;
        }
    }

    ngx_resolve_name_done(rctx);
    chk->rctx = NULL;

    if (rc == NGX_OK) {
        rc = chk->handler(r, ctx);
    }

    ngx_http_finalize_request(r, creor_handler_done(r, ctx, rc));
    ngx_http_run_posted_requests(c);
}


static void
creor_wh_check_cleanup(void *data)
{
    creor_wh_check_t  *chk = data;

    if (chk->rctx) {
        ngx_resolve_name_done(chk->rctx);
        chk->rctx = NULL;
    }
}


/* the body of a create (all of it) or a patch (what it names) */

static ngx_int_t
creor_wh_parse(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_wh_rec_t *rec, ngx_flag_t create)
{
    ngx_uint_t       bit, events;
    creor_json_t    *url, *ev, *desc, *active, *c;
    creor_wh_url_t   u;

    if (creor_check_fields(r, ctx->json, creor_wh_fields, "") != NGX_OK) {
        return NGX_ERROR;
    }

    url = creor_json_get(ctx->json, "url");
    ev = creor_json_get(ctx->json, "events");
    desc = creor_json_get(ctx->json, "description");
    active = creor_json_get(ctx->json, "active");

    if (url == NULL && create) {
        creor_fail(r, NGX_HTTP_BAD_REQUEST, "MISSING_FIELD", "url",
                   "The 'url' field is required.");
        return NGX_ERROR;
    }

    if (url) {
        if (url->type != CREOR_JSON_STRING
            || url->str.len >= CREOR_WH_URL_MAX
            || creor_wh_url_parse(r->pool, url->str.data, url->str.len, &u)
               != NGX_OK)
        {
            creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR", "url",
                       "'url' must be an http or https URL without "
                       "credentials, of at most %d bytes.",
                       CREOR_WH_URL_MAX - 1);
            return NGX_ERROR;
        }

        if (!ctx->mcf->webhook_allow_private
            && (creor_wh_host_private(&u.host)
                || (u.literal && creor_wh_addr_private(u.addr.sockaddr))))
        {
            creor_fail(r, NGX_HTTP_BAD_REQUEST, "PRIVATE_WEBHOOK_URL", "url",
                       "Webhooks cannot be sent to private, loopback or "
                       "link-local addresses.");
            return NGX_ERROR;
        }

        ngx_memzero(rec->url, sizeof(rec->url));
        ngx_memcpy(rec->url, url->str.data, url->str.len);
    }

    if (ev) {
        if (ev->type != CREOR_JSON_ARRAY) {
            creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR", "events",
                       "'events' must be an array of event types.");
            return NGX_ERROR;
        }

        events = 0;

        for (c = ev->child; c; c = c->next) {
            bit = (c->type == CREOR_JSON_STRING)
                  ? creor_event_bit((char *) c->str.data, c->str.len) : 0;

            if (bit == 0) {
                creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                           "events", "'events' must list event types such "
                           "as \"run.completed\" or \"*\".");
                return NGX_ERROR;
            }

            events |= bit;
        }

        rec->events = (events == (ngx_uint_t) -1) ? 0 : events;
    }

    if (desc && desc->type != CREOR_JSON_NULL) {
        if (desc->type != CREOR_JSON_STRING
            || desc->str.len >= sizeof(rec->description))
        {
            creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                       "description", "'description' must be a string of at "
                       "most %uz bytes.", sizeof(rec->description) - 1);
            return NGX_ERROR;
        }

        ngx_memzero(rec->description, sizeof(rec->description));
        ngx_memcpy(rec->description, desc->str.data, desc->str.len);

    } else if (desc) {
        ngx_memzero(rec->description, sizeof(rec->description));
    }

    if (active) {
        if (active->type != CREOR_JSON_TRUE
            && active->type != CREOR_JSON_FALSE)
        {
            creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR", "active",
                       "'active' must be a boolean.");
            return NGX_ERROR;
        }

        rec->active = (active->type == CREOR_JSON_TRUE);
    }

    return NGX_OK;
}


/* "*" is every type: (ngx_uint_t) -1 */

static ngx_uint_t
creor_event_bit(const char *type, size_t len)
{
    ngx_uint_t  i;

    if (len == 1 && type[0] == '*') {
        return (ngx_uint_t) -1;
    }

    for (i = 0; creor_event_types[i]; i++) {
        if (ngx_strlen(creor_event_types[i]) == len
            && ngx_strncmp(creor_event_types[i], type, len) == 0)
        {
            return (ngx_uint_t) 1 << i;
        }
    }

    return 0;
}


/*
 * http or https, no userinfo, a host (a name, an IPv4 address or an IPv6
 * one in brackets), an optional port; the rest is the URI.
 */

static ngx_int_t
creor_wh_url_parse(ngx_pool_t *pool, u_char *data, size_t len,
    creor_wh_url_t *u)
{
    u_char      *p, *last, *host, *host_end, *port;
    ngx_int_t    n;
    in_port_t    def;

    ngx_memzero(u, sizeof(creor_wh_url_t));

    p = data;
    last = data + len;

    if (len > 7 && ngx_strncasecmp(p, (u_char *) "http://", 7) == 0) {
        ngx_str_set(&u->scheme, "http");
        def = 80;
        p += 7;

    } else if (len > 8 && ngx_strncasecmp(p, (u_char *) "https://", 8) == 0) {
        ngx_str_set(&u->scheme, "https");
        def = 443;
        p += 8;

    } else {
        return NGX_ERROR;
    }

    for (host = p; p < last && *p != '/' && *p != '?' && *p != '#'; p++) {
        if (*p == '@' || *p <= ' ' || *p >= 0x7f || *p == '\\') {
            return NGX_ERROR;
        }
    }

    host_end = p;

    u->uri.data = p;
    u->uri.len = last - p;

    /* no fragment is sent */

    port = NULL;

    if (host < host_end && *host == '[') {
        p = ngx_strlchr(host, host_end, ']');
        if (p == NULL) {
            return NGX_ERROR;
        }

        u->host.data = host + 1;
        u->host.len = p - host - 1;
        p++;

        if (p < host_end) {
            if (*p != ':') {
                return NGX_ERROR;
            }

            port = p + 1;
        }

    } else {
        p = ngx_strlchr(host, host_end, ':');

        u->host.data = host;
        u->host.len = (p ? p : host_end) - host;

        if (p) {
            port = p + 1;
        }
    }

    if (u->host.len == 0 || u->host.len > 253) {
        return NGX_ERROR;
    }

    u->port = def;

    if (port) {
        n = ngx_atoi(port, host_end - port);
        if (n < 1 || n > 65535) {
            return NGX_ERROR;
        }

        u->port = (in_port_t) n;
    }

    u->host_header.data = host;
    u->host_header.len = (u->port == def && port)
                         ? (size_t) (port - 1 - host)
                         : (size_t) (host_end - host);

    p = ngx_strlchr(u->uri.data, u->uri.data + u->uri.len, '#');
    if (p) {
        u->uri.len = p - u->uri.data;
    }

    if (u->uri.len == 0) {
        ngx_str_set(&u->uri, "/");
    }

    if (ngx_parse_addr(pool, &u->addr, u->host.data, u->host.len) == NGX_OK)
    {
        u->literal = 1;
        ngx_inet_set_port(u->addr.sockaddr, u->port);

    } else {

        /* a name: letters, digits, dots and dashes */

        for (p = u->host.data; p < u->host.data + u->host.len; p++) {
            if (!(isalnum(*p) || *p == '.' || *p == '-' || *p == '_')) {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


/* names that are private whatever they resolve to */

static ngx_flag_t
creor_wh_host_private(ngx_str_t *host)
{
    size_t  n;

    n = host->len;

    if (n && host->data[n - 1] == '.') {
        n--;
    }

    return (n == 9 && ngx_strncasecmp(host->data, (u_char *) "localhost", 9)
                      == 0)
           || (n > 10 && ngx_strncasecmp(host->data + n - 10,
                                         (u_char *) ".localhost", 10) == 0)
           || (n == 24 && ngx_strncasecmp(host->data,
                              (u_char *) "metadata.google.internal", 24)
                          == 0);
}


/*
 * Loopback, private, link-local (169.254/16: cloud metadata), CGNAT,
 * unique-local, multicast, unspecified, reserved, and IPv6 forms that
 * carry an IPv4 address (mapped, compatible, NAT64, 6to4).
 */

static ngx_flag_t
creor_wh_addr_private(struct sockaddr *sa)
{
    uint32_t              a;
    u_char               *b;
    struct sockaddr_in    sin;
    struct sockaddr_in6  *sin6;

    if (sa->sa_family == AF_INET6) {
        sin6 = (struct sockaddr_in6 *) sa;
        b = sin6->sin6_addr.s6_addr;

        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)
            || IN6_IS_ADDR_V4COMPAT(&sin6->sin6_addr)
            || IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr)
            || IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr)
            || (b[0] & 0xfe) == 0xfc                /* fc00::/7 */
            || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)     /* fe80::/10 */
            || (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)     /* site-local */
            || b[0] == 0xff                         /* multicast */
            || (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff
                && b[3] == 0x9b)                    /* 64:ff9b::/96 */
            || (b[0] == 0x20 && b[1] == 0x02)       /* 6to4 */
            || (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d
                && b[3] == 0xb8))                   /* documentation */
        {
            return 1;
        }

        return 0;
    }

    if (sa->sa_family != AF_INET) {
        return 1;
    }

    ngx_memcpy(&sin, sa, sizeof(struct sockaddr_in));
    a = ntohl(sin.sin_addr.s_addr);

    return (a >> 24) == 0                           /* 0/8 */
           || (a >> 24) == 10
           || (a >> 24) == 127
           || (a >> 16) == 0xa9fe                   /* 169.254/16 */
           || (a >> 20) == 0xac1                    /* 172.16/12 */
           || (a >> 16) == 0xc0a8                   /* 192.168/16 */
           || (a >> 22) == (0x64400000 >> 22)       /* 100.64/10 */
           || (a >> 8) == 0xc00000                  /* 192.0.0/24 */
           || (a >> 17) == (0xc6120000 >> 17)       /* 198.18/15 */
           || (a >> 28) >= 0xe;                     /* multicast, 240/4 */
}


static void
creor_wh_new_secret(char *out)
{
    u_char     raw[CREOR_WH_SECRET_BYTES];
    ngx_str_t  src, dst;

    (void) creor_random(raw, sizeof(raw));

    src.data = raw;
    src.len = sizeof(raw);
    dst.data = (u_char *) out + 6;

    ngx_memcpy(out, "whsec_", 6);
    ngx_encode_base64(&dst, &src);
    out[6 + dst.len] = '\0';
}


static void
creor_wh_json(yajl_gen g, ngx_str_t *id, creor_wh_rec_t *rec,
    ngx_flag_t secret)
{
    ngx_uint_t  i;

    yajl_gen_map_open(g);
    creor_gen_kv_ngx(g, "id", id);
    creor_gen_kv(g, "object", "webhook");
    creor_gen_kv(g, "url", rec->url);

    creor_gen_str(g, "events");
    yajl_gen_array_open(g);

    if (rec->events == 0) {
        creor_gen_str(g, "*");
    }

    for (i = 0; creor_event_types[i]; i++) {
        if (rec->events & (1 << i)) {
            creor_gen_str(g, creor_event_types[i]);
        }
    }

    yajl_gen_array_close(g);

    creor_gen_kv_or_null(g, "description", rec->description);
    creor_gen_kv_bool(g, "active", rec->active);
    creor_gen_kv_or_null(g, "disabledReason", rec->disabled);

    if (secret) {
        creor_gen_kv(g, "secret", rec->secret);
    }

    creor_gen_kv_time(g, "previousSecretExpiresAt",
                      rec->old_until_ms > creor_now_ms() ? rec->old_until_ms
                                                         : 0);
    creor_gen_kv_time(g, "failingSince", rec->failing_ms);
    creor_gen_kv_time(g, "createdAt", rec->created_ms);
    creor_gen_kv_time(g, "updatedAt", rec->updated_ms);
    yajl_gen_map_close(g);
}


static void
creor_whd_json(yajl_gen g, ngx_str_t *id, creor_whd_hdr_t *hdr)
{
    ngx_uint_t            i, n;
    creor_whd_attempt_t  *a;

    yajl_gen_map_open(g);
    creor_gen_kv_ngx(g, "id", id);
    creor_gen_kv(g, "object", "webhook_delivery");
    creor_gen_kv_or_null(g, "webhookId",
                         ngx_strncmp(hdr->owner, "wh_", 3) == 0
                         ? hdr->owner : "");
    creor_gen_kv(g, "eventId", hdr->event_id);
    creor_gen_kv(g, "type", hdr->type);
    creor_gen_kv(g, "status", creor_whd_status[hdr->status <= CREOR_WHD_DEAD
                                               ? hdr->status : 0]);

    creor_gen_str(g, "attempts");
    yajl_gen_array_open(g);

    n = ngx_min(hdr->attempts, CREOR_WH_ATTEMPTS);

    for (i = 0; i < n; i++) {
        a = &hdr->attempt[i];

        yajl_gen_map_open(g);
        creor_gen_kv_time(g, "at", a->ms);
        creor_gen_str(g, "statusCode");

        if (a->status) {
            yajl_gen_integer(g, a->status);

        } else {
            yajl_gen_null(g);
        }

        a->error[sizeof(a->error) - 1] = '\0';
        creor_gen_kv_or_null(g, "error", a->error);
        creor_gen_kv_int(g, "durationMs", a->duration_ms);
        yajl_gen_map_close(g);
    }

    yajl_gen_array_close(g);

    creor_gen_kv_int(g, "attemptCount", hdr->attempts);
    creor_gen_kv_time(g, "nextAttemptAt",
                      (hdr->status == CREOR_WHD_PENDING
                       || hdr->status == CREOR_WHD_FAILED) ? hdr->due_ms : 0);
    creor_gen_kv_time(g, "createdAt", hdr->created_ms);
    yajl_gen_map_close(g);
}


/* records */

static ngx_int_t
creor_whd_read(MDB_val *val, creor_whd_t *whd)
{
    u_char  *p;

    if (val->mv_size < sizeof(creor_whd_hdr_t)) {
        return NGX_ERROR;
    }

    ngx_memcpy(&whd->hdr, val->mv_data, sizeof(creor_whd_hdr_t));

    if (val->mv_size != sizeof(creor_whd_hdr_t) + whd->hdr.url_len
                        + whd->hdr.body_len)
    {
        return NGX_ERROR;
    }

    whd->hdr.org[CREOR_ID_MAX - 1] = '\0';
    whd->hdr.owner[CREOR_ID_MAX - 1] = '\0';
    whd->hdr.event_id[CREOR_ID_MAX - 1] = '\0';
    whd->hdr.type[sizeof(whd->hdr.type) - 1] = '\0';

    /* pointers into the map: good until the transaction ends */

    p = (u_char *) val->mv_data + sizeof(creor_whd_hdr_t);
    whd->url.data = p;
    whd->url.len = whd->hdr.url_len;
    whd->body.data = p + whd->hdr.url_len;
    whd->body.len = whd->hdr.body_len;

    return NGX_OK;
}


/* the record and its due entry: the old one goes, a new one at due */

static ngx_int_t
creor_whd_write(creor_store_t *st, MDB_txn *txn, creor_whd_t *whd,
    int64_t due)
{
    int       rc;
    char      qkey[CREOR_STORE_KEY_MAX];
    u_char   *buf;
    size_t    len;

    /* the queue's depth: an entry added, or one removed */

    if ((due != 0) != (whd->hdr.due_ms != 0)) {
        rc = creor_wh_depth_add(st, txn, due ? 1 : -1);
        if (rc != CREOR_STORE_OK) {
            return rc;
        }
    }

    if (whd->hdr.due_ms) {
        ngx_snprintf((u_char *) qkey, sizeof(qkey), "wq:%013L:%s%Z",
                     whd->hdr.due_ms, whd->key + 3);

        rc = creor_store_del(st, txn, qkey);
        if (rc != CREOR_STORE_OK && rc != CREOR_STORE_NOTFOUND) {
            return rc;
        }
    }

    whd->hdr.due_ms = due;

    if (due) {
        ngx_snprintf((u_char *) qkey, sizeof(qkey), "wq:%013L:%s%Z", due,
                     whd->key + 3);

        rc = creor_store_put(st, txn, qkey, "", 0, 0);
        if (rc != CREOR_STORE_OK) {
            return rc;
        }
    }

    /* the header, the URL, the body */

    len = sizeof(creor_whd_hdr_t) + whd->url.len + whd->body.len;

    buf = ngx_alloc(len, ngx_cycle->log);
    if (buf == NULL) {
        return CREOR_STORE_ERROR;
    }

    whd->hdr.url_len = whd->url.len;
    whd->hdr.body_len = whd->body.len;

    ngx_memcpy(buf, &whd->hdr, sizeof(creor_whd_hdr_t));
    ngx_memcpy(buf + sizeof(creor_whd_hdr_t), whd->url.data, whd->url.len);
    ngx_memcpy(buf + sizeof(creor_whd_hdr_t) + whd->url.len, whd->body.data,
               whd->body.len);

    rc = creor_store_put(st, txn, whd->key, buf, len, 0);

    ngx_free(buf);

    return rc;
}


static ngx_int_t
creor_whd_create(creor_store_t *st, MDB_txn *txn, const char *org,
    const char *owner, const char *event_id, const char *type,
    ngx_str_t *url, ngx_str_t *body, char *id)
{
    int          rc;
    creor_whd_t  whd;

    rc = creor_store_make_id(st, txn, id, CREOR_ID_MAX, "whd_");
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    ngx_memzero(&whd.hdr, sizeof(creor_whd_hdr_t));

    whd.hdr.version = CREOR_WH_VERSION;
    whd.hdr.status = CREOR_WHD_PENDING;
    ngx_cpystrn((u_char *) whd.hdr.org, (u_char *) org, CREOR_ID_MAX);
    ngx_cpystrn((u_char *) whd.hdr.owner, (u_char *) owner, CREOR_ID_MAX);
    ngx_cpystrn((u_char *) whd.hdr.event_id, (u_char *) event_id,
                CREOR_ID_MAX);
    ngx_cpystrn((u_char *) whd.hdr.type, (u_char *) type,
                sizeof(whd.hdr.type));
    whd.hdr.created_ms = creor_now_ms();

    ngx_snprintf((u_char *) whd.key, sizeof(whd.key), "wl:%s:%s%Z", owner,
                 id);

    whd.url = *url;
    whd.body = *body;

    return creor_whd_write(st, txn, &whd, whd.hdr.created_ms);
}


/* "m:whq": deliveries in the due index, for /v1/system/status */

static ngx_int_t
creor_wh_depth_add(creor_store_t *st, MDB_txn *txn, int64_t delta)
{
    int       rc;
    int64_t   n;
    MDB_val   val;

    n = 0;
    rc = creor_store_get(st, txn, "m:whq", &val);

    if (rc == CREOR_STORE_OK && val.mv_size == sizeof(int64_t)) {
        ngx_memcpy(&n, val.mv_data, sizeof(int64_t));

    } else if (rc != CREOR_STORE_NOTFOUND && rc != CREOR_STORE_OK) {
        return rc;
    }

    n = ngx_max(n + delta, 0);

    return creor_store_put(st, txn, "m:whq", &n, sizeof(int64_t), 0);
}


int64_t
creor_webhooks_queue_depth(creor_store_t *st)
{
    int64_t   n;
    MDB_val   val;
    MDB_txn  *txn;

    n = 0;
    txn = creor_store_read(st);

    if (txn && creor_store_get(st, txn, "m:whq", &val) == CREOR_STORE_OK
        && val.mv_size == sizeof(int64_t))
    {
        ngx_memcpy(&n, val.mv_data, sizeof(int64_t));
    }

    creor_store_read_done(st);

    return n;
}


/*
 * A delivery goes when it finished (succeeded or dead) longer than
 * creor_webhook_retention ago, or, finished or not, when its endpoint is
 * gone; a pending one takes its "wq:" entry and its share of "m:whq"
 * along.  A call in flight that loses its record finds nothing to update.
 */

static int
creor_whd_drop(MDB_txn *txn, const MDB_val *key, const MDB_val *val,
    int64_t now, void *data)
{
    int                     rc;
    char                    k[CREOR_STORE_KEY_MAX];
    int64_t                 done;
    MDB_val                 w;
    ngx_uint_t              last;
    creor_whd_hdr_t         hdr;
    ngx_creor_main_conf_t  *mcf = data;

    if (val->mv_size < sizeof(creor_whd_hdr_t)
        || key->mv_size + 16 >= CREOR_STORE_KEY_MAX)
    {
        return 0;               /* not ours to judge */
    }

    ngx_memcpy(&hdr, val->mv_data, sizeof(creor_whd_hdr_t));
    hdr.org[CREOR_ID_MAX - 1] = '\0';
    hdr.owner[CREOR_ID_MAX - 1] = '\0';

    if (hdr.status == CREOR_WHD_SUCCEEDED || hdr.status == CREOR_WHD_DEAD) {
        last = ngx_min(hdr.attempts, CREOR_WH_ATTEMPTS);
        done = last ? hdr.attempt[last - 1].ms
                      + hdr.attempt[last - 1].duration_ms
                    : hdr.created_ms;

        if (now - done >= (int64_t) mcf->webhook_retention) {
            goto drop;
        }
    }

    if (ngx_strncmp(hdr.owner, "wh_", 3) != 0) {
        return 0;               /* a run's own webhookUrl */
    }

    ngx_snprintf((u_char *) k, sizeof(k), "w:%s:%s%Z", hdr.org, hdr.owner);

    rc = creor_store_get(&mcf->store, txn, k, &w);

    if (rc == CREOR_STORE_OK) {
        return 0;
    }

    if (rc != CREOR_STORE_NOTFOUND) {
        return -1;
    }

drop:

    if (hdr.due_ms == 0) {
        return 1;
    }

    ngx_snprintf((u_char *) k, sizeof(k), "wq:%013L:%*s%Z", hdr.due_ms,
                 key->mv_size - 3, (u_char *) key->mv_data + 3);

    rc = creor_store_del(&mcf->store, txn, k);

    if (rc == CREOR_STORE_OK) {
        rc = creor_wh_depth_add(&mcf->store, txn, -1);

    } else if (rc == CREOR_STORE_NOTFOUND) {
        rc = CREOR_STORE_OK;
    }

    return rc == CREOR_STORE_OK ? 1 : -1;
}


void
creor_webhooks_purge(ngx_creor_main_conf_t *mcf, ngx_log_t *log)
{
    size_t       n;
    static char  from[CREOR_STORE_KEY_MAX];

    if (creor_store_purge_txn(&mcf->store, "wl:", from, CREOR_WH_PURGE,
                              creor_now_ms(), creor_whd_drop, mcf, &n)
        != CREOR_STORE_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "creor: webhook delivery purge failed");
        return;
    }

    if (n) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                       "creor: purged %uz webhook deliveries", n);
    }
}


/*
 * Events (SPEC 11.2), written in the caller's transaction: a delivery to
 * every active endpoint of the organization that takes the type, and to
 * url (a run's own webhookUrl) if given.  pool holds the body.
 */

ngx_int_t
creor_webhooks_emit(creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool,
    const char *org, const char *type, creor_json_t *data, ngx_str_t *url)
{
    int              rc;
    char             prefix[CREOR_STORE_KEY_MAX], evt[CREOR_ID_MAX];
    char             id[CREOR_ID_MAX], owner[CREOR_ID_MAX];
    size_t           plen;
    MDB_val          k, v;
    ngx_str_t        body, u;
    ngx_uint_t       bit, n;
    MDB_cursor      *cur;
    creor_wh_rec_t   rec;
    creor_wh_rec_t   recs[CREOR_WH_MAX];
    char             ids[CREOR_WH_MAX][CREOR_ID_MAX];

    bit = creor_event_bit(type, ngx_strlen(type));

    /* the endpoints first: the cursor is done before anything is put */

    plen = ngx_snprintf((u_char *) prefix, sizeof(prefix), "w:%s:", org)
           - (u_char *) prefix;

    if (mdb_cursor_open(txn, st->dbi, &cur) != 0) {
        return CREOR_STORE_ERROR;
    }

    n = 0;
    k.mv_data = prefix;
    k.mv_size = plen;

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         rc == 0 && k.mv_size > plen && k.mv_size - plen < CREOR_ID_MAX
         && ngx_memcmp(k.mv_data, prefix, plen) == 0 && n < CREOR_WH_MAX;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        if (v.mv_size != sizeof(creor_wh_rec_t)) {
            continue;
        }

        ngx_memcpy(&rec, v.mv_data, sizeof(creor_wh_rec_t));

        if (!rec.active || (rec.events && !(rec.events & bit))) {
            continue;
        }

        recs[n] = rec;
        ngx_cpystrn((u_char *) ids[n], (u_char *) k.mv_data + plen,
                    k.mv_size - plen + 1);
        n++;
    }

    mdb_cursor_close(cur);

    if (n == 0 && (url == NULL || url->len == 0)) {
        return CREOR_STORE_OK;
    }

    rc = creor_store_make_id(st, txn, evt, sizeof(evt), "evt_");
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    if (creor_event_body(pool, evt, type, creor_now_ms(), data, &body)
        != NGX_OK)
    {
        return CREOR_STORE_ERROR;
    }

    while (n--) {
        recs[n].url[CREOR_WH_URL_MAX - 1] = '\0';
        u.data = (u_char *) recs[n].url;
        u.len = ngx_strlen(recs[n].url);

        rc = creor_whd_create(st, txn, org, ids[n], evt, type, &u, &body, id);
        if (rc != CREOR_STORE_OK) {
            return rc;
        }
    }

    if (url && url->len) {
        ngx_cpystrn((u_char *) owner, (u_char *) org, CREOR_ID_MAX);

        rc = creor_whd_create(st, txn, org, owner, evt, type, url, &body, id);
        if (rc != CREOR_STORE_OK) {
            return rc;
        }

        /* made now, so that an admin can read it before the first send */

        {
            creor_wh_secret_t  sec;

            rc = creor_wh_run_secret(st, txn, org, &sec);
            if (rc != CREOR_STORE_OK) {
                return rc;
            }
        }
    }

    return CREOR_STORE_OK;
}


/*
 * {"event_id","type","timestamp","data"}, compact and byte-identical to
 * JSON.stringify(JSON.parse(body)): numbers in JavaScript's shortest
 * form, control characters as lowercase \u00xx, "/" unescaped.
 */

static ngx_int_t
creor_event_body(ngx_pool_t *pool, const char *event_id, const char *type,
    int64_t now, creor_json_t *data, ngx_str_t *out)
{
    u_char    *p, *last;
    yajl_gen   g;

    g = creor_gen_pool(pool);
    if (g == NULL) {
        return NGX_ERROR;
    }

    yajl_gen_map_open(g);
    creor_gen_kv(g, "event_id", event_id);
    creor_gen_kv(g, "type", type);
    creor_gen_kv_time(g, "timestamp", now);
    creor_gen_str(g, "data");

    if (data) {
        creor_gen_js(g, data);

    } else {
        yajl_gen_map_open(g);
        yajl_gen_map_close(g);
    }

    yajl_gen_map_close(g);

    if (creor_gen_result_pool(pool, g, out) != NGX_OK) {
        return NGX_ERROR;
    }

    /* yajl writes \u001F, JavaScript \u001f */

    last = out->data + out->len;

    for (p = out->data; p < last; p++) {
        if (*p != '\\' || p + 1 == last) {
            continue;
        }

        p++;

        if (*p == 'u' && last - p > 4) {
            p[1] = ngx_tolower(p[1]);
            p[2] = ngx_tolower(p[2]);
            p[3] = ngx_tolower(p[3]);
            p[4] = ngx_tolower(p[4]);
            p += 4;
        }
    }

    return NGX_OK;
}


/*
 * JSON.parse then JSON.stringify: an object's repeated name keeps its
 * first place and its last value; numbers are doubles.
 */

static void
creor_gen_js(yajl_gen g, creor_json_t *v)
{
    size_t         n;
    u_char         buf[64];
    creor_json_t  *c, *d, *last;

    switch (v->type) {

    case CREOR_JSON_NUMBER:
        if (!isfinite(v->num)) {
            yajl_gen_null(g);
            break;
        }

        n = creor_js_number(v->num, buf);
        yajl_gen_number(g, (char *) buf, n);
        break;

    case CREOR_JSON_ARRAY:
        yajl_gen_array_open(g);
        for (c = v->child; c; c = c->next) {
            creor_gen_js(g, c);
        }
        yajl_gen_array_close(g);
        break;

    case CREOR_JSON_OBJECT:
        yajl_gen_map_open(g);

        for (c = v->child; c; c = c->next) {

            /* a name seen before was written there */

            for (d = v->child; d != c; d = d->next) {
                if (d->key.len == c->key.len
                    && ngx_strncmp(d->key.data, c->key.data, c->key.len)
                       == 0)
                {
                    break;
                }
            }

            if (d != c) {
                continue;
            }

            last = c;

            for (d = c->next; d; d = d->next) {
                if (d->key.len == c->key.len
                    && ngx_strncmp(d->key.data, c->key.data, c->key.len)
                       == 0)
                {
                    last = d;
                }
            }

            yajl_gen_string(g, c->key.data, c->key.len);
            creor_gen_js(g, last);
        }

        yajl_gen_map_close(g);
        break;

    default:
        creor_gen_value(g, v);
        break;
    }
}


/* Number.prototype.toString(): the shortest digits that read back */

static size_t
creor_js_number(double d, u_char *buf)
{
    int      i, k, e, nd;
    char     tmp[40], digits[24];
    u_char  *p;

    if (d == 0) {
        buf[0] = '0';
        return 1;
    }

    p = buf;

    if (d < 0) {
        *p++ = '-';
        d = -d;
    }

    for (i = 0; i < 17; i++) {
        (void) snprintf(tmp, sizeof(tmp), "%.*e", i, d);
        if (strtod(tmp, NULL) == d) {
            break;
        }
    }

    /* "d.ddde[+-]xx", or "de[+-]xx" */

    nd = 0;
    digits[nd++] = tmp[0];

    for (k = (tmp[1] == '.') ? 2 : 1; tmp[k] && tmp[k] != 'e'; k++) {
        digits[nd++] = tmp[k];
    }

    e = atoi(&tmp[k + 1]);

    while (nd > 1 && digits[nd - 1] == '0') {
        nd--;
    }

    k = nd;         /* digits */
    e = e + 1;      /* n: the value is 0.digits x 10^n */

    if (k <= e && e <= 21) {
        p = ngx_cpymem(p, digits, k);
        for (i = 0; i < e - k; i++) {
            *p++ = '0';
        }

    } else if (0 < e && e <= 21) {
        p = ngx_cpymem(p, digits, e);
        *p++ = '.';
        p = ngx_cpymem(p, digits + e, k - e);

    } else if (-6 < e && e <= 0) {
        *p++ = '0';
        *p++ = '.';
        for (i = 0; i < -e; i++) {
            *p++ = '0';
        }
        p = ngx_cpymem(p, digits, k);

    } else {
        *p++ = digits[0];

        if (k > 1) {
            *p++ = '.';
            p = ngx_cpymem(p, digits + 1, k - 1);
        }

        p = ngx_sprintf(p, "e%c%d", e - 1 < 0 ? '-' : '+',
                        e - 1 < 0 ? 1 - e : e - 1);
    }

    return p - buf;
}


/* delivery */

void
creor_webhooks_init(ngx_creor_main_conf_t *mcf)
{
    creor_mcf = mcf;
    ngx_queue_init(&creor_whd_jobs);
}


ngx_uint_t
creor_webhooks_busy(void)
{
    return creor_nwhd;
}


/*
 * "wq:" in due order: what is due now is claimed, each in a write
 * transaction of its own that checks again.
 */

void
creor_webhooks_scan(int64_t now)
{
    int          rc;
    char         due[16];
    MDB_val      k, v;
    MDB_txn     *txn;
    ngx_str_t   *key, owner, other;
    ngx_uint_t   i, n, walked;
    ngx_pool_t  *pool;
    MDB_cursor  *cur;
    ngx_array_t  keys;

    creor_wh_again = 0;
    creor_wh_next_scan = now + 200;

    if (creor_mcf == NULL || creor_mcf->webhook_proxy.len == 0
        || creor_nwhd >= CREOR_WH_JOBS_MAX)
    {
        return;
    }

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    if (ngx_array_init(&keys, pool, 8, sizeof(ngx_str_t)) != NGX_OK) {
        ngx_destroy_pool(pool);
        return;
    }

    txn = creor_store_read(&creor_mcf->store);

    if (txn == NULL
        || mdb_cursor_open(txn, creor_mcf->store.dbi, &cur) != 0)
    {
        creor_store_read_done(&creor_mcf->store);
        ngx_destroy_pool(pool);
        return;
    }

    ngx_snprintf((u_char *) due, sizeof(due), "%013L", now);

    k.mv_data = "wq:";
    k.mv_size = 3;

    walked = 0;

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         rc == 0 && k.mv_size > 17 && ngx_memcmp(k.mv_data, "wq:", 3) == 0
         && ngx_memcmp((u_char *) k.mv_data + 3, due, 13) <= 0
         && keys.nelts < CREOR_WH_SCAN_BATCH
         && walked++ < CREOR_WH_SCAN_WALK;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        /*
         * An endpoint with its share in flight is passed over, so that a
         * backlog of one endpoint never holds the others' deliveries.
         */

        if (creor_wq_owner(k.mv_data, k.mv_size, &owner) != NGX_OK) {
            continue;
        }

        n = creor_whd_count(&owner);
        key = keys.elts;

        for (i = 0; i < keys.nelts && n < CREOR_WH_PER_ENDPOINT; i++) {
            if (creor_wq_owner(key[i].data, key[i].len, &other) == NGX_OK
                && other.len == owner.len
                && ngx_strncmp(other.data, owner.data, owner.len) == 0)
            {
                n++;
            }
        }

        if (n >= CREOR_WH_PER_ENDPOINT) {
            continue;
        }

        key = ngx_array_push(&keys);
        if (key == NULL) {
            break;
        }

        key->len = k.mv_size;
        key->data = ngx_pnalloc(pool, k.mv_size);
        if (key->data == NULL) {
            break;
        }

        ngx_memcpy(key->data, k.mv_data, k.mv_size);
    }

    mdb_cursor_close(cur);
    creor_store_read_done(&creor_mcf->store);

    key = keys.elts;

    for (i = 0; i < keys.nelts && creor_nwhd < CREOR_WH_JOBS_MAX; i++) {
        creor_wh_claim(&key[i], now);
    }

    ngx_destroy_pool(pool);
}


/* "wq:<due>:<owner>:<id>": the owner */

static ngx_int_t
creor_wq_owner(u_char *key, size_t len, ngx_str_t *owner)
{
    u_char  *colon;

    if (len < 18) {
        return NGX_ERROR;
    }

    owner->data = key + 17;
    colon = ngx_strlchr(owner->data, key + len, ':');

    if (colon == NULL) {
        return NGX_ERROR;
    }

    owner->len = colon - owner->data;

    return NGX_OK;
}


/* in flight on this worker to this owner */

static ngx_uint_t
creor_whd_count(ngx_str_t *owner)
{
    ngx_uint_t        n;
    ngx_queue_t      *q;
    creor_whd_job_t  *wj;

    n = 0;

    for (q = ngx_queue_head(&creor_whd_jobs);
         q != ngx_queue_sentinel(&creor_whd_jobs);
         q = ngx_queue_next(q))
    {
        wj = ngx_queue_data(q, creor_whd_job_t, queue);

        if (wj->owner.len == owner->len
            && ngx_strncmp(wj->owner.data, owner->data, owner->len) == 0)
        {
            n++;
        }
    }

    return n;
}


/*
 * qkey is "wq:<due>:<owner>:<id>".  The claim moves the entry to the end
 * of the lease: if this worker dies, the delivery comes due again there.
 */

static void
creor_wh_claim(ngx_str_t *qkey, int64_t now)
{
    int                   rc;
    char                  key[CREOR_STORE_KEY_MAX], wkey[CREOR_STORE_KEY_MAX];
    MDB_val               val;
    MDB_txn              *txn;
    ngx_str_t             owner;
    ngx_uint_t            n;
    ngx_pool_t           *pool;
    ngx_keyval_t         *headers;
    creor_whd_t           whd;
    creor_wh_url_t        u;
    creor_wh_rec_t        rec;
    creor_store_t        *st;
    creor_wh_secret_t     sec;
    ngx_resolver_ctx_t   *rctx, temp;
    creor_whd_resolve_t  *res;
    ngx_str_t             kstr;
    ngx_http_core_loc_conf_t  *clcf;

    st = &creor_mcf->store;

    if (qkey->len < 18 || qkey->len - 18 + 4 > CREOR_STORE_KEY_MAX) {
        return;
    }

    if (creor_wq_owner(qkey->data, qkey->len, &owner) != NGX_OK) {
        return;
    }

    if (creor_whd_count(&owner) >= CREOR_WH_PER_ENDPOINT) {
        return;
    }

    ngx_snprintf((u_char *) whd.key, sizeof(whd.key), "wl:%*s%Z",
                 qkey->len - 17, qkey->data + 17);

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    if (creor_store_write(st, &txn) != CREOR_STORE_OK) {
        ngx_destroy_pool(pool);
        return;
    }

    ngx_snprintf((u_char *) key, sizeof(key), "%V%Z", qkey);

    if (creor_store_get(st, txn, key, &val) != CREOR_STORE_OK) {
        creor_store_abort(txn);             /* another worker was faster */
        ngx_destroy_pool(pool);
        return;
    }

    rc = creor_store_get(st, txn, whd.key, &val);

    if (rc != CREOR_STORE_OK || creor_whd_read(&val, &whd) != NGX_OK) {

        /* a stale entry */

        if ((rc == CREOR_STORE_OK || rc == CREOR_STORE_NOTFOUND)
            && creor_store_del(st, txn, key) == CREOR_STORE_OK
            && creor_wh_depth_add(st, txn, -1) == CREOR_STORE_OK)
        {
            (void) creor_store_commit_nosync(st, txn);

        } else {
            creor_store_abort(txn);
        }

        ngx_destroy_pool(pool);
        return;
    }

    /* the record's parts outlive the transaction */

    whd.url.data = ngx_pstrdup(pool, &whd.url);
    whd.body.data = ngx_pstrdup(pool, &whd.body);

    if (whd.url.data == NULL || whd.body.data == NULL) {
        creor_store_abort(txn);
        ngx_destroy_pool(pool);
        return;
    }

    /* the secrets: the endpoint's, or the organization's for runs */

    ngx_memzero(&rec, sizeof(creor_wh_rec_t));

    if (ngx_strncmp(whd.hdr.owner, "wh_", 3) == 0) {
        ngx_snprintf((u_char *) wkey, sizeof(wkey), "w:%s:%s%Z",
                     whd.hdr.org, whd.hdr.owner);

        rc = creor_store_get(st, txn, wkey, &val);

        if (rc != CREOR_STORE_OK || val.mv_size != sizeof(creor_wh_rec_t)) {

            /* the endpoint was deleted: so is the delivery */

            if (creor_store_del(st, txn, key) == CREOR_STORE_OK
                && creor_store_del(st, txn, whd.key) == CREOR_STORE_OK
                && creor_wh_depth_add(st, txn, -1) == CREOR_STORE_OK)
            {
                (void) creor_store_commit_nosync(st, txn);

            } else {
                creor_store_abort(txn);
            }

            ngx_destroy_pool(pool);
            return;
        }

        ngx_memcpy(&rec, val.mv_data, sizeof(creor_wh_rec_t));

        if (!rec.active) {
            whd.hdr.status = CREOR_WHD_DEAD;

            if (creor_whd_write(st, txn, &whd, 0) == CREOR_STORE_OK) {
                (void) creor_store_commit_nosync(st, txn);

            } else {
                creor_store_abort(txn);
            }

            ngx_destroy_pool(pool);
            return;
        }

        /* sent to the endpoint's URL of now */

        rec.url[CREOR_WH_URL_MAX - 1] = '\0';
        whd.url.data = (u_char *) rec.url;
        whd.url.len = ngx_strlen(rec.url);
        whd.url.data = ngx_pstrdup(pool, &whd.url);

    } else {
        if (creor_wh_run_secret(st, txn, whd.hdr.org, &sec)
            != CREOR_STORE_OK)
        {
            creor_store_abort(txn);
            ngx_destroy_pool(pool);
            return;
        }

        ngx_memcpy(rec.secret, sec.secret, sizeof(sec.secret));
        ngx_memcpy(rec.old_secret, sec.old_secret, sizeof(sec.old_secret));
        rec.old_until_ms = sec.old_until_ms;
    }

    whd.hdr.owner_pid = (uint32_t) ngx_pid;

    kstr.data = (u_char *) whd.key;
    kstr.len = ngx_strlen(whd.key);

    rc = creor_whd_write(st, txn, &whd,
                         now + creor_mcf->webhook_timeout
                         + CREOR_WH_LEASE_EXTRA);

    if (rc != CREOR_STORE_OK
        || creor_store_commit_nosync(st, txn) != CREOR_STORE_OK)
    {
        if (rc != CREOR_STORE_OK) {
            creor_store_abort(txn);
        }

        ngx_destroy_pool(pool);
        return;
    }

    if (creor_wh_sign(pool, &whd,
                      rec.secret,
                      rec.old_until_ms > now ? rec.old_secret : NULL,
                      &headers, &n)
        != NGX_OK
        || creor_wh_url_parse(pool, whd.url.data, whd.url.len, &u) != NGX_OK)
    {
        creor_wh_result(&kstr, &owner, 0, "invalid URL", now, 0);
        ngx_destroy_pool(pool);
        return;
    }

    if (u.literal) {
        creor_wh_send(&whd, &u, headers, n, u.addr.sockaddr,
                      u.addr.socklen);
        ngx_destroy_pool(pool);
        return;
    }

    if (!creor_mcf->webhook_allow_private
        && creor_wh_host_private(&u.host))
    {
        creor_wh_result(&kstr, &owner, 0, "PRIVATE_WEBHOOK_URL", now, 0);
        ngx_destroy_pool(pool);
        return;
    }

    /* a name: nginx's resolver, then every address is checked */

    clcf = creor_mcf->api_ctx->loc_conf[ngx_http_core_module.ctx_index];

    temp.name = u.host;
    rctx = ngx_resolve_start(clcf->resolver, &temp);

    if (rctx == NULL || rctx == NGX_NO_RESOLVER) {
        creor_wh_result(&kstr, &owner, 0, rctx ? "no resolver is configured"
                                        : "resolver error", now, 0);
        ngx_destroy_pool(pool);
        return;
    }

    res = ngx_pcalloc(pool, sizeof(creor_whd_resolve_t));
    if (res == NULL) {
        ngx_resolve_name_done(rctx);
        ngx_destroy_pool(pool);
        return;
    }

    res->pool = pool;
    res->whd = whd;
    res->url = u;
    res->headers = headers;
    res->nheaders = n;

    rctx->name = u.host;
    rctx->handler = creor_wh_resolved;
    rctx->data = res;
    rctx->timeout = clcf->resolver_timeout;

    creor_nwhd++;       /* counts as in flight while resolving */

    if (ngx_resolve_name(rctx) != NGX_OK) {
        creor_nwhd--;
        creor_wh_result(&kstr, &owner, 0, "resolver error", now, 0);
        ngx_destroy_pool(pool);
    }
}


/*
 * Every address the name has must be public; the delivery connects to
 * the first, the one checked, whatever the name resolves to later.
 */

static void
creor_wh_resolved(ngx_resolver_ctx_t *rctx)
{
    char                  err[64];
    ngx_str_t             key, owner;
    ngx_uint_t            i;
    creor_whd_resolve_t  *res;

    res = rctx->data;
    creor_nwhd--;

    key.data = (u_char *) res->whd.key;
    key.len = ngx_strlen(res->whd.key);
    owner.data = (u_char *) res->whd.hdr.owner;
    owner.len = ngx_strlen(res->whd.hdr.owner);

    if (rctx->state || rctx->naddrs == 0) {
        ngx_snprintf((u_char *) err, sizeof(err), "cannot resolve: %s%Z",
                     ngx_resolver_strerror(rctx->state));
        ngx_resolve_name_done(rctx);
        creor_wh_result(&key, &owner, 0, err, creor_now_ms(), 0);
        ngx_destroy_pool(res->pool);
        return;
    }

    if (!creor_mcf->webhook_allow_private) {
        for (i = 0; i < rctx->naddrs; i++) {
            if (creor_wh_addr_private(rctx->addrs[i].sockaddr)) {
                ngx_resolve_name_done(rctx);
                creor_wh_result(&key, &owner, 0, "PRIVATE_WEBHOOK_URL",
                                creor_now_ms(), 0);
                ngx_destroy_pool(res->pool);
                return;
            }
        }
    }

    ngx_inet_set_port(rctx->addrs[0].sockaddr, res->url.port);

    creor_wh_send(&res->whd, &res->url, res->headers, res->nheaders,
                  rctx->addrs[0].sockaddr, rctx->addrs[0].socklen);

    ngx_resolve_name_done(rctx);
    ngx_destroy_pool(res->pool);
}


/* the job: variables for the proxy location, the signed headers */

static void
creor_wh_send(creor_whd_t *whd, creor_wh_url_t *u, ngx_keyval_t *headers,
    ngx_uint_t n, struct sockaddr *sa, socklen_t socklen)
{
    u_char           *p;
    ngx_str_t         key, owner;
    creor_job_t      *job;
    creor_whd_job_t  *wj;

    key.data = (u_char *) whd->key;
    key.len = ngx_strlen(whd->key);
    owner.data = (u_char *) whd->hdr.owner;
    owner.len = ngx_strlen(whd->hdr.owner);

    job = creor_job_create(&creor_whd_kind, sizeof(creor_whd_job_t),
                           &creor_mcf->webhook_proxy, &whd->body, headers, n);
    if (job == NULL) {
        creor_wh_result(&key, &owner, 0, "cannot start", creor_now_ms(), 0);
        return;
    }

    wj = job->data;
    wj->job = job;
    ngx_queue_insert_tail(&creor_whd_jobs, &wj->queue);
    creor_nwhd++;

    wj->started_ms = creor_now_ms();
    wj->key.data = ngx_pstrdup(job->pool, &key);
    wj->key.len = key.len;
    wj->owner.data = ngx_pstrdup(job->pool, &owner);
    wj->owner.len = owner.len;
    wj->scheme = u->scheme;
    wj->uri.data = ngx_pstrdup(job->pool, &u->uri);
    wj->uri.len = u->uri.len;
    wj->host.data = ngx_pstrdup(job->pool, &u->host_header);
    wj->host.len = u->host_header.len;

    p = ngx_pnalloc(job->pool, NGX_SOCKADDR_STRLEN);

    if (wj->key.data == NULL || wj->owner.data == NULL || p == NULL
        || wj->uri.data == NULL || wj->host.data == NULL)
    {
        creor_job_destroy(job);
        creor_wh_result(&key, &owner, 0, "cannot start", creor_now_ms(), 0);
        return;
    }

    wj->addr.data = p;
    wj->addr.len = ngx_sock_ntop(sa, socklen, p, NGX_SOCKADDR_STRLEN, 1);

    ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                  "creor: webhook delivery %V to %V, Host %V", &key,
                  &wj->addr, &wj->host);

    creor_job_run(job, creor_mcf->webhook_timeout);
}


/*
 * Creor-Signature: hex HMAC-SHA256 of the body keyed by the secret
 * string (seed 000); webhook-signature: Standard Webhooks, base64 of
 * HMAC-SHA256 over "id.timestamp.body" keyed by the secret's bytes, the
 * old secret's too during a rotation.
 */

static ngx_int_t
creor_wh_sign(ngx_pool_t *pool, creor_whd_t *whd, const char *secret,
    const char *old_secret, ngx_keyval_t **headers, ngx_uint_t *n)
{
    u_char         *p, *msg, mac[EVP_MAX_MD_SIZE], keyb[64];
    unsigned int    maclen;
    ngx_str_t       src, dst, ts;
    ngx_uint_t      i;
    ngx_keyval_t   *h;
    const char     *s[2];

    h = ngx_pcalloc(pool, 6 * sizeof(ngx_keyval_t));
    ts.data = ngx_pnalloc(pool, NGX_INT64_LEN);
    if (h == NULL || ts.data == NULL) {
        return NGX_ERROR;
    }

    ts.len = ngx_sprintf(ts.data, "%L", creor_now_ms() / 1000) - ts.data;

    /* Creor-Signature */

    if (HMAC(EVP_sha256(), secret, ngx_strlen(secret), whd->body.data,
             whd->body.len, mac, &maclen) == NULL)
    {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(pool, maclen * 2);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&h[0].key, "Creor-Signature");
    h[0].value.data = p;
    h[0].value.len = ngx_hex_dump(p, mac, maclen) - p;

    ngx_str_set(&h[1].key, "Creor-Event");
    h[1].value.data = (u_char *) whd->hdr.type;
    h[1].value.len = ngx_strlen(whd->hdr.type);

    ngx_str_set(&h[2].key, "webhook-id");
    h[2].value.data = (u_char *) whd->hdr.event_id;
    h[2].value.len = ngx_strlen(whd->hdr.event_id);

    ngx_str_set(&h[3].key, "webhook-timestamp");
    h[3].value = ts;

    ngx_str_set(&h[5].key, "User-Agent");
    ngx_str_set(&h[5].value, "Creor-Webhooks/1");

    /* "id.timestamp.body" */

    msg = ngx_pnalloc(pool, h[2].value.len + ts.len + whd->body.len + 2);
    p = ngx_pnalloc(pool, 2 * (3 + ngx_base64_encoded_length(32)) + 1);
    if (msg == NULL || p == NULL) {
        return NGX_ERROR;
    }

    src.data = msg;
    src.len = ngx_sprintf(msg, "%V.%V.%V", &h[2].value, &ts, &whd->body)
              - msg;

    s[0] = secret;
    s[1] = old_secret;

    h[4].value.data = p;
    ngx_str_set(&h[4].key, "webhook-signature");

    for (i = 0; i < 2 && s[i] && s[i][0]; i++) {
        dst.data = keyb;
        ts.data = (u_char *) s[i] + 6;
        ts.len = ngx_strlen(s[i]) - 6;

        if (ngx_strlen(s[i]) < 6 || ts.len > ngx_base64_encoded_length(48)
            || ngx_decode_base64(&dst, &ts) != NGX_OK
            || HMAC(EVP_sha256(), keyb, dst.len, src.data, src.len, mac,
                    &maclen) == NULL)
        {
            return NGX_ERROR;
        }

        if (i) {
            *p++ = ' ';
        }

        p = ngx_cpymem(p, "v1,", 3);

        dst.data = p;
        ts.data = mac;
        ts.len = maclen;
        ngx_encode_base64(&dst, &ts);
        p += dst.len;
    }

    h[4].value.len = p - h[4].value.data;

    *headers = h;
    *n = 6;

    return NGX_OK;
}


/* the status, and Retry-After on 429 and 503 */

static ngx_int_t
creor_whd_header(creor_job_t *job, ngx_http_request_t *r)
{
    time_t            t;
    ngx_int_t         n;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;
    creor_whd_job_t  *wj;

    wj = job->data;

    if (job->status != NGX_HTTP_TOO_MANY_REQUESTS
        && job->status != NGX_HTTP_SERVICE_UNAVAILABLE)
    {
        return NGX_OK;
    }

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0 || h[i].key.len != 11
            || ngx_strncasecmp(h[i].key.data, (u_char *) "Retry-After", 11)
               != 0)
        {
            continue;
        }

        n = ngx_atoi(h[i].value.data, h[i].value.len);

        if (n == NGX_ERROR) {
            t = ngx_parse_http_time(h[i].value.data, h[i].value.len);
            n = (t == NGX_ERROR) ? 0 : t - ngx_time();
        }

        if (n > 0) {
            wj->retry_after_ms = ngx_min((int64_t) n * 1000,
                                         (int64_t) 86400000);
        }
    }

    return NGX_OK;
}


static void
creor_whd_finish(creor_job_t *job)
{
    int64_t           started, retry_after;
    ngx_str_t         key, owner;
    ngx_uint_t        status;
    const char       *err;
    creor_whd_job_t  *wj;

    wj = job->data;
    started = wj->started_ms;
    retry_after = wj->retry_after_ms;

    /* the job's pool goes with it */

    key.len = wj->key.len;
    owner.len = wj->owner.len;
    key.data = ngx_alloc(key.len + owner.len, ngx_cycle->log);

    if (key.data == NULL) {
        creor_job_destroy(job);
        return;
    }

    ngx_memcpy(key.data, wj->key.data, key.len);
    owner.data = key.data + key.len;
    ngx_memcpy(owner.data, wj->owner.data, owner.len);

    status = job->timed_out ? 0 : job->status;
    err = job->timed_out ? "timeout"
          : (status == NGX_HTTP_BAD_GATEWAY) ? "connection failed or 502"
          : NULL;

    creor_job_destroy(job);

    creor_wh_result(&key, &owner, status, err, started, retry_after);

    ngx_free(key.data);
}


static void
creor_whd_end(creor_job_t *job)
{
    creor_whd_job_t  *wj = job->data;

    ngx_queue_remove(&wj->queue);
    creor_nwhd--;

    /* a free slot: the queue may hold more that are due */

    creor_wh_again = 1;
}


/* from the tick: every 200 ms, and at once when a slot was freed */

void
creor_webhooks_tick(int64_t now)
{
    if (creor_wh_again || now >= creor_wh_next_scan) {
        creor_webhooks_scan(now);
    }
}


/*
 * An attempt's end: 2xx succeeds; 410 disables the endpoint; anything
 * else is retried on the schedule (Retry-After may push it later), then
 * dead-lettered; an endpoint failing every attempt for 5 days is
 * disabled.
 */

static void
creor_wh_result(ngx_str_t *key, ngx_str_t *owner, ngx_uint_t status,
    const char *error, int64_t started, int64_t retry_after)
{
    int                   rc;
    char                  k[CREOR_STORE_KEY_MAX], wkey[CREOR_STORE_KEY_MAX];
    int64_t               now, delay, due;
    MDB_val               val;
    MDB_txn              *txn;
    ngx_uint_t            i, ok, nsched;
    ngx_msec_t           *sched;
    creor_whd_t           whd;
    creor_store_t        *st;
    creor_wh_rec_t        rec;
    creor_whd_attempt_t  *a;

    st = &creor_mcf->store;
    now = creor_now_ms();
    ok = (status >= 200 && status < 300);

    if (key->len >= sizeof(k)) {
        return;
    }

    ngx_snprintf((u_char *) k, sizeof(k), "%V%Z", key);

    if (creor_store_write(st, &txn) != CREOR_STORE_OK) {
        return;                 /* the lease runs out: tried again */
    }

    rc = creor_store_get(st, txn, k, &val);

    if (rc != CREOR_STORE_OK || creor_whd_read(&val, &whd) != NGX_OK) {
        creor_store_abort(txn);
        return;
    }

    ngx_memcpy(whd.key, k, sizeof(k));

    whd.url.data = ngx_alloc(whd.url.len + whd.body.len + 1, ngx_cycle->log);
    if (whd.url.data == NULL) {
        creor_store_abort(txn);
        return;
    }

    ngx_memcpy(whd.url.data, (u_char *) val.mv_data + sizeof(creor_whd_hdr_t),
               whd.url.len + whd.body.len);
    whd.body.data = whd.url.data + whd.url.len;

    /* the latest attempts, the oldest dropped */

    if (whd.hdr.attempts >= CREOR_WH_ATTEMPTS) {
        ngx_memmove(&whd.hdr.attempt[0], &whd.hdr.attempt[1],
                    (CREOR_WH_ATTEMPTS - 1) * sizeof(creor_whd_attempt_t));
        a = &whd.hdr.attempt[CREOR_WH_ATTEMPTS - 1];

    } else {
        a = &whd.hdr.attempt[whd.hdr.attempts];
    }

    ngx_memzero(a, sizeof(creor_whd_attempt_t));
    a->ms = started;
    a->duration_ms = now - started;
    a->status = status;

    if (!ok) {
        ngx_cpystrn((u_char *) a->error,
                    (u_char *) (error ? error : "not a 2xx status"),
                    sizeof(a->error));
    }

    whd.hdr.attempts++;
    whd.hdr.owner_pid = 0;

    /* the endpoint's record follows its deliveries */

    rc = CREOR_STORE_NOTFOUND;

    if (ngx_strncmp(whd.hdr.owner, "wh_", 3) == 0) {
        ngx_snprintf((u_char *) wkey, sizeof(wkey), "w:%s:%s%Z",
                     whd.hdr.org, whd.hdr.owner);

        rc = creor_store_get(st, txn, wkey, &val);

        if (rc == CREOR_STORE_OK && val.mv_size == sizeof(creor_wh_rec_t)) {
            ngx_memcpy(&rec, val.mv_data, sizeof(creor_wh_rec_t));

        } else {
            rc = CREOR_STORE_NOTFOUND;
        }
    }

    sched = creor_mcf->webhook_schedule->elts;
    nsched = creor_mcf->webhook_schedule->nelts;
    due = 0;

    if (ok) {
        whd.hdr.status = CREOR_WHD_SUCCEEDED;

        if (rc == CREOR_STORE_OK) {
            rec.failing_ms = 0;
        }

    } else if (status == CREOR_HTTP_GONE) {
        whd.hdr.status = CREOR_WHD_DEAD;

        if (rc == CREOR_STORE_OK) {
            rec.active = 0;
            ngx_cpystrn((u_char *) rec.disabled,
                        (u_char *) "endpoint.gone: answered 410",
                        sizeof(rec.disabled));
        }

    } else {
        if (rc == CREOR_STORE_OK) {
            if (rec.failing_ms == 0) {
                rec.failing_ms = started;

            } else if (now - rec.failing_ms >= CREOR_WH_DISABLE_MS) {
                rec.active = 0;
                ngx_cpystrn((u_char *) rec.disabled,
                            (u_char *) "endpoint.disabled: failing for "
                            "5 days", sizeof(rec.disabled));
            }
        }

        i = whd.hdr.tries++;

        if (i >= nsched || (rc == CREOR_STORE_OK && !rec.active)) {
            whd.hdr.status = CREOR_WHD_DEAD;

        } else {
            whd.hdr.status = CREOR_WHD_FAILED;

            /* +-10% */

            delay = sched[i];
            delay = delay * 9 / 10 + (int64_t) (ngx_random() % 1000)
                                     * delay / 5000;

            if (retry_after > delay) {
                delay = ngx_min(retry_after,
                                (int64_t) sched[i] + CREOR_WH_RETRY_AFTER_MAX);
            }

            due = now + delay;
        }
    }

    rc = (rc == CREOR_STORE_OK)
         ? creor_store_put(st, txn, wkey, &rec, sizeof(rec), 0)
         : CREOR_STORE_OK;

    if (rc == CREOR_STORE_OK) {
        rc = creor_whd_write(st, txn, &whd, due);
    }

    ngx_free(whd.url.data);

    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return;
    }

    /* lost at a power failure, it costs a duplicate: at least once */

    (void) creor_store_commit_nosync(st, txn);

    if (!ok) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "creor: webhook delivery %V: %s (status %ui)", key,
                      error ? error : "not a 2xx status", status);
    }
}


/*
 * A worker that is going away gives its deliveries back: each comes due
 * at once for the next worker, the attempt not counted.
 */

void
creor_webhooks_release(void)
{
    MDB_txn          *txn;
    MDB_val           val;
    ngx_queue_t      *q;
    creor_whd_t       whd;
    creor_whd_job_t  *wj;

    while (!ngx_queue_empty(&creor_whd_jobs)) {
        q = ngx_queue_head(&creor_whd_jobs);
        wj = ngx_queue_data(q, creor_whd_job_t, queue);

        if (wj->key.len < sizeof(whd.key)
            && creor_store_write(&creor_mcf->store, &txn) == CREOR_STORE_OK)
        {
            ngx_snprintf((u_char *) whd.key, sizeof(whd.key), "%V%Z",
                         &wj->key);

            if (creor_store_get(&creor_mcf->store, txn, whd.key, &val)
                == CREOR_STORE_OK
                && creor_whd_read(&val, &whd) == NGX_OK
                && whd.hdr.owner_pid == (uint32_t) ngx_pid)
            {
                whd.url.data = ngx_pstrdup(wj->job->pool, &whd.url);
                whd.body.data = ngx_pstrdup(wj->job->pool, &whd.body);
                whd.hdr.owner_pid = 0;

                if (whd.url.data && whd.body.data
                    && creor_whd_write(&creor_mcf->store, txn, &whd,
                                       creor_now_ms())
                       == CREOR_STORE_OK)
                {
                    (void) creor_store_commit(txn);

                } else {
                    creor_store_abort(txn);
                }

            } else {
                creor_store_abort(txn);
            }
        }

        creor_job_destroy(wj->job);
    }
}


/* $creor_webhook_scheme, _addr, _uri, _host, for creor_webhook_proxy */

ngx_int_t
creor_webhooks_add_variables(ngx_conf_t *cf)
{
    ngx_uint_t            i;
    ngx_http_variable_t  *var;

    static ngx_str_t  names[] = {
        ngx_string("creor_webhook_scheme"),
        ngx_string("creor_webhook_addr"),
        ngx_string("creor_webhook_uri"),
        ngx_string("creor_webhook_host")
    };

    static uintptr_t  offsets[] = {
        offsetof(creor_whd_job_t, scheme),
        offsetof(creor_whd_job_t, addr),
        offsetof(creor_whd_job_t, uri),
        offsetof(creor_whd_job_t, host)
    };

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        var = ngx_http_add_variable(cf, &names[i], NGX_HTTP_VAR_NOCACHEABLE);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = creor_webhooks_variable;
        var->data = offsets[i];
    }

    return NGX_OK;
}


static ngx_int_t
creor_webhooks_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_str_t        *s;
    creor_job_t      *job;
    ngx_creor_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_creor_module);

    if (ctx == NULL || ctx->job == NULL
        || ((creor_job_t *) ctx->job)->kind != &creor_whd_kind)
    {
        v->not_found = 1;
        return NGX_OK;
    }

    job = ctx->job;
    s = (ngx_str_t *) ((u_char *) job->data + data);

    v->data = s->data;
    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
