
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Idempotency-Key (SPEC 6) for every POST and PATCH.  The first request
 * claims (credential, method, path, key) in one write transaction, so
 * of any number of concurrent requests on any workers exactly one runs;
 * its response (status, own headers, body) replaces the claim and is
 * replayed byte for byte until the TTL ends.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/sha.h>

#include "ngx_creor.h"


#define CREOR_IDEM_CLAIMED    1
#define CREOR_IDEM_DONE       2

#define CREOR_IDEM_LEASE      30000     /* ms a claim holds without news */
#define CREOR_IDEM_KEY_MAX    255


typedef struct {
    uint32_t        state;
    uint32_t        status;
    int64_t         lease_ms;       /* claimed: held until */
    int64_t         expires_ms;     /* done: replayed until */
    uint32_t        pid;
    uint32_t        headers_len;    /* "Name: value\r\n"..., then the body */
    uint8_t         fingerprint[SHA256_DIGEST_LENGTH];
} creor_idem_rec_t;


static ngx_flag_t creor_idem_key_valid(ngx_str_t *key);
static void creor_idem_update(SHA256_CTX *sha, ngx_str_t *s);
static void creor_idem_fingerprint(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, uint8_t *out);
static ngx_flag_t creor_idem_claim_dead(creor_idem_rec_t *rec, int64_t now);
static ngx_int_t creor_idem_keep(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, ngx_uint_t status, u_char *body, size_t len);
static ngx_int_t creor_idem_finish(ngx_creor_ctx_t *ctx, u_char *data,
    size_t len, ngx_log_t *log);
static void creor_idem_unclaim(ngx_creor_ctx_t *ctx);
static ngx_int_t creor_idem_commit(creor_store_t *st, MDB_txn *txn,
    ngx_flag_t sync);
static ngx_flag_t creor_idem_own_header(ngx_table_elt_t *h);
static void creor_idem_cleanup(void *data);


static ngx_str_t  creor_idem_miss = ngx_string("miss");
static ngx_str_t  creor_idem_hit = ngx_string("hit");
static ngx_str_t  creor_idem_conflict = ngx_string("conflict");


/*
 * NGX_OK: go on (the claim is ours, or there is no key); NGX_DONE: the
 * stored response was sent; NGX_DECLINED: an error to send.
 */

ngx_int_t
creor_idempotency_begin(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int                    rc;
    u_char                *p, hex[SHA256_DIGEST_LENGTH * 2];
    int64_t                now;
    MDB_val                val;
    MDB_txn               *txn;
    SHA256_CTX             sha;
    ngx_str_t             *h;
    creor_store_t         *st;
    creor_idem_rec_t       rec, cur;
    ngx_pool_cleanup_t    *cln;
    ngx_creor_loc_conf_t  *lcf;
    uint8_t                scope[SHA256_DIGEST_LENGTH];

    h = creor_header(r, "Idempotency-Key");

    if (h == NULL) {
        lcf = ngx_http_get_module_loc_conf(r, ngx_creor_module);

        if (lcf->idempotency_required
            && (ctx->route->flags & CREOR_ROUTE_IDEMPOTENCY_REQUIRED))
        {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST,
                              "MISSING_IDEMPOTENCY_KEY", NULL,
                              "This request needs an Idempotency-Key "
                              "header.");
        }

        return NGX_OK;
    }

    if (!creor_idem_key_valid(h)) {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "INVALID_IDEMPOTENCY_KEY",
                          NULL, "An Idempotency-Key is 1 to %d visible "
                          "ASCII characters.", CREOR_IDEM_KEY_MAX);
    }

    /*
     * scope: the credential, method, path, key; a response made for one
     * key (a token, say) is never replayed to another (SPEC 6)
     */

    SHA256_Init(&sha);
    SHA256_Update(&sha, ctx->who.key_id.data, ctx->who.key_id.len);
    SHA256_Update(&sha, "", 1);
    SHA256_Update(&sha, r->method_name.data, r->method_name.len);
    SHA256_Update(&sha, "", 1);
    SHA256_Update(&sha, r->uri.data, r->uri.len);
    SHA256_Update(&sha, "", 1);
    SHA256_Update(&sha, h->data, h->len);
    SHA256_Final(scope, &sha);

    ngx_hex_dump(hex, scope, sizeof(scope));

    ctx->idempotency_key = ngx_pnalloc(r->pool, ctx->who.org.len
                                                + sizeof(hex) + 4);
    if (ctx->idempotency_key == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(ctx->idempotency_key, "i:%V:", &ctx->who.org);
    p = ngx_cpymem(p, hex, sizeof(hex));
    *p = '\0';

    ngx_memzero(&rec, sizeof(creor_idem_rec_t));
    creor_idem_fingerprint(r, ctx, rec.fingerprint);

    st = &ctx->mcf->store;

    rc = creor_store_write(st, &txn);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    now = creor_now_ms();

    rc = creor_store_get(st, txn, (char *) ctx->idempotency_key, &val);

    if (rc == CREOR_STORE_OK && val.mv_size >= sizeof(creor_idem_rec_t)) {
        ngx_memcpy(&cur, val.mv_data, sizeof(creor_idem_rec_t));

        if ((cur.state == CREOR_IDEM_DONE && cur.expires_ms > now)
            || (cur.state == CREOR_IDEM_CLAIMED
                && !creor_idem_claim_dead(&cur, now)))
        {
            if (ngx_memcmp(cur.fingerprint, rec.fingerprint,
                           sizeof(rec.fingerprint)) != 0)
            {
                creor_store_abort(txn);
                ctx->idempotent = creor_idem_conflict;

                return creor_fail(r, NGX_HTTP_CONFLICT,
                                  "IDEMPOTENCY_KEY_REUSED", NULL,
                                  "This Idempotency-Key was used with "
                                  "another request.");
            }

            if (cur.state == CREOR_IDEM_CLAIMED) {
                creor_store_abort(txn);
                ctx->idempotent = creor_idem_conflict;
                ctx->retry_after = 1;

                return creor_fail(r, NGX_HTTP_CONFLICT,
                                  "IDEMPOTENCY_REQUEST_IN_PROGRESS", NULL,
                                  "A request with this Idempotency-Key is "
                                  "still running.");
            }

            /* the map is valid until the transaction ends: copy first */

            p = ngx_pnalloc(r->pool, val.mv_size);
            if (p == NULL) {
                creor_store_abort(txn);
                return NGX_ERROR;
            }

            ngx_memcpy(p, val.mv_data, val.mv_size);
            creor_store_abort(txn);

            ctx->idempotent = creor_idem_hit;
            ctx->replay.data = p;
            ctx->replay.len = val.mv_size;

            return NGX_DONE;
        }

    } else if (rc != CREOR_STORE_OK && rc != CREOR_STORE_NOTFOUND) {
        creor_store_abort(txn);
        return creor_fail_store(r, rc);
    }

    rec.state = CREOR_IDEM_CLAIMED;
    rec.lease_ms = now + CREOR_IDEM_LEASE;
    rec.pid = (uint32_t) ngx_pid;

    rc = creor_store_put(st, txn, (char *) ctx->idempotency_key, &rec,
                         sizeof(rec), 0);
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return creor_fail_store(r, rc);
    }

    /*
     * A claim need not be durable: lost with the machine, it was never
     * answered.  The response that replaces it is synced.
     */

    rc = creor_idem_commit(st, txn, 0);
    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    ctx->idempotency_claimed = 1;
    ctx->idempotent = creor_idem_miss;
    ctx->keep = creor_idem_keep;

    /* what the handler writes is synced with the stored response */

    creor_store_defer_sync(st, 1);

    /* whatever way the request ends, a claim left over is released */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = creor_idem_cleanup;
    cln->data = ctx;

    return NGX_OK;
}


/* 1 to CREOR_IDEM_KEY_MAX visible ASCII characters */

static ngx_flag_t
creor_idem_key_valid(ngx_str_t *key)
{
    ngx_uint_t  i;

    if (key->len == 0 || key->len > CREOR_IDEM_KEY_MAX) {
        return 0;
    }

    for (i = 0; i < key->len; i++) {
        if (key->data[i] < 0x21 || key->data[i] > 0x7e) {
            return 0;
        }
    }

    return 1;
}


/* a claim is free after its lease, or at once if its worker is gone */

static ngx_flag_t
creor_idem_claim_dead(creor_idem_rec_t *rec, int64_t now)
{
    if (rec->lease_ms <= now) {
        return 1;
    }

    if (rec->pid != (uint32_t) ngx_pid
        && kill((ngx_pid_t) rec->pid, 0) == -1 && ngx_errno == NGX_ESRCH)
    {
        return 1;
    }

    return 0;
}


static void
creor_idem_fingerprint(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    uint8_t *out)
{
    u_char         err[128];
    ngx_str_t      ct;
    ngx_uint_t     i;
    SHA256_CTX     sha;
    ngx_array_t    parts;
    creor_part_t  *part;

    SHA256_Init(&sha);
    SHA256_Update(&sha, r->method_name.data, r->method_name.len);
    SHA256_Update(&sha, "", 1);
    SHA256_Update(&sha, r->uri.data, r->uri.len);
    SHA256_Update(&sha, "", 1);

    ngx_str_null(&ct);

    if (r->headers_in.content_type) {
        ct = r->headers_in.content_type->value;
    }

    /*
     * form data: the parts, not the bytes, so that a retry with another
     * boundary (every client makes a new one) is the same request; a body
     * that does not parse is fingerprinted as bytes and refused later
     */

    if (ctx->multipart
        && creor_multipart_parse(r->pool, &ct, &ctx->body, &parts, err,
                                 sizeof(err))
           == NGX_OK)
    {
        SHA256_Update(&sha, "multipart/form-data",
                      sizeof("multipart/form-data"));

        part = parts.elts;

        for (i = 0; i < parts.nelts; i++) {
            creor_idem_update(&sha, &part[i].name);
            creor_idem_update(&sha, part[i].is_file ? &part[i].filename
                                                    : NULL);
            creor_idem_update(&sha, &part[i].content_type);
            creor_idem_update(&sha, &part[i].data);
        }

        SHA256_Final(out, &sha);
        return;
    }

    SHA256_Update(&sha, ct.data, ct.len);
    SHA256_Update(&sha, "", 1);
    SHA256_Update(&sha, ctx->body.data, ctx->body.len);
    SHA256_Final(out, &sha);
}


/* a string with its length, so that no two lists of strings hash alike */

static void
creor_idem_update(SHA256_CTX *sha, ngx_str_t *s)
{
    uint64_t  len;

    len = s ? s->len + 1 : 0;

    SHA256_Update(sha, &len, sizeof(uint64_t));

    if (s) {
        SHA256_Update(sha, s->data, s->len);
    }
}


/*
 * The sender calls it (ctx->keep) with the response about to go: the
 * response replaces the claim, unless it is one a retry should not see
 * (5xx, 429, 401, 403).
 */

static ngx_int_t
creor_idem_keep(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    ngx_uint_t status, u_char *body, size_t len)
{
    u_char            *buf, *p;
    size_t             hlen;
    creor_headers_t    w;
    ngx_table_elt_t   *h;
    creor_idem_rec_t   rec;

    if (status >= NGX_HTTP_INTERNAL_SERVER_ERROR
        || status == NGX_HTTP_TOO_MANY_REQUESTS
        || status == NGX_HTTP_UNAUTHORIZED
        || status == NGX_HTTP_FORBIDDEN)
    {
        buf = NULL;
        hlen = 0;
        goto finish;
    }

    /* the response's own headers: not the per-request ones */

    hlen = sizeof("Content-Type: application/json\r\n") - 1;

    creor_headers_init(&w, &r->headers_out.headers);

    while ((h = creor_headers_next(&w)) != NULL) {
        if (creor_idem_own_header(h)) {
            hlen += h->key.len + 2 + h->value.len + 2;
        }
    }

    buf = ngx_pnalloc(r->pool, sizeof(creor_idem_rec_t) + hlen + len);
    if (buf == NULL) {
        creor_idem_unclaim(ctx);
        (void) creor_store_flush(&ctx->mcf->store);
        goto failed;
    }

    p = buf + sizeof(creor_idem_rec_t);
    p = ngx_cpymem(p, "Content-Type: application/json\r\n",
                   sizeof("Content-Type: application/json\r\n") - 1);

    creor_headers_init(&w, &r->headers_out.headers);

    while ((h = creor_headers_next(&w)) != NULL) {
        if (creor_idem_own_header(h)) {
            p = ngx_sprintf(p, "%V: %V\r\n", &h->key, &h->value);
        }
    }

    ngx_memcpy(p, body, len);

    ngx_memzero(&rec, sizeof(creor_idem_rec_t));
    rec.state = CREOR_IDEM_DONE;
    rec.status = (uint32_t) status;
    rec.expires_ms = creor_now_ms() + ctx->mcf->idempotency_ttl;
    rec.headers_len = (uint32_t) hlen;
    creor_idem_fingerprint(r, ctx, rec.fingerprint);
    ngx_memcpy(buf, &rec, sizeof(creor_idem_rec_t));

finish:

    if (creor_idem_finish(ctx, buf, sizeof(creor_idem_rec_t) + hlen + len,
                          r->connection->log)
        == NGX_OK)
    {
        return NGX_OK;
    }

failed:

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "creor: idempotent response not stored");

    return NGX_ERROR;
}


/* a header of the response itself, not one made for each request */

static ngx_flag_t
creor_idem_own_header(ngx_table_elt_t *h)
{
    return h->hash != 0
           && ngx_strncasecmp(h->key.data, (u_char *) "X-RateLimit-", 12) != 0
           && ngx_strncasecmp(h->key.data, (u_char *) "RateLimit", 9) != 0
           && ngx_strncasecmp(h->key.data, (u_char *) "X-Request-Id", 12) != 0;
}


/* the stored response, found by creor_idempotency_begin() */

ngx_int_t
creor_idempotency_replay(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    u_char            *p, *last, *colon, *eol, *data, err[128];
    size_t             len;
    yajl_gen           g;
    ngx_str_t          body;
    creor_json_t      *obj;
    ngx_str_t          v;
    ngx_table_elt_t   *h;
    creor_idem_rec_t   rec;

    data = ctx->replay.data;
    len = ctx->replay.len;

    ngx_memcpy(&rec, data, sizeof(creor_idem_rec_t));

    if (sizeof(creor_idem_rec_t) + rec.headers_len > len) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = data + sizeof(creor_idem_rec_t);
    last = p + rec.headers_len;

    while (p < last) {
        eol = ngx_strlchr(p, last, '\r');
        colon = ngx_strlchr(p, last, ':');

        if (eol == NULL || colon == NULL || colon > eol) {
            break;
        }

        /* Content-Type is set by creor_send_raw() */

        if (ngx_strncasecmp(p, (u_char *) "Content-Type:", 13) != 0) {
            h = ngx_list_push(&r->headers_out.headers);
            if (h == NULL) {
                return NGX_ERROR;
            }

            h->hash = 1;
            h->key.data = p;
            h->key.len = colon - p;
            h->value.data = colon + 2;
            h->value.len = eol - colon - 2;
        }

        p = eol + 2;
    }

    ngx_str_set(&v, "true");

    if (creor_add_header(r, "Idempotent-Replayed", &v) != NGX_OK) {
        return NGX_ERROR;
    }

    body.data = last;
    body.len = len - sizeof(creor_idem_rec_t) - rec.headers_len;

    /* a replayed run also says so in its body (seed 003) */

    if ((ctx->route->flags & CREOR_ROUTE_REPLAY_MARK)
        && rec.status < NGX_HTTP_BAD_REQUEST)
    {
        obj = creor_json_parse(r->pool, body.data, body.len, err,
                               sizeof(err));

        if (obj && obj->type == CREOR_JSON_OBJECT) {
            g = creor_gen_create(r);
            if (g == NULL
                || creor_json_set(obj, "replayed",
                                  creor_json_new(r->pool, CREOR_JSON_TRUE,
                                                 NULL, 0)) != NGX_OK)
            {
                return NGX_ERROR;
            }

            creor_gen_value(g, obj);

            if (creor_gen_result(r, g, &body) != NGX_OK) {
                return NGX_ERROR;
            }
        }
    }

    return creor_send_raw(r, rec.status, body.data, body.len);
}


/*
 * LMDB's NOSYNC may be switched per transaction: claims and releases
 * skip the fsync, stored responses honour creor_store sync=.
 */

static ngx_int_t
creor_idem_commit(creor_store_t *st, MDB_txn *txn, ngx_flag_t sync)
{
    return sync ? creor_store_commit(txn)
                : creor_store_commit_nosync(st, txn);
}


/*
 * The claim's last write: the response to replay (data), or no entry.
 * It is synced, and with it what the handler wrote while syncing was
 * deferred; if it fails, those writes are flushed all the same.
 */

static ngx_int_t
creor_idem_finish(ngx_creor_ctx_t *ctx, u_char *data, size_t len,
    ngx_log_t *log)
{
    int             rc;
    MDB_txn        *txn;
    creor_store_t  *st;

    creor_idem_unclaim(ctx);

    st = &ctx->mcf->store;

    rc = creor_store_write(st, &txn);
    if (rc != CREOR_STORE_OK) {
        (void) creor_store_flush(st);
        return NGX_ERROR;
    }

    if (data) {
        rc = creor_store_put(st, txn, (char *) ctx->idempotency_key, data,
                             len, 0);

    } else {
        rc = creor_store_del(st, txn, (char *) ctx->idempotency_key);
    }

    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        (void) creor_store_flush(st);

        if (data) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "creor: cannot store the response of an "
                          "idempotent request");
        }

        return NGX_ERROR;
    }

    return creor_idem_commit(st, txn, 1) == CREOR_STORE_OK
           ? NGX_OK : NGX_ERROR;
}


/* the claim is over: the handler's writes are synced with the next */

static void
creor_idem_unclaim(ngx_creor_ctx_t *ctx)
{
    ctx->idempotency_claimed = 0;
    ctx->keep = NULL;

    creor_store_defer_sync(&ctx->mcf->store, 0);
}


/*
 * The handler returned: one that has not answered (it goes on over later
 * events) must not leave the worker's commits unsynced till it does.
 */

void
creor_idempotency_handled(ngx_creor_ctx_t *ctx)
{
    creor_store_t  *st;

    st = &ctx->mcf->store;

    if (st->deferred) {
        creor_store_defer_sync(st, 0);
        (void) creor_store_flush(st);
    }
}


/* a claim given up without a stored response (a stream is not stored) */

void
creor_idempotency_release(ngx_creor_ctx_t *ctx)
{
    creor_idem_cleanup(ctx);
}


static void
creor_idem_cleanup(void *data)
{
    ngx_creor_ctx_t  *ctx = data;

    if (ctx->idempotency_claimed) {
        (void) creor_idem_finish(ctx, NULL, 0, ngx_cycle->log);
    }
}


/*
 * A request that runs longer than a lease (a long chat completion) keeps
 * its claim: till it answers, a retry gets 409 and does not run again.
 */

ngx_int_t
creor_idempotency_renew(ngx_creor_ctx_t *ctx, ngx_log_t *log)
{
    int                rc;
    MDB_val            val;
    MDB_txn           *txn;
    creor_store_t     *st;
    creor_idem_rec_t   rec;

    if (!ctx->idempotency_claimed) {
        return NGX_OK;
    }

    st = &ctx->mcf->store;

    rc = creor_store_write(st, &txn);
    if (rc != CREOR_STORE_OK) {
        return NGX_ERROR;
    }

    rc = creor_store_get(st, txn, (char *) ctx->idempotency_key, &val);

    if (rc != CREOR_STORE_OK || val.mv_size < sizeof(creor_idem_rec_t)) {
        creor_store_abort(txn);
        return NGX_ERROR;
    }

    ngx_memcpy(&rec, val.mv_data, sizeof(creor_idem_rec_t));

    if (rec.state != CREOR_IDEM_CLAIMED || rec.pid != (uint32_t) ngx_pid) {
        creor_store_abort(txn);
        return NGX_DECLINED;
    }

    rec.lease_ms = creor_now_ms() + CREOR_IDEM_LEASE;

    rc = creor_store_put(st, txn, (char *) ctx->idempotency_key, &rec,
                         sizeof(rec), 0);
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        return NGX_ERROR;
    }

    if (creor_idem_commit(st, txn, 0) != CREOR_STORE_OK) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "creor: an idempotency claim was not renewed");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Responses past their TTL and claims of dead workers: the housekeeping
 * purges "i:" with it (ngx_creor_module.c).
 */

int
creor_idempotency_expired(const MDB_val *val, int64_t now)
{
    creor_idem_rec_t  rec;

    if (val->mv_size < sizeof(creor_idem_rec_t)) {
        return 1;
    }

    ngx_memcpy(&rec, val->mv_data, sizeof(creor_idem_rec_t));

    return !((rec.state == CREOR_IDEM_DONE && rec.expires_ms > now)
             || (rec.state == CREOR_IDEM_CLAIMED
                 && rec.lease_ms + CREOR_IDEM_LEASE > now));
}
