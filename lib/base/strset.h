// strset.h: a set of strings (open addressing, FNV-1a), for "is this name
// new?" checks: unique tensor names in a stream, unique entries in an archive.
#ifndef NS_STRSET_H
#define NS_STRSET_H

#include <stddef.h>

typedef struct ns_strset {
    char **slots;
    size_t cap, count;
} ns_strset;

// 1 if s was added, 0 if it was already there, -1 out of memory.
int ns_strset_add(ns_strset *set, const char *s);
void ns_strset_free(ns_strset *set);

#endif
