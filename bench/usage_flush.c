
/*
 * Copyright (C) ngx_creor_module authors
 *
 * What a worker's usage write costs: one transaction merging a full
 * table (256 distinct aggregates) into a store of many days of usage,
 * committed with fsync (sync=on) and without; and, for comparison, one
 * synced commit per completion, which is what metering avoids.
 *
 *   cc -O2 -Isrc/store -Isrc/lib -o build/usage_flush bench/usage_flush.c \
 *       src/store/creor_store.c src/lib/creor_core.c -llmdb -lcrypto
 *   build/usage_flush [dir]
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "creor_store.h"


#define TABLE    256
#define ROUNDS   50


static double
now_s(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static int
flush(creor_store_t *s, int round, int n, int sync)
{
    int                 i;
    char                key[CREOR_USAGE_KEY_MAX], model[32], agent[64];
    size_t              len;
    MDB_txn            *txn;
    creor_usage_rec_t   add;
    creor_usage_dims_t  d;

    memset(&add, 0, sizeof(add));
    add.requests = 1;
    add.input_tokens = 100;
    add.output_tokens = 20;

    if (creor_store_write(s, &txn) != CREOR_STORE_OK) {
        return -1;
    }

    for (i = 0; i < n; i++) {
        memset(&d, 0, sizeof(d));
        snprintf(model, sizeof(model), "openai/model-%d", i % 16);
        snprintf(agent, sizeof(agent), "agent_01m8s47rsrf82824sxvk7%04d",
                 i / 16);

        d.data[CREOR_USAGE_ORG] = "org_01m8s47rqy7tzn8x0j92pr0rc0";
        d.data[CREOR_USAGE_PROJECT] = "";
        d.data[CREOR_USAGE_KEY] = "key_01m8s47rrvf3bk8kpmzxf2j5pq";
        d.data[CREOR_USAGE_AGENT] = agent;
        d.data[CREOR_USAGE_MODEL] = model;

        for (int k = 0; k < CREOR_USAGE_DIMS; k++) {
            d.len[k] = strlen(d.data[k]);
        }

        creor_usage_day(d.day, (int64_t) (1767225600 + round * 86400)
                               * 1000);

        if (creor_usage_key(key, &len, &d) != CREOR_STORE_OK
            || creor_usage_merge(s, txn, key, len, &add) != CREOR_STORE_OK)
        {
            mdb_txn_abort(txn);
            return -1;
        }
    }

    return sync ? creor_store_commit(txn) : creor_store_commit_nosync(s, txn);
}


int
main(int argc, char **argv)
{
    int            r, sync;
    char           err[256], dir[] = "/tmp/creor-usage-XXXXXX";
    double         t0, t;
    creor_store_t  s;

    if (argc < 2 && mkdtemp(dir) == NULL) {
        return 1;
    }

    if (creor_store_open(&s, argc > 1 ? argv[1] : dir, 1UL << 30,
                         CREOR_STORE_SYNC, err, sizeof(err))
        != CREOR_STORE_OK)
    {
        fprintf(stderr, "%s\n", err);
        return 1;
    }

    for (sync = 1; sync >= 0; sync--) {
        t0 = now_s();

        for (r = 0; r < ROUNDS; r++) {
            if (flush(&s, r, TABLE, sync) != CREOR_STORE_OK) {
                fprintf(stderr, "flush failed\n");
                return 1;
            }
        }

        t = (now_s() - t0) / ROUNDS;
        printf("table of %d aggregates, %s: %.3f ms a write "
               "(%.0f aggregates/s if every completion were new)\n",
               TABLE, sync ? "fsync" : "no fsync", t * 1e3, TABLE / t);
    }

    t0 = now_s();

    for (r = 0; r < ROUNDS * 4; r++) {
        if (flush(&s, 0, 1, 1) != CREOR_STORE_OK) {
            return 1;
        }
    }

    t = (now_s() - t0) / (ROUNDS * 4);
    printf("one synced commit per completion: %.3f ms (%.0f/s at most)\n",
           t * 1e3, 1 / t);

    creor_store_close(&s);

    return 0;
}
