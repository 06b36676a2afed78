
/*
 * Copyright (C) ngx_creor_module authors
 */


#ifndef _CREOR_DELIVERY_H_INCLUDED_
#define _CREOR_DELIVERY_H_INCLUDED_


/* included by ngx_creor.h; the job kind's entry points */

void creor_webhooks_init(ngx_creor_main_conf_t *mcf);
void creor_webhooks_scan(int64_t now);
void creor_webhooks_tick(int64_t now);
void creor_webhooks_release(void);
ngx_uint_t creor_webhooks_busy(void);
ngx_int_t creor_webhooks_add_variables(ngx_conf_t *cf);


#endif /* _CREOR_DELIVERY_H_INCLUDED_ */
