
/*
 * Copyright (C) ngx_creor_module authors
 */


#ifndef _CREOR_WEBHOOK_H_INCLUDED_
#define _CREOR_WEBHOOK_H_INCLUDED_


/* included by ngx_creor.h */

#define CREOR_WH_VERSION        1
#define CREOR_WH_MAX            16          /* endpoints of an organization */
#define CREOR_WH_URL_MAX        2048
#define CREOR_WH_SECRET_MAX     64
#define CREOR_WH_ROTATION_MS    86400000    /* both secrets sign for 24h */
#define CREOR_WH_ATTEMPTS       8           /* kept per delivery */

#define CREOR_WHD_PENDING       1
#define CREOR_WHD_SUCCEEDED     2
#define CREOR_WHD_FAILED        3           /* an attempt failed, will retry */
#define CREOR_WHD_DEAD          4

/* to an endpoint, not to a run's own webhookUrl */
#define creor_whd_to_endpoint(hdr)  (ngx_strncmp((hdr)->owner, "wh_", 3) == 0)


/* an endpoint: "w:<org>:<id>" */
typedef struct {
    uint32_t                version;
    uint32_t                active;
    uint32_t                events;     /* a bit per type; 0: every type */
    uint32_t                reserved;
    int64_t                 created_ms;
    int64_t                 updated_ms;
    int64_t                 old_until_ms;   /* the old secret signs until */
    int64_t                 failing_ms;     /* failing since, 0: not */
    char                    secret[CREOR_WH_SECRET_MAX];
    char                    old_secret[CREOR_WH_SECRET_MAX];
    char                    disabled[48];   /* why it was disabled */
    char                    description[256];
    char                    url[CREOR_WH_URL_MAX];
} creor_wh_rec_t;


/* an organization's secret for runs' own webhookUrl: "ws:<org>" */
typedef struct {
    int64_t                 old_until_ms;
    char                    secret[CREOR_WH_SECRET_MAX];
    char                    old_secret[CREOR_WH_SECRET_MAX];
} creor_wh_secret_t;


typedef struct {
    int64_t                 ms;
    int64_t                 duration_ms;
    uint32_t                status;     /* HTTP status, 0: none */
    uint32_t                reserved;
    char                    error[48];
} creor_whd_attempt_t;


/*
 * A delivery: "wl:<owner>:<id>", the header, then the URL and the body.
 * owner is the endpoint, or the organization for a run's webhookUrl.
 */
typedef struct {
    uint32_t                version;
    uint32_t                status;
    char                    org[CREOR_ID_MAX];
    char                    owner[CREOR_ID_MAX];
    char                    event_id[CREOR_ID_MAX];
    char                    type[32];
    int64_t                 created_ms;
    int64_t                 due_ms;     /* its "wq:" entry, 0: none */
    uint32_t                owner_pid;
    uint32_t                tries;      /* failed tries since (re)delivery */
    uint32_t                attempts;   /* all attempts */
    uint32_t                url_len;
    uint32_t                body_len;
    uint32_t                reserved;
    creor_whd_attempt_t     attempt[CREOR_WH_ATTEMPTS];    /* the latest */
} creor_whd_hdr_t;


typedef struct {
    char                    key[CREOR_STORE_KEY_MAX];
    creor_whd_hdr_t         hdr;
    ngx_str_t               url;
    ngx_str_t               body;
} creor_whd_t;


extern const char  *creor_event_types[];

ngx_uint_t creor_webhook_event_bit(const char *type, size_t len);
int creor_webhook_get(creor_store_t *st, MDB_txn *txn, const char *key,
    creor_wh_rec_t *rec);
int creor_webhook_count(creor_store_t *st, MDB_txn *txn, ngx_str_t *org,
    size_t max, size_t *n);
ngx_int_t creor_webhook_run_secret(creor_store_t *st, MDB_txn *txn,
    const char *org, creor_wh_secret_t *sec);
ngx_int_t creor_whd_read(MDB_val *val, creor_whd_t *whd);
ngx_int_t creor_whd_write(creor_store_t *st, MDB_txn *txn,
    creor_whd_t *whd, int64_t due);
ngx_int_t creor_whd_create(creor_store_t *st, MDB_txn *txn,
    const char *org, const char *owner, const char *event_id,
    const char *type, ngx_str_t *url, ngx_str_t *body, char *id);
ngx_int_t creor_whd_depth_add(creor_store_t *st, MDB_txn *txn,
    int64_t delta);
int creor_whd_endpoint(creor_store_t *st, MDB_txn *txn, creor_whd_t *whd,
    char *wkey, creor_wh_rec_t *rec);
ngx_int_t creor_webhooks_emit(creor_store_t *st, MDB_txn *txn,
    ngx_pool_t *pool, const char *org, const char *type, creor_json_t *data,
    ngx_str_t *url);
int64_t creor_webhooks_queue_depth(creor_store_t *st);
void creor_webhooks_purge(ngx_creor_main_conf_t *mcf, ngx_log_t *log);


#endif /* _CREOR_WEBHOOK_H_INCLUDED_ */
