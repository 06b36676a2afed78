
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The scope check (SPEC 4.1, 4.2): what a credential may see, change and
 * create.  Every route declares the kinds of ids it names and what it
 * does; the pipeline asks here before the handler runs, and handlers get
 * the checked ids in ctx->ids.  The credential's organization, project
 * binding, app binding and role decide:
 *
 *   another organization's id, or another project's for a bound key: 404
 *   another app than an app-bound key's own: 403 APP_SCOPE_RESTRICTED
 *   a new resource bound wider than the key (a key, a project, an agent
 *   of another app, a role above its own): 403
 *
 * Resources never move between projects or agents, so an id checked
 * here stays in scope; a handler that finds it gone answers 404.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


typedef struct {
    const char     *name;       /* in patterns and body_ids */
    const char     *prefix;     /* of its ids */
    const char     *store;      /* "a" for "a:<org>:<id>" */
    const char     *what;       /* in messages */
} creor_kind_t;


/* what the check learned of the resource an id names */
typedef struct {
    char            project[CREOR_ID_MAX];
    char            agent[CREOR_ID_MAX];
} creor_scope_res_t;


static const char *creor_scope_pattern(creor_route_t *rt, ngx_uint_t *kinds);
static ngx_int_t creor_scope_id(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    MDB_txn *txn, ngx_uint_t kind, ngx_str_t *id, const char *param,
    creor_scope_res_t *res);
static int creor_scope_record(ngx_creor_ctx_t *ctx, ngx_uint_t kind,
    ngx_str_t *id, MDB_val *val, creor_scope_res_t *res);
static ngx_int_t creor_scope_create(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, MDB_txn *txn);
static ngx_int_t creor_scope_grant(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, MDB_txn *txn, creor_json_t *body, ngx_uint_t kind,
    const char *field);
static ngx_int_t creor_scope_not_found(ngx_http_request_t *r,
    ngx_uint_t kind, const char *param);
static ngx_uint_t creor_scope_kind(const char *name, size_t len);
static ngx_flag_t creor_str_is(ngx_str_t *s, const char *c);


/*
 * A new kind: its CREOR_ID_* in ngx_creor.h and a line here; a stored
 * resource whose record does not start with a project or a run's header
 * is the organization's (creor_scope_record()).
 */

static creor_kind_t  creor_kinds[CREOR_ID_KINDS] = {
    { NULL, NULL, NULL, NULL },
    { "project", "proj_", "p", "project" },
    { "key", "key_", NULL, "API key" },
    { "agent", "agent_", "a", "agent" },
    { "run", "run_", "r", "run" },
    { "file", "file_", NULL, "file" },
    { "webhook", "wh_", "w", "webhook" },
    { "delivery", "whd_", NULL, "delivery" },
};


/*
 * At configuration: every route declares its scope, consistently, or
 * nginx does not start.
 */

ngx_int_t
creor_scope_init(ngx_conf_t *cf)
{
    size_t          len;
    ngx_uint_t      i, kind, agent, kinds[CREOR_ROUTE_PARAMS];
    const char     *s, **b, *why;
    creor_route_t  *rt;

    for (rt = creor_route_table(); rt->pattern; rt++) {

        agent = 0;
        why = creor_scope_pattern(rt, kinds);

        for (i = 0; i < CREOR_ROUTE_PARAMS; i++) {
            agent |= (kinds[i] == CREOR_ID_AGENT);
        }

        for (b = rt->body_ids; b && *b && why == NULL; b++) {
            s = ngx_strchr(*b, ':');
            len = s ? ngx_strlen(s + 1) : 0;
            kind = s ? creor_scope_kind(s + 1, len) : CREOR_ID_NONE;

            if (kind == CREOR_ID_NONE) {
                why = "a body id is not \"field:kind\" of a known kind";
            }

            agent |= (kind == CREOR_ID_AGENT);
        }

        if (why) {
            /* void */

        } else if (rt->action < CREOR_DO_READ || rt->action > CREOR_DO_DELETE)
        {
            why = "no action (CREOR_DO_READ, _CREATE, _UPDATE, _DELETE)";

        } else if (rt->action == CREOR_DO_READ
                   && (rt->method & ~(NGX_HTTP_GET|NGX_HTTP_HEAD)))
        {
            why = "a read is a GET";

        } else if (rt->action != CREOR_DO_READ
                   && ((rt->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))
                       || !(rt->perm & (CREOR_PERM_WRITE|CREOR_PERM_ADMIN))))
        {
            why = "a write is no GET and needs the write or admin permission";

        } else if (rt->creates >= CREOR_ID_KINDS
                   || (rt->creates && rt->action != CREOR_DO_CREATE))
        {
            why = "only a create names a kind it creates";

        } else if (rt->creates == CREOR_ID_RUN && !agent) {
            why = "a run is created in an agent the path or body names";
        }

        if (why) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "creor: route \"%s\" (%s): %s", rt->name,
                               rt->pattern, why);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the kinds of the pattern's ":kind" segments; NULL, or what is wrong */

static const char *
creor_scope_pattern(creor_route_t *rt, ngx_uint_t *kinds)
{
    ngx_uint_t   n, kind;
    const char  *p, *s;

    ngx_memzero(kinds, CREOR_ROUTE_PARAMS * sizeof(ngx_uint_t));
    n = 0;

    for (p = rt->pattern; *p; p++) {
        if (*p != ':') {
            continue;
        }

        for (s = p + 1; *s && *s != '/'; s++) { /* void */ }

        kind = creor_scope_kind(p + 1, s - p - 1);

        if (kind == CREOR_ID_NONE) {
            return "a path segment names no known kind of id";
        }

        if (n == CREOR_ROUTE_PARAMS) {
            return "too many ids in the path";
        }

        if (kind == CREOR_ID_FILE && (n == 0 || kinds[n - 1] != CREOR_ID_RUN))
        {
            return "a file is named after its run";
        }

        if (kind == CREOR_ID_DELIVERY
            && (n == 0 || kinds[n - 1] != CREOR_ID_WEBHOOK))
        {
            return "a delivery is named after its webhook";
        }

        kinds[n++] = kind;
    }

    return NULL;
}


/*
 * Before the body is read: the ids of the path, in order, and whether the
 * key may create what the route creates.
 */

ngx_int_t
creor_scope_route(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    ngx_int_t       rc;
    MDB_txn        *txn;
    ngx_uint_t      i, kinds[CREOR_ROUTE_PARAMS];
    creor_route_t  *rt;

    rt = ctx->route;

    (void) creor_scope_pattern(rt, kinds);

    if (kinds[0] == CREOR_ID_NONE && rt->action != CREOR_DO_CREATE) {
        return NGX_OK;
    }

    txn = creor_store_read(&ctx->mcf->store);
    if (txn == NULL) {
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    rc = NGX_OK;

    for (i = 0; i < CREOR_ROUTE_PARAMS && kinds[i]; i++) {
        rc = creor_scope_id(r, ctx, txn, kinds[i], &ctx->params[i], NULL,
                            NULL);
        if (rc != NGX_OK) {
            break;
        }
    }

    if (rc == NGX_OK && rt->action == CREOR_DO_CREATE) {
        rc = creor_scope_create(r, ctx, txn);
    }

    /* the body is read in later events: no read transaction waits */

    creor_store_read_done(&ctx->mcf->store);

    return rc;
}


/*
 * The ids the route's body names.  Values that are not ids of any kind
 * (numbers, empty strings) are the handler's to refuse with 400.
 */

ngx_int_t
creor_scope_body(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_json_t *body)
{
    int            role;
    char          *field;
    ngx_int_t      rc;
    MDB_txn       *txn;
    ngx_uint_t     kind;
    const char   **b, *colon;
    creor_json_t  *v;

    if (ctx->route->body_ids == NULL) {
        return NGX_OK;
    }

    txn = creor_store_read(&ctx->mcf->store);
    if (txn == NULL) {
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    rc = NGX_OK;

    for (b = ctx->route->body_ids; *b && rc == NGX_OK; b++) {
        colon = ngx_strchr(*b, ':');
        kind = creor_scope_kind(colon + 1, ngx_strlen(colon + 1));

        /* the field's name outlives this call: an error's param */

        field = ngx_pnalloc(r->pool, colon - *b + 1);
        if (field == NULL) {
            rc = NGX_ERROR;
            break;
        }

        ngx_cpystrn((u_char *) field, (u_char *) *b, colon - *b + 1);

        if (ctx->route->creates == CREOR_ID_KEY) {
            rc = creor_scope_grant(r, ctx, txn, body, kind, field);
            continue;
        }

        v = creor_json_get(body, field);

        /* the first of "appId" and "agentId" is the one a handler uses */

        if (v && v->type == CREOR_JSON_STRING && v->str.len) {
            rc = creor_scope_id(r, ctx, txn, kind, &v->str, field, NULL);
        }
    }

    creor_store_read_done(&ctx->mcf->store);

    if (rc != NGX_OK || ctx->route->creates != CREOR_ID_KEY) {
        return rc;
    }

    /* no role above its own: roles are numbered from the widest */

    v = creor_json_get(body, "role");

    if (v && v->type == CREOR_JSON_STRING) {
        role = creor_role_parse((char *) v->str.data, v->str.len);

        if (role > 0 && (uint32_t) role < ctx->who.key.role) {
            return creor_fail(r, NGX_HTTP_FORBIDDEN, "PERMISSION_DENIED",
                              "role", "A %s key cannot create a key with "
                              "a wider role.",
                              creor_role_name(ctx->who.key.role));
        }
    }

    return NGX_OK;
}


/* a list's filter: an item of this project and agent is in scope */

ngx_flag_t
creor_scope_sees(ngx_creor_ctx_t *ctx, const char *project, ngx_str_t *agent)
{
    if (ctx->who.key.project[0]
        && ngx_strncmp(project, ctx->who.key.project, CREOR_ID_MAX) != 0)
    {
        return 0;
    }

    if (ctx->who.app.len && agent
        && (agent->len != ctx->who.app.len
            || ngx_strncmp(agent->data, ctx->who.app.data, agent->len) != 0))
    {
        return 0;
    }

    return 1;
}


/* a key within this one's binding and role: one it may see and manage */

ngx_flag_t
creor_scope_sees_key(ngx_creor_ctx_t *ctx, creor_key_rec_t *rec)
{
    creor_key_rec_t  *own;

    own = &ctx->who.key;

    return ngx_strncmp(rec->org, own->org, CREOR_ID_MAX) == 0
           && (own->project[0] == '\0'
               || ngx_strncmp(rec->project, own->project, CREOR_ID_MAX) == 0)
           && (own->app[0] == '\0'
               || ngx_strncmp(rec->app, own->app, CREOR_ID_MAX) == 0)
           && rec->role >= own->role;
}


/*
 * One id of the credential's organization: 404 if it is not there or
 * outside the key's project, 403 if it is another app than the key's.
 * Sets ctx->ids[kind]; res, if given, gets the resource's project.
 */

static ngx_int_t
creor_scope_id(ngx_http_request_t *r, ngx_creor_ctx_t *ctx, MDB_txn *txn,
    ngx_uint_t kind, ngx_str_t *id, const char *param, creor_scope_res_t *res)
{
    int                 rc;
    char                key[CREOR_STORE_KEY_MAX], sid[CREOR_ID_MAX];
    MDB_val             val;
    ngx_str_t           agent;
    creor_kind_t       *k;
    creor_key_rec_t     rec;
    creor_scope_res_t   own;

    k = &creor_kinds[kind];

    if (!creor_is_id((char *) id->data, id->len, k->prefix)) {
        return creor_scope_not_found(r, kind, param);
    }

    if (res == NULL) {
        res = &own;
    }

    ngx_memzero(res, sizeof(creor_scope_res_t));

    switch (kind) {

    case CREOR_ID_KEY:
        ngx_cpystrn((u_char *) sid, id->data, id->len + 1);

        rc = creor_key_get(&ctx->mcf->store, txn, sid, &rec);

        if (rc == CREOR_STORE_OK && !creor_scope_sees_key(ctx, &rec)) {
            rc = CREOR_STORE_NOTFOUND;
        }

        break;

    case CREOR_ID_FILE:
    case CREOR_ID_DELIVERY:

        /* an attachment of the run, a delivery of the webhook, before it */

        ctx->ids[kind] = *id;
        return NGX_OK;

    default:
        ngx_snprintf((u_char *) key, sizeof(key), "%s:%V:%V%Z", k->store,
                     &ctx->who.org, id);

        rc = creor_store_get(&ctx->mcf->store, txn, key, &val);

        if (rc != CREOR_STORE_OK) {
            break;
        }

        rc = creor_scope_record(ctx, kind, id, &val, res);
        break;
    }

    if (rc == CREOR_STORE_OK && kind != CREOR_ID_KEY
        && ctx->who.key.project[0]
        && ngx_strncmp(res->project, ctx->who.key.project, CREOR_ID_MAX) != 0)
    {
        rc = CREOR_STORE_NOTFOUND;
    }

    if (rc == CREOR_STORE_NOTFOUND) {
        return creor_scope_not_found(r, kind, param);
    }

    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    if (res->agent[0]) {
        agent.data = (u_char *) res->agent;
        agent.len = ngx_strlen(res->agent);

        if (!creor_scope_sees(ctx, res->project, &agent)) {
            return creor_fail(r, NGX_HTTP_FORBIDDEN, "APP_SCOPE_RESTRICTED",
                              param, "This key is restricted to app %V.",
                              &ctx->who.app);
        }
    }

    if (ctx->ids[kind].len == 0) {
        ctx->ids[kind] = *id;
    }

    return NGX_OK;
}


/*
 * Where a stored resource lives: its project and agent, read from the
 * fixed start of its record.  A kind of no project (a new one, such as
 * webhooks) is an organization's: wider than any bound key.
 */

static int
creor_scope_record(ngx_creor_ctx_t *ctx, ngx_uint_t kind, ngx_str_t *id,
    MDB_val *val, creor_scope_res_t *res)
{
    creor_run_hdr_t  hdr;

    switch (kind) {

    case CREOR_ID_PROJECT:
        ngx_cpystrn((u_char *) res->project, id->data, id->len + 1);
        return CREOR_STORE_OK;

    case CREOR_ID_AGENT:

        /* an agent's record starts with its project (creor_agents.c) */

        if (val->mv_size <= CREOR_ID_MAX) {
            return CREOR_STORE_ERROR;
        }

        ngx_cpystrn((u_char *) res->project, val->mv_data, CREOR_ID_MAX);
        ngx_cpystrn((u_char *) res->agent, id->data, id->len + 1);
        return CREOR_STORE_OK;

    case CREOR_ID_RUN:
        if (val->mv_size <= sizeof(creor_run_hdr_t)) {
            return CREOR_STORE_ERROR;
        }

        ngx_memcpy(&hdr, val->mv_data, sizeof(creor_run_hdr_t));
        ngx_cpystrn((u_char *) res->project, (u_char *) hdr.project,
                    CREOR_ID_MAX);
        ngx_cpystrn((u_char *) res->agent, (u_char *) hdr.agent,
                    CREOR_ID_MAX);

        /* /v1/apps/:agent/runs/:run: a run of that agent only */

        if (ctx->ids[CREOR_ID_AGENT].len
            && !creor_str_is(&ctx->ids[CREOR_ID_AGENT], res->agent))
        {
            return CREOR_STORE_NOTFOUND;
        }

        return CREOR_STORE_OK;

    default:
        return (ctx->who.key.project[0] || ctx->who.key.app[0])
               ? CREOR_STORE_NOTFOUND : CREOR_STORE_OK;
    }
}


/*
 * What a create makes must be within the key: a project is wider than a
 * bound key, a new agent is another app than an app-bound key's; an agent
 * is made in the key's project or the one X-Project-Id names.
 */

static ngx_int_t
creor_scope_create(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    MDB_txn *txn)
{
    switch (ctx->route->creates) {

    case CREOR_ID_PROJECT:
    case CREOR_ID_WEBHOOK:
        if (ctx->who.project.len || ctx->who.app.len) {
            return creor_fail(r, NGX_HTTP_FORBIDDEN, "PERMISSION_DENIED",
                              NULL, "A key bound to a project or an app "
                              "cannot create %ss.",
                              creor_kinds[ctx->route->creates].what);
        }

        return NGX_OK;

    case CREOR_ID_AGENT:
        if (ctx->who.app.len) {
            return creor_fail(r, NGX_HTTP_FORBIDDEN, "APP_SCOPE_RESTRICTED",
                              NULL, "This key is restricted to app %V.",
                              &ctx->who.app);
        }

        break;

    default:
        return NGX_OK;
    }

    return creor_scope_project(r, ctx, txn);
}


/*
 * X-Project-Id: the project an organization key works in; a bound key
 * may only name its own.  Sets ctx->who.project.
 */

ngx_int_t
creor_scope_project(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    MDB_txn *txn)
{
    ngx_str_t  *h;

    h = creor_header(r, "X-Project-Id");

    if (h == NULL) {
        return NGX_OK;
    }

    if (ctx->who.project.len) {
        if (!creor_str_is(h, ctx->who.key.project)) {
            return creor_fail(r, NGX_HTTP_FORBIDDEN, "PERMISSION_DENIED",
                              "projectId", "This key is bound to project "
                              "%V.", &ctx->who.project);
        }

        return NGX_OK;
    }

    if (creor_scope_id(r, ctx, txn, CREOR_ID_PROJECT, h, "projectId", NULL)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    ctx->who.project = *h;

    return NGX_OK;
}


/*
 * A new key's binding, field by field (projectId before appId): absent,
 * it inherits the creator's; null (unbound) or another project is wider
 * than a bound creator: 403; an app is checked like any agent id, and
 * must be of the new key's project.  Sets ctx->ids[] to the binding.
 */

static ngx_int_t
creor_scope_grant(ngx_http_request_t *r, ngx_creor_ctx_t *ctx, MDB_txn *txn,
    creor_json_t *body, ngx_uint_t kind, const char *field)
{
    char               *own;
    ngx_str_t          *bound, id;
    creor_json_t       *v;
    creor_scope_res_t   res;

    own = (kind == CREOR_ID_PROJECT) ? ctx->who.key.project
                                     : ctx->who.key.app;
    bound = &ctx->ids[kind];

    v = creor_json_get(body, field);

    if (v == NULL && (kind == CREOR_ID_PROJECT || own[0] == '\0')) {
        bound->data = (u_char *) own;
        bound->len = ngx_strlen(own);
        return NGX_OK;
    }

    if (v && v->type == CREOR_JSON_NULL) {
        if (own[0]) {
            return creor_fail(r, NGX_HTTP_FORBIDDEN, "PERMISSION_DENIED",
                              field, "This key is bound to %s %s: it cannot "
                              "create an unbound key.",
                              creor_kinds[kind].what, own);
        }

        return NGX_OK;
    }

    if (v && v->type != CREOR_JSON_STRING) {
        return NGX_OK;
    }

    if (kind == CREOR_ID_PROJECT && own[0]) {
        if (!creor_str_is(&v->str, own)) {
            return creor_fail(r, NGX_HTTP_FORBIDDEN, "PERMISSION_DENIED",
                              field, "This key is bound to project %s.",
                              own);
        }

        *bound = v->str;
        return NGX_OK;
    }

    if (kind == CREOR_ID_PROJECT) {
        return creor_scope_id(r, ctx, txn, kind, &v->str, field, NULL);
    }

    /* an app, the body's or the creator's: of the new key's project */

    if (v) {
        id = v->str;

    } else {
        id.data = (u_char *) own;
        id.len = ngx_strlen(own);
    }

    if (creor_scope_id(r, ctx, txn, kind, &id, field, &res) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (kind == CREOR_ID_AGENT && ctx->ids[CREOR_ID_PROJECT].len
        && !creor_str_is(&ctx->ids[CREOR_ID_PROJECT], res.project))
    {
        return creor_scope_not_found(r, kind, field);
    }

    return NGX_OK;
}


static ngx_int_t
creor_scope_not_found(ngx_http_request_t *r, ngx_uint_t kind,
    const char *param)
{
    return creor_fail(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND", param,
                      "No such %s.", creor_kinds[kind].what);
}


static ngx_uint_t
creor_scope_kind(const char *name, size_t len)
{
    ngx_uint_t  i;

    for (i = 1; i < CREOR_ID_KINDS; i++) {
        if (ngx_strlen(creor_kinds[i].name) == len
            && ngx_strncmp(creor_kinds[i].name, name, len) == 0)
        {
            return i;
        }
    }

    return CREOR_ID_NONE;
}


static ngx_flag_t
creor_str_is(ngx_str_t *s, const char *c)
{
    return ngx_strlen(c) == s->len && ngx_strncmp(s->data, c, s->len) == 0;
}
