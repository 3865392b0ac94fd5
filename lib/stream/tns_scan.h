// tns_scan.h: finds where the first msgpack value in a buffer ends, without
// allocating. The stream reader runs it before handing bytes to msgpack-c, so
// msgpack-c only ever sees a complete, well-formed value whose every array and
// map count is backed by bytes actually present: msgpack-c allocates objects
// for a container's claimed count up front, and a forged count must not turn a
// few bytes of input into gigabytes of allocation.
#ifndef NS_TNS_SCAN_H
#define NS_TNS_SCAN_H

#include <stddef.h>

#define NS_SCAN_MAX_DEPTH 32 // msgpack-c's own parser stack is 32 deep

typedef enum ns_scan_result {
    NS_SCAN_COMPLETE = 1,   // *len is the value's encoded size
    NS_SCAN_INCOMPLETE = 0, // more bytes needed
    NS_SCAN_INVALID = -1,   // reserved type byte (0xc1) or nesting deeper than the cap
} ns_scan_result;

ns_scan_result ns_scan_value(const unsigned char *buf, size_t avail, size_t *len);

#endif
