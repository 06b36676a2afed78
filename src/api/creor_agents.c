
/*
 * Copyright (C) ngx_creor_module authors
 *
 * /v1/agents (SPEC 8.1).  An agent is stored as "a:<org>:<agent id>":
 * a small fixed header (project, status) that lists and scope checks read
 * without parsing, then the agent's public JSON, which GET sends as is.
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


static ngx_int_t creor_agent_apply(ngx_http_request_t *r,
    creor_json_t *agent, creor_json_t *body);
static ngx_int_t creor_agent_settings(ngx_http_request_t *r,
    creor_json_t *settings, creor_json_t *patch);
static ngx_int_t creor_agent_put(creor_store_t *st, MDB_txn *txn,
    ngx_pool_t *pool, ngx_str_t *org, creor_json_t *agent,
    creor_agent_hdr_t *hdr, ngx_str_t *json);
static ngx_int_t creor_agent_key(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    ngx_str_t *id, char *key);
static ngx_int_t creor_agents_send(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, ngx_str_t *id, ngx_uint_t status);
static ngx_int_t creor_agent_load(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, MDB_txn *txn, char *key, MDB_val *val);
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

/* the order of the public object */
static const char  *creor_agent_order[] = {
    "id", "object", "name", "description", "model", "systemPrompt",
    "settings", "repository", "status", "runId", "organizationId",
    "projectId", "createdAt", "updatedAt", NULL
};

static const char  *creor_agent_statuses[] = {
    "idle", "queued", "running", "completed", "failed", NULL
};


ngx_int_t
creor_agents_create(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int                 rc;
    char                id[CREOR_ID_MAX], now[CREOR_TIME_LEN];
    size_t              n;
    MDB_txn            *txn;
    ngx_str_t           json, sid;
    creor_run_t         run;
    creor_json_t       *agent, *v, *prompt, *inputs;
    creor_agent_hdr_t   hdr;

    if (creor_check_fields(r, ctx->json, creor_agent_create_body, "")
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    prompt = creor_json_get(ctx->json, "prompt");

    if (prompt
        && (prompt->type != CREOR_JSON_STRING || prompt->str.len == 0
            || prompt->str.len > CREOR_STRING_MAX))
    {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                          "prompt", "'prompt' must be a string of 1 to %d "
                          "bytes.", CREOR_STRING_MAX);
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

    rc = creor_store_make_id(&ctx->mcf->store, txn, id, sizeof(id),
                             "agent_");
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return creor_fail_store(r, rc);
    }

    n = creor_time_rfc3339(now, creor_now_ms());

    if (creor_json_set(agent, "id",
                       creor_json_new(r->pool, CREOR_JSON_STRING, id,
                                      ngx_strlen(id))) != NGX_OK
        || creor_json_set(agent, "object",
                          creor_json_new(r->pool, CREOR_JSON_STRING, "agent",
                                         5)) != NGX_OK
        || creor_json_set(agent, "status",
                          creor_json_new(r->pool, CREOR_JSON_STRING, "idle",
                                         4)) != NGX_OK
        || creor_json_set(agent, "organizationId",
                          creor_json_new(r->pool, CREOR_JSON_STRING,
                                         (char *) ctx->who.org.data,
                                         ctx->who.org.len)) != NGX_OK
        || creor_json_set(agent, "projectId",
                          creor_json_new(r->pool, CREOR_JSON_STRING,
                                         (char *) ctx->who.project.data,
                                         ctx->who.project.len)) != NGX_OK
        || creor_json_set(agent, "createdAt",
                          creor_json_new(r->pool, CREOR_JSON_STRING, now, n))
           != NGX_OK
        || creor_json_set(agent, "updatedAt",
                          creor_json_new(r->pool, CREOR_JSON_STRING, now, n))
           != NGX_OK)
    {
        creor_store_abort(txn);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(&hdr, sizeof(creor_agent_hdr_t));

    rc = creor_agent_put(&ctx->mcf->store, txn, r->pool, &ctx->who.org,
                         agent, &hdr, &json);
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return creor_fail_store(r, rc);
    }

    if (prompt == NULL) {
        rc = creor_store_commit(txn);
        if (rc != CREOR_STORE_OK) {
            return creor_fail_store(r, rc);
        }

        return creor_send_raw(r, NGX_HTTP_CREATED, json.data, json.len);
    }

    /* launch: the run and the agent that carries its id, in one commit */

    inputs = creor_json_new(r->pool, CREOR_JSON_OBJECT, NULL, 0);
    if (inputs == NULL || creor_json_set(inputs, "prompt", prompt) != NGX_OK)
    {
        creor_store_abort(txn);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    sid.data = (u_char *) id;
    sid.len = ngx_strlen(id);

    rc = creor_runs_start(r, ctx, &sid, inputs, 0, txn, &run);
    if (rc != NGX_OK) {
        creor_store_abort(txn);
        return rc;
    }

    rc = creor_run_commit(&ctx->mcf->store, txn, &run, 1);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    creor_changed(ctx->mcf, NULL, CREOR_CHANGED_WORK);

    return creor_agents_send(r, ctx, &sid, NGX_HTTP_CREATED);
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


/*
 * Writes agent with its header (run and thread as hdr has them); json
 * receives the public object.
 */

static ngx_int_t
creor_agent_put(creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool,
    ngx_str_t *org, creor_json_t *agent, creor_agent_hdr_t *hdr,
    ngx_str_t *json)
{
    int            rc;
    char           key[CREOR_STORE_KEY_MAX], sorg[CREOR_ID_MAX],
                   id[CREOR_ID_MAX], old[CREOR_AGENT_STATUS_MAX];
    u_char        *buf;
    yajl_gen       g;
    ngx_str_t      out;
    const char   **name;
    creor_json_t  *v, *settings;

    settings = creor_json_get(agent, "settings");

    if (creor_json_get(settings, "contextWindowSize") == NULL
        && creor_json_set(settings, "contextWindowSize",
                          creor_json_new(pool, CREOR_JSON_NUMBER, "20", 2))
           != NGX_OK)
    {
        return CREOR_STORE_ERROR;
    }

    g = creor_gen_pool(pool);
    if (g == NULL) {
        return CREOR_STORE_ERROR;
    }

    yajl_gen_map_open(g);

    for (name = creor_agent_order; *name; name++) {
        v = creor_json_get(agent, *name);

        creor_gen_str(g, *name);

        if (v == NULL) {
            yajl_gen_null(g);

        } else {
            creor_gen_value(g, v);
        }
    }

    yajl_gen_map_close(g);

    if (creor_gen_result_pool(pool, g, &out) != NGX_OK) {
        return CREOR_STORE_ERROR;
    }

    v = creor_json_get(agent, "projectId");
    ngx_cpystrn((u_char *) hdr->project, v->str.data,
                ngx_min(v->str.len + 1, sizeof(hdr->project)));

    ngx_memcpy(old, hdr->status, sizeof(old));
    old[sizeof(old) - 1] = '\0';

    v = creor_json_get(agent, "status");
    ngx_cpystrn((u_char *) hdr->status, v->str.data,
                ngx_min(v->str.len + 1, sizeof(hdr->status)));

    buf = ngx_pnalloc(pool, sizeof(creor_agent_hdr_t) + out.len);
    if (buf == NULL) {
        return CREOR_STORE_ERROR;
    }

    ngx_memcpy(buf, hdr, sizeof(creor_agent_hdr_t));
    ngx_memcpy(buf + sizeof(creor_agent_hdr_t), out.data, out.len);

    v = creor_json_get(agent, "id");
    ngx_snprintf((u_char *) key, sizeof(key), "a:%V:%V%Z", org, &v->str);

    if (json) {
        *json = out;
    }

    rc = creor_store_put(st, txn, key, buf,
                         sizeof(creor_agent_hdr_t) + out.len, 0);

    if (rc != CREOR_STORE_OK || ngx_strcmp(old, hdr->status) == 0) {
        return rc;
    }

    /*
     * A new agent (no status before) or a new status: the counts by
     * status and the indexes move in the same transaction.
     */

    rc = creor_counts_agent(st, txn, old[0] ? old : NULL, hdr->status);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    ngx_cpystrn((u_char *) sorg, org->data,
                ngx_min(org->len + 1, sizeof(sorg)));
    ngx_cpystrn((u_char *) id, v->str.data, ngx_min(v->str.len + 1,
                                                     sizeof(id)));

    return creor_index_agent(st, txn, sorg, hdr->project, id,
                             old[0] ? old : NULL, hdr->status);
}


/*
 * An agent's status is its latest run's (SPEC 8.1).  latest: run is
 * a new run of the agent; otherwise it counts only if still the latest.
 */

ngx_int_t
creor_agent_track(creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool,
    creor_run_t *run, ngx_flag_t latest)
{
    int                 rc;
    char                key[CREOR_STORE_KEY_MAX];
    u_char              err[128];
    MDB_val             val;
    ngx_str_t           org;
    const char         *status, *event;
    creor_json_t       *agent, *was;
    creor_agent_hdr_t   hdr;

    ngx_snprintf((u_char *) key, sizeof(key), "a:%s:%s%Z", run->hdr.org,
                 run->hdr.agent);

    rc = creor_store_get(st, txn, key, &val);

    if (rc == CREOR_STORE_NOTFOUND) {
        return CREOR_STORE_OK;          /* deleted: its runs live on */
    }

    if (rc != CREOR_STORE_OK || val.mv_size <= sizeof(creor_agent_hdr_t)) {
        return CREOR_STORE_ERROR;
    }

    ngx_memcpy(&hdr, val.mv_data, sizeof(creor_agent_hdr_t));

    if (latest) {
        ngx_memzero(hdr.run, sizeof(hdr.run));
        ngx_cpystrn((u_char *) hdr.run, run->id.data,
                    ngx_min(run->id.len + 1, sizeof(hdr.run)));
        ngx_cpystrn((u_char *) hdr.thread, (u_char *) run->hdr.thread,
                    sizeof(hdr.thread));

    } else if (ngx_strlen(hdr.run) != run->id.len
               || ngx_strncmp(hdr.run, run->id.data, run->id.len) != 0)
    {
        return CREOR_STORE_OK;
    }

    switch (run->hdr.status) {
    case CREOR_RUN_QUEUED:
        status = "queued";
        break;
    case CREOR_RUN_RUNNING:
    case CREOR_RUN_AWAITING_INPUT:
        status = "running";
        break;
    case CREOR_RUN_COMPLETED:
        status = "completed";
        break;
    case CREOR_RUN_FAILED:
        status = "failed";
        break;
    default:
        status = "idle";
        break;
    }

    agent = creor_json_parse(pool,
                             (u_char *) val.mv_data
                             + sizeof(creor_agent_hdr_t),
                             val.mv_size - sizeof(creor_agent_hdr_t),
                             err, sizeof(err));
    if (agent == NULL) {
        return CREOR_STORE_ERROR;
    }

    /* agent.started, .completed, .failed as its status follows the run */

    was = creor_json_get(agent, "status");
    event = NULL;

    if (was == NULL || was->type != CREOR_JSON_STRING
        || ngx_strcmp(was->str.data, status) != 0)
    {
        event = (ngx_strcmp(status, "running") == 0) ? "agent.started"
                : (ngx_strcmp(status, "completed") == 0) ? "agent.completed"
                : (ngx_strcmp(status, "failed") == 0) ? "agent.failed"
                : NULL;
    }

    if (creor_json_set(agent, "status",
                       creor_json_new(pool, CREOR_JSON_STRING, status,
                                      ngx_strlen(status))) != NGX_OK
        || creor_json_set(agent, "runId",
                          creor_json_new(pool, CREOR_JSON_STRING,
                                         (char *) run->id.data,
                                         run->id.len)) != NGX_OK)
    {
        return CREOR_STORE_ERROR;
    }

    org.data = (u_char *) run->hdr.org;
    org.len = ngx_strlen(run->hdr.org);

    if (event) {
        rc = creor_webhooks_emit(st, txn, pool, run->hdr.org, event, agent,
                                 NULL);
        if (rc != CREOR_STORE_OK) {
            return rc;
        }
    }

    return creor_agent_put(st, txn, pool, &org, agent, &hdr, NULL);
}


/* the store key of the route's agent */

static ngx_int_t
creor_agent_key(ngx_http_request_t *r, ngx_creor_ctx_t *ctx, ngx_str_t *id,
    char *key)
{
    if (!creor_is_id((char *) id->data, id->len, "agent_")) {
        return creor_fail(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND", NULL,
                          "No such agent.");
    }

    ngx_snprintf((u_char *) key, CREOR_STORE_KEY_MAX, "a:%V:%V%Z",
                 &ctx->who.org, id);

    return NGX_OK;
}


/* reads the route's agent, which the scope checked: gone is not found */

static ngx_int_t
creor_agent_load(ngx_http_request_t *r, ngx_creor_ctx_t *ctx, MDB_txn *txn,
    char *key, MDB_val *val)
{
    int  rc;

    rc = creor_store_get(&ctx->mcf->store, txn, key, val);

    if (rc == CREOR_STORE_OK && val->mv_size <= sizeof(creor_agent_hdr_t)) {
        rc = CREOR_STORE_ERROR;
    }

    if (rc == CREOR_STORE_NOTFOUND) {
        return creor_fail(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND", NULL,
                          "No such agent.");
    }

    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    return NGX_OK;
}


ngx_int_t
creor_agents_get(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    return creor_agents_send(r, ctx, &ctx->ids[CREOR_ID_AGENT], NGX_HTTP_OK);
}


/* the stored object as it is: GET does not parse it */

static ngx_int_t
creor_agents_send(ngx_http_request_t *r, ngx_creor_ctx_t *ctx, ngx_str_t *id,
    ngx_uint_t status)
{
    u_char   *p;
    size_t    len;
    char      key[CREOR_STORE_KEY_MAX];
    MDB_val   val;
    MDB_txn  *txn;

    if (creor_agent_key(r, ctx, id, key) != NGX_OK) {
        return NGX_DECLINED;
    }

    txn = creor_store_read(&ctx->mcf->store);
    if (txn == NULL) {
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    if (creor_agent_load(r, ctx, txn, key, &val) != NGX_OK) {
        return NGX_DECLINED;
    }

    len = val.mv_size - sizeof(creor_agent_hdr_t);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(p, (u_char *) val.mv_data + sizeof(creor_agent_hdr_t), len);

    creor_store_read_done(&ctx->mcf->store);

    return creor_send_raw(r, status, p, len);
}


ngx_int_t
creor_agents_update(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int                 rc;
    char                key[CREOR_STORE_KEY_MAX], now[CREOR_TIME_LEN];
    size_t              n;
    u_char              err[128];
    MDB_val             val;
    MDB_txn            *txn;
    ngx_str_t           json;
    creor_json_t       *agent;
    creor_agent_hdr_t   hdr;

    if (creor_check_fields(r, ctx->json, creor_agent_body, "") != NGX_OK) {
        return NGX_DECLINED;
    }

    if (creor_agent_key(r, ctx, &ctx->ids[CREOR_ID_AGENT], key) != NGX_OK) {
        return NGX_DECLINED;
    }

    /* read, merge and write in one transaction: no lost updates */

    rc = creor_store_write(&ctx->mcf->store, &txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    if (creor_agent_load(r, ctx, txn, key, &val) != NGX_OK) {
        creor_store_abort(txn);
        return NGX_DECLINED;
    }

    ngx_memcpy(&hdr, val.mv_data, sizeof(creor_agent_hdr_t));

    agent = creor_json_parse(r->pool,
                             (u_char *) val.mv_data
                             + sizeof(creor_agent_hdr_t),
                             val.mv_size - sizeof(creor_agent_hdr_t),
                             err, sizeof(err));

    if (agent == NULL || agent->type != CREOR_JSON_OBJECT) {
        creor_store_abort(txn);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "creor: agent record %s is damaged: %s", key, err);
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

    rc = creor_agent_put(&ctx->mcf->store, txn, r->pool, &ctx->who.org,
                         agent, &hdr, &json);
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return creor_fail_store(r, rc);
    }

    rc = creor_store_commit(txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    return creor_send_raw(r, NGX_HTTP_OK, json.data, json.len);
}


/* POST /v1/agents/:id/followup {prompt}: a run continuing the thread */

ngx_int_t
creor_agents_followup(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int            rc;
    char           key[CREOR_STORE_KEY_MAX];
    MDB_val        val;
    MDB_txn       *txn;
    creor_run_t    run;
    creor_json_t  *prompt, *inputs;

    if (creor_check_fields(r, ctx->json, creor_followup_body, "") != NGX_OK) {
        return NGX_DECLINED;
    }

    prompt = creor_json_get(ctx->json, "prompt");

    if (prompt == NULL) {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "MISSING_FIELD", "prompt",
                          "The 'prompt' field is required.");
    }

    if (prompt->type != CREOR_JSON_STRING || prompt->str.len == 0
        || prompt->str.len > CREOR_STRING_MAX)
    {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                          "prompt", "'prompt' must be a string of 1 to %d "
                          "bytes.", CREOR_STRING_MAX);
    }

    if (creor_agent_key(r, ctx, &ctx->ids[CREOR_ID_AGENT], key) != NGX_OK) {
        return NGX_DECLINED;
    }

    inputs = creor_json_new(r->pool, CREOR_JSON_OBJECT, NULL, 0);
    if (inputs == NULL || creor_json_set(inputs, "prompt", prompt) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = creor_store_write(&ctx->mcf->store, &txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    if (creor_agent_load(r, ctx, txn, key, &val) != NGX_OK) {
        creor_store_abort(txn);
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


/*
 * The agent goes at once; its active runs are cancelled a batch at a
 * time, the first here and the rest by creor_runs_reap(), so no write
 * transaction grows with the agent's runs.  In a full map the record
 * goes first, alone (its pages are free once that commits), then its
 * index entries and status count; lists skip entries whose record is
 * gone.
 */

ngx_int_t
creor_agents_delete(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int                 rc;
    char                key[CREOR_STORE_KEY_MAX], org[CREOR_ID_MAX],
                        id[CREOR_ID_MAX];
    MDB_val             val;
    MDB_txn            *txn;
    yajl_gen            g;
    ngx_uint_t          pass;
    ngx_flag_t          more;
    creor_agent_hdr_t   hdr;

    if (creor_agent_key(r, ctx, &ctx->ids[CREOR_ID_AGENT], key) != NGX_OK) {
        return NGX_DECLINED;
    }

    ngx_cpystrn((u_char *) org, ctx->who.org.data,
                ngx_min(ctx->who.org.len + 1, sizeof(org)));
    ngx_cpystrn((u_char *) id, ctx->ids[CREOR_ID_AGENT].data,
                ngx_min(ctx->ids[CREOR_ID_AGENT].len + 1, sizeof(id)));

    more = 0;

    /* pass 0: all in one; 1: the record alone; 2: the rest */

    for (pass = 0; pass < 3; pass++) {

        rc = creor_store_write(&ctx->mcf->store, &txn);
        if (rc != CREOR_STORE_OK) {
            break;
        }

        if (pass < 2) {
            if (creor_agent_load(r, ctx, txn, key, &val) != NGX_OK) {
                creor_store_abort(txn);
                return NGX_DECLINED;
            }

            ngx_memcpy(&hdr, val.mv_data, sizeof(creor_agent_hdr_t));
            hdr.project[CREOR_ID_MAX - 1] = '\0';
            hdr.status[CREOR_AGENT_STATUS_MAX - 1] = '\0';

            rc = creor_store_del(&ctx->mcf->store, txn, key);
        }

        if (rc == CREOR_STORE_OK && pass != 1) {
            rc = creor_counts_agent(&ctx->mcf->store, txn, hdr.status, NULL);
        }

        if (rc == CREOR_STORE_OK && pass != 1) {
            rc = creor_index_agent(&ctx->mcf->store, txn, org, hdr.project,
                                   id, hdr.status, NULL);
        }

        if (rc == CREOR_STORE_OK && pass != 1) {
            rc = creor_runs_cancel_agent(&ctx->mcf->store, txn, r->pool,
                                         &ctx->who.org,
                                         &ctx->ids[CREOR_ID_AGENT], &more);
        }

        if (rc == CREOR_STORE_OK) {
            rc = creor_store_commit(txn);

        } else {
            creor_store_abort(txn);
        }

        if (pass == 0 && rc != CREOR_STORE_FULL) {
            break;
        }

        if (pass == 1 && rc != CREOR_STORE_OK) {
            break;
        }
    }

    if (pass == 3 && rc != CREOR_STORE_OK) {

        /* the agent is gone; its entries wait for "creor index rebuild" */

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "creor: the index entries and status count of "
                      "deleted agent %s are left in a full store", id);
        rc = CREOR_STORE_OK;
    }

    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    creor_changed(ctx->mcf, NULL,
                  CREOR_CHANGED_EVENTS | (more ? CREOR_CHANGED_REAP : 0));

    g = creor_gen_create(r);
    if (g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    yajl_gen_map_open(g);
    creor_gen_kv_ngx(g, "id", &ctx->ids[CREOR_ID_AGENT]);
    creor_gen_kv(g, "object", "agent");
    creor_gen_kv_bool(g, "deleted", 1);
    yajl_gen_map_close(g);

    return creor_send_json(r, NGX_HTTP_OK, g);
}


typedef struct {
    creor_arg_t    *project;
    creor_arg_t    *status;
} creor_agents_filter_t;


ngx_int_t
creor_agents_list(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    u_char                 *p;
    ngx_str_t               project, *status;
    const char            **s;
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

    pg.primary.data = ngx_pnalloc(r->pool, ctx->who.org.len + 3);
    pg.prefix.data = ngx_pnalloc(r->pool, ctx->who.org.len + project.len
                                          + CREOR_AGENT_STATUS_MAX + 16);
    if (pg.primary.data == NULL || pg.prefix.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pg.primary.len = ngx_sprintf(pg.primary.data, "a:%V:", &ctx->who.org)
                     - pg.primary.data;

    if (project.len && status) {
        p = ngx_sprintf(pg.prefix.data, "aps:%V:%V:%V:", &ctx->who.org,
                        &project, status);

    } else if (project.len) {
        p = ngx_sprintf(pg.prefix.data, "ap:%V:%V:", &ctx->who.org,
                        &project);

    } else if (status) {
        p = ngx_sprintf(pg.prefix.data, "as:%V:%V:", &ctx->who.org, status);

    } else {
        p = ngx_cpymem(pg.prefix.data, pg.primary.data, pg.primary.len);
        pg.primary.len = 0;
    }

    pg.prefix.len = p - pg.prefix.data;

    if (creor_page_parse(r, ctx, &pg, 1) != NGX_OK) {
        return NGX_DECLINED;
    }

    ctx->data = f;

    return creor_page_send(r, ctx, &pg, creor_agents_item);
}


static ngx_int_t
creor_agents_item(ngx_http_request_t *r, ngx_creor_ctx_t *ctx, MDB_val *key,
    MDB_val *val, yajl_gen g)
{
    u_char                 err[128];
    ngx_str_t              id;
    creor_json_t          *agent;
    creor_agent_hdr_t      hdr;
    creor_agents_filter_t  *f;

    if (val->mv_size <= sizeof(creor_agent_hdr_t)) {
        return NGX_ERROR;
    }

    ngx_memcpy(&hdr, val->mv_data, sizeof(creor_agent_hdr_t));
    hdr.project[CREOR_ID_MAX - 1] = '\0';
    hdr.status[CREOR_AGENT_STATUS_MAX - 1] = '\0';

    f = ctx->data;

    id.data = (u_char *) key->mv_data + 3 + ctx->who.org.len;
    id.len = key->mv_size - 3 - ctx->who.org.len;

    if (!creor_scope_sees(ctx, hdr.project, &id)
        || (f->project
            && (ngx_strlen(hdr.project) != f->project->value.len
                || ngx_strncmp(hdr.project, f->project->value.data,
                               f->project->value.len) != 0))
        || (f->status
            && (ngx_strlen(hdr.status) != f->status->value.len
                || ngx_strncmp(hdr.status, f->status->value.data,
                               f->status->value.len) != 0)))
    {
        return NGX_DECLINED;
    }

    if (g == NULL) {
        return NGX_OK;
    }

    agent = creor_json_parse(r->pool,
                             (u_char *) val->mv_data
                             + sizeof(creor_agent_hdr_t),
                             val->mv_size - sizeof(creor_agent_hdr_t),
                             err, sizeof(err));
    if (agent == NULL) {
        return NGX_ERROR;
    }

    creor_gen_value(g, agent);

    return NGX_OK;
}
