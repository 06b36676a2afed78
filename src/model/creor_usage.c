
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Usage records (SPEC 9.3, 10): aggregates per organization, day,
 * project, key, agent and model, "u:" records of the main store (their
 * keys: creor_usage_key() in creor_store.c).  Runs add theirs in the very
 * transaction that makes them terminal; chat completions through the
 * worker's meter (creor_usage_batch.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_creor.h"


/*
 * A run that reached a terminal state, in the transaction that put it
 * there: counted exactly when that commit succeeds.
 */

ngx_int_t
creor_usage_run(creor_store_t *st, MDB_txn *txn, creor_run_t *run)
{
    char                key[CREOR_USAGE_KEY_MAX];
    size_t              len;
    creor_json_t       *v;
    creor_usage_rec_t   rec;
    creor_usage_dims_t  d;

    ngx_memzero(&d, sizeof(creor_usage_dims_t));

    d.data[CREOR_USAGE_ORG] = run->hdr.org;
    d.len[CREOR_USAGE_ORG] = ngx_strlen(run->hdr.org);
    d.data[CREOR_USAGE_PROJECT] = run->hdr.project;
    d.len[CREOR_USAGE_PROJECT] = ngx_strlen(run->hdr.project);
    d.data[CREOR_USAGE_AGENT] = run->hdr.agent;
    d.len[CREOR_USAGE_AGENT] = ngx_strlen(run->hdr.agent);

    v = creor_json_get(run->doc, "keyId");

    if (v && v->type == CREOR_JSON_STRING) {
        d.data[CREOR_USAGE_KEY] = (char *) v->str.data;
        d.len[CREOR_USAGE_KEY] = v->str.len;
    }

    /* the run's chatModelId overrides the agent's model (SPEC 9.4) */

    v = creor_json_get(run->doc, "chatModelId");

    if (v == NULL || v->type != CREOR_JSON_STRING || v->str.len == 0) {
        v = creor_json_get(run->doc, "agentModel");
    }

    if (v && v->type == CREOR_JSON_STRING) {
        d.data[CREOR_USAGE_MODEL] = (char *) v->str.data;
        d.len[CREOR_USAGE_MODEL] = v->str.len;
    }

    creor_usage_day(d.day, run->hdr.completed_ms);

    if (creor_usage_key(key, &len, &d) != CREOR_STORE_OK) {
        return CREOR_STORE_ERROR;
    }

    ngx_memzero(&rec, sizeof(creor_usage_rec_t));
    rec.runs = 1;
    rec.input_tokens = run->hdr.input_tokens;
    rec.output_tokens = run->hdr.output_tokens;

    return creor_usage_merge(st, txn, key, len, &rec);
}


/*
 * Each aggregate of an organization from day first to day last
 * ("yyyymmdd", both included), in key order: one range walk.  NGX_OK,
 * NGX_ERROR if each failed, NGX_DECLINED if the store did.
 */

ngx_int_t
creor_usage_range(creor_store_t *st, MDB_txn *txn, ngx_str_t *org,
    const char *first, const char *last, creor_usage_each_pt each,
    void *data)
{
    int                 rc;
    size_t              plen, flen;
    ngx_int_t           ret;
    creor_scan_t        sc;
    creor_usage_rec_t   rec;
    creor_usage_dims_t  d;
    u_char              prefix[CREOR_STORE_KEY_MAX];

    plen = ngx_snprintf(prefix, sizeof(prefix), "u:%V:", org) - prefix;
    flen = ngx_cpymem(prefix + plen, first, CREOR_USAGE_DAY_LEN) - prefix;

    if (creor_scan_open(st, txn, &sc, (char *) prefix, plen, (char *) prefix,
                        flen)
        != CREOR_STORE_OK)
    {
        return NGX_DECLINED;
    }

    ret = NGX_OK;

    while ((rc = creor_scan_next(&sc)) == 1) {

        if (sc.rest_len <= CREOR_USAGE_DAY_LEN
            || ngx_memcmp(sc.rest, last, CREOR_USAGE_DAY_LEN) > 0)
        {
            break;
        }

        if (sc.val.mv_size != sizeof(creor_usage_rec_t)
            || creor_usage_parse(sc.key.mv_data, sc.key.mv_size, &d)
               != CREOR_STORE_OK)
        {
            continue;
        }

        ngx_memcpy(&rec, sc.val.mv_data, sizeof(creor_usage_rec_t));

        if (each(&d, &rec, data) != NGX_OK) {
            ret = NGX_ERROR;
            break;
        }
    }

    creor_scan_close(&sc);

    if (ret == NGX_OK && rc < 0) {
        ret = NGX_DECLINED;
    }

    return ret;
}
