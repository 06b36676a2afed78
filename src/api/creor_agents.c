
/*
 * Copyright (C) ngx_creor_module authors
 *
 * /v1/agents (SPEC 8.1): create, list, read, update, delete, follow-up.
 * The records are creor_agent.c's; GET sends the stored JSON as is.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_STRING_MAX        65536
#define CREOR_ARRAY_MAX         100


typedef struct {
    const char     *name;
    ngx_uint_t      type;           /* CREOR_JSON_STRING or _OBJECT */
    size_t          max;
    ngx_flag_t      nullable;
} creor_agent_field_t;


typedef struct {
    creor_arg_t    *project;
    creor_arg_t    *status;
} creor_agents_filter_t;


static ngx_int_t creor_agents_prompt(ngx_http_request_t *r,
    creor_json_t *prompt, creor_json_t **inputs);
static ngx_int_t creor_agent_apply(ngx_http_request_t *r,
    creor_json_t *agent, creor_json_t *body);
static ngx_int_t creor_agent_settings(ngx_http_request_t *r,
    creor_json_t *settings, creor_json_t *patch);
static ngx_int_t creor_agents_answer(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, ngx_uint_t status);
static ngx_int_t creor_agents_item(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, MDB_val *key, MDB_val *val, yajl_gen g);


static creor_agent_field_t  creor_agent_fields[] = {
    { "name", CREOR_JSON_STRING, 256, 0 },
    { "model", CREOR_JSON_STRING, 256, 0 },
    { "description", CREOR_JSON_STRING, 4096, 1 },
    { "systemPrompt", CREOR_JSON_STRING, CREOR_STRING_MAX, 1 },
    { "repository", CREOR_JSON_STRING, 1024, 1 },
    { "settings", CREOR_JSON_OBJECT, 0, 0 },
    { NULL, 0, 0, 0 }
};

static const char  *creor_agent_body[] = {
    "name", "model", "description", "systemPrompt", "repository",
    "settings", NULL
};

/* a new agent may start a run at once (seed 000: "launch a new agent") */
static const char  *creor_agent_create_body[] = {
    "name", "model", "description", "systemPrompt", "repository",
    "settings", "prompt", NULL
};

static const char  *creor_followup_body[] = { "prompt", NULL };

static const char  *creor_agent_settings_fields[] = {
    "temperature", "maxTokens", "toolsEnabled", "allowedToolCategories",
    "knowledgeBaseIds", "contextWindowSize", "customToolIds", NULL
};

static const char  *creor_agent_statuses[] = {
    "idle", "queued", "running", "completed", "failed", NULL
};

/* the route's agent, which the scope checked: gone is not found */
static creor_object_t  creor_agent_object = {
    CREOR_ID_AGENT, "agent", creor_agent_load
};


ngx_int_t
creor_agents_create(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    ngx_int_t      rc;
    MDB_txn       *txn;
    ngx_str_t      json;
    creor_run_t    run;
    creor_json_t  *agent, *v, *prompt, *inputs;

    if (creor_check_fields(r, ctx->json, creor_agent_create_body, "")
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    prompt = creor_json_get(ctx->json, "prompt");
    inputs = NULL;

    if (prompt) {
        rc = creor_agents_prompt(r, prompt, &inputs);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (creor_json_get(ctx->json, "name") == NULL) {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "MISSING_FIELD", "name",
                          "The 'name' field is required.");
    }

    if (creor_json_get(ctx->json, "model") == NULL) {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "MISSING_FIELD", "model",
                          "The 'model' field is required.");
    }

    agent = creor_json_new(r->pool, CREOR_JSON_OBJECT, NULL, 0);
    if (agent == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v = creor_json_new(r->pool, CREOR_JSON_OBJECT, NULL, 0);
    if (v == NULL || creor_json_set(agent, "settings", v) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (creor_agent_apply(r, agent, ctx->json) != NGX_OK) {
        return NGX_DECLINED;
    }

    rc = creor_store_write(&ctx->mcf->store, &txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    /* the key's project, or X-Project-Id's, checked by the scope */

    if (ctx->who.project.len == 0) {
        creor_store_abort(txn);
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "MISSING_FIELD",
                          "projectId", "Creating an agent needs a project: "
                          "a key bound to one, or an X-Project-Id header.");
    }

    rc = creor_agent_create(&ctx->mcf->store, txn, r->pool, &ctx->who.org,
                            &ctx->who.project, agent, &json);

    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return creor_fail_store(r, rc);
    }

    if (prompt == NULL) {
        if (creor_object_commit(r, txn, rc) != NGX_OK) {
            return NGX_DECLINED;
        }

        return creor_send_raw(r, NGX_HTTP_CREATED, json.data, json.len);
    }

    /* launch: the run and the agent that carries its id, in one commit */

    v = creor_json_get(agent, "id");

    rc = creor_runs_start(r, ctx, &v->str, inputs, 0, txn, &run);
    if (rc != NGX_OK) {
        creor_store_abort(txn);
        return rc;
    }

    rc = creor_run_commit(&ctx->mcf->store, txn, &run, 1);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    creor_changed(ctx->mcf, &run.id,
                  CREOR_CHANGED_EVENTS | CREOR_CHANGED_WORK);

    /* the answer is the new agent as committed, with the run's id */

    ctx->ids[CREOR_ID_AGENT] = v->str;

    return creor_agents_answer(r, ctx, NGX_HTTP_CREATED);
}


/* the inputs of the run a prompt starts, once it is a prompt */

static ngx_int_t
creor_agents_prompt(ngx_http_request_t *r, creor_json_t *prompt,
    creor_json_t **inputs)
{
    if (prompt->type != CREOR_JSON_STRING || prompt->str.len == 0
        || prompt->str.len > CREOR_STRING_MAX)
    {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                          "prompt", "'prompt' must be a string of 1 to %d "
                          "bytes.", CREOR_STRING_MAX);
    }

    *inputs = creor_json_new(r->pool, CREOR_JSON_OBJECT, NULL, 0);

    if (*inputs == NULL
        || creor_json_set(*inputs, "prompt", prompt) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


/* validates body's members and sets them on agent; settings are merged */

static ngx_int_t
creor_agent_apply(ngx_http_request_t *r, creor_json_t *agent,
    creor_json_t *body)
{
    u_char               *slash;
    creor_json_t         *v;
    creor_agent_field_t  *f;

    for (f = creor_agent_fields; f->name; f++) {

        v = creor_json_get(body, f->name);
        if (v == NULL) {
            continue;
        }

        if (v->type == CREOR_JSON_NULL && f->nullable) {
            creor_json_unset(agent, f->name);
            continue;
        }

        if (v->type != f->type) {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                              f->name, "'%s' must be %s, not %s.", f->name,
                              f->type == CREOR_JSON_STRING
                              ? "a string" : "an object",
                              creor_json_type_name(v));
        }

        if (f->type == CREOR_JSON_OBJECT) {
            if (creor_agent_settings(r, creor_json_get(agent, f->name), v)
                != NGX_OK)
            {
                return NGX_DECLINED;
            }

            continue;
        }

        if (v->str.len > f->max || (!f->nullable && v->str.len == 0)) {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                              f->name, "'%s' must be %s%uz bytes at most.",
                              f->name, f->nullable ? "" : "1 to ", f->max);
        }

        if (ngx_strcmp(f->name, "model") == 0) {
            slash = ngx_strlchr(v->str.data, v->str.data + v->str.len, '/');

            if (slash == NULL || slash == v->str.data
                || slash == v->str.data + v->str.len - 1)
            {
                return creor_fail(r, NGX_HTTP_BAD_REQUEST,
                                  "VALIDATION_ERROR", "model",
                                  "'model' must be \"provider/model\".");
            }
        }

        v = creor_json_new(r->pool, CREOR_JSON_STRING, (char *) v->str.data,
                           v->str.len);

        if (creor_json_set(agent, f->name, v) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
creor_agent_settings(ngx_http_request_t *r, creor_json_t *settings,
    creor_json_t *patch)
{
    u_char        *param;
    ngx_str_t      name;
    creor_json_t  *v, *c, *next;

    if (creor_check_fields(r, patch, creor_agent_settings_fields, "settings.")
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    for (v = patch->child; v; v = next) {
        next = v->next;
        name = v->key;

        param = ngx_pnalloc(r->pool, sizeof("settings.") + name.len);
        if (param == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(param, "settings.%V%Z", &name);

        if (v->type == CREOR_JSON_NULL) {
            creor_json_unset(settings, (char *) name.data);
            continue;
        }

        switch (name.data[0]) {

        case 't':
            if (name.data[1] == 'e') {     /* temperature */
                if (v->type != CREOR_JSON_NUMBER || v->num < 0
                    || v->num > 2)
                {
                    return creor_fail(r, NGX_HTTP_BAD_REQUEST,
                                      "VALIDATION_ERROR", (char *) param,
                                      "'%s' must be a number from 0 to 2.",
                                      param);
                }

            } else if (v->type != CREOR_JSON_TRUE
                       && v->type != CREOR_JSON_FALSE)
            {
                return creor_fail(r, NGX_HTTP_BAD_REQUEST,
                                  "VALIDATION_ERROR", (char *) param,
                                  "'%s' must be a boolean.", param);
            }

            break;

        case 'm':                          /* maxTokens */
        case 'c':
            if (name.data[0] == 'c' && name.data[1] == 'u') {
                goto strings;              /* customToolIds */
            }

            if (!creor_json_is_int(v) || v->num < 1 || v->num > 10000000) {
                return creor_fail(r, NGX_HTTP_BAD_REQUEST,
                                  "VALIDATION_ERROR", (char *) param,
                                  "'%s' must be a positive integer.",
                                  param);
            }

            break;

        default:                           /* the arrays of strings */

        strings:

            if (v->type != CREOR_JSON_ARRAY || v->count > CREOR_ARRAY_MAX) {
                return creor_fail(r, NGX_HTTP_BAD_REQUEST,
                                  "VALIDATION_ERROR", (char *) param,
                                  "'%s' must be an array of at most %d "
                                  "strings.", param, CREOR_ARRAY_MAX);
            }

            for (c = v->child; c; c = c->next) {
                if (c->type != CREOR_JSON_STRING || c->str.len == 0
                    || c->str.len > 256)
                {
                    return creor_fail(r, NGX_HTTP_BAD_REQUEST,
                                      "VALIDATION_ERROR", (char *) param,
                                      "'%s' must hold strings of 1 to 256 "
                                      "bytes.", param);
                }
            }

            break;
        }

        if (creor_json_set(settings, (char *) name.data, v) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


ngx_int_t
creor_agents_get(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    return creor_agents_answer(r, ctx, NGX_HTTP_OK);
}


/* the stored object as it is: GET does not parse it */

static ngx_int_t
creor_agents_answer(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    ngx_uint_t status)
{
    creor_agent_t  a;

    if (creor_object_load(r, ctx, &creor_agent_object, NULL, &a) != NGX_OK) {
        return NGX_DECLINED;
    }

    return creor_send_raw(r, status, a.json.data, a.json.len);
}


ngx_int_t
creor_agents_update(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    ngx_int_t       rc;
    char            now[CREOR_TIME_LEN];
    size_t          n;
    u_char          err[128];
    MDB_txn        *txn;
    ngx_str_t       json;
    creor_json_t   *agent;
    creor_agent_t   a;

    if (creor_check_fields(r, ctx->json, creor_agent_body, "") != NGX_OK) {
        return NGX_DECLINED;
    }

    /* read, merge and write in one transaction: no lost updates */

    if (creor_object_load(r, ctx, &creor_agent_object, &txn, &a) != NGX_OK) {
        return NGX_DECLINED;
    }

    agent = creor_json_parse(r->pool, a.json.data, a.json.len, err,
                             sizeof(err));

    if (agent == NULL || agent->type != CREOR_JSON_OBJECT) {
        creor_store_abort(txn);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "creor: agent record a:%V:%V is damaged: %s",
                      &ctx->who.org, &ctx->ids[CREOR_ID_AGENT], err);
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    if (creor_agent_apply(r, agent, ctx->json) != NGX_OK) {
        creor_store_abort(txn);
        return NGX_DECLINED;
    }

    n = creor_time_rfc3339(now, creor_now_ms());

    if (creor_json_set(agent, "updatedAt",
                       creor_json_new(r->pool, CREOR_JSON_STRING, now, n))
        != NGX_OK)
    {
        creor_store_abort(txn);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = creor_agent_save(&ctx->mcf->store, txn, r->pool, &ctx->who.org,
                          agent, &a.hdr, &json);

    if (creor_object_commit(r, txn, rc) != NGX_OK) {
        return NGX_DECLINED;
    }

    return creor_send_raw(r, NGX_HTTP_OK, json.data, json.len);
}


/* POST /v1/agents/:id/followup {prompt}: a run continuing the thread */

ngx_int_t
creor_agents_followup(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    ngx_int_t       rc;
    MDB_txn        *txn;
    creor_run_t     run;
    creor_json_t   *prompt, *inputs;
    creor_agent_t   a;

    if (creor_check_fields(r, ctx->json, creor_followup_body, "") != NGX_OK) {
        return NGX_DECLINED;
    }

    prompt = creor_json_get(ctx->json, "prompt");

    if (prompt == NULL) {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "MISSING_FIELD", "prompt",
                          "The 'prompt' field is required.");
    }

    rc = creor_agents_prompt(r, prompt, &inputs);
    if (rc != NGX_OK) {
        return rc;
    }

    if (creor_object_load(r, ctx, &creor_agent_object, &txn, &a) != NGX_OK) {
        return NGX_DECLINED;
    }

    rc = creor_runs_start(r, ctx, &ctx->ids[CREOR_ID_AGENT], inputs, 1, txn,
                          &run);
    if (rc != NGX_OK) {
        creor_store_abort(txn);
        return rc;
    }

    return creor_runs_accepted(r, ctx, txn, &run);
}


/* the agent's records go at once, its active runs by and by */

ngx_int_t
creor_agents_delete(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    ngx_int_t   rc;
    ngx_flag_t  more;

    rc = creor_agent_delete(&ctx->mcf->store, r->pool, &ctx->who.org,
                            &ctx->ids[CREOR_ID_AGENT], &more,
                            r->connection->log);

    if (rc == CREOR_STORE_NOTFOUND) {
        return creor_fail(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND", NULL,
                          "No such agent.");
    }

    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    creor_changed(ctx->mcf, NULL,
                  CREOR_CHANGED_EVENTS | (more ? CREOR_CHANGED_REAP : 0));

    return creor_object_deleted(r, &ctx->ids[CREOR_ID_AGENT], "agent");
}


ngx_int_t
creor_agents_list(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    u_char                 *p;
    ngx_str_t               project, *status;
    const char             *fmt, **s;
    creor_page_t            pg;
    creor_agents_filter_t  *f;

    ngx_memzero(&pg, sizeof(creor_page_t));

    f = ngx_pcalloc(r->pool, sizeof(creor_agents_filter_t));
    if (f == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    f->project = creor_arg(ctx, "projectId");
    f->status = creor_arg(ctx, "status");

    if (f->project
        && !creor_is_id((char *) f->project->value.data,
                        f->project->value.len, "proj_"))
    {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                          "projectId", "'projectId' must be a project id.");
    }

    if (f->status) {
        for (s = creor_agent_statuses; *s; s++) {
            if (ngx_strlen(*s) == f->status->value.len
                && ngx_strncmp(*s, f->status->value.data,
                               f->status->value.len) == 0)
            {
                break;
            }
        }

        if (*s == NULL) {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                              "status", "'status' must be idle, queued, "
                              "running, completed or failed.");
        }
    }

    /* what a cursor is bound to, besides organization and route */

    p = ngx_pnalloc(r->pool, 64 + (f->project ? f->project->value.len : 0)
                             + (f->status ? f->status->value.len : 0));
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pg.filters.data = p;
    pg.filters.len = ngx_sprintf(p, "projectId=%V&status=%V",
                                 f->project ? &f->project->value
                                            : &ctx->route_name,
                                 f->status ? &f->status->value
                                           : &ctx->route_name)
                     - p;

    /*
     * The index that holds what this key sees with these filters: by
     * project (the filter's or the key's) and by status.  An app-bound
     * key sees one agent of its project: its walk filters the project's.
     */

    if (f->project) {
        project = f->project->value;

    } else {
        project.data = (u_char *) ctx->who.key.project;
        project.len = ngx_strlen(ctx->who.key.project);
    }

    status = f->status ? &f->status->value : NULL;

    pg.exact = ctx->who.app.len == 0
               && (ctx->who.key.project[0] == '\0'
                   || (project.len == ngx_strlen(ctx->who.key.project)
                       && ngx_strncmp(project.data, ctx->who.key.project,
                                      project.len) == 0));

    pg.pages = 1;

    if (project.len || status) {
        pg.primary.data = ngx_pnalloc(r->pool, ctx->who.org.len + 3);
        if (pg.primary.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        pg.primary.len = ngx_sprintf(pg.primary.data, "a:%V:", &ctx->who.org)
                         - pg.primary.data;
    }

    ctx->data = f;

    /* the index's key; a format ignores the arguments it does not use */

    fmt = project.len ? (status ? "aps:%V:%V:%V:" : "ap:%V:%V:")
                      : (status ? "as:%V:%V:" : "a:%V:");

    return creor_page_list(r, ctx, &pg, creor_agents_item, fmt,
                           &ctx->who.org, project.len ? &project : status,
                           status);
}


static ngx_int_t
creor_agents_item(ngx_http_request_t *r, ngx_creor_ctx_t *ctx, MDB_val *key,
    MDB_val *val, yajl_gen g)
{
    u_char                  err[128];
    ngx_str_t               id;
    creor_json_t           *agent;
    creor_agent_t           a;
    creor_agents_filter_t  *f;

    if (creor_agent_decode(val, &a) != CREOR_STORE_OK) {
        return NGX_ERROR;
    }

    f = ctx->data;

    id.data = (u_char *) key->mv_data + 3 + ctx->who.org.len;
    id.len = key->mv_size - 3 - ctx->who.org.len;

    if (!creor_scope_sees(ctx, a.hdr.project, &id)
        || (f->project
            && (ngx_strlen(a.hdr.project) != f->project->value.len
                || ngx_strncmp(a.hdr.project, f->project->value.data,
                               f->project->value.len) != 0))
        || (f->status
            && (ngx_strlen(a.hdr.status) != f->status->value.len
                || ngx_strncmp(a.hdr.status, f->status->value.data,
                               f->status->value.len) != 0)))
    {
        return NGX_DECLINED;
    }

    if (g == NULL) {
        return NGX_OK;
    }

    agent = creor_json_parse(r->pool, a.json.data, a.json.len, err,
                             sizeof(err));
    if (agent == NULL) {
        return NGX_ERROR;
    }

    creor_gen_value(g, agent);

    return NGX_OK;
}
