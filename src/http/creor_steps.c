
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Work spread over turns of the event loop: a large body or upload is
 * handled a piece a turn, so that one request never holds the worker.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


static void creor_steps_handler(ngx_event_t *ev);
static void creor_steps_cleanup(void *data);


/*
 * Runs step() on the next turn of the event loop, and on the turns after
 * while it says NGX_AGAIN, so that a large body or upload never holds the
 * worker in one long call: other connections are served between the
 * pieces.  The final result of step() finalizes the request; the caller
 * returns NGX_DONE, as given.
 */

ngx_int_t
creor_steps(ngx_http_request_t *r, ngx_creor_ctx_t *ctx, creor_step_pt step)
{
    creor_steps_t       *st;
    ngx_pool_cleanup_t  *cln;

    st = ctx->steps;

    if (st == NULL) {
        st = ngx_pcalloc(r->pool, sizeof(creor_steps_t));
        if (st == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->steps = st;
    }

    if (st->r == NULL) {
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cln->handler = creor_steps_cleanup;
        cln->data = st;

        st->r = r;
        st->ev.handler = creor_steps_handler;
        st->ev.data = st;
        st->ev.log = r->connection->log;
    }

    st->step = step;

    r->main->count++;
    ngx_post_event(&st->ev, &ngx_posted_next_events);

    return NGX_DONE;
}


static void
creor_steps_handler(ngx_event_t *ev)
{
    ngx_int_t            rc;
    creor_steps_t       *st;
    ngx_connection_t    *c;
    ngx_creor_ctx_t     *ctx;
    ngx_http_request_t  *r;

    st = ev->data;
    r = st->r;
    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_creor_module);

    rc = st->step(r, ctx);

    if (rc == NGX_AGAIN) {
        ngx_post_event(ev, &ngx_posted_next_events);
        return;
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
creor_steps_cleanup(void *data)
{
    creor_steps_t  *st = data;

    if (st->ev.posted) {
        ngx_delete_posted_event(&st->ev);
    }
}