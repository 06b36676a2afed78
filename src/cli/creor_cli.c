
/*
 * Copyright (C) ngx_creor_module authors
 *
 * build/creor: administers the store, also while nginx runs on it.
 * Prints the new id or token alone on stdout; messages go to stderr.
 */


#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "creor_store.h"
#include "creor_index.h"


typedef struct {
    const char  *store;
    const char  *secret_file;
    int          argc;
    char       **argv;
} creor_cli_t;


typedef struct {
    const char  *name;
    int        (*run)(creor_cli_t *cli);
} creor_cli_command_t;


/* what a command writes: a project or a usage aggregate */
typedef struct {
    const char            *org;
    creor_project_rec_t    project;
    char                   id[CREOR_ID_MAX];
    char                   org_key[CREOR_STORE_KEY_MAX];
    char                   key[CREOR_USAGE_KEY_MAX];
    size_t                 len;
    creor_usage_rec_t      usage;
} creor_cli_write_t;

typedef int (*creor_cli_write_pt)(creor_store_t *s, MDB_txn *txn,
    creor_cli_write_t *w);


static int creor_cli_open(creor_cli_t *cli, creor_store_t *s);
static const char *creor_cli_opt(creor_cli_t *cli, const char *name);
static int creor_cli_org(creor_cli_t *cli);
static int creor_cli_project(creor_cli_t *cli);
static int creor_cli_key(creor_cli_t *cli);
static int creor_cli_stats(creor_cli_t *cli);
static int creor_cli_usage_add(creor_cli_t *cli);
static int creor_cli_project_put(creor_store_t *s, MDB_txn *txn,
    creor_cli_write_t *w);
static int creor_cli_usage_put(creor_store_t *s, MDB_txn *txn,
    creor_cli_write_t *w);
static int creor_cli_write(creor_cli_t *cli, creor_cli_write_pt put,
    creor_cli_write_t *w, const char *what);
static int creor_cli_index(creor_cli_t *cli);
static int creor_cli_bench_load(creor_cli_t *cli);
static int creor_cli_load_txn(creor_store_t *s, MDB_txn **txn, int64_t n);
static size_t creor_cli_record(char *buf, size_t size, const void *hdr,
    size_t hlen, const char *fmt, ...);
static int creor_cli_count(const char *s, int64_t *out);
static int creor_cli_usage(void);


static creor_cli_command_t  creor_cli_commands[] = {
    { "org", creor_cli_org },
    { "project", creor_cli_project },
    { "key", creor_cli_key },
    { "stats", creor_cli_stats },
    { "usage", creor_cli_usage_add },
    { "index", creor_cli_index },
    { "bench-load", creor_cli_bench_load },
    { NULL, NULL }
};


int
main(int argc, char **argv)
{
    int                  i;
    creor_cli_t          cli;
    creor_cli_command_t *c;

    memset(&cli, 0, sizeof(cli));

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--store") == 0 && i + 1 < argc) {
            cli.store = argv[++i];

        } else if (strcmp(argv[i], "--secret-file") == 0 && i + 1 < argc) {
            cli.secret_file = argv[++i];

        } else {
            break;
        }
    }

    if (cli.store == NULL) {
        cli.store = getenv("CREOR_STORE");
    }

    if (cli.store == NULL || i >= argc) {
        return creor_cli_usage();
    }

    cli.argc = argc - i;
    cli.argv = argv + i;

    for (c = creor_cli_commands; c->name; c++) {
        if (strcmp(cli.argv[0], c->name) == 0) {
            return c->run(&cli);
        }
    }

    return creor_cli_usage();
}


static int
creor_cli_usage(void)
{
    fprintf(stderr,
        "usage: creor --store DIR [--secret-file FILE] COMMAND\n"
        "  org create NAME\n"
        "  project create --org ORG NAME\n"
        "  key create --org ORG [--project P] [--role admin|user|read_only]"
        " [--app AGENT] [--name N]\n"
        "  key list --org ORG\n"
        "  key revoke KEY_ID\n"
        "  stats\n"
        "  usage add --org ORG [--date YYYY-MM-DD] [--project P]"
        " [--key KEY_ID] [--agent AGENT] [--model M] [--requests N]"
        " [--runs N] [--input N] [--output N]\n"
        "  index rebuild|drop|check\n"
        "  bench-load --org ORG --project P --agents N --runs N"
        " [--waiting N]\n");

    return 2;
}


static int
creor_cli_open(creor_cli_t *cli, creor_store_t *s)
{
    int      fd;
    char     err[512];
    ssize_t  n;
    uint8_t  buf[CREOR_SERVER_SECRET_MAX + 1];

    if (creor_store_open(s, cli->store, 0, CREOR_STORE_SYNC, err,
                         sizeof(err))
        != CREOR_STORE_OK)
    {
        fprintf(stderr, "creor: %s\n", err);
        return -1;
    }

    n = 0;

    if (cli->secret_file) {
        fd = open(cli->secret_file, O_RDONLY);
        if (fd == -1) {
            fprintf(stderr, "creor: open(\"%s\") failed: %s\n",
                    cli->secret_file, strerror(errno));
            goto failed;
        }

        n = read(fd, buf, sizeof(buf));
        close(fd);

        if (n < 32 || n > CREOR_SERVER_SECRET_MAX) {
            fprintf(stderr, "creor: \"%s\" must hold 32 to %d bytes\n",
                    cli->secret_file, CREOR_SERVER_SECRET_MAX);
            goto failed;
        }
    }

    if (creor_store_init_secret(s, n ? buf : NULL, (size_t) n, err,
                                sizeof(err))
        != CREOR_STORE_OK)
    {
        fprintf(stderr, "creor: %s\n", err);
        goto failed;
    }

    return 0;

failed:

    creor_store_close(s);
    return -1;
}


static const char *
creor_cli_opt(creor_cli_t *cli, const char *name)
{
    int  i;

    for (i = 0; i + 1 < cli->argc; i++) {
        if (strcmp(cli->argv[i], name) == 0) {
            return cli->argv[i + 1];
        }
    }

    return NULL;
}


/* the last argument that is neither an option nor an option's value */

static const char *
creor_cli_arg(creor_cli_t *cli, int from)
{
    int          i;
    const char  *arg;

    arg = NULL;

    for (i = from; i < cli->argc; i++) {
        if (strncmp(cli->argv[i], "--", 2) == 0) {
            i++;
            continue;
        }

        arg = cli->argv[i];
    }

    return arg;
}


static int
creor_cli_org(creor_cli_t *cli)
{
    char           id[CREOR_ID_MAX];
    const char    *name;
    creor_store_t  s;

    name = creor_cli_arg(cli, 2);

    if (cli->argc < 3 || strcmp(cli->argv[1], "create") != 0 || !name) {
        return creor_cli_usage();
    }

    if (creor_cli_open(cli, &s) != 0) {
        return 1;
    }

    if (creor_org_create(&s, name, id) != CREOR_STORE_OK) {
        fprintf(stderr, "creor: cannot create the organization\n");
        creor_store_close(&s);
        return 1;
    }

    creor_store_close(&s);
    printf("%s\n", id);

    return 0;
}


static int
creor_cli_project(creor_cli_t *cli)
{
    const char         *org, *name;
    creor_cli_write_t   w;

    org = creor_cli_opt(cli, "--org");
    name = creor_cli_arg(cli, 2);

    if (cli->argc < 3 || strcmp(cli->argv[1], "create") != 0
        || org == NULL || name == NULL)
    {
        return creor_cli_usage();
    }

    memset(&w, 0, sizeof(w));
    snprintf(w.project.name, sizeof(w.project.name), "%s", name);
    w.org = org;

    if (creor_cli_write(cli, creor_cli_project_put, &w, "create the project")
        != 0)
    {
        return 1;
    }

    printf("%s\n", w.id);

    return 0;
}


static int
creor_cli_project_put(creor_store_t *s, MDB_txn *txn, creor_cli_write_t *w)
{
    return creor_project_create(s, txn, w->org, &w->project, w->id);
}


static int
creor_cli_key_create(creor_cli_t *cli, creor_store_t *s)
{
    int              rc, role;
    char             key[CREOR_STORE_KEY_MAX];
    char             token[CREOR_ID_MAX + CREOR_SECRET_B62_LEN + 8];
    MDB_val          val;
    MDB_txn         *txn;
    const char      *org, *project, *app, *name, *r;
    creor_key_rec_t  rec;

    org = creor_cli_opt(cli, "--org");
    project = creor_cli_opt(cli, "--project");
    app = creor_cli_opt(cli, "--app");
    name = creor_cli_opt(cli, "--name");
    r = creor_cli_opt(cli, "--role");

    if (org == NULL) {
        return creor_cli_usage();
    }

    role = r ? creor_role_parse(r, strlen(r)) : CREOR_ROLE_ADMIN;
    if (role < 0) {
        fprintf(stderr, "creor: role must be admin, user or read_only\n");
        return 2;
    }

    memset(&rec, 0, sizeof(rec));
    rec.role = (uint32_t) role;
    snprintf(rec.org, sizeof(rec.org), "%s", org);
    snprintf(rec.project, sizeof(rec.project), "%s", project ? project : "");
    snprintf(rec.app, sizeof(rec.app), "%s", app ? app : "");
    snprintf(rec.name, sizeof(rec.name), "%s", name ? name : "");

    rc = creor_store_write(s, &txn);
    if (rc != CREOR_STORE_OK) {
        fprintf(stderr, "creor: cannot write to the store\n");
        return 1;
    }

    snprintf(key, sizeof(key), "o:%s", org);

    if (creor_store_get(s, txn, key, &val) != CREOR_STORE_OK) {
        creor_store_abort(txn);
        fprintf(stderr, "creor: no such organization: %s\n", org);
        return 1;
    }

    if (project) {
        snprintf(key, sizeof(key), "p:%s:%s", org, project);

        if (creor_store_get(s, txn, key, &val) != CREOR_STORE_OK) {
            creor_store_abort(txn);
            fprintf(stderr, "creor: no such project: %s\n", project);
            return 1;
        }
    }

    rc = creor_key_issue(s, txn, &rec, token);

    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        fprintf(stderr, "creor: cannot create the key\n");
        return 1;
    }

    if (creor_store_commit(txn) != CREOR_STORE_OK) {
        fprintf(stderr, "creor: cannot commit the key\n");
        return 1;
    }

    printf("%s\n", token);

    return 0;
}


static int
creor_cli_key_list(creor_cli_t *cli, creor_store_t *s)
{
    char             prefix[CREOR_STORE_KEY_MAX], created[CREOR_TIME_LEN];
    char             id[CREOR_ID_MAX];
    size_t           plen;
    MDB_txn         *txn;
    const char      *org;
    creor_scan_t     sc;
    creor_key_rec_t  rec;

    org = creor_cli_opt(cli, "--org");
    if (org == NULL) {
        return creor_cli_usage();
    }

    plen = (size_t) snprintf(prefix, sizeof(prefix), "ko:%s:", org);

    txn = creor_store_read(s);
    if (txn == NULL
        || creor_scan_open(s, txn, &sc, prefix, plen, NULL, 0)
           != CREOR_STORE_OK)
    {
        fprintf(stderr, "creor: cannot read the store\n");
        return 1;
    }

    while (creor_scan_next(&sc) == 1) {
        snprintf(id, sizeof(id), "%.*s", (int) sc.rest_len, sc.rest);

        if (creor_key_get(s, txn, id, &rec) != CREOR_STORE_OK) {
            continue;
        }

        creor_time_rfc3339(created, rec.created_ms);

        printf("%s\t%s\t%s\t%s\t%s\t%s\n", rec.id,
               creor_role_name(rec.role),
               rec.project[0] ? rec.project : "-",
               rec.revoked_ms ? "revoked" : "active", created,
               rec.name);
    }

    creor_scan_close(&sc);
    creor_store_read_done(s);

    return 0;
}


static int
creor_cli_key_revoke(creor_cli_t *cli, creor_store_t *s)
{
    int              rc;
    MDB_txn         *txn;
    creor_key_rec_t  rec;

    if (cli->argc < 3) {
        return creor_cli_usage();
    }

    rc = creor_store_write(s, &txn);
    if (rc != CREOR_STORE_OK) {
        fprintf(stderr, "creor: cannot write to the store\n");
        return 1;
    }

    rc = creor_key_get(s, txn, cli->argv[2], &rec);
    if (rc != CREOR_STORE_OK) {
        creor_store_abort(txn);
        fprintf(stderr, "creor: no such key: %s\n", cli->argv[2]);
        return 1;
    }

    if (rec.revoked_ms == 0) {
        rec.revoked_ms = creor_now_ms();

        rc = creor_key_put(s, txn, &rec);

        if (rc != CREOR_STORE_OK) {
            creor_store_abort(txn);

        } else {
            rc = creor_store_commit(txn);
        }

        if (rc != CREOR_STORE_OK) {
            fprintf(stderr, "creor: cannot revoke the key\n");
            return 1;
        }

    } else {
        creor_store_abort(txn);
    }

    printf("%s\n", rec.id);

    return 0;
}


static int
creor_cli_key(creor_cli_t *cli)
{
    int            rc;
    creor_store_t  s;

    if (cli->argc < 2) {
        return creor_cli_usage();
    }

    if (strcmp(cli->argv[1], "create") != 0
        && strcmp(cli->argv[1], "list") != 0
        && strcmp(cli->argv[1], "revoke") != 0)
    {
        return creor_cli_usage();
    }

    if (creor_cli_open(cli, &s) != 0) {
        return 1;
    }

    if (strcmp(cli->argv[1], "create") == 0) {
        rc = creor_cli_key_create(cli, &s);

    } else if (strcmp(cli->argv[1], "list") == 0) {
        rc = creor_cli_key_list(cli, &s);

    } else {
        rc = creor_cli_key_revoke(cli, &s);
    }

    creor_store_close(&s);

    return rc;
}


static int
creor_cli_stats(creor_cli_t *cli)
{
    size_t         used, map_size, entries;
    creor_store_t  s;

    if (creor_cli_open(cli, &s) != 0) {
        return 1;
    }

    if (creor_store_stats(&s, &used, &map_size, &entries) != CREOR_STORE_OK) {
        creor_store_close(&s);
        fprintf(stderr, "creor: cannot read the store\n");
        return 1;
    }

    creor_store_close(&s);

    printf("store\t%s\nused_bytes\t%zu\nmap_size\t%zu\nentries\t%zu\n",
           cli->store, used, map_size, entries);

    return 0;
}


/*
 * Adds to the usage aggregates of one day: imports from another meter,
 * corrections, and the tests' records of other days.
 */

static int
creor_cli_usage_add(creor_cli_t *cli)
{
    int                  i;
    char                 day[CREOR_USAGE_DAY_LEN + 1];
    struct tm            tm;
    const char          *date, *v;
    creor_cli_write_t    w;
    creor_usage_dims_t   d;

    static const char   *dims[] = {
        "--org", "--project", "--key", "--agent", "--model"
    };
    static const char   *prefixes[] = { "org_", "proj_", "key_", "agent_" };

    if (cli->argc < 2 || strcmp(cli->argv[1], "add") != 0) {
        return creor_cli_usage();
    }

    memset(&d, 0, sizeof(d));

    for (i = 0; i < CREOR_USAGE_DIMS; i++) {
        v = creor_cli_opt(cli, dims[i]);

        if (v == NULL) {
            if (i == CREOR_USAGE_ORG) {
                return creor_cli_usage();
            }

            d.data[i] = "";
            continue;
        }

        if (i != CREOR_USAGE_MODEL && !creor_is_id(v, strlen(v), prefixes[i]))
        {
            fprintf(stderr, "creor: %s must be an id %s<ulid>\n", dims[i],
                    prefixes[i]);
            return 2;
        }

        d.data[i] = v;
        d.len[i] = strlen(v);
    }

    memset(&w, 0, sizeof(w));

    if (creor_cli_count(creor_cli_opt(cli, "--requests"), &w.usage.requests)
        || creor_cli_count(creor_cli_opt(cli, "--runs"), &w.usage.runs)
        || creor_cli_count(creor_cli_opt(cli, "--input"),
                           &w.usage.input_tokens)
        || creor_cli_count(creor_cli_opt(cli, "--output"),
                           &w.usage.output_tokens))
    {
        fprintf(stderr, "creor: counts are integers from 0 to 10^15\n");
        return 2;
    }

    date = creor_cli_opt(cli, "--date");

    if (date == NULL) {
        creor_usage_day(d.day, creor_now_ms());

    } else {
        memset(&tm, 0, sizeof(tm));

        /* the day must exist: it is the same once normalized */

        for (i = 0; i < 10; i++) {
            if ((i == 4 || i == 7) ? date[i] != '-'
                                   : (date[i] < '0' || date[i] > '9'))
            {
                break;
            }
        }

        if (i != 10 || date[10] != '\0') {
            fprintf(stderr, "creor: --date must be YYYY-MM-DD\n");
            return 2;
        }

        tm.tm_year = atoi(date) - 1900;
        tm.tm_mon = atoi(date + 5) - 1;
        tm.tm_mday = atoi(date + 8);

        creor_usage_day(d.day, (int64_t) timegm(&tm) * 1000);
        snprintf(day, sizeof(day), "%.4s%.2s%.2s", date, date + 5, date + 8);

        if (strcmp(day, d.day) != 0) {
            fprintf(stderr, "creor: no such date: %s\n", date);
            return 2;
        }
    }

    if (creor_usage_key(w.key, &w.len, &d) != CREOR_STORE_OK) {
        fprintf(stderr, "creor: bad dimensions\n");
        return 2;
    }

    snprintf(w.org_key, sizeof(w.org_key), "o:%s", d.data[CREOR_USAGE_ORG]);

    if (creor_cli_write(cli, creor_cli_usage_put, &w, "add the usage") != 0) {
        return 1;
    }

    printf("%.*s\n", (int) w.len, w.key);

    return 0;
}


static int
creor_cli_usage_put(creor_store_t *s, MDB_txn *txn, creor_cli_write_t *w)
{
    int      rc;
    MDB_val  val;

    rc = creor_store_get(s, txn, w->org_key, &val);

    if (rc == CREOR_STORE_OK) {
        rc = creor_usage_merge(s, txn, w->key, w->len, &w->usage);
    }

    return rc;
}


/*
 * A change in a write transaction of its own, committed: 0, or 1 and a
 * message saying what could not be done.
 */

static int
creor_cli_write(creor_cli_t *cli, creor_cli_write_pt put,
    creor_cli_write_t *w, const char *what)
{
    int             rc;
    MDB_txn        *txn;
    creor_store_t   s;

    if (creor_cli_open(cli, &s) != 0) {
        return 1;
    }

    rc = creor_store_write(&s, &txn);

    if (rc == CREOR_STORE_OK) {
        rc = put(&s, txn, w);

        if (rc == CREOR_STORE_OK) {
            rc = creor_store_commit(txn);

        } else {
            creor_store_abort(txn);
        }
    }

    creor_store_close(&s);

    if (rc != CREOR_STORE_OK) {
        fprintf(stderr, "creor: cannot %s%s\n", what,
                rc == CREOR_STORE_NOTFOUND ? ": no such organization" : "");
        return 1;
    }

    return 0;
}


/*
 * index rebuild: indexes the store anew, in the steps a worker takes on
 * a store of a version without indexes; index drop: makes such a store;
 * index check: counters and chunks against the indexes (prints their
 * number, or the errors and exits 1).
 */

static int
creor_cli_index(creor_cli_t *cli)
{
    int            rc, rebuild;
    size_t         n, errors;
    creor_store_t  s;

    if (cli->argc != 2
        || (strcmp(cli->argv[1], "rebuild") != 0
            && strcmp(cli->argv[1], "drop") != 0
            && strcmp(cli->argv[1], "check") != 0))
    {
        return creor_cli_usage();
    }

    if (creor_cli_open(cli, &s) != 0) {
        return 1;
    }

    n = 0;

    if (strcmp(cli->argv[1], "check") == 0) {
        rc = creor_index_check(&s, &n, &errors);
        creor_store_close(&s);

        if (rc != CREOR_STORE_OK || errors) {
            fprintf(stderr, "creor: %zu indexes, %zu errors\n", n, errors);
            return 1;
        }

        printf("%zu\n", n);

        return 0;
    }

    if (strcmp(cli->argv[1], "drop") == 0) {
        rc = creor_index_drop(&s);

    } else {
        rebuild = 1;

        do {
            rc = creor_index_upgrade(&s, rebuild, &n);
            rebuild = 0;
        } while (rc == CREOR_STORE_EXISTS);
    }

    creor_store_close(&s);

    if (rc != CREOR_STORE_OK) {
        fprintf(stderr, "creor: cannot %s the indexes\n", cli->argv[1]);
        return 1;
    }

    printf("%zu\n", n);

    return 0;
}


/*
 * bench-load: agents and runs written as the server writes them, with
 * their indexes, many to a transaction and without fsync, for bench/.
 * Runs go round the agents with the statuses of a working organization
 * (mostly terminal); the last --waiting runs all belong to the first
 * agent and wait for input, so deleting it cancels that many.  Prints
 * the first agent's id.  Runs have no events or usage records.
 */

#define CREOR_LOAD_BATCH  10000

static const char  *creor_load_agent_status[] = {
    "", "queued", "running", "running", "completed", "failed", "idle"
};

static const uint32_t  creor_load_run_status[] = {
    CREOR_RUN_COMPLETED, CREOR_RUN_COMPLETED, CREOR_RUN_COMPLETED,
    CREOR_RUN_FAILED, CREOR_RUN_COMPLETED, CREOR_RUN_CANCELLED,
    CREOR_RUN_COMPLETED, CREOR_RUN_AWAITING_INPUT
};


static int
creor_cli_bench_load(creor_cli_t *cli)
{
    int                 rc;
    char                key[CREOR_STORE_KEY_MAX], first[CREOR_ID_MAX],
                        now[32], buf[2048], *ids;
    size_t              len;
    int64_t             nagents, nruns, waiting, i, a, ms;
    uint32_t            st;
    MDB_txn            *txn;
    const char         *org, *project, *status;
    creor_store_t       s;
    creor_run_hdr_t     rh;
    creor_agent_hdr_t   ah;

    org = creor_cli_opt(cli, "--org");
    project = creor_cli_opt(cli, "--project");
    nagents = 0;
    nruns = 0;
    waiting = 0;

    if (org == NULL || project == NULL
        || creor_cli_count(creor_cli_opt(cli, "--agents"), &nagents) != 0
        || creor_cli_count(creor_cli_opt(cli, "--runs"), &nruns) != 0
        || creor_cli_count(creor_cli_opt(cli, "--waiting"), &waiting) != 0
        || nagents < 1 || waiting > nruns || strlen(org) >= CREOR_ID_MAX
        || strlen(project) >= CREOR_ID_MAX)
    {
        return creor_cli_usage();
    }

    ids = malloc((size_t) nagents * CREOR_ID_MAX);
    if (ids == NULL) {
        return 1;
    }

    if (creor_cli_open(cli, &s) != 0) {
        free(ids);
        return 1;
    }

    mdb_env_set_flags(s.env, MDB_NOSYNC, 1);

    /* a store not yet indexed is first, or a start would index it anew */

    do {
        rc = creor_index_upgrade(&s, 0, NULL);
    } while (rc == CREOR_STORE_EXISTS);

    ms = creor_now_ms();
    creor_time_rfc3339(now, ms);
    txn = NULL;

    /* an agent's status is its last run's (creor_agent_track()) */

    for (a = 0; a < nagents && rc == CREOR_STORE_OK; a++) {
        rc = creor_cli_load_txn(&s, &txn, a);
        if (rc != CREOR_STORE_OK) {
            break;
        }

        i = (a == 0 && waiting) ? nruns - 1
                                : nruns - waiting - 1
                                  - (nruns - waiting - 1 - a) % nagents;

        if (i < 0 || (i >= nruns - waiting && !(a == 0 && waiting))) {
            status = "idle";

        } else {
            st = (i >= nruns - waiting) ? CREOR_RUN_AWAITING_INPUT
                                        : creor_load_run_status[i % 8];
            status = creor_load_agent_status[st];
        }

        rc = creor_store_make_id(&s, txn, ids + a * CREOR_ID_MAX,
                                 CREOR_ID_MAX, "agent_");
        if (rc != CREOR_STORE_OK) {
            break;
        }

        memset(&ah, 0, sizeof(ah));
        snprintf(ah.project, sizeof(ah.project), "%s", project);
        snprintf(ah.status, sizeof(ah.status), "%s", status);

        len = creor_cli_record(buf, sizeof(buf), &ah, sizeof(ah),
                 "{\"id\":\"%s\",\"object\":\"agent\",\"name\":\"bench %lld\","
                 "\"description\":null,\"model\":\"openai/gpt-4o\","
                 "\"systemPrompt\":null,\"settings\":{\"contextWindowSize\""
                 ":20},\"repository\":null,\"status\":\"%s\",\"runId\":null,"
                 "\"organizationId\":\"%s\",\"projectId\":\"%s\","
                 "\"createdAt\":\"%s\",\"updatedAt\":\"%s\"}",
                 ids + a * CREOR_ID_MAX, (long long) a, status, org, project,
                 now, now);

        snprintf(key, sizeof(key), "a:%s:%s", org, ids + a * CREOR_ID_MAX);

        rc = creor_store_put(&s, txn, key, buf, len, 0);

        if (rc == CREOR_STORE_OK) {
            rc = creor_index_agent(&s, txn, org, project,
                                   ids + a * CREOR_ID_MAX, NULL, status);
        }
    }

    for (i = 0; i < nruns && rc == CREOR_STORE_OK; i++) {
        rc = creor_cli_load_txn(&s, &txn, i);
        if (rc != CREOR_STORE_OK) {
            break;
        }

        a = (i >= nruns - waiting) ? 0 : i % nagents;
        st = (i >= nruns - waiting) ? CREOR_RUN_AWAITING_INPUT
                                    : creor_load_run_status[i % 8];

        memset(&rh, 0, sizeof(rh));
        rh.version = 1;
        rh.status = st;
        snprintf(rh.org, sizeof(rh.org), "%s", org);
        snprintf(rh.project, sizeof(rh.project), "%s", project);
        snprintf(rh.agent, sizeof(rh.agent), "%s", ids + a * CREOR_ID_MAX);
        rh.created_ms = ms;
        rh.started_ms = ms;
        rh.completed_ms = creor_run_terminal(st) ? ms : 0;

        rc = creor_store_make_id(&s, txn, first, sizeof(first), "run_");
        if (rc != CREOR_STORE_OK) {
            break;
        }

        snprintf(rh.thread, sizeof(rh.thread), "%s", first);

        len = creor_cli_record(buf, sizeof(buf), &rh, sizeof(rh),
                 "{\"inputs\":{\"prompt\":\"bench run %lld\"},"
                 "\"appName\":\"bench %lld\",\"agentModel\":\"openai/gpt-4o\","
                 "\"keyId\":\"\"}", (long long) i, (long long) a);

        snprintf(key, sizeof(key), "r:%s:%s", org, first);
        rc = creor_store_put(&s, txn, key, buf, len, 0);

        if (rc == CREOR_STORE_OK) {
            snprintf(key, sizeof(key), "ri:%s", first);
            rc = creor_store_put(&s, txn, key, org, strlen(org), 0);
        }

        if (rc == CREOR_STORE_OK) {
            snprintf(key, sizeof(key), "t:%s:%s:%s", org, first, first);
            rc = creor_store_put(&s, txn, key, "", 0, 0);
        }

        if (rc == CREOR_STORE_OK) {
            rc = creor_index_run(&s, txn, &rh, first, 0);
        }
    }

    if (rc == CREOR_STORE_OK && txn) {
        rc = creor_store_commit(txn);
        txn = NULL;

    } else if (txn) {
        creor_store_abort(txn);
    }

    if (rc == CREOR_STORE_OK) {
        mdb_env_sync(s.env, 1);
    }

    creor_store_close(&s);

    if (rc != CREOR_STORE_OK) {
        fprintf(stderr, "creor: cannot load%s\n",
                rc == CREOR_STORE_FULL ? ": the store is full" : "");
        free(ids);
        return 1;
    }

    printf("%s\n", ids);
    free(ids);

    return 0;
}


/*
 * Before the n-th entry of a loop: entries go in transactions of
 * CREOR_LOAD_BATCH, the one before committed when the next begins.
 */

static int
creor_cli_load_txn(creor_store_t *s, MDB_txn **txn, int64_t n)
{
    int  rc;

    if (*txn && n % CREOR_LOAD_BATCH == 0) {
        rc = creor_store_commit(*txn);
        *txn = NULL;

        if (rc != CREOR_STORE_OK) {
            return rc;
        }
    }

    return (*txn == NULL) ? creor_store_write(s, txn) : CREOR_STORE_OK;
}


/* a record: its fixed header, then its JSON; returns the length */

static size_t
creor_cli_record(char *buf, size_t size, const void *hdr, size_t hlen,
    const char *fmt, ...)
{
    int      n;
    va_list  args;

    memcpy(buf, hdr, hlen);

    va_start(args, fmt);
    n = vsnprintf(buf + hlen, size - hlen, fmt, args);
    va_end(args);

    return hlen + n;
}


/* absent is 0 */

static int
creor_cli_count(const char *s, int64_t *out)
{
    char       *end;
    long long   n;

    if (s == NULL) {
        return 0;
    }

    errno = 0;
    n = strtoll(s, &end, 10);

    if (errno || end == s || *end || n < 0 || n > 1000000000000000LL
        || s[0] == '-' || s[0] == '+' || s[0] == ' ')
    {
        return -1;
    }

    *out = n;

    return 0;
}
