
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The fixed parts of the records that more than one file reads, declared
 * once.  The store keeps them byte for byte, so a size is part of the
 * store's format: each is checked when compiling.  Plain C, in the store's
 * folder: the indexes and the command line read them too.
 * docs/architecture.md lists the keys.
 */


#ifndef _CREOR_RECORDS_H_INCLUDED_
#define _CREOR_RECORDS_H_INCLUDED_


#include "creor_core.h"


/* a record's size is its format: a change must be a new version */
#define creor_record_size(type, size)                                        \
    _Static_assert(sizeof(type) == (size),                                   \
                   #type ": a stored record changed its size")


/* run statuses (SPEC 8.3): creor_run_hdr_t's status */
#define CREOR_RUN_QUEUED          1
#define CREOR_RUN_RUNNING         2
#define CREOR_RUN_AWAITING_INPUT  3
#define CREOR_RUN_COMPLETED       4
#define CREOR_RUN_FAILED          5
#define CREOR_RUN_CANCELLED       6

#define creor_run_terminal(s)     ((s) >= CREOR_RUN_COMPLETED)

#define CREOR_AGENT_STATUS_MAX    16

#define CREOR_REAP_LEASE          5000      /* ms a worker holds a reap job */


/* "r:<org>:<run>": a run's fixed part, before its JSON document */
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


/* "a:<org>:<agent>": an agent's fixed part, before its public JSON */
typedef struct {
    char                    project[CREOR_ID_MAX];
    char                    status[CREOR_AGENT_STATUS_MAX];
    char                    run[CREOR_ID_MAX];      /* the latest run */
    char                    thread[CREOR_ID_MAX];   /* follow-ups go on */
} creor_agent_hdr_t;


/* "ad:<org>:<agent>": a deleted agent's runs to cancel, and who does */
typedef struct {
    int64_t                 pid;
    int64_t                 until_ms;   /* then another worker may */
} creor_reap_job_t;


creor_record_size(creor_run_hdr_t,
                  2 * 4 + 4 * CREOR_ID_MAX + 48 + 7 * 8 + 4 * 4);
creor_record_size(creor_agent_hdr_t,
                  3 * CREOR_ID_MAX + CREOR_AGENT_STATUS_MAX);
creor_record_size(creor_reap_job_t, 2 * 8);

/* the records creor_core.h declares for the command line's sake */
creor_record_size(creor_org_rec_t, 2 * 4 + 8 + CREOR_NAME_MAX);
creor_record_size(creor_project_rec_t, 2 * 4 + 8 + CREOR_NAME_MAX + 256);
creor_record_size(creor_key_rec_t,
                  2 * 4 + 4 * CREOR_ID_MAX + CREOR_NAME_MAX + CREOR_RATE_MAX
                  + 2 * CREOR_HASH_LEN + 4 * 8);
creor_record_size(creor_usage_rec_t, 2 * 4 + 4 * 8);


#endif /* _CREOR_RECORDS_H_INCLUDED_ */
