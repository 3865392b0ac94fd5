// file.c: ns_file_close (file.h).
#include "base/file.h"

#include <errno.h>

int ns_file_close(FILE *f) {
    errno = 0;
    int bad = fflush(f) != 0 || ferror(f);
    int e = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    return bad ? (e ? e : EIO) : 0;
}
