
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Credentials: the three accepted forms of a key, its record read from
 * the store on every request (so a revocation holds at once on every
 * worker) and roles.  What a key may see is creor_scope.c's.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>

#include "ngx_creor.h"


#define CREOR_LAST_USED_GRANULARITY  60000     /* ms */
#define CREOR_HASH_MEMO_SIZE         1024


/*
 * HMAC-SHA256 costs more than the rest of a GET: each worker remembers
 * the hash of the secrets it has seen lately.  The stored hash is still
 * compared on every request, so rotation and revocation act at once.
 */

typedef struct {
    char                     ulid[CREOR_ULID_LEN];
    char                     secret[CREOR_SECRET_B62_LEN];
    uint8_t                  hash[CREOR_HASH_LEN];
} creor_hash_memo_t;


static ngx_int_t creor_auth_header(ngx_http_request_t *r, ngx_table_elt_t *h,
    ngx_uint_t offset);
static void creor_auth_hide_user(ngx_http_request_t *r);
static ngx_int_t creor_auth_hash(creor_store_t *store, creor_token_t *tok,
    uint8_t *hash);
static ngx_int_t creor_auth_token(ngx_pool_t *pool, ngx_str_t *value,
    ngx_str_t *token);
static void creor_auth_touch(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);


/*
 * Secrets never reach a log (SPEC 4.2), whatever the log configuration:
 * the core's handler of the Authorization header is replaced, in this
 * configuration's headers hash only, by one that refuses a duplicate
 * without quoting the values (nginx's own message logs both at "info")
 * and keeps $remote_user of a Basic token to its public part.
 */

ngx_int_t
creor_auth_init(ngx_conf_t *cf)
{
    ngx_uint_t                  key;
    ngx_hash_t                 *hash;
    ngx_hash_elt_t             *elt;
    ngx_http_header_t          *hh, *own;
    ngx_http_core_main_conf_t  *cmcf;

    static u_char               name[] = "authorization";

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    hash = &cmcf->headers_in_hash;

    key = ngx_hash_key(name, sizeof(name) - 1);

    hh = ngx_hash_find(hash, key, name, sizeof(name) - 1);
    if (hh == NULL) {
        return NGX_OK;
    }

    own = ngx_palloc(cf->pool, sizeof(ngx_http_header_t));
    if (own == NULL) {
        return NGX_ERROR;
    }

    *own = *hh;
    own->handler = creor_auth_header;

    /*
     * the entry's value points into the core's static table, shared by
     * every configuration: only this hash's slot is changed
     */

    for (elt = hash->buckets[key % hash->size];
         elt->value != hh;
         elt = (ngx_hash_elt_t *) ngx_align_ptr(&elt->name[0] + elt->len,
                                                sizeof(void *)))
    {
        /* void */
    }

    elt->value = own;

    return NGX_OK;
}


static ngx_int_t
creor_auth_header(ngx_http_request_t *r, ngx_table_elt_t *h,
    ngx_uint_t offset)
{
    ngx_table_elt_t  **ph;

    ph = (ngx_table_elt_t **) ((char *) &r->headers_in + offset);

    if (*ph != NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "client sent duplicate header line: \"%V\"", &h->key);

        ngx_http_finalize_request(r, NGX_HTTP_BAD_REQUEST);
        return NGX_ERROR;
    }

    *ph = h;

    creor_auth_hide_user(r);

    return NGX_OK;
}


/*
 * $remote_user (in the "combined" log format) is the Basic user name,
 * which is the whole token in "curl -u TOKEN:".  An empty name with data
 * is what ngx_http_auth_basic_user() takes as "no user" without decoding
 * the header again: $remote_user is "-" for a token ($creor_key_id names
 * the key once authenticated).
 */

static void
creor_auth_hide_user(ngx_http_request_t *r)
{
    ngx_str_t  *user;

    user = &r->headers_in.user;

    if (ngx_http_auth_basic_user(r) == NGX_ERROR
        || (user->len >= 3 && ngx_strncmp(user->data, "ck_", 3) == 0))
    {
        ngx_str_set(user, "");
    }
}


ngx_int_t
creor_authenticate(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int                  rc;
    char                 id[CREOR_ID_MAX];
    int64_t              now;
    uint8_t              hash[CREOR_HASH_LEN];
    MDB_txn             *txn;
    ngx_str_t            token;
    creor_token_t        tok;
    creor_key_rec_t     *key;
    creor_store_t       *store;

    if (r->headers_in.authorization == NULL) {
        return creor_fail(r, NGX_HTTP_UNAUTHORIZED, "AUTH_MISSING_HEADER",
                          NULL, "The Authorization header is missing.");
    }

    if (creor_auth_token(r->pool, &r->headers_in.authorization->value,
                         &token)
        != NGX_OK
        || creor_parse_token((char *) token.data, token.len, &tok) != 0)
    {
        return creor_fail(r, NGX_HTTP_UNAUTHORIZED, "AUTH_KEY_INVALID", NULL,
                          "The API key is invalid.");
    }

    ngx_memcpy(id, "key_", 4);
    ngx_memcpy(id + 4, tok.ulid, CREOR_ULID_LEN);
    id[4 + CREOR_ULID_LEN] = '\0';

    store = &ctx->mcf->store;
    key = &ctx->who.key;

    txn = creor_store_read(store);
    if (txn == NULL) {
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    rc = creor_key_get(store, txn, id, key);

    creor_store_read_done(store);

    if (rc == CREOR_STORE_NOTFOUND) {
        return creor_fail(r, NGX_HTTP_UNAUTHORIZED, "AUTH_KEY_INVALID", NULL,
                          "The API key is invalid.");
    }

    if (rc != CREOR_STORE_OK) {
        return creor_fail_store(r, rc);
    }

    if (creor_auth_hash(store, &tok, hash) != NGX_OK) {
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    now = creor_now_ms();

    if (!creor_hash_equal(hash, key->hash)
        && !(now < key->old_expires_ms
             && creor_hash_equal(hash, key->old_hash)))
    {
        return creor_fail(r, NGX_HTTP_UNAUTHORIZED, "AUTH_KEY_INVALID", NULL,
                          "The API key is invalid.");
    }

    if (key->revoked_ms) {
        return creor_fail(r, NGX_HTTP_UNAUTHORIZED, "AUTH_KEY_REVOKED", NULL,
                          "The API key has been revoked.");
    }

    ctx->authenticated = 1;

    ctx->who.key_id.data = (u_char *) key->id;
    ctx->who.key_id.len = ngx_strlen(key->id);
    ctx->who.org.data = (u_char *) key->org;
    ctx->who.org.len = ngx_strlen(key->org);
    ctx->who.project.data = (u_char *) key->project;
    ctx->who.project.len = ngx_strlen(key->project);
    ctx->who.app.data = (u_char *) key->app;
    ctx->who.app.len = ngx_strlen(key->app);

    switch (key->role) {
    case CREOR_ROLE_ADMIN:
        ctx->who.perms = CREOR_PERM_READ|CREOR_PERM_WRITE|CREOR_PERM_ADMIN;
        break;
    case CREOR_ROLE_USER:
        ctx->who.perms = CREOR_PERM_READ|CREOR_PERM_WRITE;
        break;
    default:
        ctx->who.perms = CREOR_PERM_READ;
        break;
    }

    if (now - key->last_used_ms >= CREOR_LAST_USED_GRANULARITY) {
        creor_auth_touch(r, ctx);
    }

    return NGX_OK;
}


ngx_int_t
creor_check_permission(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    if ((ctx->route->perm & ctx->who.perms) != ctx->route->perm) {
        return creor_fail(r, NGX_HTTP_FORBIDDEN, "PERMISSION_DENIED", NULL,
                          "This key's role (%s) lacks the permission %s.",
                          creor_role_name(ctx->who.key.role),
                          ctx->route->perm_name);
    }

    return NGX_OK;
}


static ngx_int_t
creor_auth_hash(creor_store_t *store, creor_token_t *tok, uint8_t *hash)
{
    creor_hash_memo_t         *m;
    static creor_hash_memo_t  *memo;

    if (memo == NULL) {
        memo = ngx_calloc(sizeof(creor_hash_memo_t) * CREOR_HASH_MEMO_SIZE,
                          ngx_cycle->log);
        if (memo == NULL) {
            return NGX_ERROR;
        }
    }

    m = &memo[ngx_hash_key((u_char *) tok->ulid, CREOR_ULID_LEN)
              % CREOR_HASH_MEMO_SIZE];

    if (ngx_memcmp(m->ulid, tok->ulid, CREOR_ULID_LEN) == 0
        && CRYPTO_memcmp(m->secret, tok->secret, CREOR_SECRET_B62_LEN) == 0)
    {
        ngx_memcpy(hash, m->hash, CREOR_HASH_LEN);
        return NGX_OK;
    }

    if (creor_hash_secret(hash, store->secret, store->secret_len,
                          tok->secret, tok->secret_len)
        != 0)
    {
        return NGX_ERROR;
    }

    ngx_memcpy(m->ulid, tok->ulid, CREOR_ULID_LEN);
    ngx_memcpy(m->secret, tok->secret, CREOR_SECRET_B62_LEN);
    ngx_memcpy(m->hash, hash, CREOR_HASH_LEN);

    return NGX_OK;
}


/*
 * "Bearer <token>", or "Basic base64(<token>:)" with an empty password;
 * the header's value only, so that fuzz/token.c can call it.
 */

static ngx_int_t
creor_auth_token(ngx_pool_t *pool, ngx_str_t *value, ngx_str_t *token)
{
    u_char     *p, *colon;
    ngx_str_t   v, enc;

    v = *value;

    if (v.len > 7 && ngx_strncasecmp(v.data, (u_char *) "Bearer ", 7) == 0) {
        token->data = v.data + 7;
        token->len = v.len - 7;

        while (token->len && token->data[0] == ' ') {
            token->data++;
            token->len--;
        }

        return NGX_OK;
    }

    if (v.len > 6 && ngx_strncasecmp(v.data, (u_char *) "Basic ", 6) == 0) {
        enc.data = v.data + 6;
        enc.len = v.len - 6;

        if (enc.len > 256) {
            return NGX_DECLINED;
        }

        p = ngx_pnalloc(pool, ngx_base64_decoded_length(enc.len));
        if (p == NULL) {
            return NGX_ERROR;
        }

        token->data = p;

        if (ngx_decode_base64(token, &enc) != NGX_OK) {
            return NGX_DECLINED;
        }

        colon = ngx_strlchr(token->data, token->data + token->len, ':');

        if (colon == NULL || colon != token->data + token->len - 1) {
            return NGX_DECLINED;
        }

        token->len--;

        return NGX_OK;
    }

    return NGX_DECLINED;
}


/*
 * lastUsedAt is kept to a minute: one short write per key and minute,
 * not one per request.  A failure here must not fail the request.
 */

static void
creor_auth_touch(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int               rc;
    int64_t           now;
    MDB_txn          *txn;
    creor_store_t    *store;
    creor_key_rec_t   rec;

    store = &ctx->mcf->store;

    if (creor_store_write(store, &txn) != CREOR_STORE_OK) {
        return;
    }

    now = creor_now_ms();

    rc = creor_key_get(store, txn, ctx->who.key.id, &rec);

    if (rc != CREOR_STORE_OK
        || now - rec.last_used_ms < CREOR_LAST_USED_GRANULARITY)
    {
        creor_store_abort(txn);
        return;
    }

    rec.last_used_ms = now;

    rc = creor_key_put(store, txn, &rec);

    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);

    } else {
        rc = creor_store_commit(txn);
    }

    if (rc != CREOR_STORE_OK) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "creor: cannot record lastUsedAt of %s", rec.id);
        return;
    }

    ctx->who.key.last_used_ms = now;
}
