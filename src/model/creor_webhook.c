
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Webhook records (SPEC 11): endpoints "w:<org>:<id>", an organization's
 * run-webhook secret "ws:<org>", deliveries "wl:<owner>:<id>" and their
 * due index "wq:<due ms>:<owner>:<id>", its depth "m:whq".  An event is
 * written in the transaction of the change it reports
 * (creor_webhooks_emit): one delivery per matching endpoint.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_WH_PURGE          256     /* deliveries a housekeeping turn */


static int creor_whd_drop(MDB_txn *txn, const MDB_val *key,
    const MDB_val *val, int64_t now, void *data);


const char  *creor_event_types[] = {
    "agent.started", "agent.completed", "agent.failed", "run.completed",
    "run.failed", "run.cancelled", "run.awaiting_input", "usage.alert",
    "webhook.test", NULL
};


/* "*" is every type: (ngx_uint_t) -1 */

ngx_uint_t
creor_webhook_event_bit(const char *type, size_t len)
{
    ngx_uint_t  i;

    if (len == 1 && type[0] == '*') {
        return (ngx_uint_t) -1;
    }

    for (i = 0; creor_event_types[i]; i++) {
        if (ngx_strlen(creor_event_types[i]) == len
            && ngx_strncmp(creor_event_types[i], type, len) == 0)
        {
            return (ngx_uint_t) 1 << i;
        }
    }

    return 0;
}


/* the organization's run-webhook secret, made on first use */

ngx_int_t
creor_webhook_run_secret(creor_store_t *st, MDB_txn *txn, const char *org,
    creor_wh_secret_t *sec)
{
    int       rc;
    char      key[CREOR_STORE_KEY_MAX];
    MDB_val   val;

    ngx_snprintf((u_char *) key, sizeof(key), "ws:%s%Z", org);

    rc = creor_store_get(st, txn, key, &val);

    if (rc == CREOR_STORE_OK && val.mv_size == sizeof(creor_wh_secret_t)) {
        ngx_memcpy(sec, val.mv_data, sizeof(creor_wh_secret_t));
        return CREOR_STORE_OK;
    }

    if (rc != CREOR_STORE_NOTFOUND) {
        return CREOR_STORE_ERROR;
    }

    ngx_memzero(sec, sizeof(creor_wh_secret_t));
    creor_sign_secret(sec->secret);

    return creor_store_put(st, txn, key, sec, sizeof(creor_wh_secret_t), 0);
}


/* an endpoint by its key: NOTFOUND, or ERROR for a record not one */

int
creor_webhook_get(creor_store_t *st, MDB_txn *txn, const char *key,
    creor_wh_rec_t *rec)
{
    int      rc;
    MDB_val  val;

    rc = creor_store_get(st, txn, key, &val);

    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    if (val.mv_size != sizeof(creor_wh_rec_t)) {
        return CREOR_STORE_ERROR;
    }

    ngx_memcpy(rec, val.mv_data, sizeof(creor_wh_rec_t));

    return CREOR_STORE_OK;
}


/* the endpoint a delivery goes to, its key in wkey */

int
creor_whd_endpoint(creor_store_t *st, MDB_txn *txn, creor_whd_t *whd,
    char *wkey, creor_wh_rec_t *rec)
{
    ngx_snprintf((u_char *) wkey, CREOR_STORE_KEY_MAX, "w:%s:%s%Z",
                 whd->hdr.org, whd->hdr.owner);

    return creor_webhook_get(st, txn, wkey, rec);
}


/* an organization's endpoints, up to max */

int
creor_webhook_count(creor_store_t *st, MDB_txn *txn, ngx_str_t *org,
    size_t max, size_t *n)
{
    char    prefix[CREOR_STORE_KEY_MAX];
    size_t  plen;

    plen = ngx_snprintf((u_char *) prefix, sizeof(prefix), "w:%V:", org)
           - (u_char *) prefix;

    return creor_scan_count(st, txn, prefix, plen, max, n);
}


ngx_int_t
creor_whd_read(MDB_val *val, creor_whd_t *whd)
{
    u_char  *p;

    if (val->mv_size < sizeof(creor_whd_hdr_t)) {
        return NGX_ERROR;
    }

    ngx_memcpy(&whd->hdr, val->mv_data, sizeof(creor_whd_hdr_t));

    if (val->mv_size != sizeof(creor_whd_hdr_t) + whd->hdr.url_len
                        + whd->hdr.body_len)
    {
        return NGX_ERROR;
    }

    whd->hdr.org[CREOR_ID_MAX - 1] = '\0';
    whd->hdr.owner[CREOR_ID_MAX - 1] = '\0';
    whd->hdr.event_id[CREOR_ID_MAX - 1] = '\0';
    whd->hdr.type[sizeof(whd->hdr.type) - 1] = '\0';

    /* pointers into the map: good until the transaction ends */

    p = (u_char *) val->mv_data + sizeof(creor_whd_hdr_t);
    whd->url.data = p;
    whd->url.len = whd->hdr.url_len;
    whd->body.data = p + whd->hdr.url_len;
    whd->body.len = whd->hdr.body_len;

    return NGX_OK;
}


/* the record and its due entry: the old one goes, a new one at due */

ngx_int_t
creor_whd_write(creor_store_t *st, MDB_txn *txn, creor_whd_t *whd,
    int64_t due)
{
    int       rc;
    char      qkey[CREOR_STORE_KEY_MAX];
    u_char   *buf;
    size_t    len;

    /* the queue's depth: an entry added, or one removed */

    if ((due != 0) != (whd->hdr.due_ms != 0)) {
        rc = creor_whd_depth_add(st, txn, due ? 1 : -1);
        if (rc != CREOR_STORE_OK) {
            return rc;
        }
    }

    if (whd->hdr.due_ms) {
        ngx_snprintf((u_char *) qkey, sizeof(qkey), "wq:%013L:%s%Z",
                     whd->hdr.due_ms, whd->key + 3);

        rc = creor_store_del(st, txn, qkey);
        if (rc != CREOR_STORE_OK && rc != CREOR_STORE_NOTFOUND) {
            return rc;
        }
    }

    whd->hdr.due_ms = due;

    if (due) {
        ngx_snprintf((u_char *) qkey, sizeof(qkey), "wq:%013L:%s%Z", due,
                     whd->key + 3);

        rc = creor_store_put(st, txn, qkey, "", 0, 0);
        if (rc != CREOR_STORE_OK) {
            return rc;
        }
    }

    /* the header, the URL, the body */

    len = sizeof(creor_whd_hdr_t) + whd->url.len + whd->body.len;

    buf = ngx_alloc(len, ngx_cycle->log);
    if (buf == NULL) {
        return CREOR_STORE_ERROR;
    }

    whd->hdr.url_len = whd->url.len;
    whd->hdr.body_len = whd->body.len;

    ngx_memcpy(buf, &whd->hdr, sizeof(creor_whd_hdr_t));
    ngx_memcpy(buf + sizeof(creor_whd_hdr_t), whd->url.data, whd->url.len);
    ngx_memcpy(buf + sizeof(creor_whd_hdr_t) + whd->url.len, whd->body.data,
               whd->body.len);

    rc = creor_store_put(st, txn, whd->key, buf, len, 0);

    ngx_free(buf);

    return rc;
}


ngx_int_t
creor_whd_create(creor_store_t *st, MDB_txn *txn, const char *org,
    const char *owner, const char *event_id, const char *type,
    ngx_str_t *url, ngx_str_t *body, char *id)
{
    int          rc;
    creor_whd_t  whd;

    rc = creor_store_make_id(st, txn, id, CREOR_ID_MAX, "whd_");
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    ngx_memzero(&whd.hdr, sizeof(creor_whd_hdr_t));

    whd.hdr.version = CREOR_WH_VERSION;
    whd.hdr.status = CREOR_WHD_PENDING;
    ngx_cpystrn((u_char *) whd.hdr.org, (u_char *) org, CREOR_ID_MAX);
    ngx_cpystrn((u_char *) whd.hdr.owner, (u_char *) owner, CREOR_ID_MAX);
    ngx_cpystrn((u_char *) whd.hdr.event_id, (u_char *) event_id,
                CREOR_ID_MAX);
    ngx_cpystrn((u_char *) whd.hdr.type, (u_char *) type,
                sizeof(whd.hdr.type));
    whd.hdr.created_ms = creor_now_ms();

    ngx_snprintf((u_char *) whd.key, sizeof(whd.key), "wl:%s:%s%Z", owner,
                 id);

    whd.url = *url;
    whd.body = *body;

    return creor_whd_write(st, txn, &whd, whd.hdr.created_ms);
}


/* "m:whq": deliveries in the due index, for /v1/system/status */

ngx_int_t
creor_whd_depth_add(creor_store_t *st, MDB_txn *txn, int64_t delta)
{
    int       rc;
    int64_t   n;
    MDB_val   val;

    n = 0;
    rc = creor_store_get(st, txn, "m:whq", &val);

    if (rc == CREOR_STORE_OK && val.mv_size == sizeof(int64_t)) {
        ngx_memcpy(&n, val.mv_data, sizeof(int64_t));

    } else if (rc != CREOR_STORE_NOTFOUND && rc != CREOR_STORE_OK) {
        return rc;
    }

    n = ngx_max(n + delta, 0);

    return creor_store_put(st, txn, "m:whq", &n, sizeof(int64_t), 0);
}


int64_t
creor_webhooks_queue_depth(creor_store_t *st)
{
    int64_t   n;
    MDB_val   val;
    MDB_txn  *txn;

    n = 0;
    txn = creor_store_read(st);

    if (txn && creor_store_get(st, txn, "m:whq", &val) == CREOR_STORE_OK
        && val.mv_size == sizeof(int64_t))
    {
        ngx_memcpy(&n, val.mv_data, sizeof(int64_t));
    }

    creor_store_read_done(st);

    return n;
}


/*
 * A delivery goes when it finished (succeeded or dead) longer than
 * creor_webhook_retention ago, or, finished or not, when its endpoint is
 * gone; a pending one takes its "wq:" entry and its share of "m:whq"
 * along.  A call in flight that loses its record finds nothing to update.
 */

static int
creor_whd_drop(MDB_txn *txn, const MDB_val *key, const MDB_val *val,
    int64_t now, void *data)
{
    int                     rc;
    char                    k[CREOR_STORE_KEY_MAX];
    int64_t                 done;
    MDB_val                 w;
    ngx_uint_t              last;
    creor_whd_hdr_t         hdr;
    ngx_creor_main_conf_t  *mcf = data;

    if (val->mv_size < sizeof(creor_whd_hdr_t)
        || key->mv_size + 16 >= CREOR_STORE_KEY_MAX)
    {
        return 0;               /* not ours to judge */
    }

    ngx_memcpy(&hdr, val->mv_data, sizeof(creor_whd_hdr_t));
    hdr.org[CREOR_ID_MAX - 1] = '\0';
    hdr.owner[CREOR_ID_MAX - 1] = '\0';

    if (hdr.status == CREOR_WHD_SUCCEEDED || hdr.status == CREOR_WHD_DEAD) {
        last = ngx_min(hdr.attempts, CREOR_WH_ATTEMPTS);
        done = last ? hdr.attempt[last - 1].ms
                      + hdr.attempt[last - 1].duration_ms
                    : hdr.created_ms;

        if (now - done >= (int64_t) mcf->webhook_retention) {
            goto drop;
        }
    }

    if (!creor_whd_to_endpoint(&hdr)) {
        return 0;               /* a run's own webhookUrl */
    }

    ngx_snprintf((u_char *) k, sizeof(k), "w:%s:%s%Z", hdr.org, hdr.owner);

    rc = creor_store_get(&mcf->store, txn, k, &w);

    if (rc == CREOR_STORE_OK) {
        return 0;
    }

    if (rc != CREOR_STORE_NOTFOUND) {
        return -1;
    }

drop:

    if (hdr.due_ms == 0) {
        return 1;
    }

    ngx_snprintf((u_char *) k, sizeof(k), "wq:%013L:%*s%Z", hdr.due_ms,
                 key->mv_size - 3, (u_char *) key->mv_data + 3);

    rc = creor_store_del(&mcf->store, txn, k);

    if (rc == CREOR_STORE_OK) {
        rc = creor_whd_depth_add(&mcf->store, txn, -1);

    } else if (rc == CREOR_STORE_NOTFOUND) {
        rc = CREOR_STORE_OK;
    }

    return rc == CREOR_STORE_OK ? 1 : -1;
}


void
creor_webhooks_purge(ngx_creor_main_conf_t *mcf, ngx_log_t *log)
{
    size_t       n;
    static char  from[CREOR_STORE_KEY_MAX];

    if (creor_store_purge_txn(&mcf->store, "wl:", from, CREOR_WH_PURGE,
                              creor_now_ms(), creor_whd_drop, mcf, &n)
        != CREOR_STORE_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "creor: webhook delivery purge failed");
        return;
    }

    if (n) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                       "creor: purged %uz webhook deliveries", n);
    }
}


/*
 * Events (SPEC 11.2), written in the caller's transaction: a delivery to
 * every active endpoint of the organization that takes the type, and to
 * url (a run's own webhookUrl) if given.  pool holds the body.
 */

ngx_int_t
creor_webhooks_emit(creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool,
    const char *org, const char *type, creor_json_t *data, ngx_str_t *url)
{
    int              rc;
    char             prefix[CREOR_STORE_KEY_MAX], evt[CREOR_ID_MAX];
    char             id[CREOR_ID_MAX], owner[CREOR_ID_MAX];
    size_t           plen;
    ngx_str_t        body, u;
    ngx_uint_t       bit, n;
    creor_scan_t     sc;
    creor_wh_rec_t   rec;
    creor_wh_rec_t   recs[CREOR_WH_MAX];
    char             ids[CREOR_WH_MAX][CREOR_ID_MAX];

    bit = creor_webhook_event_bit(type, ngx_strlen(type));

    /* the endpoints first: the cursor is done before anything is put */

    plen = ngx_snprintf((u_char *) prefix, sizeof(prefix), "w:%s:", org)
           - (u_char *) prefix;

    if (creor_scan_open(st, txn, &sc, prefix, plen, NULL, 0)
        != CREOR_STORE_OK)
    {
        return CREOR_STORE_ERROR;
    }

    n = 0;

    while (n < CREOR_WH_MAX && creor_scan_next(&sc) == 1
           && sc.rest_len < CREOR_ID_MAX)
    {
        if (sc.val.mv_size != sizeof(creor_wh_rec_t)) {
            continue;
        }

        ngx_memcpy(&rec, sc.val.mv_data, sizeof(creor_wh_rec_t));

        if (!rec.active || (rec.events && !(rec.events & bit))) {
            continue;
        }

        recs[n] = rec;
        ngx_cpystrn((u_char *) ids[n], (u_char *) sc.rest, sc.rest_len + 1);
        n++;
    }

    creor_scan_close(&sc);

    if (n == 0 && (url == NULL || url->len == 0)) {
        return CREOR_STORE_OK;
    }

    rc = creor_store_make_id(st, txn, evt, sizeof(evt), "evt_");
    if (rc != CREOR_STORE_OK) {
        return rc;
    }

    if (creor_js_event_body(pool, evt, type, creor_now_ms(), data, &body)
        != NGX_OK)
    {
        return CREOR_STORE_ERROR;
    }

    while (n--) {
        recs[n].url[CREOR_WH_URL_MAX - 1] = '\0';
        u.data = (u_char *) recs[n].url;
        u.len = ngx_strlen(recs[n].url);

        rc = creor_whd_create(st, txn, org, ids[n], evt, type, &u, &body, id);
        if (rc != CREOR_STORE_OK) {
            return rc;
        }
    }

    if (url && url->len) {
        ngx_cpystrn((u_char *) owner, (u_char *) org, CREOR_ID_MAX);

        rc = creor_whd_create(st, txn, org, owner, evt, type, url, &body, id);
        if (rc != CREOR_STORE_OK) {
            return rc;
        }

        /* made now, so that an admin can read it before the first send */

        {
            creor_wh_secret_t  sec;

            rc = creor_webhook_run_secret(st, txn, org, &sec);
            if (rc != CREOR_STORE_OK) {
                return rc;
            }
        }
    }

    return CREOR_STORE_OK;
}
