// tempfile.h: the registry of live temporary files (an output's "PATH.tmp.XXXXXX"
// before its rename), so a program stopped by a signal or an error exit can
// remove them. Whoever creates a temporary file registers it and forgets it once
// it is renamed or removed; the program side (cli/cli.c) calls
// ns_tempfile_remove_all from its signal handler and at exit.
//
// Shape: a fixed table of NS_TEMPFILE_SLOTS paths (each up to PATH_MAX bytes),
// claimed and released with atomic operations: no locks and no allocation, so
// ns_tempfile_remove_all is async-signal-safe and any thread may register.
#ifndef NS_TEMPFILE_H
#define NS_TEMPFILE_H

#include <stddef.h>

#include "base/err.h"

#define NS_TEMPFILE_SLOTS 64 // temporary files alive at once in one process

// Creates "PATH.tmp.XXXXXX" (mode 0666 less the umask) and registers it, with
// the asynchronous signals held back in between, so no moment exists where the
// file is on disk and a signal could not find it. Writes the name into tmp (cap
// bytes) and the slot into *slot; returns the open descriptor, or -1 with err.
int ns_tempfile_create(const char *path, char *tmp, size_t cap, int *slot, ns_err *err);
// Records path (copied) and returns its slot (>= 0), or -1 with err when the
// table is full or path is too long.
int ns_tempfile_register(const char *path, ns_err *err);
// Drops the slot from the registry (does not touch the file); -1 is ignored.
void ns_tempfile_forget(int slot);
// Unlinks every file this process registered (not those of a parent it was
// forked from) and empties those slots. Async-signal-safe.
void ns_tempfile_remove_all(void);

#endif
