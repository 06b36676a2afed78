
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Runs (SPEC 8.2, 8.3): creation (JSON or multipart with files), reads,
 * lists, cancel, signal, attachments; the state machine that every event
 * goes through, and the body of an executor call.
 *
 * A run is "r:<org>:<run>": a fixed header (status, lease, counters) and
 * a JSON document (inputs, result, files, the pending signal).  Its events
 * are "e:<run>:<seq>", each the envelope sent on the wire.  "ri:<run>"
 * names its organization, "q:<run>" says it needs a worker.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/crypto.h>

#include "ngx_creor.h"


#define CREOR_RUN_VERSION     1
#define CREOR_URL_TTL         3600          /* s a file URL stays valid */
#define CREOR_REAP_BATCH      16            /* runs cancelled per commit */
#define CREOR_REAP_BUDGET     500           /* us of one commit's work */
#define CREOR_REAP_PAUSE      2             /* ms between two commits */
#define CREOR_THREAD_MAX      1000          /* runs a leg's thread shows */


typedef struct {
    creor_arg_t            *status;
    ngx_str_t               agent;
} creor_runs_filter_t;


/* a run being created, and its attachments being written */

typedef struct {
    creor_json_t           *body;
    ngx_str_t               agent;
    ngx_array_t             files;      /* of creor_part_t */
    ngx_str_t               dir;        /* "<files path>/.up-<random>" */
    creor_json_t           *list;       /* the files' objects */
    creor_json_t          **tail;
    ngx_uint_t              next;       /* the file being written */
    size_t                  off;        /* and how much of it */
    ngx_fd_t                fd;
    u_char                  name[NGX_MAX_PATH];
    char                    id[CREOR_ID_MAX];
} creor_runs_new_t;


static ngx_int_t creor_runs_create_run(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, creor_runs_new_t *nr);
static ngx_int_t creor_runs_body(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_json_t **body, ngx_array_t *files);
static ngx_int_t creor_runs_form(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_json_t **body, ngx_array_t *files);
static ngx_int_t creor_runs_validate(ngx_http_request_t *r,
    creor_json_t *body);
static void creor_runs_discard_files(ngx_http_request_t *r, ngx_str_t *dir,
    creor_json_t *list);
static ngx_int_t creor_runs_upload_dir(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, creor_runs_new_t *nr);
static ngx_int_t creor_runs_write_step(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx);
static ngx_int_t creor_runs_file_item(ngx_http_request_t *r,
    creor_runs_new_t *nr, creor_part_t *part);
static void creor_runs_upload_cleanup(void *data);
static ngx_int_t creor_runs_item(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    MDB_val *key, MDB_val *val, yajl_gen g);
static void creor_run_doc_str(yajl_gen g, creor_run_t *run, const char *name,
    const char *key);
static void creor_run_doc_value(yajl_gen g, creor_run_t *run,
    const char *name, ngx_uint_t empty);
static ngx_int_t creor_run_status_parse(ngx_str_t *s);
static ngx_int_t creor_runs_file_headers(ngx_http_request_t *r,
    creor_json_t *f, ngx_str_t *fid);
static ngx_int_t creor_runs_tool_outputs(ngx_http_request_t *r,
    creor_run_t *run, creor_json_t *input);
static ngx_int_t creor_run_index(creor_store_t *st, MDB_txn *txn,
    creor_run_t *run, ngx_uint_t old);
static ngx_int_t creor_run_webhooks(creor_store_t *st, MDB_txn *txn,
    creor_run_t *run);
static ngx_flag_t creor_runs_reap_pending(creor_store_t *st);
static void creor_runs_reap(ngx_event_t *ev);


static ngx_event_t  creor_reap_ev;


static const char  *creor_run_statuses[] = {
    "", "queued", "running", "awaiting_input", "completed", "failed",
    "cancelled"
};

static const char  *creor_run_fields[] = {
    "appId", "agentId", "inputs", "chatModelId", "workspaceId", "webhookUrl",
    "metadata", NULL
};

static const char  *creor_signal_fields[] = { "action", "input", NULL };

static const char  *creor_cancel_fields[] = { NULL };


const char *
creor_run_status_name(ngx_uint_t status)
{
    return status <= CREOR_RUN_CANCELLED ? creor_run_statuses[status] : "";
}


static ngx_int_t
creor_run_status_parse(ngx_str_t *s)
{
    ngx_uint_t  i;

    /* seed 002 calls a queued run "pending" */

    if (s->len == 7 && ngx_strncmp(s->data, "pending", 7) == 0) {
        return CREOR_RUN_QUEUED;
    }

    for (i = CREOR_RUN_QUEUED; i <= CREOR_RUN_CANCELLED; i++) {
        if (ngx_strlen(creor_run_statuses[i]) == s->len
            && ngx_strncmp(creor_run_statuses[i], s->data, s->len) == 0)
        {
            return i;
        }
    }

    return NGX_ERROR;
}


ngx_int_t
creor_run_load(creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool,
    ngx_str_t *org, ngx_str_t *id, creor_run_t *run)
{
    int      rc;
    u_char   err[128];
    MDB_val  val;

    ngx_memzero(run, sizeof(creor_run_t));
    run->pool = pool;

    ngx_snprintf((u_char *) run->key, sizeof(run->key), "r:%V:%V%Z", org, id);

    rc = creor_store_get(st, txn, run->key, &val);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    if (val.mv_size <= sizeof(creor_run_hdr_t)) {
        return CREOR_STORE_ERROR;
    }

    ngx_memcpy(&run->hdr, val.mv_data, sizeof(creor_run_hdr_t));

    run->doc = creor_json_parse(pool,
                                (u_char *) val.mv_data
                                + sizeof(creor_run_hdr_t),
                                val.mv_size - sizeof(creor_run_hdr_t),
                                err, sizeof(err));

    if (run->doc == NULL || run->doc->type != CREOR_JSON_OBJECT) {
        return CREOR_STORE_ERROR;
    }

    run->id.data = ngx_pnalloc(pool, id->len);
    if (run->id.data == NULL) {
        return CREOR_STORE_ERROR;
    }

    ngx_memcpy(run->id.data, id->data, id->len);
    run->id.len = id->len;

    return CREOR_STORE_OK;
}


/* "ri:<run>": the organization of a run known by id alone */

static ngx_int_t
creor_run_org(creor_store_t *st, MDB_txn *txn, ngx_str_t *id, MDB_val *org)
{
    int   rc;
    char  key[CREOR_STORE_KEY_MAX];

    if (id->len >= CREOR_ID_MAX) {
        return CREOR_STORE_NOTFOUND;
    }

    ngx_snprintf((u_char *) key, sizeof(key), "ri:%V%Z", id);

    rc = creor_store_get(st, txn, key, org);

    if (rc == CREOR_STORE_OK && org->mv_size >= CREOR_ID_MAX) {
        return CREOR_STORE_ERROR;
    }

    return rc;
}


/* by id alone, for the dispatcher and signed file URLs */

ngx_int_t
creor_run_load_any(creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool,
    ngx_str_t *id, creor_run_t *run)
{
    int        rc;
    MDB_val    val;
    ngx_str_t  org;

    rc = creor_run_org(st, txn, id, &val);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    org.data = ngx_pnalloc(pool, val.mv_size);
    if (org.data == NULL) {
        return CREOR_STORE_ERROR;
    }

    ngx_memcpy(org.data, val.mv_data, val.mv_size);
    org.len = val.mv_size;

    return creor_run_load(st, txn, pool, &org, id, run);
}


/* the header alone, by id: what the dispatcher looks at every tick */

ngx_int_t
creor_run_header(creor_store_t *st, MDB_txn *txn, ngx_str_t *id,
    creor_run_hdr_t *hdr)
{
    int      rc;
    char     key[CREOR_STORE_KEY_MAX];
    MDB_val  val;

    rc = creor_run_org(st, txn, id, &val);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    ngx_snprintf((u_char *) key, sizeof(key), "r:%*s:%V%Z", val.mv_size,
                 val.mv_data, id);

    rc = creor_store_get(st, txn, key, &val);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    if (val.mv_size <= sizeof(creor_run_hdr_t)) {
        return CREOR_STORE_ERROR;
    }

    ngx_memcpy(hdr, val.mv_data, sizeof(creor_run_hdr_t));

    return CREOR_STORE_OK;
}


ngx_int_t
creor_run_save(creor_store_t *st, MDB_txn *txn, creor_run_t *run)
{
    int               rc;
    u_char           *buf;
    MDB_val           old;
    uint32_t          status;
    yajl_gen          g;
    ngx_str_t         doc;

    g = creor_gen_pool(run->pool);
    if (g == NULL) {
        return CREOR_STORE_ERROR;
    }

    creor_gen_value(g, run->doc);

    if (creor_gen_result_pool(run->pool, g, &doc) != NGX_OK) {
        return CREOR_STORE_ERROR;
    }

    buf = ngx_pnalloc(run->pool, sizeof(creor_run_hdr_t) + doc.len);
    if (buf == NULL) {
        return CREOR_STORE_ERROR;
    }

    /* the counts by status move in the same transaction */

    rc = creor_store_get(st, txn, run->key, &old);

    if (rc == CREOR_STORE_OK && old.mv_size > sizeof(creor_run_hdr_t)) {
        ngx_memcpy(&status, (u_char *) old.mv_data
                            + offsetof(creor_run_hdr_t, status),
                   sizeof(uint32_t));
        rc = creor_counts_run(st, txn, status, run->hdr.status);

    } else if (rc == CREOR_STORE_NOTFOUND) {
        rc = creor_counts_run(st, txn, 0, run->hdr.status);
    }

    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    run->hdr.version = CREOR_RUN_VERSION;
    ngx_memcpy(buf, &run->hdr, sizeof(creor_run_hdr_t));
    ngx_memcpy(buf + sizeof(creor_run_hdr_t), doc.data, doc.len);

    return creor_store_put(st, txn, run->key, buf,
                           sizeof(creor_run_hdr_t) + doc.len, 0);
}


static ngx_int_t
creor_run_queue(creor_store_t *st, MDB_txn *txn, creor_run_t *run,
    ngx_flag_t on)
{
    int   rc;
    char  key[CREOR_STORE_KEY_MAX];

    ngx_snprintf((u_char *) key, sizeof(key), "q:%V%Z", &run->id);

    if (on) {
        return creor_store_put(st, txn, key, "", 0, 0);
    }

    rc = creor_store_del(st, txn, key);

    /* not queued is as good; a failed delete fails the transaction */

    return rc == CREOR_STORE_NOTFOUND ? CREOR_STORE_OK : rc;
}


/* the run's indexes after its status moved from old (0: a new run) */

static ngx_int_t
creor_run_index(creor_store_t *st, MDB_txn *txn, creor_run_t *run,
    ngx_uint_t old)
{
    char  id[CREOR_ID_MAX];

    if (run->id.len >= sizeof(id)) {
        return CREOR_STORE_ERROR;
    }

    ngx_cpystrn((u_char *) id, run->id.data, run->id.len + 1);

    return creor_index_run(st, txn, &run->hdr, id, (uint32_t) old);
}


/*
 * Appends one event and applies what it means to the run (SPEC 8.3);
 * terminal runs take no more events (NGX_DECLINED).  The caller saves
 * the run and commits.
 */

ngx_int_t
creor_run_event(creor_store_t *st, MDB_txn *txn, creor_run_t *run,
    const char *type, size_t type_len, creor_json_t *value)
{
    int            rc;
    char           key[CREOR_STORE_KEY_MAX], id[CREOR_ID_MAX];
    int64_t        now;
    yajl_gen       g;
    ngx_str_t      out, t;
    ngx_uint_t     status, old;
    creor_json_t  *v;

    if (creor_run_terminal(run->hdr.status)) {
        return NGX_DECLINED;
    }

    rc = creor_store_make_id(st, txn, id, sizeof(id), "evt_");
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    now = creor_now_ms();
    run->hdr.seq++;

    g = creor_gen_pool(run->pool);
    if (g == NULL) {
        return CREOR_STORE_ERROR;
    }

    yajl_gen_map_open(g);
    creor_gen_kv(g, "id", id);
    creor_gen_kv_ngx(g, "run_id", &run->id);
    creor_gen_kv_int(g, "seq", run->hdr.seq);
    creor_gen_str(g, "type");
    yajl_gen_string(g, (u_char *) type, type_len);
    creor_gen_kv_time(g, "created_at", now);
    creor_gen_str(g, "payload");
    yajl_gen_map_open(g);
    creor_gen_str(g, "value");

    if (value && value->type == CREOR_JSON_OBJECT) {
        creor_gen_value(g, value);

    } else {
        yajl_gen_map_open(g);
        yajl_gen_map_close(g);
    }

    yajl_gen_map_close(g);
    yajl_gen_map_close(g);

    if (creor_gen_result_pool(run->pool, g, &out) != NGX_OK) {
        return CREOR_STORE_ERROR;
    }

    ngx_snprintf((u_char *) key, sizeof(key), "e:%V:%010uD%Z", &run->id,
                 run->hdr.seq);

    rc = creor_store_put(st, txn, key, out.data, out.len, 0);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    t.data = (u_char *) type;
    t.len = type_len;
    status = run->hdr.status;

#define creor_type_is(s)                                                      \
    (t.len == sizeof(s) - 1 && ngx_strncmp(t.data, s, sizeof(s) - 1) == 0)

    if (creor_type_is("run.queued")) {
        return CREOR_STORE_OK;
    }

    if (creor_type_is("run.awaiting_input")) {
        status = CREOR_RUN_AWAITING_INPUT;
        run->hdr.owner_pid = 0;
        run->hdr.lease_ms = 0;

        /* what the run waits for, on the run too (tool calls...) */

        if (creor_json_set(run->doc, "awaitingInput",
                           value ? value
                                 : creor_json_new(run->pool,
                                                  CREOR_JSON_OBJECT, NULL, 0))
            != NGX_OK)
        {
            return CREOR_STORE_ERROR;
        }

    } else if (creor_type_is("run.signal")) {
        status = CREOR_RUN_RUNNING;
        run->hdr.owner_pid = 0;
        run->hdr.lease_ms = 0;
        run->hdr.next_ms = 0;
        run->hdr.attempt = 0;

        if (creor_json_set(run->doc, "signal", value) != NGX_OK) {
            return CREOR_STORE_ERROR;
        }

        creor_json_unset(run->doc, "awaitingInput");

    } else if (creor_type_is("run.completed")) {
        status = CREOR_RUN_COMPLETED;

        v = creor_json_get(value, "result");

        if (v && v->type == CREOR_JSON_OBJECT
            && creor_json_set(run->doc, "result", v) != NGX_OK)
        {
            return CREOR_STORE_ERROR;
        }

        v = creor_json_get(value, "usage");

        if (v) {
            if (creor_json_is_int(creor_json_get(v, "inputTokens"))) {
                run->hdr.input_tokens =
                                (int64_t) creor_json_get(v, "inputTokens")->num;
            }

            if (creor_json_is_int(creor_json_get(v, "outputTokens"))) {
                run->hdr.output_tokens =
                               (int64_t) creor_json_get(v, "outputTokens")->num;
            }
        }

    } else if (creor_type_is("run.failed")
               || creor_type_is("run.worker.failed"))
    {
        status = CREOR_RUN_FAILED;

        v = creor_json_get(value, "reason_code");

        ngx_cpystrn((u_char *) run->hdr.error_code,
                    (v && v->type == CREOR_JSON_STRING && v->str.len)
                    ? v->str.data
                    : (u_char *) (creor_type_is("run.failed")
                                  ? "RUN_FAILED" : "EXECUTOR_UNAVAILABLE"),
                    sizeof(run->hdr.error_code));

    } else if (creor_type_is("run.cancelled")) {
        status = CREOR_RUN_CANCELLED;

    } else if (status == CREOR_RUN_QUEUED) {

        /* run.started, or a step of a leg that is under way */

        status = CREOR_RUN_RUNNING;
    }

#undef creor_type_is

    if (status == run->hdr.status) {
        return CREOR_STORE_OK;
    }

    if (status == CREOR_RUN_RUNNING && run->hdr.started_ms == 0) {
        run->hdr.started_ms = now;
    }

    if (creor_run_terminal(status)) {
        creor_json_unset(run->doc, "awaitingInput");
        run->hdr.completed_ms = now;
        run->hdr.owner_pid = 0;
        run->hdr.lease_ms = 0;
    }

    old = run->hdr.status;
    run->hdr.status = status;
    run->sync = 1;

    rc = creor_run_index(st, txn, run, old);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    if (creor_run_terminal(status)) {
        rc = creor_usage_run(st, txn, run);
        if (rc != CREOR_STORE_OK) {
            return rc;
        }
    }

    if (creor_run_terminal(status) || status == CREOR_RUN_AWAITING_INPUT) {
        rc = creor_run_webhooks(st, txn, run);
        if (rc != CREOR_STORE_OK) {
            return rc;
        }
    }

    rc = creor_run_queue(st, txn, run, status == CREOR_RUN_RUNNING
                                       || status == CREOR_RUN_QUEUED);
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    return creor_agent_track(st, txn, run->pool, run, 0);
}


/*
 * run.completed, .failed, .cancelled, .awaiting_input, in the change's
 * transaction; a terminal one also to the run's own webhookUrl.
 */

static ngx_int_t
creor_run_webhooks(creor_store_t *st, MDB_txn *txn, creor_run_t *run)
{
    char           type[48];
    u_char         err[128];
    yajl_gen       g;
    ngx_str_t      out, *url;
    creor_json_t  *data, *u;

    g = creor_gen_pool(run->pool);
    if (g == NULL) {
        return CREOR_STORE_ERROR;
    }

    creor_run_json(g, run);

    if (creor_gen_result_pool(run->pool, g, &out) != NGX_OK) {
        return CREOR_STORE_ERROR;
    }

    data = creor_json_parse(run->pool, out.data, out.len, err, sizeof(err));
    if (data == NULL) {
        return CREOR_STORE_ERROR;
    }

    ngx_snprintf((u_char *) type, sizeof(type), "run.%s%Z",
                 creor_run_status_name(run->hdr.status));

    u = creor_json_get(run->doc, "webhookUrl");
    url = (u && u->type == CREOR_JSON_STRING
           && creor_run_terminal(run->hdr.status)) ? &u->str : NULL;

    return creor_webhooks_emit(st, txn, run->pool, run->hdr.org, type, data,
                               url);
}


/*
 * Saves the run, commits (synced if its state changed) and wakes what
 * waits for events: streams and legs on this worker at once, the other
 * workers through the shared counter.
 */

ngx_int_t
creor_run_commit(creor_store_t *st, MDB_txn *txn, creor_run_t *run,
    ngx_flag_t sync)
{
    int                     rc;
    ngx_creor_main_conf_t  *mcf;

    rc = creor_run_save(st, txn, run);
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return rc;
    }

    rc = (sync && run->sync) ? creor_store_commit(txn)
                             : creor_store_commit_nosync(st, txn);

    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_creor_module);
    creor_changed(mcf, &run->id, CREOR_CHANGED_EVENTS);

    return CREOR_STORE_OK;
}


void
creor_run_json(yajl_gen g, creor_run_t *run)
{
    yajl_gen_map_open(g);
    creor_gen_kv_ngx(g, "id", &run->id);
    creor_gen_kv(g, "object", "run");
    creor_gen_kv(g, "status", creor_run_status_name(run->hdr.status));
    creor_gen_kv_or_null(g, "agentId", run->hdr.agent);
    creor_gen_kv_or_null(g, "appId", run->hdr.agent);
    creor_run_doc_str(g, run, "appName", "appName");
    creor_gen_kv_or_null(g, "threadId", run->hdr.thread);
    creor_gen_kv_or_null(g, "projectId", run->hdr.project);

    creor_run_doc_value(g, run, "inputs", CREOR_JSON_OBJECT);

    creor_run_doc_value(g, run, "result", CREOR_JSON_NULL);

    creor_run_doc_value(g, run, "awaitingInput", CREOR_JSON_NULL);

    creor_gen_kv_or_null(g, "errorCode", run->hdr.error_code);

    creor_gen_str(g, "usage");
    yajl_gen_map_open(g);
    creor_gen_kv_int(g, "inputTokens", run->hdr.input_tokens);
    creor_gen_kv_int(g, "outputTokens", run->hdr.output_tokens);
    yajl_gen_map_close(g);

    creor_run_doc_str(g, run, "webhookUrl", "webhookUrl");
    creor_run_doc_str(g, run, "chatModelId", "chatModelId");
    creor_run_doc_str(g, run, "workspaceId", "workspaceId");

    creor_run_doc_value(g, run, "metadata", CREOR_JSON_NULL);

    creor_run_doc_value(g, run, "files", CREOR_JSON_ARRAY);

    creor_gen_kv_time(g, "createdAt", run->hdr.created_ms);
    creor_gen_kv_time(g, "startedAt", run->hdr.started_ms);
    creor_gen_kv_time(g, "completedAt", run->hdr.completed_ms);
    yajl_gen_map_close(g);
}


/* a member of the run's document, or an empty value of its kind */

static void
creor_run_doc_value(yajl_gen g, creor_run_t *run, const char *name,
    ngx_uint_t empty)
{
    creor_json_t  *v;

    creor_gen_str(g, name);
    v = creor_json_get(run->doc, name);

    if (v) {
        creor_gen_value(g, v);
        return;
    }

    switch (empty) {

    case CREOR_JSON_OBJECT:
        yajl_gen_map_open(g);
        yajl_gen_map_close(g);
        break;

    case CREOR_JSON_ARRAY:
        yajl_gen_array_open(g);
        yajl_gen_array_close(g);
        break;

    default:
        yajl_gen_null(g);
        break;
    }
}


/*
 * Ends a run with a failure event of the module's own (RUN_TIMEOUT,
 * EXECUTOR_UNAVAILABLE) and commits; txn is gone either way.
 */

ngx_int_t
creor_run_fail(creor_store_t *st, MDB_txn *txn, creor_run_t *run,
    const char *type, const char *reason)
{
    int            rc;
    creor_json_t  *value;

    value = creor_json_new(run->pool, CREOR_JSON_OBJECT, NULL, 0);

    if (value == NULL
        || creor_json_set(value, "reason_code",
                          creor_json_new(run->pool, CREOR_JSON_STRING, reason,
                                         ngx_strlen(reason)))
           != NGX_OK)
    {
        creor_store_abort(txn);
        return CREOR_STORE_ERROR;
    }

    rc = creor_run_event(st, txn, run, type, ngx_strlen(type), value);
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return rc;
    }

    return creor_run_commit(st, txn, run, 1);
}


static void
creor_run_doc_str(yajl_gen g, creor_run_t *run, const char *name,
    const char *key)
{
    creor_json_t  *v;

    creor_gen_str(g, name);
    v = creor_json_get(run->doc, key);

    if (v && v->type == CREOR_JSON_STRING) {
        creor_gen_ngx_str(g, &v->str);

    } else {
        yajl_gen_null(g);
    }
}


/*
 * A deleted agent's active runs are cancelled, at most CREOR_REAP_BATCH
 * of them and CREOR_REAP_BUDGET ms of work per transaction: found by the
 * agent's status indexes, not by walking the organization's runs.  While
 * some remain, "ad:<org>:<agent>" says so and which worker is at it until
 * when (creor_reap_job_t), for creor_runs_reap(); they stay readable.
 */

ngx_int_t
creor_runs_cancel_agent(creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool,
    ngx_str_t *org, ngx_str_t *agent, ngx_flag_t *more)
{
    int                rc;
    char               prefix[CREOR_STORE_KEY_MAX];
    size_t             plen;
    int64_t            start;
    MDB_val            k, v;
    struct timeval     tv;
    ngx_str_t         *id;
    ngx_uint_t         i, status;
    MDB_cursor        *cur;
    ngx_array_t        ids;
    creor_run_t        run;
    creor_reap_job_t   job;

    if (ngx_array_init(&ids, pool, CREOR_REAP_BATCH + 1, sizeof(ngx_str_t))
        != NGX_OK
        || mdb_cursor_open(txn, st->dbi, &cur) != 0)
    {
        return CREOR_STORE_ERROR;
    }

    /* one more than a batch: whether any remain after it */

    for (status = CREOR_RUN_QUEUED;
         status <= CREOR_RUN_AWAITING_INPUT && ids.nelts <= CREOR_REAP_BATCH;
         status++)
    {
        plen = ngx_snprintf((u_char *) prefix, sizeof(prefix),
                            "ras:%V:%V:%ui:", org, agent, status)
               - (u_char *) prefix;

        k.mv_data = prefix;
        k.mv_size = plen;

        for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
             rc == 0 && k.mv_size > plen && ids.nelts <= CREOR_REAP_BATCH
             && ngx_memcmp(k.mv_data, prefix, plen) == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        {
            id = ngx_array_push(&ids);
            if (id == NULL) {
                mdb_cursor_close(cur);
                return CREOR_STORE_ERROR;
            }

            id->len = k.mv_size - plen;
            id->data = ngx_pnalloc(pool, id->len);
            if (id->data == NULL) {
                mdb_cursor_close(cur);
                return CREOR_STORE_ERROR;
            }

            ngx_memcpy(id->data, (u_char *) k.mv_data + plen, id->len);
        }
    }

    mdb_cursor_close(cur);

    id = ids.elts;
    ngx_gettimeofday(&tv);
    start = (int64_t) tv.tv_sec * 1000000 + tv.tv_usec;

    for (i = 0; i < ids.nelts && i < CREOR_REAP_BATCH; i++) {

        /* the write lock is held a bounded time, whatever a run costs */

        ngx_gettimeofday(&tv);

        if (i && (int64_t) tv.tv_sec * 1000000 + tv.tv_usec - start
                 >= CREOR_REAP_BUDGET)
        {
            break;
        }

        rc = creor_run_load(st, txn, pool, org, &id[i], &run);

        if (rc == CREOR_STORE_OK) {
            rc = creor_run_event(st, txn, &run, "run.cancelled", 13, NULL);

            if (rc == NGX_DECLINED) {
                continue;               /* terminal already */
            }
        }

        if (rc == CREOR_STORE_OK) {
            rc = creor_run_save(st, txn, &run);
        }

        if (rc == CREOR_STORE_NOTFOUND) {
            continue;
        }

        if (rc != CREOR_STORE_OK) {
            return rc;
        }
    }

    *more = (i < ids.nelts);

    ngx_snprintf((u_char *) prefix, sizeof(prefix), "ad:%V:%V%Z", org, agent);

    if (*more) {
        job.pid = (int64_t) ngx_pid;
        job.until_ms = creor_now_ms() + CREOR_REAP_LEASE;

        return creor_store_put(st, txn, prefix, &job, sizeof(job), 0);
    }

    rc = creor_store_del(st, txn, prefix);

    return rc == CREOR_STORE_NOTFOUND ? CREOR_STORE_OK : rc;
}


/*
 * The background step: one batch of the first deleted agent that still
 * has active runs, then again after a millisecond, so the write lock is
 * held a batch at a time.  Any worker may run it; the housekeeping timer
 * starts it too, for agents whose worker died half way.
 */

void
creor_runs_reap_kick(ngx_creor_main_conf_t *mcf)
{
    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    if (creor_reap_ev.handler == NULL) {
        creor_reap_ev.handler = creor_runs_reap;
        creor_reap_ev.log = ngx_cycle->log;
        creor_reap_ev.cancelable = 1;
    }

    if (!creor_reap_ev.timer_set) {
        ngx_add_timer(&creor_reap_ev, 1);
    }
}


/* whether any "ad:" job is there: a read, before taking the write lock */

static ngx_flag_t
creor_runs_reap_pending(creor_store_t *st)
{
    MDB_val      k, v;
    MDB_txn     *txn;
    ngx_flag_t   pending;
    MDB_cursor  *cur;

    txn = creor_store_read(st);
    if (txn == NULL) {
        return 0;
    }

    pending = 0;

    if (mdb_cursor_open(txn, st->dbi, &cur) == 0) {
        k.mv_data = "ad:";
        k.mv_size = 3;

        pending = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) == 0
                  && k.mv_size > 3 && ngx_memcmp(k.mv_data, "ad:", 3) == 0;

        mdb_cursor_close(cur);
    }

    creor_store_read_done(st);

    return pending;
}


static void
creor_runs_reap(ngx_event_t *ev)
{
    int                     rc;
    u_char                 *p, *colon;
    int64_t                 now;
    MDB_val                 k, v;
    MDB_txn                *txn;
    ngx_str_t               org, agent;
    ngx_flag_t              more, busy;
    creor_reap_job_t        job;
    ngx_pool_t             *pool;
    MDB_cursor             *cur;
    creor_store_t          *st;
    ngx_creor_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_creor_module);
    st = &mcf->store;

    if (!mcf->opened || !creor_runs_reap_pending(st)) {
        return;
    }

    pool = ngx_create_pool(16384, ev->log);
    if (pool == NULL) {
        return;
    }

    busy = 0;

    rc = creor_store_write(st, &txn);
    if (rc != CREOR_STORE_OK) {
        ngx_destroy_pool(pool);
        return;
    }

    if (mdb_cursor_open(txn, st->dbi, &cur) != 0) {
        creor_store_abort(txn);
        ngx_destroy_pool(pool);
        return;
    }

    /* the first job no other live worker holds */

    k.mv_data = "ad:";
    k.mv_size = 3;
    now = creor_now_ms();

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         rc == 0 && k.mv_size > 3 && ngx_memcmp(k.mv_data, "ad:", 3) == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        if (v.mv_size != sizeof(creor_reap_job_t)) {
            break;
        }

        ngx_memcpy(&job, v.mv_data, sizeof(creor_reap_job_t));

        if (job.pid == (int64_t) ngx_pid || job.until_ms < now) {
            break;
        }

        /* another worker's: it keeps at it, or its lease runs out */

        busy = 1;
    }

    if (rc != 0 || k.mv_size <= 3 || ngx_memcmp(k.mv_data, "ad:", 3) != 0) {
        mdb_cursor_close(cur);
        creor_store_abort(txn);
        ngx_destroy_pool(pool);

        if (busy) {
            ngx_add_timer(ev, CREOR_REAP_LEASE);
        }

        return;
    }

    p = ngx_pnalloc(pool, k.mv_size - 3);
    if (p == NULL) {
        mdb_cursor_close(cur);
        creor_store_abort(txn);
        ngx_destroy_pool(pool);
        return;
    }

    ngx_memcpy(p, (u_char *) k.mv_data + 3, k.mv_size - 3);
    colon = ngx_strlchr(p, p + k.mv_size - 3, ':');

    org.data = p;
    org.len = colon ? (size_t) (colon - p) : 0;
    agent.data = colon ? colon + 1 : p;
    agent.len = colon ? (size_t) (p + k.mv_size - 3 - agent.data) : 0;

    mdb_cursor_close(cur);

    if (org.len == 0 || agent.len == 0) {
        (void) mdb_del(txn, st->dbi, &k, NULL);
        rc = CREOR_STORE_OK;
        more = 1;

    } else {
        rc = creor_runs_cancel_agent(st, txn, pool, &org, &agent, &more);
    }

    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "creor: cancelling the runs of deleted agent %V "
                      "failed", &agent);
        ngx_destroy_pool(pool);
        return;
    }

    rc = creor_store_commit(txn);

    ngx_destroy_pool(pool);

    if (rc != CREOR_STORE_OK) {
        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "creor: cancelling the runs of a deleted agent "
                      "failed to commit");
        return;
    }

    creor_changed(mcf, NULL, CREOR_CHANGED_EVENTS);

    /*
     * This agent's next batch, or the next agent's, or nothing; after a
     * pause, so that other writers find the lock free.
     */

    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        ngx_add_timer(ev, CREOR_REAP_PAUSE);
    }
}


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

    if (ngx_array_init(&nr->files, r->pool, 2, sizeof(creor_part_t))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ctx->multipart ? creor_runs_form(r, ctx, &nr->body, &nr->files)
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

    /*
     * Attachments are written before the transaction, which must stay
     * short, and a piece a turn of the event loop (creor_steps())
     */

    if (creor_runs_upload_dir(r, ctx, nr) != NGX_OK) {
        return NGX_DECLINED;
    }

    ctx->data = nr;

    return creor_steps(r, ctx, creor_runs_write_step);
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

    creor_changed(ctx->mcf, NULL, CREOR_CHANGED_WORK);

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


/* form fields as text, "inputs" and "metadata" JSON strings, "files" */

static ngx_int_t
creor_runs_form(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_json_t **body, ngx_array_t *files)
{
    u_char                 err[128], *name;
    ngx_str_t              ct;
    ngx_flag_t             too_many;
    ngx_uint_t             i;
    ngx_array_t            parts;
    const char           **f;
    creor_part_t          *part, *file;
    creor_json_t          *obj, *v;
    ngx_creor_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_creor_module);
    ct = r->headers_in.content_type->value;

    if (creor_multipart_parse(r->pool, &ct, &ctx->body, &parts, err,
                              sizeof(err))
        != NGX_OK)
    {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR", NULL,
                          "%s", err);
    }

    obj = creor_json_new(r->pool, CREOR_JSON_OBJECT, NULL, 0);
    if (obj == NULL) {
        return NGX_ERROR;
    }

    part = parts.elts;

    for (i = 0; i < parts.nelts; i++) {

        if (part[i].name.len == 5
            && ngx_strncmp(part[i].name.data, "files", 5) == 0)
        {
            if (!part[i].is_file) {
                return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                                  "files", "'files' must be file parts.");
            }

            if (files->nelts == CREOR_FILES_MAX) {
                return creor_fail(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                  "TOO_MANY_FILES", "files",
                                  "At most %d files may be attached.",
                                  CREOR_FILES_MAX);
            }

            if (part[i].data.len > CREOR_FILE_SIZE_MAX) {
                return creor_fail(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                  "FILE_TOO_LARGE", "files",
                                  "A file may be at most 10 MB.");
            }

            if (part[i].data.len == 0) {
                return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                                  "files", "Empty files are rejected.");
            }

            if (part[i].filename.len == 0 || part[i].filename.len > 255
                || !creor_utf8_valid(part[i].filename.data,
                                     part[i].filename.len)
                || ngx_strlchr(part[i].filename.data,
                               part[i].filename.data + part[i].filename.len,
                               '\0'))
            {
                return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                                  "files", "A file needs a UTF-8 file name "
                                  "of 1 to 255 bytes.");
            }

            file = ngx_array_push(files);
            if (file == NULL) {
                return NGX_ERROR;
            }

            *file = part[i];
            continue;
        }

        for (f = creor_run_fields; *f; f++) {
            if (ngx_strlen(*f) == part[i].name.len
                && ngx_strncmp(*f, part[i].name.data, part[i].name.len) == 0)
            {
                break;
            }
        }

        if (*f == NULL || part[i].is_file) {
            name = ngx_pnalloc(r->pool, part[i].name.len + 1);
            if (name == NULL) {
                return NGX_ERROR;
            }

            ngx_cpystrn(name, part[i].name.data, part[i].name.len + 1);

            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "UNKNOWN_PARAMETER",
                              (char *) name, "Unknown form field.");
        }

        if (creor_json_get(obj, *f)) {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                              *f, "'%s' is given twice.", *f);
        }

        if (!creor_utf8_valid(part[i].data.data, part[i].data.len)
            || ngx_strlchr(part[i].data.data,
                           part[i].data.data + part[i].data.len, '\0'))
        {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                              *f, "'%s' is not UTF-8 text.", *f);
        }

        if (ngx_strcmp(*f, "inputs") == 0 || ngx_strcmp(*f, "metadata") == 0)
        {
            v = creor_json_parse_max(r->pool, part[i].data.data,
                                     part[i].data.len, lcf->json_max_values,
                                     &too_many, err, sizeof(err));
            if (v == NULL) {
                return creor_fail(r, too_many
                                     ? NGX_HTTP_REQUEST_ENTITY_TOO_LARGE
                                     : NGX_HTTP_BAD_REQUEST,
                                  too_many ? "BODY_TOO_LARGE"
                                           : "INVALID_JSON",
                                  *f, "'%s': %s", *f, err);
            }

        } else {
            v = creor_json_new(r->pool, CREOR_JSON_STRING,
                               (char *) part[i].data.data, part[i].data.len);
        }

        if (creor_json_set(obj, *f, v) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    *body = obj;

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


static void
creor_runs_discard_files(ngx_http_request_t *r, ngx_str_t *dir,
    creor_json_t *list)
{
    u_char        name[NGX_MAX_PATH];
    creor_json_t  *f, *id;

    for (f = list->child; f; f = f->next) {
        id = creor_json_get(f, "id");

        if (id && dir->len + id->str.len + 2 < NGX_MAX_PATH) {
            ngx_sprintf(name, "%s/%V%Z", dir->data, &id->str);
            (void) ngx_delete_file(name);
        }
    }

    if (ngx_delete_dir(dir->data) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, ngx_errno,
                      ngx_delete_dir_n " \"%s\" failed", dir->data);
    }
}


/*
 * The files go to "<files path>/.up-<random>/<file id>"; the directory is
 * renamed to the run's id once the run exists.
 */

static ngx_int_t
creor_runs_upload_dir(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_runs_new_t *nr)
{
    u_char              *p, rnd[12];
    ngx_pool_cleanup_t  *cln;

    if (ctx->mcf->files_path.len + 64 > NGX_MAX_PATH
        || creor_random(rnd, sizeof(rnd)) != 0)
    {
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    nr->list = creor_json_new(r->pool, CREOR_JSON_ARRAY, NULL, 0);
    nr->dir.data = ngx_pnalloc(r->pool, ctx->mcf->files_path.len + 32);
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (nr->list == NULL || nr->dir.data == NULL || cln == NULL) {
        return NGX_ERROR;
    }

    nr->tail = &nr->list->child;

    cln->handler = creor_runs_upload_cleanup;
    cln->data = nr;

    p = ngx_sprintf(nr->dir.data, "%V/.up-", &ctx->mcf->files_path);
    p = ngx_hex_dump(p, rnd, sizeof(rnd));
    *p = '\0';
    nr->dir.len = p - nr->dir.data;

    if (ngx_create_dir(nr->dir.data, 0700) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, ngx_errno,
                      ngx_create_dir_n " \"%s\" failed", nr->dir.data);
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    return NGX_OK;
}


/*
 * Writes CREOR_IO_CHUNK of the attachments a turn; after the last piece,
 * creates the run.
 */

static ngx_int_t
creor_runs_write_step(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    size_t             n;
    ssize_t            written;
    ngx_int_t          rc;
    creor_part_t      *part;
    creor_runs_new_t  *nr;

    nr = ctx->data;

    if (nr->next == nr->files.nelts) {
        return creor_handler_done(r, ctx, creor_runs_create_run(r, ctx, nr));
    }

    part = (creor_part_t *) nr->files.elts + nr->next;

    if (nr->fd == NGX_INVALID_FILE) {

        if (creor_make_id(nr->id, sizeof(nr->id), "file_") != 0) {
            rc = creor_fail_store(r, CREOR_STORE_ERROR);
            goto failed;
        }

        ngx_sprintf(nr->name, "%V/%s%Z", &nr->dir, nr->id);

        nr->fd = ngx_open_file(nr->name, NGX_FILE_WRONLY,
                               NGX_FILE_CREATE_OR_OPEN, 0600);
        if (nr->fd == NGX_INVALID_FILE) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, ngx_errno,
                          ngx_open_file_n " \"%s\" failed", nr->name);
            rc = creor_fail_store(r, CREOR_STORE_ERROR);
            goto failed;
        }

        nr->off = 0;
    }

    n = ngx_min(part->data.len - nr->off, CREOR_IO_CHUNK);

    written = ngx_write_fd(nr->fd, part->data.data + nr->off, n);

    if (written != (ssize_t) n) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, ngx_errno,
                      "writing \"%s\" failed", nr->name);
        rc = creor_fail_store(r, CREOR_STORE_FULL);
        goto failed;
    }

    nr->off += n;

    if (nr->off < part->data.len) {
        return NGX_AGAIN;
    }

    ngx_close_file(nr->fd);
    nr->fd = NGX_INVALID_FILE;

    if (creor_runs_file_item(r, nr, part) != NGX_OK) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto failed;
    }

    nr->next++;

    return NGX_AGAIN;

failed:

    if (nr->fd != NGX_INVALID_FILE) {
        ngx_close_file(nr->fd);
        nr->fd = NGX_INVALID_FILE;
        (void) ngx_delete_file(nr->name);
    }

    creor_runs_discard_files(r, &nr->dir, nr->list);

    return creor_handler_done(r, ctx, rc);
}


/* the file's object in the run: id, name, type, size */

static ngx_int_t
creor_runs_file_item(ngx_http_request_t *r, creor_runs_new_t *nr,
    creor_part_t *part)
{
    u_char        *p;
    ngx_str_t      ct;
    creor_json_t  *item;

    item = creor_json_new(r->pool, CREOR_JSON_OBJECT, NULL, 0);
    if (item == NULL) {
        return NGX_ERROR;
    }

    ct = part->content_type;

    if (ct.len == 0 || !creor_utf8_valid(ct.data, ct.len)) {
        ngx_str_set(&ct, "application/octet-stream");
    }

    p = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (creor_json_set(item, "id",
                       creor_json_new(r->pool, CREOR_JSON_STRING, nr->id,
                                      ngx_strlen(nr->id))) != NGX_OK
        || creor_json_set(item, "name",
                          creor_json_new(r->pool, CREOR_JSON_STRING,
                                         (char *) part->filename.data,
                                         part->filename.len)) != NGX_OK
        || creor_json_set(item, "type",
                          creor_json_new(r->pool, CREOR_JSON_STRING,
                                         (char *) ct.data, ct.len))
           != NGX_OK
        || creor_json_set(item, "size",
                          creor_json_new(r->pool, CREOR_JSON_NUMBER,
                                         (char *) p,
                                         ngx_sprintf(p, "%uz",
                                                     part->data.len)
                                         - p)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    item->key.len = 0;

    *nr->tail = item;
    nr->tail = &item->next;
    nr->list->count++;

    return NGX_OK;
}


static void
creor_runs_upload_cleanup(void *data)
{
    creor_runs_new_t  *nr = data;

    if (nr->fd != NGX_INVALID_FILE) {
        ngx_close_file(nr->fd);
        nr->fd = NGX_INVALID_FILE;
    }
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


/* the route's run, which the scope checked: gone is not found */

ngx_int_t
creor_runs_route_run(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    MDB_txn *txn, creor_run_t *run)
{
    int  rc;

    rc = creor_run_load(&ctx->mcf->store, txn, r->pool, &ctx->who.org,
                        &ctx->ids[CREOR_ID_RUN], run);

    if (rc == CREOR_STORE_NOTFOUND) {
        return creor_fail(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND", NULL,
                          "No such run.");
    }

    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    return NGX_OK;
}


ngx_int_t
creor_runs_get(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    MDB_txn      *txn;
    yajl_gen      g;
    creor_run_t   run;

    txn = creor_store_read(&ctx->mcf->store);
    if (txn == NULL) {
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    if (creor_runs_route_run(r, ctx, txn, &run) != NGX_OK) {
        return NGX_DECLINED;
    }

    creor_store_read_done(&ctx->mcf->store);

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

    rc = creor_store_write(&ctx->mcf->store, &txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    if (creor_runs_route_run(r, ctx, txn, &run) != NGX_OK) {
        creor_store_abort(txn);
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

    rc = creor_store_write(&ctx->mcf->store, &txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    if (creor_runs_route_run(r, ctx, txn, &run) != NGX_OK) {
        creor_store_abort(txn);
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
    creor_json_t  *wait, *calls, *outs, *o, *id, *c, *cid;

    wait = creor_json_get(run->doc, "awaitingInput");
    calls = creor_json_get(wait, "tool_calls");

    if (calls == NULL || calls->type != CREOR_JSON_ARRAY) {
        return NGX_OK;
    }

    outs = creor_json_get(input, "tool_outputs");

    if (outs == NULL || outs->type != CREOR_JSON_ARRAY) {
        (void) creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                          "input.tool_outputs", "The run waits for tool "
                          "calls: 'input.tool_outputs' must be an array "
                          "with an output for each call.");
        return NGX_DECLINED;
    }

    for (o = outs->child; o; o = o->next) {
        id = creor_json_get(o, "tool_call_id");

        if (o->type != CREOR_JSON_OBJECT
            || id == NULL || id->type != CREOR_JSON_STRING
            || creor_json_get(o, "output") == NULL
            || creor_json_get(o, "output")->type != CREOR_JSON_STRING)
        {
            (void) creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                              "input.tool_outputs", "Each tool output is "
                              "{\"tool_call_id\": string, \"output\": "
                              "string}.");
            return NGX_DECLINED;
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
            (void) creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                              "input.tool_outputs", "Each tool call needs "
                              "exactly one output (tool_call_id).");
            return NGX_DECLINED;
        }
    }

    if (outs->count != calls->count) {
        (void) creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                          "input.tool_outputs", "An output names no "
                          "pending tool call.");
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * A file URL given to the executor carries its own authority:
 * "?expires=<unix time>&signature=<hex HMAC of run/file/expires>".
 */

void
creor_file_signature(ngx_creor_main_conf_t *mcf, ngx_str_t *run,
    ngx_str_t *file, time_t expires, u_char *hex)
{
    u_char        msg[256];
    uint8_t       mac[CREOR_HASH_LEN];
    unsigned int  n;

    n = CREOR_HASH_LEN;

    HMAC(EVP_sha256(), mcf->store.secret, (int) mcf->store.secret_len, msg,
         ngx_snprintf(msg, sizeof(msg), "file:%V/%V/%T", run, file, expires)
         - msg, mac, &n);

    ngx_hex_dump(hex, mac, CREOR_HASH_LEN);
}


ngx_int_t
creor_runs_check_signature(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    time_t        expires;
    u_char        hex[2 * CREOR_HASH_LEN];
    creor_arg_t  *e, *s;

    e = creor_arg(ctx, "expires");
    s = creor_arg(ctx, "signature");

    if (e == NULL || s == NULL || s->value.len != sizeof(hex)) {
        goto invalid;
    }

    expires = ngx_atotm(e->value.data, e->value.len);

    if (expires == NGX_ERROR || expires < ngx_time()) {
        goto invalid;
    }

    creor_file_signature(ctx->mcf, &ctx->params[0], &ctx->params[1], expires,
                         hex);

    if (CRYPTO_memcmp(hex, s->value.data, sizeof(hex)) != 0) {
        goto invalid;
    }

    ctx->signed_url = 1;

    return NGX_OK;

invalid:

    return creor_fail(r, NGX_HTTP_UNAUTHORIZED, "AUTH_KEY_INVALID", NULL,
                      "The file URL's signature is invalid or expired.");
}


/* GET /v1/runs/:id/files/:fileId: the attachment itself */

ngx_int_t
creor_runs_file(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int               rc;
    u_char           *p;
    MDB_txn          *txn;
    ngx_buf_t        *b;
    ngx_str_t        *fid, type, name;
    ngx_chain_t       out;
    creor_run_t       run;
    creor_json_t     *f, *v;
    ngx_table_elt_t  *h;
    ngx_open_file_info_t       of;
    ngx_http_core_loc_conf_t  *clcf;

    fid = &ctx->params[1];

    if (!creor_is_id((char *) fid->data, fid->len, "file_")) {
        return creor_fail(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND", NULL,
                          "No such file.");
    }

    txn = creor_store_read(&ctx->mcf->store);
    if (txn == NULL) {
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    if (ctx->signed_url) {
        rc = creor_run_load_any(&ctx->mcf->store, txn, r->pool,
                                &ctx->params[0], &run);
        if (rc != CREOR_STORE_OK) {
            return creor_fail(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND", NULL,
                              "No such run.");
        }

    } else if (creor_runs_route_run(r, ctx, txn, &run) != NGX_OK) {
        return NGX_DECLINED;
    }

    creor_store_read_done(&ctx->mcf->store);

    v = creor_json_get(run.doc, "files");

    for (f = v ? v->child : NULL; f; f = f->next) {
        v = creor_json_get(f, "id");

        if (v && v->str.len == fid->len
            && ngx_strncmp(v->str.data, fid->data, fid->len) == 0)
        {
            break;
        }
    }

    if (f == NULL) {
        return creor_fail(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND", NULL,
                          "No such file.");
    }

    p = ngx_pnalloc(r->pool, ctx->mcf->files_path.len + 2 * CREOR_ID_MAX + 4);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    name.data = p;
    name.len = ngx_sprintf(p, "%V/%V/%V%Z", &ctx->mcf->files_path, &run.id,
                           fid) - p - 1;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    ngx_memzero(&of, sizeof(ngx_open_file_info_t));
    of.read_ahead = clcf->read_ahead;
    of.directio = NGX_MAX_OFF_T_VALUE;
    of.valid = clcf->open_file_cache_valid;
    of.min_uses = clcf->open_file_cache_min_uses;
    of.errors = clcf->open_file_cache_errors;
    of.events = clcf->open_file_cache_events;

    if (ngx_open_cached_file(clcf->open_file_cache, &name, &of, r->pool)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, of.err,
                      "%s \"%V\" failed", of.failed, &name);
        return creor_fail(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND", NULL,
                          "The file is gone.");
    }

    v = creor_json_get(f, "type");
    type = v ? v->str : (ngx_str_t) ngx_string("application/octet-stream");

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_type = type;
    r->headers_out.content_type_len = type.len;
    r->headers_out.content_length_n = of.size;
    r->headers_out.last_modified_time = of.mtime;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-Request-Id");
    h->value = ctx->request_id;

    if (creor_runs_file_headers(r, f, fid) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->sending = 1;

    if (of.size == 0 || r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
        return ngx_http_send_header(r);
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->file = ngx_pcalloc(r->pool, sizeof(ngx_file_t));
    if (b->file == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    b->file_pos = 0;
    b->file_last = of.size;
    b->in_file = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;
    b->file->fd = of.fd;
    b->file->name = name;
    b->file->log = r->connection->log;
    b->file->directio = of.is_directio;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * An upload is served as a download, never rendered: its type is the
 * client's, and text/html would be active content on the API's origin,
 * fetched by signed URL without a key.  The name: "filename" with the
 * bytes outside a safe set replaced, "filename*" with all of them
 * (RFC 6266).
 */

static ngx_int_t
creor_runs_file_headers(ngx_http_request_t *r, creor_json_t *f,
    ngx_str_t *fid)
{
    u_char        *p, c;
    size_t         i;
    ngx_str_t      name, v;
    creor_json_t  *n;

    static ngx_str_t  nosniff = ngx_string("nosniff");

    n = creor_json_get(f, "name");

    name = (n && n->type == CREOR_JSON_STRING && n->str.len) ? n->str : *fid;

    v.data = ngx_pnalloc(r->pool,
                         sizeof("attachment; filename=\"\"; "
                                "filename*=UTF-8''") - 1
                         + name.len
                         + name.len
                         + 2 * ngx_escape_uri(NULL, name.data, name.len,
                                              NGX_ESCAPE_URI_COMPONENT));
    if (v.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(v.data, "attachment; filename=\"",
                   sizeof("attachment; filename=\"") - 1);

    for (i = 0; i < name.len; i++) {
        c = name.data[i];
        *p++ = (isalnum(c) || c == '.' || c == '_' || c == '-' || c == ' ')
               ? c : '_';
    }

    p = ngx_cpymem(p, "\"; filename*=UTF-8''",
                   sizeof("\"; filename*=UTF-8''") - 1);

    p = (u_char *) ngx_escape_uri(p, name.data, name.len,
                                  NGX_ESCAPE_URI_COMPONENT);

    v.len = p - v.data;

    if (creor_add_header(r, "Content-Disposition", &v) != NGX_OK
        || creor_add_header(r, "X-Content-Type-Options", &nosniff) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}
