
/*
 * Copyright (C) ngx_creor_module authors
 *
 * /v1/projects (SPEC 4.1).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


static void creor_project_json(yajl_gen g, ngx_str_t *org, ngx_str_t *id,
    creor_project_rec_t *rec);
static ngx_int_t creor_projects_item(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, MDB_val *key, MDB_val *val, yajl_gen g);


static const char  *creor_project_fields[] = { "name", "description", NULL };

/* the route's project, which the scope checked */
static creor_object_t  creor_project_object = {
    CREOR_ID_PROJECT, "project", creor_project_load
};


ngx_int_t
creor_projects_create(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int                  rc;
    char                 id[CREOR_ID_MAX];
    yajl_gen             g;
    MDB_txn             *txn;
    ngx_str_t            sid;
    creor_json_t        *name, *desc;
    creor_project_rec_t  rec;

    if (creor_check_fields(r, ctx->json, creor_project_fields, "")
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    name = creor_json_get(ctx->json, "name");
    desc = creor_json_get(ctx->json, "description");

    if (name == NULL) {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "MISSING_FIELD", "name",
                          "The 'name' field is required.");
    }

    if (name->type != CREOR_JSON_STRING || name->str.len == 0
        || name->str.len >= CREOR_NAME_MAX)
    {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR", "name",
                          "'name' must be a string of 1 to %d bytes.",
                          CREOR_NAME_MAX - 1);
    }

    if (desc && desc->type != CREOR_JSON_NULL
        && (desc->type != CREOR_JSON_STRING
            || desc->str.len >= sizeof(rec.description)))
    {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                          "description", "'description' must be a string of "
                          "at most %uz bytes.", sizeof(rec.description) - 1);
    }

    ngx_memzero(&rec, sizeof(rec));
    ngx_cpystrn((u_char *) rec.name, name->str.data, sizeof(rec.name));

    if (desc && desc->type == CREOR_JSON_STRING) {
        ngx_cpystrn((u_char *) rec.description, desc->str.data,
                    sizeof(rec.description));
    }

    rc = creor_store_write(&ctx->mcf->store, &txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    rc = creor_project_create(&ctx->mcf->store, txn, ctx->who.key.org, &rec,
                              id);

    if (creor_object_commit(r, txn, rc) != NGX_OK) {
        return NGX_DECLINED;
    }

    g = creor_gen_create(r);
    if (g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    sid.data = (u_char *) id;
    sid.len = ngx_strlen(id);

    creor_project_json(g, &ctx->who.org, &sid, &rec);

    return creor_send_json(r, NGX_HTTP_CREATED, g);
}


ngx_int_t
creor_projects_list(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    return creor_page_list(r, ctx, NULL, creor_projects_item, "p:%V:",
                           &ctx->who.org);
}


static ngx_int_t
creor_projects_item(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    MDB_val *key, MDB_val *val, yajl_gen g)
{
    char                 sid[CREOR_ID_MAX];
    ngx_str_t            id;
    creor_project_rec_t  rec;

    if (creor_project_decode(val, &rec) != CREOR_STORE_OK) {
        return NGX_ERROR;
    }

    /* "p:<org>:<id>" */

    id.data = (u_char *) key->mv_data + 3 + ctx->who.org.len;
    id.len = key->mv_size - 3 - ctx->who.org.len;

    if (id.len >= CREOR_ID_MAX) {
        return NGX_ERROR;
    }

    ngx_cpystrn((u_char *) sid, id.data, id.len + 1);

    if (!creor_scope_sees(ctx, sid, NULL)) {
        return NGX_DECLINED;
    }

    if (g) {
        creor_project_json(g, &ctx->who.org, &id, &rec);
    }

    return NGX_OK;
}


ngx_int_t
creor_projects_get(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    yajl_gen             g;
    creor_project_rec_t  rec;

    if (creor_object_load(r, ctx, &creor_project_object, NULL, &rec)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    g = creor_gen_create(r);
    if (g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    creor_project_json(g, &ctx->who.org, &ctx->ids[CREOR_ID_PROJECT], &rec);

    return creor_send_json(r, NGX_HTTP_OK, g);
}


static void
creor_project_json(yajl_gen g, ngx_str_t *org, ngx_str_t *id,
    creor_project_rec_t *rec)
{
    yajl_gen_map_open(g);
    creor_gen_kv_ngx(g, "id", id);
    creor_gen_kv(g, "object", "project");
    creor_gen_kv(g, "name", rec->name);
    creor_gen_kv_or_null(g, "description", rec->description);
    creor_gen_kv_ngx(g, "organizationId", org);
    creor_gen_kv_time(g, "createdAt", rec->created_ms);
    yajl_gen_map_close(g);
}
