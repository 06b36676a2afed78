
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Server-sent events towards a client: the response header of a stream
 * and the malloc()ed buffers it writes, for the run event streams and the
 * chat completions alike.
 *
 * A provider's server-sent events, re-framed: whatever its reads (an
 * event split across them, several in one, "\r\n" line ends, comments),
 * the client gets each complete event as it was sent, flushed as soon as
 * the read that completed it.  Usage chunks are read for their tokens and
 * dropped when only the module asked for them.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"
#include "creor_sse_frame.h"


static ngx_int_t creor_sse_frame_append(creor_sse_frame_t *f, u_char *data,
    size_t len, ngx_log_t *log);
static ngx_int_t creor_sse_frame_events(creor_sse_frame_t *f,
    ngx_http_request_t *r, ngx_chain_t **out);
static ngx_flag_t creor_sse_frame_keep(creor_sse_frame_t *f, u_char *p,
    u_char *last);
static u_char *creor_sse_frame_member(u_char *p, u_char *last,
    const char *name);
static ngx_int_t creor_sse_frame_count(u_char *p, u_char *last,
    const char *name, int64_t *out);
static ngx_chain_t *creor_sse_frame_buf(creor_sse_frame_t *f,
    ngx_http_request_t *r, size_t size);


/* a stream's response header, to be sent by the caller */

ngx_int_t
creor_sse_headers(ngx_http_request_t *r, ngx_str_t *request_id)
{
    ngx_str_t  v;

    r->headers_out.status = NGX_HTTP_OK;
    ngx_str_set(&r->headers_out.content_type, "text/event-stream");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = -1;

    ngx_str_set(&v, "no-cache");
    if (creor_add_header(r, "Cache-Control", &v) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_str_set(&v, "no");
    if (creor_add_header(r, "X-Accel-Buffering", &v) != NGX_OK) {
        return NGX_ERROR;
    }

    if (request_id->len
        && creor_add_header(r, "X-Request-Id", request_id) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * After a write: buffers the client has taken (tag's) are freed, their
 * chain links kept in free for reuse.
 */

void
creor_sse_bufs_update(ngx_http_request_t *r, ngx_chain_t **free,
    ngx_chain_t **busy, ngx_chain_t **out, ngx_buf_tag_t tag)
{
    ngx_chain_update_chains(r->pool, free, busy, out, tag);

    creor_sse_bufs_free(*free);
}


/* the malloc()ed memory of the buffers of a chain */

void
creor_sse_bufs_free(ngx_chain_t *cl)
{
    for ( /* void */ ; cl; cl = cl->next) {
        if (cl->buf->start) {
            ngx_free(cl->buf->start);
            cl->buf->start = NULL;
            cl->buf->pos = NULL;
            cl->buf->last = NULL;
            cl->buf->end = NULL;
        }
    }
}


void
creor_sse_frame_reset(creor_sse_frame_t *f)
{
    f->len = 0;
    f->scanned = 0;
}


void
creor_sse_frame_free(void *data)
{
    creor_sse_frame_t  *f = data;

    if (f->event) {
        ngx_free(f->event);
        f->event = NULL;
    }

    creor_sse_bufs_free(f->free);

    /* the request is over: nothing holds these any more */

    creor_sse_bufs_free(f->busy);
}


/* the bytes of in are taken; *out has the events they completed */

ngx_int_t
creor_sse_frame_feed(creor_sse_frame_t *f, ngx_http_request_t *r,
    ngx_chain_t *in, ngx_chain_t **out)
{
    size_t        n;
    ssize_t       got;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    *out = NULL;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b)) {
            if (creor_sse_frame_append(f, b->pos, b->last - b->pos,
                                       r->connection->log)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (b->in_file && b->file_last > b->file_pos) {
            n = b->file_last - b->file_pos;

            if (creor_sse_frame_append(f, NULL, n, r->connection->log)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            got = ngx_read_file(b->file, f->event + f->len - n, n,
                                b->file_pos);
            if (got != (ssize_t) n) {
                return NGX_ERROR;
            }
        }
    }

    return creor_sse_frame_events(f, r, out);
}


/*
 * The provider's buffers are copied, but given back (consumed) only once
 * the client has taken what was sent: till then the upstream module keeps
 * them busy and stops reading when its buffer is full, so a client that
 * does not read holds the provider back instead of filling memory.
 */

ngx_int_t
creor_sse_frame_hold(creor_sse_frame_t *f, ngx_http_request_t *r,
    ngx_chain_t *in)
{
    ngx_chain_t  *cl, *ln, **ll;

    if (f->busy) {
        for (ll = &f->held; *ll; ll = &(*ll)->next) { /* void */ }

        for (cl = in; cl; cl = cl->next) {
            ln = ngx_alloc_chain_link(r->pool);
            if (ln == NULL) {
                return NGX_ERROR;
            }

            ln->buf = cl->buf;
            ln->next = NULL;
            *ll = ln;
            ll = &ln->next;
        }

        return NGX_OK;
    }

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    while (f->held) {
        ln = f->held;
        f->held = ln->next;

        ln->buf->pos = ln->buf->last;
        ln->buf->file_pos = ln->buf->file_last;
        ngx_free_chain(r->pool, ln);
    }

    return NGX_OK;
}


/* data (or room for len bytes, if data is NULL) after the pending bytes */

static ngx_int_t
creor_sse_frame_append(creor_sse_frame_t *f, u_char *data, size_t len,
    ngx_log_t *log)
{
    u_char  *p;
    size_t   size;

    if (len == 0) {
        return NGX_OK;
    }

    if (f->len + len > CREOR_SSE_EVENT_MAX) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "creor: a provider's event is over %d bytes",
                      CREOR_SSE_EVENT_MAX);
        return NGX_ERROR;
    }

    if (f->len + len > f->size) {
        size = ngx_max(ngx_max(f->size * 2, f->len + len), 4096);

        p = ngx_alloc(size, log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (f->event) {
            ngx_memcpy(p, f->event, f->len);
            ngx_free(f->event);
        }

        f->event = p;
        f->size = size;
    }

    if (data) {
        ngx_memcpy(f->event + f->len, data, len);
    }

    f->len += len;

    return NGX_OK;
}


/*
 * Complete events, those a blank line ends, are copied out in one buffer;
 * the unfinished one moves to the front.  Lines end with "\n" or "\r\n".
 */

static ngx_int_t
creor_sse_frame_events(creor_sse_frame_t *f, ngx_http_request_t *r,
    ngx_chain_t **out)
{
    u_char       *p, *last, *line, *es, *nl;
    size_t        n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    p = f->event;
    last = p + f->len;
    es = p;
    line = p + f->scanned;
    cl = NULL;
    b = NULL;

    for ( ;; ) {
        nl = ngx_strlchr(line, last, '\n');
        if (nl == NULL) {
            break;
        }

        n = nl - line;

        if (n && line[n - 1] == '\r') {
            n--;
        }

        line = nl + 1;

        if (n) {
            continue;
        }

        if (creor_sse_frame_keep(f, es, line)) {
            if (cl == NULL) {
                cl = creor_sse_frame_buf(f, r, last - es);
                if (cl == NULL) {
                    return NGX_ERROR;
                }

                b = cl->buf;
            }

            b->last = ngx_cpymem(b->last, es, line - es);
        }

        es = line;
    }

    f->len = last - es;
    f->scanned = line - es;

    if (es != p && f->len) {
        ngx_memmove(p, es, f->len);
    }

    *out = cl;

    return NGX_OK;
}


/*
 * Whether the event [p, last) goes to the client: not a bare blank line,
 * not the usage chunk the client did not ask for.  Tokens are read here.
 */

static ngx_flag_t
creor_sse_frame_keep(creor_sse_frame_t *f, u_char *p, u_char *last)
{
    u_char      *nl, *d, *u, *end;
    size_t       n;
    ngx_flag_t   keep;

    d = NULL;
    end = NULL;
    keep = 0;

    for ( /* void */ ; p < last; p = nl + 1) {
        nl = ngx_strlchr(p, last, '\n');
        n = nl - p;

        if (n && p[n - 1] == '\r') {
            n--;
        }

        if (n) {
            keep = 1;
        }

        if (d == NULL && n >= 5 && ngx_strncmp(p, "data:", 5) == 0) {
            d = p + 5;
            end = p + n;

            if (d < end && *d == ' ') {
                d++;
            }
        }
    }

    if (d == NULL) {
        return keep;
    }

    if (end - d == 6 && ngx_strncmp(d, "[DONE]", 6) == 0) {
        f->finished = 1;
        return 1;
    }

    /* "usage": null is in every chunk once usage is asked for */

    if (creor_sse_frame_usage(f, d, end) != NGX_OK) {
        return 1;
    }

    /* the usage chunk of its own has no choices */

    u = creor_sse_frame_member(d, end, "\"choices\"");

    if (f->strip_usage && u && *u == '[') {
        for (u++; u < end && (*u == ' ' || *u == '\t'); u++) {
            /* void */
        }

        if (u < end && *u == ']') {
            return 0;
        }
    }

    return keep;
}


/*
 * Where the value of a member named name (in quotes) starts in the JSON
 * text [p, last), or NULL.  A name in quotes cannot occur inside a string
 * (its quotes would be escaped there), so a text search is enough for
 * the flat chunks and answers of a provider.
 */

static u_char *
creor_sse_frame_member(u_char *p, u_char *last, const char *name)
{
    u_char  *u, *s;
    size_t   n;

    /*
     * From the end: "usage" is the last member of an answer and of a
     * chunk, so this reads tens of bytes, not the whole answer.
     */

    n = ngx_strlen(name);

    if ((size_t) (last - p) < n) {
        return NULL;
    }

    for (u = last - n; /* void */; u--) {
        if (*u == '"' && ngx_memcmp(u, name, n) == 0) {

            /* a string value that reads the same is passed over */

            for (s = u + n; s < last && (*s == ' ' || *s == '\t'); s++) {
                /* void */
            }

            if (s < last && *s == ':') {
                break;
            }
        }

        if (u == p) {
            return NULL;
        }
    }

    p = s;

    for (p++; p < last && (*p == ' ' || *p == '\t' || *p == '\r'
                           || *p == '\n');
         p++)
    {
        /* void */
    }

    return p < last ? p : NULL;
}


/*
 * The tokens of the "usage" object in the JSON text [p, last): only that
 * object is parsed, not a whole answer.  NGX_DECLINED: there is none.
 */

ngx_int_t
creor_sse_frame_usage(creor_sse_frame_t *f, u_char *p, u_char *last)
{
    u_char      *u, *s;
    ngx_uint_t   depth, str, esc;

    u = creor_sse_frame_member(p, last, "\"usage\"");

    if (u == NULL || *u != '{') {
        return NGX_DECLINED;
    }

    depth = 0;
    str = 0;
    esc = 0;

    for (s = u; s < last; s++) {
        if (str) {
            if (esc) {
                esc = 0;

            } else if (*s == '\\') {
                esc = 1;

            } else if (*s == '"') {
                str = 0;
            }

            continue;
        }

        if (*s == '"') {
            str = 1;

        } else if (*s == '{') {
            depth++;

        } else if (*s == '}' && --depth == 0) {
            break;
        }
    }

    if (s == last) {
        return NGX_DECLINED;
    }

    /* two counts: read in place, no parser for them */

    if (creor_sse_frame_count(u, s, "\"prompt_tokens\"", &f->input_tokens)
        == NGX_OK)
    {
        f->usage = 1;
    }

    if (creor_sse_frame_count(u, s, "\"completion_tokens\"",
                              &f->output_tokens)
        == NGX_OK)
    {
        f->usage = 1;
    }

    return NGX_OK;
}


/* a member that is a non-negative integer, within [p, last) */

static ngx_int_t
creor_sse_frame_count(u_char *p, u_char *last, const char *name,
    int64_t *out)
{
    u_char   *u;
    int64_t   n;

    u = creor_sse_frame_member(p, last, name);

    if (u == NULL || *u < '0' || *u > '9') {
        return NGX_DECLINED;
    }

    for (n = 0; u < last && *u >= '0' && *u <= '9'; u++) {
        /* exact in a double, as JSON readers see it */

        if (n >= 900719925474099LL) {
            return NGX_DECLINED;
        }

        n = n * 10 + (*u - '0');
    }

    if (u < last && (*u == '.' || *u == 'e' || *u == 'E')) {
        return NGX_DECLINED;
    }

    *out = n;

    return NGX_OK;
}


static ngx_chain_t *
creor_sse_frame_buf(creor_sse_frame_t *f, ngx_http_request_t *r,
    size_t size)
{
    u_char       *p;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    p = ngx_alloc(size, r->connection->log);
    if (p == NULL) {
        return NULL;
    }

    cl = ngx_chain_get_free_buf(r->pool, &f->free);
    if (cl == NULL) {
        ngx_free(p);
        return NULL;
    }

    b = cl->buf;
    ngx_memzero(b, sizeof(ngx_buf_t));

    b->start = p;
    b->pos = p;
    b->last = p;
    b->end = p + size;
    b->memory = 1;
    b->flush = 1;
    b->tag = (ngx_buf_tag_t) &creor_sse_frame_buf;

    return cl;
}


/* buffers the client has taken are freed, their links kept for reuse */

void
creor_sse_frame_update(creor_sse_frame_t *f, ngx_http_request_t *r,
    ngx_chain_t *out)
{
    creor_sse_bufs_update(r, &f->free, &f->busy, &out,
                          (ngx_buf_tag_t) &creor_sse_frame_buf);
}


/* the client's response header, sent with its first event */

ngx_int_t
creor_sse_frame_header(creor_sse_frame_t *f, ngx_http_request_t *r)
{
    ngx_int_t  rc;

    if (creor_sse_headers(r, &f->request_id) != NGX_OK) {
        return NGX_ERROR;
    }

    f->started = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* data of the module's own (an error event) after the provider's events */

ngx_int_t
creor_sse_frame_write(creor_sse_frame_t *f, ngx_http_request_t *r,
    ngx_str_t *data)
{
    ngx_int_t     rc;
    ngx_chain_t  *cl;

    if (!f->started && creor_sse_frame_header(f, r) != NGX_OK) {
        return NGX_ERROR;
    }

    cl = creor_sse_frame_buf(f, r, data->len);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf->last = ngx_cpymem(cl->buf->last, data->data, data->len);

    rc = ngx_http_output_filter(r, cl);

    creor_sse_frame_update(f, r, cl);

    return rc;
}


/* the end of a stream: an event the provider did not end is ended here */

ngx_int_t
creor_sse_frame_flush(creor_sse_frame_t *f, ngx_http_request_t *r)
{
    ngx_int_t     rc;
    ngx_chain_t  *out;

    out = NULL;

    if (f->len) {
        if (creor_sse_frame_append(f, (u_char *) "\n\n", 2,
                                   r->connection->log)
            != NGX_OK
            || creor_sse_frame_events(f, r, &out) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (!f->started && creor_sse_frame_header(f, r) != NGX_OK) {
        return NGX_ERROR;
    }

    if (out == NULL) {
        return NGX_OK;
    }

    rc = ngx_http_output_filter(r, out);

    creor_sse_frame_update(f, r, out);

    return rc;
}
