// json.h: msgpack values as JSON text, for --json outputs.
#ifndef NS_JSON_H
#define NS_JSON_H

#include <msgpack.h>
#include <stdio.h>

// Writes s (n bytes) as a JSON string literal, escaping as RFC 8259 requires.
void ns_json_string(FILE *f, const char *s, size_t n);
// Writes a number as JSON: %.17g, or null for NaN and infinities (JSON has none).
void ns_json_number(FILE *f, double v);
// Writes any msgpack value as JSON. bin becomes {"bin_bytes": N}; non-string
// map keys are written as their JSON text inside a string; NaN/Inf as null.
void ns_json_value(FILE *f, const msgpack_object *o);

#endif
