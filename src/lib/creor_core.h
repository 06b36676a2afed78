
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Plain C parts shared by the nginx module and the admin command line:
 * identifiers, tokens, secret hashing and the binary records of the store.
 * Nothing here depends on nginx, so build/creor links the same code.
 */


#ifndef _CREOR_CORE_H_INCLUDED_
#define _CREOR_CORE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>


#define CREOR_ULID_LEN          26
#define CREOR_ID_MAX            40      /* "agent_" + ULID + NUL fits */
#define CREOR_SECRET_LEN        32      /* random bytes of a key secret */
#define CREOR_SECRET_B62_LEN    43      /* 32 bytes in base62 */
#define CREOR_HASH_LEN          32      /* HMAC-SHA256 */
#define CREOR_NAME_MAX          128
#define CREOR_RATE_MAX          32
#define CREOR_SERVER_SECRET_MAX 256

#define CREOR_ROLE_ADMIN        1
#define CREOR_ROLE_USER         2
#define CREOR_ROLE_READ_ONLY    3

#define CREOR_KEY_VERSION       1


/* An organization: "o:<org id>". */
typedef struct {
    uint32_t    version;
    uint32_t    reserved;
    int64_t     created_ms;
    char        name[CREOR_NAME_MAX];
} creor_org_rec_t;


/* A project: "p:<org id>:<project id>". */
typedef struct {
    uint32_t    version;
    uint32_t    reserved;
    int64_t     created_ms;
    char        name[CREOR_NAME_MAX];
    char        description[256];
} creor_project_rec_t;


/*
 * An API key: "k:<key id>", read on every authenticated request, hence a
 * fixed binary layout rather than JSON.
 */
typedef struct {
    uint32_t    version;
    uint32_t    role;
    char        id[CREOR_ID_MAX];
    char        org[CREOR_ID_MAX];
    char        project[CREOR_ID_MAX];
    char        app[CREOR_ID_MAX];
    char        name[CREOR_NAME_MAX];
    char        rate_limit[CREOR_RATE_MAX];
    uint8_t     hash[CREOR_HASH_LEN];
    uint8_t     old_hash[CREOR_HASH_LEN];
    int64_t     old_expires_ms;     /* rotated secret valid until */
    int64_t     created_ms;
    int64_t     last_used_ms;
    int64_t     revoked_ms;
} creor_key_rec_t;


/*
 * Usage of one organization, day, project, key, agent and model:
 * "u:<org>:<yyyymmdd>:<project>:<key id>:<agent>:<model>" (SPEC 9.3).
 */
typedef struct {
    uint32_t    version;
    uint32_t    reserved;
    int64_t     requests;
    int64_t     runs;
    int64_t     input_tokens;
    int64_t     output_tokens;
} creor_usage_rec_t;


/* A token split into its parts; pointers into the caller's buffer. */
typedef struct {
    const char  *ulid;              /* CREOR_ULID_LEN chars */
    const char  *secret;
    size_t       secret_len;
} creor_token_t;


int64_t creor_now_ms(void);
int64_t creor_now_us(void);
int creor_random(void *buf, size_t len);
int creor_random_pooled(void *buf, size_t len);
void creor_ulid_bytes(uint8_t *b, int64_t ms);
void creor_ulid_encode(char *out, const uint8_t *b);
void creor_ulid(char *out, int64_t ms);
int creor_make_id(char *out, size_t size, const char *prefix);
int creor_is_id(const char *p, size_t len, const char *prefix);
size_t creor_base62(char *out, const uint8_t *in, size_t len);
int creor_hash_secret(uint8_t *out, const uint8_t *key, size_t key_len,
    const char *secret, size_t secret_len);
int creor_hash_equal(const uint8_t *a, const uint8_t *b);
int creor_parse_token(const char *p, size_t len, creor_token_t *tok);
int creor_is_b62(const char *p, size_t len);
int creor_role_parse(const char *p, size_t len);
const char *creor_role_name(uint32_t role);
int creor_rate_parse(const char *p, size_t len, uint32_t *count,
    uint32_t *period_ms, uint32_t *burst);
/* out has CREOR_TIME_LEN bytes; returns the length written */
#define CREOR_TIME_LEN      32
#define CREOR_TIME_MAX_MS   INT64_C(253402300799999)   /* 9999-12-31 */
size_t creor_time_rfc3339(char *out, int64_t ms);


#endif /* _CREOR_CORE_H_INCLUDED_ */
