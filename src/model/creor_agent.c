
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Agent records (SPEC 8.1): "a:<org>:<agent id>", a small fixed header
 * (project, status, latest run and thread) that lists and scope checks
 * read without parsing, then the agent's public JSON, which GET sends as
 * is.  A change of status moves the agent's counts and indexes in the
 * same transaction.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_creor.h"


static ngx_int_t creor_agent_key(char *key, ngx_str_t *org, ngx_str_t *id);
static ngx_int_t creor_agent_get(creor_store_t *st, MDB_txn *txn, char *key,
    creor_agent_t *agent);


/* the order of the public object */
static const char  *creor_agent_order[] = {
    "id", "object", "name", "description", "model", "systemPrompt",
    "settings", "repository", "status", "runId", "organizationId",
    "projectId", "createdAt", "updatedAt", NULL
};


/*
 * The agent "id" of org, its JSON copied to the pool, so that a read
 * transaction may end at once.  The signature of creor_object_t's load.
 */

ngx_int_t
creor_agent_load(creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool,
    ngx_str_t *org, ngx_str_t *id, void *agent)
{
    u_char         *p;
    ngx_int_t       rc;
    char            key[CREOR_STORE_KEY_MAX];
    creor_agent_t  *a;

    a = agent;

    rc = creor_agent_key(key, org, id);

    if (rc == CREOR_STORE_OK) {
        rc = creor_agent_get(st, txn, key, a);
    }

    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    p = ngx_pnalloc(pool, a->json.len);
    if (p == NULL) {
        return CREOR_STORE_ERROR;
    }

    ngx_memcpy(p, a->json.data, a->json.len);
    a->json.data = p;

    return CREOR_STORE_OK;
}


/* the store key of an agent: an id that is not an agent's is not found */

static ngx_int_t
creor_agent_key(char *key, ngx_str_t *org, ngx_str_t *id)
{
    if (!creor_is_id((char *) id->data, id->len, "agent_")) {
        return CREOR_STORE_NOTFOUND;
    }

    ngx_snprintf((u_char *) key, CREOR_STORE_KEY_MAX, "a:%V:%V%Z", org, id);

    return CREOR_STORE_OK;
}


/* the agent at key, its JSON still in the transaction's map */

static ngx_int_t
creor_agent_get(creor_store_t *st, MDB_txn *txn, char *key,
    creor_agent_t *agent)
{
    ngx_int_t  rc;
    MDB_val    val;

    rc = creor_store_get(st, txn, key, &val);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    return creor_agent_decode(&val, agent);
}


/* a stored agent's header and JSON; json points into val */

ngx_int_t
creor_agent_decode(const MDB_val *val, creor_agent_t *agent)
{
    if (val->mv_size <= sizeof(creor_agent_hdr_t)) {
        return CREOR_STORE_ERROR;
    }

    ngx_memcpy(&agent->hdr, val->mv_data, sizeof(creor_agent_hdr_t));
    agent->hdr.project[CREOR_ID_MAX - 1] = '\0';
    agent->hdr.status[CREOR_AGENT_STATUS_MAX - 1] = '\0';

    agent->json.data = (u_char *) val->mv_data + sizeof(creor_agent_hdr_t);
    agent->json.len = val->mv_size - sizeof(creor_agent_hdr_t);

    return CREOR_STORE_OK;
}


/*
 * A new agent of org and project from doc, its members checked: an id,
 * "idle", the times; json receives the public object.
 */

ngx_int_t
creor_agent_create(creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool,
    ngx_str_t *org, ngx_str_t *project, creor_json_t *doc, ngx_str_t *json)
{
    ngx_int_t           rc;
    char                id[CREOR_ID_MAX], now[CREOR_TIME_LEN];
    size_t              n;
    creor_agent_hdr_t   hdr;

    rc = creor_store_make_id(st, txn, id, sizeof(id), "agent_");
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    n = creor_time_rfc3339(now, creor_now_ms());

    if (creor_json_set(doc, "id",
                       creor_json_new(pool, CREOR_JSON_STRING, id,
                                      ngx_strlen(id))) != NGX_OK
        || creor_json_set(doc, "object",
                          creor_json_new(pool, CREOR_JSON_STRING, "agent",
                                         5)) != NGX_OK
        || creor_json_set(doc, "status",
                          creor_json_new(pool, CREOR_JSON_STRING, "idle",
                                         4)) != NGX_OK
        || creor_json_set(doc, "organizationId",
                          creor_json_new(pool, CREOR_JSON_STRING,
                                         (char *) org->data, org->len))
           != NGX_OK
        || creor_json_set(doc, "projectId",
                          creor_json_new(pool, CREOR_JSON_STRING,
                                         (char *) project->data,
                                         project->len)) != NGX_OK
        || creor_json_set(doc, "createdAt",
                          creor_json_new(pool, CREOR_JSON_STRING, now, n))
           != NGX_OK
        || creor_json_set(doc, "updatedAt",
                          creor_json_new(pool, CREOR_JSON_STRING, now, n))
           != NGX_OK)
    {
        return CREOR_STORE_ERROR;
    }

    ngx_memzero(&hdr, sizeof(creor_agent_hdr_t));

    return creor_agent_save(st, txn, pool, org, doc, &hdr, json);
}


/*
 * Writes agent with its header (run and thread as hdr has them); json
 * receives the public object.
 */

ngx_int_t
creor_agent_save(creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool,
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


/*
 * An agent's status is its latest run's (SPEC 8.1).  latest: run is
 * a new run of the agent; otherwise it counts only if still the latest.
 */

ngx_int_t
creor_agent_track(creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool,
    creor_run_t *run, ngx_flag_t latest)
{
    ngx_int_t       rc;
    u_char          err[128];
    ngx_str_t       org, id;
    const char     *status, *event;
    creor_json_t   *agent, *was;
    creor_agent_t   a;

    org.data = (u_char *) run->hdr.org;
    org.len = ngx_strlen(run->hdr.org);
    id.data = (u_char *) run->hdr.agent;
    id.len = ngx_strlen(run->hdr.agent);

    rc = creor_agent_load(st, txn, pool, &org, &id, &a);

    if (rc == CREOR_STORE_NOTFOUND) {
        return CREOR_STORE_OK;          /* deleted: its runs live on */
    }

    if (rc != CREOR_STORE_OK) {
        return CREOR_STORE_ERROR;
    }

    if (latest) {
        ngx_memzero(a.hdr.run, sizeof(a.hdr.run));
        ngx_cpystrn((u_char *) a.hdr.run, run->id.data,
                    ngx_min(run->id.len + 1, sizeof(a.hdr.run)));
        ngx_cpystrn((u_char *) a.hdr.thread, (u_char *) run->hdr.thread,
                    sizeof(a.hdr.thread));

    } else if (ngx_strlen(a.hdr.run) != run->id.len
               || ngx_strncmp(a.hdr.run, run->id.data, run->id.len) != 0)
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

    agent = creor_json_parse(pool, a.json.data, a.json.len, err, sizeof(err));
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

    if (event) {
        rc = creor_webhooks_emit(st, txn, pool, run->hdr.org, event, agent,
                                 NULL);
        if (rc != CREOR_STORE_OK) {
            return rc;
        }
    }

    return creor_agent_save(st, txn, pool, &org, agent, &a.hdr, NULL);
}


/*
 * The agent goes at once; its active runs are cancelled a batch at a
 * time, the first here and the rest by creor_runs_reap() (more: some are
 * left), so no write transaction grows with the agent's runs.  In a full
 * map the record goes first, alone (its pages are free once that
 * commits), then its index entries and status count; lists skip entries
 * whose record is gone.
 */

ngx_int_t
creor_agent_delete(creor_store_t *st, ngx_pool_t *pool, ngx_str_t *org,
    ngx_str_t *id, ngx_flag_t *more, ngx_log_t *log)
{
    ngx_int_t       rc;
    char            key[CREOR_STORE_KEY_MAX], sorg[CREOR_ID_MAX],
                    sid[CREOR_ID_MAX];
    MDB_txn        *txn;
    ngx_uint_t      pass;
    creor_agent_t   a;

    rc = creor_agent_key(key, org, id);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    ngx_cpystrn((u_char *) sorg, org->data,
                ngx_min(org->len + 1, sizeof(sorg)));
    ngx_cpystrn((u_char *) sid, id->data, ngx_min(id->len + 1, sizeof(sid)));

    *more = 0;

    /* pass 0: all in one; 1: the record alone; 2: the rest */

    for (pass = 0; pass < 3; pass++) {

        rc = creor_store_write(st, &txn);
        if (rc != CREOR_STORE_OK) {
            break;
        }

        if (pass < 2) {
            rc = creor_agent_get(st, txn, key, &a);
            if (rc != CREOR_STORE_OK) {
                creor_store_abort(txn);
                return rc;
            }

            rc = creor_store_del(st, txn, key);
        }

        if (rc == CREOR_STORE_OK && pass != 1) {
            rc = creor_counts_agent(st, txn, a.hdr.status, NULL);
        }

        if (rc == CREOR_STORE_OK && pass != 1) {
            rc = creor_index_agent(st, txn, sorg, a.hdr.project, sid,
                                   a.hdr.status, NULL);
        }

        if (rc == CREOR_STORE_OK && pass != 1) {
            rc = creor_runs_cancel_agent(st, txn, pool, org, id, more);
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

        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "creor: the index entries and status count of "
                      "deleted agent %s are left in a full store", sid);
        rc = CREOR_STORE_OK;
    }

    return rc;
}
