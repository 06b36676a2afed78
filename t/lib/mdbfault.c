
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Store fault injection for the tests: LD_PRELOAD this library into nginx
 * or build/creor and mdb_put(), mdb_del() and mdb_txn_commit() fail when
 * the control file says so.  The file is named by MDBFAULT_CTL in the
 * environment of the process that loads the library (nginx's workers do
 * not keep their environment: it is read at load time) and is read again
 * whenever it changes (write a new file and rename it over the old one).
 * One line of words, all optional:
 *
 *     mode=off|always|nth|random   default off
 *     n=N          nth: every Nth matching call of each process fails
 *     p=P          random: each matching call fails with probability P
 *     err=MAP_FULL|EIO|<number>    default MAP_FULL
 *     ops=put,del,commit           default all three
 *     prefix=S     put and del of keys starting with S only; a commit
 *                  only if its transaction wrote such a key
 *     pid=N        in that process only
 *     limit=N      at most N failures in each process
 *
 * Every failure is appended to MDBFAULT_LOG, if set: "pid op key\n".
 * A failed commit ends the transaction, as LMDB's own does.
 *
 *     cc -shared -fPIC -o mdbfault.so mdbfault.c -ldl
 */


#define _GNU_SOURCE

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "preload.h"


#define MDBFAULT_OFF      0
#define MDBFAULT_ALWAYS   1
#define MDBFAULT_NTH      2
#define MDBFAULT_RANDOM   3

#define MDBFAULT_PUT      1
#define MDBFAULT_DEL      2
#define MDBFAULT_COMMIT   4

#define MDBFAULT_TXNS     8


typedef struct {
    int           mode;
    int           err;
    int           ops;
    long          n;
    double        p;
    long          pid;
    long          limit;
    char          prefix[128];
    size_t        prefix_len;
} mdbfault_conf_t;


static int (*real_put)(MDB_txn *, MDB_dbi, MDB_val *, MDB_val *, unsigned);
static int (*real_del)(MDB_txn *, MDB_dbi, MDB_val *, MDB_val *);
static int (*real_commit)(MDB_txn *);
static void (*real_abort)(MDB_txn *);

static char             mdbfault_ctl[512];
static char             mdbfault_log[512];
static struct stat      mdbfault_st;
static mdbfault_conf_t  mdbfault_conf;
static long             mdbfault_calls;
static long             mdbfault_failed;
static pid_t            mdbfault_pid;
static unsigned         mdbfault_seed;

/* transactions that wrote a key under the prefix */
static MDB_txn         *mdbfault_txns[MDBFAULT_TXNS];


__attribute__((constructor))
static void
mdbfault_init(void)
{
    preload_env("MDBFAULT_CTL", mdbfault_ctl, sizeof(mdbfault_ctl));
    preload_env("MDBFAULT_LOG", mdbfault_log, sizeof(mdbfault_log));
}


static void
mdbfault_resolve(void)
{
    if (real_put == NULL) {
        real_put = (int (*)(MDB_txn *, MDB_dbi, MDB_val *, MDB_val *,
                            unsigned)) dlsym(RTLD_NEXT, "mdb_put");
        real_del = (int (*)(MDB_txn *, MDB_dbi, MDB_val *, MDB_val *))
                   dlsym(RTLD_NEXT, "mdb_del");
        real_commit = (int (*)(MDB_txn *)) dlsym(RTLD_NEXT,
                                                 "mdb_txn_commit");
        real_abort = (void (*)(MDB_txn *)) dlsym(RTLD_NEXT,
                                                 "mdb_txn_abort");

        if (!real_put || !real_del || !real_commit || !real_abort) {
            fprintf(stderr, "mdbfault: LMDB not found\n");
            abort();
        }
    }
}


static void
mdbfault_parse(char *line)
{
    char             *w, *v, *save;
    mdbfault_conf_t   c;

    memset(&c, 0, sizeof(c));
    c.err = MDB_MAP_FULL;
    c.ops = MDBFAULT_PUT | MDBFAULT_DEL | MDBFAULT_COMMIT;
    c.n = 1;

    for (w = strtok_r(line, " \t\r\n", &save); w;
         w = strtok_r(NULL, " \t\r\n", &save))
    {
        v = strchr(w, '=');
        if (v == NULL) {
            continue;
        }

        *v++ = '\0';

        if (strcmp(w, "mode") == 0) {
            c.mode = strcmp(v, "always") == 0 ? MDBFAULT_ALWAYS
                     : strcmp(v, "nth") == 0 ? MDBFAULT_NTH
                     : strcmp(v, "random") == 0 ? MDBFAULT_RANDOM
                     : MDBFAULT_OFF;

        } else if (strcmp(w, "err") == 0) {
            c.err = strcmp(v, "MAP_FULL") == 0 ? MDB_MAP_FULL
                    : strcmp(v, "EIO") == 0 ? EIO : atoi(v);

        } else if (strcmp(w, "ops") == 0) {
            c.ops = (strstr(v, "put") ? MDBFAULT_PUT : 0)
                    | (strstr(v, "del") ? MDBFAULT_DEL : 0)
                    | (strstr(v, "commit") ? MDBFAULT_COMMIT : 0);

        } else if (strcmp(w, "n") == 0) {
            c.n = atol(v) > 0 ? atol(v) : 1;

        } else if (strcmp(w, "p") == 0) {
            c.p = atof(v);

        } else if (strcmp(w, "pid") == 0) {
            c.pid = atol(v);

        } else if (strcmp(w, "limit") == 0) {
            c.limit = atol(v);

        } else if (strcmp(w, "prefix") == 0) {
            snprintf(c.prefix, sizeof(c.prefix), "%s", v);
            c.prefix_len = strlen(c.prefix);
        }
    }

    mdbfault_conf = c;
    mdbfault_calls = 0;
    mdbfault_failed = 0;
}


/* one stat() a call: a new file (a new inode) is read again */

static void
mdbfault_reload(void)
{
    int          fd;
    char         buf[1024];
    ssize_t      n;
    struct stat  st;

    if (getpid() != mdbfault_pid) {
        mdbfault_pid = getpid();
        mdbfault_seed = (unsigned) mdbfault_pid ^ (unsigned) time(NULL);
        memset(&mdbfault_st, 0, sizeof(mdbfault_st));
        memset(mdbfault_txns, 0, sizeof(mdbfault_txns));
    }

    if (mdbfault_ctl[0] == '\0' || stat(mdbfault_ctl, &st) != 0) {
        mdbfault_conf.mode = MDBFAULT_OFF;
        memset(&mdbfault_st, 0, sizeof(mdbfault_st));
        return;
    }

    if (st.st_ino == mdbfault_st.st_ino && st.st_size == mdbfault_st.st_size
        && st.st_mtim.tv_sec == mdbfault_st.st_mtim.tv_sec
        && st.st_mtim.tv_nsec == mdbfault_st.st_mtim.tv_nsec)
    {
        return;
    }

    mdbfault_st = st;

    fd = open(mdbfault_ctl, O_RDONLY);
    if (fd == -1) {
        mdbfault_conf.mode = MDBFAULT_OFF;
        return;
    }

    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);

    buf[n > 0 ? n : 0] = '\0';
    mdbfault_parse(buf);
}


static void
mdbfault_mark(MDB_txn *txn, int on)
{
    int  i, free_slot;

    free_slot = -1;

    for (i = 0; i < MDBFAULT_TXNS; i++) {
        if (mdbfault_txns[i] == txn) {
            if (!on) {
                mdbfault_txns[i] = NULL;
            }

            return;
        }

        if (mdbfault_txns[i] == NULL && free_slot == -1) {
            free_slot = i;
        }
    }

    if (on && free_slot != -1) {
        mdbfault_txns[free_slot] = txn;
    }
}


static int
mdbfault_marked(MDB_txn *txn)
{
    int  i;

    for (i = 0; i < MDBFAULT_TXNS; i++) {
        if (mdbfault_txns[i] == txn) {
            return 1;
        }
    }

    return 0;
}


/* whether this call fails; key is NULL for a commit */

static int
mdbfault_fail(int op, MDB_txn *txn, MDB_val *key)
{
    int               fd;
    char              line[300];
    size_t            klen;
    mdbfault_conf_t  *c;

    mdbfault_resolve();
    mdbfault_reload();

    c = &mdbfault_conf;

    if (c->mode == MDBFAULT_OFF
        || (c->pid && c->pid != (long) mdbfault_pid))
    {
        return 0;
    }

    if (c->prefix_len) {
        if (key == NULL) {
            if (!mdbfault_marked(txn)) {
                return 0;
            }

        } else if (key->mv_size < c->prefix_len
                   || memcmp(key->mv_data, c->prefix, c->prefix_len) != 0)
        {
            return 0;

        } else if (c->ops & MDBFAULT_COMMIT) {
            mdbfault_mark(txn, 1);
        }
    }

    if (!(c->ops & op)) {
        return 0;
    }

    if (c->limit && mdbfault_failed >= c->limit) {
        return 0;
    }

    switch (c->mode) {

    case MDBFAULT_NTH:
        if (++mdbfault_calls % c->n != 0) {
            return 0;
        }

        break;

    case MDBFAULT_RANDOM:
        if ((double) rand_r(&mdbfault_seed) / RAND_MAX >= c->p) {
            return 0;
        }

        break;

    default:
        break;
    }

    mdbfault_failed++;

    if (mdbfault_log[0]) {
        fd = open(mdbfault_log, O_WRONLY | O_CREAT | O_APPEND, 0666);

        if (fd != -1) {
            klen = key ? key->mv_size : 1;
            if (klen > 200) {
                klen = 200;
            }

            (void) write(fd, line,
                         snprintf(line, sizeof(line), "%ld %s %.*s\n",
                                  (long) mdbfault_pid,
                                  op == MDBFAULT_PUT ? "put"
                                  : op == MDBFAULT_DEL ? "del" : "commit",
                                  (int) klen,
                                  key ? (char *) key->mv_data : "-"));
            close(fd);
        }
    }

    return 1;
}


int
mdb_put(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data,
    unsigned int flags)
{
    if (mdbfault_fail(MDBFAULT_PUT, txn, key)) {
        return mdbfault_conf.err;
    }

    return real_put(txn, dbi, key, data, flags);
}


int
mdb_del(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data)
{
    if (mdbfault_fail(MDBFAULT_DEL, txn, key)) {
        return mdbfault_conf.err;
    }

    return real_del(txn, dbi, key, data);
}


int
mdb_txn_commit(MDB_txn *txn)
{
    int  fail;

    fail = mdbfault_fail(MDBFAULT_COMMIT, txn, NULL);
    mdbfault_mark(txn, 0);

    if (fail) {
        real_abort(txn);
        return mdbfault_conf.err;
    }

    return real_commit(txn);
}


void
mdb_txn_abort(MDB_txn *txn)
{
    mdbfault_resolve();
    mdbfault_mark(txn, 0);

    real_abort(txn);
}
