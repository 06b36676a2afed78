
/*
 * Copyright (C) ngx_creor_module authors
 *
 * /v1/api-keys (SPEC 4.2): issue, list, read, revoke, rotate.  The token
 * is in the answer to create and rotate only; the store keeps its HMAC.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_GRACE_MAX  (7 * 86400)        /* seconds */


static ngx_int_t creor_keys_item(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    MDB_val *key, MDB_val *val, yajl_gen g);
static ngx_int_t creor_keys_issue(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    MDB_txn *txn, creor_key_rec_t *rec, ngx_uint_t status);
static ngx_int_t creor_keys_send(ngx_http_request_t *r, ngx_uint_t status,
    creor_key_rec_t *rec, const char *token);
static void creor_key_json(yajl_gen g, creor_key_rec_t *rec,
    const char *token);
static ngx_int_t creor_keys_ref(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    const char *field, ngx_str_t *checked, char *out);


static const char  *creor_key_fields[] = {
    "name", "role", "projectId", "appId", "rateLimit", NULL
};

static const char  *creor_rotate_fields[] = { "gracePeriod", NULL };

/* the route's key, which the scope checked */
static creor_object_t  creor_key_object = {
    CREOR_ID_KEY, "API key", creor_key_load
};


ngx_int_t
creor_keys_create(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int               rc, role;
    uint32_t          n, period, burst;
    MDB_txn          *txn;
    creor_json_t     *name, *v;
    creor_key_rec_t   rec;

    if (creor_check_fields(r, ctx->json, creor_key_fields, "") != NGX_OK) {
        return NGX_DECLINED;
    }

    ngx_memzero(&rec, sizeof(creor_key_rec_t));
    ngx_cpystrn((u_char *) rec.org, (u_char *) ctx->who.key.org,
                sizeof(rec.org));

    name = creor_json_get(ctx->json, "name");

    if (name == NULL) {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "MISSING_FIELD", "name",
                          "The 'name' field is required.");
    }

    if (name->type != CREOR_JSON_STRING || name->str.len == 0
        || name->str.len >= sizeof(rec.name))
    {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR", "name",
                          "'name' must be a string of 1 to %uz bytes.",
                          sizeof(rec.name) - 1);
    }

    ngx_cpystrn((u_char *) rec.name, name->str.data, sizeof(rec.name));

    role = CREOR_ROLE_USER;
    v = creor_json_get(ctx->json, "role");

    if (v) {
        role = (v->type == CREOR_JSON_STRING)
               ? creor_role_parse((char *) v->str.data, v->str.len) : -1;

        if (role < 0) {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                              "role", "'role' must be admin, user or "
                              "read_only.");
        }
    }

    rec.role = (uint32_t) role;

    v = creor_json_get(ctx->json, "rateLimit");

    if (v && v->type != CREOR_JSON_NULL) {
        if (v->type != CREOR_JSON_STRING
            || v->str.len >= sizeof(rec.rate_limit)
            || creor_rate_parse((char *) v->str.data, v->str.len, &n,
                                &period, &burst)
               != 0)
        {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                              "rateLimit", "'rateLimit' must be a rate such "
                              "as \"120r/m\" or \"10r/s burst=20\".");
        }

        ngx_cpystrn((u_char *) rec.rate_limit, v->str.data,
                    sizeof(rec.rate_limit));
    }

    /* the binding creor_scope_body() granted, once the types are right */

    if (creor_keys_ref(r, ctx, "projectId", &ctx->ids[CREOR_ID_PROJECT],
                       rec.project) != NGX_OK
        || creor_keys_ref(r, ctx, "appId", &ctx->ids[CREOR_ID_AGENT],
                          rec.app) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    rc = creor_store_write(&ctx->mcf->store, &txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    return creor_keys_issue(r, ctx, txn, &rec, NGX_HTTP_CREATED);
}


/* a binding field: null, or a string whose id the scope checked */

static ngx_int_t
creor_keys_ref(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    const char *field, ngx_str_t *checked, char *out)
{
    creor_json_t  *v;

    v = creor_json_get(ctx->json, field);

    if (v && v->type != CREOR_JSON_NULL && v->type != CREOR_JSON_STRING) {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR", field,
                          "'%s' must be a string.", field);
    }

    if (v && v->type == CREOR_JSON_STRING && checked->len == 0) {
        return creor_fail(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND", field,
                          "No such %s.", field);
    }

    ngx_cpystrn((u_char *) out, checked->data,
                ngx_min(checked->len + 1, CREOR_ID_MAX));

    return NGX_OK;
}


ngx_int_t
creor_keys_list(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    return creor_page_list(r, ctx, NULL, creor_keys_item, "ko:%V:",
                           &ctx->who.org);
}


static ngx_int_t
creor_keys_item(ngx_http_request_t *r, ngx_creor_ctx_t *ctx, MDB_val *key,
    MDB_val *val, yajl_gen g)
{
    char              id[CREOR_ID_MAX];
    size_t            len;
    MDB_txn          *txn;
    creor_key_rec_t   rec;

    len = key->mv_size - 4 - ctx->who.org.len;

    if (len >= sizeof(id)) {
        return NGX_ERROR;
    }

    ngx_memcpy(id, (u_char *) key->mv_data + 4 + ctx->who.org.len, len);
    id[len] = '\0';

    txn = creor_store_read(&ctx->mcf->store);

    if (txn == NULL
        || creor_key_get(&ctx->mcf->store, txn, id, &rec) != CREOR_STORE_OK)
    {
        return NGX_ERROR;
    }

    if (!creor_scope_sees_key(ctx, &rec)) {
        return NGX_DECLINED;
    }

    if (g) {
        creor_key_json(g, &rec, NULL);
    }

    return NGX_OK;
}


ngx_int_t
creor_keys_get(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    creor_key_rec_t  rec;

    if (creor_object_load(r, ctx, &creor_key_object, NULL, &rec) != NGX_OK) {
        return NGX_DECLINED;
    }

    return creor_keys_send(r, NGX_HTTP_OK, &rec, NULL);
}


ngx_int_t
creor_keys_revoke(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    ngx_int_t         rc;
    MDB_txn          *txn;
    creor_key_rec_t   rec;

    if (creor_object_load(r, ctx, &creor_key_object, &txn, &rec) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (rec.revoked_ms) {
        creor_store_abort(txn);
        return creor_keys_send(r, NGX_HTTP_OK, &rec, NULL);
    }

    rec.revoked_ms = creor_now_ms();

    rc = creor_key_put(&ctx->mcf->store, txn, &rec);

    if (creor_object_commit(r, txn, rc) != NGX_OK) {
        return NGX_DECLINED;
    }

    return creor_keys_send(r, NGX_HTTP_OK, &rec, NULL);
}


/*
 * A new secret for the same key id; the old one keeps working for
 * gracePeriod seconds.
 */

ngx_int_t
creor_keys_rotate(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int64_t           grace;
    MDB_txn          *txn;
    creor_json_t     *v;
    creor_key_rec_t   rec;

    if (creor_check_fields(r, ctx->json, creor_rotate_fields, "") != NGX_OK) {
        return NGX_DECLINED;
    }

    grace = 0;
    v = creor_json_get(ctx->json, "gracePeriod");

    if (v) {
        if (!creor_json_is_int(v) || v->num < 0 || v->num > CREOR_GRACE_MAX) {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                              "gracePeriod", "'gracePeriod' must be an "
                              "integer from 0 to %d seconds.",
                              CREOR_GRACE_MAX);
        }

        grace = (int64_t) v->num;
    }

    if (creor_object_load(r, ctx, &creor_key_object, &txn, &rec) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (rec.revoked_ms) {
        creor_store_abort(txn);
        return creor_fail(r, NGX_HTTP_CONFLICT, "KEY_REVOKED", NULL,
                          "A revoked key cannot be rotated.");
    }

    ngx_memcpy(rec.old_hash, rec.hash, sizeof(rec.hash));
    rec.old_expires_ms = grace ? creor_now_ms() + grace * 1000 : 0;

    return creor_keys_issue(r, ctx, txn, &rec, NGX_HTTP_OK);
}


/* a new secret for rec, committed; the answer shows the token once */

static ngx_int_t
creor_keys_issue(ngx_http_request_t *r, ngx_creor_ctx_t *ctx, MDB_txn *txn,
    creor_key_rec_t *rec, ngx_uint_t status)
{
    ngx_int_t  rc;
    char       token[CREOR_ID_MAX + CREOR_SECRET_B62_LEN + 8];

    rc = creor_key_issue(&ctx->mcf->store, txn, rec, token);

    if (creor_object_commit(r, txn, rc) != NGX_OK) {
        return NGX_DECLINED;
    }

    return creor_keys_send(r, status, rec, token);
}


static ngx_int_t
creor_keys_send(ngx_http_request_t *r, ngx_uint_t status,
    creor_key_rec_t *rec, const char *token)
{
    yajl_gen  g;

    g = creor_gen_create(r);
    if (g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    creor_key_json(g, rec, token);

    return creor_send_json(r, status, g);
}


static void
creor_key_json(yajl_gen g, creor_key_rec_t *rec, const char *token)
{
    yajl_gen_map_open(g);
    creor_gen_kv(g, "id", rec->id);
    creor_gen_kv(g, "object", "api_key");
    creor_gen_kv(g, "name", rec->name);
    creor_gen_kv(g, "role", creor_role_name(rec->role));
    creor_gen_kv(g, "organizationId", rec->org);
    creor_gen_kv_or_null(g, "projectId", rec->project);
    creor_gen_kv_or_null(g, "appId", rec->app);
    creor_gen_kv_or_null(g, "rateLimit", rec->rate_limit);
    creor_gen_kv_time(g, "createdAt", rec->created_ms);
    creor_gen_kv_time(g, "lastUsedAt", rec->last_used_ms);
    creor_gen_kv_time(g, "revokedAt", rec->revoked_ms);

    if (token) {
        creor_gen_kv(g, "token", token);
    }

    yajl_gen_map_close(g);
}
