
/*
 * Copyright (C) ngx_creor_module authors
 *
 * The few nginx runtime functions the fuzzed files call, written for the
 * harnesses (nginx-dev ships headers only).  Each pool allocation is a
 * malloc() of its own, so AddressSanitizer sees the exact bounds of every
 * buffer: a read one byte past a string is a crash here, where nginx's
 * own pools would hide it inside a larger block.  Logging formats its
 * message (so a bad format or argument is found) and discards it.
 */


#include <ngx_config.h>
#include <ngx_core.h>


static u_char *shim_number(u_char *p, u_char *last, uint64_t n,
    ngx_uint_t neg, ngx_uint_t hex, ngx_uint_t width, u_char pad);


/* every level passes, so that every log call formats its message */

static ngx_log_t    shim_log = { NGX_LOG_DEBUG_ALL | NGX_LOG_DEBUG };
static ngx_cycle_t  shim_cycle = { .log = &shim_log };

volatile ngx_cycle_t  *ngx_cycle = &shim_cycle;
ngx_pid_t              ngx_pid = 1;


void *
ngx_alloc(size_t size, ngx_log_t *log)
{
    return malloc(size);
}


void *
ngx_calloc(size_t size, ngx_log_t *log)
{
    return calloc(1, size);
}


/* a pool here is its lists: allocations ("large") and cleanups */

ngx_pool_t *
ngx_create_pool(size_t size, ngx_log_t *log)
{
    ngx_pool_t  *pool;

    pool = calloc(1, sizeof(ngx_pool_t));
    if (pool == NULL) {
        return NULL;
    }

    pool->log = log;

    return pool;
}


void
ngx_destroy_pool(ngx_pool_t *pool)
{
    ngx_pool_large_t    *l, *ln;
    ngx_pool_cleanup_t  *c, *cn;

    for (c = pool->cleanup; c; c = cn) {
        cn = c->next;

        if (c->handler) {
            c->handler(c->data);
        }

        free(c);
    }

    for (l = pool->large; l; l = ln) {
        ln = l->next;
        free(l->alloc);
        free(l);
    }

    free(pool);
}


void *
ngx_palloc(ngx_pool_t *pool, size_t size)
{
    ngx_pool_large_t  *l;

    l = malloc(sizeof(ngx_pool_large_t));
    if (l == NULL) {
        return NULL;
    }

    /* malloc(0) may return NULL, which callers would take for failure */

    l->alloc = malloc(size ? size : 1);
    if (l->alloc == NULL) {
        free(l);
        return NULL;
    }

    l->next = pool->large;
    pool->large = l;

    return l->alloc;
}


void *
ngx_pnalloc(ngx_pool_t *pool, size_t size)
{
    return ngx_palloc(pool, size);
}


void *
ngx_pcalloc(ngx_pool_t *pool, size_t size)
{
    void  *p;

    p = ngx_palloc(pool, size);
    if (p) {
        ngx_memzero(p, size);
    }

    return p;
}


ngx_pool_cleanup_t *
ngx_pool_cleanup_add(ngx_pool_t *p, size_t size)
{
    ngx_pool_cleanup_t  *c;

    c = calloc(1, sizeof(ngx_pool_cleanup_t));
    if (c == NULL) {
        return NULL;
    }

    if (size) {
        c->data = ngx_pcalloc(p, size);
        if (c->data == NULL) {
            free(c);
            return NULL;
        }
    }

    c->next = p->cleanup;
    p->cleanup = c;

    return c;
}


void *
ngx_array_push(ngx_array_t *a)
{
    void  *elts;

    if (a->nelts == a->nalloc) {
        elts = ngx_palloc(a->pool, 2 * a->nalloc * a->size);
        if (elts == NULL) {
            return NULL;
        }

        ngx_memcpy(elts, a->elts, a->nelts * a->size);
        a->elts = elts;
        a->nalloc *= 2;
    }

    return (u_char *) a->elts + a->size * a->nelts++;
}


u_char *
ngx_cpystrn(u_char *dst, u_char *src, size_t n)
{
    if (n == 0) {
        return dst;
    }

    while (--n && *src) {
        *dst++ = *src++;
    }

    *dst = '\0';

    return dst;
}


ngx_int_t
ngx_strncasecmp(u_char *s1, u_char *s2, size_t n)
{
    ngx_uint_t  c1, c2;

    while (n--) {
        c1 = ngx_tolower(*s1);
        c2 = ngx_tolower(*s2);

        if (c1 != c2) {
            return c1 - c2;
        }

        if (c1 == 0) {
            return 0;
        }

        s1++;
        s2++;
    }

    return 0;
}


u_char *
ngx_hex_dump(u_char *dst, u_char *src, size_t len)
{
    static const u_char  hex[] = "0123456789abcdef";

    while (len--) {
        *dst++ = hex[*src >> 4];
        *dst++ = hex[*src++ & 0xf];
    }

    return dst;
}


/*
 * RFC 4648 base64 as nginx's decoder takes it: padding optional, stops
 * at the first "=", any other character outside the alphabet is an error.
 */

ngx_int_t
ngx_decode_base64(ngx_str_t *dst, ngx_str_t *src)
{
    u_char      *d;
    size_t       i, n;
    uint32_t     acc;
    ngx_uint_t   bits;
    int          v;

    for (n = 0; n < src->len && src->data[n] != '='; n++) {
        /* void */
    }

    if (n % 4 == 1) {
        return NGX_ERROR;
    }

    d = dst->data;
    acc = 0;
    bits = 0;

    for (i = 0; i < n; i++) {
        v = src->data[i];

        if (v >= 'A' && v <= 'Z') {
            v -= 'A';

        } else if (v >= 'a' && v <= 'z') {
            v = v - 'a' + 26;

        } else if (v >= '0' && v <= '9') {
            v = v - '0' + 52;

        } else if (v == '+') {
            v = 62;

        } else if (v == '/') {
            v = 63;

        } else {
            return NGX_ERROR;
        }

        acc = (acc << 6) | (uint32_t) v;
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            *d++ = (u_char) (acc >> bits);
        }
    }

    dst->len = d - dst->data;

    return NGX_OK;
}


u_char * ngx_cdecl
ngx_sprintf(u_char *buf, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, (void *) -1, fmt, args);
    va_end(args);

    return p;
}


u_char * ngx_cdecl
ngx_snprintf(u_char *buf, size_t max, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + max, fmt, args);
    va_end(args);

    return p;
}


u_char * ngx_cdecl
ngx_slprintf(u_char *buf, u_char *last, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, last, fmt, args);
    va_end(args);

    return p;
}


/*
 * The conversions the module uses: %V %s %*s %c %d %i %l %L %z %D %p
 * %Z %N %%, with "u", "x", "X", "0" and a width.  Anything else aborts,
 * so a format the shim does not know is found rather than misprinted.
 */

u_char *
ngx_vslprintf(u_char *buf, u_char *last, const char *fmt, va_list args)
{
    u_char      *s, pad;
    size_t       len, n;
    int64_t      i64;
    uint64_t     u64;
    ngx_str_t   *v;
    ngx_uint_t   width, hex, sign, star;

    while (*fmt && buf < last) {

        if (*fmt != '%') {
            *buf++ = *fmt++;
            continue;
        }

        fmt++;
        pad = ' ';
        width = 0;
        hex = 0;
        sign = 1;
        star = 0;
        len = (size_t) -1;

        if (*fmt == '0') {
            pad = '0';
        }

        while (*fmt >= '0' && *fmt <= '9') {
            width = width * 10 + (*fmt++ - '0');
        }

        for ( ;; ) {
            switch (*fmt) {
            case 'u':
                sign = 0;
                fmt++;
                continue;
            case 'x':
                hex = 1;
                sign = 0;
                fmt++;
                continue;
            case 'X':
                hex = 2;
                sign = 0;
                fmt++;
                continue;
            case '*':
                star = 1;
                len = va_arg(args, size_t);
                fmt++;
                continue;
            }

            break;
        }

        switch (*fmt) {

        case 'V':
            v = va_arg(args, ngx_str_t *);
            n = ngx_min((size_t) (last - buf), v->len);
            buf = ngx_cpymem(buf, v->data, n);
            fmt++;
            continue;

        case 's':
            s = va_arg(args, u_char *);

            if (star) {
                n = ngx_min((size_t) (last - buf), len);
                buf = ngx_cpymem(buf, s, n);

            } else {
                while (buf < last && *s) {
                    *buf++ = *s++;
                }
            }

            fmt++;
            continue;

        case 'c':
            *buf++ = (u_char) va_arg(args, int);
            fmt++;
            continue;

        case 'Z':
            *buf++ = '\0';
            fmt++;
            continue;

        case 'N':
            *buf++ = LF;
            fmt++;
            continue;

        case '%':
            *buf++ = '%';
            fmt++;
            continue;

        case 'p':
            u64 = (uintptr_t) va_arg(args, void *);
            buf = shim_number(buf, last, u64, 0, 1, 0, ' ');
            fmt++;
            continue;

        case 'd':
            i64 = sign ? va_arg(args, int) : va_arg(args, u_int);
            break;

        case 'i':
            i64 = sign ? va_arg(args, ngx_int_t)
                       : (int64_t) va_arg(args, ngx_uint_t);
            break;

        case 'l':
            i64 = sign ? va_arg(args, long) : (int64_t) va_arg(args, u_long);
            break;

        case 'z':
            i64 = sign ? va_arg(args, ssize_t)
                       : (int64_t) va_arg(args, size_t);
            break;

        case 'D':
            i64 = sign ? va_arg(args, int32_t)
                       : (int64_t) va_arg(args, uint32_t);
            break;

        case 'L':
            i64 = va_arg(args, int64_t);
            break;

        default:
            fprintf(stderr, "shim: ngx_vslprintf: unknown format at \"%s\"\n",
                    fmt);
            abort();
        }

        fmt++;

        if (sign && i64 < 0) {
            u64 = (uint64_t) 0 - (uint64_t) i64;

        } else {
            u64 = (uint64_t) i64;
        }

        buf = shim_number(buf, last, u64, sign && i64 < 0, hex, width, pad);
    }

    return buf;
}


static u_char *
shim_number(u_char *p, u_char *last, uint64_t n, ngx_uint_t neg,
    ngx_uint_t hex, ngx_uint_t width, u_char pad)
{
    u_char      tmp[24], *t;
    size_t      len;
    const char *digits;

    digits = (hex == 2) ? "0123456789ABCDEF" : "0123456789abcdef";
    t = tmp + sizeof(tmp);

    do {
        *--t = digits[hex ? n & 0xf : n % 10];
        n = hex ? n >> 4 : n / 10;
    } while (n);

    if (neg) {
        *--t = '-';
    }

    len = tmp + sizeof(tmp) - t;

    while (width > len && p < last) {
        *p++ = pad;
        width--;
    }

    len = ngx_min((size_t) (last - p), len);

    return ngx_cpymem(p, t, len);
}


void ngx_cdecl
ngx_log_error_core(ngx_uint_t level, ngx_log_t *log, ngx_err_t err,
    const char *fmt, ...)
{
    u_char   buf[NGX_MAX_ERROR_STR];
    va_list  args;

    va_start(args, fmt);
    (void) ngx_vslprintf(buf, buf + sizeof(buf), fmt, args);
    va_end(args);
}
