// blocks.h: one 64-byte-aligned, zeroed allocation holding many buffers (the
// llm.c style): a fit or a context lists its buffers with their element
// counts, gets one block, and frees that one block at the end. Each buffer
// starts on a 64-byte boundary; a buffer of 0 elements still gets a (unique,
// empty) place, so its pointer is never NULL.
#ifndef NS_BLOCKS_H
#define NS_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define NS_BLOCK_ALIGN 64

typedef struct ns_block_item {
    void **ptr;    // set to the buffer's place in the block
    int64_t count; // elements
    size_t size;   // bytes per element
} ns_block_item;

// Allocates one block for items[0..n) and points each *ptr into it. Returns
// the block (free it with free()), or NULL with err set on overflow or when
// out of memory.
void *ns_block_alloc(ns_block_item *items, int n, ns_err *err);

#endif
