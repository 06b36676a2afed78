
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The reaper of a deleted agent's runs (creor_reaper.c); included from
 * ngx_creor.h.
 */


#ifndef _CREOR_REAPER_H_INCLUDED_
#define _CREOR_REAPER_H_INCLUDED_


void creor_runs_reap_kick(ngx_creor_main_conf_t *mcf);


#endif /* _CREOR_REAPER_H_INCLUDED_ */
