
/*
 * Copyright (C) ngx_creor_module authors
 *
 * multipart/form-data (RFC 7578) over a body already in memory: parts are
 * found with memmem() and described by pointers into the body, so a part
 * costs one array element whatever its size; only quoted strings that
 * need unescaping are copied.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_creor.h"


#define CREOR_MP_MAX_PARTS     64
#define CREOR_MP_MAX_HEADERS   8192
#define CREOR_MP_MAX_BOUNDARY  70


static ngx_int_t creor_mp_boundary(ngx_pool_t *pool, ngx_str_t *ct,
    ngx_str_t *boundary, u_char *err, size_t errlen);
static ngx_int_t creor_mp_headers(ngx_pool_t *pool, u_char **pp,
    u_char *last, creor_part_t *part, ngx_uint_t n, u_char *err,
    size_t errlen);
static ngx_int_t creor_mp_disposition(ngx_pool_t *pool, ngx_str_t *value,
    creor_part_t *part, ngx_uint_t n, u_char *err, size_t errlen);
static ngx_flag_t creor_mp_is(ngx_str_t *name, const char *text);
static ngx_int_t creor_mp_param(u_char **pp, u_char *last, ngx_str_t *name,
    ngx_str_t *value, ngx_uint_t *escaped);
static ngx_int_t creor_mp_unescape(ngx_pool_t *pool, ngx_str_t *s);
static u_char *creor_mp_find(u_char *p, u_char *last, u_char *delim,
    size_t dlen, u_char **next, ngx_uint_t *close);
static u_char *creor_mp_after(u_char *p, u_char *last, ngx_uint_t *close);
static ngx_int_t creor_mp_error(u_char *err, size_t errlen,
    const char *fmt, ...);


ngx_int_t
creor_multipart_parse(ngx_pool_t *pool, ngx_str_t *content_type,
    ngx_str_t *body, ngx_array_t *parts, u_char *err, size_t errlen)
{
    u_char        *p, *q, *last, *end, *next;
    size_t         dlen;
    ngx_int_t      rc;
    ngx_str_t      boundary;
    ngx_uint_t     close;
    creor_part_t  *part;
    u_char         delim[3 + CREOR_MP_MAX_BOUNDARY];

    ngx_str_null(&boundary);

    if (ngx_array_init(parts, pool, 4, sizeof(creor_part_t)) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = creor_mp_boundary(pool, content_type, &boundary, err, errlen);
    if (rc != NGX_OK) {
        return rc;
    }

    /*
     * the delimiter is searched for with its leading LF only, so that bare
     * LF line endings work; a CR before it is taken off the data
     */

    delim[0] = LF;
    delim[1] = '-';
    delim[2] = '-';
    ngx_memcpy(delim + 3, boundary.data, boundary.len);
    dlen = 3 + boundary.len;

    p = body->data;
    last = p + body->len;

    /* the first delimiter may open the body, with no line before it */

    next = NULL;
    close = 0;

    if (body->len >= dlen - 1 && ngx_memcmp(p, delim + 1, dlen - 1) == 0) {
        next = creor_mp_after(p + dlen - 1, last, &close);
    }

    if (next == NULL
        && creor_mp_find(p, last, delim, dlen, &next, &close) == NULL)
    {
        return creor_mp_error(err, errlen,
                              "The body has no multipart boundary line.");
    }

    if (close) {
        return creor_mp_error(err, errlen, "The body has no parts.");
    }

    p = next;

    for ( ;; ) {

        if (p == last) {
            return creor_mp_error(err, errlen,
                                  "The body has no closing boundary.");
        }

        if (parts->nelts == CREOR_MP_MAX_PARTS) {
            return creor_mp_error(err, errlen,
                                  "The body has too many parts: at most %d "
                                  "are allowed.", CREOR_MP_MAX_PARTS);
        }

        part = ngx_array_push(parts);
        if (part == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(part, sizeof(creor_part_t));

        rc = creor_mp_headers(pool, &p, last, part, parts->nelts, err,
                              errlen);
        if (rc != NGX_OK) {
            return rc;
        }

        q = creor_mp_find(p, last, delim, dlen, &next, &close);
        if (q == NULL) {
            return creor_mp_error(err, errlen,
                                  "The body ends in part %ui, before the "
                                  "closing boundary.", parts->nelts);
        }

        end = q;

        if (end > p && end[-1] == CR) {
            end--;
        }

        part->data.data = p;
        part->data.len = end - p;

        if (close) {
            /* the epilogue is ignored */
            return NGX_OK;
        }

        p = next;
    }
}


static ngx_int_t
creor_mp_boundary(ngx_pool_t *pool, ngx_str_t *ct, ngx_str_t *boundary,
    u_char *err, size_t errlen)
{
    u_char      *p, *last, *start;
    ngx_int_t    rc;
    ngx_str_t    name, value;
    ngx_uint_t   i, escaped, found;

    p = ct->data;
    last = p + ct->len;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    start = p;

    while (p < last && *p != ';' && *p != ' ' && *p != '\t') {
        p++;
    }

    if (p - start != sizeof("multipart/form-data") - 1
        || ngx_strncasecmp(start, (u_char *) "multipart/form-data",
                           sizeof("multipart/form-data") - 1)
           != 0)
    {
        return creor_mp_error(err, errlen,
                              "The Content-Type is not multipart/form-data.");
    }

    found = 0;

    for ( ;; ) {
        rc = creor_mp_param(&p, last, &name, &value, &escaped);

        if (rc == NGX_DONE) {
            break;
        }

        if (rc != NGX_OK) {
            return creor_mp_error(err, errlen,
                                  "The Content-Type has a malformed "
                                  "parameter.");
        }

        if (name.len != sizeof("boundary") - 1
            || ngx_strncasecmp(name.data, (u_char *) "boundary",
                               sizeof("boundary") - 1)
               != 0)
        {
            continue;
        }

        if (found) {
            return creor_mp_error(err, errlen,
                                  "The Content-Type has more than one "
                                  "boundary.");
        }

        found = 1;

        if (escaped && creor_mp_unescape(pool, &value) != NGX_OK) {
            return NGX_ERROR;
        }

        *boundary = value;
    }

    if (!found || boundary->len == 0
        || boundary->len > CREOR_MP_MAX_BOUNDARY)
    {
        return creor_mp_error(err, errlen,
                              "The Content-Type must have a boundary of 1 to "
                              "%d characters.", CREOR_MP_MAX_BOUNDARY);
    }

    /* RFC 2046 allows fewer; printable ASCII is what matters for framing */

    for (i = 0; i < boundary->len; i++) {
        if (boundary->data[i] < 0x20 || boundary->data[i] > 0x7e) {
            return creor_mp_error(err, errlen,
                                  "The multipart boundary has a character "
                                  "that is not allowed.");
        }
    }

    if (boundary->data[boundary->len - 1] == ' ') {
        return creor_mp_error(err, errlen,
                              "The multipart boundary must not end with a "
                              "space.");
    }

    return NGX_OK;
}


/* parses the headers of part n at *pp, leaving *pp past their blank line */

static ngx_int_t
creor_mp_headers(ngx_pool_t *pool, u_char **pp, u_char *last,
    creor_part_t *part, ngx_uint_t n, u_char *err, size_t errlen)
{
    u_char      *p, *start, *lf, *end, *colon;
    size_t       size;
    ngx_int_t    rc;
    ngx_str_t    name, value;
    ngx_uint_t   disposition;

    p = *pp;
    start = p;
    disposition = 0;

    for ( ;; ) {
        size = CREOR_MP_MAX_HEADERS - (p - start);

        if (size > (size_t) (last - p)) {
            size = last - p;
        }

        lf = memchr(p, LF, size);

        if (lf == NULL) {
            if (size == (size_t) (last - p)) {
                return creor_mp_error(err, errlen,
                                      "The body ends in the headers of "
                                      "part %ui.", n);
            }

            return creor_mp_error(err, errlen,
                                  "The headers of part %ui are larger than "
                                  "%d bytes.", n, CREOR_MP_MAX_HEADERS);
        }

        end = lf;

        if (end > p && end[-1] == CR) {
            end--;
        }

        if (end == p) {
            p = lf + 1;
            break;
        }

        if (*p == ' ' || *p == '\t') {
            return creor_mp_error(err, errlen,
                                  "Part %ui has a folded header line.", n);
        }

        colon = memchr(p, ':', end - p);

        if (colon == NULL) {
            return creor_mp_error(err, errlen,
                                  "Part %ui has a header line without a "
                                  "colon.", n);
        }

        name.data = p;
        name.len = colon - p;

        while (name.len && (name.data[name.len - 1] == ' '
                            || name.data[name.len - 1] == '\t'))
        {
            name.len--;
        }

        value.data = colon + 1;

        while (value.data < end && (*value.data == ' '
                                    || *value.data == '\t'))
        {
            value.data++;
        }

        value.len = end - value.data;

        while (value.len && (value.data[value.len - 1] == ' '
                             || value.data[value.len - 1] == '\t'))
        {
            value.len--;
        }

        if (name.len == sizeof("Content-Disposition") - 1
            && ngx_strncasecmp(name.data, (u_char *) "Content-Disposition",
                               sizeof("Content-Disposition") - 1)
               == 0)
        {
            if (disposition) {
                return creor_mp_error(err, errlen,
                                      "Part %ui has more than one "
                                      "Content-Disposition.", n);
            }

            disposition = 1;

            rc = creor_mp_disposition(pool, &value, part, n, err, errlen);
            if (rc != NGX_OK) {
                return rc;
            }

        } else if (name.len == sizeof("Content-Type") - 1
                   && ngx_strncasecmp(name.data, (u_char *) "Content-Type",
                                      sizeof("Content-Type") - 1)
                      == 0)
        {
            part->content_type = value;
        }

        p = lf + 1;
    }

    if (!disposition) {
        return creor_mp_error(err, errlen,
                              "Part %ui has no Content-Disposition.", n);
    }

    if (part->name.len == 0) {
        return creor_mp_error(err, errlen, "Part %ui has no name.", n);
    }

    *pp = p;

    return NGX_OK;
}


static ngx_int_t
creor_mp_disposition(ngx_pool_t *pool, ngx_str_t *value, creor_part_t *part,
    ngx_uint_t n, u_char *err, size_t errlen)
{
    u_char      *p, *last;
    ngx_int_t    rc;
    ngx_str_t    name, val, *to;
    ngx_uint_t   escaped;

    p = value->data;
    last = p + value->len;

    while (p < last && *p != ';' && *p != ' ' && *p != '\t') {
        p++;
    }

    if (p - value->data != sizeof("form-data") - 1
        || ngx_strncasecmp(value->data, (u_char *) "form-data",
                           sizeof("form-data") - 1)
           != 0)
    {
        return creor_mp_error(err, errlen,
                              "The Content-Disposition of part %ui is not "
                              "form-data.", n);
    }

    for ( ;; ) {
        rc = creor_mp_param(&p, last, &name, &val, &escaped);

        if (rc == NGX_DONE) {
            return NGX_OK;
        }

        if (rc != NGX_OK) {
            return creor_mp_error(err, errlen,
                                  "The Content-Disposition of part %ui is "
                                  "malformed.", n);
        }

        /* "filename*" is a different name, so it is ignored here */

        if (creor_mp_is(&name, "name")) {
            to = &part->name;

        } else if (creor_mp_is(&name, "filename")) {
            to = &part->filename;

        } else {
            continue;
        }

        if (escaped && creor_mp_unescape(pool, &val) != NGX_OK) {
            return NGX_ERROR;
        }

        *to = val;
        part->is_file |= (to == &part->filename);
    }
}


/* a parameter's name, in any case */

static ngx_flag_t
creor_mp_is(ngx_str_t *name, const char *text)
{
    size_t  len;

    len = ngx_strlen(text);

    return name->len == len
           && ngx_strncasecmp(name->data, (u_char *) text, len) == 0;
}


/*
 * The next "; name=value" at *pp: NGX_OK, NGX_DONE at the end, or
 * NGX_DECLINED.  A quoted value is returned without its quotes and with
 * *escaped set if it still holds backslash escapes.
 */

static ngx_int_t
creor_mp_param(u_char **pp, u_char *last, ngx_str_t *name, ngx_str_t *value,
    ngx_uint_t *escaped)
{
    u_char  *p;

    p = *pp;
    *escaped = 0;

    for ( ;; ) {
        while (p < last && (*p == ' ' || *p == '\t')) {
            p++;
        }

        if (p == last) {
            *pp = p;
            return NGX_DONE;
        }

        if (*p != ';') {
            return NGX_DECLINED;
        }

        p++;

        while (p < last && (*p == ' ' || *p == '\t')) {
            p++;
        }

        /* stray semicolons, trailing ones included, are let through */

        if (p < last && *p != ';') {
            break;
        }
    }

    if (p == last) {
        *pp = p;
        return NGX_DONE;
    }

    name->data = p;

    while (p < last && *p != '=' && *p != ';' && *p != ' ' && *p != '\t'
           && *p != '"')
    {
        p++;
    }

    name->len = p - name->data;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if (name->len == 0 || p == last || *p != '=') {
        return NGX_DECLINED;
    }

    p++;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if (p < last && *p == '"') {
        p++;
        value->data = p;

        while (p < last && *p != '"') {
            if (*p == '\\' && p + 1 < last && (p[1] == '"' || p[1] == '\\')) {
                *escaped = 1;
                p += 2;
                continue;
            }

            p++;
        }

        if (p == last) {
            return NGX_DECLINED;
        }

        value->len = p - value->data;
        p++;

    } else {
        value->data = p;

        while (p < last && *p != ';' && *p != ' ' && *p != '\t'
               && *p != '"')
        {
            p++;
        }

        value->len = p - value->data;
    }

    *pp = p;

    return NGX_OK;
}


/*
 * Only \" and \\ are escapes: browsers do not escape backslashes, and
 * a Windows path sent as a filename should keep its own.
 */

static ngx_int_t
creor_mp_unescape(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char  *p, *last, *dst, *d;

    dst = ngx_pnalloc(pool, s->len);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    d = dst;
    p = s->data;
    last = p + s->len;

    while (p < last) {
        if (*p == '\\' && p + 1 < last && (p[1] == '"' || p[1] == '\\')) {
            p++;
        }

        *d++ = *p++;
    }

    s->data = dst;
    s->len = d - dst;

    return NGX_OK;
}


/*
 * The first delimiter (LF "--" boundary, then "--" or a line end) in
 * [p, last): its LF, with *next past it.  A match followed by anything
 * else is data, as RFC 2046 has the delimiter alone on its line.
 */

static u_char *
creor_mp_find(u_char *p, u_char *last, u_char *delim, size_t dlen,
    u_char **next, ngx_uint_t *close)
{
    u_char  *q, *r;

    while (p < last) {
        q = memmem(p, last - p, delim, dlen);
        if (q == NULL) {
            return NULL;
        }

        r = creor_mp_after(q + dlen, last, close);
        if (r != NULL) {
            *next = r;
            return q;
        }

        p = q + 1;
    }

    return NULL;
}


/* what follows a boundary: "--", or optional padding and a line end */

static u_char *
creor_mp_after(u_char *p, u_char *last, ngx_uint_t *close)
{
    if (last - p >= 2 && p[0] == '-' && p[1] == '-') {
        *close = 1;
        return p + 2;
    }

    *close = 0;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if (p < last && *p == LF) {
        return p + 1;
    }

    if (last - p >= 2 && p[0] == CR && p[1] == LF) {
        return p + 2;
    }

    return NULL;
}


static ngx_int_t
creor_mp_error(u_char *err, size_t errlen, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    if (errlen == 0) {
        return NGX_DECLINED;
    }

    va_start(args, fmt);
    p = ngx_vslprintf(err, err + errlen - 1, fmt, args);
    va_end(args);

    *p = '\0';

    return NGX_DECLINED;
}
