// tempfile.c: the registry of live temporary files (see tempfile.h). A slot is
// FREE, being FILLED by ns_tempfile_register, or LIVE; only LIVE paths are read
// by ns_tempfile_remove_all, which may run in a signal handler on any thread.
#include "base/tempfile.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the registry needs lock-free atomics to be signal-safe");

enum { SLOT_FREE, SLOT_FILLED, SLOT_LIVE };

static struct {
    atomic_int state;
    pid_t owner; // a forked child (blas.c's probe) leaves its parent's files alone
    char path[PATH_MAX];
} slots[NS_TEMPFILE_SLOTS];

int ns_tempfile_register(const char *path, ns_err *err) {
    size_t len = strlen(path);
    if (len >= PATH_MAX) return ns_errf(err, "%s: path too long", path);
    for (int i = 0; i < NS_TEMPFILE_SLOTS; i++) {
        int expected = SLOT_FREE;
        if (!atomic_compare_exchange_strong(&slots[i].state, &expected, SLOT_FILLED)) continue;
        memcpy(slots[i].path, path, len + 1);
        slots[i].owner = getpid();
        atomic_store(&slots[i].state, SLOT_LIVE);
        return i;
    }
    return ns_errf(err, "%s: more than %d temporary files at once", path, NS_TEMPFILE_SLOTS);
}

void ns_tempfile_forget(int slot) {
    if (slot >= 0 && slot < NS_TEMPFILE_SLOTS) atomic_store(&slots[slot].state, SLOT_FREE);
}

void ns_tempfile_remove_all(void) {
    pid_t self = getpid();
    for (int i = 0; i < NS_TEMPFILE_SLOTS; i++) {
        if (atomic_load(&slots[i].state) != SLOT_LIVE || slots[i].owner != self) continue;
        int expected = SLOT_LIVE;
        // Claiming the slot first keeps a second caller (another thread's signal)
        // from unlinking a name that a new registration is writing.
        if (atomic_compare_exchange_strong(&slots[i].state, &expected, SLOT_FILLED)) {
            unlink(slots[i].path);
            atomic_store(&slots[i].state, SLOT_FREE);
        }
    }
}

int ns_tempfile_create(const char *path, char *tmp, size_t cap, int *slot, ns_err *err) {
    if ((size_t)snprintf(tmp, cap, "%s.tmp.XXXXXX", path) >= cap)
        return ns_errf(err, "%s: path too long", path);
    sigset_t held, old;
    sigfillset(&held);
    int sync_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP};
    for (size_t i = 0; i < sizeof sync_signals / sizeof *sync_signals; i++) sigdelset(&held, sync_signals[i]);
    pthread_sigmask(SIG_BLOCK, &held, &old);
    int fd = mkstemp(tmp);
    int saved = errno;
    if (fd >= 0 && (*slot = ns_tempfile_register(tmp, err)) < 0) {
        close(fd);
        unlink(tmp);
        fd = -2;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL); // a signal that came meanwhile is delivered here
    if (fd == -2) return -1;
    if (fd < 0) return ns_errf(err, "%s: cannot create (%s)", path, strerror(saved));
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    return fd;
}
