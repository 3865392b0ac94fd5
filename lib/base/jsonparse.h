// jsonparse.h: a small JSON reader (RFC 8259) into a tree, for COCO annotation
// files (detect/) and safetensors headers (interop/). Nesting is capped at 64
// levels; strings are UTF-8 with \u escapes decoded (surrogate pairs joined).
#ifndef NS_BASE_JSONPARSE_H
#define NS_BASE_JSONPARSE_H
#include <stddef.h>
#include "base/err.h"

typedef enum ns_jtype { NS_JNULL, NS_JBOOL, NS_JNUM, NS_JSTR, NS_JARR, NS_JOBJ } ns_jtype;

typedef struct ns_jvalue {
    ns_jtype type;
    double num;                // number, or bool as 0/1
    char *str;                 // string (NUL-terminated)
    struct ns_jvalue *items;   // array elements or object values
    char **keys;               // object keys
    size_t n;
} ns_jvalue;

// Parses text (len bytes); the whole text must be one value.
int ns_json_parse(const char *text, size_t len, ns_jvalue *out, ns_err *err);
void ns_json_free(ns_jvalue *v);
// Member of an object, or NULL.
const ns_jvalue *ns_json_get(const ns_jvalue *obj, const char *key);
#endif
