
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The worker's tick: what the engine looks at when.  Every worker runs a
 * timer (5 ms with jobs in flight or streams, 200 ms idle) that drives
 * the kinds of background job of creor_job_kinds[] below:
 *
 *   commits were made    (the host's epoch moved, or a kind asked with
 *                        creor_tick_again()): the changed listeners of
 *                        creor_wakeup.c look (event streams), then each
 *                        kind's changed and scan hooks
 *   every 200 ms         (at once when work is queued): every hooks
 *   every tick           tick hooks
 *   the worker stops     the watchers of creor_wakeup.c (event streams)
 *                        are told, then the release hooks: jobs go back
 *                        to the store at once, for another worker or the
 *                        next nginx
 *
 * A new kind of background job is a file of its own (its
 * creor_job_kind_t for the detached request, its hooks for the queue it
 * keeps in the store) and a line in creor_job_kinds[].
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_TICK_BUSY        5        /* ms, with jobs or streams */
#define CREOR_TICK_IDLE        200
#define CREOR_SCAN_INTERVAL    200


static void creor_tick_handler(ngx_event_t *ev);
static void creor_tick_kick(ngx_creor_main_conf_t *mcf);
static void creor_tick_poke(ngx_creor_main_conf_t *mcf);
static void creor_tick_post(ngx_flag_t at_once);
static void creor_tick_call(size_t hook, int64_t now);


static creor_job_queue_t  creor_job_kinds[] = {

    { "run legs",
      creor_legs_init,
      creor_legs_changed,
      NULL,
      creor_legs_every,
      NULL,
      creor_legs_release,
      creor_legs_busy },

    { "webhook deliveries",
      creor_webhooks_init,
      NULL,
      creor_webhooks_scan,
      NULL,
      creor_webhooks_tick,
      creor_webhooks_release,
      creor_webhooks_busy },

    { NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL }
};


static ngx_event_t              creor_tick;
static ngx_atomic_uint_t        creor_epoch_seen;
static ngx_flag_t               creor_tick_look;
static int64_t                  creor_next_scan;
static ngx_creor_main_conf_t   *creor_mcf;


ngx_int_t
creor_dispatch_init(ngx_cycle_t *cycle, ngx_creor_main_conf_t *mcf)
{
    creor_job_queue_t  *kind;

    creor_mcf = mcf;

    creor_job_init(mcf);

    for (kind = creor_job_kinds; kind->name; kind++) {
        if (kind->init) {
            kind->init(mcf);
        }
    }

    if (creor_changed_listen(CREOR_CHANGED_WORK, creor_tick_kick)
        != NGX_OK
        || creor_changed_listen(CREOR_CHANGED_ELSEWHERE, creor_tick_poke)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    creor_epoch_seen = mcf->shared->epoch;

    creor_tick.handler = creor_tick_handler;
    creor_tick.data = mcf;
    creor_tick.log = cycle->log;
    creor_tick.cancelable = 1;

    ngx_add_timer(&creor_tick, CREOR_TICK_BUSY);

    return NGX_OK;
}


/* a kind saw something of its jobs change: the next tick looks again */

void
creor_tick_again(void)
{
    creor_tick_look = 1;
}


/* new work is waiting here: do not wait for the next tick */

static void
creor_tick_kick(ngx_creor_main_conf_t *mcf)
{
    creor_next_scan = 0;
    creor_tick_post(1);
}


/* another worker stored events: look now, not on the next tick */

static void
creor_tick_poke(ngx_creor_main_conf_t *mcf)
{
    creor_tick_post(0);
}


static void
creor_tick_post(ngx_flag_t at_once)
{
    if (creor_tick.handler == NULL || creor_tick.posted) {
        return;
    }

    if (at_once && creor_tick.timer_set) {
        ngx_del_timer(&creor_tick);
    }

    ngx_post_event(&creor_tick, &ngx_posted_events);
}


static void
creor_tick_handler(ngx_event_t *ev)
{
    int64_t             now;
    ngx_uint_t          busy;
    ngx_flag_t          exiting;
    ngx_atomic_uint_t   epoch;
    creor_job_queue_t  *kind;

    /* what the jobs' replies wrote since the last tick has ended */

    creor_store_guard(creor_mcf, ev->log);

    now = creor_now_ms();
    epoch = creor_mcf->shared->epoch;
    exiting = ngx_exiting || ngx_quit || ngx_terminate;

    if (epoch != creor_epoch_seen || creor_tick_look) {
        creor_epoch_seen = epoch;
        creor_tick_look = 0;
        creor_changed_look(creor_mcf);

        creor_tick_call(offsetof(creor_job_queue_t, changed), now);

        /* a commit may have made work: it leaves at once */

        if (!exiting) {
            creor_tick_call(offsetof(creor_job_queue_t, scan), now);
        }
    }

    if (now >= creor_next_scan) {
        creor_next_scan = now + CREOR_SCAN_INTERVAL;
        creor_tick_call(offsetof(creor_job_queue_t, every), now);
    }

    if (exiting) {

        /*
         * Clients of event streams reconnect to a new worker; jobs are
         * left to the next worker at once, not after their lease.
         */

        creor_changed_stop();

        for (kind = creor_job_kinds; kind->name; kind++) {
            if (kind->release) {
                kind->release();
            }
        }

        return;
    }

    creor_tick_call(offsetof(creor_job_queue_t, tick), now);

    busy = creor_changed_busy();

    for (kind = creor_job_kinds; kind->name; kind++) {
        if (kind->busy) {
            busy += kind->busy();
        }
    }

    creor_wakeup_listen(creor_mcf, busy != 0);

    ngx_add_timer(ev, busy ? CREOR_TICK_BUSY : CREOR_TICK_IDLE);
}


/* one of the hooks that take the time, of every kind that has it */

static void
creor_tick_call(size_t hook, int64_t now)
{
    creor_job_queue_t  *kind;
    void              (*handler)(int64_t now);

    for (kind = creor_job_kinds; kind->name; kind++) {
        handler = *(void (**)(int64_t)) ((u_char *) kind + hook);

        if (handler) {
            handler(now);
        }
    }
}
