// dataset.c: owns opening datasets (ImageFolder directories, tar/zip/... archives,
// IDX files, plain or compressed) into one random-access list of samples, and
// writing deterministic image archives. The IDX format itself is in idx.c.
//
// Decisions made here:
//   - Input is recognised by content through libarchive: the archive formats
//     below plus libarchive's "raw" format as a fallback, so a gzip'd IDX file
//     and a tar.gz go through the same reader. Not archive_read_support_*_all:
//     "mtree" reads the local files an archive names, and lrzip, grzip (and
//     lzop without liblzo2) run external programs; neither belongs in a reader
//     of untrusted input. Zip is
//     read through its central directory only (every source is seekable:
//     stdin is spooled), so a zip cut short fails instead of yielding the
//     entries before the cut. A plain tar cut exactly between two entries
//     cannot be caught: libarchive (like GNU tar) accepts a tar that lacks its
//     end blocks. Compressed tars are caught by the compressor's checks.
//   - Archives are read once; the encoded PNG bytes of every CLASS/NAME.png
//     entry stay in memory (capped by ns_dataset_set_max_bytes) and are decoded
//     in ns_dataset_get. Entries whose path is unsafe ("..", absolute, control
//     characters, over-long) fail the whole archive; hidden entries (a
//     component starting with '.', e.g. macOS "._x.png") and __MACOSX/ are
//     skipped, which is where we differ from torchvision's ImageFolder.
//   - Order is ImageFolder's: classes by name, bytewise; files by name within a
//     class. Classes are the directories that hold at least one PNG.
//   - ns_dataset_get keeps no state, so threads may call it at once.
//
// Glossary: N samples, K classes, H x W image side.
#include "stream/dataset.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define NS_DEFAULT_MAX_BYTES ((uint64_t)8 << 30)
#define NS_MAX_PATH 4095 // longest entry path accepted
#define NS_MAX_NAME 255  // longest path component accepted

static uint64_t max_bytes = NS_DEFAULT_MAX_BYTES;

void ns_dataset_set_max_bytes(uint64_t n) { max_bytes = n ? n : NS_DEFAULT_MAX_BYTES; }
uint64_t ns_dataset_max_bytes(void) { return max_bytes; }

typedef struct sample {
    char *name;         // "CLASS/NAME.png", owned
    size_t cut;         // strlen(CLASS): name[cut] == '/'
    int label;          // class index, set once sorted
    unsigned char *png; // (len) encoded bytes; archives only, owned
    size_t len;
} sample;

typedef struct sample_list {
    sample *v;
    int64_t n, cap;
    uint64_t bytes; // memory held, for the max_bytes cap
} sample_list;

struct ns_dataset {
    char *path;       // as given, for messages ("-" for stdin)
    const char *kind; // static string
    int64_t n;
    int k;
    char **classes;  // (K) owned
    sample *samples; // (N) archives and directories, NULL for IDX
    int h, w;        // IDX image side
    uint8_t *pixels; // (N, H, W) IDX only
    uint8_t *labels; // (N) IDX only, NULL when unlabelled
};

// Where bytes come from: a file, or memory (stdin spooled, or a caller's buffer).
typedef struct src {
    const char *path; // for messages; opened when mem is NULL
    const void *mem;
    size_t len;
} src;

static const char *aerr(struct archive *a) {
    const char *s = archive_error_string(a);
    return s ? s : "unknown libarchive error";
}

// Copies s into buf with control bytes shown as '?', so messages stay one line.
static const char *printable(const char *s, char *buf, size_t n) {
    size_t i = 0;
    for (; s[i] && i + 1 < n; i++)
        buf[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
    buf[i] = '\0';
    return buf;
}

static int ends_with_png(const char *s) {
    size_t n = strlen(s);
    return n > 4 && strcasecmp(s + n - 4, ".png") == 0;
}

// --- sample lists -----------------------------------------------------------

static void list_free(sample_list *l) {
    for (int64_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].png);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

// Takes ownership of name and png (also on failure).
static int list_push(sample_list *l, char *name, unsigned char *png, size_t len, const char *where,
                     ns_err *err) {
    uint64_t cost = sizeof(sample) + strlen(name) + 1 + len;
    if (l->bytes + cost > max_bytes) {
        free(name);
        free(png);
        return ns_errf(err, "%s: over the %llu-byte limit for a dataset in memory", where,
                       (unsigned long long)max_bytes);
    }
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 256;
        sample *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) {
            free(name);
            free(png);
            return ns_errf(err, "%s: out of memory", where);
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (sample){.name = name, .png = png, .len = len};
    l->bytes += cost;
    return 0;
}

static int cmp_sample(const void *pa, const void *pb) {
    const sample *a = pa, *b = pb;
    size_t n = a->cut < b->cut ? a->cut : b->cut;
    int c = memcmp(a->name, b->name, n);
    if (c) return c;
    if (a->cut != b->cut) return a->cut < b->cut ? -1 : 1;
    return strcmp(a->name + a->cut, b->name + b->cut);
}

static int same_class(const sample *a, const sample *b) {
    return a->cut == b->cut && memcmp(a->name, b->name, a->cut) == 0;
}

static ns_dataset *ds_new(const char *path, const char *kind, ns_err *err) {
    ns_dataset *ds = calloc(1, sizeof *ds);
    if (ds) ds->path = strdup(path);
    if (!ds || !ds->path) {
        free(ds);
        ns_errf(err, "%s: out of memory", path);
        return NULL;
    }
    ds->kind = kind;
    return ds;
}

// Sorts the samples ImageFolder's way, numbers the classes and moves the list
// into a new dataset. Frees the list in every case.
static ns_dataset *ds_from_list(sample_list *l, const char *path, const char *kind, ns_err *err) {
    qsort(l->v, (size_t)l->n, sizeof *l->v, cmp_sample);
    int k = 0;
    for (int64_t i = 0; i < l->n; i++) {
        if (i > 0 && strcmp(l->v[i].name, l->v[i - 1].name) == 0) {
            char buf[256];
            ns_errf(err, "%s: duplicate entry '%s'", path,
                    printable(l->v[i].name, buf, sizeof buf));
            list_free(l);
            return NULL;
        }
        if (i == 0 || !same_class(&l->v[i], &l->v[i - 1])) k++;
        l->v[i].label = k - 1;
    }
    ns_dataset *ds = ds_new(path, kind, err);
    char **classes = ds ? calloc((size_t)k, sizeof *classes) : NULL;
    for (int64_t i = 0, c = 0; classes && i < l->n; i++) {
        if (l->v[i].label != c) continue;
        if (!(classes[c++] = strndup(l->v[i].name, l->v[i].cut))) {
            while (c > 0) free(classes[--c]);
            free(classes);
            classes = NULL;
        }
    }
    if (!classes) {
        if (ds) ns_errf(err, "%s: out of memory", path);
        ns_dataset_close(ds);
        list_free(l);
        return NULL;
    }
    ds->classes = classes;
    ds->k = k;
    ds->samples = l->v;
    ds->n = l->n;
    memset(l, 0, sizeof *l);
    return ds;
}

// --- entry paths --------------------------------------------------------------

// Checks an archive entry path and skips leading "./". Returns 0 with *out set,
// 1 for the root entry ("." or "./"), -1 for an unsafe or absurd path.
static int clean_path(const char *p, const char **out) {
    while (p[0] == '.' && p[1] == '/') p += 2;
    if (p[0] == '\0' || strcmp(p, ".") == 0) return 1;
    if (strlen(p) > NS_MAX_PATH || p[0] == '/') return -1;
    for (const char *c = p; *c;) {
        size_t n = strcspn(c, "/");
        if (n == 0 || n > NS_MAX_NAME) return -1;
        if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) return -1;
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)c[i];
            if (ch < 0x20 || ch == 0x7f || ch == '\\') return -1;
        }
        c += n;
        if (*c == '/') c++; // a trailing '/' (directory entry) is fine
    }
    *out = p;
    return 0;
}

// A file we would keep: NAME.png, not hidden, not under __MACOSX/.
static int is_png_entry(const char *p) {
    if (strncmp(p, "__MACOSX/", 9) == 0) return 0;
    if (p[0] == '.' || strstr(p, "/.")) return 0;
    return ends_with_png(p);
}

static int depth(const char *p) {
    int d = 1;
    for (; *p; p++) d += *p == '/';
    return d;
}

// Keeps the CLASS/NAME.png entries of a finished archive read: TOP/CLASS/NAME.png
// when every candidate is three deep under one TOP, else those two deep.
static void select_entries(sample_list *l) {
    int strip = l->n > 0;
    size_t top = l->n > 0 ? strcspn(l->v[0].name, "/") : 0;
    for (int64_t i = 0; i < l->n && strip; i++) {
        const char *p = l->v[i].name;
        strip = depth(p) == 3 && strncmp(p, l->v[0].name, top + 1) == 0;
    }
    int64_t kept = 0;
    for (int64_t i = 0; i < l->n; i++) {
        sample s = l->v[i];
        if (strip) memmove(s.name, s.name + top + 1, strlen(s.name + top + 1) + 1);
        if (depth(s.name) != 2) {
            free(s.name);
            free(s.png);
            continue;
        }
        s.cut = strcspn(s.name, "/");
        l->v[kept++] = s;
    }
    l->n = kept;
}

// --- archives -------------------------------------------------------------------

// Makes room for need bytes in *buf (doubling), but never more than room.
static int grow(unsigned char **buf, size_t *cap, size_t need, uint64_t room) {
    if (need > room) return -1;
    size_t ncap = *cap * 2 > need ? *cap * 2 : need;
    if (ncap > room) ncap = (size_t)room;
    unsigned char *nb = realloc(*buf, ncap);
    if (!nb) return -1;
    *buf = nb;
    *cap = ncap;
    return 0;
}

// Reads the current entry's data into a malloc'd buffer, refusing to hold more
// than room bytes. The announced size is a first guess, not trusted.
static int read_entry(struct archive *a, struct archive_entry *e, uint64_t room,
                      unsigned char **out, size_t *len, const char *where, ns_err *err) {
    int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : -1;
    size_t cap = size > 0 && (uint64_t)size <= room ? (size_t)size : 1 << 16, have = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        char probe[4096]; // when the buffer is full: is there more?
        char *dst = have < cap ? (char *)buf + have : probe;
        la_ssize_t r = archive_read_data(a, dst, have < cap ? cap - have : sizeof probe);
        if (r < 0) {
            free(buf);
            return ns_errf(err, "%s: %s", where, aerr(a));
        }
        if (r == 0) break;
        if (dst == probe) {
            if (grow(&buf, &cap, have + (size_t)r, room)) {
                free(buf);
                return ns_errf(err,
                               "%s: over the %llu-byte limit for a dataset in memory, "
                               "or out of memory",
                               where, (unsigned long long)max_bytes);
            }
            memcpy(buf + have, probe, (size_t)r);
        }
        have += (size_t)r;
    }
    if (!buf) return ns_errf(err, "%s: out of memory", where);
    if (cap > have + 4096) { // a guess that was too large: give back the rest
        unsigned char *nb = realloc(buf, have ? have : 1);
        if (nb) buf = nb;
    }
    *out = buf;
    *len = have;
    return 0;
}

// Looks at one entry: fails on an unsafe path, keeps a PNG file's bytes.
static int take_entry(struct archive *a, struct archive_entry *e, sample_list *l, const char *path,
                      ns_err *err) {
    const char *raw = archive_entry_pathname(e), *p = NULL;
    char shown[256];
    if (!raw) return ns_errf(err, "%s: an entry has an unreadable name", path);
    int r = clean_path(raw, &p);
    if (r < 0)
        return ns_errf(err, "%s: unsafe entry path '%s'", path,
                       printable(raw, shown, sizeof shown));
    if (r > 0 || archive_entry_filetype(e) != AE_IFREG || !is_png_entry(p)) return 0;
    if (archive_entry_hardlink(e))
        return ns_errf(err, "%s: '%s' is a hard link, which is not supported", path,
                       printable(p, shown, sizeof shown));
    char where[600];
    snprintf(where, sizeof where, "%s: %s", path, printable(p, shown, sizeof shown));
    uint64_t room = max_bytes > l->bytes ? max_bytes - l->bytes : 0;
    unsigned char *png = NULL;
    size_t len = 0;
    if (read_entry(a, e, room, &png, &len, where, err)) return -1;
    char *name = strdup(p);
    if (!name) {
        free(png);
        return ns_errf(err, "%s: out of memory", where);
    }
    return list_push(l, name, png, len, where, err);
}

static const char *kind_name(int format) {
    static const struct {
        int code;
        const char *name;
    } kinds[] = {
        {ARCHIVE_FORMAT_TAR, "tar"},         {ARCHIVE_FORMAT_ZIP, "zip"},
        {ARCHIVE_FORMAT_7ZIP, "7zip"},       {ARCHIVE_FORMAT_CPIO, "cpio"},
        {ARCHIVE_FORMAT_ISO9660, "iso9660"}, {ARCHIVE_FORMAT_RAR, "rar"},
        {ARCHIVE_FORMAT_RAR_V5, "rar"},      {ARCHIVE_FORMAT_XAR, "xar"},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if ((format & ARCHIVE_FORMAT_BASE_MASK) == kinds[i].code) return kinds[i].name;
    return "archive";
}

// Reads every entry of an archive whose first header is e.
static ns_dataset *archive_dataset(struct archive *a, struct archive_entry *e, const char *path,
                                   ns_err *err) {
    sample_list l = {0};
    const char *kind = kind_name(archive_format(a));
    for (;;) {
        if (take_entry(a, e, &l, path, err)) goto fail;
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF) break;
        if (r < ARCHIVE_WARN) {
            ns_errf(err, "%s: %s", path, aerr(a));
            goto fail;
        }
    }
    select_entries(&l);
    if (l.n == 0) {
        ns_errf(err, "no CLASS/NAME.png entries in %s", path);
        goto fail;
    }
    return ds_from_list(&l, path, kind, err);
fail:
    list_free(&l);
    return NULL;
}

// --- opening by content ---------------------------------------------------------

// A libarchive reader over s: every format and filter below, raw as fallback.
static struct archive *reader_open(const src *s, ns_err *err) {
    struct archive *a = archive_read_new();
    if (!a) {
        ns_errf(err, "%s: out of memory", s->path);
        return NULL;
    }
    // Enabled one by one rather than *_all(): see the top of this file.
    int (*const enable[])(struct archive *) = {
        archive_read_support_format_tar,     archive_read_support_format_zip_seekable,
        archive_read_support_format_7zip,    archive_read_support_format_cpio,
        archive_read_support_format_iso9660, archive_read_support_format_rar,
        archive_read_support_format_rar5,    archive_read_support_format_xar,
        archive_read_support_format_empty,   archive_read_support_format_raw,
        archive_read_support_filter_gzip,    archive_read_support_filter_bzip2,
        archive_read_support_filter_xz,      archive_read_support_filter_lzma,
        archive_read_support_filter_lzip,    archive_read_support_filter_zstd,
        archive_read_support_filter_lz4,     archive_read_support_filter_compress,
    };
    for (size_t i = 0; i < sizeof enable / sizeof enable[0]; i++) enable[i](a);
    int r = s->mem ? archive_read_open_memory(a, s->mem, s->len)
                   : archive_read_open_filename(a, s->path, 1 << 16);
    if (r != ARCHIVE_OK) {
        ns_errf(err, "%s: %s", s->path, aerr(a));
        archive_read_free(a);
        return NULL;
    }
    return a;
}

// Opens s and reads its first header. Returns the archive, or NULL with err set
// (an empty archive is an error).
static struct archive *reader_first(const src *s, struct archive_entry **e, ns_err *err) {
    struct archive *a = reader_open(s, err);
    if (!a) return NULL;
    int r = archive_read_next_header(a, e);
    if (r == ARCHIVE_EOF || r < ARCHIVE_WARN) {
        if (r == ARCHIVE_EOF)
            ns_errf(err, "%s: empty archive (no entries)", s->path);
        else
            ns_errf(err, "%s: %s", s->path, aerr(a));
        archive_read_free(a);
        return NULL;
    }
    return a;
}

static int is_raw(struct archive *a) {
    return (archive_format(a) & ARCHIVE_FORMAT_BASE_MASK) == ARCHIVE_FORMAT_RAW;
}

// --- IDX (the format itself is in idx.c) ------------------------------------------

// Reads labels for ds's images from ls; classes are 0..max label.
static int idx_labels(ns_dataset *ds, const src *ls, ns_err *err) {
    struct archive_entry *e;
    struct archive *a = reader_first(ls, &e, err);
    if (!a) return -1;
    uint32_t magic = 0, n = 0;
    int rc = 0;
    if (!is_raw(a) || ns_idx_magic(a, ls->path, &magic, err) || magic != NS_IDX_LABELS)
        rc = ns_errf(err, "%s: not an IDX label file (want magic 0x%08x)", ls->path, NS_IDX_LABELS);
    else if (ns_idx_read(a, ls->path, 1, &n, max_bytes, &ds->labels, err))
        rc = -1;
    else if ((int64_t)n != ds->n)
        rc = ns_errf(err, "%s: %u labels for %lld images in %s", ls->path, n, (long long)ds->n,
                     ds->path);
    archive_read_free(a);
    if (rc) return -1;
    int k = 0;
    for (int64_t i = 0; i < ds->n; i++)
        if (ds->labels[i] + 1 > k) k = ds->labels[i] + 1;
    if (!(ds->classes = calloc((size_t)k, sizeof *ds->classes)))
        return ns_errf(err, "%s: out of memory", ls->path);
    for (; ds->k < k; ds->k++) {
        char num[16];
        snprintf(num, sizeof num, "%d", ds->k);
        if (!(ds->classes[ds->k] = strdup(num))) return ns_errf(err, "out of memory");
    }
    return 0;
}

// Reads IDX images from a (its raw entry is open, the magic read), then labels
// from ls when given.
static ns_dataset *idx_dataset(struct archive *a, const src *s, const src *ls, ns_err *err) {
    uint32_t d[3];
    ns_dataset *ds = ds_new(s->path, "idx", err);
    if (!ds) return NULL;
    if (ns_idx_read(a, s->path, 3, d, max_bytes, &ds->pixels, err)) {
        ns_dataset_close(ds);
        return NULL;
    }
    ds->n = d[0];
    ds->h = (int)d[1];
    ds->w = (int)d[2];
    if (ls && idx_labels(ds, ls, err)) {
        ns_dataset_close(ds);
        return NULL;
    }
    return ds;
}

// Pixels as torchvision's ToTensor: x / 255.
static int idx_image(const ns_dataset *ds, int64_t i, ns_image *img, ns_err *err) {
    if (ns_image_alloc(img, 1, ds->h, ds->w, err)) return -1;
    size_t hw = (size_t)ds->h * (size_t)ds->w;
    const uint8_t *p = ds->pixels + (size_t)i * hw;
    for (size_t j = 0; j < hw; j++) img->data[j] = p[j] / 255.0f;
    return 0;
}

// Opens a file or buffer that is not a directory: an archive or an IDX file.
static ns_dataset *open_stream(const src *s, const src *ls, ns_err *err) {
    struct archive_entry *e;
    struct archive *a = reader_first(s, &e, err);
    if (!a) return NULL;
    ns_dataset *ds = NULL;
    uint32_t magic;
    if (!is_raw(a)) {
        if (ls)
            ns_errf(err, "%s: a labels file only goes with IDX images, not a %s archive", s->path,
                    kind_name(archive_format(a)));
        else
            ds = archive_dataset(a, e, s->path, err);
    } else if (ns_idx_magic(a, s->path, &magic, err) == 0) {
        if (magic == NS_IDX_IMAGES)
            ds = idx_dataset(a, s, ls, err);
        else if (magic == NS_IDX_LABELS)
            ns_errf(err, "%s: an IDX label file; give the images first and this as labels",
                    s->path);
        else
            ns_errf(err, "%s: IDX magic 0x%08x is not supported (want 0x%08x for images)", s->path,
                    magic, NS_IDX_IMAGES);
    }
    archive_read_free(a);
    return ds;
}

// --- directories ----------------------------------------------------------------

static int is_kind(const char *path, mode_t type) {
    struct stat st;
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == type;
}

static char *join(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char *s = malloc(na + nb + 2);
    if (s) {
        memcpy(s, a, na);
        s[na] = '/';
        memcpy(s + na + 1, b, nb + 1);
    }
    return s;
}

// Adds ROOT/CLASS/*.png (regular files, following links) to the list.
static int scan_class(const char *root, const char *cls, sample_list *l, ns_err *err) {
    char *dir = join(root, cls);
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d) {
        int rc = ns_errf(err, "%s: %s", dir ? dir : root, dir ? strerror(errno) : "out of memory");
        free(dir);
        return rc;
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        if (de->d_name[0] == '.' || !ends_with_png(de->d_name)) continue;
        char *full = join(dir, de->d_name);
        int keep = full && is_kind(full, S_IFREG);
        free(full);
        if (!keep) continue;
        char *name = join(cls, de->d_name);
        if (!name)
            rc = ns_errf(err, "%s: out of memory", root);
        else
            rc = list_push(l, name, NULL, 0, root, err);
        if (rc == 0) l->v[l->n - 1].cut = strlen(cls);
    }
    closedir(d);
    free(dir);
    return rc;
}

static ns_dataset *dir_dataset(const char *root, ns_err *err) {
    DIR *d = opendir(root);
    if (!d) {
        ns_errf(err, "%s: %s", root, strerror(errno));
        return NULL;
    }
    sample_list l = {0};
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char *sub = join(root, de->d_name);
        int isdir = sub && is_kind(sub, S_IFDIR);
        free(sub);
        if (isdir) rc = scan_class(root, de->d_name, &l, err);
    }
    closedir(d);
    if (rc == 0 && l.n == 0) rc = ns_errf(err, "no CLASS/NAME.png files in directory %s", root);
    if (rc) {
        list_free(&l);
        return NULL;
    }
    return ds_from_list(&l, root, "dir", err);
}

// --- public: open, close, query ---------------------------------------------------

ns_dataset *ns_dataset_open_memory(const void *buf, size_t len, ns_err *err) {
    if (len == 0 || !buf) {
        ns_errf(err, "<memory>: empty input");
        return NULL;
    }
    src s = {.path = "<memory>", .mem = buf, .len = len};
    return open_stream(&s, NULL, err);
}

// Spools standard input into memory (a pipe cannot seek; zip needs to).
static int slurp_stdin(src *s, ns_err *err) {
    size_t cap = 1 << 20, have = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        if (have == cap) {
            if (cap >= max_bytes) {
                free(buf);
                return ns_errf(err, "-: standard input is over the %llu-byte limit",
                               (unsigned long long)max_bytes);
            }
            unsigned char *nb = realloc(buf, cap * 2);
            if (!nb) free(buf);
            buf = nb;
            cap *= 2;
            continue;
        }
        size_t r = fread(buf + have, 1, cap - have, stdin);
        have += r;
        if (r == 0) break;
    }
    if (!buf) return ns_errf(err, "-: out of memory reading standard input");
    if (ferror(stdin) || have == 0) {
        free(buf);
        return have ? ns_errf(err, "-: reading standard input: %s", strerror(errno))
                    : ns_errf(err, "-: empty input");
    }
    *s = (src){.path = "-", .mem = buf, .len = have};
    return 0;
}

// Checks a path given on the command line: exists, not an empty file.
static int check_file(const char *path, struct stat *st, ns_err *err) {
    if (stat(path, st) != 0) return ns_errf(err, "%s: %s", path, strerror(errno));
    if (S_ISREG(st->st_mode) && st->st_size == 0) return ns_errf(err, "%s: empty file", path);
    return 0;
}

ns_dataset *ns_dataset_open(const char *path, const char *labels_path, ns_err *err) {
    struct stat st, lst;
    src s = {.path = path}, ls = {.path = labels_path};
    ns_dataset *ds = NULL;
    if (!path) {
        ns_errf(err, "no dataset path given");
        return NULL;
    }
    if (labels_path && strcmp(path, "-") == 0 && strcmp(labels_path, "-") == 0) {
        ns_errf(err, "images and labels cannot both come from standard input");
        return NULL;
    }
    if (strcmp(path, "-") == 0 ? slurp_stdin(&s, err) : check_file(path, &st, err)) return NULL;
    if (labels_path && (strcmp(labels_path, "-") == 0 ? slurp_stdin(&ls, err)
                                                      : check_file(labels_path, &lst, err)))
        goto out;
    if (!s.mem && S_ISDIR(st.st_mode)) {
        if (labels_path)
            ns_errf(err, "%s: a labels file only goes with IDX images, not a directory", path);
        else
            ds = dir_dataset(path, err);
    } else {
        ds = open_stream(&s, labels_path ? &ls : NULL, err);
    }
out:
    free((void *)s.mem);
    free((void *)ls.mem);
    return ds;
}

void ns_dataset_close(ns_dataset *ds) {
    if (!ds) return;
    sample_list l = {.v = ds->samples, .n = ds->samples ? ds->n : 0};
    list_free(&l);
    for (int c = 0; c < ds->k; c++) free(ds->classes[c]);
    free(ds->classes);
    free(ds->pixels);
    free(ds->labels);
    free(ds->path);
    free(ds);
}

int64_t ns_dataset_size(const ns_dataset *ds) { return ds->n; }
int ns_dataset_num_classes(const ns_dataset *ds) { return ds->k; }
const char *ns_dataset_kind(const ns_dataset *ds) { return ds->kind; }

const char *ns_dataset_class_name(const ns_dataset *ds, int k) {
    return k >= 0 && k < ds->k ? ds->classes[k] : NULL;
}

const char *ns_dataset_sample_name(const ns_dataset *ds, int64_t i) {
    static _Thread_local char num[32];
    if (i < 0 || i >= ds->n) return NULL;
    if (ds->samples) return ds->samples[i].name;
    snprintf(num, sizeof num, "%06lld", (long long)i);
    return num;
}

int ns_dataset_get(ns_dataset *ds, int64_t i, ns_image *img, int *label, ns_err *err) {
    *img = (ns_image){0};
    if (i < 0 || i >= ds->n)
        return ns_errf(err, "%s: sample %lld out of range (0..%lld)", ds->path, (long long)i,
                       (long long)ds->n - 1);
    if (!ds->samples) {
        if (label) *label = ds->labels ? ds->labels[i] : -1;
        return idx_image(ds, i, img, err);
    }
    const sample *s = &ds->samples[i];
    if (label) *label = s->label;
    if (!s->png) { // a directory: ns_png_read_file names the file in its messages
        char *full = join(ds->path, s->name);
        int rc = full ? ns_png_read_file(full, img, err) : ns_errf(err, "out of memory");
        free(full);
        return rc;
    }
    if (ns_png_decode(s->png, s->len, img, err) == 0) return 0;
    return ns_err_prefix(err, "%s: %s", ds->path, s->name);
}

// --- writing archives ---------------------------------------------------------------

// libarchive frees its compressors and output block only in a close that
// runs, and a write error from the callback makes it skip the close (leaking
// them). So write_cb never reports one: it remembers the first failure,
// drops every later byte, and the calls below turn write_errno into the error.
struct ns_archive_writer {
    struct archive *a;
    FILE *f;
    int write_errno; // first write failure, 0 when none
    int discard;     // failed or aborting: bytes go nowhere
};

static la_ssize_t write_cb(struct archive *a, void *client, const void *buf, size_t n) {
    (void)a;
    ns_archive_writer *aw = client;
    if (aw->discard) return (la_ssize_t)n;
    errno = 0;
    if (fwrite(buf, 1, n, aw->f) != n) {
        aw->write_errno = errno ? errno : EIO;
        aw->discard = 1;
    }
    return (la_ssize_t)n;
}

static int write_failed(const ns_archive_writer *aw, const char *where, ns_err *err) {
    return ns_errf(err, "%s: write failed: %s", where, strerror(aw->write_errno));
}

// Sets up format and filters; 0 on success.
static int writer_setup(struct archive *a, const char *format) {
    if (strcmp(format, "tar") == 0) return archive_write_set_format_pax_restricted(a);
    if (strcmp(format, "zip") == 0) return archive_write_set_format_zip(a);
    if (strcmp(format, "tar.gz") != 0) return -1;
    if (archive_write_set_format_pax_restricted(a) || archive_write_add_filter_gzip(a)) return -1;
    // No timestamp in the gzip header, so the bytes depend on content only.
    return archive_write_set_filter_option(a, "gzip", "timestamp", NULL);
}

ns_archive_writer *ns_archive_writer_open(FILE *f, const char *format, ns_err *err) {
    if (!format || (strcmp(format, "tar") && strcmp(format, "tar.gz") && strcmp(format, "zip"))) {
        ns_errf(err, "unknown archive format '%s' (tar, tar.gz or zip)", format ? format : "");
        return NULL;
    }
    ns_archive_writer *aw = calloc(1, sizeof *aw);
    if (!aw || !(aw->a = archive_write_new())) {
        free(aw);
        ns_errf(err, "archive writer: out of memory");
        return NULL;
    }
    aw->f = f;
    // No padding of the output to 10240 bytes: it would trail a gzip stream or a
    // zip's central directory with zeros. A tar still ends with its two zero blocks.
    if (writer_setup(aw->a, format) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(aw->a, 1) != ARCHIVE_OK ||
        archive_write_open(aw->a, aw, NULL, write_cb, NULL) != ARCHIVE_OK) {
        ns_errf(err, "%s archive writer: %s", format, aerr(aw->a));
        archive_write_free(aw->a);
        free(aw);
        return NULL;
    }
    return aw;
}

int ns_archive_add(ns_archive_writer *aw, const char *path, const void *data, size_t len,
                   ns_err *err) {
    const char *p;
    char shown[256];
    if (!path || clean_path(path, &p) != 0 || p != path || path[strlen(path) - 1] == '/')
        return ns_errf(err, "archive entry path '%s' is not a plain relative file path",
                       path ? printable(path, shown, sizeof shown) : "");
    struct archive_entry *e = archive_entry_new();
    if (!e) return ns_errf(err, "%s: out of memory", path);
    archive_entry_copy_pathname(e, path);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)len);
    archive_entry_set_mtime(e, 0, 0);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    archive_entry_copy_uname(e, "");
    archive_entry_copy_gname(e, "");
    if (aw->write_errno) return write_failed(aw, path, err);
    int r = archive_write_header(aw->a, e);
    archive_entry_free(e);
    if (aw->write_errno) return write_failed(aw, path, err);
    if (r < ARCHIVE_WARN) return ns_errf(err, "%s: %s", path, aerr(aw->a));
    for (size_t done = 0; done < len;) {
        la_ssize_t w = archive_write_data(aw->a, (const char *)data + done, len - done);
        if (aw->write_errno) return write_failed(aw, path, err);
        if (w <= 0) return ns_errf(err, "%s: %s", path, aerr(aw->a));
        done += (size_t)w;
    }
    return 0;
}

void ns_archive_writer_abort(ns_archive_writer *aw) {
    if (!aw) return;
    // Closed, not failed: libarchive frees its output block only on close
    // (archive_write_fail then free leaks 10 KB); the end-of-archive bytes the
    // close produces are dropped, so a broken archive never looks whole.
    aw->discard = 1;
    archive_write_close(aw->a);
    archive_write_free(aw->a);
    free(aw);
}

int ns_archive_writer_close(ns_archive_writer *aw, ns_err *err) {
    if (!aw) return 0;
    int rc = 0;
    // libarchive ignores a close callback's result, so flush and check here.
    if (archive_write_close(aw->a) != ARCHIVE_OK)
        rc = ns_errf(err, "finishing archive: %s", aerr(aw->a));
    else if (aw->write_errno)
        rc = write_failed(aw, "finishing archive", err);
    else if ((errno = 0, fflush(aw->f) != 0) || ferror(aw->f))
        rc = ns_errf(err, "finishing archive: write failed: %s", strerror(errno ? errno : EIO));
    archive_write_free(aw->a);
    free(aw);
    return rc;
}
