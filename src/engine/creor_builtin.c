
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The built-in executor (SPEC 9.4): with no creor_executor, a run leg is
 * a streamed chat completion of the run's model through its
 * creor_provider.  The leg machinery of creor_dispatch.c (lease, renewal,
 * takeover, retries, cancel, timeout) is the executor legs'; only what a
 * leg sends and what it makes of the answer is here:
 *
 *   sends     the agent's systemPrompt, the thread's last contextWindowSize
 *             messages, the run's input, its tool rounds so far (the
 *             assistant's tool_calls, then the client's tool outputs);
 *             temperature, max_tokens, inputs.tools
 *   receives  SSE "data:" lines: each content delta is a step.progress
 *             event as it arrives; tool_call deltas and usage are
 *             gathered; at "data: [DONE]" the leg ends with step.done and
 *             run.completed, or run.awaiting_input with the tool calls
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_BUILTIN_TEXT_MAX    (4 * 1024 * 1024)
#define CREOR_BUILTIN_CALLS_MAX   64
#define CREOR_BUILTIN_WINDOW      20      /* contextWindowSize's default */


typedef struct {
    u_char                 *data;
    size_t                  len;
    size_t                  size;
} creor_builtin_buf_t;


typedef struct {
    creor_builtin_buf_t     id;
    creor_builtin_buf_t     name;
    creor_builtin_buf_t     args;
} creor_builtin_call_t;


struct creor_builtin_s {
    ngx_pool_t             *pool;       /* the leg's */
    ngx_str_t               model;      /* "provider/name" */
    ngx_str_t               step_id;
    creor_builtin_buf_t     text;
    ngx_array_t             calls;      /* of creor_builtin_call_t */
    int64_t                 input_tokens;
    int64_t                 output_tokens;
    ngx_msec_t              start;
    unsigned                failed:1;   /* an error event, an overflow */
};


static ngx_int_t creor_builtin_line(creor_builtin_t *bi, creor_run_t *run,
    creor_store_t *st, MDB_txn *txn, ngx_str_t *line, ngx_pool_t *pool);
static ngx_int_t creor_builtin_delta(creor_builtin_t *bi, creor_json_t *d,
    creor_run_t *run, creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool);
static ngx_int_t creor_builtin_end(creor_builtin_t *bi, creor_run_t *run,
    creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool);
static ngx_int_t creor_builtin_add(ngx_pool_t *pool, creor_builtin_buf_t *b,
    ngx_str_t *s);
static ngx_int_t creor_builtin_turns(creor_run_t *run, creor_json_t *msg);
static creor_json_t *creor_builtin_model(creor_run_t *run);
static creor_json_t *creor_builtin_object(ngx_pool_t *pool, const char *name,
    const char *value, size_t len);
static ngx_flag_t creor_builtin_role(creor_json_t *msg, const char *role);
static ngx_str_t *creor_builtin_str(creor_json_t *obj, const char *name);
static ngx_int_t creor_builtin_history(yajl_gen g, creor_json_t *m,
    ngx_pool_t *pool);
static ngx_int_t creor_builtin_input(yajl_gen g, creor_json_t *leg,
    creor_run_t *run, ngx_pool_t *pool);
static ngx_int_t creor_builtin_inputs_json(creor_json_t *inputs,
    ngx_pool_t *pool, ngx_str_t *out);


/*
 * In the claim's transaction: the run's provider, and what its signal
 * says.  Tool outputs become tool messages of the run's turns.
 * NGX_DECLINED: the run is to fail with *fail (no provider, a reject),
 * which the caller does in txn; NGX_ERROR: txn is gone.
 */

ngx_int_t
creor_builtin_claim(MDB_txn *txn, creor_run_t *run, ngx_array_t *providers,
    creor_provider_t **pv, const char **fail)
{
    ngx_str_t      name;
    creor_json_t  *model, *sig, *action, *out, *msg, *v;

    model = creor_builtin_model(run);

    *pv = model ? creor_provider_find(providers, &model->str, &name) : NULL;

    if (*pv == NULL) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "creor: run %V failed: the model \"%V\" has no "
                      "creor_provider", &run->id,
                      model ? &model->str : &run->id);

        *fail = "UNSUPPORTED_MODEL";
        return NGX_DECLINED;
    }

    sig = creor_json_get(run->doc, "signal");

    if (sig == NULL || sig->type != CREOR_JSON_OBJECT) {
        return NGX_OK;
    }

    action = creor_json_get(sig, "action");

    if (action && action->type == CREOR_JSON_STRING
        && ngx_strcmp(action->str.data, "reject") == 0)
    {
        *fail = "TOOL_CALL_REJECTED";
        return NGX_DECLINED;
    }

    out = creor_json_get(creor_json_get(sig, "input"), "tool_outputs");

    for (out = (out && out->type == CREOR_JSON_ARRAY) ? out->child : NULL;
         out;
         out = out->next)
    {
        msg = creor_builtin_object(run->pool, "role", "tool", 4);
        v = creor_json_get(out, "tool_call_id");

        if (msg == NULL || v == NULL
            || creor_json_set(msg, "tool_call_id", v) != NGX_OK
            || creor_json_set(msg, "content",
                              creor_json_get(out, "output"))
               != NGX_OK
            || creor_builtin_turns(run, msg) != NGX_OK)
        {
            creor_store_abort(txn);
            return NGX_ERROR;
        }
    }

    /* taken: a retry of this leg finds the outputs in the turns */

    creor_json_unset(run->doc, "signal");

    return NGX_OK;
}


/* the run's chatModelId, else its agent's model */

static creor_json_t *
creor_builtin_model(creor_run_t *run)
{
    creor_json_t  *v;

    v = creor_json_get(run->doc, "chatModelId");

    if (v == NULL || v->type != CREOR_JSON_STRING || v->str.len == 0) {
        v = creor_json_get(run->doc, "agentModel");
    }

    return (v && v->type == CREOR_JSON_STRING) ? v : NULL;
}


/* a new object of one string member */

static creor_json_t *
creor_builtin_object(ngx_pool_t *pool, const char *name, const char *value,
    size_t len)
{
    creor_json_t  *obj;

    obj = creor_json_new(pool, CREOR_JSON_OBJECT, NULL, 0);

    if (obj == NULL
        || creor_json_set(obj, name,
                          creor_json_new(pool, CREOR_JSON_STRING, value, len))
           != NGX_OK)
    {
        return NULL;
    }

    return obj;
}


static ngx_flag_t
creor_builtin_role(creor_json_t *msg, const char *role)
{
    creor_json_t  *v;

    v = creor_json_get(msg, "role");

    return v && v->type == CREOR_JSON_STRING
           && ngx_strcmp(v->str.data, role) == 0;
}


/* a string member, or an empty string */

static ngx_str_t *
creor_builtin_str(creor_json_t *obj, const char *name)
{
    creor_json_t  *v;

    static ngx_str_t  empty = ngx_null_string;

    v = creor_json_get(obj, name);

    return (v && v->type == CREOR_JSON_STRING) ? &v->str : &empty;
}


static ngx_int_t
creor_builtin_turns(creor_run_t *run, creor_json_t *msg)
{
    creor_json_t  *turns;

    turns = creor_json_get(run->doc, "turns");

    if (turns == NULL || turns->type != CREOR_JSON_ARRAY) {
        turns = creor_json_new(run->pool, CREOR_JSON_ARRAY, NULL, 0);

        if (turns == NULL
            || creor_json_set(run->doc, "turns", turns) != NGX_OK)
        {
            return NGX_ERROR;
        }

        turns = creor_json_get(run->doc, "turns");
    }

    return creor_json_push(turns, msg);
}


/*
 * The provider's request, made after the claim committed: what the
 * executor contract would send (creor_run_leg_body: agent, thread,
 * files), recast as a chat completion.  The thread is read there only.
 */

ngx_int_t
creor_builtin_body(creor_store_t *st, creor_run_t *run, ngx_pool_t *pool,
    ngx_str_t *out)
{
    u_char         err[128];
    MDB_txn       *txn;
    yajl_gen       g;
    ngx_int_t      rc;
    ngx_str_t      leg_body, name;
    ngx_uint_t     n, window;
    creor_json_t  *leg, *agent, *settings, *v, *m, *model;

    txn = creor_store_read(st);
    if (txn == NULL) {
        creor_store_read_done(st);
        return NGX_ERROR;
    }

    rc = creor_run_leg_body(st, txn, pool, run, &leg_body);

    creor_store_read_done(st);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    leg = creor_json_parse(pool, leg_body.data, leg_body.len, err,
                           sizeof(err));
    if (leg == NULL) {
        return NGX_ERROR;
    }

    agent = creor_json_get(leg, "agent");
    settings = creor_json_get(agent, "settings");

    model = creor_builtin_model(run);
    if (model == NULL) {
        return NGX_ERROR;
    }

    name.data = ngx_strlchr(model->str.data, model->str.data + model->str.len,
                            '/');
    if (name.data == NULL) {
        return NGX_ERROR;
    }

    name.data++;
    name.len = model->str.data + model->str.len - name.data;

    g = creor_gen_pool(pool);
    if (g == NULL) {
        return NGX_ERROR;
    }

    yajl_gen_map_open(g);
    creor_gen_kv_ngx(g, "model", &name);
    creor_gen_kv_bool(g, "stream", 1);
    creor_gen_str(g, "stream_options");
    yajl_gen_map_open(g);
    creor_gen_kv_bool(g, "include_usage", 1);
    yajl_gen_map_close(g);

    v = creor_json_get(settings, "temperature");

    if (v && v->type == CREOR_JSON_NUMBER) {
        creor_gen_str(g, "temperature");
        creor_gen_value(g, v);
    }

    v = creor_json_get(settings, "maxTokens");

    if (v && v->type == CREOR_JSON_NUMBER) {
        creor_gen_str(g, "max_tokens");
        creor_gen_value(g, v);
    }

    v = creor_json_get(creor_json_get(run->doc, "inputs"), "tools");

    if (v && v->type == CREOR_JSON_ARRAY && v->count) {
        creor_gen_str(g, "tools");
        creor_gen_value(g, v);
    }

    creor_gen_str(g, "messages");
    yajl_gen_array_open(g);

    v = creor_json_get(agent, "systemPrompt");

    if (v && v->type == CREOR_JSON_STRING && v->str.len) {
        yajl_gen_map_open(g);
        creor_gen_kv(g, "role", "system");
        creor_gen_kv_ngx(g, "content", &v->str);
        yajl_gen_map_close(g);
    }

    /* the thread's last contextWindowSize messages, no orphan tool output */

    v = creor_json_get(settings, "contextWindowSize");
    window = creor_json_is_int(v) && v->num >= 0 ? (ngx_uint_t) v->num
                                                 : CREOR_BUILTIN_WINDOW;

    v = creor_json_get(creor_json_get(leg, "thread"), "messages");
    m = (v && v->type == CREOR_JSON_ARRAY) ? v->child : NULL;

    for (n = (m && v->count > window) ? v->count - window : 0; n; n--) {
        m = m->next;
    }

    while (m && creor_builtin_role(m, "tool")) {
        m = m->next;
    }

    for ( /* void */ ; m; m = m->next) {
        if (creor_builtin_history(g, m, pool) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (creor_builtin_input(g, leg, run, pool) != NGX_OK) {
        return NGX_ERROR;
    }

    /* this run's tool rounds so far */

    v = creor_json_get(run->doc, "turns");

    for (m = (v && v->type == CREOR_JSON_ARRAY) ? v->child : NULL;
         m;
         m = m->next)
    {
        creor_gen_value(g, m);
    }

    yajl_gen_array_close(g);
    yajl_gen_map_close(g);

    return creor_gen_result_pool(pool, g, out);
}


/* a message of the thread; an earlier run's inputs object as JSON text */

static ngx_int_t
creor_builtin_history(yajl_gen g, creor_json_t *m, ngx_pool_t *pool)
{
    ngx_str_t      text;
    creor_json_t  *c;

    c = creor_json_get(m, "content");

    if (c == NULL || c->type != CREOR_JSON_OBJECT) {
        creor_gen_value(g, m);
        return NGX_OK;
    }

    if (creor_builtin_inputs_json(c, pool, &text) != NGX_OK) {
        return NGX_ERROR;
    }

    yajl_gen_map_open(g);

    for (c = m->child; c; c = c->next) {
        yajl_gen_string(g, c->key.data, c->key.len);

        if (c->key.len == 7 && ngx_strncmp(c->key.data, "content", 7) == 0) {
            creor_gen_ngx_str(g, &text);

        } else {
            creor_gen_value(g, c);
        }
    }

    yajl_gen_map_close(g);

    return NGX_OK;
}


/* the inputs as JSON text, without the tools (they go to the model) */

static ngx_int_t
creor_builtin_inputs_json(creor_json_t *inputs, ngx_pool_t *pool,
    ngx_str_t *out)
{
    yajl_gen       g;
    creor_json_t  *v;

    g = creor_gen_pool(pool);
    if (g == NULL) {
        return NGX_ERROR;
    }

    yajl_gen_map_open(g);

    for (v = inputs ? inputs->child : NULL; v; v = v->next) {
        if (v->key.len == 5 && ngx_strncmp(v->key.data, "tools", 5) == 0) {
            continue;
        }

        yajl_gen_string(g, v->key.data, v->key.len);
        creor_gen_value(g, v);
    }

    yajl_gen_map_close(g);

    return creor_gen_result_pool(pool, g, out);
}


/*
 * The run's input as a user message: inputs.prompt, else the inputs as
 * JSON (without the tools, which go to the model as tools), then the
 * attached files by name, type and signed URL.
 */

static ngx_int_t
creor_builtin_input(yajl_gen g, creor_json_t *leg, creor_run_t *run,
    ngx_pool_t *pool)
{
    u_char        *p;
    size_t         len;
    ngx_str_t      text, json;
    creor_json_t  *inputs, *v, *f, *files;

    inputs = creor_json_get(run->doc, "inputs");
    v = creor_json_get(inputs, "prompt");

    if (v && v->type == CREOR_JSON_STRING) {
        text = v->str;

    } else if (creor_builtin_inputs_json(inputs, pool, &text) != NGX_OK) {
        return NGX_ERROR;
    }

    files = creor_json_get(leg, "files");

    if (files && files->count) {
        len = text.len + sizeof("\n\nAttached files:") - 1;

        for (f = files->child; f; f = f->next) {
            len += sizeof("\n-  (): ") - 1
                   + creor_builtin_str(f, "name")->len
                   + creor_builtin_str(f, "type")->len
                   + creor_builtin_str(f, "url")->len;
        }

        p = ngx_pnalloc(pool, len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        json.data = p;
        p = ngx_cpymem(p, text.data, text.len);
        p = ngx_cpymem(p, "\n\nAttached files:",
                       sizeof("\n\nAttached files:") - 1);

        for (f = files->child; f; f = f->next) {
            p = ngx_sprintf(p, "\n- %V (%V): %V",
                            creor_builtin_str(f, "name"),
                            creor_builtin_str(f, "type"),
                            creor_builtin_str(f, "url"));
        }

        json.len = p - json.data;
        text = json;
    }

    yajl_gen_map_open(g);
    creor_gen_kv(g, "role", "user");
    creor_gen_kv_ngx(g, "content", &text);
    yajl_gen_map_close(g);

    return NGX_OK;
}


creor_builtin_t *
creor_builtin_create(ngx_pool_t *pool, creor_run_t *run)
{
    creor_json_t     *model;
    creor_builtin_t  *bi;

    bi = ngx_pcalloc(pool, sizeof(creor_builtin_t));
    if (bi == NULL) {
        return NULL;
    }

    bi->pool = pool;
    bi->start = ngx_current_msec;

    model = creor_builtin_model(run);

    if (model) {
        bi->model.data = ngx_pstrdup(pool, &model->str);
        if (bi->model.data == NULL) {
            return NULL;
        }

        bi->model.len = model->str.len;
    }

    bi->step_id.data = ngx_pnalloc(pool, sizeof("step_") + NGX_INT32_LEN);
    if (bi->step_id.data == NULL) {
        return NULL;
    }

    bi->step_id.len = ngx_sprintf(bi->step_id.data, "step_%uD", run->hdr.legs)
                      - bi->step_id.data;

    if (ngx_array_init(&bi->calls, pool, 1, sizeof(creor_builtin_call_t))
        != NGX_OK)
    {
        return NULL;
    }

    return bi;
}


/* step.started, in the claim's transaction; step_<leg> as the leg names it */

ngx_int_t
creor_builtin_started(creor_store_t *st, MDB_txn *txn, creor_run_t *run)
{
    u_char         id[sizeof("step_") + NGX_INT32_LEN];
    creor_json_t  *value, *model;

    model = creor_builtin_model(run);
    value = creor_builtin_object(run->pool, "step_id", (char *) id,
                                 ngx_sprintf(id, "step_%uD", run->hdr.legs)
                                 - id);

    if (value == NULL || model == NULL
        || creor_json_set(value, "name", model) != NGX_OK)
    {
        return CREOR_STORE_ERROR;
    }

    return creor_run_event(st, txn, run, "step.started", 12, value);
}


/*
 * The SSE lines a read of the provider's stream completed, stored in one
 * transaction.  NGX_DONE: the leg ended; NGX_ABORT: the run went on
 * without this leg (cancelled, timed out, taken over).
 */

ngx_int_t
creor_builtin_events(creor_builtin_t *bi, ngx_str_t *run_id,
    ngx_array_t *lines, ngx_pool_t *pool)
{
    MDB_txn                *txn;
    ngx_int_t               rc;
    ngx_str_t              *line;
    ngx_uint_t              i;
    creor_run_t             run;
    creor_store_t          *st;
    ngx_creor_main_conf_t  *mcf;

    if (bi->failed) {
        return NGX_OK;
    }

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_creor_module);
    st = &mcf->store;

    if (creor_store_write(st, &txn) != CREOR_STORE_OK) {
        return NGX_ERROR;
    }

    if (creor_run_load_any(st, txn, pool, run_id, &run) != CREOR_STORE_OK
        || creor_run_terminal(run.hdr.status)
        || run.hdr.owner_pid != (uint32_t) ngx_pid)
    {
        creor_store_abort(txn);
        return NGX_ABORT;
    }

    line = lines->elts;
    run.sync = 0;
    rc = NGX_OK;

    for (i = 0; i < lines->nelts && rc == NGX_OK && !bi->failed; i++) {
        rc = creor_builtin_line(bi, &run, st, txn, &line[i], pool);
    }

    if (rc == NGX_ERROR) {
        creor_store_abort(txn);
        return NGX_ABORT;
    }

    if (creor_run_commit(st, txn, &run, 1) != CREOR_STORE_OK) {
        return NGX_ABORT;
    }

    creor_changed(mcf, &run.id, CREOR_CHANGED_EVENTS);

    return rc;
}


static ngx_int_t
creor_builtin_line(creor_builtin_t *bi, creor_run_t *run, creor_store_t *st,
    MDB_txn *txn, ngx_str_t *line, ngx_pool_t *pool)
{
    u_char        *p, *last, err[128];
    creor_json_t  *chunk, *v, *c;

    p = line->data;
    last = p + line->len;

    while (last > p && (last[-1] == '\r' || last[-1] == ' ')) {
        last--;
    }

    /* comments, other fields, the blank line between events */

    if (last - p < 5 || ngx_strncmp(p, "data:", 5) != 0) {
        return NGX_OK;
    }

    p += 5;

    if (p < last && *p == ' ') {
        p++;
    }

    if (last - p == 6 && ngx_strncmp(p, "[DONE]", 6) == 0) {
        return creor_builtin_end(bi, run, st, txn, pool);
    }

    chunk = creor_json_parse(pool, p, last - p, err, sizeof(err));

    if (chunk == NULL || chunk->type != CREOR_JSON_OBJECT) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "creor: a provider event of %V skipped: %s",
                      &run->id, chunk ? "not an object" : (char *) err);
        return NGX_OK;
    }

    if (creor_json_get(chunk, "error")) {

        /* an error inside the stream: the leg is tried again */

        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "creor: the provider's stream of %V has an error",
                      &run->id);
        bi->failed = 1;
        return NGX_OK;
    }

    v = creor_json_get(chunk, "usage");

    if (v && v->type == CREOR_JSON_OBJECT) {
        c = creor_json_get(v, "prompt_tokens");
        if (creor_json_is_int(c)) {
            bi->input_tokens = (int64_t) c->num;
        }

        c = creor_json_get(v, "completion_tokens");
        if (creor_json_is_int(c)) {
            bi->output_tokens = (int64_t) c->num;
        }
    }

    v = creor_json_get(chunk, "choices");

    if (v == NULL || v->type != CREOR_JSON_ARRAY || v->child == NULL) {
        return NGX_OK;
    }

    v = creor_json_get(v->child, "delta");

    if (v == NULL || v->type != CREOR_JSON_OBJECT) {
        return NGX_OK;
    }

    return creor_builtin_delta(bi, v, run, st, txn, pool);
}


/* a delta: its content an event at once, its tool_call pieces gathered */

static ngx_int_t
creor_builtin_delta(creor_builtin_t *bi, creor_json_t *d, creor_run_t *run,
    creor_store_t *st, MDB_txn *txn, ngx_pool_t *pool)
{
    ngx_uint_t             i;
    creor_json_t          *v, *tc, *f, *x;
    creor_builtin_call_t  *call;

    v = creor_json_get(d, "content");

    if (v && v->type == CREOR_JSON_STRING && v->str.len) {
        if (creor_builtin_add(bi->pool, &bi->text, &v->str) != NGX_OK) {
            bi->failed = 1;
            return NGX_OK;
        }

        x = creor_builtin_object(pool, "kind", "content_delta", 13);

        if (x == NULL
            || creor_json_set(x, "content_delta", v) != NGX_OK
            || creor_run_event(st, txn, run, "step.progress", 13, x)
               != CREOR_STORE_OK)
        {
            return NGX_ERROR;
        }
    }

    tc = creor_json_get(d, "tool_calls");

    for (tc = (tc && tc->type == CREOR_JSON_ARRAY) ? tc->child : NULL;
         tc;
         tc = tc->next)
    {
        v = creor_json_get(tc, "index");
        i = creor_json_is_int(v) && v->num >= 0 ? (ngx_uint_t) v->num : 0;

        if (i >= CREOR_BUILTIN_CALLS_MAX) {
            bi->failed = 1;
            return NGX_OK;
        }

        while (bi->calls.nelts <= i) {
            call = ngx_array_push(&bi->calls);
            if (call == NULL) {
                return NGX_ERROR;
            }

            ngx_memzero(call, sizeof(creor_builtin_call_t));
        }

        call = (creor_builtin_call_t *) bi->calls.elts + i;
        f = creor_json_get(tc, "function");

        v = creor_json_get(tc, "id");
        x = creor_json_get(f, "name");
        f = creor_json_get(f, "arguments");

        if ((v && v->type == CREOR_JSON_STRING
             && creor_builtin_add(bi->pool, &call->id, &v->str) != NGX_OK)
            || (x && x->type == CREOR_JSON_STRING
                && creor_builtin_add(bi->pool, &call->name, &x->str)
                   != NGX_OK)
            || (f && f->type == CREOR_JSON_STRING
                && creor_builtin_add(bi->pool, &call->args, &f->str)
                   != NGX_OK))
        {
            bi->failed = 1;
            return NGX_OK;
        }
    }

    return NGX_OK;
}


/*
 * "data: [DONE]": step.done, then run.awaiting_input with the tool calls
 * (the assistant's message joins the run's turns) or run.completed.
 * Tokens add up over the run's legs.
 */

static ngx_int_t
creor_builtin_end(creor_builtin_t *bi, creor_run_t *run, creor_store_t *st,
    MDB_txn *txn, ngx_pool_t *pool)
{
    u_char                 err[128];
    yajl_gen               g;
    ngx_str_t              s, text;
    ngx_uint_t             i;
    creor_json_t          *value, *calls, *msg;
    creor_builtin_call_t  *call;

    text.data = bi->text.data;
    text.len = bi->text.len;

    run->hdr.input_tokens += bi->input_tokens;
    run->hdr.output_tokens += bi->output_tokens;

    creor_metrics_chat(&bi->model, bi->input_tokens, bi->output_tokens);
    creor_metrics_provider(ngx_current_msec - bi->start, 1);

    g = creor_gen_pool(pool);
    if (g == NULL) {
        return NGX_ERROR;
    }

    yajl_gen_map_open(g);
    creor_gen_kv_ngx(g, "step_id", &bi->step_id);
    creor_gen_kv(g, "outcome", "succeeded");
    yajl_gen_map_close(g);

    if (creor_gen_result_pool(pool, g, &s) != NGX_OK) {
        return NGX_ERROR;
    }

    value = creor_json_parse(pool, s.data, s.len, err, sizeof(err));

    if (value == NULL
        || creor_run_event(st, txn, run, "step.done", 9, value)
           != CREOR_STORE_OK)
    {
        return NGX_ERROR;
    }

    g = creor_gen_pool(pool);
    if (g == NULL) {
        return NGX_ERROR;
    }

    yajl_gen_map_open(g);

    if (bi->calls.nelts == 0) {
        creor_gen_str(g, "result");
        yajl_gen_map_open(g);
        creor_gen_kv_ngx(g, "text", &text);
        creor_gen_str(g, "artifacts");
        yajl_gen_array_open(g);
        yajl_gen_array_close(g);
        yajl_gen_map_close(g);

        creor_gen_str(g, "usage");
        yajl_gen_map_open(g);
        creor_gen_kv_int(g, "inputTokens", run->hdr.input_tokens);
        creor_gen_kv_int(g, "outputTokens", run->hdr.output_tokens);
        yajl_gen_map_close(g);

    } else {
        creor_gen_kv(g, "kind", "tool_calls");
        creor_gen_str(g, "content");

        if (text.len) {
            creor_gen_ngx_str(g, &text);

        } else {
            yajl_gen_null(g);
        }

        creor_gen_str(g, "tool_calls");
        yajl_gen_array_open(g);

        call = bi->calls.elts;

        for (i = 0; i < bi->calls.nelts; i++) {
            yajl_gen_map_open(g);
            s.data = call[i].id.data;
            s.len = call[i].id.len;
            creor_gen_kv_ngx(g, "id", &s);
            creor_gen_kv(g, "type", "function");
            creor_gen_str(g, "function");
            yajl_gen_map_open(g);
            s.data = call[i].name.data;
            s.len = call[i].name.len;
            creor_gen_kv_ngx(g, "name", &s);
            s.data = call[i].args.data;
            s.len = call[i].args.len;
            creor_gen_kv_ngx(g, "arguments", &s);
            yajl_gen_map_close(g);
            yajl_gen_map_close(g);
        }

        yajl_gen_array_close(g);
    }

    yajl_gen_map_close(g);

    if (creor_gen_result_pool(pool, g, &s) != NGX_OK) {
        return NGX_ERROR;
    }

    value = creor_json_parse(pool, s.data, s.len, err, sizeof(err));
    if (value == NULL) {
        return NGX_ERROR;
    }

    if (bi->calls.nelts == 0) {
        return creor_run_event(st, txn, run, "run.completed", 13, value)
               == CREOR_STORE_OK ? NGX_DONE : NGX_ERROR;
    }

    /* the assistant's turn, as the provider will be sent it next leg */

    calls = creor_json_get(value, "tool_calls");
    msg = creor_builtin_object(pool, "role", "assistant", 9);

    if (msg == NULL
        || creor_json_set(msg, "content", creor_json_get(value, "content"))
           != NGX_OK
        || creor_json_set(msg, "tool_calls", calls) != NGX_OK
        || creor_builtin_turns(run, msg) != NGX_OK
        || creor_run_event(st, txn, run, "run.awaiting_input", 18, value)
           != CREOR_STORE_OK)
    {
        return NGX_ERROR;
    }

    return NGX_DONE;
}


/* a piece to a growing buffer of the leg's pool, doubling */

static ngx_int_t
creor_builtin_add(ngx_pool_t *pool, creor_builtin_buf_t *b, ngx_str_t *s)
{
    u_char  *p;
    size_t   size;

    if (b->len + s->len > CREOR_BUILTIN_TEXT_MAX) {
        return NGX_ERROR;
    }

    if (b->len + s->len > b->size) {
        size = ngx_max(b->size * 2, b->len + s->len);
        size = ngx_max(size, 256);

        p = ngx_pnalloc(pool, size);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (b->len) {
            ngx_memcpy(p, b->data, b->len);
        }

        b->data = p;
        b->size = size;
    }

    ngx_memcpy(b->data + b->len, s->data, s->len);
    b->len += s->len;

    return NGX_OK;
}


/* for /v1/system/health: a call that did not end well */

void
creor_builtin_failed(creor_builtin_t *bi)
{
    creor_metrics_provider(ngx_current_msec - bi->start, 0);
}


/*
 * A leg that did not end: its run fails with the provider's error once
 * the retries are spent; a 4xx (but 408, 429) is not tried again.
 */

ngx_flag_t
creor_builtin_retryable(ngx_uint_t status)
{
    return status == 0 || status < 400 || status >= 500
           || status == NGX_HTTP_REQUEST_TIME_OUT
           || status == NGX_HTTP_TOO_MANY_REQUESTS;
}
