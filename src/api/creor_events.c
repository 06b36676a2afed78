
/*
 * Copyright (C) ngx_creor_module authors
 *
 * A run's events (SPEC 8.4): the list, and the SSE stream that replays
 * what is stored after Last-Event-ID, follows live and ends after the
 * terminal event.  A stream reads the store, never a worker's memory, so
 * it sees events stored by any worker; the dispatcher's tick (or a commit
 * on this worker) tells it when to look.  A slow client is never sent
 * more than it takes: events wait in the store, not in memory.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"
#include "creor_sse_frame.h"


#define CREOR_SSE_BATCH      256        /* events a write */
#define CREOR_SSE_BYTES      (256 * 1024)


typedef struct {
    ngx_queue_t             queue;
    ngx_http_request_t     *r;
    ngx_str_t               org;
    ngx_str_t               run_id;
    uint32_t                seq;        /* the last event sent */
    ngx_uint_t              slot;       /* its run's wakeup counter */
    ngx_atomic_uint_t       slot_seen;
    ngx_msec_t              keepalive;
    ngx_event_t             ping;
    ngx_chain_t            *free;
    ngx_chain_t            *busy;
    unsigned                finished:1;
} creor_sse_t;


typedef void (*creor_sse_each_pt)(creor_sse_t *sse, void *data);


/* the events of one write, read in the store's read transaction */
typedef struct {
    uint32_t                seq[CREOR_SSE_BATCH];
    MDB_val                 data[CREOR_SSE_BATCH];
    ngx_uint_t              n;
    size_t                  size;       /* of their frames */
} creor_sse_batch_t;


static ngx_int_t creor_events_item(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, MDB_val *key, MDB_val *val, yajl_gen g);
static void creor_sse_look(creor_sse_t *sse, void *data);
static void creor_sse_bye_each(creor_sse_t *sse, void *data);
static void creor_sse_each(creor_sse_each_pt handler, void *data);
static ngx_int_t creor_sse_send(creor_sse_t *sse);
static ngx_int_t creor_sse_batch_add(uint32_t seq, MDB_val *val,
    void *data);
static ngx_int_t creor_sse_output(creor_sse_t *sse, u_char *data,
    size_t len);
static ngx_int_t creor_sse_wait(creor_sse_t *sse);
static void creor_sse_finish(creor_sse_t *sse, ngx_int_t rc);
static void creor_sse_writer(ngx_http_request_t *r);
static void creor_sse_ping(ngx_event_t *ev);
static ngx_int_t creor_sse_comment(creor_sse_t *sse, ngx_str_t *text);
static void creor_sse_forget(creor_sse_t *sse);
static void creor_sse_cleanup(void *data);


static ngx_str_t  creor_sse_keepalive = ngx_string(": keepalive\n\n");
static ngx_str_t  creor_sse_bye =
    ngx_string(": server shutting down, reconnect with Last-Event-ID\n\n");

static ngx_queue_t  creor_streams;
static ngx_uint_t   creor_nstreams;
static ngx_flag_t   creor_streams_ready;


ngx_int_t
creor_events_list(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    ngx_int_t      rc;
    creor_run_t    run;
    creor_page_t   pg;

    rc = creor_object_load(r, ctx, &creor_run_object, NULL, &run);
    if (rc != NGX_OK) {
        return rc;
    }

    ngx_memzero(&pg, sizeof(creor_page_t));

    pg.prefix.data = ngx_pnalloc(r->pool, run.id.len + 3);
    if (pg.prefix.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pg.prefix.len = ngx_sprintf(pg.prefix.data, "e:%V:", &run.id)
                    - pg.prefix.data;
    pg.filters = pg.prefix;

    return creor_page_list(r, ctx, &pg, creor_events_item, NULL);
}


/* the run the route names, if the caller may see it */


static ngx_int_t
creor_events_item(ngx_http_request_t *r, ngx_creor_ctx_t *ctx, MDB_val *key,
    MDB_val *val, yajl_gen g)
{
    u_char         err[128];
    creor_json_t  *ev;

    if (g == NULL) {
        return NGX_OK;
    }

    ev = creor_json_parse(r->pool, val->mv_data, val->mv_size, err,
                          sizeof(err));
    if (ev == NULL) {
        return NGX_ERROR;
    }

    creor_gen_value(g, ev);

    return NGX_OK;
}


/* GET /v1/runs/:id/events/stream */

ngx_int_t
creor_events_stream(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    ngx_int_t              rc, n;
    ngx_str_t             *last, after;
    creor_arg_t           *arg;
    creor_run_t            run;
    creor_sse_t           *sse;
    ngx_pool_cleanup_t    *cln;
    ngx_creor_loc_conf_t  *lcf;

    rc = creor_object_load(r, ctx, &creor_run_object, NULL, &run);
    if (rc != NGX_OK) {
        return rc;
    }

    /* where to resume: Last-Event-ID, or ?after= */

    arg = creor_arg(ctx, "after");
    last = creor_header(r, "Last-Event-ID");

    ngx_str_null(&after);

    if (arg) {
        after = arg->value;

    } else if (last) {
        after = *last;
    }

    n = 0;

    if (after.len) {
        n = (after.len <= 9) ? ngx_atoi(after.data, after.len) : NGX_ERROR;

        if (n == NGX_ERROR) {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                              arg ? "after" : "Last-Event-ID",
                              "The event id to resume after must be a "
                              "sequence number.");
        }
    }

    if (!creor_streams_ready) {
        ngx_queue_init(&creor_streams);
        creor_streams_ready = 1;
    }

    sse = ngx_pcalloc(r->pool, sizeof(creor_sse_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (sse == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_creor_module);

    sse->r = r;
    sse->org = ctx->who.org;
    sse->run_id = run.id;
    sse->seq = (uint32_t) n;
    sse->keepalive = lcf->sse_keepalive;
    sse->slot = creor_shared_slot(&run.id);
    sse->slot_seen = ctx->mcf->shared->slots[sse->slot];

    if (creor_sse_headers(r, &ctx->request_id) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->sending = 1;
    ctx->sse = sse;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    ngx_queue_insert_tail(&creor_streams, &sse->queue);
    creor_nstreams++;
    creor_wakeup_listen(ctx->mcf, 1);
    creor_metrics_sse(1);

    cln->handler = creor_sse_cleanup;
    cln->data = sse;

    sse->ping.handler = creor_sse_ping;
    sse->ping.data = sse;
    sse->ping.log = r->connection->log;

    r->main->count++;
    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = creor_sse_writer;

    if (sse->keepalive) {
        ngx_add_timer(&sse->ping, sse->keepalive);
    }

    if (creor_sse_send(sse) == NGX_ERROR) {
        creor_sse_finish(sse, NGX_ERROR);
    }

    return NGX_DONE;
}


/* tells every stream of this worker to look for new events */

void
creor_sse_notify(ngx_creor_main_conf_t *mcf)
{
    creor_sse_each(creor_sse_look, mcf);
}


static void
creor_sse_look(creor_sse_t *sse, void *data)
{
    ngx_creor_main_conf_t  *mcf = data;

    ngx_atomic_uint_t  slot;

    if (sse->r->connection->buffered) {
        return;
    }

    /* read the counter before the store: a later event moves it again */

    slot = mcf->shared->slots[sse->slot];

    if (slot == sse->slot_seen) {
        return;
    }

    sse->slot_seen = slot;

    if (creor_sse_send(sse) == NGX_ERROR) {
        creor_sse_finish(sse, NGX_ERROR);
    }
}


ngx_uint_t
creor_sse_count(void)
{
    return creor_nstreams;
}


/* a worker that is going away ends its streams: clients reconnect */

void
creor_sse_shutdown(void)
{
    creor_sse_each(creor_sse_bye_each, NULL);
}


static void
creor_sse_bye_each(creor_sse_t *sse, void *data)
{
    /* what a client logs; it resumes with Last-Event-ID */

    creor_sse_finish(sse, creor_sse_comment(sse, &creor_sse_bye));
}


/* each stream of the worker that is not finished; handler may finish it */

static void
creor_sse_each(creor_sse_each_pt handler, void *data)
{
    ngx_queue_t  *q, *next;
    creor_sse_t  *sse;

    if (!creor_streams_ready) {
        return;
    }

    for (q = ngx_queue_head(&creor_streams);
         q != ngx_queue_sentinel(&creor_streams);
         q = next)
    {
        next = ngx_queue_next(q);
        sse = ngx_queue_data(q, creor_sse_t, queue);

        if (!sse->finished) {
            handler(sse, data);
        }
    }
}


/*
 * Sends what is stored after sse->seq, a batch at a time; ends the
 * stream once the run is terminal and its last event is sent.
 */

static ngx_int_t
creor_sse_send(creor_sse_t *sse)
{
    u_char                 *buf, *p;
    MDB_txn                *txn;
    uint32_t                last;
    ngx_int_t               more;
    ngx_uint_t              i, status;
    ngx_creor_main_conf_t  *mcf;

    /*
     * Not on the stack: a send that is not held back by the client calls
     * itself for the next batch, and a batch is used up before then.
     */

    static creor_sse_batch_t  batch;

    mcf = ngx_http_get_module_main_conf(sse->r, ngx_creor_module);

    txn = creor_store_read(&mcf->store);
    if (txn == NULL) {
        return NGX_ERROR;
    }

    /* the run's header says if there is anything new */

    if (creor_events_last(&mcf->store, txn, &sse->org, &sse->run_id, &last,
                          &status)
        != NGX_OK)
    {
        creor_store_read_done(&mcf->store);
        return NGX_ERROR;
    }

    if (last <= sse->seq) {
        creor_store_read_done(&mcf->store);

        if (creor_run_terminal(status)) {
            creor_sse_finish(sse, NGX_OK);
        }

        return NGX_OK;
    }

    /* one buffer for the batch, sized as it is collected */

    batch.n = 0;
    batch.size = 0;

    if (creor_events_walk(&mcf->store, txn, &sse->run_id, sse->seq,
                          creor_sse_batch_add, &batch)
        != NGX_OK)
    {
        creor_store_read_done(&mcf->store);
        return NGX_ERROR;
    }

    if (batch.n == 0) {
        creor_store_read_done(&mcf->store);
        return NGX_OK;
    }

    buf = ngx_alloc(batch.size, ngx_cycle->log);
    if (buf == NULL) {
        creor_store_read_done(&mcf->store);
        return NGX_ERROR;
    }

    p = buf;

    for (i = 0; i < batch.n; i++) {
        p = ngx_sprintf(p, "event: run_event\nid: %uD\ndata: ",
                        batch.seq[i]);
        p = ngx_cpymem(p, batch.data[i].mv_data, batch.data[i].mv_size);
        *p++ = '\n';
        *p++ = '\n';
    }

    creor_store_read_done(&mcf->store);

    sse->seq = batch.seq[batch.n - 1];
    more = (sse->seq < last);

    if (creor_sse_output(sse, buf, p - buf) == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (sse->r->connection->buffered) {

        /* the writer takes over when the client has read */

        return NGX_OK;
    }

    if (more) {
        return creor_sse_send(sse);
    }

    if (creor_run_terminal(status)) {
        creor_sse_finish(sse, NGX_OK);
    }

    return NGX_OK;
}


/* an event of the batch, while the batch has room */

static ngx_int_t
creor_sse_batch_add(uint32_t seq, MDB_val *val, void *data)
{
    creor_sse_batch_t  *batch = data;

    batch->seq[batch->n] = seq;
    batch->data[batch->n] = *val;
    batch->n++;

    batch->size += sizeof("event: run_event\nid: \ndata: \n\n") - 1
                   + NGX_INT32_LEN + val->mv_size;

    return (batch->n < CREOR_SSE_BATCH && batch->size < CREOR_SSE_BYTES)
           ? NGX_OK : NGX_DONE;
}


/*
 * Writes data (malloc()ed, owned from here on) with a flush; buffers the
 * client has taken are freed and their chain links reused.
 */

static ngx_int_t
creor_sse_output(creor_sse_t *sse, u_char *data, size_t len)
{
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_chain_t         *cl, *out;
    ngx_http_request_t  *r;

    r = sse->r;

    cl = ngx_chain_get_free_buf(r->pool, &sse->free);
    if (cl == NULL) {
        ngx_free(data);
        return NGX_ERROR;
    }

    b = cl->buf;
    ngx_memzero(b, sizeof(ngx_buf_t));

    b->start = data;
    b->pos = data;
    b->last = data + len;
    b->end = data + len;
    b->memory = 1;
    b->flush = 1;
    b->tag = (ngx_buf_tag_t) &ngx_creor_module;

    out = cl;

    rc = ngx_http_output_filter(r, out);

    creor_sse_bufs_update(r, &sse->free, &sse->busy, &out,
                          (ngx_buf_tag_t) &ngx_creor_module);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    return creor_sse_wait(sse);
}


/*
 * A client that stops reading is given send_timeout to take something,
 * as ngx_http_writer() does, then closed: its batch is freed with it.
 */

static ngx_int_t
creor_sse_wait(creor_sse_t *sse)
{
    ngx_event_t               *wev;
    ngx_http_request_t        *r;
    ngx_http_core_loc_conf_t  *clcf;

    r = sse->r;
    wev = r->connection->write;

    if (!r->connection->buffered) {
        if (wev->timer_set) {
            ngx_del_timer(wev);
        }

        return NGX_OK;
    }

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!wev->delayed) {
        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
        ngx_add_timer(wev, clcf->send_timeout);
    }

    return NGX_OK;
}


static void
creor_sse_writer(ngx_http_request_t *r)
{
    ngx_int_t         rc;
    ngx_creor_ctx_t  *ctx;
    creor_sse_t      *sse;

    ctx = ngx_http_get_module_ctx(r, ngx_creor_module);
    sse = ctx->sse;

    if (sse->finished) {
        return;
    }

    if (r->connection->write->timedout) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, NGX_ETIMEDOUT,
                      "client timed out");
        r->connection->timedout = 1;
        creor_sse_finish(sse, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }

    rc = ngx_http_output_filter(r, NULL);

    if (rc == NGX_ERROR || creor_sse_wait(sse) != NGX_OK) {
        creor_sse_finish(sse, NGX_ERROR);
        return;
    }

    if (r->connection->buffered) {
        return;
    }

    if (creor_sse_send(sse) == NGX_ERROR) {
        creor_sse_finish(sse, NGX_ERROR);
    }
}


/* a comment line keeps proxies from closing an idle stream */

static void
creor_sse_ping(ngx_event_t *ev)
{
    creor_sse_t  *sse;

    sse = ev->data;

    if (sse->finished) {
        return;
    }

    if (!sse->r->connection->buffered) {
        if (creor_sse_comment(sse, &creor_sse_keepalive) != NGX_OK) {
            creor_sse_finish(sse, NGX_ERROR);
            return;
        }

        ngx_http_run_posted_requests(sse->r->connection);
    }

    ngx_add_timer(ev, sse->keepalive);
}


static ngx_int_t
creor_sse_comment(creor_sse_t *sse, ngx_str_t *text)
{
    u_char  *p;

    p = ngx_alloc(text->len, sse->r->connection->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, text->data, text->len);

    return creor_sse_output(sse, p, text->len) == NGX_ERROR ? NGX_ERROR
                                                            : NGX_OK;
}


static void
creor_sse_finish(creor_sse_t *sse, ngx_int_t rc)
{
    ngx_http_request_t  *r;

    if (sse->finished) {
        return;
    }

    creor_sse_forget(sse);
    r = sse->r;

    if (rc == NGX_OK) {
        rc = ngx_http_send_special(r, NGX_HTTP_LAST);
    }

    ngx_http_finalize_request(r, rc);
}


/* the stream is over: it is no longer one of the worker's */

static void
creor_sse_forget(creor_sse_t *sse)
{
    sse->finished = 1;

    if (sse->ping.timer_set) {
        ngx_del_timer(&sse->ping);
    }

    ngx_queue_remove(&sse->queue);
    creor_nstreams--;
    creor_metrics_sse(-1);
}


static void
creor_sse_cleanup(void *data)
{
    creor_sse_t  *sse = data;

    if (!sse->finished) {
        creor_sse_forget(sse);
    }

    creor_sse_bufs_free(sse->busy);
    creor_sse_bufs_free(sse->free);
}
