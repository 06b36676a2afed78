
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The runs API (SPEC 8.2, 8.3): creation (JSON, or multipart with files:
 * creor_run_files.c), reads, lists, cancel and signal.  The records are
 * creor_run.c's, every change goes through the state machine
 * (creor_run_state.c), and what waits for a run's events is told after
 * each commit (creor_changed()).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


typedef struct {
    creor_arg_t            *status;
    ngx_str_t               agent;
} creor_runs_filter_t;


static ngx_int_t creor_runs_create_run(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, creor_runs_new_t *nr);
static ngx_int_t creor_runs_body(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_json_t **body, ngx_array_t *files);
static ngx_int_t creor_runs_validate(ngx_http_request_t *r,
    creor_json_t *body);
static ngx_int_t creor_runs_item(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    MDB_val *key, MDB_val *val, yajl_gen g);
static ngx_int_t creor_runs_tool_outputs(ngx_http_request_t *r,
    creor_run_t *run, creor_json_t *input);


static const char  *creor_run_fields[] = {
    "appId", "agentId", "inputs", "chatModelId", "workspaceId", "webhookUrl",
    "metadata", NULL
};

static const char  *creor_signal_fields[] = { "action", "input", NULL };

static const char  *creor_cancel_fields[] = { NULL };


/*
 * POST /v1/runs and POST /v1/apps/:appId/runs: JSON, or multipart with
 * "inputs" as a JSON string and repeated "files".
 */

ngx_int_t
creor_runs_create(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    ngx_int_t          rc;
    creor_runs_new_t  *nr;

    nr = ngx_pcalloc(r->pool, sizeof(creor_runs_new_t));
    if (nr == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    nr->fd = NGX_INVALID_FILE;
    nr->create = creor_runs_create_run;

    if (ngx_array_init(&nr->files, r->pool, 2, sizeof(creor_part_t))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ctx->multipart ? creor_runs_form(r, ctx, creor_run_fields,
                                          &nr->body, &nr->files)
                        : creor_runs_body(r, ctx, &nr->body, &nr->files);
    if (rc != NGX_OK) {
        return rc;
    }

    if (creor_runs_validate(r, nr->body) != NGX_OK) {
        return NGX_DECLINED;
    }

    /* a form's ids are checked once it is parsed, like a JSON body's */

    if (ctx->multipart && creor_scope_body(r, ctx, nr->body) != NGX_OK) {
        return NGX_DECLINED;
    }

    /* the URL's app (seed 002), else the body's, as the scope checked */

    nr->agent = ctx->ids[CREOR_ID_AGENT];

    if (nr->agent.len == 0) {
        if (creor_json_get(nr->body, "appId") == NULL
            && creor_json_get(nr->body, "agentId") == NULL)
        {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "MISSING_FIELD",
                              "appId", "The 'appId' field is required.");
        }

        return creor_fail(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND", "appId",
                          "No such app.");
    }

    rc = creor_ssrf_check_name(r, ctx, creor_json_get(nr->body, "webhookUrl"),
                               "webhookUrl", creor_runs_create);
    if (rc != NGX_OK) {
        return rc;
    }

    if (nr->files.nelts == 0) {
        return creor_runs_create_run(r, ctx, nr);
    }

    /* the attachments first, then nr->create */

    return creor_runs_upload(r, ctx, nr);
}


static ngx_int_t
creor_runs_create_run(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_runs_new_t *nr)
{
    int             rc;
    u_char         *p;
    MDB_txn        *txn;
    creor_run_t     run;
    creor_json_t   *v;

    rc = creor_store_write(&ctx->mcf->store, &txn);
    if (rc != CREOR_STORE_OK) {
        rc = creor_fail_store(r, rc);
        goto failed;
    }

    rc = creor_runs_start(r, ctx, &nr->agent,
                          creor_json_get(nr->body, "inputs"), 0, txn, &run);
    if (rc != NGX_OK) {
        creor_store_abort(txn);
        goto failed;
    }

    for (v = nr->body->child; v; v = v->next) {
        if (v->type == CREOR_JSON_NULL
            || (v->key.len == 6 && ngx_strncmp(v->key.data, "inputs", 6) == 0)
            || (v->key.len == 5 && ngx_strncmp(v->key.data, "appId", 5) == 0)
            || (v->key.len == 7
                && ngx_strncmp(v->key.data, "agentId", 7) == 0))
        {
            continue;
        }

        if (creor_json_set(run.doc, (char *) v->key.data, v) != NGX_OK) {
            creor_store_abort(txn);
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto failed;
        }
    }

    if (nr->list) {
        if (creor_json_set(run.doc, "files", nr->list) != NGX_OK) {
            creor_store_abort(txn);
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto failed;
        }

        /* the upload directory becomes the run's */

        p = ngx_pnalloc(r->pool, ctx->mcf->files_path.len + run.id.len + 2);
        if (p == NULL) {
            creor_store_abort(txn);
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto failed;
        }

        ngx_sprintf(p, "%V/%V%Z", &ctx->mcf->files_path, &run.id);

        if (ngx_rename_file(nr->dir.data, p) == NGX_FILE_ERROR) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, ngx_errno,
                          ngx_rename_file_n " \"%s\" to \"%s\" failed",
                          nr->dir.data, p);
            creor_store_abort(txn);
            rc = creor_fail_store(r, CREOR_STORE_ERROR);
            goto failed;
        }

        nr->dir.data = p;
    }

    rc = creor_runs_accepted(r, ctx, txn, &run);

    if (ctx->err_status < NGX_HTTP_INTERNAL_SERVER_ERROR) {
        return rc;
    }

failed:

    /* no run, no attachments */

    if (nr->list) {
        creor_runs_discard_files(r, &nr->dir, nr->list);
    }

    return rc;
}


/*
 * Commits a run that needs a worker and answers 202: creation, a signal,
 * an agent's follow-up.  This worker's dispatcher looks at it at once.
 */

ngx_int_t
creor_runs_accepted(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    MDB_txn *txn, creor_run_t *run)
{
    int       rc;
    yajl_gen  g;

    rc = creor_run_commit(&ctx->mcf->store, txn, run, 1);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    creor_changed(ctx->mcf, &run->id,
                  CREOR_CHANGED_EVENTS | CREOR_CHANGED_WORK);

    g = creor_gen_create(r);
    if (g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    yajl_gen_map_open(g);
    creor_gen_kv_ngx(g, "id", &run->id);
    creor_gen_kv(g, "object", "run");
    creor_gen_kv(g, "status", creor_run_status_name(run->hdr.status));
    creor_gen_kv(g, "appId", run->hdr.agent);
    creor_gen_kv(g, "agentId", run->hdr.agent);
    creor_run_doc_str(g, run, "appName", "appName");
    creor_gen_kv_or_null(g, "threadId", run->hdr.thread);
    creor_gen_kv_time(g, "createdAt", run->hdr.created_ms);
    creor_gen_kv_ngx(g, "request_id", &ctx->request_id);
    yajl_gen_map_close(g);

    return creor_send_json(r, NGX_HTTP_ACCEPTED, g);
}


static ngx_int_t
creor_runs_body(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_json_t **body, ngx_array_t *files)
{
    if (creor_check_fields(r, ctx->json, creor_run_fields, "") != NGX_OK) {
        return NGX_DECLINED;
    }

    *body = ctx->json;

    return NGX_OK;
}


static ngx_int_t
creor_runs_validate(ngx_http_request_t *r, creor_json_t *body)
{
    const char    **f;
    creor_json_t   *v;

    for (f = creor_run_fields; *f; f++) {
        v = creor_json_get(body, *f);

        if (v == NULL) {
            continue;
        }

        /* optional fields may be null, the app a run is of may not */

        if (v->type == CREOR_JSON_NULL) {
            if (ngx_strcmp(*f, "appId") == 0 || ngx_strcmp(*f, "agentId") == 0)
            {
                return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                                  *f, "'%s' must be an agent id.", *f);
            }

            continue;
        }

        if (ngx_strcmp(*f, "inputs") == 0
            || ngx_strcmp(*f, "metadata") == 0)
        {
            if (v->type != CREOR_JSON_OBJECT) {
                return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                                  *f, "'%s' must be an object.", *f);
            }

            continue;
        }

        if (v->type != CREOR_JSON_STRING || v->str.len == 0
            || v->str.len > 2048)
        {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                              *f, "'%s' must be a string of 1 to 2048 bytes.",
                              *f);
        }

        if (ngx_strcmp(*f, "webhookUrl") == 0
            && creor_ssrf_check_url(r, v, "webhookUrl", 2048) != NGX_OK)
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/*
 * Creates a queued run of an agent in txn: the API's runs, an agent's
 * "prompt" and its follow-ups.  A follow-up continues the agent's thread.
 */

ngx_int_t
creor_runs_start(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    ngx_str_t *agent_id, creor_json_t *inputs, ngx_flag_t followup,
    MDB_txn *txn, creor_run_t *run)
{
    int            rc;
    char           key[CREOR_STORE_KEY_MAX], id[CREOR_ID_MAX];
    u_char         err[128];
    MDB_val        val;
    creor_json_t       *agent, *v;
    creor_store_t      *st;
    creor_agent_hdr_t   hdr;

    st = &ctx->mcf->store;

    /* the agent is one the scope checked, or the one just created */

    ngx_snprintf((u_char *) key, sizeof(key), "a:%V:%V%Z", &ctx->who.org,
                 agent_id);

    rc = creor_store_get(st, txn, key, &val);

    if (rc == CREOR_STORE_NOTFOUND) {
        return creor_fail(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND", "appId",
                          "No such app.");
    }

    if (rc != CREOR_STORE_OK || val.mv_size <= sizeof(creor_agent_hdr_t)) {
        return creor_fail_store(r, rc == CREOR_STORE_OK ? CREOR_STORE_ERROR
                                                         : rc);
    }

    ngx_memcpy(&hdr, val.mv_data, sizeof(creor_agent_hdr_t));

    ngx_memzero(run, sizeof(creor_run_t));
    run->pool = r->pool;

    ngx_cpystrn((u_char *) run->hdr.project, (u_char *) hdr.project,
                CREOR_ID_MAX);

    if (followup) {
        ngx_cpystrn((u_char *) run->hdr.thread, (u_char *) hdr.thread,
                    CREOR_ID_MAX);
    }

    agent = creor_json_parse(r->pool,
                             (u_char *) val.mv_data
                             + sizeof(creor_agent_hdr_t),
                             val.mv_size - sizeof(creor_agent_hdr_t),
                             err, sizeof(err));
    if (agent == NULL) {
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    rc = creor_store_make_id(st, txn, id, sizeof(id), "run_");
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    run->id.data = ngx_pnalloc(r->pool, ngx_strlen(id));
    if (run->id.data == NULL) {
        return NGX_ERROR;
    }

    run->id.len = ngx_strlen(id);
    ngx_memcpy(run->id.data, id, run->id.len);

    if (run->hdr.thread[0] == '\0') {
        ngx_cpystrn((u_char *) run->hdr.thread, (u_char *) id, CREOR_ID_MAX);
    }

    ngx_snprintf((u_char *) run->key, sizeof(run->key), "r:%V:%s%Z",
                 &ctx->who.org, id);
    ngx_cpystrn((u_char *) run->hdr.org, ctx->who.org.data,
                ngx_min(ctx->who.org.len + 1, CREOR_ID_MAX));
    ngx_cpystrn((u_char *) run->hdr.agent, agent_id->data,
                ngx_min(agent_id->len + 1, CREOR_ID_MAX));

    run->hdr.status = CREOR_RUN_QUEUED;
    run->hdr.created_ms = creor_now_ms();
    run->sync = 1;

    run->doc = creor_json_new(r->pool, CREOR_JSON_OBJECT, NULL, 0);
    if (run->doc == NULL) {
        return NGX_ERROR;
    }

    if (inputs == NULL || inputs->type != CREOR_JSON_OBJECT) {
        inputs = creor_json_new(r->pool, CREOR_JSON_OBJECT, NULL, 0);
    }

    v = creor_json_get(agent, "name");

    if (creor_json_set(run->doc, "inputs", inputs) != NGX_OK
        || (v && creor_json_set(run->doc, "appName", v) != NGX_OK))
    {
        return NGX_ERROR;
    }

    /* for the usage aggregates; not part of the run's public object */

    v = creor_json_get(agent, "model");

    if ((v && v->type == CREOR_JSON_STRING
         && creor_json_set(run->doc, "agentModel", v) != NGX_OK)
        || creor_json_set(run->doc, "keyId",
                          creor_json_new(r->pool, CREOR_JSON_STRING,
                                         (char *) ctx->who.key_id.data,
                                         ctx->who.key_id.len))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_snprintf((u_char *) key, sizeof(key), "ri:%s%Z", id);

    rc = creor_store_put(st, txn, key, ctx->who.org.data, ctx->who.org.len,
                         0);

    if (rc == CREOR_STORE_OK) {
        ngx_snprintf((u_char *) key, sizeof(key), "t:%V:%s:%s%Z",
                     &ctx->who.org, run->hdr.thread, id);
        rc = creor_store_put(st, txn, key, "", 0, 0);
    }

    if (rc == CREOR_STORE_OK) {
        rc = creor_run_queue(st, txn, run, 1);
    }

    if (rc == CREOR_STORE_OK) {
        rc = creor_run_index(st, txn, run, 0);
    }

    if (rc == CREOR_STORE_OK) {
        rc = creor_run_event(st, txn, run, "run.queued", 10, NULL);
    }

    if (rc == CREOR_STORE_OK) {
        rc = creor_agent_track(st, txn, r->pool, run, 1);
    }

    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    return NGX_OK;
}


ngx_int_t
creor_runs_get(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    yajl_gen      g;
    creor_run_t   run;

    if (creor_object_load(r, ctx, &creor_run_object, NULL, &run) != NGX_OK) {
        return NGX_DECLINED;
    }

    g = creor_gen_create(r);
    if (g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    creor_run_json(g, &run);

    return creor_send_json(r, NGX_HTTP_OK, g);
}


/* GET /v1/runs and /v1/apps/:appId/runs: cursor or offset mode */

ngx_int_t
creor_runs_list(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    u_char               *p;
    ngx_int_t             rc, status;
    ngx_str_t             agent;
    creor_page_t          pg;
    creor_runs_filter_t  *f;

    ngx_memzero(&pg, sizeof(creor_page_t));

    f = ngx_pcalloc(r->pool, sizeof(creor_runs_filter_t));
    if (f == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    f->status = creor_arg(ctx, "status");

    if (f->status && creor_run_status_parse(&f->status->value) == NGX_ERROR)
    {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                          "status", "'status' must be pending, queued, "
                          "running, awaiting_input, completed, failed or "
                          "cancelled.");
    }

    /* /v1/apps/:agent/runs: the agent the scope checked */

    f->agent = ctx->ids[CREOR_ID_AGENT];

    ctx->data = f;

    p = ngx_pnalloc(r->pool, 64 + f->agent.len
                             + (f->status ? f->status->value.len : 0));
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pg.filters.data = p;
    pg.filters.len = ngx_sprintf(p, "app=%V&status=%d", &f->agent,
                                 f->status
                                 ? creor_run_status_parse(&f->status->value)
                                 : 0)
                     - p;

    /*
     * The index that holds exactly what this key sees: by agent (the
     * route's or the app-bound key's), by the key's project, or the
     * organization's; each also by status.
     */

    agent = f->agent.len ? f->agent : ctx->who.app;
    status = f->status ? creor_run_status_parse(&f->status->value) : 0;
    pg.exact = 1;

    pg.primary.data = ngx_pnalloc(r->pool, ctx->who.org.len + 3);
    pg.prefix.data = ngx_pnalloc(r->pool, ctx->who.org.len + agent.len
                                          + CREOR_ID_MAX + 32);
    if (pg.primary.data == NULL || pg.prefix.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pg.primary.len = ngx_sprintf(pg.primary.data, "r:%V:", &ctx->who.org)
                     - pg.primary.data;

    if (agent.len) {
        p = status ? ngx_sprintf(pg.prefix.data, "ras:%V:%V:%i:",
                                 &ctx->who.org, &agent, status)
                   : ngx_sprintf(pg.prefix.data, "ra:%V:%V:", &ctx->who.org,
                                 &agent);

    } else if (ctx->who.key.project[0]) {
        p = status ? ngx_sprintf(pg.prefix.data, "rps:%V:%s:%i:",
                                 &ctx->who.org, ctx->who.key.project, status)
                   : ngx_sprintf(pg.prefix.data, "rp:%V:%s:", &ctx->who.org,
                                 ctx->who.key.project);

    } else if (status) {
        p = ngx_sprintf(pg.prefix.data, "rs:%V:%i:", &ctx->who.org, status);

    } else {
        p = ngx_cpymem(pg.prefix.data, pg.primary.data, pg.primary.len);
        pg.primary.len = 0;
    }

    pg.prefix.len = p - pg.prefix.data;

    rc = creor_arg_uint(r, ctx, "offset", 0, 1000000, &pg.offset);
    if (rc == NGX_ERROR) {
        return NGX_DECLINED;
    }

    if (rc == NGX_OK) {

        /* offset mode (seed 002) */

        if (creor_arg(ctx, "cursor")) {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                              "offset", "'offset' and 'cursor' cannot be "
                              "combined.");
        }

        pg.offset_mode = 1;
    }

    if (creor_page_parse(r, ctx, &pg, 0) != NGX_OK) {
        return NGX_DECLINED;
    }

    return creor_page_send(r, ctx, &pg, creor_runs_item);
}


static ngx_int_t
creor_runs_item(ngx_http_request_t *r, ngx_creor_ctx_t *ctx, MDB_val *key,
    MDB_val *val, yajl_gen g)
{
    ngx_str_t             id, agent;
    creor_run_t           run;
    creor_run_hdr_t       hdr;
    creor_runs_filter_t  *f;

    if (val->mv_size <= sizeof(creor_run_hdr_t)) {
        return NGX_ERROR;
    }

    ngx_memcpy(&hdr, val->mv_data, sizeof(creor_run_hdr_t));
    hdr.agent[CREOR_ID_MAX - 1] = '\0';
    hdr.project[CREOR_ID_MAX - 1] = '\0';
    f = ctx->data;

    agent.data = (u_char *) hdr.agent;
    agent.len = ngx_strlen(hdr.agent);

    if ((f->status
         && (ngx_int_t) hdr.status
            != creor_run_status_parse(&f->status->value))
        || (f->agent.len
            && (ngx_strlen(hdr.agent) != f->agent.len
                || ngx_strncmp(hdr.agent, f->agent.data, f->agent.len) != 0))
        || !creor_scope_sees(ctx, hdr.project, &agent))
    {
        return NGX_DECLINED;
    }

    if (g == NULL) {
        return NGX_OK;
    }

    id.data = (u_char *) key->mv_data + 3 + ctx->who.org.len;
    id.len = key->mv_size - 3 - ctx->who.org.len;

    if (creor_run_load(&ctx->mcf->store,
                       creor_store_read(&ctx->mcf->store), r->pool,
                       &ctx->who.org, &id, &run)
        != CREOR_STORE_OK)
    {
        return NGX_ERROR;
    }

    creor_run_json(g, &run);

    return NGX_OK;
}


ngx_int_t
creor_runs_cancel(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int           rc;
    MDB_txn      *txn;
    yajl_gen      g;
    creor_run_t   run;

    if (creor_check_fields(r, ctx->json, creor_cancel_fields, "") != NGX_OK) {
        return NGX_DECLINED;
    }

    if (creor_object_load(r, ctx, &creor_run_object, &txn, &run)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    if (creor_run_terminal(run.hdr.status)) {
        creor_store_abort(txn);
        return creor_fail(r, NGX_HTTP_CONFLICT, "RUN_NOT_CANCELLABLE", NULL,
                          "The run is already %s.",
                          creor_run_status_name(run.hdr.status));
    }

    rc = creor_run_event(&ctx->mcf->store, txn, &run, "run.cancelled", 13,
                         NULL);
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return creor_fail_store(r, rc);
    }

    /* whichever worker holds the leg sees this and closes its call */

    rc = creor_run_commit(&ctx->mcf->store, txn, &run, 1);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    creor_changed(ctx->mcf, &run.id, CREOR_CHANGED_EVENTS);

    g = creor_gen_create(r);
    if (g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    yajl_gen_map_open(g);
    creor_gen_kv_bool(g, "success", 1);
    yajl_gen_map_close(g);

    return creor_send_json(r, NGX_HTTP_OK, g);
}


/* POST /v1/runs/:id/signal {action, input} (seed 003) */

ngx_int_t
creor_runs_signal(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int            rc;
    MDB_txn       *txn;
    creor_run_t    run;
    creor_json_t  *action, *sig, *input;

    if (creor_check_fields(r, ctx->json, creor_signal_fields, "") != NGX_OK) {
        return NGX_DECLINED;
    }

    action = creor_json_get(ctx->json, "action");

    if (action == NULL) {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "MISSING_FIELD", "action",
                          "The 'action' field is required.");
    }

    if (action->type != CREOR_JSON_STRING
        || (ngx_strcmp(action->str.data, "approve") != 0
            && ngx_strcmp(action->str.data, "reject") != 0
            && ngx_strcmp(action->str.data, "submit_input") != 0))
    {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                          "action", "'action' must be approve, reject or "
                          "submit_input.");
    }

    input = creor_json_get(ctx->json, "input");

    sig = creor_json_new(r->pool, CREOR_JSON_OBJECT, NULL, 0);
    if (sig == NULL
        || creor_json_set(sig, "action", action) != NGX_OK
        || (input && creor_json_set(sig, "input", input) != NGX_OK))
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (creor_object_load(r, ctx, &creor_run_object, &txn, &run)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    if (run.hdr.status != CREOR_RUN_AWAITING_INPUT) {
        creor_store_abort(txn);
        return creor_fail(r, NGX_HTTP_CONFLICT, "RUN_NOT_AWAITING_INPUT",
                          NULL, "The run is %s, not awaiting input.",
                          creor_run_status_name(run.hdr.status));
    }

    if (ngx_strcmp(action->str.data, "reject") != 0
        && creor_runs_tool_outputs(r, &run, input) != NGX_OK)
    {
        creor_store_abort(txn);
        return NGX_DECLINED;
    }

    rc = creor_run_event(&ctx->mcf->store, txn, &run, "run.signal", 10, sig);
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return creor_fail_store(r, rc);
    }

    return creor_runs_accepted(r, ctx, txn, &run);
}


/*
 * A run waiting for tool calls (the built-in executor's) goes on with
 * one output for each call: input.tool_outputs [{tool_call_id, output}].
 * NGX_DECLINED: the 400 is sent.
 */

static ngx_int_t
creor_runs_tool_outputs(ngx_http_request_t *r, creor_run_t *run,
    creor_json_t *input)
{
    ngx_uint_t     n;
    const char    *invalid;
    creor_json_t  *wait, *calls, *outs, *o, *id, *c, *cid;

    wait = creor_json_get(run->doc, "awaitingInput");
    calls = creor_json_get(wait, "tool_calls");

    if (calls == NULL || calls->type != CREOR_JSON_ARRAY) {
        return NGX_OK;
    }

    outs = creor_json_get(input, "tool_outputs");

    if (outs == NULL || outs->type != CREOR_JSON_ARRAY) {
        invalid = "The run waits for tool calls: 'input.tool_outputs' must "
                  "be an array with an output for each call.";
        goto failed;
    }

    for (o = outs->child; o; o = o->next) {
        id = creor_json_get(o, "tool_call_id");

        if (o->type != CREOR_JSON_OBJECT
            || id == NULL || id->type != CREOR_JSON_STRING
            || creor_json_get(o, "output") == NULL
            || creor_json_get(o, "output")->type != CREOR_JSON_STRING)
        {
            invalid = "Each tool output is {\"tool_call_id\": string, "
                      "\"output\": string}.";
            goto failed;
        }
    }

    /* each call has exactly one output, and no output is for another */

    for (c = calls->child; c; c = c->next) {
        cid = creor_json_get(c, "id");
        n = 0;

        for (o = outs->child; o && cid && cid->type == CREOR_JSON_STRING;
             o = o->next)
        {
            id = creor_json_get(o, "tool_call_id");

            n += (id->str.len == cid->str.len
                  && ngx_memcmp(id->str.data, cid->str.data, id->str.len)
                     == 0);
        }

        if (n != 1) {
            invalid = "Each tool call needs exactly one output "
                      "(tool_call_id).";
            goto failed;
        }
    }

    if (outs->count != calls->count) {
        invalid = "An output names no pending tool call.";
        goto failed;
    }

    return NGX_OK;

failed:

    (void) creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                      "input.tool_outputs", "%s", invalid);
    return NGX_DECLINED;
}

