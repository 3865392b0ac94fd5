// fuzz_reader.h: how the fuzz targets read their input as a TNS stream: the
// bytes go into a pipe (enlarged to hold them; inputs are small, libFuzzer's
// -max_len) and a reader is opened on its other end. Included by the targets.
#ifndef FUZZ_READER_H
#define FUZZ_READER_H

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "stream/tns.h"

// A reader of the bytes, or NULL when they do not fit a pipe; *fd is the pipe's
// read end, to close after ns_reader_close.
static ns_reader *fuzz_reader(const void *data, size_t size, int *fd) {
    int fds[2];
    if (pipe(fds) != 0) return NULL;
    int cap = fcntl(fds[1], F_SETPIPE_SZ, 1 << 20);
    if (cap < 0) cap = fcntl(fds[1], F_GETPIPE_SZ);
    if (cap < 0 || size > (size_t)cap || write(fds[1], data, size) != (ssize_t)size) {
        close(fds[0]);
        close(fds[1]);
        return NULL;
    }
    close(fds[1]);
    ns_err err;
    ns_reader *r = ns_reader_fdopen(fds[0], "fuzz", &err);
    if (!r) {
        close(fds[0]);
        return NULL;
    }
    ns_reader_set_max_record(r, 1 << 20);
    *fd = fds[0];
    return r;
}

#endif
