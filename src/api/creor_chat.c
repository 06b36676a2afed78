
/*
 * Copyright (C) ngx_creor_module authors
 *
 * POST /v1/chat/completions (SPEC 9).  The body, its model rewritten,
 * goes to the operator's creor_provider location as a subrequest of the
 * client's request; the provider's answer comes back through the filters
 * here.  A non-stream answer is collected (usage, idempotency) and sent
 * as it came; a stream is passed on event by event as the provider's
 * reads complete them (creor_sse_frame.c), each event flushed.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"
#include "creor_chat.h"


#define CREOR_CHAT_ANSWER_MAX   (64 * 1024 * 1024)
#define CREOR_CHAT_ERROR_MAX    65536
#define CREOR_CHAT_MESSAGE_MAX  400
#define CREOR_CHAT_RENEW        10000   /* ms, a third of a claim's lease */

/* the members of a request creor_chat_create() reads */
#define CREOR_CHAT_MODEL        0
#define CREOR_CHAT_MESSAGES     1
#define CREOR_CHAT_STREAM       2
#define CREOR_CHAT_OPTIONS      3
#define CREOR_CHAT_USAGE        4       /* stream_options.include_usage */
#define CREOR_CHAT_MEMBERS      5


/* a replaced member value of the client's body */
typedef struct {
    u_char                 *start;
    u_char                 *end;
    ngx_str_t               value;
    ngx_flag_t              model;
} creor_chat_edit_t;


static ngx_int_t creor_chat_rewrite(creor_chat_t *chat, ngx_str_t *name,
    creor_json_member_t *m);
static ngx_int_t creor_chat_call(creor_chat_t *chat);
static void creor_chat_renew(ngx_event_t *ev);
static void creor_chat_cleanup(void *data);
static ngx_int_t creor_chat_done(ngx_http_request_t *sr, void *data,
    ngx_int_t rc);
static void creor_chat_finalize_handler(ngx_http_request_t *r);
static ngx_int_t creor_chat_end_stream(creor_chat_t *chat, ngx_flag_t ok);
static ngx_int_t creor_chat_answer(creor_chat_t *chat);
static ngx_int_t creor_chat_fail(creor_chat_t *chat);
static ngx_flag_t creor_chat_retryable(creor_chat_t *chat);
static ngx_int_t creor_chat_collected(creor_chat_t *chat, ngx_str_t *out);
static void creor_chat_message(creor_chat_t *chat, u_char *buf, size_t size);
static void creor_chat_tokens(creor_chat_t *chat);
static void creor_chat_meter(creor_chat_t *chat);
static ngx_int_t creor_chat_header_filter(ngx_http_request_t *r,
    void *data);
static ngx_int_t creor_chat_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in, void *data);
static ngx_int_t creor_chat_collect(creor_chat_t *chat, ngx_chain_t *in,
    size_t max);


static ngx_str_t  creor_chat_post = ngx_string("POST");

static creor_capture_t  creor_chat_capture = {
    offsetof(ngx_creor_ctx_t, chat),
    creor_chat_header_filter,
    creor_chat_body_filter
};


ngx_int_t
creor_chat_create(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    ngx_str_t              name, model;
    ngx_uint_t             root;
    ngx_flag_t             too_many;
    creor_chat_t          *chat;
    creor_provider_t      *pv;
    ngx_pool_cleanup_t    *cln;
    creor_json_member_t   *v, *stream, *opts, *usage;
    ngx_creor_loc_conf_t  *lcf;
    u_char                 err[128];
    creor_json_member_t    m[CREOR_CHAT_MEMBERS];

    lcf = ngx_http_get_module_loc_conf(r, ngx_creor_module);

    /*
     * The body is checked as a tree would be, but none is made: what goes
     * to the provider is the client's bytes (creor_chat_rewrite()).
     */

    ngx_memzero(m, sizeof(m));
    ngx_str_set(&m[CREOR_CHAT_MODEL].name, "model");
    m[CREOR_CHAT_MODEL].parent = -1;
    ngx_str_set(&m[CREOR_CHAT_MESSAGES].name, "messages");
    m[CREOR_CHAT_MESSAGES].parent = -1;
    ngx_str_set(&m[CREOR_CHAT_STREAM].name, "stream");
    m[CREOR_CHAT_STREAM].parent = -1;
    ngx_str_set(&m[CREOR_CHAT_OPTIONS].name, "stream_options");
    m[CREOR_CHAT_OPTIONS].parent = -1;
    ngx_str_set(&m[CREOR_CHAT_USAGE].name, "include_usage");
    m[CREOR_CHAT_USAGE].parent = CREOR_CHAT_OPTIONS;

    if (ctx->body.len) {
        if (creor_json_scan(r->pool, ctx->body.data, ctx->body.len,
                            lcf->json_max_values, m, CREOR_CHAT_MEMBERS,
                            &root, &too_many, err, sizeof(err))
            != NGX_OK)
        {
            if (too_many) {
                return creor_fail(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                  "BODY_TOO_LARGE", NULL, "%s", err);
            }

            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "INVALID_JSON", NULL,
                              "%s", err);
        }

        if (root == 0) {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "INVALID_JSON", NULL,
                              "%s", err);
        }

        if (root != CREOR_JSON_OBJECT + 1) {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                              NULL, "The body must be a JSON object.");
        }
    }

    v = &m[CREOR_CHAT_MODEL];

    if (!v->found || v->type == CREOR_JSON_NULL) {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "MISSING_FIELD", "model",
                          "The 'model' field is required.");
    }

    if (v->type != CREOR_JSON_STRING) {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                          "model", "'model' must be a string.");
    }

    model = v->str;

    v = &m[CREOR_CHAT_MESSAGES];

    if (!v->found || v->type == CREOR_JSON_NULL) {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "MISSING_FIELD",
                          "messages", "The 'messages' field is required.");
    }

    if (v->type != CREOR_JSON_ARRAY) {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                          "messages", "'messages' must be an array.");
    }

    stream = &m[CREOR_CHAT_STREAM];

    if (stream->found && stream->type != CREOR_JSON_NULL
        && stream->type != CREOR_JSON_TRUE
        && stream->type != CREOR_JSON_FALSE)
    {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                          "stream", "'stream' must be a boolean.");
    }

    opts = &m[CREOR_CHAT_OPTIONS];
    usage = &m[CREOR_CHAT_USAGE];

    if (opts->found && opts->type != CREOR_JSON_NULL) {
        if (opts->type != CREOR_JSON_OBJECT) {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                              "stream_options",
                              "'stream_options' must be an object.");
        }

        if (usage->found && usage->type != CREOR_JSON_NULL
            && usage->type != CREOR_JSON_TRUE
            && usage->type != CREOR_JSON_FALSE)
        {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                              "stream_options.include_usage",
                              "'stream_options.include_usage' must be a "
                              "boolean.");
        }
    }

    /* "provider/name": the provider's route, and its own model name */

    pv = creor_provider_find(lcf->providers, &model, &name);

    if (pv == NULL) {
        return creor_fail(r, 422, "UNSUPPORTED_MODEL", "model",
                          "The model '%V' has no provider here; models are "
                          "named \"provider/name\".", &model);
    }

    chat = ngx_pcalloc(r->pool, sizeof(creor_chat_t));
    if (chat == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    chat->r = r;
    chat->ctx = ctx;
    chat->provider = pv;
    chat->model = model;
    chat->retries = lcf->provider_retries;
    chat->stream = (stream->found && stream->type == CREOR_JSON_TRUE);
    chat->frame.request_id = ctx->request_id;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = creor_chat_cleanup;
    cln->data = chat;

    /* usage is always asked for a stream; the client sees it if it asked */

    if (chat->stream && !(usage->found && usage->type == CREOR_JSON_TRUE)) {
        chat->frame.strip_usage = 1;
    }

    if (creor_chat_rewrite(chat, &name, m) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = chat;

    if (creor_chat_call(chat) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the request lives on until creor_chat_finalize_handler() ends it */

    r->main->count++;
    r->write_event_handler = creor_chat_finalize_handler;

    if (ctx->idempotency_claimed) {
        chat->renew.handler = creor_chat_renew;
        chat->renew.data = chat;
        chat->renew.log = r->connection->log;
        chat->renew.cancelable = 1;
        ngx_add_timer(&chat->renew, CREOR_CHAT_RENEW);
    }

    return NGX_DONE;
}


/* a completion may take longer than an idempotency claim's lease */

static void
creor_chat_renew(ngx_event_t *ev)
{
    creor_chat_t  *chat = ev->data;

    if (chat->finished || !chat->ctx->idempotency_claimed) {
        return;
    }

    (void) creor_idempotency_renew(chat->ctx, ev->log);

    ngx_add_timer(ev, CREOR_CHAT_RENEW);
}


static void
creor_chat_cleanup(void *data)
{
    creor_chat_t  *chat = data;

    if (chat->renew.timer_set) {
        ngx_del_timer(&chat->renew);
    }

    creor_sse_frame_free(&chat->frame);
}


/*
 * The body towards the provider: the client's bytes with the value of
 * "model" replaced (and "include_usage": true put into "stream_options"
 * when only the module asks for usage), so every other field reaches the
 * provider exactly as sent.
 */

static ngx_int_t
creor_chat_rewrite(creor_chat_t *chat, ngx_str_t *name,
    creor_json_member_t *m)
{
    u_char               *p, *last, *out;
    size_t                len;
    ngx_uint_t            i, n;
    creor_chat_edit_t     edit[2], tmp;
    creor_json_member_t  *opts, *usage;

    p = chat->ctx->body.data;
    last = p + chat->ctx->body.len;

    edit[0].start = m[CREOR_CHAT_MODEL].start;
    edit[0].end = m[CREOR_CHAT_MODEL].end;
    edit[0].model = 1;
    edit[0].value.data = NULL;
    edit[0].value.len = 2 + name->len
                        + ngx_escape_json(NULL, name->data, name->len);
    n = 1;

    opts = &m[CREOR_CHAT_OPTIONS];
    usage = &m[CREOR_CHAT_USAGE];

    if (chat->frame.strip_usage) {
        edit[1].model = 0;

        if (opts->found && opts->type == CREOR_JSON_OBJECT) {

            if (usage->found) {
                edit[1].start = usage->start;
                edit[1].end = usage->end;
                ngx_str_set(&edit[1].value, "true");

            } else {
                /* last in the object: a comma if others are before */

                edit[1].start = opts->end - 1;
                edit[1].end = edit[1].start;
                ngx_str_set(&edit[1].value, ",\"include_usage\":true");

                for (p = opts->start + 1; p < edit[1].start; p++) {
                    if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n'
                        && *p != '\f' && *p != '\v')
                    {
                        break;
                    }
                }

                if (p == edit[1].start) {
                    edit[1].value.data++;
                    edit[1].value.len--;
                }
            }

        } else if (opts->found) {
            edit[1].start = opts->start;
            edit[1].end = opts->end;
            ngx_str_set(&edit[1].value, "{\"include_usage\":true}");

        } else {
            /* last in the body, before its closing brace */

            for (p = last; p > chat->ctx->body.data && p[-1] != '}'; p--) {
                /* void */
            }

            edit[1].start = p - 1;
            edit[1].end = edit[1].start;
            ngx_str_set(&edit[1].value,
                        ",\"stream_options\":{\"include_usage\":true}");
        }

        n = 2;

        if (edit[1].start < edit[0].start) {
            tmp = edit[0];
            edit[0] = edit[1];
            edit[1] = tmp;
        }
    }

    len = chat->ctx->body.len;

    for (i = 0; i < n; i++) {
        len += edit[i].value.len - (edit[i].end - edit[i].start);
    }

    out = ngx_pnalloc(chat->r->pool, len);
    if (out == NULL) {
        return NGX_ERROR;
    }

    chat->body.data = out;
    p = chat->ctx->body.data;

    for (i = 0; i < n; i++) {
        out = ngx_cpymem(out, p, edit[i].start - p);

        if (edit[i].model) {
            *out++ = '"';
            out = (u_char *) ngx_escape_json(out, name->data, name->len);
            *out++ = '"';

        } else {
            out = ngx_cpymem(out, edit[i].value.data, edit[i].value.len);
        }

        p = edit[i].end;
    }

    out = ngx_cpymem(out, p, last - p);
    chat->body.len = out - chat->body.data;

    return NGX_OK;
}


/*
 * One call of the provider: a POST subrequest with the rewritten body and
 * headers of its own, so the client's key never reaches the provider.
 */

static ngx_int_t
creor_chat_call(creor_chat_t *chat)
{
    ngx_buf_t                   *b;
    ngx_chain_t                 *cl;
    ngx_creor_ctx_t             *sctx;
    ngx_http_request_t          *r, *sr;
    ngx_http_request_body_t     *rb;
    ngx_http_post_subrequest_t  *ps;

    r = chat->r;

    chat->tries++;
    chat->start = ngx_current_msec;
    chat->status = 0;
    chat->rc = 0;
    chat->done = 0;
    chat->complete = 0;
    chat->overflow = 0;
    chat->answer = NULL;
    chat->last = &chat->answer;
    chat->size = 0;
    chat->retry_after.len = 0;
    creor_sse_frame_reset(&chat->frame);

    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t));
    if (ps == NULL) {
        return NGX_ERROR;
    }

    ps->handler = creor_chat_done;
    ps->data = chat;

    if (ngx_http_subrequest(r, &chat->provider->uri, NULL, &sr, ps, 0)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    chat->sr = sr;

    sr->method = NGX_HTTP_POST;
    sr->method_name = creor_chat_post;

    ngx_memzero(&sr->headers_in, sizeof(ngx_http_headers_in_t));
    sr->headers_in.content_length_n = chat->body.len;
    sr->headers_in.keep_alive_n = -1;

    if (creor_json_request_headers(sr, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    rb = ngx_pcalloc(r->pool, sizeof(ngx_http_request_body_t));
    b = ngx_calloc_buf(r->pool);
    cl = ngx_alloc_chain_link(r->pool);
    sctx = ngx_pcalloc(r->pool, sizeof(ngx_creor_ctx_t));

    if (rb == NULL || b == NULL || cl == NULL || sctx == NULL) {
        return NGX_ERROR;
    }

    b->start = chat->body.data;
    b->pos = b->start;
    b->last = b->start + chat->body.len;
    b->end = b->last;
    b->memory = 1;
    b->last_buf = 1;
    cl->buf = b;
    cl->next = NULL;
    rb->bufs = cl;
    sr->request_body = rb;

    sctx->mcf = chat->ctx->mcf;
    sctx->chat = chat;
    ngx_http_set_ctx(sr, sctx, ngx_creor_module);

    return NGX_OK;
}


/* the call is over, well or not: decided in the client's request */

static ngx_int_t
creor_chat_done(ngx_http_request_t *sr, void *data, ngx_int_t rc)
{
    creor_chat_t  *chat = data;

    if (sr != chat->sr || chat->done) {
        return NGX_OK;
    }

    chat->done = 1;
    chat->rc = rc;

    /* for /v1/system/health: a provider's 4xx is the request's fault */

    creor_metrics_provider(ngx_current_msec - chat->start,
                           chat->status != 0
                           && chat->status < NGX_HTTP_INTERNAL_SERVER_ERROR
                           && chat->status != NGX_HTTP_TOO_MANY_REQUESTS
                           && (chat->status >= 300 || chat->complete));

    /* no error page of the subrequest: the envelope is made here */

    return NGX_OK;
}


static void
creor_chat_finalize_handler(ngx_http_request_t *r)
{
    ngx_int_t         rc;
    ngx_flag_t        ok;
    creor_chat_t     *chat;
    ngx_creor_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_creor_module);
    chat = ctx->data;

    if (!chat->done || chat->finished) {
        return;
    }

    /*
     * An answer cut short ends its subrequest well too, only without the
     * last buffer: the upstream module sends a flush instead.
     */

    ok = chat->status >= NGX_HTTP_OK && chat->status < 300
         && chat->complete && !chat->overflow
         && chat->rc != NGX_ERROR && chat->rc < NGX_HTTP_SPECIAL_RESPONSE;

    if (r->connection->error) {
        chat->finished = 1;
        ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
        return;
    }

    if (chat->frame.started || (ok && chat->stream)) {
        chat->finished = 1;
        ngx_http_finalize_request(r, creor_chat_end_stream(chat, ok));
        return;
    }

    if (!ok && creor_chat_retryable(chat) && chat->tries <= chat->retries) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "creor: provider \"%V\" call failed (status %ui, "
                      "rc %i), retrying", &chat->provider->name,
                      chat->status, chat->rc);

        if (creor_chat_call(chat) != NGX_OK) {
            chat->finished = 1;
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        }

        return;
    }

    chat->finished = 1;

    rc = ok ? creor_chat_answer(chat) : creor_chat_fail(chat);

    ngx_http_finalize_request(r, rc);
}


/*
 * Failures a new call may not have: connection errors (an answer cut
 * short too), 5xx, 429.
 */

static ngx_flag_t
creor_chat_retryable(creor_chat_t *chat)
{
    if (chat->status == 0) {
        return chat->rc != NGX_HTTP_GATEWAY_TIME_OUT;
    }

    return (chat->status < 300 && !chat->overflow)
           || chat->status >= NGX_HTTP_INTERNAL_SERVER_ERROR
           || chat->status == NGX_HTTP_TOO_MANY_REQUESTS;
}


/* the last of a stream: what was left, or an error event, then the end */

static ngx_int_t
creor_chat_end_stream(creor_chat_t *chat, ngx_flag_t ok)
{
    u_char              *p;
    ngx_int_t            rc;
    ngx_str_t            ev;
    ngx_http_request_t  *r;

    r = chat->r;

    if (ok) {
        rc = creor_sse_frame_flush(&chat->frame, r);

    } else {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "creor: the stream of provider \"%V\" ended early "
                      "(rc %i)", &chat->provider->name, chat->rc);

        p = ngx_pnalloc(r->pool, 256 + chat->ctx->request_id.len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ev.data = p;
        ev.len = ngx_sprintf(p, "data: {\"error\":{\"type\":\"provider_error\","
                             "\"code\":\"PROVIDER_ERROR\",\"message\":\"The "
                             "provider's stream ended early.\","
                             "\"request_id\":\"%V\"}}\n\n",
                             &chat->ctx->request_id)
                 - p;

        rc = creor_sse_frame_write(&chat->frame, r, &ev);
    }

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    creor_chat_tokens(chat);
    creor_chat_meter(chat);

    /*
     * A stream is not stored: its claim is given up before the client
     * has the end, so a retry that follows at once runs.
     */

    creor_idempotency_release(chat->ctx);

    return ngx_http_send_special(r, NGX_HTTP_LAST);
}


/* a non-stream answer, as the provider sent it */

static ngx_int_t
creor_chat_answer(creor_chat_t *chat)
{
    ngx_str_t  body;

    if (creor_chat_collected(chat, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) creor_sse_frame_usage(&chat->frame, body.data,
                                 body.data + body.len);

    creor_chat_tokens(chat);
    creor_chat_meter(chat);

    return creor_send_raw(chat->r, NGX_HTTP_OK, body.data, body.len);
}


/*
 * SPEC 9.2: a provider's 4xx keeps its status, 5xx and no answer are 502,
 * no answer in time is 504; the provider's own message is kept.
 */

static ngx_int_t
creor_chat_fail(creor_chat_t *chat)
{
    u_char              msg[CREOR_CHAT_MESSAGE_MAX + 1];
    ngx_uint_t          status;
    const char         *code;
    ngx_http_request_t *r;

    r = chat->r;
    status = NGX_HTTP_BAD_GATEWAY;
    code = "PROVIDER_ERROR";
    msg[0] = '\0';

    if (chat->status == 0) {
        if (chat->rc == NGX_HTTP_GATEWAY_TIME_OUT) {
            status = NGX_HTTP_GATEWAY_TIME_OUT;
            code = "PROVIDER_TIMEOUT";
            ngx_cpystrn(msg, (u_char *) "The provider did not answer in "
                        "time.", sizeof(msg));

        } else {
            ngx_cpystrn(msg, (u_char *) "The provider could not be "
                        "reached.", sizeof(msg));
        }

    } else if (chat->status >= NGX_HTTP_OK && chat->status < 300) {
        ngx_cpystrn(msg, (u_char *) (chat->overflow
                                     ? "The provider's answer is too large."
                                     : "The provider's answer was cut "
                                       "short."),
                    sizeof(msg));

    } else {
        if (chat->status >= NGX_HTTP_BAD_REQUEST
            && chat->status < NGX_HTTP_INTERNAL_SERVER_ERROR)
        {
            status = chat->status;
        }

        creor_chat_message(chat, msg, sizeof(msg));

        if (msg[0] == '\0') {
            ngx_snprintf(msg, sizeof(msg) - 1, "The provider answered %ui.%Z",
                         chat->status);
        }

        if (status == chat->status && chat->retry_after.len
            && creor_add_header(r, "Retry-After", &chat->retry_after)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "creor: provider \"%V\" failed (status %ui, rc %i): %s",
                  &chat->provider->name, chat->status, chat->rc, msg);

    chat->ctx->err_type = "provider_error";

    return creor_send_error(r, status, code, (char *) msg, NULL);
}


/* the collected answer as one piece of memory */

static ngx_int_t
creor_chat_collected(creor_chat_t *chat, ngx_str_t *out)
{
    u_char       *p;
    ngx_chain_t  *cl;

    if (chat->answer && chat->answer->next == NULL) {
        out->data = chat->answer->buf->pos;
        out->len = chat->size;
        return NGX_OK;
    }

    p = ngx_pnalloc(chat->r->pool, chat->size + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    out->len = chat->size;

    for (cl = chat->answer; cl; cl = cl->next) {
        p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
    }

    return NGX_OK;
}


/*
 * The message of a provider's error body: OpenAI's error.message, or the
 * "error" string (Ollama), "message" (vLLM) or "detail" others send.
 */

static void
creor_chat_message(creor_chat_t *chat, u_char *buf, size_t size)
{
    size_t         n;
    ngx_str_t      body;
    ngx_pool_t    *pool;
    creor_json_t  *obj, *e, *m;
    u_char         err[128];

    if (creor_chat_collected(chat, &body) != NGX_OK || body.len == 0) {
        return;
    }

    pool = ngx_create_pool(4096, chat->r->connection->log);
    if (pool == NULL) {
        return;
    }

    obj = creor_json_parse(pool, body.data, body.len, err, sizeof(err));
    m = NULL;

    if (obj && obj->type == CREOR_JSON_OBJECT) {
        e = creor_json_get(obj, "error");

        if (e && e->type == CREOR_JSON_OBJECT) {
            m = creor_json_get(e, "message");

        } else if (e && e->type == CREOR_JSON_STRING) {
            m = e;
        }

        if (m == NULL || m->type != CREOR_JSON_STRING) {
            m = creor_json_get(obj, "message");
        }

        if (m == NULL || m->type != CREOR_JSON_STRING) {
            m = creor_json_get(obj, "detail");
        }
    }

    if (m && m->type == CREOR_JSON_STRING && m->str.len) {
        n = ngx_min(m->str.len, size - 1);

        /* cut on a character boundary: the envelope wants valid UTF-8 */

        while (n < m->str.len && n > 0 && (m->str.data[n] & 0xc0) == 0x80) {
            n--;
        }

        ngx_memcpy(buf, m->str.data, n);
        buf[n] = '\0';

        if (ngx_strlchr(buf, buf + n, '\0')) {
            buf[0] = '\0';
        }
    }

    ngx_destroy_pool(pool);
}


/* $creor_tokens_in, $creor_tokens_out */

static void
creor_chat_tokens(creor_chat_t *chat)
{
    u_char           *p;
    ngx_creor_ctx_t  *ctx;

    if (!chat->frame.usage) {
        return;
    }

    ctx = chat->ctx;

    p = ngx_pnalloc(chat->r->pool, 2 * NGX_INT64_LEN);
    if (p == NULL) {
        return;
    }

    ctx->tokens_in.data = p;
    ctx->tokens_in.len = ngx_sprintf(p, "%L", chat->frame.input_tokens) - p;
    p += ctx->tokens_in.len;

    ctx->tokens_out.data = p;
    ctx->tokens_out.len = ngx_sprintf(p, "%L", chat->frame.output_tokens) - p;
}


/* one finished completion, with its tokens, to the caller's aggregates */

static void
creor_chat_meter(creor_chat_t *chat)
{
    creor_usage_t     u;
    ngx_creor_ctx_t  *ctx;

    ctx = chat->ctx;

    ngx_memzero(&u, sizeof(creor_usage_t));

    u.org = ctx->who.org;
    u.project = ctx->who.project;
    u.key_id = ctx->who.key_id;
    u.model = chat->model;
    u.input_tokens = chat->frame.input_tokens;
    u.output_tokens = chat->frame.output_tokens;
    u.requests = 1;
    u.time_ms = creor_now_ms();

    creor_metrics_chat(&chat->model, u.input_tokens, u.output_tokens);

    if (creor_usage_add(ctx->mcf, &u, chat->r->connection->log) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, chat->r->connection->log, 0,
                      "creor: the usage of a chat completion was not "
                      "counted");
    }
}


/*
 * Filters: the output of a provider call (a subrequest with a ctx whose
 * chat is set) is taken here and never reaches the client as it is.
 */

static ngx_int_t
creor_chat_header_filter(ngx_http_request_t *r, void *data)
{
    creor_chat_t  *chat = data;

    ngx_table_elt_t  *h;

    if (r != chat->sr) {
        return NGX_OK;
    }

    chat->status = r->headers_out.status;

    if (chat->status != NGX_HTTP_TOO_MANY_REQUESTS) {
        return NGX_OK;
    }

    h = creor_header_out(r, "Retry-After");

    if (h) {
        chat->retry_after = h->value;
    }

    return NGX_OK;
}


static ngx_int_t
creor_chat_body_filter(ngx_http_request_t *r, ngx_chain_t *in, void *data)
{
    creor_chat_t  *chat = data;

    ngx_int_t     rc;
    ngx_chain_t  *out;

    for (out = in; out; out = out->next) {
        if (out->buf->last_in_chain || out->buf->last_buf) {
            chat->complete = (r == chat->sr);
        }
    }

    if (r != chat->sr || chat->done) {
        for (out = in; out; out = out->next) {
            out->buf->pos = out->buf->last;
            out->buf->file_pos = out->buf->file_last;
        }

        return NGX_OK;
    }

    if (!chat->stream || chat->status < NGX_HTTP_OK || chat->status >= 300) {
        return creor_chat_collect(chat, in,
                                  (chat->status >= NGX_HTTP_OK
                                   && chat->status < 300)
                                  ? CREOR_CHAT_ANSWER_MAX
                                  : CREOR_CHAT_ERROR_MAX);
    }

    /* a stream: the events its reads completed go on, in one write */

    if (creor_sse_frame_feed(&chat->frame, chat->r, in, &out) != NGX_OK) {
        return NGX_ERROR;
    }

    if (out && !chat->frame.started) {
        if (creor_sse_frame_header(&chat->frame, chat->r) != NGX_OK) {
            return NGX_ERROR;
        }

        chat->ctx->sending = 1;
    }

    rc = creor_capture_next_body(r, out);

    creor_sse_frame_update(&chat->frame, chat->r, out);

    if (creor_sse_frame_hold(&chat->frame, chat->r, in) != NGX_OK) {
        return NGX_ERROR;
    }

    return rc;
}


/* a non-stream answer or an error body, kept whole up to max */

static ngx_int_t
creor_chat_collect(creor_chat_t *chat, ngx_chain_t *in, size_t max)
{
    size_t        n;
    ssize_t       got;
    ngx_buf_t    *b, *nb;
    ngx_chain_t  *cl, *ncl;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        n = ngx_buf_in_memory(b) ? (size_t) (b->last - b->pos)
                                 : (size_t) (b->file_last - b->file_pos);

        if (n == 0 || chat->overflow) {
            goto next;
        }

        if (chat->size + n > max) {
            if (max == CREOR_CHAT_ANSWER_MAX) {
                chat->overflow = 1;
                goto next;
            }

            n = max - chat->size;

            if (n == 0) {
                goto next;
            }
        }

        nb = ngx_create_temp_buf(chat->r->pool, n);
        ncl = ngx_alloc_chain_link(chat->r->pool);
        if (nb == NULL || ncl == NULL) {
            return NGX_ERROR;
        }

        if (ngx_buf_in_memory(b)) {
            nb->last = ngx_cpymem(nb->pos, b->pos, n);

        } else {
            got = ngx_read_file(b->file, nb->pos, n, b->file_pos);
            if (got != (ssize_t) n) {
                return NGX_ERROR;
            }

            nb->last += n;
        }

        ncl->buf = nb;
        ncl->next = NULL;
        *chat->last = ncl;
        chat->last = &ncl->next;
        chat->size += n;

    next:

        b->pos = b->last;
        b->file_pos = b->file_last;
    }

    return NGX_OK;
}


ngx_int_t
creor_chat_filter_init(ngx_conf_t *cf)
{
    return creor_capture_add(&creor_chat_capture);
}
