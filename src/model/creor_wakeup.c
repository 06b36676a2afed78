
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Wakeups between workers.  A commit that stores events bumps counters in
 * shared memory (the cheap "did my run move" test) and then writes to the
 * eventfd of every other worker that has streams or legs, so they look at
 * once instead of on their next tick.  The eventfds are made by the master
 * before the workers fork, one per worker slot, as nchan makes its pipes;
 * writes are coalesced to one per event loop turn.
 *
 * What a commit changed is announced with creor_changed(); the layers
 * above that act on it (event streams, the engine) listen with
 * creor_changed_listen(), so that neither handlers nor the state machine
 * call them.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <sys/eventfd.h>

#include "ngx_creor.h"


static void creor_wakeup_close(void *data);
static void creor_wakeup_read(ngx_event_t *rev);
static void creor_wakeup_flush(ngx_event_t *ev);
static void creor_changed_tell(ngx_creor_main_conf_t *mcf, ngx_uint_t what);
static ngx_int_t creor_changed_add(ngx_uint_t what, creor_changed_pt handler,
    creor_stop_pt stop, creor_busy_pt busy);


/* a listener of changes (what, handler) or a watcher (stop, busy) */
typedef struct {
    ngx_uint_t         what;
    creor_changed_pt   handler;
    creor_stop_pt      stop;
    creor_busy_pt      busy;
} creor_listener_t;


#define CREOR_LISTENERS_MAX  8

static creor_listener_t   creor_listeners[CREOR_LISTENERS_MAX];
static ngx_uint_t         creor_nlisteners;

static creor_wakeup_t    *creor_wakeup;       /* this worker's cycle's */
static ngx_connection_t  *creor_wakeup_conn;
static ngx_event_t        creor_wakeup_post;
static ngx_uint_t         creor_wakeup_self;


/* in the master, before fork: a channel per worker slot */

ngx_int_t
creor_wakeup_init_module(ngx_cycle_t *cycle, ngx_creor_main_conf_t *mcf)
{
    ngx_int_t            i, n;
    ngx_core_conf_t     *ccf;
    creor_wakeup_t      *w;
    ngx_pool_cleanup_t  *cln;

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    n = ngx_min(ccf->worker_processes, CREOR_WAKEUP_MAX);

    w = ngx_pcalloc(cycle->pool, sizeof(creor_wakeup_t));
    if (w == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cycle->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = creor_wakeup_close;
    cln->data = w;

    for (i = 0; i < n; i++) {
        w->fd[i] = eventfd(0, EFD_NONBLOCK|EFD_CLOEXEC);

        if (w->fd[i] == -1) {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                          "creor: eventfd() failed");
            return NGX_ERROR;
        }

        w->n++;
    }

    mcf->wakeup = w;

    return NGX_OK;
}


static void
creor_wakeup_close(void *data)
{
    creor_wakeup_t  *w = data;

    ngx_uint_t  i;

    for (i = 0; i < w->n; i++) {
        if (w->fd[i] != -1 && w->fd[i] != w->listening) {
            (void) close(w->fd[i]);
        }
    }
}


/* in a worker: listen on its own channel */

ngx_int_t
creor_wakeup_init_process(ngx_cycle_t *cycle, ngx_creor_main_conf_t *mcf)
{
    ngx_connection_t  *c;

    if (mcf->wakeup == NULL || ngx_worker >= mcf->wakeup->n) {
        return NGX_OK;
    }

    creor_wakeup = mcf->wakeup;
    creor_wakeup_self = ngx_worker;

    creor_wakeup_post.handler = creor_wakeup_flush;
    creor_wakeup_post.data = mcf;
    creor_wakeup_post.log = cycle->log;

    c = ngx_get_connection(creor_wakeup->fd[ngx_worker], cycle->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    /* the connection closes the descriptor; the cycle cleanup must not */

    creor_wakeup->listening = creor_wakeup->fd[ngx_worker];

    c->data = mcf;
    c->read->handler = creor_wakeup_read;
    c->read->log = cycle->log;

    creor_wakeup_conn = c;

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* before nginx checks an exiting worker for connections left open */

void
creor_wakeup_exit_process(void)
{
    if (creor_wakeup_conn) {
        ngx_close_connection(creor_wakeup_conn);
        creor_wakeup_conn = NULL;
    }

    if (creor_wakeup_post.posted) {
        ngx_delete_posted_event(&creor_wakeup_post);
    }

    creor_wakeup = NULL;
}


/* whether this worker wants to hear of events: it has streams or legs */

void
creor_wakeup_listen(ngx_creor_main_conf_t *mcf, ngx_flag_t on)
{
    if (creor_wakeup == NULL) {
        return;
    }

    if ((ngx_atomic_uint_t) on != mcf->shared->listening[creor_wakeup_self]) {
        mcf->shared->listening[creor_wakeup_self] = on;
    }
}


/* after a commit that stored events: once at the end of this turn */

void
creor_wakeup_others(void)
{
    if (creor_wakeup == NULL || creor_wakeup_post.posted) {
        return;
    }

    ngx_post_event(&creor_wakeup_post, &ngx_posted_events);
}


static void
creor_wakeup_flush(ngx_event_t *ev)
{
    uint64_t                one;
    ngx_uint_t              i;
    ngx_creor_main_conf_t  *mcf;

    mcf = ev->data;
    one = 1;

    for (i = 0; i < creor_wakeup->n; i++) {
        if (i == creor_wakeup_self || !mcf->shared->listening[i]) {
            continue;
        }

        /* a full counter (EAGAIN) is a wakeup still pending: fine */

        (void) write(creor_wakeup->fd[i], &one, sizeof(one));
    }
}


static void
creor_wakeup_read(ngx_event_t *rev)
{
    uint64_t           n;
    ngx_connection_t  *c;

    c = rev->data;

    /* the count does not matter: the store says what moved */

    (void) read(c->fd, &n, sizeof(n));

    creor_changed_tell(c->data, CREOR_CHANGED_ELSEWHERE);
}


/* in a worker, at its start: who acts on which changes */

ngx_int_t
creor_changed_listen(ngx_uint_t what, creor_changed_pt handler)
{
    return creor_changed_add(what, handler, NULL, NULL);
}


/*
 * After a commit: events of run_id (of every run if NULL) were stored,
 * or work was queued.  Whoever is told reads the store, so the request's
 * group commit goes first; the slot before the epoch, so that a worker
 * that sees the epoch move sees the slot.
 */

void
creor_changed(ngx_creor_main_conf_t *mcf, ngx_str_t *run_id,
    ngx_uint_t what)
{
    ngx_uint_t  i;

    (void) creor_store_group_commit(&mcf->store);

    if (what & CREOR_CHANGED_EVENTS) {

        if (run_id) {
            (void) ngx_atomic_fetch_add(
                           &mcf->shared->slots[creor_shared_slot(run_id)], 1);

        } else {
            for (i = 0; i < CREOR_SHARED_SLOTS; i++) {
                (void) ngx_atomic_fetch_add(&mcf->shared->slots[i], 1);
            }
        }

        (void) ngx_atomic_fetch_add(&mcf->shared->epoch, 1);
    }

    creor_changed_tell(mcf, what);

    if (what & CREOR_CHANGED_EVENTS) {
        creor_wakeup_others();
    }
}


/*
 * From the engine's tick, when the host's epoch moved: events stored by
 * another worker (or by this one) may be new, the EVENTS listeners look.
 */

void
creor_changed_look(ngx_creor_main_conf_t *mcf)
{
    creor_changed_tell(mcf, CREOR_CHANGED_EVENTS);
}


/*
 * In a worker, at its start: a layer that holds connections open while
 * it waits for changes (event streams).  The engine's tick asks whether
 * it has any (the tick stays fast, other workers wake this one) and tells
 * it when the worker stops, without naming it.
 */

ngx_int_t
creor_changed_watch(creor_stop_pt stop, creor_busy_pt busy)
{
    return creor_changed_add(0, NULL, stop, busy);
}


static ngx_int_t
creor_changed_add(ngx_uint_t what, creor_changed_pt handler,
    creor_stop_pt stop, creor_busy_pt busy)
{
    creor_listener_t  *l;

    if (creor_nlisteners == CREOR_LISTENERS_MAX) {
        return NGX_ERROR;
    }

    l = &creor_listeners[creor_nlisteners++];

    l->what = what;
    l->handler = handler;
    l->stop = stop;
    l->busy = busy;

    return NGX_OK;
}


void
creor_changed_stop(void)
{
    ngx_uint_t  i;

    for (i = 0; i < creor_nlisteners; i++) {
        if (creor_listeners[i].stop) {
            creor_listeners[i].stop();
        }
    }
}


ngx_uint_t
creor_changed_busy(void)
{
    ngx_uint_t  i, n;

    n = 0;

    for (i = 0; i < creor_nlisteners; i++) {
        if (creor_listeners[i].busy) {
            n += creor_listeners[i].busy();
        }
    }

    return n;
}


static void
creor_changed_tell(ngx_creor_main_conf_t *mcf, ngx_uint_t what)
{
    ngx_uint_t  i;

    for (i = 0; i < creor_nlisteners; i++) {
        if (creor_listeners[i].what & what) {
            creor_listeners[i].handler(mcf);
        }
    }
}
