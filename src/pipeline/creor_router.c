
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The route table of /v1: method, path pattern, handler, permission, the
 * query parameters each route accepts, and its scope: the kinds of ids it
 * names (the pattern's ":kind" segments and body_ids) and what it does to
 * them (action, creates).  creor_scope.c checks them before the handler
 * runs and refuses to start with a route that declares no scope.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_GET     (NGX_HTTP_GET|NGX_HTTP_HEAD)
#define CREOR_POST    NGX_HTTP_POST
#define CREOR_PATCH   NGX_HTTP_PATCH
#define CREOR_DELETE  NGX_HTTP_DELETE


static ngx_int_t creor_route_match(const char *pattern, ngx_str_t *uri,
    ngx_str_t *params);


static const char  *creor_q_list[] = { "limit", "cursor", "order", NULL };
static const char  *creor_q_agents[] = {
    "limit", "cursor", "order", "page", "projectId", "status", NULL
};
static const char  *creor_q_runs[] = {
    "limit", "cursor", "order", "offset", "status", NULL
};
static const char  *creor_q_stream[] = { "after", NULL };
static const char  *creor_q_file[] = { "expires", "signature", NULL };
static const char  *creor_q_usage[] = { "start", "end", "group_by", NULL };
static const char  *creor_q_deliveries[] = {
    "limit", "cursor", "order", "status", NULL
};

/*
 * Ids a body names, checked like the path's; for a route that creates a
 * key they are the new key's binding (SPEC 4.2).
 */
static const char  *creor_b_runs[] = { "appId:agent", "agentId:agent", NULL };
static const char  *creor_b_keys[] = {
    "projectId:project", "appId:agent", NULL
};

#define CREOR_RUNS_NEW  (CREOR_ROUTE_MULTIPART                                \
                         |CREOR_ROUTE_IDEMPOTENCY_REQUIRED                    \
                         |CREOR_ROUTE_REPLAY_MARK)


static creor_route_t  creor_routes[] = {

    { CREOR_GET, "/v1/projects", "projects.list",
      creor_projects_list, CREOR_PERM_READ, "projects:read", creor_q_list, 0,
      CREOR_DO_READ, 0, NULL },

    { CREOR_POST, "/v1/projects", "projects.create",
      creor_projects_create, CREOR_PERM_ADMIN, "projects:create", NULL, 0,
      CREOR_DO_CREATE, CREOR_ID_PROJECT, NULL },

    { CREOR_GET, "/v1/projects/:project", "projects.get",
      creor_projects_get, CREOR_PERM_READ, "projects:read", NULL, 0,
      CREOR_DO_READ, 0, NULL },

    { CREOR_GET, "/v1/api-keys", "api_keys.list",
      creor_keys_list, CREOR_PERM_ADMIN, "api_keys:read", creor_q_list, 0,
      CREOR_DO_READ, 0, NULL },

    { CREOR_POST, "/v1/api-keys", "api_keys.create",
      creor_keys_create, CREOR_PERM_ADMIN, "api_keys:create", NULL, 0,
      CREOR_DO_CREATE, CREOR_ID_KEY, creor_b_keys },

    { CREOR_GET, "/v1/api-keys/:key", "api_keys.get",
      creor_keys_get, CREOR_PERM_ADMIN, "api_keys:read", NULL, 0,
      CREOR_DO_READ, 0, NULL },

    { CREOR_DELETE, "/v1/api-keys/:key", "api_keys.revoke",
      creor_keys_revoke, CREOR_PERM_ADMIN, "api_keys:delete", NULL, 0,
      CREOR_DO_DELETE, 0, NULL },

    { CREOR_POST, "/v1/api-keys/:key/rotate", "api_keys.rotate",
      creor_keys_rotate, CREOR_PERM_ADMIN, "api_keys:update", NULL, 0,
      CREOR_DO_UPDATE, 0, NULL },

    { CREOR_GET, "/v1/agents", "agents.list",
      creor_agents_list, CREOR_PERM_READ, "agents:read", creor_q_agents, 0,
      CREOR_DO_READ, 0, NULL },

    { CREOR_POST, "/v1/agents", "agents.create",
      creor_agents_create, CREOR_PERM_WRITE, "agents:create", NULL, 0,
      CREOR_DO_CREATE, CREOR_ID_AGENT, NULL },

    { CREOR_GET, "/v1/agents/:agent", "agents.get",
      creor_agents_get, CREOR_PERM_READ, "agents:read", NULL, 0,
      CREOR_DO_READ, 0, NULL },

    { CREOR_PATCH, "/v1/agents/:agent", "agents.update",
      creor_agents_update, CREOR_PERM_WRITE, "agents:update", NULL, 0,
      CREOR_DO_UPDATE, 0, NULL },

    { CREOR_DELETE, "/v1/agents/:agent", "agents.delete",
      creor_agents_delete, CREOR_PERM_WRITE, "agents:delete", NULL, 0,
      CREOR_DO_DELETE, 0, NULL },

    { CREOR_POST, "/v1/agents/:agent/followup", "agents.followup",
      creor_agents_followup, CREOR_PERM_WRITE, "runs:create", NULL, 0,
      CREOR_DO_CREATE, CREOR_ID_RUN, NULL },

    { CREOR_POST, "/v1/runs", "runs.create",
      creor_runs_create, CREOR_PERM_WRITE, "runs:create", NULL,
      CREOR_RUNS_NEW, CREOR_DO_CREATE, CREOR_ID_RUN, creor_b_runs },

    { CREOR_GET, "/v1/runs", "runs.list",
      creor_runs_list, CREOR_PERM_READ, "runs:read", creor_q_runs, 0,
      CREOR_DO_READ, 0, NULL },

    { CREOR_GET, "/v1/runs/:run", "runs.get",
      creor_runs_get, CREOR_PERM_READ, "runs:read", NULL, 0,
      CREOR_DO_READ, 0, NULL },

    { CREOR_POST, "/v1/runs/:run/cancel", "runs.cancel",
      creor_runs_cancel, CREOR_PERM_WRITE, "runs:update", NULL, 0,
      CREOR_DO_UPDATE, 0, NULL },

    { CREOR_POST, "/v1/runs/:run/signal", "runs.signal",
      creor_runs_signal, CREOR_PERM_WRITE, "runs:update", NULL, 0,
      CREOR_DO_UPDATE, 0, NULL },

    { CREOR_GET, "/v1/runs/:run/events", "runs.events",
      creor_events_list, CREOR_PERM_READ, "runs:read", creor_q_list, 0,
      CREOR_DO_READ, 0, NULL },

    { CREOR_GET, "/v1/runs/:run/events/stream", "runs.stream",
      creor_events_stream, CREOR_PERM_READ, "runs:read", creor_q_stream, 0,
      CREOR_DO_READ, 0, NULL },

    { CREOR_GET, "/v1/runs/:run/files/:file", "runs.file",
      creor_runs_file, CREOR_PERM_READ, "runs:read", creor_q_file,
      CREOR_ROUTE_SIGNED, CREOR_DO_READ, 0, NULL },

    { CREOR_POST, "/v1/apps/:agent/runs", "apps.runs.create",
      creor_runs_create, CREOR_PERM_WRITE, "runs:create", NULL,
      CREOR_RUNS_NEW|CREOR_ROUTE_APP, CREOR_DO_CREATE, CREOR_ID_RUN, NULL },

    { CREOR_GET, "/v1/apps/:agent/runs", "apps.runs.list",
      creor_runs_list, CREOR_PERM_READ, "runs:read", creor_q_runs,
      CREOR_ROUTE_APP, CREOR_DO_READ, 0, NULL },

    { CREOR_GET, "/v1/apps/:agent/runs/:run", "apps.runs.get",
      creor_runs_get, CREOR_PERM_READ, "runs:read", NULL, CREOR_ROUTE_APP,
      CREOR_DO_READ, 0, NULL },

    { CREOR_GET, "/v1/usage", "usage.get",
      creor_usage_get, CREOR_PERM_READ, "usage:read", creor_q_usage, 0,
      CREOR_DO_READ, 0, NULL },

    { CREOR_GET, "/v1/system/health", "system.health",
      creor_system_health, 0, NULL, NULL, CREOR_ROUTE_PUBLIC,
      CREOR_DO_READ, 0, NULL },

    { CREOR_GET, "/v1/system/status", "system.status",
      creor_system_status, CREOR_PERM_ADMIN, "system:read", NULL, 0,
      CREOR_DO_READ, 0, NULL },

    { CREOR_POST, "/v1/chat/completions", "chat.completions",
      creor_chat_create, CREOR_PERM_WRITE, "chat:create", NULL,
      CREOR_ROUTE_JSON_SCAN,
      CREOR_DO_CREATE, 0, NULL },

    /* before /v1/webhooks/:webhook, which would take its path */

    { CREOR_GET, "/v1/webhooks/run-secret", "webhooks.run_secret.get",
      creor_webhooks_run_secret, CREOR_PERM_ADMIN, "webhooks:read", NULL, 0,
      CREOR_DO_READ, 0, NULL },

    { CREOR_POST, "/v1/webhooks/run-secret/rotate",
      "webhooks.run_secret.rotate",
      creor_webhooks_run_secret, CREOR_PERM_ADMIN, "webhooks:update", NULL,
      0, CREOR_DO_UPDATE, 0, NULL },

    { CREOR_GET, "/v1/webhooks", "webhooks.list",
      creor_webhooks_list, CREOR_PERM_ADMIN, "webhooks:read", creor_q_list,
      0, CREOR_DO_READ, 0, NULL },

    { CREOR_POST, "/v1/webhooks", "webhooks.create",
      creor_webhooks_create, CREOR_PERM_ADMIN, "webhooks:create", NULL, 0,
      CREOR_DO_CREATE, CREOR_ID_WEBHOOK, NULL },

    { CREOR_GET, "/v1/webhooks/:webhook", "webhooks.get",
      creor_webhooks_get, CREOR_PERM_ADMIN, "webhooks:read", NULL, 0,
      CREOR_DO_READ, 0, NULL },

    { CREOR_PATCH, "/v1/webhooks/:webhook", "webhooks.update",
      creor_webhooks_update, CREOR_PERM_ADMIN, "webhooks:update", NULL, 0,
      CREOR_DO_UPDATE, 0, NULL },

    { CREOR_DELETE, "/v1/webhooks/:webhook", "webhooks.delete",
      creor_webhooks_delete, CREOR_PERM_ADMIN, "webhooks:delete", NULL, 0,
      CREOR_DO_DELETE, 0, NULL },

    { CREOR_POST, "/v1/webhooks/:webhook/rotate-secret",
      "webhooks.rotate_secret",
      creor_webhooks_rotate, CREOR_PERM_ADMIN, "webhooks:update", NULL, 0,
      CREOR_DO_UPDATE, 0, NULL },

    { CREOR_POST, "/v1/webhooks/:webhook/test", "webhooks.test",
      creor_webhooks_test, CREOR_PERM_ADMIN, "webhooks:update", NULL, 0,
      CREOR_DO_UPDATE, 0, NULL },

    { CREOR_GET, "/v1/webhooks/:webhook/deliveries", "webhooks.deliveries",
      creor_webhooks_deliveries, CREOR_PERM_ADMIN, "webhooks:read",
      creor_q_deliveries, 0, CREOR_DO_READ, 0, NULL },

    { CREOR_POST, "/v1/webhooks/:webhook/deliveries/:delivery/redeliver",
      "webhooks.redeliver",
      creor_webhooks_redeliver, CREOR_PERM_ADMIN, "webhooks:update", NULL, 0,
      CREOR_DO_UPDATE, 0, NULL },

    { 0, NULL, NULL, NULL, 0, NULL, NULL, 0, 0, 0, NULL }
};


/*
 * NGX_OK with ctx->route set; NGX_HTTP_NOT_ALLOWED with the methods the
 * path has in *allow; NGX_DECLINED for an unknown path.
 */

ngx_int_t
creor_route(ngx_http_request_t *r, ngx_creor_ctx_t *ctx, ngx_str_t *allow)
{
    u_char         *p;
    ngx_uint_t      methods;
    creor_route_t  *rt;
    ngx_str_t       params[CREOR_ROUTE_PARAMS];

    methods = 0;

    for (rt = creor_routes; rt->pattern; rt++) {

        if (creor_route_match(rt->pattern, &r->uri, params) != NGX_OK) {
            continue;
        }

        if (r->method & rt->method) {
            ctx->route = rt;
            ctx->route_name.data = (u_char *) rt->name;
            ctx->route_name.len = ngx_strlen(rt->name);
            ngx_memcpy(ctx->params, params, sizeof(params));
            return NGX_OK;
        }

        methods |= rt->method;
    }

    if (methods == 0) {
        return NGX_DECLINED;
    }

    p = ngx_pnalloc(r->pool, sizeof("GET, HEAD, POST, PATCH, DELETE"));
    if (p == NULL) {
        return NGX_ERROR;
    }

    allow->data = p;

    if (methods & NGX_HTTP_GET) {
        p = ngx_cpymem(p, "GET, HEAD, ", sizeof("GET, HEAD, ") - 1);
    }

    if (methods & NGX_HTTP_POST) {
        p = ngx_cpymem(p, "POST, ", sizeof("POST, ") - 1);
    }

    if (methods & NGX_HTTP_PATCH) {
        p = ngx_cpymem(p, "PATCH, ", sizeof("PATCH, ") - 1);
    }

    if (methods & NGX_HTTP_DELETE) {
        p = ngx_cpymem(p, "DELETE, ", sizeof("DELETE, ") - 1);
    }

    allow->len = p - allow->data - 2;

    return NGX_HTTP_NOT_ALLOWED;
}


creor_route_t *
creor_route_table(void)
{
    return creor_routes;
}


/* ":kind" matches one non-empty path segment */

static ngx_int_t
creor_route_match(const char *pattern, ngx_str_t *uri, ngx_str_t *params)
{
    u_char      *u, *last, *start;
    ngx_uint_t   n;

    u = uri->data;
    last = u + uri->len;
    n = 0;

    while (*pattern) {

        if (*pattern == ':') {
            while (*pattern && *pattern != '/') {
                pattern++;
            }

            start = u;

            while (u < last && *u != '/') {
                u++;
            }

            if (u == start || n == CREOR_ROUTE_PARAMS) {
                return NGX_DECLINED;
            }

            params[n].data = start;
            params[n].len = u - start;
            n++;
            continue;
        }

        if (u == last || *u != (u_char) *pattern) {
            return NGX_DECLINED;
        }

        u++;
        pattern++;
    }

    return u == last ? NGX_OK : NGX_DECLINED;
}
