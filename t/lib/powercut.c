
/*
 * Copyright (C) ngx_creor_module authors
 *
 * A power cut at the block level for the tests: LD_PRELOAD this library
 * into nginx and it keeps, beside the store's data file, the image a disk
 * would hold if the power failed now.  Writes to the file go through as
 * usual (LMDB reads its own pages through its map); they reach the image
 * only once they are durable: at the fdatasync() or fsync() of the file
 * that follows them, or at once for a descriptor opened with O_DSYNC or
 * O_SYNC (LMDB writes its meta pages so).  When the control file appears
 * the image stops changing: what had not been synced then is lost, as it
 * would be with the machine.  The test kills nginx, puts the image in
 * place of the file and checks that every answer it received before the
 * cut is in the store.
 *
 * Environment, read when the library is loaded (nginx's workers do not
 * keep their environment):
 *
 *     POWERCUT_FILE    the data file, e.g. <store>/data.mdb
 *     POWERCUT_IMAGE   the image, a copy of the file when nginx starts
 *     POWERCUT_CTL     the cut happens when this file exists
 *     POWERCUT_LOG     ranges written and not yet synced, shared by the
 *                      processes: a sync makes every process' writes to
 *                      the file durable, as the kernel's does
 *     POWERCUT_DELAY   milliseconds a sync of the file takes at least: a
 *                      slow disk, so that a cut lands inside syncs and an
 *                      answer sent before its sync would be seen
 *
 *     cc -shared -fPIC -o powercut.so powercut.c -ldl
 */


#define _GNU_SOURCE

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "preload.h"


#define POWERCUT_FDS     16


typedef struct {
    off_t   off;
    size_t  len;
} powercut_range_t;


static int (*real_open)(const char *, int, ...);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static int (*real_fdatasync)(int);
static int (*real_fsync)(int);

static char              powercut_file[512];
static char              powercut_image[512];
static char              powercut_ctl[512];
static char              powercut_log[512];
static long              powercut_delay;

/* descriptors of the data file: 1 plain, 2 synchronous writes */
static int               powercut_fds[POWERCUT_FDS];
static int               powercut_kind[POWERCUT_FDS];


__attribute__((constructor))
static void
powercut_init(void)
{
    int          i;
    const char  *v;

    preload_env("POWERCUT_FILE", powercut_file, sizeof(powercut_file));
    preload_env("POWERCUT_IMAGE", powercut_image, sizeof(powercut_image));
    preload_env("POWERCUT_CTL", powercut_ctl, sizeof(powercut_ctl));
    preload_env("POWERCUT_LOG", powercut_log, sizeof(powercut_log));

    v = getenv("POWERCUT_DELAY");
    if (v) {
        powercut_delay = atol(v);
    }

    for (i = 0; i < POWERCUT_FDS; i++) {
        powercut_fds[i] = -1;
    }

    real_open = dlsym(RTLD_NEXT, "open");
    real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    real_write = dlsym(RTLD_NEXT, "write");
    real_writev = dlsym(RTLD_NEXT, "writev");
    real_pwritev = dlsym(RTLD_NEXT, "pwritev");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
}


static int
powercut_kind_of(int fd)
{
    int  i;

    if (fd < 0 || powercut_file[0] == '\0') {
        return 0;
    }

    for (i = 0; i < POWERCUT_FDS; i++) {
        if (powercut_fds[i] == fd) {
            return powercut_kind[i];
        }
    }

    return 0;
}


static void
powercut_opened(const char *path, int flags, int fd)
{
    int  i;

    if (fd < 0 || powercut_file[0] == '\0') {
        return;
    }

    /* a descriptor number reused for another file is no longer ours */

    for (i = 0; i < POWERCUT_FDS; i++) {
        if (powercut_fds[i] == fd) {
            powercut_fds[i] = -1;
        }
    }

    if (strcmp(path, powercut_file) != 0) {
        return;
    }

    for (i = 0; i < POWERCUT_FDS; i++) {
        if (powercut_fds[i] == -1) {
            powercut_fds[i] = fd;
            powercut_kind[i] = (flags & (O_DSYNC | O_SYNC)) ? 2 : 1;
            return;
        }
    }
}


static int
powercut_after(void)
{
    struct stat  st;

    return powercut_ctl[0] && stat(powercut_ctl, &st) == 0;
}


/* the file's bytes of a range, as they are now, into the image */

static void
powercut_copy(off_t off, size_t len)
{
    int      in, out;
    char     buf[65536];
    size_t   n;
    ssize_t  got;

    in = real_open(powercut_file, O_RDONLY);
    out = real_open(powercut_image, O_WRONLY);

    if (in == -1 || out == -1) {
        fprintf(stderr, "powercut: cannot open the file or the image\n");
        abort();
    }

    while (len > 0) {
        n = len < sizeof(buf) ? len : sizeof(buf);
        got = pread(in, buf, n, off);

        if (got <= 0 || real_pwrite(out, buf, got, off) != got) {
            break;
        }

        off += got;
        len -= got;
    }

    close(in);
    close(out);
}


/* where a write without an offset goes, if to the file */

static off_t
powercut_pos(int fd)
{
    return powercut_kind_of(fd) ? lseek(fd, 0, SEEK_CUR) : 0;
}


/* after a write of len bytes at off (or its error): returns len */

static ssize_t
powercut_wrote(int fd, off_t off, ssize_t len)
{
    int               kind, log;
    powercut_range_t  r;

    kind = powercut_kind_of(fd);

    if (kind == 0 || len <= 0 || powercut_after()) {
        return len;
    }

    if (kind == 2) {
        powercut_copy(off, len);
        return len;
    }

    r.off = off;
    r.len = len;

    log = real_open(powercut_log, O_WRONLY | O_APPEND | O_CREAT, 0666);

    if (log == -1) {
        fprintf(stderr, "powercut: cannot open the log\n");
        abort();
    }

    flock(log, LOCK_EX);
    (void) real_write(log, &r, sizeof(r));
    close(log);

    return len;
}


/* everything written to the file so far, by any process, is durable */

static void
powercut_synced(int fd)
{
    int               log;
    powercut_range_t  r;

    if (powercut_kind_of(fd) == 0 || powercut_after()) {
        return;
    }

    log = real_open(powercut_log, O_RDWR | O_CREAT, 0666);

    if (log == -1) {
        fprintf(stderr, "powercut: cannot open the log\n");
        abort();
    }

    flock(log, LOCK_EX);

    while (read(log, &r, sizeof(r)) == sizeof(r)) {
        powercut_copy(r.off, r.len);
    }

    if (ftruncate(log, 0) != 0) {
        fprintf(stderr, "powercut: cannot empty the log\n");
        abort();
    }

    close(log);
}


/*
 * The wrappers.  On LP64, open64() and pwrite64() are open() and pwrite()
 * (off_t is 64 bits): the same wrapper, under both names.
 */

typedef char  powercut_off_t_is_64_bits[sizeof(off_t) == 8 ? 1 : -1];


int
open(const char *path, int flags, ...)
{
    int      fd;
    mode_t   mode;
    va_list  ap;

    va_start(ap, flags);
    mode = (flags & O_CREAT) ? va_arg(ap, mode_t) : 0;
    va_end(ap);

    fd = real_open(path, flags, mode);
    powercut_opened(path, flags, fd);

    return fd;
}

int open64(const char *path, int flags, ...) __attribute__((alias("open")));


ssize_t
pwrite(int fd, const void *buf, size_t n, off_t off)
{
    return powercut_wrote(fd, off, real_pwrite(fd, buf, n, off));
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
    __attribute__((alias("pwrite")));


ssize_t
write(int fd, const void *buf, size_t n)
{
    off_t  off;

    off = powercut_pos(fd);

    return powercut_wrote(fd, off, real_write(fd, buf, n));
}


ssize_t
writev(int fd, const struct iovec *iov, int n)
{
    off_t  off;

    off = powercut_pos(fd);

    return powercut_wrote(fd, off, real_writev(fd, iov, n));
}


ssize_t
pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
    return powercut_wrote(fd, off, real_pwritev(fd, iov, n, off));
}


/* fdatasync() and fsync(): as slow as POWERCUT_DELAY, then durable */
static int
powercut_sync(int fd, int (*real)(int))
{
    int  rc;

    if (powercut_delay && powercut_kind_of(fd)) {
        usleep(powercut_delay * 1000);
    }

    rc = real(fd);

    if (rc == 0) {
        powercut_synced(fd);
    }

    return rc;
}


int
fdatasync(int fd)
{
    return powercut_sync(fd, real_fdatasync);
}


int
fsync(int fd)
{
    return powercut_sync(fd, real_fsync);
}
