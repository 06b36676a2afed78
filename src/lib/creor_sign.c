
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Webhook secrets and signatures (SPEC 11.3).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/hmac.h>
#include <openssl/evp.h>

#include "ngx_creor.h"


/* "whsec_" and the base64 of CREOR_SIGN_SECRET_BYTES random bytes */

void
creor_sign_secret(char *out)
{
    u_char     raw[CREOR_SIGN_SECRET_BYTES];
    ngx_str_t  src, dst;

    (void) creor_random(raw, sizeof(raw));

    src.data = raw;
    src.len = sizeof(raw);
    dst.data = (u_char *) out + 6;

    ngx_memcpy(out, "whsec_", 6);
    ngx_encode_base64(&dst, &src);
    out[6 + dst.len] = '\0';
}


/*
 * Creor-Signature: hex HMAC-SHA256 of the body keyed by the secret
 * string (seed 000); webhook-signature: Standard Webhooks, base64 of
 * HMAC-SHA256 over "id.timestamp.body" keyed by the secret's bytes, the
 * old secret's too during a rotation.
 */

ngx_int_t
creor_sign_headers(ngx_pool_t *pool, const char *event_id, const char *type,
    ngx_str_t *body, const char *secret, const char *old_secret,
    ngx_keyval_t **headers, ngx_uint_t *n)
{
    u_char         *p, *msg, mac[EVP_MAX_MD_SIZE], keyb[64];
    unsigned int    maclen;
    ngx_str_t       src, dst, ts;
    ngx_uint_t      i;
    ngx_keyval_t   *h;
    const char     *s[2];

    h = ngx_pcalloc(pool, 6 * sizeof(ngx_keyval_t));
    ts.data = ngx_pnalloc(pool, NGX_INT64_LEN);
    if (h == NULL || ts.data == NULL) {
        return NGX_ERROR;
    }

    ts.len = ngx_sprintf(ts.data, "%L", creor_now_ms() / 1000) - ts.data;

    /* Creor-Signature */

    if (HMAC(EVP_sha256(), secret, ngx_strlen(secret), body->data,
             body->len, mac, &maclen) == NULL)
    {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(pool, maclen * 2);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&h[0].key, "Creor-Signature");
    h[0].value.data = p;
    h[0].value.len = ngx_hex_dump(p, mac, maclen) - p;

    ngx_str_set(&h[1].key, "Creor-Event");
    h[1].value.data = (u_char *) type;
    h[1].value.len = ngx_strlen(type);

    ngx_str_set(&h[2].key, "webhook-id");
    h[2].value.data = (u_char *) event_id;
    h[2].value.len = ngx_strlen(event_id);

    ngx_str_set(&h[3].key, "webhook-timestamp");
    h[3].value = ts;

    ngx_str_set(&h[5].key, "User-Agent");
    ngx_str_set(&h[5].value, "Creor-Webhooks/1");

    /* "id.timestamp.body" */

    msg = ngx_pnalloc(pool, h[2].value.len + ts.len + body->len + 2);
    p = ngx_pnalloc(pool, 2 * (3 + ngx_base64_encoded_length(32)) + 1);
    if (msg == NULL || p == NULL) {
        return NGX_ERROR;
    }

    src.data = msg;
    src.len = ngx_sprintf(msg, "%V.%V.%V", &h[2].value, &ts, body)
              - msg;

    s[0] = secret;
    s[1] = old_secret;

    h[4].value.data = p;
    ngx_str_set(&h[4].key, "webhook-signature");

    for (i = 0; i < 2 && s[i] && s[i][0]; i++) {
        dst.data = keyb;
        ts.data = (u_char *) s[i] + 6;
        ts.len = ngx_strlen(s[i]) - 6;

        if (ngx_strlen(s[i]) < 6 || ts.len > ngx_base64_encoded_length(48)
            || ngx_decode_base64(&dst, &ts) != NGX_OK
            || HMAC(EVP_sha256(), keyb, dst.len, src.data, src.len, mac,
                    &maclen) == NULL)
        {
            return NGX_ERROR;
        }

        if (i) {
            *p++ = ' ';
        }

        p = ngx_cpymem(p, "v1,", 3);

        dst.data = p;
        ts.data = mac;
        ts.len = maclen;
        ngx_encode_base64(&dst, &ts);
        p += dst.len;
    }

    h[4].value.len = p - h[4].value.data;

    *headers = h;
    *n = 6;

    return NGX_OK;
}
