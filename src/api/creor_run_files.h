
/*
 * Copyright (C) ngx_creor_module authors
 *
 * A run's attachments (creor_run_files.c); included from ngx_creor.h.
 */


#ifndef _CREOR_RUN_FILES_H_INCLUDED_
#define _CREOR_RUN_FILES_H_INCLUDED_


typedef struct creor_runs_new_s  creor_runs_new_t;

typedef ngx_int_t (*creor_runs_new_pt)(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, creor_runs_new_t *nr);

/* a run being created, and its attachments being written */
struct creor_runs_new_s {
    creor_json_t           *body;
    ngx_str_t               agent;
    ngx_array_t             files;      /* of creor_part_t */
    ngx_str_t               dir;        /* "<files path>/.up-<random>" */
    creor_json_t           *list;       /* the files' objects */
    creor_json_t          **tail;
    ngx_uint_t              next;       /* the file being written */
    size_t                  off;        /* and how much of it */
    ngx_fd_t                fd;
    creor_runs_new_pt       create;     /* the run, once the files are */
    u_char                  name[NGX_MAX_PATH];
    char                    id[CREOR_ID_MAX];
};


ngx_int_t creor_runs_form(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    const char **fields, creor_json_t **body, ngx_array_t *files);
ngx_int_t creor_runs_upload(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_runs_new_t *nr);
void creor_runs_discard_files(ngx_http_request_t *r, ngx_str_t *dir,
    creor_json_t *list);
ngx_int_t creor_runs_check_signature(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx);
ngx_int_t creor_runs_file(ngx_http_request_t *r, ngx_creor_ctx_t *ctx);


#endif /* _CREOR_RUN_FILES_H_INCLUDED_ */
