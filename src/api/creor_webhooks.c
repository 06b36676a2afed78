
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The webhooks API (SPEC 11.1): endpoints, their deliveries, the test
 * event, the run-webhook secret.  The records are creor_webhook.c's,
 * the delivery creor_delivery.c's.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


/* where creor_object_load() reads an endpoint to */
typedef struct {
    char                   *key;
    creor_wh_rec_t         *rec;
} creor_wh_obj_t;


static ngx_int_t creor_wh_parse(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_wh_rec_t *rec, ngx_flag_t create);
static ngx_int_t creor_wh_load(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    MDB_txn **txn, char *key, creor_wh_rec_t *rec);
static ngx_int_t creor_wh_object(creor_store_t *st, MDB_txn *txn,
    ngx_pool_t *pool, ngx_str_t *org, ngx_str_t *id, void *data);
static ngx_int_t creor_wh_save(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    MDB_txn *txn, char *key, creor_wh_rec_t *rec, ngx_flag_t secret);
static ngx_int_t creor_wh_reply(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *id, creor_wh_rec_t *rec, ngx_flag_t secret,
    creor_whd_hdr_t *hdr);
static ngx_int_t creor_webhooks_item(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, MDB_val *key, MDB_val *val, yajl_gen g);
static ngx_int_t creor_whd_item(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    MDB_val *key, MDB_val *val, yajl_gen g);
static void creor_wh_json(yajl_gen g, ngx_str_t *id, creor_wh_rec_t *rec,
    ngx_flag_t secret);
static void creor_whd_json(yajl_gen g, ngx_str_t *id, creor_whd_hdr_t *hdr);


static const char  *creor_whd_status[] = {
    "", "pending", "succeeded", "failed", "dead"
};

static const char  *creor_wh_fields[] = {
    "url", "events", "description", "active", NULL
};

static const char  *creor_no_fields[] = { NULL };


ngx_int_t
creor_webhooks_create(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int              rc;
    char             key[CREOR_STORE_KEY_MAX], id[CREOR_ID_MAX];
    size_t           n;
    MDB_txn         *txn;
    ngx_str_t        sid;
    creor_wh_rec_t   rec;

    ngx_memzero(&rec, sizeof(creor_wh_rec_t));
    rec.active = 1;

    if (creor_wh_parse(r, ctx, &rec, 1) != NGX_OK) {
        return NGX_DECLINED;
    }

    rc = creor_ssrf_check_name(r, ctx, creor_json_get(ctx->json, "url"),
                               "url", creor_webhooks_create);
    if (rc != NGX_OK) {
        return rc;
    }

    rec.version = CREOR_WH_VERSION;
    rec.created_ms = creor_now_ms();
    rec.updated_ms = rec.created_ms;
    creor_sign_secret(rec.secret);

    rc = creor_store_write(&ctx->mcf->store, &txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    /* a bounded number per organization: an event's fan-out is bounded */

    if (creor_webhook_count(&ctx->mcf->store, txn, &ctx->who.org,
                            CREOR_WH_MAX, &n)
        != CREOR_STORE_OK)
    {
        creor_store_abort(txn);
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

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

    rc = creor_object_commit(r, txn, rc);
    if (rc != NGX_OK) {
        return rc;
    }

    sid.data = (u_char *) id;
    sid.len = ngx_strlen(id);

    return creor_wh_reply(r, NGX_HTTP_CREATED, &sid, &rec, 1, NULL);
}


ngx_int_t
creor_webhooks_list(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    return creor_page_list(r, ctx, NULL, creor_webhooks_item, "w:%V:",
                           &ctx->who.org);
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
    creor_wh_rec_t  rec;

    if (creor_wh_load(r, ctx, NULL, key, &rec) != NGX_OK) {
        return NGX_DECLINED;
    }

    return creor_wh_reply(r, NGX_HTTP_OK, &ctx->ids[CREOR_ID_WEBHOOK], &rec,
                          0, NULL);
}


ngx_int_t
creor_webhooks_update(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int             rc;
    char            key[CREOR_STORE_KEY_MAX];
    MDB_txn        *txn;
    uint32_t        was;
    creor_wh_rec_t  rec;

    rc = creor_ssrf_check_name(r, ctx, creor_json_get(ctx->json, "url"),
                               "url", creor_webhooks_update);
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

    return creor_wh_save(r, ctx, txn, key, &rec, 0);
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
    creor_wh_rec_t  rec;

    if (creor_wh_load(r, ctx, &txn, key, &rec) != NGX_OK) {
        return NGX_DECLINED;
    }

    rc = creor_store_del(&ctx->mcf->store, txn, key);

    rc = creor_object_commit(r, txn, rc);
    if (rc != NGX_OK) {
        return rc;
    }

    return creor_object_deleted(r, &ctx->ids[CREOR_ID_WEBHOOK], "webhook");
}


ngx_int_t
creor_webhooks_rotate(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    char            key[CREOR_STORE_KEY_MAX];
    MDB_txn        *txn;
    creor_wh_rec_t  rec;

    if (creor_check_fields(r, ctx->json, creor_no_fields, "") != NGX_OK) {
        return NGX_DECLINED;
    }

    if (creor_wh_load(r, ctx, &txn, key, &rec) != NGX_OK) {
        return NGX_DECLINED;
    }

    ngx_memcpy(rec.old_secret, rec.secret, sizeof(rec.secret));
    creor_sign_secret(rec.secret);
    rec.updated_ms = creor_now_ms();
    rec.old_until_ms = rec.updated_ms + CREOR_WH_ROTATION_MS;

    return creor_wh_save(r, ctx, txn, key, &rec, 1);
}


ngx_int_t
creor_webhooks_deliveries(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    ngx_int_t      status;
    ngx_uint_t     i;
    creor_arg_t   *a;
    creor_page_t   pg;

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

    ngx_memzero(&pg, sizeof(creor_page_t));

    pg.filters.data = ngx_pnalloc(r->pool, 32);
    if (pg.filters.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pg.filters.len = ngx_sprintf(pg.filters.data, "status=%i", status)
                     - pg.filters.data;

    return creor_page_list(r, ctx, &pg, creor_whd_item, "wl:%V:",
                           &ctx->ids[CREOR_ID_WEBHOOK]);
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

    rc = creor_object_commit(r, txn, rc);
    if (rc != NGX_OK) {
        return rc;
    }

    creor_changed(ctx->mcf, NULL, CREOR_CHANGED_EVENTS);

    return creor_wh_reply(r, NGX_HTTP_ACCEPTED, &ctx->ids[CREOR_ID_DELIVERY],
                          NULL, 0, &whd.hdr);
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
        || creor_js_event_body(r->pool, evt, "webhook.test", creor_now_ms(),
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

    rc = creor_object_commit(r, txn, CREOR_STORE_OK);
    if (rc != NGX_OK) {
        return rc;
    }

    creor_changed(ctx->mcf, NULL, CREOR_CHANGED_EVENTS);

    sid.data = (u_char *) id;
    sid.len = ngx_strlen(id);

    return creor_wh_reply(r, NGX_HTTP_ACCEPTED, &sid, NULL, 0, &whd.hdr);
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

    rc = creor_webhook_run_secret(&ctx->mcf->store, txn, ctx->who.key.org,
                                  &sec);

    if (rc == CREOR_STORE_OK && r->method == NGX_HTTP_POST) {
        ngx_memcpy(sec.old_secret, sec.secret, sizeof(sec.secret));
        creor_sign_secret(sec.secret);
        sec.old_until_ms = creor_now_ms() + CREOR_WH_ROTATION_MS;

        ngx_snprintf((u_char *) key, sizeof(key), "ws:%V%Z", &ctx->who.org);
        rc = creor_store_put(&ctx->mcf->store, txn, key, &sec, sizeof(sec),
                             0);
    }

    rc = creor_object_commit(r, txn, rc);
    if (rc != NGX_OK) {
        return rc;
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


/* the endpoint the route names, in a write transaction if txn is given */

static ngx_int_t
creor_wh_load(ngx_http_request_t *r, ngx_creor_ctx_t *ctx, MDB_txn **txn,
    char *key, creor_wh_rec_t *rec)
{
    creor_wh_obj_t  o;

    static creor_object_t  obj = {
        CREOR_ID_WEBHOOK, "webhook", creor_wh_object
    };

    o.key = key;
    o.rec = rec;

    return creor_object_load(r, ctx, &obj, txn, &o);
}


static ngx_int_t
creor_wh_object(creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool,
    ngx_str_t *org, ngx_str_t *id, void *data)
{
    creor_wh_obj_t  *o = data;

    ngx_snprintf((u_char *) o->key, CREOR_STORE_KEY_MAX, "w:%V:%V%Z", org,
                 id);

    return creor_webhook_get(st, txn, o->key, o->rec);
}


/* the endpoint the route names, changed: stored, then shown */

static ngx_int_t
creor_wh_save(ngx_http_request_t *r, ngx_creor_ctx_t *ctx, MDB_txn *txn,
    char *key, creor_wh_rec_t *rec, ngx_flag_t secret)
{
    ngx_int_t  rc;

    rc = creor_store_put(&ctx->mcf->store, txn, key, rec, sizeof(*rec), 0);

    rc = creor_object_commit(r, txn, rc);
    if (rc != NGX_OK) {
        return rc;
    }

    return creor_wh_reply(r, NGX_HTTP_OK, &ctx->ids[CREOR_ID_WEBHOOK], rec,
                          secret, NULL);
}


/* an endpoint (rec) or a delivery (hdr), shown */

static ngx_int_t
creor_wh_reply(ngx_http_request_t *r, ngx_uint_t status, ngx_str_t *id,
    creor_wh_rec_t *rec, ngx_flag_t secret, creor_whd_hdr_t *hdr)
{
    yajl_gen  g;

    g = creor_gen_create(r);
    if (g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rec) {
        creor_wh_json(g, id, rec, secret);

    } else {
        creor_whd_json(g, id, hdr);
    }

    return creor_send_json(r, status, g);
}


/* the body of a create (all of it) or a patch (what it names) */

static ngx_int_t
creor_wh_parse(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_wh_rec_t *rec, ngx_flag_t create)
{
    ngx_uint_t       bit, events;
    creor_json_t    *url, *ev, *desc, *active, *c;

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
        if (creor_ssrf_check_url(r, url, "url", CREOR_WH_URL_MAX - 1)
            != NGX_OK)
        {
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
                  ? creor_webhook_event_bit((char *) c->str.data, c->str.len)
                  : 0;

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
