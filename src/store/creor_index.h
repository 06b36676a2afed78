
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Indexes of runs and agents, their counters and the chunk counts that
 * let a list skip to a position.  Plain C: the command line links this
 * file too (bulk loads, rebuilds).  docs/architecture.md lists the keys.
 */


#ifndef _CREOR_INDEX_H_INCLUDED_
#define _CREOR_INDEX_H_INCLUDED_


#include "creor_store.h"


/* run statuses (SPEC 8.3) */
#define CREOR_RUN_QUEUED          1
#define CREOR_RUN_RUNNING         2
#define CREOR_RUN_AWAITING_INPUT  3
#define CREOR_RUN_COMPLETED       4
#define CREOR_RUN_FAILED          5
#define CREOR_RUN_CANCELLED       6

#define creor_run_terminal(s)     ((s) >= CREOR_RUN_COMPLETED)

#define CREOR_AGENT_STATUS_MAX    16

#define CREOR_INDEX_VERSION       "1"


/* a run's fixed part: what the dispatcher and lists read */
typedef struct {
    uint32_t                version;
    uint32_t                status;
    char                    org[CREOR_ID_MAX];
    char                    project[CREOR_ID_MAX];
    char                    agent[CREOR_ID_MAX];
    char                    thread[CREOR_ID_MAX];
    char                    error_code[48];
    int64_t                 created_ms;
    int64_t                 started_ms;
    int64_t                 completed_ms;
    int64_t                 lease_ms;   /* a worker holds the leg until */
    int64_t                 next_ms;    /* the next leg may start at */
    int64_t                 input_tokens;
    int64_t                 output_tokens;
    uint32_t                owner_pid;  /* the worker running the leg */
    uint32_t                attempt;    /* failed tries of this leg */
    uint32_t                seq;        /* the last event's */
    uint32_t                legs;
} creor_run_hdr_t;


/* an agent's fixed part, before its public JSON */
typedef struct {
    char                    project[CREOR_ID_MAX];
    char                    status[CREOR_AGENT_STATUS_MAX];
    char                    run[CREOR_ID_MAX];      /* the latest run */
    char                    thread[CREOR_ID_MAX];   /* follow-ups go on */
} creor_agent_hdr_t;


int creor_index_set(creor_store_t *s, MDB_txn *txn, const char *ix,
    size_t ixlen, const char *id, size_t idlen, int on);
int creor_index_count(creor_store_t *s, MDB_txn *txn, const char *ix,
    size_t ixlen, const char *id, size_t idlen, int delta);
int creor_index_total(creor_store_t *s, MDB_txn *txn, const char *ix,
    size_t ixlen, uint64_t *n);
int creor_index_seek(creor_store_t *s, MDB_txn *txn, MDB_cursor *cur,
    const char *ix, size_t ixlen, uint64_t skip, int desc, MDB_val *key,
    MDB_val *val);
int creor_index_run(creor_store_t *s, MDB_txn *txn,
    const creor_run_hdr_t *hdr, const char *id, uint32_t old_status);
int creor_index_agent(creor_store_t *s, MDB_txn *txn, const char *org,
    const char *project, const char *id, const char *old_status,
    const char *new_status);
int creor_index_upgrade(creor_store_t *s, int rebuild, size_t *done);
int creor_index_drop(creor_store_t *s);
int creor_index_check(creor_store_t *s, size_t *indexes, size_t *errors);


#endif /* _CREOR_INDEX_H_INCLUDED_ */
