
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The capture filter, the top header and body filter (above the error
 * filter of creor_request.c), as lua-nginx-module keeps its own in
 * ngx_http_lua_capturefilter.c.  The output of a subrequest made for a
 * capture (the engine's jobs; any other that adds itself with
 * creor_capture_add()) is given to that capture and never reaches the
 * client as it is: its header is not sent, its body is consumed, or
 * passed on below the filter by the capture itself
 * (creor_capture_next_body()).  A capture knows its subrequests by a
 * member of their ctx: ctx->job for a job.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_JOB_READ_CHUNK   (64 * 1024)
#define CREOR_CAPTURES_MAX     4


static void *creor_capture_find(ngx_http_request_t *r,
    creor_capture_t **capture);
static ngx_int_t creor_capture_header_filter(ngx_http_request_t *r);
static ngx_int_t creor_capture_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t creor_job_header(ngx_http_request_t *r, void *data);
static ngx_int_t creor_job_body(ngx_http_request_t *r, ngx_chain_t *in,
    void *data);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;

static creor_capture_t   creor_job_capture = {
    offsetof(ngx_creor_ctx_t, job),
    creor_job_header,
    creor_job_body
};

static creor_capture_t  *creor_captures[CREOR_CAPTURES_MAX] = {
    &creor_job_capture
};

static ngx_uint_t        creor_ncaptures = 1;


/*
 * The capture filter: a job's reply goes to its kind, never to the
 * socketless connection.  It is the top filter, so nothing of the reply
 * reaches the postpone or write filters.
 */

ngx_int_t
creor_job_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = creor_capture_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = creor_capture_body_filter;

    return NGX_OK;
}


/* at configuration: another kind of subrequest whose output is taken */

ngx_int_t
creor_capture_add(creor_capture_t *capture)
{
    ngx_uint_t  i;

    for (i = 0; i < creor_ncaptures; i++) {
        if (creor_captures[i] == capture) {
            return NGX_OK;              /* a reload configures again */
        }
    }

    if (creor_ncaptures == CREOR_CAPTURES_MAX) {
        return NGX_ERROR;
    }

    creor_captures[creor_ncaptures++] = capture;

    return NGX_OK;
}


/* for a capture that sends on what it took: the filters below this one */

ngx_int_t
creor_capture_next_body(ngx_http_request_t *r, ngx_chain_t *in)
{
    return ngx_http_next_body_filter(r, in);
}


static void *
creor_capture_find(ngx_http_request_t *r, creor_capture_t **capture)
{
    void             *owner;
    ngx_uint_t        i;
    ngx_creor_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_creor_module);

    if (ctx == NULL) {
        return NULL;
    }

    for (i = 0; i < creor_ncaptures; i++) {
        owner = *(void **) ((u_char *) ctx + creor_captures[i]->owner);

        if (owner) {
            *capture = creor_captures[i];
            return owner;
        }
    }

    return NULL;
}


static ngx_int_t
creor_capture_header_filter(ngx_http_request_t *r)
{
    void             *owner;
    creor_capture_t  *capture;

    owner = creor_capture_find(r, &capture);

    if (owner == NULL) {
        return ngx_http_next_header_filter(r);
    }

    r->header_sent = 1;

    return capture->header(r, owner);
}


static ngx_int_t
creor_capture_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    void             *owner;
    creor_capture_t  *capture;

    owner = creor_capture_find(r, &capture);

    if (owner == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    return capture->body(r, in, owner);
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
