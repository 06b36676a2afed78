
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Run records (SPEC 8.2): loading and saving a run, its queue entry and
 * indexes, its status names, its public JSON document and the signature
 * of its files' URLs.
 *
 * A run is "r:<org>:<run>": a fixed header (creor_run_hdr_t, status,
 * lease, counters) and a JSON document (inputs, result, files, the
 * pending signal).  Its events are "e:<run>:<seq>", each the envelope
 * sent on the wire.  "ri:<run>" names its organization, "q:<run>" says it
 * needs a worker.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ngx_creor.h"


#define CREOR_RUN_VERSION     1


static ngx_int_t creor_run_org(creor_store_t *st, MDB_txn *txn, ngx_str_t *id,
    MDB_val *org);
static void creor_run_doc_value(yajl_gen g, creor_run_t *run,
    const char *name, ngx_uint_t empty);


static const char  *creor_run_statuses[] = {
    "", "queued", "running", "awaiting_input", "completed", "failed",
    "cancelled"
};


const char *
creor_run_status_name(ngx_uint_t status)
{
    return status <= CREOR_RUN_CANCELLED ? creor_run_statuses[status] : "";
}


ngx_int_t
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


ngx_int_t
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

ngx_int_t
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


void
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
