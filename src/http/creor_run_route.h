
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The run a route names (creor_run_route.c); included from ngx_creor.h.
 */


#ifndef _CREOR_RUN_ROUTE_H_INCLUDED_
#define _CREOR_RUN_ROUTE_H_INCLUDED_


#include "creor_object.h"


extern creor_object_t  creor_run_object;



#endif /* _CREOR_RUN_ROUTE_H_INCLUDED_ */
