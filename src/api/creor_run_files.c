
/*
 * Copyright (C) ngx_creor_module authors
 *
 * A run's attachments (SPEC 8.2): the multipart form that creates a run
 * with files, writing them a piece a turn, and serving them back, to a
 * key or to a signed URL's bearer (the executor).
 *
 * The files of run R are "<creor_files_path>/R/<file id>", listed in the
 * run's document ("files": id, name, type, size).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>

#include "ngx_creor.h"


static ngx_int_t creor_runs_upload_dir(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx, creor_runs_new_t *nr);
static ngx_int_t creor_runs_write_step(ngx_http_request_t *r,
    ngx_creor_ctx_t *ctx);
static ngx_int_t creor_runs_file_item(ngx_http_request_t *r,
    creor_runs_new_t *nr, creor_part_t *part);
static void creor_runs_upload_cleanup(void *data);
static ngx_int_t creor_runs_file_headers(ngx_http_request_t *r,
    creor_json_t *f, ngx_str_t *fid);


/*
 * The form of fields (a NULL-terminated list): as text, "inputs" and
 * "metadata" as JSON strings; "files" the file parts.
 */

ngx_int_t
creor_runs_form(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    const char **fields, creor_json_t **body, ngx_array_t *files)
{
    u_char                 err[128], *name;
    ngx_str_t              ct;
    ngx_flag_t             too_many;
    ngx_uint_t             i;
    ngx_array_t            parts;
    const char           **f;
    creor_part_t          *part, *file;
    creor_json_t          *obj, *v;
    ngx_creor_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_creor_module);
    ct = r->headers_in.content_type->value;

    if (creor_multipart_parse(r->pool, &ct, &ctx->body, &parts, err,
                              sizeof(err))
        != NGX_OK)
    {
        return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR", NULL,
                          "%s", err);
    }

    obj = creor_json_new(r->pool, CREOR_JSON_OBJECT, NULL, 0);
    if (obj == NULL) {
        return NGX_ERROR;
    }

    part = parts.elts;

    for (i = 0; i < parts.nelts; i++) {

        if (part[i].name.len == 5
            && ngx_strncmp(part[i].name.data, "files", 5) == 0)
        {
            if (!part[i].is_file) {
                return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                                  "files", "'files' must be file parts.");
            }

            if (files->nelts == CREOR_FILES_MAX) {
                return creor_fail(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                  "TOO_MANY_FILES", "files",
                                  "At most %d files may be attached.",
                                  CREOR_FILES_MAX);
            }

            if (part[i].data.len > CREOR_FILE_SIZE_MAX) {
                return creor_fail(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                  "FILE_TOO_LARGE", "files",
                                  "A file may be at most 10 MB.");
            }

            if (part[i].data.len == 0) {
                return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                                  "files", "Empty files are rejected.");
            }

            if (part[i].filename.len == 0 || part[i].filename.len > 255
                || !creor_utf8_valid(part[i].filename.data,
                                     part[i].filename.len)
                || ngx_strlchr(part[i].filename.data,
                               part[i].filename.data + part[i].filename.len,
                               '\0'))
            {
                return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                                  "files", "A file needs a UTF-8 file name "
                                  "of 1 to 255 bytes.");
            }

            file = ngx_array_push(files);
            if (file == NULL) {
                return NGX_ERROR;
            }

            *file = part[i];
            continue;
        }

        for (f = fields; *f; f++) {
            if (ngx_strlen(*f) == part[i].name.len
                && ngx_strncmp(*f, part[i].name.data, part[i].name.len) == 0)
            {
                break;
            }
        }

        if (*f == NULL || part[i].is_file) {
            name = ngx_pnalloc(r->pool, part[i].name.len + 1);
            if (name == NULL) {
                return NGX_ERROR;
            }

            ngx_cpystrn(name, part[i].name.data, part[i].name.len + 1);

            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "UNKNOWN_PARAMETER",
                              (char *) name, "Unknown form field.");
        }

        if (creor_json_get(obj, *f)) {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                              *f, "'%s' is given twice.", *f);
        }

        if (!creor_utf8_valid(part[i].data.data, part[i].data.len)
            || ngx_strlchr(part[i].data.data,
                           part[i].data.data + part[i].data.len, '\0'))
        {
            return creor_fail(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                              *f, "'%s' is not UTF-8 text.", *f);
        }

        if (ngx_strcmp(*f, "inputs") == 0 || ngx_strcmp(*f, "metadata") == 0)
        {
            v = creor_json_parse_max(r->pool, part[i].data.data,
                                     part[i].data.len, lcf->json_max_values,
                                     &too_many, err, sizeof(err));
            if (v == NULL) {
                return creor_fail(r, too_many
                                     ? NGX_HTTP_REQUEST_ENTITY_TOO_LARGE
                                     : NGX_HTTP_BAD_REQUEST,
                                  too_many ? "BODY_TOO_LARGE"
                                           : "INVALID_JSON",
                                  *f, "'%s': %s", *f, err);
            }

        } else {
            v = creor_json_new(r->pool, CREOR_JSON_STRING,
                               (char *) part[i].data.data, part[i].data.len);
        }

        if (creor_json_set(obj, *f, v) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    *body = obj;

    return NGX_OK;
}


/*
 * Attachments are written before the run's transaction, which must stay
 * short, and a piece a turn of the event loop (creor_steps()); after the
 * last one, nr->create makes the run.
 */

ngx_int_t
creor_runs_upload(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_runs_new_t *nr)
{
    if (creor_runs_upload_dir(r, ctx, nr) != NGX_OK) {
        return NGX_DECLINED;
    }

    ctx->data = nr;

    return creor_steps(r, ctx, creor_runs_write_step);
}


/* no run: the attachments written so far and their directory go */

void
creor_runs_discard_files(ngx_http_request_t *r, ngx_str_t *dir,
    creor_json_t *list)
{
    u_char        name[NGX_MAX_PATH];
    creor_json_t  *f, *id;

    for (f = list->child; f; f = f->next) {
        id = creor_json_get(f, "id");

        if (id && dir->len + id->str.len + 2 < NGX_MAX_PATH) {
            ngx_sprintf(name, "%s/%V%Z", dir->data, &id->str);
            (void) ngx_delete_file(name);
        }
    }

    if (ngx_delete_dir(dir->data) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, ngx_errno,
                      ngx_delete_dir_n " \"%s\" failed", dir->data);
    }
}


/*
 * The files go to "<files path>/.up-<random>/<file id>"; the directory is
 * renamed to the run's id once the run exists.
 */

static ngx_int_t
creor_runs_upload_dir(ngx_http_request_t *r, ngx_creor_ctx_t *ctx,
    creor_runs_new_t *nr)
{
    u_char              *p, rnd[12];
    ngx_pool_cleanup_t  *cln;

    if (ctx->mcf->files_path.len + 64 > NGX_MAX_PATH
        || creor_random(rnd, sizeof(rnd)) != 0)
    {
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    nr->list = creor_json_new(r->pool, CREOR_JSON_ARRAY, NULL, 0);
    nr->dir.data = ngx_pnalloc(r->pool, ctx->mcf->files_path.len + 32);
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (nr->list == NULL || nr->dir.data == NULL || cln == NULL) {
        return NGX_ERROR;
    }

    nr->tail = &nr->list->child;

    cln->handler = creor_runs_upload_cleanup;
    cln->data = nr;

    p = ngx_sprintf(nr->dir.data, "%V/.up-", &ctx->mcf->files_path);
    p = ngx_hex_dump(p, rnd, sizeof(rnd));
    *p = '\0';
    nr->dir.len = p - nr->dir.data;

    if (ngx_create_dir(nr->dir.data, 0700) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, ngx_errno,
                      ngx_create_dir_n " \"%s\" failed", nr->dir.data);
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    return NGX_OK;
}


/*
 * Writes CREOR_IO_CHUNK of the attachments a turn; after the last piece,
 * creates the run.
 */

static ngx_int_t
creor_runs_write_step(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    size_t             n;
    ssize_t            written;
    ngx_int_t          rc;
    creor_part_t      *part;
    creor_runs_new_t  *nr;

    nr = ctx->data;

    if (nr->next == nr->files.nelts) {
        return creor_handler_done(r, ctx, nr->create(r, ctx, nr));
    }

    part = (creor_part_t *) nr->files.elts + nr->next;

    if (nr->fd == NGX_INVALID_FILE) {

        if (creor_make_id(nr->id, sizeof(nr->id), "file_") != 0) {
            rc = creor_fail_store(r, CREOR_STORE_ERROR);
            goto failed;
        }

        ngx_sprintf(nr->name, "%V/%s%Z", &nr->dir, nr->id);

        nr->fd = ngx_open_file(nr->name, NGX_FILE_WRONLY,
                               NGX_FILE_CREATE_OR_OPEN, 0600);
        if (nr->fd == NGX_INVALID_FILE) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, ngx_errno,
                          ngx_open_file_n " \"%s\" failed", nr->name);
            rc = creor_fail_store(r, CREOR_STORE_ERROR);
            goto failed;
        }

        nr->off = 0;
    }

    n = ngx_min(part->data.len - nr->off, CREOR_IO_CHUNK);

    written = ngx_write_fd(nr->fd, part->data.data + nr->off, n);

    if (written != (ssize_t) n) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, ngx_errno,
                      "writing \"%s\" failed", nr->name);
        rc = creor_fail_store(r, CREOR_STORE_FULL);
        goto failed;
    }

    nr->off += n;

    if (nr->off < part->data.len) {
        return NGX_AGAIN;
    }

    ngx_close_file(nr->fd);
    nr->fd = NGX_INVALID_FILE;

    if (creor_runs_file_item(r, nr, part) != NGX_OK) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto failed;
    }

    nr->next++;

    return NGX_AGAIN;

failed:

    if (nr->fd != NGX_INVALID_FILE) {
        ngx_close_file(nr->fd);
        nr->fd = NGX_INVALID_FILE;
        (void) ngx_delete_file(nr->name);
    }

    creor_runs_discard_files(r, &nr->dir, nr->list);

    return creor_handler_done(r, ctx, rc);
}


/* the file's object in the run: id, name, type, size */

static ngx_int_t
creor_runs_file_item(ngx_http_request_t *r, creor_runs_new_t *nr,
    creor_part_t *part)
{
    u_char        *p;
    ngx_str_t      ct;
    creor_json_t  *item;

    item = creor_json_new(r->pool, CREOR_JSON_OBJECT, NULL, 0);
    if (item == NULL) {
        return NGX_ERROR;
    }

    ct = part->content_type;

    if (ct.len == 0 || !creor_utf8_valid(ct.data, ct.len)) {
        ngx_str_set(&ct, "application/octet-stream");
    }

    p = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (creor_json_set(item, "id",
                       creor_json_new(r->pool, CREOR_JSON_STRING, nr->id,
                                      ngx_strlen(nr->id))) != NGX_OK
        || creor_json_set(item, "name",
                          creor_json_new(r->pool, CREOR_JSON_STRING,
                                         (char *) part->filename.data,
                                         part->filename.len)) != NGX_OK
        || creor_json_set(item, "type",
                          creor_json_new(r->pool, CREOR_JSON_STRING,
                                         (char *) ct.data, ct.len))
           != NGX_OK
        || creor_json_set(item, "size",
                          creor_json_new(r->pool, CREOR_JSON_NUMBER,
                                         (char *) p,
                                         ngx_sprintf(p, "%uz",
                                                     part->data.len)
                                         - p)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    item->key.len = 0;

    *nr->tail = item;
    nr->tail = &item->next;
    nr->list->count++;

    return NGX_OK;
}


static void
creor_runs_upload_cleanup(void *data)
{
    creor_runs_new_t  *nr = data;

    if (nr->fd != NGX_INVALID_FILE) {
        ngx_close_file(nr->fd);
        nr->fd = NGX_INVALID_FILE;
    }
}


ngx_int_t
creor_runs_check_signature(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    time_t        expires;
    u_char        hex[2 * CREOR_HASH_LEN];
    creor_arg_t  *e, *s;

    e = creor_arg(ctx, "expires");
    s = creor_arg(ctx, "signature");

    if (e == NULL || s == NULL || s->value.len != sizeof(hex)) {
        goto invalid;
    }

    expires = ngx_atotm(e->value.data, e->value.len);

    if (expires == NGX_ERROR || expires < ngx_time()) {
        goto invalid;
    }

    creor_file_signature(ctx->mcf, &ctx->params[0], &ctx->params[1], expires,
                         hex);

    if (CRYPTO_memcmp(hex, s->value.data, sizeof(hex)) != 0) {
        goto invalid;
    }

    ctx->signed_url = 1;

    return NGX_OK;

invalid:

    return creor_fail(r, NGX_HTTP_UNAUTHORIZED, "AUTH_KEY_INVALID", NULL,
                      "The file URL's signature is invalid or expired.");
}


/* GET /v1/runs/:id/files/:fileId: the attachment itself */

ngx_int_t
creor_runs_file(ngx_http_request_t *r, ngx_creor_ctx_t *ctx)
{
    int               rc;
    u_char           *p;
    MDB_txn          *txn;
    ngx_buf_t        *b;
    ngx_str_t        *fid, type, name;
    ngx_chain_t       out;
    creor_run_t       run;
    creor_json_t     *f, *v;
    ngx_table_elt_t  *h;
    ngx_open_file_info_t       of;
    ngx_http_core_loc_conf_t  *clcf;

    fid = &ctx->params[1];

    if (!creor_is_id((char *) fid->data, fid->len, "file_")) {
        return creor_fail(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND", NULL,
                          "No such file.");
    }

    txn = creor_store_read(&ctx->mcf->store);
    if (txn == NULL) {
        return creor_fail_store(r, CREOR_STORE_ERROR);
    }

    if (ctx->signed_url) {
        rc = creor_run_load_any(&ctx->mcf->store, txn, r->pool,
                                &ctx->params[0], &run);
        if (rc == CREOR_STORE_OK) {
            rc = NGX_OK;

        } else {
            rc = creor_fail(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND", NULL,
                            "No such run.");
        }

    } else {
        rc = creor_object_get(r, ctx, &creor_run_object, txn, &run);
    }

    creor_store_read_done(&ctx->mcf->store);

    if (rc != NGX_OK) {
        return rc;
    }

    v = creor_json_get(run.doc, "files");

    for (f = v ? v->child : NULL; f; f = f->next) {
        v = creor_json_get(f, "id");

        if (v && v->str.len == fid->len
            && ngx_strncmp(v->str.data, fid->data, fid->len) == 0)
        {
            break;
        }
    }

    if (f == NULL) {
        return creor_fail(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND", NULL,
                          "No such file.");
    }

    p = ngx_pnalloc(r->pool, ctx->mcf->files_path.len + 2 * CREOR_ID_MAX + 4);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    name.data = p;
    name.len = ngx_sprintf(p, "%V/%V/%V%Z", &ctx->mcf->files_path, &run.id,
                           fid) - p - 1;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    ngx_memzero(&of, sizeof(ngx_open_file_info_t));
    of.read_ahead = clcf->read_ahead;
    of.directio = NGX_MAX_OFF_T_VALUE;
    of.valid = clcf->open_file_cache_valid;
    of.min_uses = clcf->open_file_cache_min_uses;
    of.errors = clcf->open_file_cache_errors;
    of.events = clcf->open_file_cache_events;

    if (ngx_open_cached_file(clcf->open_file_cache, &name, &of, r->pool)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, of.err,
                      "%s \"%V\" failed", of.failed, &name);
        return creor_fail(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND", NULL,
                          "The file is gone.");
    }

    v = creor_json_get(f, "type");
    type = v ? v->str : (ngx_str_t) ngx_string("application/octet-stream");

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_type = type;
    r->headers_out.content_type_len = type.len;
    r->headers_out.content_length_n = of.size;
    r->headers_out.last_modified_time = of.mtime;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-Request-Id");
    h->value = ctx->request_id;

    if (creor_runs_file_headers(r, f, fid) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->sending = 1;

    if (of.size == 0 || r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
        return ngx_http_send_header(r);
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->file = ngx_pcalloc(r->pool, sizeof(ngx_file_t));
    if (b->file == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    b->file_pos = 0;
    b->file_last = of.size;
    b->in_file = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;
    b->file->fd = of.fd;
    b->file->name = name;
    b->file->log = r->connection->log;
    b->file->directio = of.is_directio;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * An upload is served as a download, never rendered: its type is the
 * client's, and text/html would be active content on the API's origin,
 * fetched by signed URL without a key.  The name: "filename" with the
 * bytes outside a safe set replaced, "filename*" with all of them
 * (RFC 6266).
 */

static ngx_int_t
creor_runs_file_headers(ngx_http_request_t *r, creor_json_t *f,
    ngx_str_t *fid)
{
    u_char        *p, c;
    size_t         i;
    ngx_str_t      name, v;
    creor_json_t  *n;

    static ngx_str_t  nosniff = ngx_string("nosniff");

    n = creor_json_get(f, "name");

    name = (n && n->type == CREOR_JSON_STRING && n->str.len) ? n->str : *fid;

    v.data = ngx_pnalloc(r->pool,
                         sizeof("attachment; filename=\"\"; "
                                "filename*=UTF-8''") - 1
                         + name.len
                         + name.len
                         + 2 * ngx_escape_uri(NULL, name.data, name.len,
                                              NGX_ESCAPE_URI_COMPONENT));
    if (v.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(v.data, "attachment; filename=\"",
                   sizeof("attachment; filename=\"") - 1);

    for (i = 0; i < name.len; i++) {
        c = name.data[i];
        *p++ = (isalnum(c) || c == '.' || c == '_' || c == '-' || c == ' ')
               ? c : '_';
    }

    p = ngx_cpymem(p, "\"; filename*=UTF-8''",
                   sizeof("\"; filename*=UTF-8''") - 1);

    p = (u_char *) ngx_escape_uri(p, name.data, name.len,
                                  NGX_ESCAPE_URI_COMPONENT);

    v.len = p - v.data;

    if (creor_add_header(r, "Content-Disposition", &v) != NGX_OK
        || creor_add_header(r, "X-Content-Type-Options", &nosniff) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}
