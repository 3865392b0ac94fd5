// tns.h: TNS tensor streams (specified in man/man5/tns.5).
// A stream is msgpack maps one after another, each a self-describing record:
//   {fmt:"tns", ver:1, kind, name, [dtype, shape, data], [meta:{...}], ...}
// The reader is incremental (one record in memory at a time) and validates
// every field before allocating; the writer emits keys in canonical order.
#ifndef NS_TNS_H
#define NS_TNS_H

#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>

#include "base/err.h"
#include "base/file.h"
#include "base/tensor.h"

#define NS_TNS_MAGIC "tns"
#define NS_TNS_VERSION 1
#define NS_KIND_MAX 32   // bytes of a kind string, NUL included
#define NS_NAME_MAX 255  // bytes of a name, NUL excluded

// Default cap on one record's encoded size: msgpack's bin limit plus room for
// metadata. ns_reader_set_max_record lowers it (tests) or raises it.
#define NS_RECORD_MAX_DEFAULT ((size_t)4 << 30)

// A record as read. Every pointer stays valid until the next ns_reader_next()
// or ns_reader_close() on the reader that produced it.
typedef struct ns_record {
    uint64_t index;                // 0-based position in the stream
    char kind[NS_KIND_MAX];        // "tensor", "meta", "graph", or an unknown kind
    char name[NS_NAME_MAX + 1];    // may be empty
    int has_data;                  // dtype/shape/data present (required for "tensor")
    ns_dtype dtype;
    int ndim;
    int64_t shape[NS_MAX_NDIM];    // outermost first
    int64_t numel;
    const void *data;              // nbytes, little-endian, NOT aligned: copy before use
    size_t nbytes;
    const msgpack_object *meta;    // the "meta" map, or NULL when absent
    const msgpack_object *root;    // the whole record map
    const void *raw;               // the record's exact encoded bytes, for pass-through
    size_t raw_len;
} ns_record;

typedef struct ns_reader ns_reader;

// Opens path for reading; "-" is standard input. Errors name the path.
ns_reader *ns_reader_open(const char *path, ns_err *err);
// Reads from an open descriptor (not closed by ns_reader_close); label names it in errors.
ns_reader *ns_reader_fdopen(int fd, const char *label, ns_err *err);
void ns_reader_set_max_record(ns_reader *r, size_t max_bytes);
// Puts n bytes already read from the descriptor (to sniff its format) back in
// front of it; only before the first ns_reader_next, n at most 4096.
int ns_reader_unread(ns_reader *r, const void *bytes, size_t n, ns_err *err);
// Requires every tensor name in the stream to be unique (models); off by default
// because `cat a.tns b.tns` of two data streams legitimately repeats names.
void ns_reader_require_unique_names(ns_reader *r, int on);
// 1: a record was read into *rec; 0: clean end of stream; -1: error (message
// names the input and the record number). After -1 the reader is finished.
int ns_reader_next(ns_reader *r, ns_record *rec, ns_err *err);
const char *ns_reader_label(const ns_reader *r);
void ns_reader_close(ns_reader *r);

// Copies a record's payload into a new aligned tensor of the same dtype.
int ns_record_tensor(const ns_record *rec, ns_tensor *out, ns_err *err);
// Copies a record's payload into a new f32 tensor, converting any numeric dtype.
int ns_record_tensor_f32(const ns_record *rec, ns_tensor *out, ns_err *err);

// --- reading metadata -------------------------------------------------------
// Value of key in a msgpack map, or NULL (also NULL when map is NULL or not a map).
const msgpack_object *ns_map_get(const msgpack_object *map, const char *key);
// Each returns 1 when found with the right type, 0 when absent, -1 (with err)
// when present with the wrong type or out of range.
int ns_obj_str(const msgpack_object *map, const char *key, char *buf, size_t cap,
               ns_err *err);
int ns_obj_i64(const msgpack_object *map, const char *key, int64_t *out, ns_err *err);
int ns_obj_f64(const msgpack_object *map, const char *key, double *out, ns_err *err);
// Numeric array of exactly n elements into out (ints or floats accepted).
int ns_obj_f64s(const msgpack_object *map, const char *key, double *out, size_t n,
                ns_err *err);
// Array of integers: *n receives the length; out (capacity cap) the values.
int ns_obj_i64s(const msgpack_object *map, const char *key, int64_t *out, size_t cap,
                size_t *n, ns_err *err);
// Array of strings: allocates *out (an array of *n malloc'd strings); free with
// ns_strings_free.
int ns_obj_strs(const msgpack_object *map, const char *key, char ***out, size_t *n,
                ns_err *err);
void ns_strings_free(char **strs, size_t n);

// --- building maps to write ----------------------------------------------------
// A msgpack map under construction: keys are added in call order.
typedef struct ns_map {
    msgpack_sbuffer buf;
    msgpack_packer pk;
    uint32_t count;
} ns_map;

void ns_map_init(ns_map *m);
void ns_map_free(ns_map *m);
void ns_map_str(ns_map *m, const char *key, const char *val);
void ns_map_i64(ns_map *m, const char *key, int64_t val);
void ns_map_f64(ns_map *m, const char *key, double val);
void ns_map_bool(ns_map *m, const char *key, int val);
void ns_map_strs(ns_map *m, const char *key, const char *const *vals, size_t n);
void ns_map_i64s(ns_map *m, const char *key, const int64_t *vals, size_t n);
void ns_map_i32s(ns_map *m, const char *key, const int32_t *vals, size_t n);
void ns_map_f64s(ns_map *m, const char *key, const double *vals, size_t n);
void ns_map_obj(ns_map *m, const char *key, const msgpack_object *val);
void ns_map_submap(ns_map *m, const char *key, const ns_map *sub);
// Adds key and returns the packer: the caller packs exactly one value.
msgpack_packer *ns_map_key(ns_map *m, const char *key);

// --- writing ---------------------------------------------------------------------
typedef struct ns_writer {
    FILE *f;
    msgpack_sbuffer head; // reused per record for everything but the payload
    msgpack_packer pk;
} ns_writer;

void ns_writer_init(ns_writer *w, FILE *f);
void ns_writer_free(ns_writer *w);
// Writes one record. t may be NULL (no payload); extra holds additional
// top-level keys (e.g. a graph's "nodes") and may be NULL; meta may be NULL.
// Fails on a write error (errno text included) or an oversized payload.
int ns_write_record(ns_writer *w, const char *kind, const char *name,
                    const ns_tensor *t, const ns_map *extra, const ns_map *meta,
                    ns_err *err);
// Shorthands for the common kinds.
int ns_write_tensor(ns_writer *w, const char *name, const ns_tensor *t,
                    const ns_map *meta, ns_err *err);
int ns_write_meta(ns_writer *w, const char *name, const ns_map *meta, ns_err *err);
// Writes a record's raw bytes unchanged (filters pass records through this way).
int ns_write_raw(ns_writer *w, const ns_record *rec, ns_err *err);

// --- output files that appear whole or not at all -------------------------------
typedef struct ns_output {
    FILE *f;     // write here
    char *path;  // final path, NULL for stdout
    char *tmp;   // temporary path beside it
    int direct;  // an existing device or pipe, written in place
    int temp_slot; // tmp's entry in the registry of temporary files (base/tempfile.h)
} ns_output;

// "-" is standard output. A regular file (new or existing) is written to a
// temporary file in the same directory and renamed over path by
// ns_output_commit; an existing device or pipe (/dev/null) is written in place.
// The temporary file is registered (base/tempfile.h), so a program that dies by
// a signal or exits on an error before committing removes it.
int ns_output_open(ns_output *o, const char *path, ns_err *err);
// Flushes, checks for write errors, renames into place. On failure removes
// the temporary file.
int ns_output_commit(ns_output *o, ns_err *err);
// Removes the temporary file (no-op for stdout).
void ns_output_abort(ns_output *o);
// The end of writing an output: frees the writer w (may be NULL), then commits
// o, or, when failed is nonzero (a -1 result or a failed flag: the writing
// failed and filled err), aborts it and returns -1. Returns 0 or -1.
int ns_output_finish(ns_output *o, ns_writer *w, int failed, ns_err *err);

#endif
