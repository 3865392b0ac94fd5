// pickle.h: a restricted Python pickle reader, enough for what torch.save
// writes for a state_dict and for the usual checkpoint dicts around it, and
// nothing that could run code. The reader is a small stack machine over the
// opcodes of protocols 2 to 5 that build plain data (None, bools, integers
// that fit int64, floats, str, bytes, tuples, lists, dicts, marks, the memo);
// GLOBAL names only an allow-list:
//   collections.OrderedDict                    called with () -> a dict
//   torch._utils._rebuild_tensor_v2            -> a tensor view of a storage
//   torch._utils._rebuild_parameter(_with_state) -> the tensor it wraps
//   torch.FloatStorage, HalfStorage, BFloat16Storage, DoubleStorage,
//   LongStorage, IntStorage, ShortStorage, CharStorage, ByteStorage,
//   BoolStorage                                only as a storage's dtype
//   torch.device                               called with ("cpu") -> a str
// Any other global (os.system, builtins.eval, a module class) is refused when
// the GLOBAL opcode names it, with the name in the message; opcodes that
// instantiate classes or run extensions (INST, OBJ, NEWOBJ, EXT*) are refused
// too. Storages come from BINPERSID ids ('storage', torch.XStorage, key,
// location, numel): the reader records them; their bytes live elsewhere (the
// zip's data/<key>, torch_zip.c).
//
// Nothing trusts a length: every length is checked against the bytes left,
// the stack, the mark stack, the memo and the number of objects are bounded,
// and the machine never recurses, so a hostile pickle can only fail.
#ifndef NS_INTEROP_PICKLE_H
#define NS_INTEROP_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/tensor.h"

#define NS_PICKLE_MAX_STACK (1 << 20)     // values on the stack
#define NS_PICKLE_MAX_MARKS 4096          // open MARKs (nesting)
#define NS_PICKLE_MAX_MEMO (1 << 20)      // memo slots
#define NS_PICKLE_MAX_OBJECTS (1 << 24)   // values made in one load
#define NS_PICKLE_MAX_DIMS 8              // tensor dimensions
#define NS_PICKLE_MAX_KEY 64              // storage key bytes

typedef enum ns_pk_type {
    NS_PK_NONE,
    NS_PK_BOOL,
    NS_PK_INT,
    NS_PK_FLOAT,
    NS_PK_STR,     // str and bytes (s, n): points into the pickle's bytes
    NS_PK_BYTES,
    NS_PK_TUPLE,   // items, n
    NS_PK_LIST,
    NS_PK_DICT,    // items: keys at even, values at odd positions; n = 2 * entries
    NS_PK_GLOBAL,  // an allowed global, g
    NS_PK_STORAGE, // storage: index into ns_pickle.storages
    NS_PK_TENSOR,  // tensor
} ns_pk_type;

typedef enum ns_pk_global {
    NS_PKG_ORDERED_DICT,
    NS_PKG_REBUILD_TENSOR_V2,
    NS_PKG_REBUILD_PARAMETER,
    NS_PKG_REBUILD_PARAMETER_WITH_STATE,
    NS_PKG_DEVICE,
    NS_PKG_STORAGE_TYPE, // dtype in the value's dtype field
} ns_pk_global;

// A storage as the pickle declares it: its dtype, its key (the file
// data/<key> of the zip) and its length in elements.
typedef struct ns_pk_storage {
    char key[NS_PICKLE_MAX_KEY + 1];
    ns_dtype dtype;
    int64_t numel;
} ns_pk_storage;

// A tensor: a strided view of a storage, checked to lie inside it.
typedef struct ns_pk_tensor {
    int storage;
    int64_t offset;
    int ndim;
    int64_t shape[NS_PICKLE_MAX_DIMS], stride[NS_PICKLE_MAX_DIMS];
} ns_pk_tensor;

typedef struct ns_pk_value ns_pk_value;
struct ns_pk_value {
    ns_pk_type type;
    int64_t i;          // int, bool; storage index
    double f;
    const char *s;      // str, bytes (not NUL-terminated)
    size_t n;           // str/bytes bytes; items in a tuple, list or dict
    ns_pk_value **items;
    size_t cap;
    ns_pk_global g;
    ns_dtype dtype;     // a storage type's dtype
    ns_pk_tensor tensor;
    ns_pk_value *next_alloc; // every value made, for freeing
};

typedef struct ns_pickle {
    ns_pk_value *root;         // what STOP returned
    ns_pk_storage *storages;   // distinct keys, in order of appearance
    int nstorages, cap_storages;
    ns_pk_value *all;          // allocation list
    int64_t nvalues;
} ns_pickle;

// Runs the pickle in buf (len bytes, which must outlive p: strings point
// into it). On failure returns -1 with "pickle: what (at byte N)" in err and
// leaves nothing allocated.
int ns_pickle_load(ns_pickle *p, const uint8_t *buf, size_t len, ns_err *err);
void ns_pickle_free(ns_pickle *p);

// A dict's value for a str key (n bytes), or NULL.
const ns_pk_value *ns_pk_dict_get(const ns_pk_value *dict, const char *key, size_t n);
// "torch.FloatStorage"-style name of a storage dtype (for writers), or NULL.
const char *ns_pk_storage_name(ns_dtype dt);

#endif
