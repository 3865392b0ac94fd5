// tns_scan.c: the extent of one msgpack value (see tns_scan.h). Iterative, with
// a stack of "values still to read" per open container.
#include "stream/tns_scan.h"

#include <stdint.h>

static uint64_t read_be(const unsigned char *p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v = (v << 8) | p[i];
    return v;
}

// Describes the item starting with type byte b: header bytes, how many bytes
// of the header hold a length (len_bytes, at offset 1), payload bytes that
// follow (fixed), and how many child values it opens (children, or -1 when it
// is read from the length field: once for arrays, twice for maps).
typedef struct item_shape {
    int header;    // bytes including the type byte
    int len_bytes; // bytes of big-endian length/count after the type byte
    int len_kind;  // 0 fixed payload, 1 payload = len, 2 array of len, 3 map of len
    uint64_t fixed;
} item_shape;

static int shape_of(unsigned char b, item_shape *s) {
    *s = (item_shape){1, 0, 0, 0};
    if (b <= 0x7f || b >= 0xe0) return 0;                       // fixint
    if (b >= 0x80 && b <= 0x8f) { s->len_kind = 3; s->fixed = b & 0x0f; return 0; } // fixmap
    if (b >= 0x90 && b <= 0x9f) { s->len_kind = 2; s->fixed = b & 0x0f; return 0; } // fixarray
    if (b >= 0xa0 && b <= 0xbf) { s->fixed = b & 0x1f; return 0; }                  // fixstr
    switch (b) {
    case 0xc0: case 0xc2: case 0xc3: return 0;                  // nil, false, true
    case 0xc4: case 0xd9: s->len_bytes = 1; s->len_kind = 1; break; // bin8, str8
    case 0xc5: case 0xda: s->len_bytes = 2; s->len_kind = 1; break;
    case 0xc6: case 0xdb: s->len_bytes = 4; s->len_kind = 1; break;
    case 0xc7: s->len_bytes = 1; s->len_kind = 1; s->fixed = 1; break; // ext8: len + type byte
    case 0xc8: s->len_bytes = 2; s->len_kind = 1; s->fixed = 1; break;
    case 0xc9: s->len_bytes = 4; s->len_kind = 1; s->fixed = 1; break;
    case 0xca: s->fixed = 4; break;                             // float32
    case 0xcb: s->fixed = 8; break;                             // float64
    case 0xcc: case 0xd0: s->fixed = 1; break;
    case 0xcd: case 0xd1: s->fixed = 2; break;
    case 0xce: case 0xd2: s->fixed = 4; break;
    case 0xcf: case 0xd3: s->fixed = 8; break;
    case 0xd4: s->fixed = 2; break;                             // fixext 1..16 (+type byte)
    case 0xd5: s->fixed = 3; break;
    case 0xd6: s->fixed = 5; break;
    case 0xd7: s->fixed = 9; break;
    case 0xd8: s->fixed = 17; break;
    case 0xdc: s->len_bytes = 2; s->len_kind = 2; break;        // array16
    case 0xdd: s->len_bytes = 4; s->len_kind = 2; break;
    case 0xde: s->len_bytes = 2; s->len_kind = 3; break;        // map16
    case 0xdf: s->len_bytes = 4; s->len_kind = 3; break;
    default: return -1;                                         // 0xc1 is never used
    }
    s->header = 1 + s->len_bytes;
    return 0;
}

ns_scan_result ns_scan_value(const unsigned char *buf, size_t avail, size_t *len) {
    uint64_t pending[NS_SCAN_MAX_DEPTH + 1]; // values still to read at each level
    int depth = 0;
    pending[0] = 1;
    size_t pos = 0;
    while (depth >= 0) {
        if (pending[depth] == 0) { depth--; continue; }
        pending[depth]--;
        if (pos >= avail) return NS_SCAN_INCOMPLETE;
        item_shape s;
        if (shape_of(buf[pos], &s) < 0) return NS_SCAN_INVALID;
        if (avail - pos < (size_t)s.header) return NS_SCAN_INCOMPLETE;
        uint64_t n = s.len_bytes ? read_be(buf + pos + 1, s.len_bytes) : 0;
        pos += (size_t)s.header;
        if (s.len_kind == 0 || s.len_kind == 1) {
            uint64_t payload = s.fixed + (s.len_kind == 1 ? n : 0);
            if (payload > avail - pos) return NS_SCAN_INCOMPLETE;
            pos += (size_t)payload;
        } else {
            uint64_t count = s.len_bytes ? n : s.fixed;
            if (s.len_kind == 3) count *= 2; // a map holds key/value pairs
            if (count == 0) continue;
            if (depth + 1 > NS_SCAN_MAX_DEPTH) return NS_SCAN_INVALID;
            pending[++depth] = count;
        }
    }
    *len = pos;
    return NS_SCAN_COMPLETE;
}
