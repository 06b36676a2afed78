
/*
 * Copyright (C) ngx_creor_module authors
 */


#include <string.h>
#include <stdio.h>
#include <time.h>
#include <pthread.h>
#include <sys/time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "creor_core.h"


#define CREOR_RANDOM_POOL  4096

/* character classes of ids and secrets (creor_chars) */
#define CREOR_CHAR_ULID    1        /* Crockford's base32, lower case */
#define CREOR_CHAR_B62     2


static void creor_random_forked(void);
static int creor_is_ulid(const char *p);
static int creor_chars_are(const char *p, size_t len, uint8_t class);


static const char  creor_crockford[] = "0123456789abcdefghjkmnpqrstvwxyz";
static const char  creor_b62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";


/* a table, not strchr(): it runs on every character of every token */

static const uint8_t  creor_chars[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 0, 0, 0, 0, 0,
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
    0, 3, 3, 3, 3, 3, 3, 3, 3, 2, 3, 3, 2, 3, 3, 2,
    3, 3, 3, 3, 3, 2, 3, 3, 3, 3, 3, 0, 0, 0, 0, 0,
    /* 128..255: none */
};

static uint8_t       creor_pool[CREOR_RANDOM_POOL];
static size_t        creor_pool_left;


int64_t
creor_now_ms(void)
{
    struct timeval  tv;

    gettimeofday(&tv, NULL);

    return (int64_t) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}


int64_t
creor_now_us(void)
{
    struct timeval  tv;

    gettimeofday(&tv, NULL);

    return (int64_t) tv.tv_sec * 1000000 + tv.tv_usec;
}


int
creor_random(void *buf, size_t len)
{
    return RAND_bytes(buf, (int) len) == 1 ? 0 : -1;
}


/*
 * Request ids and the random part of ids, drawn from a pool refilled
 * 4 KB at a time: one RAND_bytes() call costs thousands of instructions
 * and a getpid() whatever its length.  A child forgets its parent's
 * pool, so two workers never hand out the same bytes.  Secrets still
 * come from creor_random() directly.
 */

int
creor_random_pooled(void *buf, size_t len)
{
    static int  registered;

    if (len > CREOR_RANDOM_POOL) {
        return creor_random(buf, len);
    }

    if (creor_pool_left < len) {
        if (!registered) {
            if (pthread_atfork(NULL, NULL, creor_random_forked) != 0) {
                return creor_random(buf, len);
            }

            registered = 1;
        }

        if (creor_random(creor_pool, CREOR_RANDOM_POOL) != 0) {
            return -1;
        }

        creor_pool_left = CREOR_RANDOM_POOL;
    }

    creor_pool_left -= len;
    memcpy(buf, creor_pool + creor_pool_left, len);

    /* bytes handed out are not kept */

    memset(creor_pool + creor_pool_left, 0, len);

    return 0;
}


static void
creor_random_forked(void)
{
    memset(creor_pool, 0, sizeof(creor_pool));
    creor_pool_left = 0;
}


/*
 * ULID: 48 bits of milliseconds and 80 random bits.  Within one process
 * and millisecond the random part is incremented; across processes the
 * store orders them (creor_store_make_id()).
 */

void
creor_ulid_bytes(uint8_t *b, int64_t ms)
{
    int             i;
    static int64_t  last_ms;
    static uint8_t  last[10];

    if (ms == last_ms) {
        for (i = 9; i >= 0; i--) {
            if (++last[i] != 0) {
                break;
            }
        }

    } else {
        (void) creor_random_pooled(last, sizeof(last));
        last[0] &= 0x7f;            /* room to increment */
        last_ms = ms;
    }

    for (i = 0; i < 6; i++) {
        b[i] = (uint8_t) (ms >> (40 - 8 * i));
    }

    memcpy(b + 6, last, 10);
}


/* 128 bits -> 26 chars, the first carrying the top 3 bits */

void
creor_ulid_encode(char *out, const uint8_t *b)
{
    int       i, bit;
    unsigned  v;

    for (i = 0; i < CREOR_ULID_LEN; i++) {
        v = 0;

        /* bits [5i - 2, 5i + 3) of the number, MSB first, 2 leading zeros */

        for (bit = 5 * i - 2; bit < 5 * i + 3; bit++) {
            v <<= 1;

            if (bit >= 0) {
                v |= (b[bit / 8] >> (7 - bit % 8)) & 1;
            }
        }

        out[i] = creor_crockford[v];
    }
}


void
creor_ulid(char *out, int64_t ms)
{
    uint8_t  b[16];

    creor_ulid_bytes(b, ms);
    creor_ulid_encode(out, b);
}


int
creor_make_id(char *out, size_t size, const char *prefix)
{
    size_t  n;

    n = strlen(prefix);

    if (n + CREOR_ULID_LEN + 1 > size) {
        return -1;
    }

    memcpy(out, prefix, n);
    creor_ulid(out + n, creor_now_ms());
    out[n + CREOR_ULID_LEN] = '\0';

    return 0;
}


static int
creor_is_ulid(const char *p)
{
    return creor_chars_are(p, CREOR_ULID_LEN, CREOR_CHAR_ULID);
}


/* whether each of the len characters at p is of the class */

static int
creor_chars_are(const char *p, size_t len, uint8_t class)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (!(creor_chars[(uint8_t) p[i]] & class)) {
            return 0;
        }
    }

    return 1;
}


int
creor_is_id(const char *p, size_t len, const char *prefix)
{
    size_t  n;

    n = strlen(prefix);

    return len == n + CREOR_ULID_LEN
           && memcmp(p, prefix, n) == 0
           && creor_is_ulid(p + n);
}


/* base62 of a big-endian number, fixed width for CREOR_SECRET_LEN input */

size_t
creor_base62(char *out, const uint8_t *in, size_t len)
{
    size_t    i, j, n;
    uint8_t   num[CREOR_SECRET_LEN];
    uint32_t  rem, acc;

    if (len > sizeof(num)) {
        return 0;
    }

    memcpy(num, in, len);
    n = CREOR_SECRET_B62_LEN;

    for (i = n; i > 0; i--) {
        rem = 0;

        for (j = 0; j < len; j++) {
            acc = (rem << 8) | num[j];
            num[j] = (uint8_t) (acc / 62);
            rem = acc % 62;
        }

        out[i - 1] = creor_b62[rem];
    }

    out[n] = '\0';

    return n;
}


int
creor_hash_secret(uint8_t *out, const uint8_t *key, size_t key_len,
    const char *secret, size_t secret_len)
{
    unsigned int  n;

    n = CREOR_HASH_LEN;

    if (HMAC(EVP_sha256(), key, (int) key_len, (const uint8_t *) secret,
             secret_len, out, &n)
        == NULL)
    {
        return -1;
    }

    return 0;
}


int
creor_hash_equal(const uint8_t *a, const uint8_t *b)
{
    return CRYPTO_memcmp(a, b, CREOR_HASH_LEN) == 0;
}


/*
 * "ck_<ulid>_<secret>" or "key_<ulid>:<secret>"; the secret is base62.
 */

int
creor_parse_token(const char *p, size_t len, creor_token_t *tok)
{
    size_t  pre;
    char    sep;

    if (len > 3 && memcmp(p, "ck_", 3) == 0) {
        pre = 3;
        sep = '_';

    } else if (len > 4 && memcmp(p, "key_", 4) == 0) {
        pre = 4;
        sep = ':';

    } else {
        return -1;
    }

    if (len != pre + CREOR_ULID_LEN + 1 + CREOR_SECRET_B62_LEN
        || p[pre + CREOR_ULID_LEN] != sep
        || !creor_is_ulid(p + pre))
    {
        return -1;
    }

    tok->ulid = p + pre;
    tok->secret = p + pre + CREOR_ULID_LEN + 1;
    tok->secret_len = CREOR_SECRET_B62_LEN;

    return creor_is_b62(tok->secret, tok->secret_len) ? 0 : -1;
}


int
creor_is_b62(const char *p, size_t len)
{
    return creor_chars_are(p, len, CREOR_CHAR_B62);
}


int
creor_role_parse(const char *p, size_t len)
{
    if (len == 5 && memcmp(p, "admin", 5) == 0) {
        return CREOR_ROLE_ADMIN;
    }

    if (len == 4 && memcmp(p, "user", 4) == 0) {
        return CREOR_ROLE_USER;
    }

    if (len == 9 && memcmp(p, "read_only", 9) == 0) {
        return CREOR_ROLE_READ_ONLY;
    }

    return -1;
}


const char *
creor_role_name(uint32_t role)
{
    switch (role) {
    case CREOR_ROLE_ADMIN:
        return "admin";
    case CREOR_ROLE_USER:
        return "user";
    default:
        return "read_only";
    }
}


/*
 * "<n>r/s" or "<n>r/m", optionally followed by " burst=<b>", as
 * the creor_rate_limit directive takes it.
 */

int
creor_rate_parse(const char *p, size_t len, uint32_t *count,
    uint32_t *period_ms, uint32_t *burst)
{
    size_t    i;
    uint64_t  n, b;

    n = 0;

    for (i = 0; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
        n = n * 10 + (p[i] - '0');
        if (n > 1000000) {
            return -1;
        }
    }

    if (i == 0 || n == 0 || len - i < 3 || p[i] != 'r' || p[i + 1] != '/') {
        return -1;
    }

    switch (p[i + 2]) {
    case 's':
        *period_ms = 1000;
        break;
    case 'm':
        *period_ms = 60000;
        break;
    case 'h':
        *period_ms = 3600000;
        break;
    default:
        return -1;
    }

    i += 3;
    b = 0;

    if (i < len) {
        if (len - i < 8 || memcmp(p + i, " burst=", 7) != 0) {
            return -1;
        }

        for (i += 7; i < len; i++) {
            if (p[i] < '0' || p[i] > '9') {
                return -1;
            }

            b = b * 10 + (p[i] - '0');
            if (b > 1000000) {
                return -1;
            }
        }
    }

    *count = (uint32_t) n;
    *burst = (uint32_t) b;

    return 0;
}


size_t
creor_time_rfc3339(char *out, int64_t ms)
{
    int        n;
    time_t     t;
    struct tm  tm;

    /*
     * RFC 3339 has years 0000 to 9999: a time outside 1970..9999 (a
     * damaged record, a clock gone wrong) is clamped, so the text is
     * always 24 bytes of valid syntax
     */

    if (ms < 0) {
        ms = 0;

    } else if (ms > CREOR_TIME_MAX_MS) {
        ms = CREOR_TIME_MAX_MS;
    }

    t = (time_t) (ms / 1000);

    if (gmtime_r(&t, &tm) == NULL) {
        tm.tm_year = 70;
        tm.tm_mon = 0;
        tm.tm_mday = 1;
        tm.tm_hour = 0;
        tm.tm_min = 0;
        tm.tm_sec = 0;
    }

    n = snprintf(out, CREOR_TIME_LEN, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (ms % 1000));

    /* snprintf() returns what it would have written, not what it wrote */

    if (n < 0) {
        out[0] = '\0';
        return 0;
    }

    return n < CREOR_TIME_LEN ? (size_t) n : CREOR_TIME_LEN - 1;
}
