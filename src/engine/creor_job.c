
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The detached-job engine: a request that no client made, on a connection
 * without a socket, whose POST subrequest goes to an internal location
 * (the operator's proxy_pass).  What comes back is taken by the capture
 * filter below, not sent anywhere: the job's kind (creor_job_kind_t) is
 * told the status and each piece of the reply (by the capture filter,
 * creor_capture.c), and when the call is over.
 *
 * Claiming, leases and retries are the kind's: run legs (creor_legs.c)
 * keep them on the run, webhook deliveries (creor_webhooks.c) on the
 * delivery record; the worker's tick (creor_tick.c) drives them.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_JOB_READ_CHUNK   (64 * 1024)


static ngx_int_t creor_job_done(ngx_http_request_t *sr, void *data,
    ngx_int_t rc);
static void creor_job_parent_handler(ngx_http_request_t *r);
static void creor_job_timeout_handler(ngx_event_t *ev);
static void creor_job_empty_handler(ngx_event_t *ev);
static ngx_int_t creor_job_header(ngx_http_request_t *r, void *data);
static ngx_int_t creor_job_body(ngx_http_request_t *r, ngx_chain_t *in,
    void *data);


static ngx_creor_main_conf_t   *creor_mcf;

/* what $remote_addr and friends show in the job's location */
static struct sockaddr_in       creor_job_addr;

/* a job's reply goes to its kind (the capture filter, creor_capture.c) */

static creor_capture_t          creor_job_capture = {
    offsetof(ngx_creor_ctx_t, job),
    creor_job_header,
    creor_job_body
};

static ngx_str_t  creor_post = ngx_string("POST");


void
creor_job_init(ngx_creor_main_conf_t *mcf)
{
    creor_mcf = mcf;

    creor_job_addr.sin_family = AF_INET;
    creor_job_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}


/*
 * A connection without a socket (fd -1, so nginx's pipe and writer leave
 * it alone), a request on it, and a POST subrequest of that request to
 * uri, whose output the capture filter takes.  The job is returned with
 * size zeroed bytes of the kind's own (job->data); it starts when
 * creor_job_run() is called, after the kind has kept it somewhere.
 */

creor_job_t *
creor_job_create(creor_job_kind_t *kind, size_t size, ngx_str_t *uri,
    ngx_str_t *body, ngx_keyval_t *headers, ngx_uint_t nheaders)
{
    ngx_uint_t                    i;
    ngx_log_t                    *log;
    ngx_buf_t                    *b;
    ngx_pool_t                   *pool;
    ngx_chain_t                  *cl;
    creor_job_t                  *job;
    ngx_table_elt_t              *h;
    ngx_connection_t             *c, *saved;
    ngx_creor_ctx_t              *ctx, *sctx;
    ngx_http_request_t           *r, *sr;
    ngx_http_log_ctx_t           *lctx;
    ngx_http_connection_t        *hc;
    ngx_http_request_body_t      *rb;
    ngx_http_post_subrequest_t   *ps;

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    job = ngx_pcalloc(pool, sizeof(creor_job_t));
    log = ngx_pcalloc(pool, sizeof(ngx_log_t));
    lctx = ngx_pcalloc(pool, sizeof(ngx_http_log_ctx_t));
    hc = ngx_pcalloc(pool, sizeof(ngx_http_connection_t));

    if (job == NULL || log == NULL || lctx == NULL || hc == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    job->data = ngx_pcalloc(pool, size);
    if (job->data == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    job->pool = pool;
    job->kind = kind;

    *log = *ngx_cycle->log;
    log->data = lctx;
    log->handler = NULL;
    log->action = (char *) kind->action;

    /* ngx_get_connection() wants a valid descriptor with some events */

    saved = ngx_cycle->files ? ngx_cycle->files[0] : NULL;

    c = ngx_get_connection(0, log);

    if (ngx_cycle->files) {
        ngx_cycle->files[0] = saved;
    }

    if (c == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    c->fd = (ngx_socket_t) -1;
    c->pool = pool;
    c->log = log;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);
    c->log_error = NGX_ERROR_INFO;
    c->sockaddr = (struct sockaddr *) &creor_job_addr;
    c->socklen = sizeof(struct sockaddr_in);
    c->local_sockaddr = (struct sockaddr *) &creor_job_addr;
    c->local_socklen = sizeof(struct sockaddr_in);
    ngx_str_set(&c->addr_text, "127.0.0.1");
    c->tcp_nodelay = NGX_TCP_NODELAY_DISABLED;
    c->tcp_nopush = NGX_TCP_NOPUSH_DISABLED;
    c->read->log = log;
    c->write->log = log;

    /*
     * nothing is read from or written to it: the upstream module must
     * never register it with the event method, nor wait for it
     */

    c->read->active = 1;
    c->write->active = 1;
    c->write->ready = 1;
    c->read->handler = creor_job_empty_handler;
    c->write->handler = creor_job_empty_handler;

    log->connection = c->number;
    lctx->connection = c;

    job->c = c;

    hc->conf_ctx = creor_mcf->api_ctx;
    c->data = hc;

    r = ngx_http_create_request(c);
    if (r == NULL) {
        goto failed;
    }

    c->data = r;
    c->requests = 1;
    job->r = r;

    r->method = NGX_HTTP_POST;
    r->method_name = creor_post;
    r->http_version = NGX_HTTP_VERSION_11;
    ngx_str_set(&r->uri, "/");
    r->unparsed_uri = r->uri;
    r->valid_unparsed_uri = 1;
    r->write_event_handler = creor_job_parent_handler;
    r->read_event_handler = ngx_http_block_reading;

    /* the subrequest shares these: proxy_pass sends them on */

    if (creor_json_request_headers(r, nheaders) != NGX_OK) {
        goto failed;
    }

    for (i = 0; i < nheaders; i++) {
        h = ngx_list_push(&r->headers_in.headers);
        if (h == NULL) {
            goto failed;
        }

        h->key = headers[i].key;
        h->value = headers[i].value;
        h->lowcase_key = ngx_pnalloc(r->pool, h->key.len);
        if (h->lowcase_key == NULL) {
            goto failed;
        }

        h->hash = ngx_hash_strlow(h->lowcase_key, h->key.data, h->key.len);
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_creor_ctx_t));
    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t));
    if (ctx == NULL || ps == NULL) {
        goto failed;
    }

    ctx->mcf = creor_mcf;
    ctx->job = job;
    ngx_http_set_ctx(r, ctx, ngx_creor_module);

    ps->handler = creor_job_done;
    ps->data = job;

    if (ngx_http_subrequest(r, uri, NULL, &sr, ps, 0) != NGX_OK) {
        goto failed;
    }

    sr->method = NGX_HTTP_POST;
    sr->method_name = creor_post;

    rb = ngx_pcalloc(r->pool, sizeof(ngx_http_request_body_t));
    b = ngx_create_temp_buf(r->pool, body->len ? body->len : 1);
    cl = ngx_alloc_chain_link(r->pool);
    sctx = ngx_pcalloc(r->pool, sizeof(ngx_creor_ctx_t));

    if (rb == NULL || b == NULL || cl == NULL || sctx == NULL) {
        goto failed;
    }

    b->last = ngx_cpymem(b->pos, body->data, body->len);
    b->last_buf = 1;
    cl->buf = b;
    cl->next = NULL;
    rb->bufs = cl;

    sr->request_body = rb;
    sr->headers_in.content_length_n = body->len;

    sctx->mcf = creor_mcf;
    sctx->job = job;
    ngx_http_set_ctx(sr, sctx, ngx_creor_module);

    return job;

failed:

    if (job->r) {
        job->kind = NULL;       /* the kind has not kept it yet */
        creor_job_destroy(job);
        return NULL;
    }

    c->destroyed = 1;
    c->fd = 0;
    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
    ngx_destroy_pool(pool);

    return NULL;
}


/* the call starts; timeout 0: the location's own timeouts only */

void
creor_job_run(creor_job_t *job, ngx_msec_t timeout)
{
    if (timeout) {
        job->timer.handler = creor_job_timeout_handler;
        job->timer.data = job;
        job->timer.log = job->c->log;
        ngx_add_timer(&job->timer, timeout);
    }

    ngx_http_run_posted_requests(job->c);
}


/* the subrequest is over, well or not: the kind decides later */

static ngx_int_t
creor_job_done(ngx_http_request_t *sr, void *data, ngx_int_t rc)
{
    creor_job_t  *job = data;

    if (job->destroyed) {
        return NGX_OK;
    }

    if (job->status == 0) {
        job->status = (rc >= NGX_HTTP_SPECIAL_RESPONSE || rc == NGX_ERROR)
                      ? (ngx_uint_t) NGX_HTTP_BAD_GATEWAY
                      : sr->headers_out.status;
    }

    job->rc = rc;
    job->done = 1;

    /* no error page: nobody would read it */

    return NGX_OK;
}


static void
creor_job_parent_handler(ngx_http_request_t *r)
{
    creor_job_t      *job;
    ngx_creor_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_creor_module);

    if (ctx == NULL || ctx->job == NULL) {
        return;
    }

    job = ctx->job;

    if (!job->done || job->destroyed) {
        return;
    }

    if (job->timer.timer_set) {
        ngx_del_timer(&job->timer);
    }

    job->kind->finish(job);
}


/* the call took too long: it is closed and counts as a failed one */

static void
creor_job_timeout_handler(ngx_event_t *ev)
{
    creor_job_t  *job = ev->data;

    ngx_log_error(NGX_LOG_WARN, job->c->log, 0,
                  "creor: %s timed out", job->kind->action);

    job->timed_out = 1;
    job->done = 1;

    if (job->status == 0 || (job->status >= 200 && job->status < 300)) {
        job->status = NGX_HTTP_GATEWAY_TIME_OUT;
    }

    job->kind->finish(job);
}


/*
 * Frees the request (its cleanups close the upstream connection if the
 * call is still on) and the connection.  The extra reference keeps the
 * subrequest's own finalization from freeing the request under us.
 */

void
creor_job_destroy(creor_job_t *job)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    if (job->destroyed) {
        return;
    }

    job->destroyed = 1;

    if (job->timer.timer_set) {
        ngx_del_timer(&job->timer);
    }

    if (job->kind && job->kind->end) {
        job->kind->end(job);
    }

    r = job->r;
    c = job->c;

    r->count++;
    r->logged = 1;

    ngx_http_free_request(r, 0);

    c->destroyed = 1;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    c->read->closed = 1;
    c->write->closed = 1;
    c->read->active = 0;
    c->write->active = 0;

    c->fd = 0;
    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;

    ngx_destroy_pool(job->pool);
}


static void
creor_job_empty_handler(ngx_event_t *ev)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ev->log, 0, "creor job event");
}


ngx_int_t
creor_job_filter_init(ngx_conf_t *cf)
{
    return creor_capture_add(&creor_job_capture);
}


static ngx_int_t
creor_job_header(ngx_http_request_t *r, void *data)
{
    creor_job_t  *job = data;

    job->status = r->headers_out.status;

    if (job->kind->header && !job->destroyed) {
        return job->kind->header(job, r);
    }

    return NGX_OK;
}


/* each piece in memory, read from a temp file if need be */

static ngx_int_t
creor_job_body(ngx_http_request_t *r, ngx_chain_t *in, void *data)
{
    creor_job_t  *job = data;

    u_char       *buf;
    off_t         off;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_pool_t   *pool;
    ngx_chain_t  *cl;

    pool = NULL;
    buf = NULL;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (job->kind->piece && !job->destroyed && !job->ignore_body) {

            if (pool == NULL) {
                pool = ngx_create_pool(16384, r->connection->log);
                if (pool == NULL) {
                    return NGX_ERROR;
                }
            }

            if (ngx_buf_in_memory(b)) {
                if (b->last > b->pos
                    && job->kind->piece(job, b->pos, b->last - b->pos, pool)
                       != NGX_OK)
                {
                    job->ignore_body = 1;
                }

            } else if (b->in_file) {

                /* a reply buffered to disk (proxy_buffering on): by pieces */

                if (buf == NULL) {
                    buf = ngx_pnalloc(pool, CREOR_JOB_READ_CHUNK);
                    if (buf == NULL) {
                        ngx_destroy_pool(pool);
                        return NGX_ERROR;
                    }
                }

                for (off = b->file_pos;
                     off < b->file_last && !job->ignore_body;
                     off += n)
                {
                    n = ngx_min(b->file_last - off, CREOR_JOB_READ_CHUNK);
                    n = ngx_read_file(b->file, buf, n, off);

                    if (n <= 0
                        || job->kind->piece(job, buf, n, pool) != NGX_OK)
                    {
                        job->ignore_body = 1;
                    }
                }
            }
        }

        b->pos = b->last;
        b->file_pos = b->file_last;
    }

    if (pool) {
        if (job->kind->pieces_done && !job->destroyed) {
            job->kind->pieces_done(job, pool);
        }

        ngx_destroy_pool(pool);
    }

    return NGX_OK;
}
