// blocks.c: one aligned allocation for many buffers (blocks.h).
#include "base/blocks.h"

#include <string.h>

#include "base/tensor.h"

// The bytes one item takes, rounded up to the alignment.
static size_t item_bytes(const ns_block_item *it) {
    return ((size_t)it->count * it->size + NS_BLOCK_ALIGN - 1) / NS_BLOCK_ALIGN * NS_BLOCK_ALIGN;
}

void *ns_block_alloc(ns_block_item *items, int n, ns_err *err) {
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (items[i].count < 0 || (items[i].count > 0 &&
                                   (size_t)items[i].count > (SIZE_MAX - NS_BLOCK_ALIGN) / items[i].size)) {
            ns_errf(err, "buffer size overflows");
            return NULL;
        }
        size_t bytes = item_bytes(&items[i]);
        if (total > SIZE_MAX - bytes) {
            ns_errf(err, "buffer size overflows");
            return NULL;
        }
        total += bytes;
    }
    char *base = ns_aligned_alloc(total);
    if (!base) {
        ns_errf(err, "out of memory (%zu bytes)", total);
        return NULL;
    }
    memset(base, 0, total);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        *items[i].ptr = base + off;
        off += item_bytes(&items[i]);
    }
    return base;
}
