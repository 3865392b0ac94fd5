// test_tns.c: the TNS reader and writer: round trips, and every kind of damaged
// input the reader must refuse with a message rather than crash or over-allocate.
// sanitize: yes (runs under ASan/UBSan in `make check-sanitize`)
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "base/tempfile.h"
#include "stream/tns.h"

// Writes records into a memory buffer through the real writer.
static char *mem_stream(size_t *len, void (*fill)(ns_writer *)) {
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    ns_writer w;
    ns_writer_init(&w, f);
    fill(&w);
    ns_writer_free(&w);
    fclose(f);
    return buf;
}

// Reads all records of a byte buffer through a pipe-free temp file.
// Returns the number of records, or -1 with err set.
static int read_all(const void *bytes, size_t len, ns_err *err, int unique, size_t max_record) {
    char path[] = "/tmp/ns_test_tns_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, bytes, len) != (ssize_t)len) return ns_errf(err, "temp file");
    close(fd);
    ns_reader *r = ns_reader_open(path, err);
    unlink(path);
    if (!r) return -1;
    ns_reader_require_unique_names(r, unique);
    if (max_record) ns_reader_set_max_record(r, max_record);
    ns_record rec;
    int n = 0, got;
    while ((got = ns_reader_next(r, &rec, err)) == 1) n++;
    ns_reader_close(r);
    return got < 0 ? -1 : n;
}

static void fill_three(ns_writer *w) {
    ns_err err;
    ns_map meta;
    ns_map_init(&meta);
    const char *labels[] = {"cat", "dog"};
    ns_map_str(&meta, "general.producer", "test");
    ns_map_strs(&meta, "general.labels", labels, 2);
    ns_write_meta(w, "", &meta, &err);
    ns_map_free(&meta);

    ns_tensor t;
    int64_t shape[2] = {2, 3};
    ns_tensor_alloc(&t, NS_F32, 2, shape, &err);
    for (int i = 0; i < 6; i++) ((float *)t.data)[i] = (float)i * 0.5f;
    ns_map_init(&meta);
    int64_t lab[2] = {1, 0};
    ns_map_i64s(&meta, "labels", lab, 2);
    ns_write_tensor(w, "x", &t, &meta, &err);
    ns_map_free(&meta);
    ns_tensor_free(&t);

    int64_t s1[1] = {4};
    ns_tensor_alloc(&t, NS_I64, 1, s1, &err);
    for (int i = 0; i < 4; i++) ((int64_t *)t.data)[i] = -i;
    ns_write_tensor(w, "y", &t, NULL, &err);
    ns_tensor_free(&t);
}

static void fill_dup(ns_writer *w) {
    ns_err err;
    ns_tensor t;
    int64_t s[1] = {1};
    ns_tensor_alloc(&t, NS_U8, 1, s, &err);
    ns_write_tensor(w, "same", &t, NULL, &err);
    ns_write_tensor(w, "same", &t, NULL, &err);
    ns_tensor_free(&t);
}

static void test_round_trip(void) {
    size_t len;
    char *buf = mem_stream(&len, fill_three);
    char path[] = "/tmp/ns_test_tns_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, buf, len) == (ssize_t)len, "temp stream written");
    close(fd);
    ns_err err;
    ns_reader *r = ns_reader_open(path, &err);
    ns_record rec;
    CHECK(ns_reader_next(r, &rec, &err) == 1 && strcmp(rec.kind, "meta") == 0 && !rec.has_data,
          "meta record first");
    char **labels;
    size_t n;
    CHECK(ns_obj_strs(rec.meta, "general.labels", &labels, &n, &err) == 1 && n == 2 &&
              strcmp(labels[1], "dog") == 0, "class names survive");
    ns_strings_free(labels, n);
    char producer[32];
    CHECK(ns_obj_str(rec.meta, "general.producer", producer, sizeof producer, &err) == 1 &&
              strcmp(producer, "test") == 0, "string metadata survives");
    CHECK(ns_reader_next(r, &rec, &err) == 1 && rec.has_data && rec.dtype == NS_F32 &&
              rec.ndim == 2 && rec.shape[0] == 2 && rec.shape[1] == 3 && strcmp(rec.name, "x") == 0,
          "f32 2x3 tensor header");
    ns_tensor t;
    CHECK(ns_record_tensor(&rec, &t, &err) == 0 && ((float *)t.data)[5] == 2.5f &&
              ((uintptr_t)t.data % 64) == 0, "payload copied into aligned memory");
    ns_tensor_free(&t);
    int64_t lab[4];
    CHECK(ns_obj_i64s(rec.meta, "labels", lab, 4, &n, &err) == 1 && n == 2 && lab[0] == 1,
          "per-sample labels in meta");
    CHECK(ns_reader_next(r, &rec, &err) == 1 && rec.dtype == NS_I64, "i64 tensor");
    CHECK(ns_record_tensor_f32(&rec, &t, &err) == 0 && ((float *)t.data)[3] == -3.0f,
          "i64 converts to f32");
    ns_tensor_free(&t);
    CHECK(ns_reader_next(r, &rec, &err) == 0, "clean end of stream");
    ns_reader_close(r);
    unlink(path);

    // cat a b is a stream: twice the records.
    char *two = malloc(2 * len);
    memcpy(two, buf, len);
    memcpy(two + len, buf, len);
    CHECK(read_all(two, 2 * len, &err, 0, 0) == 6, "concatenated streams read as one");
    free(two);
    free(buf);
}

static void test_truncation(void) {
    size_t len;
    char *buf = mem_stream(&len, fill_three);
    ns_err err;
    int bad = 0;
    for (size_t cut = 1; cut < len; cut++) {
        int n = read_all(buf, cut, &err, 0, 0);
        // A cut exactly between records is a valid shorter stream.
        if (n >= 0) continue;
        if (!strstr(err.msg, "truncated")) bad++;
    }
    CHECK(bad == 0, "every cut inside a record reports truncation (%d did not)", bad);
    free(buf);
}

static void test_corruption(void) {
    size_t len;
    char *buf = mem_stream(&len, fill_three);
    ns_err err;
    int crashes_avoided = 0;
    // Flip each byte in turn: the reader must either accept or refuse with a
    // message, never crash (ASan would catch overreads here).
    for (size_t i = 0; i < len; i++) {
        char *copy = malloc(len);
        memcpy(copy, buf, len);
        copy[i] ^= 0x5a;
        err.msg[0] = 0;
        if (read_all(copy, len, &err, 0, 0) < 0 && err.msg[0]) crashes_avoided++;
        free(copy);
    }
    CHECK(crashes_avoided > 0, "byte flips are refused with messages (%d of %zu)", crashes_avoided, len);
    free(buf);
}

// Hand-made records: a few literal msgpack bytes.
static void expect_error(const char *what, const void *bytes, size_t len, const char *needle) {
    ns_err err = {{0}};
    int n = read_all(bytes, len, &err, 0, 0);
    CHECK(n < 0 && strstr(err.msg, needle), "%s -> \"%s\"", what, err.msg);
}

static void test_bad_records(void) {
    // {"fmt":"tsr"}
    const unsigned char bad_magic[] = {0x81, 0xa3, 'f', 'm', 't', 0xa3, 't', 's', 'r'};
    expect_error("bad magic", bad_magic, sizeof bad_magic, "bad magic");
    // {"kind":"x"}
    const unsigned char no_fmt[] = {0x81, 0xa4, 'k', 'i', 'n', 'd', 0xa1, 'x'};
    expect_error("no fmt key", no_fmt, sizeof no_fmt, "not a TNS record");
    // {"fmt":"tns","ver":9,"kind":"meta"}
    const unsigned char new_ver[] = {0x83, 0xa3, 'f', 'm', 't', 0xa3, 't', 'n', 's', 0xa3, 'v', 'e',
                                     'r', 0x09, 0xa4, 'k', 'i', 'n', 'd', 0xa4, 'm', 'e', 't', 'a'};
    expect_error("newer version", new_ver, sizeof new_ver, "unsupported version (9");
    // a lone array header claiming 2^32-1 elements: must not allocate for them
    const unsigned char huge_array[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0};
    expect_error("forged array count", huge_array, sizeof huge_array, "truncated");
    // reserved byte 0xc1
    const unsigned char reserved[] = {0xc1};
    expect_error("reserved msgpack byte", reserved, sizeof reserved, "corrupt");
    // 40 nested arrays
    unsigned char deep[41];
    memset(deep, 0x91, 40);
    deep[40] = 0xc0;
    expect_error("nesting too deep", deep, sizeof deep, "corrupt");
    // not a map at all
    const unsigned char number[] = {0x05};
    expect_error("a bare number", number, sizeof number, "not a map");
}

// Builds a tensor record by hand with given dtype name, shape and data length.
static size_t forge_tensor(unsigned char *out, const char *dtype, const uint64_t *shape,
                           int ndim, uint32_t nbytes) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 7);
    const char *keys[] = {"fmt", "ver", "kind", "name", "dtype", "shape", "data"};
    msgpack_pack_str_with_body(&pk, keys[0], 3);
    msgpack_pack_str_with_body(&pk, "tns", 3);
    msgpack_pack_str_with_body(&pk, keys[1], 3);
    msgpack_pack_uint8(&pk, 1);
    msgpack_pack_str_with_body(&pk, keys[2], 4);
    msgpack_pack_str_with_body(&pk, "tensor", 6);
    msgpack_pack_str_with_body(&pk, keys[3], 4);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_str_with_body(&pk, keys[4], 5);
    msgpack_pack_str_with_body(&pk, dtype, strlen(dtype));
    msgpack_pack_str_with_body(&pk, keys[5], 5);
    msgpack_pack_array(&pk, (size_t)ndim);
    for (int i = 0; i < ndim; i++) msgpack_pack_uint64(&pk, shape[i]);
    msgpack_pack_str_with_body(&pk, keys[6], 4);
    msgpack_pack_bin(&pk, nbytes);
    size_t head = sb.size;
    memcpy(out, sb.data, head);
    memset(out + head, 0, nbytes);
    msgpack_sbuffer_destroy(&sb);
    return head + nbytes;
}

static void test_bad_tensors(void) {
    unsigned char rec[512];
    uint64_t s23[2] = {2, 3};
    size_t n = forge_tensor(rec, "f32", s23, 2, 20);
    expect_error("byte count mismatch", rec, n, "data has 20 bytes but dtype f32 and shape 2x3 need 24");
    n = forge_tensor(rec, "f31", s23, 2, 24);
    expect_error("unknown dtype", rec, n, "unknown dtype (f31)");
    uint64_t huge[3] = {1ull << 40, 1ull << 40, 1ull << 40};
    n = forge_tensor(rec, "f32", huge, 3, 0);
    expect_error("absurd dims", rec, n, "too large");
    uint64_t many[20] = {0};
    for (int i = 0; i < 20; i++) many[i] = 1;
    n = forge_tensor(rec, "u8", many, 20, 1);
    expect_error("too many dims", rec, n, "too many dimensions (20");
    uint64_t s1[1] = {300};
    n = forge_tensor(rec, "u8", s1, 1, 300 > 400 ? 0 : 300);
    ns_err err;
    CHECK(read_all(rec, n, &err, 0, 0) == 1, "a well-formed forged record reads");
    CHECK(read_all(rec, n, &err, 0, 128) < 0 && strstr(err.msg, "larger than the limit"),
          "record size cap -> \"%s\"", err.msg);
}

static void test_unique_names(void) {
    size_t len;
    char *buf = mem_stream(&len, fill_dup);
    ns_err err;
    CHECK(read_all(buf, len, &err, 0, 0) == 2, "repeated names allowed in data streams");
    CHECK(read_all(buf, len, &err, 1, 0) < 0 && strstr(err.msg, "duplicate tensor name (same)"),
          "repeated names refused where unique -> \"%s\"", err.msg);
    free(buf);
}

static void test_output_atomic(void) {
    ns_err err;
    ns_output o;
    const char *path = "/tmp/ns_test_tns_atomic.tns";
    unlink(path);
    CHECK(ns_output_open(&o, path, &err) == 0, "output opened");
    fputs("partial", o.f);
    CHECK(access(path, F_OK) != 0, "nothing at the final path before commit");
    ns_output_abort(&o);
    CHECK(access(path, F_OK) != 0, "nothing left after abort");
    CHECK(ns_output_open(&o, path, &err) == 0, "output reopened");
    fputs("whole", o.f);
    CHECK(ns_output_commit(&o, &err) == 0 && access(path, F_OK) == 0, "file appears on commit");
    unlink(path);
    CHECK(ns_output_open(&o, "/nonexistent-dir/x.tns", &err) < 0 && strstr(err.msg, "cannot create"),
          "unwritable path -> \"%s\"", err.msg);
}

// Temporary files matching "prefix*" in /tmp.
static int temp_count(const char *prefix) {
    glob_t g;
    char pattern[256];
    snprintf(pattern, sizeof pattern, "%s*", prefix);
    int n = glob(pattern, 0, NULL, &g) == 0 ? (int)g.gl_pathc : 0;
    globfree(&g);
    return n;
}

// Every open output's temporary file is registered: ns_tempfile_remove_all
// (what a signal or an exit runs) removes those not committed, and only those.
static void test_output_registry(void) {
    ns_err err;
    ns_output a, b, c;
    const char *pa = "/tmp/ns_test_reg_a.tns", *pb = "/tmp/ns_test_reg_b.tns", *pc = "/tmp/ns_test_reg_c.tns";
    unlink(pa);
    unlink(pb);
    unlink(pc);
    CHECK(ns_output_open(&a, pa, &err) == 0 && ns_output_open(&b, pb, &err) == 0 &&
              ns_output_open(&c, pc, &err) == 0, "three outputs open");
    CHECK(temp_count("/tmp/ns_test_reg_") == 3, "three temporary files");
    fputs("whole", c.f);
    CHECK(ns_output_commit(&c, &err) == 0, "one committed");
    ns_tempfile_remove_all();
    CHECK(temp_count("/tmp/ns_test_reg_a.tns.tmp.") == 0 && temp_count("/tmp/ns_test_reg_b.tns.tmp.") == 0,
          "the uncommitted temporary files are gone");
    CHECK(access(pc, F_OK) == 0, "the committed output stays");
    ns_output_abort(&a); // after the registry removed its file: no harm
    ns_output_abort(&b);
    unlink(pc);
    // The registry is bounded; a full one is an error, not a silent loss.
    ns_output many[NS_TEMPFILE_SLOTS + 1];
    int opened = 0;
    while (opened <= NS_TEMPFILE_SLOTS && ns_output_open(&many[opened], pa, &err) == 0) opened++;
    CHECK(opened == NS_TEMPFILE_SLOTS && strstr(err.msg, "temporary files at once"),
          "%d outputs at once, then \"%s\"", opened, err.msg);
    CHECK(temp_count("/tmp/ns_test_reg_a.tns.tmp.") == NS_TEMPFILE_SLOTS, "the refused one left no file");
    for (int i = 0; i < opened; i++) ns_output_abort(&many[i]);
    CHECK(temp_count("/tmp/ns_test_reg_") == 0, "aborts free their slots");
    CHECK(ns_output_open(&a, pa, &err) == 0, "a slot is free again");
    ns_output_abort(&a);
}

static void test_halves(void) {
    // f16/bf16 conversions: exact for representable values.
    float in[6] = {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f}, out[6];
    uint16_t h[6];
    ns_convert_from_f32(h, in, NS_F16, 6);
    ns_convert_to_f32(out, h, NS_F16, 6);
    CHECK(memcmp(in, out, sizeof in) == 0, "f16 round trip of representable values");
    float b_in[3] = {1.0f, -3.0f, 0.15625f};
    ns_convert_from_f32(h, b_in, NS_BF16, 3);
    ns_convert_to_f32(out, h, NS_BF16, 3);
    CHECK(memcmp(b_in, out, sizeof b_in) == 0, "bf16 round trip of representable values");
    float sat[3] = {300.0f, -5.0f, 2.5f};
    uint8_t u[3];
    ns_convert_from_f32(u, sat, NS_U8, 3);
    CHECK(u[0] == 255 && u[1] == 0 && u[2] == 2, "u8 saturates and rounds half to even");
}

int main(void) {
    test_round_trip();
    test_truncation();
    test_corruption();
    test_bad_records();
    test_bad_tensors();
    test_unique_names();
    test_output_atomic();
    test_output_registry();
    test_halves();
    return check_done();
}
