
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The executor contract (SPEC 8.5), both ways, in one place:
 *
 *   sends     creor_run_leg_body(): the run, its agent, the thread's last
 *             contextWindowSize runs, the files with signed URLs and the
 *             signal that resumes it, POSTed to creor_executor
 *   receives  NDJSON, a line an event: creor_leg_feed() cuts the reply
 *             into lines as it streams, creor_leg_line() checks a line
 *             against the contract's event types, creor_leg_events()
 *             stores the lines of one read in one transaction
 *
 * The leg around it (claim, lease, retries) is creor_legs.c's; the
 * built-in executor (creor_builtin.c) sends and reads a chat completion
 * instead, made from the same request body.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"
#include "creor_executor.h"


#define CREOR_URL_TTL         3600          /* s a file URL stays valid */
#define CREOR_THREAD_MAX      1000          /* runs a leg's thread shows */


/*
 * The executor's request: the run, its agent, the thread's last
 * contextWindowSize runs, the files with signed URLs, and the signal that
 * resumes it, if any.  A read transaction is enough.
 */

ngx_int_t
creor_run_leg_body(creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool,
    creor_run_t *run, ngx_str_t *out)
{
    char                    key[CREOR_STORE_KEY_MAX];
    u_char                  err[128], hex[2 * CREOR_HASH_LEN], url[512];
    time_t                  expires;
    size_t                  plen, klen;
    MDB_val                 v;
    yajl_gen                g;
    ngx_str_t               org, fid, id, *p;
    ngx_uint_t              i, window;
    ngx_array_t             ids;
    creor_scan_t            sc;
    creor_run_t             prior;
    creor_json_t           *agent, *files, *f, *x;
    ngx_creor_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_creor_module);

    g = creor_gen_pool(pool);
    if (g == NULL) {
        return NGX_ERROR;
    }

    org.data = (u_char *) run->hdr.org;
    org.len = ngx_strlen(run->hdr.org);

    yajl_gen_map_open(g);
    creor_gen_str(g, "run");
    creor_run_json(g, run);

    creor_gen_str(g, "agent");
    ngx_snprintf((u_char *) key, sizeof(key), "a:%V:%s%Z", &org,
                 run->hdr.agent);

    agent = NULL;

    if (creor_store_get(st, txn, key, &v) == CREOR_STORE_OK
        && v.mv_size > sizeof(creor_agent_hdr_t))
    {
        agent = creor_json_parse(pool,
                                 (u_char *) v.mv_data
                                 + sizeof(creor_agent_hdr_t),
                                 v.mv_size - sizeof(creor_agent_hdr_t),
                                 err, sizeof(err));
    }

    if (agent) {
        creor_gen_value(g, agent);

    } else {
        yajl_gen_null(g);
    }

    /* earlier runs of the thread, oldest first */

    creor_gen_str(g, "thread");
    yajl_gen_map_open(g);
    creor_gen_kv(g, "id", run->hdr.thread);
    creor_gen_str(g, "messages");
    yajl_gen_array_open(g);

    /*
     * "t:<org>:<thread>:<run>": the thread's runs in creation order.  The
     * last contextWindowSize of them before this run are taken, walking
     * back from it, so a leg costs its window, not the thread's length.
     */

    window = 20;
    x = creor_json_get(creor_json_get(agent, "settings"),
                       "contextWindowSize");

    if (creor_json_is_int(x) && x->num >= 0) {
        window = (ngx_uint_t) ngx_min(x->num, CREOR_THREAD_MAX);
    }

    plen = ngx_snprintf((u_char *) key, sizeof(key), "t:%V:%s:", &org,
                        run->hdr.thread)
           - (u_char *) key;

    klen = ngx_snprintf((u_char *) key + plen, sizeof(key) - plen, "%V",
                        &run->id)
           - (u_char *) key;

    if (ngx_array_init(&ids, pool, ngx_max(window, 1), sizeof(ngx_str_t))
        != NGX_OK
        || creor_scan_open(st, txn, &sc, key, plen, key, klen)
           != CREOR_STORE_OK)
    {
        return NGX_ERROR;
    }

    while (ids.nelts < window && creor_scan_prev(&sc) == 1) {
        p = ngx_array_push(&ids);
        if (p == NULL) {
            creor_scan_close(&sc);
            return NGX_ERROR;
        }

        p->data = (u_char *) sc.rest;
        p->len = sc.rest_len;
    }

    creor_scan_close(&sc);

    for (i = ids.nelts; i > 0; i--) {
        id = ((ngx_str_t *) ids.elts)[i - 1];

        if (creor_run_load(st, txn, pool, &org, &id, &prior)
            != CREOR_STORE_OK)
        {
            continue;
        }

        x = creor_json_get(creor_json_get(prior.doc, "inputs"), "prompt");

        yajl_gen_map_open(g);
        creor_gen_kv(g, "role", "user");
        creor_gen_str(g, "content");

        if (x && x->type == CREOR_JSON_STRING) {
            creor_gen_ngx_str(g, &x->str);

        } else {
            x = creor_json_get(prior.doc, "inputs");

            if (x) {
                creor_gen_value(g, x);

            } else {
                yajl_gen_null(g);
            }
        }

        yajl_gen_map_close(g);

        /* its tool rounds (the built-in executor's), then its answer */

        x = creor_json_get(prior.doc, "turns");

        for (x = (x && x->type == CREOR_JSON_ARRAY) ? x->child : NULL;
             x;
             x = x->next)
        {
            creor_gen_value(g, x);
        }

        x = creor_json_get(creor_json_get(prior.doc, "result"), "text");

        if (x && x->type == CREOR_JSON_STRING) {
            yajl_gen_map_open(g);
            creor_gen_kv(g, "role", "assistant");
            creor_gen_kv_ngx(g, "content", &x->str);
            yajl_gen_map_close(g);
        }
    }

    yajl_gen_array_close(g);
    yajl_gen_map_close(g);

    creor_gen_str(g, "files");
    yajl_gen_array_open(g);

    files = creor_json_get(run->doc, "files");
    expires = ngx_time() + CREOR_URL_TTL;

    for (f = files ? files->child : NULL; f; f = f->next) {
        x = creor_json_get(f, "id");
        if (x == NULL || x->type != CREOR_JSON_STRING) {
            continue;
        }

        fid = x->str;
        creor_file_signature(mcf, &run->id, &fid, expires, hex);

        yajl_gen_map_open(g);
        creor_gen_kv_ngx(g, "id", &fid);

        for (x = f->child; x; x = x->next) {
            if (x->key.len == 2 && ngx_strncmp(x->key.data, "id", 2) == 0) {
                continue;
            }

            yajl_gen_string(g, x->key.data, x->key.len);
            creor_gen_value(g, x);
        }

        creor_gen_str(g, "url");
        yajl_gen_string(g, url,
                        ngx_snprintf(url, sizeof(url),
                                     "/v1/runs/%V/files/%V?expires=%T"
                                     "&signature=%*s",
                                     &run->id, &fid, expires,
                                     sizeof(hex), hex)
                        - url);
        yajl_gen_map_close(g);
    }

    yajl_gen_array_close(g);

    creor_gen_str(g, "signal");
    x = creor_json_get(run->doc, "signal");

    if (x) {
        creor_gen_value(g, x);

    } else {
        yajl_gen_null(g);
    }

    yajl_gen_map_close(g);

    return creor_gen_result_pool(pool, g, out);
}


/* complete lines go to lines (copied into pool); the rest waits */

ngx_int_t
creor_leg_feed(creor_leg_t *leg, u_char *p, size_t len, ngx_array_t *lines,
    ngx_pool_t *pool)
{
    u_char     *nl, *last, *nb;
    size_t      n, size;
    ngx_str_t  *line;

    last = p + len;

    while (p < last) {
        nl = ngx_strlchr(p, last, '\n');
        n = (nl ? nl : last) - p;

        if (leg->line_len + n > CREOR_LINE_MAX) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "creor: an executor line of %V is over %d bytes",
                          &leg->run_id, CREOR_LINE_MAX);
            return NGX_ERROR;
        }

        if (nl && leg->line_len == 0) {
            line = ngx_array_push(lines);
            if (line == NULL) {
                return NGX_ERROR;
            }

            line->data = ngx_pnalloc(pool, n);
            if (line->data == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(line->data, p, n);
            line->len = n;
            p = nl + 1;
            continue;
        }

        if (leg->line_len + n > leg->line_size) {
            size = ngx_max(leg->line_size * 2, leg->line_len + n);
            size = ngx_max(size, 1024);

            nb = ngx_alloc(size, ngx_cycle->log);
            if (nb == NULL) {
                return NGX_ERROR;
            }

            if (leg->line) {
                ngx_memcpy(nb, leg->line, leg->line_len);
                ngx_free(leg->line);
            }

            leg->line = nb;
            leg->line_size = size;
        }

        ngx_memcpy(leg->line + leg->line_len, p, n);
        leg->line_len += n;

        if (nl == NULL) {
            break;
        }

        line = ngx_array_push(lines);
        if (line == NULL) {
            return NGX_ERROR;
        }

        line->data = ngx_pnalloc(pool, leg->line_len);
        if (line->data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(line->data, leg->line, leg->line_len);
        line->len = leg->line_len;
        leg->line_len = 0;
        p = nl + 1;
    }

    return NGX_OK;
}


/* the line still being received, at the end of its call */

void
creor_leg_line_free(creor_leg_t *leg)
{
    if (leg->line) {
        ngx_free(leg->line);
        leg->line = NULL;
    }
}


/*
 * An executor line: NGX_OK with its type and value (NULL if it has
 * none) if it is an event of the contract, NGX_DONE if it is blank,
 * NGX_DECLINED otherwise.  Nothing here needs a run, for fuzz/ndjson.c.
 */

ngx_int_t
creor_leg_line(ngx_pool_t *pool, ngx_str_t *line, const char **type,
    creor_json_t **value)
{
    u_char         err[128];
    creor_json_t  *ev, *t;
    const char   **name;

    static const char  *types[] = {
        "step.started", "step.progress", "step.done", "run.awaiting_input",
        "run.completed", "run.failed", NULL
    };

    while (line->len && (line->data[line->len - 1] == '\r'
                         || line->data[line->len - 1] == ' '))
    {
        line->len--;
    }

    if (line->len == 0) {
        return NGX_DONE;
    }

    ev = creor_json_parse_max(pool, line->data, line->len,
                              CREOR_JSON_MAX_VALUES, NULL, err, sizeof(err));
    t = creor_json_get(ev, "type");
    *value = creor_json_get(ev, "value");

    if (ev == NULL || t == NULL || t->type != CREOR_JSON_STRING
        || (*value && (*value)->type != CREOR_JSON_OBJECT))
    {
        return NGX_DECLINED;
    }

    for (name = types; *name; name++) {
        if (ngx_strcmp(*name, t->str.data) == 0) {
            *type = *name;
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/*
 * Lines received together are stored in one transaction.  A line that
 * is not an event of the executor contract is logged and skipped.
 */

void
creor_leg_events(creor_leg_t *leg, ngx_array_t *lines, ngx_pool_t *pool)
{
    int                     rc;
    MDB_txn                *txn;
    ngx_str_t              *line;
    ngx_uint_t              i;
    const char             *t;
    creor_run_t             run;
    creor_json_t           *value;
    creor_store_t          *st;
    ngx_creor_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_creor_module);
    st = &mcf->store;

    if (creor_store_write(st, &txn) != CREOR_STORE_OK) {
        return;
    }

    if (creor_run_load_any(st, txn, pool, &leg->run_id, &run)
        != CREOR_STORE_OK
        || creor_run_terminal(run.hdr.status)
        || run.hdr.owner_pid != (uint32_t) ngx_pid)
    {
        /* cancelled, timed out or taken over: the tick closes the call */

        creor_store_abort(txn);
        leg->aborted = 1;
        return;
    }

    line = lines->elts;
    run.sync = 0;

    for (i = 0; i < lines->nelts && !leg->ended; i++) {

        rc = creor_leg_line(pool, &line[i], &t, &value);

        if (rc == NGX_DONE) {
            continue;
        }

        if (rc != NGX_OK) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "creor: executor line of %V skipped: not an "
                          "event of the contract", &leg->run_id);
            continue;
        }

        rc = creor_run_event(st, txn, &run, t, ngx_strlen(t), value);

        if (rc != CREOR_STORE_OK) {
            creor_store_abort(txn);

            if (rc != NGX_DECLINED) {
                creor_legs_failed(&leg->run_id, "record the events of", rc);
            }

            leg->aborted = 1;
            return;
        }

        if (ngx_strcmp(t, "run.awaiting_input") == 0
            || ngx_strcmp(t, "run.completed") == 0
            || ngx_strcmp(t, "run.failed") == 0)
        {
            leg->ended = 1;
        }
    }

    rc = creor_run_commit(st, txn, &run, 1);

    if (rc != CREOR_STORE_OK) {
        creor_legs_failed(&leg->run_id, "record the events of", rc);
        leg->aborted = 1;

    } else {
        creor_changed(mcf, &run.id, CREOR_CHANGED_EVENTS);
    }
}
