
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The end of an event's work: no write transaction may outlive it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


/*
 * Called when an event's work is done, where no transaction may be open:
 * ends a write transaction that a forgotten path left, which would hold
 * LMDB's writer lock and stop every writer of every process; and the
 * worker's read transaction, which every read shares: left active, it
 * would show later requests the store as it was.
 */

void
creor_store_guard(ngx_creor_main_conf_t *mcf, ngx_log_t *log)
{
    int  n;

    if (!mcf->opened) {
        return;
    }

    creor_store_read_done(&mcf->store);
    creor_store_read_done(&mcf->counters);

    n = creor_store_release(&mcf->store) + mcf->store.left_open
        + creor_store_release(&mcf->counters) + mcf->counters.left_open;

    if (n) {
        mcf->store.left_open = 0;
        mcf->counters.left_open = 0;

        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "creor_store: %d write transactions were left open, "
                      "aborted", n);
    }
}
