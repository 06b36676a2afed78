
/*
 * Copyright (C) ngx_creor_module authors
 *
 * A run's events as the store keeps them: "e:<run>:<seq>", the sequence
 * number in ten digits so that key order is the order of the events.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_creor.h"


/*
 * The number of a run's last event and the run's status, from its header:
 * whether a reader has anything new, and whether more can come.  NGX_OK,
 * or NGX_ERROR if the run cannot be read.
 */

ngx_int_t
creor_events_last(creor_store_t *st, MDB_txn *txn, ngx_str_t *org,
    ngx_str_t *run_id, uint32_t *seq, ngx_uint_t *status)
{
    MDB_val          v;
    creor_run_hdr_t  hdr;
    char             key[CREOR_STORE_KEY_MAX];

    ngx_snprintf((u_char *) key, sizeof(key), "r:%V:%V%Z", org, run_id);

    if (creor_store_get(st, txn, key, &v) != CREOR_STORE_OK
        || v.mv_size < sizeof(creor_run_hdr_t))
    {
        return NGX_ERROR;
    }

    ngx_memcpy(&hdr, v.mv_data, sizeof(creor_run_hdr_t));

    *seq = hdr.seq;
    *status = hdr.status;

    return NGX_OK;
}


/*
 * The events of a run after the one numbered after, in order, until each
 * says NGX_DONE.  The values live as long as the read transaction.
 * NGX_OK, or NGX_ERROR if the store failed.
 */

ngx_int_t
creor_events_walk(creor_store_t *st, MDB_txn *txn, ngx_str_t *run_id,
    uint32_t after, creor_event_pt each, void *data)
{
    int           rc;
    size_t        plen, flen;
    uint32_t      seq;
    creor_scan_t  sc;
    char          key[CREOR_STORE_KEY_MAX];

    plen = ngx_snprintf((u_char *) key, sizeof(key), "e:%V:", run_id)
           - (u_char *) key;
    flen = ngx_snprintf((u_char *) key + plen, sizeof(key) - plen,
                        "%010uD", after + 1)
           - (u_char *) key;

    if (creor_scan_open(st, txn, &sc, key, plen, key, flen)
        != CREOR_STORE_OK)
    {
        return NGX_ERROR;
    }

    while ((rc = creor_scan_next(&sc)) == 1) {
        seq = (uint32_t) ngx_atoi((u_char *) sc.rest, sc.rest_len);

        if (each(seq, &sc.val, data) == NGX_DONE) {
            break;
        }
    }

    creor_scan_close(&sc);

    return (rc < 0) ? NGX_ERROR : NGX_OK;
}
