// json.c: msgpack -> JSON text (see json.h).
#include "base/json.h"

#include <math.h>

void ns_json_string(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (c < 0x20) fprintf(f, "\\u%04x", c);
            else fputc(c, f);
        }
    }
    fputc('"', f);
}

void ns_json_number(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.17g", v);
    else fputs("null", f);
}

void ns_json_value(FILE *f, const msgpack_object *o) {
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: fputs("null", f); break;
    case MSGPACK_OBJECT_BOOLEAN: fputs(o->via.boolean ? "true" : "false", f); break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: fprintf(f, "%llu", (unsigned long long)o->via.u64); break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: fprintf(f, "%lld", (long long)o->via.i64); break;
    case MSGPACK_OBJECT_FLOAT32:
        if (isfinite(o->via.f64)) fprintf(f, "%.9g", o->via.f64);
        else fputs("null", f);
        break;
    case MSGPACK_OBJECT_FLOAT64: ns_json_number(f, o->via.f64); break;
    case MSGPACK_OBJECT_STR: ns_json_string(f, o->via.str.ptr, o->via.str.size); break;
    case MSGPACK_OBJECT_BIN: fprintf(f, "{\"bin_bytes\":%u}", o->via.bin.size); break;
    case MSGPACK_OBJECT_EXT: fprintf(f, "{\"ext_bytes\":%u}", o->via.ext.size); break;
    case MSGPACK_OBJECT_ARRAY:
        fputc('[', f);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i) fputc(',', f);
            ns_json_value(f, &o->via.array.ptr[i]);
        }
        fputc(']', f);
        break;
    case MSGPACK_OBJECT_MAP:
        fputc('{', f);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (i) fputc(',', f);
            if (kv->key.type == MSGPACK_OBJECT_STR) {
                ns_json_string(f, kv->key.via.str.ptr, kv->key.via.str.size);
            } else {
                char *text = NULL;
                size_t len = 0;
                FILE *mem = open_memstream(&text, &len);
                if (mem) {
                    ns_json_value(mem, &kv->key);
                    fclose(mem);
                }
                ns_json_string(f, text ? text : "", text ? len : 0);
                free(text);
            }
            fputc(':', f);
            ns_json_value(f, &kv->val);
        }
        fputc('}', f);
        break;
    }
}
