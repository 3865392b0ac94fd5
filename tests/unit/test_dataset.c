// test_dataset.c: datasets (lib/stream/dataset.c, lib/stream/idx.c) against fixtures built
// here in a temporary directory: archives from ns_archive_writer with PNGs from
// ns_png_encode, IDX files plain and gzip'd, a directory tree, and malformed
// inputs. With Fashion-MNIST installed it also opens the real t10k set and
// reports decode speed (images/s) for IDX and for a tar of PNGs.
// sanitize: yes (malformed input runs under ASan/UBSan in make check)
#include <archive.h>
#include <archive_entry.h>
#include <ftw.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "stream/dataset.h"

static char tmp[64];

// --- fixtures ------------------------------------------------------------------

typedef struct bytes {
    unsigned char *p;
    size_t n;
} bytes;

static char *at(const char *name) { // a path in tmp; valid until the next call
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp, name);
    return buf[k];
}

static int write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

static bytes read_bytes(const char *path) {
    bytes b = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return b;
    fseek(f, 0, SEEK_END);
    b.n = (size_t)ftell(f);
    rewind(f);
    b.p = malloc(b.n + 1);
    if (fread(b.p, 1, b.n, f) != b.n) b.n = 0;
    fclose(f);
    return b;
}

// The byte value of pixel j of test image `seed`.
static int pixel(int seed, int j) { return (j * 37 + seed * 101 + (j * j) % 7) % 256; }

// A c x h x w image with known 8-bit values, PNG-encoded.
static bytes make_png(int seed, int c, int h, int w) {
    ns_image img;
    ns_err err;
    bytes b = {0};
    if (ns_image_alloc(&img, c, h, w, &err)) return b;
    for (int j = 0; j < c * h * w; j++) img.data[j] = pixel(seed, j) / 255.0f;
    void *buf = NULL;
    if (ns_png_encode(&img, &buf, &b.n, &err) == 0) b.p = buf;
    ns_image_free(&img);
    return b;
}

// Does img hold make_png(seed, c, h, w)'s values exactly at 8 bits?
static int image_is(const ns_image *img, int seed, int c, int h, int w) {
    if (img->c != c || img->h != h || img->w != w) return 0;
    for (int j = 0; j < c * h * w; j++)
        if (lrintf(img->data[j] * 255.0f) != pixel(seed, j)) return 0;
    return 1;
}

typedef struct entry {
    const char *path;
    int seed; // -1: the text "not an image"
} entry;

static int write_archive(const char *path, const char *format, const entry *e, int n) {
    ns_err err;
    FILE *f = fopen(path, "wb");
    ns_archive_writer *aw = f ? ns_archive_writer_open(f, format, &err) : NULL;
    int rc = aw ? 0 : -1;
    for (int i = 0; i < n && rc == 0; i++) {
        bytes b = e[i].seed < 0 ? (bytes){(unsigned char *)strdup("not an image"), 12}
                                : make_png(e[i].seed, 3, 4, 5);
        rc = ns_archive_add(aw, e[i].path, b.p, b.n, &err);
        free(b.p);
    }
    if (aw && ns_archive_writer_close(aw, &err)) rc = -1;
    if (rc) printf("# write_archive %s: %s\n", path, err.msg);
    if (f && fclose(f)) rc = -1;
    return rc;
}

// Writes data gzip'd (libarchive's raw format), or as-is when gz is 0.
static int write_maybe_gz(const char *path, const void *data, size_t n, int gz) {
    if (!gz) return write_bytes(path, data, n);
    struct archive *a = archive_write_new();
    struct archive_entry *e = archive_entry_new();
    archive_write_set_format_raw(a);
    archive_write_add_filter_gzip(a);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_size(e, (la_int64_t)n);
    int rc = archive_write_open_filename(a, path) || archive_write_header(a, e) ||
             archive_write_data(a, data, n) != (la_ssize_t)n || archive_write_close(a);
    archive_entry_free(e);
    archive_write_free(a);
    return rc ? -1 : 0;
}

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v;
}

// IDX images (n, h, w) with pixel(i, j) values, `extra` bytes more or less.
static int write_idx_images(const char *path, int n, int h, int w, int extra, int gz) {
    size_t len = 16 + (size_t)n * h * w;
    unsigned char *b = calloc(len + (extra > 0 ? extra : 0), 1);
    put_be32(b, 0x803), put_be32(b + 4, n), put_be32(b + 8, h), put_be32(b + 12, w);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < h * w; j++) b[16 + (size_t)i * h * w + j] = pixel(i, j);
    int rc = write_maybe_gz(path, b, len + extra, gz);
    free(b);
    return rc;
}

static int write_idx_labels(const char *path, int n, const unsigned char *labels, int gz) {
    unsigned char b[64];
    put_be32(b, 0x801), put_be32(b + 4, n);
    memcpy(b + 8, labels, n);
    return write_maybe_gz(path, b, 8 + n, gz);
}

static int same_file(const char *a, const char *b) {
    bytes x = read_bytes(a), y = read_bytes(b);
    int same = x.p && y.p && x.n == y.n && x.n > 0 && memcmp(x.p, y.p, x.n) == 0;
    free(x.p), free(y.p);
    return same;
}

static int open_fails(const char *path, const char *labels, const char *want) {
    ns_err err = {{0}};
    ns_dataset *ds = ns_dataset_open(path, labels, &err);
    ns_dataset_close(ds);
    int ok = !ds && strstr(err.msg, want) != NULL;
    if (!ok) printf("# got \"%s\", wanted \"%s\"\n", ds ? "(opened)" : err.msg, want);
    return ok;
}

// --- archives ------------------------------------------------------------------

// Entries in archive order; the expected dataset order is below.
static const entry unsorted[] = {
    {"b/2.png", 1}, {"b/1.png", 2}, {"a/x.png", 3},    {"c/Z.PNG", 4},
    {"README", -1}, {"a/w.png", 5}, {"a/._w.png", -1}, {"a/notes.txt", -1},
};
static const char *sorted_names[] = {"a/w.png", "a/x.png", "b/1.png", "b/2.png", "c/Z.PNG"};
static const int sorted_seeds[] = {5, 3, 2, 1, 4}, sorted_labels[] = {0, 0, 1, 1, 2};

static void check_sorted(ns_dataset *ds, const char *what) {
    ns_err err;
    CHECK(ns_dataset_size(ds) == 5, "%s: 5 samples (got %lld)", what,
          (long long)ns_dataset_size(ds));
    CHECK(ns_dataset_num_classes(ds) == 3, "%s: 3 classes", what);
    const char *cls[] = {"a", "b", "c"};
    int names_ok = 1, pixels_ok = 1, labels_ok = 1;
    for (int k = 0; k < 3; k++) names_ok &= !strcmp(ns_dataset_class_name(ds, k), cls[k]);
    for (int i = 0; i < 5 && ns_dataset_size(ds) == 5; i++) {
        ns_image img;
        int label = -9;
        names_ok &= !strcmp(ns_dataset_sample_name(ds, i), sorted_names[i]);
        if (ns_dataset_get(ds, i, &img, &label, &err)) {
            printf("# get %d: %s\n", i, err.msg);
            pixels_ok = 0;
            continue;
        }
        pixels_ok &= image_is(&img, sorted_seeds[i], 3, 4, 5);
        labels_ok &= label == sorted_labels[i];
        ns_image_free(&img);
    }
    CHECK(names_ok, "%s: classes a,b,c and files sorted within class", what);
    CHECK(labels_ok, "%s: labels are class indices", what);
    CHECK(pixels_ok, "%s: pixels round-trip exactly at 8 bits", what);
}

static void test_archives(void) {
    const char *formats[] = {"tar", "tar.gz", "zip"}, *kinds[] = {"tar", "tar", "zip"};
    for (int f = 0; f < 3; f++) {
        char name[32], name2[32], what[64];
        ns_err err;
        snprintf(name, sizeof name, "set.%s", formats[f]);
        snprintf(name2, sizeof name2, "again.%s", formats[f]);
        CHECK(write_archive(at(name), formats[f], unsorted, 8) == 0, "write %s", name);
        ns_dataset *ds = ns_dataset_open(at(name), NULL, &err);
        CHECK(ds != NULL, "open %s: %s", name, ds ? "ok" : err.msg);
        if (!ds) continue;
        snprintf(what, sizeof what, "%s", name);
        CHECK(!strcmp(ns_dataset_kind(ds), kinds[f]), "%s: kind %s", what, ns_dataset_kind(ds));
        check_sorted(ds, what);
        ns_image img;
        CHECK(ns_dataset_get(ds, 5, &img, NULL, &err) && strstr(err.msg, "out of range"),
              "%s: get past the end fails: %s", what, err.msg);
        ns_dataset_close(ds);
        // Same content, same bytes, whatever the time zone.
        setenv("TZ", "JST-9", 1);
        tzset();
        CHECK(write_archive(at(name2), formats[f], unsorted, 8) == 0, "write %s", name2);
        setenv("TZ", "UTC0", 1);
        tzset();
        CHECK(same_file(at(name), at(name2)), "%s: deterministic bytes", name);
    }
    // One top-level directory; non-image files beside it are fine.
    const entry top[] = {{"top/b/1.png", 7}, {"top/a/1.png", 8}, {"top/README", -1}};
    ns_err err;
    write_archive(at("top.tar"), "tar", top, 3);
    ns_dataset *ds = ns_dataset_open(at("top.tar"), NULL, &err);
    CHECK(ds && ns_dataset_size(ds) == 2 && !strcmp(ns_dataset_sample_name(ds, 0), "a/1.png") &&
              !strcmp(ns_dataset_class_name(ds, 1), "b"),
          "single top-level dir: a/1.png, b/1.png %s", ds ? "" : err.msg);
    ns_dataset_close(ds);
    // From memory.
    bytes b = read_bytes(at("set.tar"));
    ds = ns_dataset_open_memory(b.p, b.n, &err);
    CHECK(ds && ns_dataset_size(ds) == 5, "open_memory on a tar: %s", ds ? "5 samples" : err.msg);
    ns_dataset_close(ds);
    CHECK(!ns_dataset_open_memory(b.p, 0, &err), "open_memory on 0 bytes fails: %s", err.msg);
    // From standard input.
    FILE *in = freopen(at("set.tar.gz"), "rb", stdin);
    ds = in ? ns_dataset_open("-", NULL, &err) : NULL;
    CHECK(ds && ns_dataset_size(ds) == 5, "open - (stdin) on a tar.gz: %s",
          ds ? "5 samples" : err.msg);
    ns_dataset_close(ds);
    // Truncated halfway. A plain tar cut exactly between entries cannot be told
    // from one whose writer left out the end blocks (libarchive, like GNU tar,
    // accepts those), so cut off the 512-byte grid.
    write_bytes(at("half.tar"), b.p, b.n / 2 - 100); // b is the plain tar
    CHECK(open_fails(at("half.tar"), NULL, at("half.tar")), "truncated tar fails naming it");
    free(b.p);
    b = read_bytes(at("set.tar.gz"));
    write_bytes(at("half.tar.gz"), b.p, b.n / 2);
    CHECK(open_fails(at("half.tar.gz"), NULL, at("half.tar.gz")),
          "truncated tar.gz fails naming it");
    free(b.p);
    b = read_bytes(at("set.zip"));
    write_bytes(at("half.zip"), b.p, b.n / 2);
    CHECK(open_fails(at("half.zip"), NULL, at("half.zip")), "truncated zip fails naming it");
    free(b.p);
}

// An archive the writer would refuse: paths as given, via libarchive directly.
static void write_raw_tar(const char *path, const char *const *names, int n) {
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_open_filename(a, path);
    bytes png = make_png(1, 1, 2, 2);
    for (int i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_copy_pathname(e, names[i]);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, (la_int64_t)png.n);
        archive_write_header(a, e);
        archive_write_data(a, png.p, png.n);
        archive_entry_free(e);
    }
    free(png.p);
    archive_write_close(a);
    archive_write_free(a);
}

static void test_bad_inputs(void) {
    ns_err err;
    write_bytes(at("empty"), "", 0);
    CHECK(open_fails(at("empty"), NULL, at("empty")), "empty file fails naming it");
    CHECK(open_fails(at("missing"), NULL, "No such file"), "missing file fails");
    const entry nopng[] = {{"a/readme.txt", -1}, {"b/c.jpg", -1}};
    write_archive(at("nopng.zip"), "zip", nopng, 2);
    char want[256];
    snprintf(want, sizeof want, "no CLASS/NAME.png entries in %s", at("nopng.zip"));
    CHECK(open_fails(at("nopng.zip"), NULL, want), "zip without PNG entries fails");
    write_archive(at("empty.tar"), "tar", NULL, 0);
    CHECK(open_fails(at("empty.tar"), NULL, at("empty.tar")), "tar with no entries fails");
    unsigned char noise[4096];
    srand(7);
    for (size_t i = 0; i < sizeof noise; i++) noise[i] = (unsigned char)rand();
    write_bytes(at("noise.bin"), noise, sizeof noise);
    CHECK(open_fails(at("noise.bin"), NULL, "unknown format"), "random bytes fail");
    bytes png = make_png(1, 3, 4, 5);
    write_bytes(at("one.png"), png.p, png.n);
    free(png.p);
    CHECK(open_fails(at("one.png"), NULL, "single PNG"), "a single PNG is not a dataset");
    const char *evil[] = {"a/1.png", "a/../../etc/x.png"};
    write_raw_tar(at("evil.tar"), evil, 2);
    CHECK(open_fails(at("evil.tar"), NULL, "unsafe entry path"), "path traversal fails");
    const char *abs_[] = {"/a/1.png"};
    write_raw_tar(at("abs.tar"), abs_, 1);
    CHECK(open_fails(at("abs.tar"), NULL, "unsafe entry path"), "absolute path fails");
    const char *dup[] = {"a/1.png", "./a/1.png"};
    write_raw_tar(at("dup.tar"), dup, 2);
    CHECK(open_fails(at("dup.tar"), NULL, "duplicate entry 'a/1.png'"), "duplicate entry fails");
    const entry corrupt[] = {{"a/bad.png", -1}};
    write_archive(at("corrupt.tar"), "tar", corrupt, 1);
    ns_dataset *ds = ns_dataset_open(at("corrupt.tar"), NULL, &err);
    ns_image img;
    int bad = ds && ns_dataset_get(ds, 0, &img, NULL, &err) != 0 && strstr(err.msg, "a/bad.png");
    CHECK(bad, "a corrupt PNG entry fails in get, naming it: %s", err.msg);
    ns_dataset_close(ds);
    CHECK(open_fails(at("set.tar"), at("set.tar"), "only goes with IDX"), "labels with a tar fail");
    // The writer's own checks.
    FILE *f = fopen("/dev/full", "wb");
    ns_archive_writer *aw = f ? ns_archive_writer_open(f, "tar", &err) : NULL;
    CHECK(aw && ns_archive_add(aw, "../x.png", "x", 1, &err) && strstr(err.msg, "../x.png"),
          "writer refuses '../x.png': %s", err.msg);
    CHECK(aw && ns_archive_add(aw, "/x.png", "x", 1, &err), "writer refuses '/x.png'");
    int rc = aw ? ns_archive_add(aw, "a/x.png", "x", 1, &err) : -1;
    rc |= ns_archive_writer_close(aw, &err);
    CHECK(aw && rc, "writing to /dev/full fails: %s", err.msg);
    if (f) fclose(f);
    CHECK(!ns_archive_writer_open(stdout, "rar", &err), "unknown writer format fails: %s", err.msg);
}

// --- directories, IDX -----------------------------------------------------------

static void test_dir(void) {
    const char *dirs[] = {"root", "root/b", "root/a", "root/.hidden", "root/empty"};
    for (int i = 0; i < 5; i++) mkdir(at(dirs[i]), 0755);
    const entry files[] = {{"root/b/1.png", 11},
                           {"root/a/2.png", 12},
                           {"root/a/1.png", 13},
                           {"root/.hidden/x.png", 14},
                           {"root/top.png", 15}};
    for (int i = 0; i < 5; i++) {
        bytes b = make_png(files[i].seed, 3, 4, 5);
        write_bytes(at(files[i].path), b.p, b.n);
        free(b.p);
    }
    write_bytes(at("root/a/notes.txt"), "hi", 2);
    ns_err err;
    ns_dataset *ds = ns_dataset_open(at("root"), NULL, &err);
    CHECK(ds != NULL, "open directory: %s", ds ? "ok" : err.msg);
    if (!ds) return;
    CHECK(ns_dataset_size(ds) == 3 && ns_dataset_num_classes(ds) == 2 &&
              !strcmp(ns_dataset_kind(ds), "dir"),
          "dir: 3 samples in 2 classes (hidden and empty dirs skipped)");
    const char *names[] = {"a/1.png", "a/2.png", "b/1.png"};
    const int seeds[] = {13, 12, 11}, labels[] = {0, 0, 1};
    int ok = ns_dataset_size(ds) == 3;
    for (int i = 0; ok && i < 3; i++) {
        ns_image img;
        int label;
        ok = !strcmp(ns_dataset_sample_name(ds, i), names[i]) &&
             ns_dataset_get(ds, i, &img, &label, &err) == 0 && label == labels[i] &&
             image_is(&img, seeds[i], 3, 4, 5);
        ns_image_free(&img);
    }
    CHECK(ok, "dir: order, labels and pixels");
    ns_dataset_close(ds);
}

static void test_idx(void) {
    const unsigned char labels[] = {3, 0, 1, 3, 2};
    for (int gz = 0; gz < 2; gz++) {
        const char *im = gz ? "im.idx.gz" : "im.idx", *lb = gz ? "lb.idx.gz" : "lb.idx";
        write_idx_images(at(im), 5, 3, 4, 0, gz);
        write_idx_labels(at(lb), 5, labels, gz);
        ns_err err;
        ns_dataset *ds = ns_dataset_open(at(im), at(lb), &err);
        CHECK(ds != NULL, "open %s with %s: %s", im, lb, ds ? "ok" : err.msg);
        if (!ds) continue;
        int ok = ns_dataset_size(ds) == 5 && ns_dataset_num_classes(ds) == 4 &&
                 !strcmp(ns_dataset_class_name(ds, 3), "3") &&
                 !strcmp(ns_dataset_kind(ds), "idx") &&
                 !strcmp(ns_dataset_sample_name(ds, 2), "000002");
        CHECK(ok, "%s: 5 images, classes \"0\"..\"3\", names 000000..", im);
        ok = 1;
        for (int i = 0; i < 5; i++) {
            ns_image img;
            int label;
            ok &= ns_dataset_get(ds, i, &img, &label, &err) == 0 && label == labels[i] &&
                  img.c == 1 && img.h == 3 && img.w == 4;
            for (int j = 0; ok && j < 12; j++) ok &= img.data[j] == pixel(i, j) / 255.0f;
            ns_image_free(&img);
        }
        CHECK(ok, "%s: labels, and pixels are x/255 exactly", im);
        ns_dataset_close(ds);
        ds = ns_dataset_open(at(im), NULL, &err);
        ns_image img;
        int label = 0;
        CHECK(ds && ns_dataset_num_classes(ds) == 0 &&
                  ns_dataset_get(ds, 0, &img, &label, &err) == 0 && label == -1,
              "%s without labels: 0 classes, label -1", im);
        ns_image_free(&img);
        ns_dataset_close(ds);
    }
    const unsigned char six[] = {0, 1, 2, 3, 4, 5};
    write_idx_labels(at("lb6.idx"), 6, six, 0);
    CHECK(open_fails(at("im.idx"), at("lb6.idx"), "6 labels for 5 images"),
          "label count mismatch fails");
    write_idx_images(at("short.idx"), 5, 3, 4, -3, 0);
    CHECK(open_fails(at("short.idx"), NULL, "= 60 bytes of data, got 57 (truncated)"),
          "truncated IDX fails");
    write_idx_images(at("long.idx"), 5, 3, 4, 2, 1);
    CHECK(open_fails(at("long.idx"), NULL, "= 60 bytes of data, got 62 (trailing"),
          "oversized IDX.gz fails");
    CHECK(open_fails(at("lb.idx"), NULL, "IDX label file"), "a label file as images fails");
    CHECK(open_fails(at("im.idx"), at("im.idx"), "not an IDX label file"), "images as labels fail");
    unsigned char hdr[16];
    put_be32(hdr, 0x803), put_be32(hdr + 4, 4000000000u), put_be32(hdr + 8, 16384),
        put_be32(hdr + 12, 16384);
    write_bytes(at("huge.idx"), hdr, 16);
    CHECK(open_fails(at("huge.idx"), NULL, "over the"), "IDX header over the memory limit fails");
    put_be32(hdr + 8, 0);
    write_bytes(at("zero.idx"), hdr, 16);
    CHECK(open_fails(at("zero.idx"), NULL, "dimension 1 is 0"), "IDX with a zero dim fails");
    bytes b = read_bytes(at("im.idx.gz"));
    write_bytes(at("half.idx.gz"), b.p, b.n / 2);
    free(b.p);
    CHECK(open_fails(at("half.idx.gz"), NULL, at("half.idx.gz")),
          "truncated IDX.gz fails naming it");
}

// --- Fashion-MNIST and speed ----------------------------------------------------

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

// Decodes every sample; returns images per second, or -1 on failure.
static double decode_rate(ns_dataset *ds) {
    ns_err err;
    double t0 = now();
    for (int64_t i = 0; i < ns_dataset_size(ds); i++) {
        ns_image img;
        int label;
        if (ns_dataset_get(ds, i, &img, &label, &err)) return -1;
        ns_image_free(&img);
    }
    return ns_dataset_size(ds) / (now() - t0);
}

static void test_fashion_mnist(void) {
    const char *im = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
               *lb = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
    if (access(im, R_OK) || access(lb, R_OK)) {
        SKIP("Fashion-MNIST not installed (%s)", im);
        return;
    }
    ns_err err;
    double t0 = now();
    ns_dataset *ds = ns_dataset_open(im, lb, &err);
    double t_open = now() - t0;
    CHECK(ds != NULL, "open Fashion-MNIST t10k: %s", ds ? "ok" : err.msg);
    if (!ds) return;
    ns_image img;
    int label = -1;
    int ok = ns_dataset_get(ds, 0, &img, &label, &err) == 0;
    CHECK(ok && ns_dataset_size(ds) == 10000 && img.c == 1 && img.h == 28 && img.w == 28 &&
              ns_dataset_num_classes(ds) == 10 && label == 9,
          "t10k: 10000 images 1x28x28, 10 classes, first label 9 (Ankle boot)");
    ns_image_free(&img);
    printf("# fashion-mnist t10k: open %.3f s, IDX get %.0f images/s\n", t_open, decode_rate(ds));
    // The same 10000 images as a tar of PNGs.
    FILE *f = fopen(at("fm.tar"), "wb");
    ns_archive_writer *aw = ns_archive_writer_open(f, "tar", &err);
    for (int64_t i = 0; aw && i < ns_dataset_size(ds); i++) {
        char name[64];
        void *png;
        size_t len;
        ns_dataset_get(ds, i, &img, &label, &err);
        snprintf(name, sizeof name, "%s/%s.png", ns_dataset_class_name(ds, label),
                 ns_dataset_sample_name(ds, i));
        if (ns_png_encode(&img, &png, &len, &err) == 0) ns_archive_add(aw, name, png, len, &err);
        free(png);
        ns_image_free(&img);
    }
    ns_archive_writer_close(aw, &err);
    fclose(f);
    t0 = now();
    ns_dataset *tar = ns_dataset_open(at("fm.tar"), NULL, &err);
    t_open = now() - t0;
    CHECK(tar && ns_dataset_size(tar) == 10000 && ns_dataset_num_classes(tar) == 10,
          "t10k as a tar of PNGs: 10000 samples, 10 classes");
    if (!tar) {
        ns_dataset_close(ds);
        return;
    }
    // Sample 9999 of the tar is "9/NNNNNN.png": IDX sample NNNNNN, same pixels.
    ns_image a = {0}, b = {0};
    int label_tar = -1, label_idx = -1;
    long j = strtol(ns_dataset_sample_name(tar, 9999) + 2, NULL, 10);
    int same = ns_dataset_get(tar, 9999, &a, &label_tar, &err) == 0 &&
               ns_dataset_get(ds, j, &b, &label_idx, &err) == 0 && label_tar == 9 &&
               label_idx == 9 && a.c == 1 && a.h == 28 && a.w == 28;
    for (int p = 0; same && p < 28 * 28; p++)
        same = lrintf(a.data[p] * 255.0f) == lrintf(b.data[p] * 255.0f);
    CHECK(same, "tar sample 9999 (%s) is IDX sample %ld, class 9",
          ns_dataset_sample_name(tar, 9999), j);
    ns_image_free(&a), ns_image_free(&b);
    printf("# tar of 10000 PNGs: open %.3f s, get %.0f images/s\n", t_open, decode_rate(tar));
    ns_dataset_close(tar);
    ns_dataset_close(ds);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/ns_dataset_XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_archives();
    test_bad_inputs();
    test_dir();
    test_idx();
    test_fashion_mnist();
    nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return check_done();
}
