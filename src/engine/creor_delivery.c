
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Webhook delivery (SPEC 11.4), a job kind of the detached-job engine
 * (creor_job.c).  The tick of every worker claims due deliveries of the
 * "wq:" index under a lease (the entry moves to the lease's end, so a
 * dead worker's delivery comes due again), resolves and checks the host
 * itself, and sends each through creor_webhook_proxy to the checked
 * address, which the $creor_webhook_* variables give the location.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_WH_DISABLE_MS     (5 * 86400000LL)
#define CREOR_WH_JOBS_MAX       64          /* a worker's calls in flight */
#define CREOR_WH_PER_ENDPOINT   4           /* of which to one endpoint */
#define CREOR_WH_SCAN_BATCH     64
#define CREOR_WH_SCAN_WALK      4096        /* due entries looked at */
#define CREOR_WH_LEASE_EXTRA    5000
#define CREOR_WH_RETRY_AFTER_MAX 3600000

#define CREOR_HTTP_GONE         410


/* a delivery in flight: a job's data */
typedef struct {
    ngx_queue_t             queue;
    creor_job_t            *job;
    ngx_str_t               key;        /* "wl:<owner>:<id>" */
    ngx_str_t               owner;
    ngx_str_t               scheme;     /* the $creor_webhook_* variables */
    ngx_str_t               addr;
    ngx_str_t               uri;
    ngx_str_t               host;
    ngx_str_t               error;
    int64_t                 started_ms;
    int64_t                 retry_after_ms;
} creor_whd_job_t;


/* a delivery waiting for the resolver */
typedef struct {
    ngx_pool_t             *pool;
    creor_whd_t             whd;
    creor_ssrf_url_t        url;
    ngx_keyval_t           *headers;
    ngx_uint_t              nheaders;
} creor_whd_resolve_t;


static ngx_int_t creor_webhooks_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static void creor_wh_claim(ngx_str_t *key, int64_t now);
static void creor_wh_unqueue(creor_store_t *st, MDB_txn *txn, char *qkey,
    char *wkey);
static void creor_wh_send(creor_whd_t *whd, creor_ssrf_url_t *u,
    ngx_keyval_t *headers, ngx_uint_t n, struct sockaddr *sa,
    socklen_t socklen);
static void creor_wh_resolved(ngx_resolver_ctx_t *rctx);
static ngx_int_t creor_whd_header(creor_job_t *job, ngx_http_request_t *r);
static void creor_whd_finish(creor_job_t *job);
static void creor_whd_end(creor_job_t *job);
static void creor_wh_result(ngx_str_t *key, ngx_str_t *owner,
    ngx_uint_t status, const char *error, int64_t started,
    int64_t retry_after);
static ngx_uint_t creor_whd_count(ngx_str_t *owner);
static ngx_int_t creor_wq_owner(u_char *key, size_t len, ngx_str_t *owner);


static creor_job_kind_t  creor_whd_kind = {
    "delivering a webhook",
    creor_whd_header,
    NULL,
    NULL,
    creor_whd_finish,
    creor_whd_end
};


static ngx_queue_t              creor_whd_jobs;
static ngx_uint_t               creor_nwhd;
static ngx_flag_t               creor_wh_again;     /* scan on next tick */
static int64_t                  creor_wh_next_scan;
static ngx_creor_main_conf_t   *creor_mcf;


void
creor_webhooks_init(ngx_creor_main_conf_t *mcf)
{
    creor_mcf = mcf;
    ngx_queue_init(&creor_whd_jobs);
}


ngx_uint_t
creor_webhooks_busy(void)
{
    return creor_nwhd;
}


/*
 * "wq:" in due order: what is due now is claimed, each in a write
 * transaction of its own that checks again.
 */

void
creor_webhooks_scan(int64_t now)
{
    char           due[16];
    MDB_txn       *txn;
    ngx_str_t     *key, owner, other;
    ngx_uint_t     i, n, walked;
    ngx_pool_t    *pool;
    ngx_array_t    keys;
    creor_scan_t   sc;

    creor_wh_again = 0;
    creor_wh_next_scan = now + 200;

    if (creor_mcf == NULL || creor_mcf->webhook_proxy.len == 0
        || creor_nwhd >= CREOR_WH_JOBS_MAX)
    {
        return;
    }

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    if (ngx_array_init(&keys, pool, 8, sizeof(ngx_str_t)) != NGX_OK) {
        ngx_destroy_pool(pool);
        return;
    }

    txn = creor_store_read(&creor_mcf->store);

    if (txn == NULL
        || creor_scan_open(&creor_mcf->store, txn, &sc, "wq:", 3, NULL, 0)
           != CREOR_STORE_OK)
    {
        creor_store_read_done(&creor_mcf->store);
        ngx_destroy_pool(pool);
        return;
    }

    ngx_snprintf((u_char *) due, sizeof(due), "%013L", now);

    walked = 0;

    while (keys.nelts < CREOR_WH_SCAN_BATCH
           && walked++ < CREOR_WH_SCAN_WALK
           && creor_scan_next(&sc) == 1
           && sc.key.mv_size > 17
           && ngx_memcmp(sc.rest, due, 13) <= 0)
    {
        /*
         * An endpoint with its share in flight is passed over, so that a
         * backlog of one endpoint never holds the others' deliveries.
         */

        if (creor_wq_owner(sc.key.mv_data, sc.key.mv_size, &owner) != NGX_OK)
        {
            continue;
        }

        n = creor_whd_count(&owner);
        key = keys.elts;

        for (i = 0; i < keys.nelts && n < CREOR_WH_PER_ENDPOINT; i++) {
            if (creor_wq_owner(key[i].data, key[i].len, &other) == NGX_OK
                && other.len == owner.len
                && ngx_strncmp(other.data, owner.data, owner.len) == 0)
            {
                n++;
            }
        }

        if (n >= CREOR_WH_PER_ENDPOINT) {
            continue;
        }

        key = ngx_array_push(&keys);
        if (key == NULL) {
            break;
        }

        key->len = sc.key.mv_size;
        key->data = ngx_pnalloc(pool, sc.key.mv_size);
        if (key->data == NULL) {
            break;
        }

        ngx_memcpy(key->data, sc.key.mv_data, sc.key.mv_size);
    }

    creor_scan_close(&sc);
    creor_store_read_done(&creor_mcf->store);

    key = keys.elts;

    for (i = 0; i < keys.nelts && creor_nwhd < CREOR_WH_JOBS_MAX; i++) {
        creor_wh_claim(&key[i], now);
    }

    ngx_destroy_pool(pool);
}


/* "wq:<due>:<owner>:<id>": the owner */

static ngx_int_t
creor_wq_owner(u_char *key, size_t len, ngx_str_t *owner)
{
    u_char  *colon;

    if (len < 18) {
        return NGX_ERROR;
    }

    owner->data = key + 17;
    colon = ngx_strlchr(owner->data, key + len, ':');

    if (colon == NULL) {
        return NGX_ERROR;
    }

    owner->len = colon - owner->data;

    return NGX_OK;
}


/* in flight on this worker to this owner */

static ngx_uint_t
creor_whd_count(ngx_str_t *owner)
{
    ngx_uint_t        n;
    ngx_queue_t      *q;
    creor_whd_job_t  *wj;

    n = 0;

    for (q = ngx_queue_head(&creor_whd_jobs);
         q != ngx_queue_sentinel(&creor_whd_jobs);
         q = ngx_queue_next(q))
    {
        wj = ngx_queue_data(q, creor_whd_job_t, queue);

        if (wj->owner.len == owner->len
            && ngx_strncmp(wj->owner.data, owner->data, owner->len) == 0)
        {
            n++;
        }
    }

    return n;
}


/*
 * qkey is "wq:<due>:<owner>:<id>".  The claim moves the entry to the end
 * of the lease: if this worker dies, the delivery comes due again there.
 */

static void
creor_wh_claim(ngx_str_t *qkey, int64_t now)
{
    int                   rc;
    char                       key[CREOR_STORE_KEY_MAX];
    char                       wkey[CREOR_STORE_KEY_MAX];
    MDB_val                    val;
    MDB_txn                   *txn;
    ngx_str_t                  owner, kstr;
    ngx_uint_t                 n;
    ngx_pool_t                *pool;
    ngx_keyval_t              *headers;
    creor_whd_t                whd;
    creor_store_t             *st;
    creor_wh_rec_t             rec;
    creor_ssrf_url_t           u;
    creor_wh_secret_t          sec;
    ngx_resolver_ctx_t        *rctx;
    creor_whd_resolve_t       *res;
    ngx_http_core_loc_conf_t  *clcf;

    st = &creor_mcf->store;

    if (qkey->len < 18 || qkey->len - 18 + 4 > CREOR_STORE_KEY_MAX) {
        return;
    }

    if (creor_wq_owner(qkey->data, qkey->len, &owner) != NGX_OK) {
        return;
    }

    if (creor_whd_count(&owner) >= CREOR_WH_PER_ENDPOINT) {
        return;
    }

    ngx_snprintf((u_char *) whd.key, sizeof(whd.key), "wl:%*s%Z",
                 qkey->len - 17, qkey->data + 17);

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    if (creor_store_write(st, &txn) != CREOR_STORE_OK) {
        ngx_destroy_pool(pool);
        return;
    }

    ngx_snprintf((u_char *) key, sizeof(key), "%V%Z", qkey);

    if (creor_store_get(st, txn, key, &val) != CREOR_STORE_OK) {
        creor_store_abort(txn);             /* another worker was faster */
        ngx_destroy_pool(pool);
        return;
    }

    rc = creor_store_get(st, txn, whd.key, &val);

    if (rc != CREOR_STORE_OK || creor_whd_read(&val, &whd) != NGX_OK) {

        /* a stale entry */

        if (rc == CREOR_STORE_OK || rc == CREOR_STORE_NOTFOUND) {
            creor_wh_unqueue(st, txn, key, NULL);

        } else {
            creor_store_abort(txn);
        }

        ngx_destroy_pool(pool);
        return;
    }

    /* the record's parts outlive the transaction */

    whd.url.data = ngx_pstrdup(pool, &whd.url);
    whd.body.data = ngx_pstrdup(pool, &whd.body);

    if (whd.url.data == NULL || whd.body.data == NULL) {
        creor_store_abort(txn);
        ngx_destroy_pool(pool);
        return;
    }

    /* the secrets: the endpoint's, or the organization's for runs */

    ngx_memzero(&rec, sizeof(creor_wh_rec_t));

    if (creor_whd_to_endpoint(&whd.hdr)) {
        if (creor_whd_endpoint(st, txn, &whd, wkey, &rec) != CREOR_STORE_OK)
        {

            /* the endpoint was deleted: so is the delivery */

            creor_wh_unqueue(st, txn, key, whd.key);
            ngx_destroy_pool(pool);
            return;
        }

        if (!rec.active) {
            whd.hdr.status = CREOR_WHD_DEAD;

            if (creor_whd_write(st, txn, &whd, 0) == CREOR_STORE_OK) {
                (void) creor_store_commit_nosync(st, txn);

            } else {
                creor_store_abort(txn);
            }

            ngx_destroy_pool(pool);
            return;
        }

        /* sent to the endpoint's URL of now */

        rec.url[CREOR_WH_URL_MAX - 1] = '\0';
        whd.url.data = (u_char *) rec.url;
        whd.url.len = ngx_strlen(rec.url);
        whd.url.data = ngx_pstrdup(pool, &whd.url);

    } else {
        if (creor_webhook_run_secret(st, txn, whd.hdr.org, &sec)
            != CREOR_STORE_OK)
        {
            creor_store_abort(txn);
            ngx_destroy_pool(pool);
            return;
        }

        ngx_memcpy(rec.secret, sec.secret, sizeof(sec.secret));
        ngx_memcpy(rec.old_secret, sec.old_secret, sizeof(sec.old_secret));
        rec.old_until_ms = sec.old_until_ms;
    }

    whd.hdr.owner_pid = (uint32_t) ngx_pid;

    kstr.data = (u_char *) whd.key;
    kstr.len = ngx_strlen(whd.key);

    rc = creor_whd_write(st, txn, &whd,
                         now + creor_mcf->webhook_timeout
                         + CREOR_WH_LEASE_EXTRA);

    if (rc != CREOR_STORE_OK
        || creor_store_commit_nosync(st, txn) != CREOR_STORE_OK)
    {
        if (rc != CREOR_STORE_OK) {
            creor_store_abort(txn);
        }

        ngx_destroy_pool(pool);
        return;
    }

    if (creor_sign_headers(pool, whd.hdr.event_id, whd.hdr.type, &whd.body,
                           rec.secret,
                           rec.old_until_ms > now ? rec.old_secret : NULL,
                           &headers, &n)
        != NGX_OK
        || creor_ssrf_url_parse(pool, whd.url.data, whd.url.len, &u) != NGX_OK)
    {
        creor_wh_result(&kstr, &owner, 0, "invalid URL", now, 0);
        ngx_destroy_pool(pool);
        return;
    }

    /* checked again: creor_webhook_allow_private may be off since */

    if (!creor_mcf->webhook_allow_private
        && (creor_ssrf_host_private(&u.host)
            || (u.literal && creor_ssrf_addr_private(u.addr.sockaddr))))
    {
        creor_wh_result(&kstr, &owner, 0, "PRIVATE_WEBHOOK_URL", now, 0);
        ngx_destroy_pool(pool);
        return;
    }

    if (u.literal) {
        creor_wh_send(&whd, &u, headers, n, u.addr.sockaddr,
                      u.addr.socklen);
        ngx_destroy_pool(pool);
        return;
    }

    /* a name: nginx's resolver, then every address is checked */

    clcf = creor_mcf->api_ctx->loc_conf[ngx_http_core_module.ctx_index];

    res = ngx_pcalloc(pool, sizeof(creor_whd_resolve_t));
    if (res == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    res->pool = pool;
    res->whd = whd;
    res->url = u;
    res->headers = headers;
    res->nheaders = n;

    rctx = creor_ssrf_resolve_start(clcf, &res->url.host, creor_wh_resolved,
                                    res);

    if (rctx == NULL || rctx == NGX_NO_RESOLVER) {
        creor_wh_result(&kstr, &owner, 0, rctx ? "no resolver is configured"
                                        : "resolver error", now, 0);
        ngx_destroy_pool(pool);
        return;
    }

    creor_nwhd++;       /* counts as in flight while resolving */

    if (ngx_resolve_name(rctx) != NGX_OK) {
        creor_nwhd--;
        creor_wh_result(&kstr, &owner, 0, "resolver error", now, 0);
        ngx_destroy_pool(pool);
    }
}


/* a due entry dropped, with its delivery if wkey: the transaction ends */

static void
creor_wh_unqueue(creor_store_t *st, MDB_txn *txn, char *qkey, char *wkey)
{
    if (creor_store_del(st, txn, qkey) == CREOR_STORE_OK
        && (wkey == NULL || creor_store_del(st, txn, wkey) == CREOR_STORE_OK)
        && creor_whd_depth_add(st, txn, -1) == CREOR_STORE_OK)
    {
        (void) creor_store_commit_nosync(st, txn);

    } else {
        creor_store_abort(txn);
    }
}


/*
 * Every address the name has must be public; the delivery connects to
 * the first, the one checked, whatever the name resolves to later.
 */

static void
creor_wh_resolved(ngx_resolver_ctx_t *rctx)
{
    char                  err[64];
    ngx_str_t             key, owner;
    creor_whd_resolve_t  *res;

    res = rctx->data;
    creor_nwhd--;

    key.data = (u_char *) res->whd.key;
    key.len = ngx_strlen(res->whd.key);
    owner.data = (u_char *) res->whd.hdr.owner;
    owner.len = ngx_strlen(res->whd.hdr.owner);

    if (rctx->state || rctx->naddrs == 0) {
        ngx_snprintf((u_char *) err, sizeof(err), "cannot resolve: %s%Z",
                     ngx_resolver_strerror(rctx->state));
        ngx_resolve_name_done(rctx);
        creor_wh_result(&key, &owner, 0, err, creor_now_ms(), 0);
        ngx_destroy_pool(res->pool);
        return;
    }

    if (!creor_mcf->webhook_allow_private
        && creor_ssrf_resolved_private(rctx))
    {
        ngx_resolve_name_done(rctx);
        creor_wh_result(&key, &owner, 0, "PRIVATE_WEBHOOK_URL",
                        creor_now_ms(), 0);
        ngx_destroy_pool(res->pool);
        return;
    }

    ngx_inet_set_port(rctx->addrs[0].sockaddr, res->url.port);

    creor_wh_send(&res->whd, &res->url, res->headers, res->nheaders,
                  rctx->addrs[0].sockaddr, rctx->addrs[0].socklen);

    ngx_resolve_name_done(rctx);
    ngx_destroy_pool(res->pool);
}


/* the job: variables for the proxy location, the signed headers */

static void
creor_wh_send(creor_whd_t *whd, creor_ssrf_url_t *u, ngx_keyval_t *headers,
    ngx_uint_t n, struct sockaddr *sa, socklen_t socklen)
{
    u_char           *p;
    ngx_str_t         key, owner;
    creor_job_t      *job;
    creor_whd_job_t  *wj;

    key.data = (u_char *) whd->key;
    key.len = ngx_strlen(whd->key);
    owner.data = (u_char *) whd->hdr.owner;
    owner.len = ngx_strlen(whd->hdr.owner);

    job = creor_job_create(&creor_whd_kind, sizeof(creor_whd_job_t),
                           &creor_mcf->webhook_proxy, &whd->body, headers, n);
    if (job == NULL) {
        creor_wh_result(&key, &owner, 0, "cannot start", creor_now_ms(), 0);
        return;
    }

    wj = job->data;
    wj->job = job;
    ngx_queue_insert_tail(&creor_whd_jobs, &wj->queue);
    creor_nwhd++;

    wj->started_ms = creor_now_ms();
    wj->key.data = ngx_pstrdup(job->pool, &key);
    wj->key.len = key.len;
    wj->owner.data = ngx_pstrdup(job->pool, &owner);
    wj->owner.len = owner.len;
    wj->scheme = u->scheme;
    wj->uri.data = ngx_pstrdup(job->pool, &u->uri);
    wj->uri.len = u->uri.len;
    wj->host.data = ngx_pstrdup(job->pool, &u->host_header);
    wj->host.len = u->host_header.len;

    p = ngx_pnalloc(job->pool, NGX_SOCKADDR_STRLEN);

    if (wj->key.data == NULL || wj->owner.data == NULL || p == NULL
        || wj->uri.data == NULL || wj->host.data == NULL)
    {
        creor_job_destroy(job);
        creor_wh_result(&key, &owner, 0, "cannot start", creor_now_ms(), 0);
        return;
    }

    wj->addr.data = p;
    wj->addr.len = ngx_sock_ntop(sa, socklen, p, NGX_SOCKADDR_STRLEN, 1);

    ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                  "creor: webhook delivery %V to %V, Host %V", &key,
                  &wj->addr, &wj->host);

    creor_job_run(job, creor_mcf->webhook_timeout);
}


/* the status, and Retry-After on 429 and 503 */

static ngx_int_t
creor_whd_header(creor_job_t *job, ngx_http_request_t *r)
{
    time_t            t;
    ngx_int_t         n;
    creor_headers_t   w;
    ngx_table_elt_t  *h;
    creor_whd_job_t  *wj;

    wj = job->data;

    if (job->status != NGX_HTTP_TOO_MANY_REQUESTS
        && job->status != NGX_HTTP_SERVICE_UNAVAILABLE)
    {
        return NGX_OK;
    }

    creor_headers_init(&w, &r->headers_out.headers);

    while ((h = creor_headers_next(&w)) != NULL) {

        if (h->hash == 0 || h->key.len != 11
            || ngx_strncasecmp(h->key.data, (u_char *) "Retry-After", 11)
               != 0)
        {
            continue;
        }

        n = ngx_atoi(h->value.data, h->value.len);

        if (n == NGX_ERROR) {
            t = ngx_parse_http_time(h->value.data, h->value.len);
            n = (t == NGX_ERROR) ? 0 : t - ngx_time();
        }

        if (n > 0) {
            wj->retry_after_ms = ngx_min((int64_t) n * 1000,
                                         (int64_t) 86400000);
        }
    }

    return NGX_OK;
}


static void
creor_whd_finish(creor_job_t *job)
{
    int64_t           started, retry_after;
    ngx_str_t         key, owner;
    ngx_uint_t        status;
    const char       *err;
    creor_whd_job_t  *wj;

    wj = job->data;
    started = wj->started_ms;
    retry_after = wj->retry_after_ms;

    /* the job's pool goes with it */

    key.len = wj->key.len;
    owner.len = wj->owner.len;
    key.data = ngx_alloc(key.len + owner.len, ngx_cycle->log);

    if (key.data == NULL) {
        creor_job_destroy(job);
        return;
    }

    ngx_memcpy(key.data, wj->key.data, key.len);
    owner.data = key.data + key.len;
    ngx_memcpy(owner.data, wj->owner.data, owner.len);

    status = job->timed_out ? 0 : job->status;
    err = job->timed_out ? "timeout"
          : (status == NGX_HTTP_BAD_GATEWAY) ? "connection failed or 502"
          : NULL;

    creor_job_destroy(job);

    creor_wh_result(&key, &owner, status, err, started, retry_after);

    ngx_free(key.data);
}


static void
creor_whd_end(creor_job_t *job)
{
    creor_whd_job_t  *wj = job->data;

    ngx_queue_remove(&wj->queue);
    creor_nwhd--;

    /* a free slot: the queue may hold more that are due */

    creor_wh_again = 1;
}


/* from the tick: every 200 ms, and at once when a slot was freed */

void
creor_webhooks_tick(int64_t now)
{
    if (creor_wh_again || now >= creor_wh_next_scan) {
        creor_webhooks_scan(now);
    }
}


/*
 * An attempt's end: 2xx succeeds; 410 disables the endpoint; anything
 * else is retried on the schedule (Retry-After may push it later), then
 * dead-lettered; an endpoint failing every attempt for 5 days is
 * disabled.
 */

static void
creor_wh_result(ngx_str_t *key, ngx_str_t *owner, ngx_uint_t status,
    const char *error, int64_t started, int64_t retry_after)
{
    int                   rc;
    char                  k[CREOR_STORE_KEY_MAX], wkey[CREOR_STORE_KEY_MAX];
    int64_t               now, delay, due;
    MDB_val               val;
    MDB_txn              *txn;
    ngx_uint_t            i, ok, nsched;
    ngx_msec_t           *sched;
    creor_whd_t           whd;
    creor_store_t        *st;
    creor_wh_rec_t        rec;
    creor_whd_attempt_t  *a;

    st = &creor_mcf->store;
    now = creor_now_ms();
    ok = (status >= 200 && status < 300);

    if (key->len >= sizeof(k)) {
        return;
    }

    ngx_snprintf((u_char *) k, sizeof(k), "%V%Z", key);

    if (creor_store_write(st, &txn) != CREOR_STORE_OK) {
        return;                 /* the lease runs out: tried again */
    }

    rc = creor_store_get(st, txn, k, &val);

    if (rc != CREOR_STORE_OK || creor_whd_read(&val, &whd) != NGX_OK) {
        creor_store_abort(txn);
        return;
    }

    ngx_memcpy(whd.key, k, sizeof(k));

    whd.url.data = ngx_alloc(whd.url.len + whd.body.len + 1, ngx_cycle->log);
    if (whd.url.data == NULL) {
        creor_store_abort(txn);
        return;
    }

    ngx_memcpy(whd.url.data, (u_char *) val.mv_data + sizeof(creor_whd_hdr_t),
               whd.url.len + whd.body.len);
    whd.body.data = whd.url.data + whd.url.len;

    /* the latest attempts, the oldest dropped */

    if (whd.hdr.attempts >= CREOR_WH_ATTEMPTS) {
        ngx_memmove(&whd.hdr.attempt[0], &whd.hdr.attempt[1],
                    (CREOR_WH_ATTEMPTS - 1) * sizeof(creor_whd_attempt_t));
        a = &whd.hdr.attempt[CREOR_WH_ATTEMPTS - 1];

    } else {
        a = &whd.hdr.attempt[whd.hdr.attempts];
    }

    ngx_memzero(a, sizeof(creor_whd_attempt_t));
    a->ms = started;
    a->duration_ms = now - started;
    a->status = status;

    if (!ok) {
        ngx_cpystrn((u_char *) a->error,
                    (u_char *) (error ? error : "not a 2xx status"),
                    sizeof(a->error));
    }

    whd.hdr.attempts++;
    whd.hdr.owner_pid = 0;

    /* the endpoint's record follows its deliveries */

    rc = CREOR_STORE_NOTFOUND;

    if (creor_whd_to_endpoint(&whd.hdr)
        && creor_whd_endpoint(st, txn, &whd, wkey, &rec) == CREOR_STORE_OK)
    {
        rc = CREOR_STORE_OK;
    }

    sched = creor_mcf->webhook_schedule->elts;
    nsched = creor_mcf->webhook_schedule->nelts;
    due = 0;

    if (ok) {
        whd.hdr.status = CREOR_WHD_SUCCEEDED;

        if (rc == CREOR_STORE_OK) {
            rec.failing_ms = 0;
        }

    } else if (status == CREOR_HTTP_GONE) {
        whd.hdr.status = CREOR_WHD_DEAD;

        if (rc == CREOR_STORE_OK) {
            rec.active = 0;
            ngx_cpystrn((u_char *) rec.disabled,
                        (u_char *) "endpoint.gone: answered 410",
                        sizeof(rec.disabled));
        }

    } else {
        if (rc == CREOR_STORE_OK) {
            if (rec.failing_ms == 0) {
                rec.failing_ms = started;

            } else if (now - rec.failing_ms >= CREOR_WH_DISABLE_MS) {
                rec.active = 0;
                ngx_cpystrn((u_char *) rec.disabled,
                            (u_char *) "endpoint.disabled: failing for "
                            "5 days", sizeof(rec.disabled));
            }
        }

        i = whd.hdr.tries++;

        if (i >= nsched || (rc == CREOR_STORE_OK && !rec.active)) {
            whd.hdr.status = CREOR_WHD_DEAD;

        } else {
            whd.hdr.status = CREOR_WHD_FAILED;

            /* +-10% */

            delay = sched[i];
            delay = delay * 9 / 10 + (int64_t) (ngx_random() % 1000)
                                     * delay / 5000;

            if (retry_after > delay) {
                delay = ngx_min(retry_after,
                                (int64_t) sched[i] + CREOR_WH_RETRY_AFTER_MAX);
            }

            due = now + delay;
        }
    }

    rc = (rc == CREOR_STORE_OK)
         ? creor_store_put(st, txn, wkey, &rec, sizeof(rec), 0)
         : CREOR_STORE_OK;

    if (rc == CREOR_STORE_OK) {
        rc = creor_whd_write(st, txn, &whd, due);
    }

    ngx_free(whd.url.data);

    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return;
    }

    /* lost at a power failure, it costs a duplicate: at least once */

    (void) creor_store_commit_nosync(st, txn);

    if (!ok) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "creor: webhook delivery %V: %s (status %ui)", key,
                      error ? error : "not a 2xx status", status);
    }
}


/*
 * A worker that is going away gives its deliveries back: each comes due
 * at once for the next worker, the attempt not counted.
 */

void
creor_webhooks_release(void)
{
    MDB_txn          *txn;
    MDB_val           val;
    ngx_queue_t      *q;
    creor_whd_t       whd;
    creor_whd_job_t  *wj;

    while (!ngx_queue_empty(&creor_whd_jobs)) {
        q = ngx_queue_head(&creor_whd_jobs);
        wj = ngx_queue_data(q, creor_whd_job_t, queue);

        if (wj->key.len < sizeof(whd.key)
            && creor_store_write(&creor_mcf->store, &txn) == CREOR_STORE_OK)
        {
            ngx_snprintf((u_char *) whd.key, sizeof(whd.key), "%V%Z",
                         &wj->key);

            if (creor_store_get(&creor_mcf->store, txn, whd.key, &val)
                == CREOR_STORE_OK
                && creor_whd_read(&val, &whd) == NGX_OK
                && whd.hdr.owner_pid == (uint32_t) ngx_pid)
            {
                whd.url.data = ngx_pstrdup(wj->job->pool, &whd.url);
                whd.body.data = ngx_pstrdup(wj->job->pool, &whd.body);
                whd.hdr.owner_pid = 0;

                if (whd.url.data && whd.body.data
                    && creor_whd_write(&creor_mcf->store, txn, &whd,
                                       creor_now_ms())
                       == CREOR_STORE_OK)
                {
                    (void) creor_store_commit(txn);

                } else {
                    creor_store_abort(txn);
                }

            } else {
                creor_store_abort(txn);
            }
        }

        creor_job_destroy(wj->job);
    }
}


/* $creor_webhook_scheme, _addr, _uri, _host, for creor_webhook_proxy */

ngx_int_t
creor_webhooks_add_variables(ngx_conf_t *cf)
{
    ngx_uint_t            i;
    ngx_http_variable_t  *var;

    static ngx_str_t  names[] = {
        ngx_string("creor_webhook_scheme"),
        ngx_string("creor_webhook_addr"),
        ngx_string("creor_webhook_uri"),
        ngx_string("creor_webhook_host")
    };

    static uintptr_t  offsets[] = {
        offsetof(creor_whd_job_t, scheme),
        offsetof(creor_whd_job_t, addr),
        offsetof(creor_whd_job_t, uri),
        offsetof(creor_whd_job_t, host)
    };

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        var = ngx_http_add_variable(cf, &names[i], NGX_HTTP_VAR_NOCACHEABLE);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = creor_webhooks_variable;
        var->data = offsets[i];
    }

    return NGX_OK;
}


static ngx_int_t
creor_webhooks_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_str_t        *s;
    creor_job_t      *job;
    ngx_creor_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_creor_module);

    if (ctx == NULL || ctx->job == NULL
        || ((creor_job_t *) ctx->job)->kind != &creor_whd_kind)
    {
        v->not_found = 1;
        return NGX_OK;
    }

    job = ctx->job;
    s = (ngx_str_t *) ((u_char *) job->data + data);

    return creor_variable_str(v, s);
}
