
/*
 * Copyright (C) ngx_creor_module authors
 *
 * Model providers: the creor_provider directive and the lookup of a
 * "provider/model" name, for chat completions and the built-in executor.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


/*
 * "provider/name": the creor_provider of that name, and in *name the
 * model's own name, what the provider is asked for.  Chat completions
 * and built-in run legs route alike.
 */

creor_provider_t *
creor_provider_find(ngx_array_t *providers, ngx_str_t *model,
    ngx_str_t *name)
{
    u_char            *slash;
    ngx_uint_t         i;
    creor_provider_t  *pv;

    slash = ngx_strlchr(model->data, model->data + model->len, '/');

    if (slash == NULL || slash == model->data
        || slash + 1 == model->data + model->len
        || providers == NULL || providers == NGX_CONF_UNSET_PTR)
    {
        return NULL;
    }

    pv = providers->elts;

    for (i = 0; i < providers->nelts; i++) {
        if (pv[i].name.len == (size_t) (slash - model->data)
            && ngx_strncmp(pv[i].name.data, model->data, pv[i].name.len)
               == 0)
        {
            name->data = slash + 1;
            name->len = model->data + model->len - name->data;

            return &pv[i];
        }
    }

    return NULL;
}


/* creor_provider name uri; */

char *
creor_provider_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_creor_loc_conf_t  *lcf = conf;

    ngx_str_t         *value;
    ngx_uint_t         i;
    creor_provider_t  *pv;

    value = cf->args->elts;

    if (value[1].len == 0
        || ngx_strlchr(value[1].data, value[1].data + value[1].len, '/'))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"creor_provider\": invalid name \"%V\": a "
                           "name is not empty and has no \"/\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (value[2].len == 0 || value[2].data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"creor_provider\": invalid uri \"%V\": the "
                           "uri of a location starts with \"/\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    if (lcf->providers == NGX_CONF_UNSET_PTR) {
        lcf->providers = ngx_array_create(cf->pool, 4,
                                          sizeof(creor_provider_t));
        if (lcf->providers == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    pv = lcf->providers->elts;

    for (i = 0; i < lcf->providers->nelts; i++) {
        if (pv[i].name.len == value[1].len
            && ngx_strncmp(pv[i].name.data, value[1].data, value[1].len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"creor_provider\": \"%V\" is duplicate",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    pv = ngx_array_push(lcf->providers);
    if (pv == NULL) {
        return NGX_CONF_ERROR;
    }

    pv->name = value[1];
    pv->uri = value[2];

    return NGX_CONF_OK;
}
