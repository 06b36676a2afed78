
/*
 * Copyright (C) ngx_creor_module authors
 *
 * What the tests' preloaded libraries (mdbfault.c, powercut.c) share.
 */


#ifndef PRELOAD_H
#define PRELOAD_H


#include <stdio.h>
#include <stdlib.h>


/* the value of the environment variable name into buf, if it is set */
static void
preload_env(const char *name, char *buf, size_t size)
{
    const char  *v;

    v = getenv(name);
    if (v) {
        snprintf(buf, size, "%s", v);
    }
}


#endif /* PRELOAD_H */
