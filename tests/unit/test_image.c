// test_image.c: unit tests for lib/stream/image.c. PNG fixtures of every colour type,
// bit depth, tRNS and interlace variant are written here with libpng directly
// and decoded by ns_png_decode against the known samples; malformed PNGs
// (truncated, corrupted, oversized) must fail with a message; the bilinear resize
// is checked by hand and against torch's output in tests/ref/image_resize.ref
// (made by tests/ref/gen_image_ref.py; run from the repo root).
// Shapes: images are (C, H, W) float; fixture samples are (H, W, C) integers.
// sanitize: yes (malformed input runs under ASan/UBSan in make check)
#include <dirent.h>
#include <limits.h>
#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "stream/image.h"

#define REF_PATH "tests/ref/image_resize.ref"

// ---------------------------------------------------------------------------
// Fixture writer: libpng directly, into memory

typedef struct fixture {
    int type;       // PNG_COLOR_TYPE_*
    int depth;      // 1, 2, 4, 8, 16
    int interlace;  // PNG_INTERLACE_NONE or _ADAM7
    int trns;       // write a tRNS chunk
    int idat_chunk; // when > 0, the compression buffer size (many small IDATs)
} fixture;

typedef struct membuf {
    unsigned char *p;
    size_t len, cap;
} membuf;

static void fixture_write(png_structp png, png_bytep data, size_t n) {
    membuf *m = png_get_io_ptr(png);
    if (m->len + n > m->cap) {
        m->cap = (m->len + n) * 2;
        m->p = realloc(m->p, m->cap);
        if (!m->p) png_error(png, "out of memory");
    }
    memcpy(m->p + m->len, data, n);
    m->len += n;
}

static void fixture_flush(png_structp png) {
    (void)png;
}

static int type_channels(int type) {
    switch (type) {
    case PNG_COLOR_TYPE_GRAY: return 1;
    case PNG_COLOR_TYPE_GRAY_ALPHA: return 2;
    case PNG_COLOR_TYPE_RGB: return 3;
    case PNG_COLOR_TYPE_RGB_ALPHA: return 4;
    default: return 1; // palette: one index per pixel
    }
}

// Packs one row of samples (W*ch values) as PNG stores them: MSB-first bit
// fields below 8 bits, big-endian above.
static void pack_row(unsigned char *out, const unsigned *s, int n, int depth) {
    if (depth < 8) memset(out, 0, (size_t)(n * depth + 7) / 8);
    for (int i = 0; i < n; i++) {
        if (depth == 16) {
            out[2 * i] = (unsigned char)(s[i] >> 8);
            out[2 * i + 1] = (unsigned char)s[i];
        } else if (depth == 8) {
            out[i] = (unsigned char)s[i];
        } else {
            int bit = i * depth;
            out[bit / 8] |= (unsigned char)(s[i] << (8 - depth - bit % 8));
        }
    }
}

typedef struct palette {
    png_color colors[256];
    png_byte alpha[256];
    int n, n_alpha;
} palette;

typedef struct fixture_job {
    const fixture *f;
    int w, h;
    const unsigned *samples;        // (H, W, ch)
    const palette *pal;             // palette type only
    const png_color_16 *trans_color; // tRNS value for gray/RGB
    png_structp png;
    png_infop info;
    membuf out;
    unsigned char *row;
} fixture_job;

static void fixture_body(fixture_job *j) {
    const fixture *f = j->f;
    int ch = type_channels(f->type);
    png_set_write_fn(j->png, &j->out, fixture_write, fixture_flush);
    if (f->idat_chunk) png_set_compression_buffer_size(j->png, (size_t)f->idat_chunk);
    png_set_IHDR(j->png, j->info, (png_uint_32)j->w, (png_uint_32)j->h, f->depth, f->type,
                 f->interlace, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (f->type == PNG_COLOR_TYPE_PALETTE) png_set_PLTE(j->png, j->info, j->pal->colors, j->pal->n);
    if (f->trns && f->type == PNG_COLOR_TYPE_PALETTE)
        png_set_tRNS(j->png, j->info, j->pal->alpha, j->pal->n_alpha, NULL);
    else if (f->trns)
        png_set_tRNS(j->png, j->info, NULL, 0, (png_color_16p)j->trans_color);
    png_write_info(j->png, j->info);
    int passes = png_set_interlace_handling(j->png);
    for (int pass = 0; pass < passes; pass++) {
        for (int y = 0; y < j->h; y++) {
            pack_row(j->row, j->samples + (size_t)y * j->w * ch, j->w * ch, f->depth);
            png_write_row(j->png, j->row);
        }
    }
    png_write_end(j->png, j->info);
}

static int fixture_guarded(fixture_job *j) {
    if (setjmp(png_jmpbuf(j->png))) return -1;
    fixture_body(j);
    return 0;
}

// Writes a PNG of samples (H, W, ch) in memory; NULL on a libpng error.
static unsigned char *fixture_png(const fixture *f, int w, int h, const unsigned *samples,
                                  const palette *pal, const png_color_16 *trans_color,
                                  size_t *len) {
    fixture_job j = {f, w, h, samples, pal, trans_color, NULL, NULL, {0}, NULL};
    j.row = calloc((size_t)w * type_channels(f->type) * 2 + 1, 1);
    j.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    j.info = png_create_info_struct(j.png);
    int rc = fixture_guarded(&j);
    png_destroy_write_struct(&j.png, &j.info);
    free(j.row);
    if (rc) {
        free(j.out.p);
        return NULL;
    }
    *len = j.out.len;
    return j.out.p;
}

static unsigned rng_state = 12345;
static unsigned rng(void) {
    rng_state = rng_state * 1103515245u + 12345u;
    return (rng_state >> 8) & 0xffffff;
}

static const char *type_name(int type) {
    switch (type) {
    case PNG_COLOR_TYPE_GRAY: return "gray";
    case PNG_COLOR_TYPE_GRAY_ALPHA: return "gray+alpha";
    case PNG_COLOR_TYPE_RGB: return "rgb";
    case PNG_COLOR_TYPE_RGB_ALPHA: return "rgba";
    default: return "palette";
    }
}

// Fills *expect (C, H, W) with what the decoder must produce for samples.
static void expected_image(const fixture *f, int w, int h, const unsigned *s, const palette *pal,
                           const png_color_16 *tc, ns_image *expect) {
    int ch = type_channels(f->type);
    float maxv = (float)((1u << f->depth) - 1);
    int out_c = f->type == PNG_COLOR_TYPE_PALETTE ? 3 + f->trns : ch + (f->trns ? 1 : 0);
    ns_image_alloc(expect, out_c, h, w, NULL);
    size_t plane = (size_t)h * w;
    for (size_t i = 0; i < plane; i++) {
        const unsigned *px = s + i * ch;
        float *o = expect->data + i;
        if (f->type == PNG_COLOR_TYPE_PALETTE) {
            const png_color *c = &pal->colors[px[0]];
            o[0] = (float)c->red / 255.0f;
            o[plane] = (float)c->green / 255.0f;
            o[2 * plane] = (float)c->blue / 255.0f;
            if (f->trns)
                o[3 * plane] = (int)px[0] < pal->n_alpha ? (float)pal->alpha[px[0]] / 255.0f : 1.0f;
            continue;
        }
        for (int k = 0; k < ch; k++) o[k * plane] = (float)px[k] / maxv;
        if (f->trns) {
            int match = ch == 1 ? px[0] == tc->gray
                                : px[0] == tc->red && px[1] == tc->green && px[2] == tc->blue;
            o[ch * plane] = match ? 0.0f : 1.0f;
        }
    }
}

static int images_equal(const ns_image *a, const ns_image *b) {
    if (a->c != b->c || a->h != b->h || a->w != b->w) return 0;
    return memcmp(a->data, b->data, sizeof(float) * (size_t)a->c * a->h * a->w) == 0;
}

static void test_decode_variant(const fixture *f) {
    enum { W = 13, H = 11 };
    int ch = type_channels(f->type);
    unsigned samples[W * H * 4];
    unsigned maxv = (1u << f->depth) - 1;
    palette pal = {.n = f->type == PNG_COLOR_TYPE_PALETTE ? (int)maxv + 1 : 0};
    if (pal.n > 256) pal.n = 256;
    for (int i = 0; i < pal.n; i++) {
        pal.colors[i] = (png_color){(png_byte)rng(), (png_byte)rng(), (png_byte)rng()};
        pal.alpha[i] = (png_byte)rng();
    }
    pal.n_alpha = pal.n > 1 ? pal.n - 1 : 1; // the last entry stays opaque
    for (int i = 0; i < W * H * ch; i++) samples[i] = rng() % (maxv + 1);
    if (f->type == PNG_COLOR_TYPE_PALETTE && pal.n > 1) samples[W * H - 1] = (unsigned)pal.n - 1;
    // The tRNS colour is the first pixel's, so some pixels are transparent.
    png_color_16 tc = {.gray = (png_uint_16)samples[0]};
    if (ch >= 3) tc = (png_color_16){.red = (png_uint_16)samples[0],
                                     .green = (png_uint_16)samples[1],
                                     .blue = (png_uint_16)samples[2]};
    size_t len = 0;
    unsigned char *png = fixture_png(f, W, H, samples, &pal, &tc, &len);
    ns_image got = {0}, want = {0};
    ns_err err = {{0}};
    int rc = png ? ns_png_decode(png, len, &got, &err) : -1;
    expected_image(f, W, H, samples, &pal, &tc, &want);
    CHECK(rc == 0 && images_equal(&got, &want), "decode %s %d-bit%s%s: %d channels exact (rc %d%s%s)",
          type_name(f->type), f->depth, f->trns ? " tRNS" : "", f->interlace ? " interlaced" : "",
          want.c, rc, rc ? ": " : "", rc ? err.msg : "");
    ns_image_free(&got);
    ns_image_free(&want);
    free(png);
}

static void test_decode_all_variants(void) {
    static const struct {
        int type, depths[5], trns_ok;
    } kinds[] = {
        {PNG_COLOR_TYPE_GRAY, {1, 2, 4, 8, 16}, 1},
        {PNG_COLOR_TYPE_GRAY_ALPHA, {8, 16}, 0},
        {PNG_COLOR_TYPE_RGB, {8, 16}, 1},
        {PNG_COLOR_TYPE_RGB_ALPHA, {8, 16}, 0},
        {PNG_COLOR_TYPE_PALETTE, {1, 2, 4, 8}, 1},
    };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        for (int d = 0; d < 5 && kinds[k].depths[d]; d++)
            for (int trns = 0; trns <= kinds[k].trns_ok; trns++)
                for (int il = 0; il <= 1; il++) {
                    fixture f = {kinds[k].type, kinds[k].depths[d],
                                 il ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, trns, 0};
                    test_decode_variant(&f);
                }
}

// ---------------------------------------------------------------------------
// Encode / decode round trips

static void fill_levels(ns_image *img) {
    size_t plane = (size_t)img->h * img->w;
    for (int k = 0; k < img->c; k++)
        for (size_t i = 0; i < plane; i++)
            img->data[k * plane + i] = (float)((i * 7 + (size_t)k * 61) % 256) / 255.0f;
}

static int has_chunk(const unsigned char *p, size_t len, const char *name) {
    for (size_t off = 8; off + 12 <= len;) {
        uint32_t n = (uint32_t)p[off] << 24 | p[off + 1] << 16 | p[off + 2] << 8 | p[off + 3];
        if (memcmp(p + off + 4, name, 4) == 0) return 1;
        off += 12 + (size_t)n;
    }
    return 0;
}

static void test_round_trip(void) {
    for (int c = 1; c <= 4; c++) {
        ns_image img, back = {0};
        ns_err err = {{0}};
        ns_image_alloc(&img, c, 16, 17, &err);
        fill_levels(&img);
        void *buf = NULL, *buf2 = NULL;
        size_t len = 0, len2 = 0;
        int rc = ns_png_encode(&img, &buf, &len, &err);
        rc = rc ? rc : ns_png_decode(buf, len, &back, &err);
        CHECK(rc == 0 && images_equal(&img, &back), "round trip C=%d: k/255 exact (%zu bytes)%s",
              c, len, rc ? err.msg : "");
        rc = ns_png_encode(&img, &buf2, &len2, &err);
        CHECK(rc == 0 && len == len2 && memcmp(buf, buf2, len) == 0 && !has_chunk(buf, len, "tIME"),
              "encode C=%d deterministic, no tIME chunk", c);
        free(buf);
        free(buf2);
        ns_image_free(&img);
        ns_image_free(&back);
    }
}

static void test_encode_clamps(void) {
    const float in[8] = {-0.5f, 1.5f, NAN, 0.2f, 100.4f / 255, 100.6f / 255, 0.5f / 255 - 1e-4f,
                         INFINITY};
    const float want[8] = {0, 1, 0, 51.f / 255, 100.f / 255, 101.f / 255, 0, 1};
    ns_image img, back = {0};
    ns_err err = {{0}};
    ns_image_alloc(&img, 1, 1, 8, &err);
    memcpy(img.data, in, sizeof in);
    void *buf = NULL;
    size_t len = 0;
    int rc = ns_png_encode(&img, &buf, &len, &err);
    rc = rc ? rc : ns_png_decode(buf, len, &back, &err);
    CHECK(rc == 0 && memcmp(back.data, want, sizeof want) == 0,
          "encode clamps to [0,1], NaN to 0, rounds to nearest");
    free(buf);
    ns_image_free(&img);
    ns_image_free(&back);

    ns_image bad = {.c = 5, .h = 1, .w = 1, .data = (float[5]){0}};
    rc = ns_png_encode(&bad, &buf, &len, &err);
    CHECK(rc == -1 && buf == NULL && strstr(err.msg, "channels"), "encode refuses C=5: %s", err.msg);
}

// ---------------------------------------------------------------------------
// Malformed input

// A small valid PNG: 8x8 RGB, interlaced, written in many small IDAT chunks.
static unsigned char *small_png(size_t *len) {
    enum { W = 8, H = 8 };
    unsigned samples[W * H * 3];
    for (int i = 0; i < W * H * 3; i++) samples[i] = rng() & 0xff;
    fixture f = {PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_ADAM7, 0, 64};
    return fixture_png(&f, W, H, samples, NULL, NULL, len);
}

static uint32_t crc32_of(const unsigned char *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return c ^ 0xffffffffu;
}

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

// Offset of the first chunk called name (its length field), or 0.
static size_t find_chunk(const unsigned char *p, size_t len, const char *name) {
    for (size_t off = 8; off + 12 <= len;) {
        uint32_t n = (uint32_t)p[off] << 24 | p[off + 1] << 16 | p[off + 2] << 8 | p[off + 3];
        if (memcmp(p + off + 4, name, 4) == 0) return off;
        off += 12 + (size_t)n;
    }
    return 0;
}

// Recomputes the CRC of the chunk holding byte off (when off is in a chunk's
// type or data).
static void fix_crc(unsigned char *p, size_t len, size_t off) {
    for (size_t c = 8; c + 12 <= len;) {
        uint32_t n = (uint32_t)p[c] << 24 | p[c + 1] << 16 | p[c + 2] << 8 | p[c + 3];
        if (n > len - c - 12) return;
        if (off >= c + 4 && off < c + 8 + n) {
            put_be32(p + c + 8 + n, crc32_of(p + c + 4, 4 + n));
            return;
        }
        c += 12 + (size_t)n;
    }
}

// Decodes and expects failure with a message.
static int fails_cleanly(const unsigned char *p, size_t len, ns_err *err) {
    ns_image img = {0};
    err->msg[0] = '\0';
    int rc = ns_png_decode(p, len, &img, err);
    int ok = rc == -1 && err->msg[0] != '\0' && img.data == NULL;
    ns_image_free(&img);
    return ok;
}

static void test_truncated(void) {
    size_t len = 0;
    unsigned char *png = small_png(&len);
    ns_image img = {0};
    ns_err err = {{0}};
    CHECK(png && ns_png_decode(png, len, &img, &err) == 0, "small PNG decodes (%zu bytes)", len);
    ns_image_free(&img);
    size_t bad = 0, first_bad = 0;
    for (size_t n = 0; n < len; n++) {
        unsigned char *prefix = malloc(n ? n : 1); // exact size: ASan sees overreads
        memcpy(prefix, png, n);
        if (!fails_cleanly(prefix, n, &err) && !bad++) first_bad = n;
        free(prefix);
    }
    CHECK(bad == 0, "all %zu truncations fail with a message (%zu bad, first at %zu)", len, bad,
          first_bad);
    fails_cleanly(png, len / 2, &err);
    CHECK(strstr(err.msg, "truncated") != NULL, "truncation message: %s", err.msg);
    free(png);
}

static void test_corrupted(void) {
    size_t len = 0;
    unsigned char *png = small_png(&len);
    ns_err err = {{0}};
    size_t idat = find_chunk(png, len, "IDAT");
    uint32_t idat_len = (uint32_t)png[idat] << 24 | png[idat + 1] << 16 | png[idat + 2] << 8 |
                        png[idat + 3];
    struct {
        const char *what;
        size_t off;
        int fix_crc; // recompute the chunk's CRC after the change
    } cases[] = {
        {"signature", 1, 0},
        {"IHDR width", 16, 0},
        {"IHDR bit depth (CRC fixed)", 24, 1},
        {"IDAT data", idat + 8 + 3, 0},
        {"IDAT CRC", idat + 8 + idat_len, 0},
        {"IDAT zlib header (CRC fixed)", idat + 8, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char *copy = malloc(len);
        memcpy(copy, png, len);
        copy[cases[i].off] ^= 0x5a;
        if (cases[i].fix_crc) {
            size_t chunk = cases[i].off < idat ? 8 : idat;
            uint32_t n = (uint32_t)copy[chunk] << 24 | copy[chunk + 1] << 16 |
                         copy[chunk + 2] << 8 | copy[chunk + 3];
            put_be32(copy + chunk + 8 + n, crc32_of(copy + chunk + 4, 4 + n));
        }
        CHECK(fails_cleanly(copy, len, &err), "corrupt %s fails: %s", cases[i].what, err.msg);
        free(copy);
    }
    // Every single-byte change, with the CRC left stale and then fixed (so the
    // change reaches the decoder): no crash (ASan build), a failure has a message.
    size_t silent = 0, failed = 0;
    for (size_t trial = 0; trial < 2 * len; trial++) {
        size_t off = trial % len;
        unsigned char *copy = malloc(len);
        memcpy(copy, png, len);
        copy[off] ^= 0xff;
        if (trial >= len) fix_crc(copy, len, off);
        ns_image img = {0};
        err.msg[0] = '\0';
        int rc = ns_png_decode(copy, len, &img, &err);
        failed += rc != 0;
        if (rc != 0 && (err.msg[0] == '\0' || img.data)) silent++;
        if (rc == 0 && (!img.data || img.w != 8 || img.h != 8)) silent++;
        ns_image_free(&img);
        free(copy);
    }
    CHECK(silent == 0, "%zu single-byte corruptions: %zu fail, all with messages", 2 * len, failed);
    free(png);
}

// Inserts a chunk (type, data) after IHDR; the CRC is made right unless bad_crc.
static unsigned char *insert_chunk(const unsigned char *png, size_t len, const char *type,
                                   const void *data, uint32_t n, uint32_t claimed, int bad_crc,
                                   size_t *out_len) {
    const size_t at = 8 + 25; // signature + IHDR
    unsigned char *out = malloc(len + 12 + n);
    memcpy(out, png, at);
    put_be32(out + at, claimed);
    memcpy(out + at + 4, type, 4);
    if (n) memcpy(out + at + 8, data, n);
    put_be32(out + at + 8 + n, crc32_of(out + at + 4, 4 + n) ^ (bad_crc ? 1u : 0u));
    memcpy(out + at + 12 + n, png + at, len - at);
    *out_len = len + 12 + n;
    return out;
}

static void test_ancillary(void) {
    size_t len = 0, n = 0;
    unsigned char *png = small_png(&len);
    ns_image plain = {0}, got = {0};
    ns_err err = {{0}};
    ns_png_decode(png, len, &plain, &err);
    static const unsigned char gama[4] = {0, 0, 0x3a, 0x98}; // gamma 0.15; samples stay raw
    static const char text[] = "Comment\0made by test_image";
    struct {
        const char *what, *type;
        const void *data;
        uint32_t n;
        int bad_crc;
    } cases[] = {
        {"gAMA", "gAMA", gama, 4, 0},
        {"tEXt", "tEXt", text, sizeof text - 1, 0},
        {"private chunk", "prIv", text, 8, 0},
        {"tEXt with a bad CRC", "tEXt", text, sizeof text - 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char *p = insert_chunk(png, len, cases[i].type, cases[i].data, cases[i].n,
                                        cases[i].n, cases[i].bad_crc, &n);
        int rc = ns_png_decode(p, n, &got, &err);
        CHECK(rc == 0 && images_equal(&got, &plain), "%s ignored: same samples (%s)", cases[i].what,
              rc ? err.msg : "ok");
        ns_image_free(&got);
        free(p);
    }
    // An ancillary chunk claiming 1 GiB in a small file (skipped unread, never allocated).
    unsigned char *p = insert_chunk(png, len, "sCAL", NULL, 0, 1u << 30, 0, &n);
    CHECK(fails_cleanly(p, n, &err), "sCAL claiming 1 GiB in a small file fails cleanly: %s", err.msg);
    free(p);
    ns_image_free(&plain);
    free(png);
}

// A PNG whose IHDR claims w x h gray 8-bit, followed by a tiny IDAT and IEND.
static size_t fake_header_png(unsigned char *out, uint32_t w, uint32_t h) {
    static const unsigned char sig[8] = {137, 'P', 'N', 'G', 13, 10, 26, 10};
    static const unsigned char idat[] = {0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01};
    size_t n = 0;
    memcpy(out, sig, 8);
    n = 8;
    unsigned char ihdr[13] = {0};
    put_be32(ihdr, w);
    put_be32(ihdr + 4, h);
    ihdr[8] = 8; // depth; colour type 0, no interlace
    struct { const char *name; const unsigned char *data; uint32_t len; } chunks[] = {
        {"IHDR", ihdr, 13}, {"IDAT", idat, sizeof idat}, {"IEND", NULL, 0}};
    for (int i = 0; i < 3; i++) {
        put_be32(out + n, chunks[i].len);
        memcpy(out + n + 4, chunks[i].name, 4);
        if (chunks[i].len) memcpy(out + n + 8, chunks[i].data, chunks[i].len);
        put_be32(out + n + 8 + chunks[i].len, crc32_of(out + n + 4, 4 + chunks[i].len));
        n += 12 + chunks[i].len;
    }
    return n;
}

static void test_oversized(void) {
    unsigned char buf[128];
    ns_err err = {{0}};
    size_t n = fake_header_png(buf, 1, 1);
    ns_image img = {0};
    int rc = ns_png_decode(buf, n, &img, &err);
    CHECK(rc == 0 && img.c == 1 && img.w == 1 && img.h == 1 && img.data[0] == 0.0f,
          "hand-made 1x1 PNG decodes (%s)", rc ? err.msg : "ok");
    ns_image_free(&img);
    n = fake_header_png(buf, 100000, 100000);
    CHECK(fails_cleanly(buf, n, &err) && strstr(err.msg, "limit"), "100000x100000 refused: %s",
          err.msg);
    n = fake_header_png(buf, NS_IMAGE_MAX_SIDE + 1, 1);
    CHECK(fails_cleanly(buf, n, &err), "width %d refused: %s", NS_IMAGE_MAX_SIDE + 1, err.msg);
    // Within the side limit, but 256 MiB of samples cannot come from 60 bytes:
    // refused before allocating (an allocation of 1 GiB of floats would show).
    n = fake_header_png(buf, NS_IMAGE_MAX_SIDE, NS_IMAGE_MAX_SIDE);
    CHECK(fails_cleanly(buf, n, &err) && strstr(err.msg, "file can hold"),
          "16384x16384 in %zu bytes refused: %s", n, err.msg);
    CHECK(fails_cleanly((const unsigned char *)"hello", 5, &err), "not a PNG: %s", err.msg);
    CHECK(fails_cleanly(NULL, 0, &err), "empty input: %s", err.msg);
}

// ---------------------------------------------------------------------------
// Files

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    if (d) closedir(d);
    return n;
}

static void test_files(void) {
    char dir[] = "/tmp/test_image.XXXXXX", path[256], missing[300];
    if (!mkdtemp(dir)) {
        SKIP("cannot make a temporary directory");
        return;
    }
    snprintf(path, sizeof path, "%s/a.png", dir);
    ns_image img, back = {0};
    ns_err err = {{0}};
    ns_image_alloc(&img, 3, 9, 10, &err);
    fill_levels(&img);
    int rc = ns_png_write_file(path, &img, &err);
    rc = rc ? rc : ns_png_read_file(path, &back, &err);
    CHECK(rc == 0 && images_equal(&img, &back) && count_entries(dir) == 1,
          "write_file/read_file round trip, no temp file left (%s)", rc ? err.msg : "ok");
    rc = ns_png_write_file(path, &img, &err); // overwrite
    CHECK(rc == 0 && count_entries(dir) == 1, "write_file replaces an existing file");
    ns_image_free(&back);

    snprintf(missing, sizeof missing, "%s/none.png", dir);
    rc = ns_png_read_file(missing, &back, &err);
    CHECK(rc == -1 && strstr(err.msg, missing) && strstr(err.msg, "No such file"),
          "read_file of a missing file: %s", err.msg);
    snprintf(missing, sizeof missing, "%s/nodir/x.png", dir);
    rc = ns_png_write_file(missing, &img, &err);
    CHECK(rc == -1 && strstr(err.msg, missing) && count_entries(dir) == 1,
          "write_file into a missing directory: %s", err.msg);
    snprintf(missing, sizeof missing, "%s/bad.png", dir);
    ns_image bad = {.c = 0, .h = 1, .w = 1, .data = img.data};
    rc = ns_png_write_file(missing, &bad, &err);
    CHECK(rc == -1 && strstr(err.msg, missing) && count_entries(dir) == 1,
          "failed encode leaves nothing behind: %s", err.msg);
    FILE *f = fopen(missing, "w");
    if (f) fputs("not a png\n", f), fclose(f);
    rc = ns_png_read_file(missing, &back, &err);
    CHECK(rc == -1 && strstr(err.msg, missing) && strstr(err.msg, "signature"),
          "read_file of a text file: %s", err.msg);
    unlink(missing);
    if (access("/dev/full", W_OK) == 0) {
        rc = ns_png_write_file("/dev/full", &img, &err);
        CHECK(rc == -1 && strstr(err.msg, "/dev/full") && strstr(err.msg, "space"),
              "write_file to /dev/full fails: %s", err.msg);
    }
    ns_image_free(&img);
    unlink(path);
    rmdir(dir);
}

// ---------------------------------------------------------------------------
// Transforms

static ns_image image_of(int c, int h, int w, const float *values) {
    ns_image img;
    ns_image_alloc(&img, c, h, w, NULL);
    memcpy(img.data, values, sizeof(float) * (size_t)c * h * w);
    return img;
}

static int data_is(const ns_image *img, int c, int h, int w, const float *want, float tol) {
    if (img->c != c || img->h != h || img->w != w) return 0;
    for (int i = 0; i < c * h * w; i++)
        if (!(fabsf(img->data[i] - want[i]) <= tol)) return 0;
    return 1;
}

static void test_alloc(void) {
    ns_image img;
    ns_err err = {{0}};
    CHECK(ns_image_alloc(&img, 5, 2, 2, &err) == -1 && img.data == NULL, "alloc C=5 refused: %s",
          err.msg);
    CHECK(ns_image_alloc(&img, 1, 0, 2, &err) == -1, "alloc empty refused: %s", err.msg);
    CHECK(ns_image_alloc(&img, 4, INT_MAX, INT_MAX, &err) == -1 && strstr(err.msg, "overflow"),
          "alloc overflow refused: %s", err.msg);
    CHECK(ns_image_alloc(&img, 2, 3, 4, &err) == 0 && img.data[23] == 0.0f, "alloc zeroes");
    ns_image_free(&img);
    ns_image_free(&img); // twice is harmless
}

static void test_convert(void) {
    const float rgba[4 * 2] = {1, 0.5f, 0, 0.2f, 0.25f, 0.75f, 0.3f, 0.4f};
    ns_image src = image_of(4, 1, 2, rgba), dst = {0};
    ns_err err = {{0}};
    const float want_l[2] = {0.299f * 1 + 0.587f * 0 + 0.114f * 0.25f,
                             0.299f * 0.5f + 0.587f * 0.2f + 0.114f * 0.75f};
    int rc = ns_image_convert(&src, 1, &dst, &err);
    CHECK(rc == 0 && data_is(&dst, 1, 1, 2, want_l, 1e-7f), "RGBA -> L: 0.299R+0.587G+0.114B");
    ns_image_free(&dst);
    rc = ns_image_convert(&src, 3, &dst, &err);
    CHECK(rc == 0 && data_is(&dst, 3, 1, 2, rgba, 0), "RGBA -> RGB drops alpha");
    ns_image_free(&dst);
    const float want_la[4] = {want_l[0], want_l[1], 0.3f, 0.4f};
    rc = ns_image_convert(&src, 2, &dst, &err);
    CHECK(rc == 0 && data_is(&dst, 2, 1, 2, want_la, 1e-7f), "RGBA -> LA keeps alpha");
    ns_image_free(&dst);
    ns_image_free(&src);

    const float gray[2] = {0.1f, 0.9f};
    src = image_of(1, 1, 2, gray);
    const float want_rgb[6] = {0.1f, 0.9f, 0.1f, 0.9f, 0.1f, 0.9f};
    rc = ns_image_convert(&src, 3, &dst, &err);
    CHECK(rc == 0 && data_is(&dst, 3, 1, 2, want_rgb, 0), "L -> RGB replicates");
    ns_image_free(&dst);
    const float want_rgba[8] = {0.1f, 0.9f, 0.1f, 0.9f, 0.1f, 0.9f, 1, 1};
    rc = ns_image_convert(&src, 4, &dst, &err);
    CHECK(rc == 0 && data_is(&dst, 4, 1, 2, want_rgba, 0), "L -> RGBA adds opaque alpha");
    ns_image_free(&dst);
    const float want_la2[4] = {0.1f, 0.9f, 1, 1};
    rc = ns_image_convert(&src, 2, &dst, &err);
    CHECK(rc == 0 && data_is(&dst, 2, 1, 2, want_la2, 0), "L -> LA adds opaque alpha");
    ns_image_free(&dst);
    rc = ns_image_convert(&src, 0, &dst, &err);
    CHECK(rc == -1 && dst.data == NULL, "convert to 0 channels refused: %s", err.msg);
    ns_image_free(&src);

    const float la[4] = {0.1f, 0.9f, 0.5f, 0.6f};
    src = image_of(2, 1, 2, la);
    const float want_rgba2[8] = {0.1f, 0.9f, 0.1f, 0.9f, 0.1f, 0.9f, 0.5f, 0.6f};
    rc = ns_image_convert(&src, 4, &src, &err); // in place
    CHECK(rc == 0 && data_is(&src, 4, 1, 2, want_rgba2, 0), "LA -> RGBA in place");
    ns_image_free(&src);
}

static void test_resize_by_hand(void) {
    ns_err err = {{0}};
    // 1-D [a, b] up to 4: [a, .75a+.25b, .25a+.75b, b] along each axis.
    const float in[4] = {0, 1, 2, 3}; // (1, 2, 2)
    ns_image src = image_of(1, 2, 2, in), dst = {0};
    const float up_row[4] = {0, 0.25f, 0.75f, 1}; // of [0, 1]
    float want[16];
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) want[y * 4 + x] = 2 * up_row[y] + up_row[x];
    int rc = ns_image_resize(&src, 4, 4, &dst, &err);
    CHECK(rc == 0 && data_is(&dst, 1, 4, 4, want, 1e-6f), "resize 2x2 -> 4x4 by hand");
    ns_image_free(&src);
    ns_image_free(&dst);
    // Down 4 -> 2 averages pairs (samples at 0.5 and 2.5); 3 -> 3 is identity.
    const float row[12] = {1, 3, 5, 9, 0, 0, 0, 0, 2, 2, 2, 2}; // (1, 3, 4)
    src = image_of(1, 3, 4, row);
    const float want_down[6] = {2, 7, 0, 0, 2, 2};
    rc = ns_image_resize(&src, 3, 2, &dst, &err);
    CHECK(rc == 0 && data_is(&dst, 1, 3, 2, want_down, 1e-6f), "resize 3x4 -> 3x2 by hand");
    ns_image_free(&dst);
    rc = ns_image_resize(&src, 3, 4, &src, &err); // in place, same size
    CHECK(rc == 0 && data_is(&src, 1, 3, 4, row, 0), "resize to the same size is identity");
    ns_image_free(&src);
}

static float le_float(const unsigned char *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static int read_floats(FILE *f, float *out, size_t n) {
    unsigned char b[4];
    for (size_t i = 0; i < n; i++) {
        if (fread(b, 1, 4, f) != 4) return -1;
        out[i] = le_float(b);
    }
    return 0;
}

static void test_resize_torch(void) {
    FILE *f = fopen(REF_PATH, "rb");
    if (!f) {
        SKIP("%s not found (run from the repo root)", REF_PATH);
        return;
    }
    char line[128];
    int cases[16][5], n = 0;
    int ok = fgets(line, sizeof line, f) && strcmp(line, "nsref image-resize 1\n") == 0;
    while (ok && fgets(line, sizeof line, f) && strcmp(line, "end\n") != 0) {
        int *k = cases[n];
        ok = n < 16 && sscanf(line, "case %d %d %d %d %d", &k[0], &k[1], &k[2], &k[3], &k[4]) == 5;
        n++;
    }
    CHECK(ok && n > 0, "%s header: %d cases", REF_PATH, n);
    for (int i = 0; ok && i < n; i++) {
        int *k = cases[i];
        ns_image src = {0}, got = {0}, want = {0};
        ns_err err = {{0}};
        ns_image_alloc(&src, k[0], k[1], k[2], NULL);
        ns_image_alloc(&want, k[0], k[3], k[4], NULL);
        int rc = read_floats(f, src.data, (size_t)k[0] * k[1] * k[2]) ||
                 read_floats(f, want.data, (size_t)k[0] * k[3] * k[4]);
        rc = rc ? rc : ns_image_resize(&src, k[3], k[4], &got, &err);
        double maxabs = 1;
        if (rc == 0) check_maxdiff(got.data, want.data, (long)k[0] * k[3] * k[4], &maxabs);
        CHECK(rc == 0 && maxabs < 1e-5, "resize %dx%dx%d -> %dx%d vs torch: maxdiff %.3g", k[0],
              k[1], k[2], k[3], k[4], maxabs);
        ns_image_free(&src);
        ns_image_free(&got);
        ns_image_free(&want);
    }
    fclose(f);
}

static void test_center_crop(void) {
    ns_err err = {{0}};
    float v[7 * 7];
    for (int i = 0; i < 49; i++) v[i] = (float)i;
    ns_image src = image_of(1, 7, 7, v), dst = {0};
    // (7 - n) / 2.0 rounded half to even: 7->4: round(1.5) = 2; 7->2: round(2.5) = 2;
    // 7->6: round(0.5) = 0; 7->3: 2; 7->0 invalid.
    struct { int n, start; } cases[] = {{4, 2}, {2, 2}, {6, 0}, {3, 2}, {5, 1}, {7, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int n = cases[c].n, s = cases[c].start;
        float want[49];
        for (int y = 0; y < n; y++)
            for (int x = 0; x < n; x++) want[y * n + x] = v[(y + s) * 7 + (x + s)];
        int rc = ns_image_center_crop(&src, n, n, &dst, &err);
        CHECK(rc == 0 && data_is(&dst, 1, n, n, want, 0), "center crop 7x7 -> %dx%d starts at %d",
              n, n, s);
        ns_image_free(&dst);
    }
    ns_image_free(&src);

    // 6 wide x 5 tall -> 3 wide x 4 tall: left round(1.5) = 2, top round(0.5) = 0.
    float w6[30];
    for (int i = 0; i < 30; i++) w6[i] = (float)i;
    src = image_of(1, 5, 6, w6);
    float want[12];
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 3; x++) want[y * 3 + x] = w6[y * 6 + x + 2];
    int rc = ns_image_center_crop(&src, 4, 3, &dst, &err);
    CHECK(rc == 0 && data_is(&dst, 1, 4, 3, want, 0), "center crop 5x6 -> 4x3 (odd/even)");
    ns_image_free(&dst);
    ns_image_free(&src);

    // Padding: (2, 2, 3) to 5 tall x 4 wide: top pad 1 (bottom 2), left pad 0 (right 1).
    const float p[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    src = image_of(2, 2, 3, p);
    float want_pad[2 * 5 * 4] = {0};
    for (int c = 0; c < 2; c++)
        for (int y = 0; y < 2; y++)
            for (int x = 0; x < 3; x++) want_pad[(c * 5 + y + 1) * 4 + x] = p[(c * 2 + y) * 3 + x];
    rc = ns_image_center_crop(&src, 5, 4, &dst, &err);
    CHECK(rc == 0 && data_is(&dst, 2, 5, 4, want_pad, 0), "center crop 2x3 -> 5x4 pads with zeros");
    ns_image_free(&dst);
    ns_image_free(&src);

    // Mixed: 3 tall x 8 wide -> 6 tall x 3 wide: pad top (6-3)//2 = 1; left round(2.5) = 2.
    float m[24];
    for (int i = 0; i < 24; i++) m[i] = (float)(i + 1);
    src = image_of(1, 3, 8, m);
    float want_mix[18] = {0};
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 3; x++) want_mix[(y + 1) * 3 + x] = m[y * 8 + x + 2];
    rc = ns_image_center_crop(&src, 6, 3, &src, &err); // in place
    CHECK(rc == 0 && data_is(&src, 1, 6, 3, want_mix, 0), "center crop 3x8 -> 6x3 pads and crops");
    ns_image_free(&src);
}

static void test_normalize(void) {
    const float v[4] = {0, 1, 0.5f, 0.25f}; // (2, 1, 2)
    ns_image img = image_of(2, 1, 2, v);
    const float mean[2] = {0.5f, 0.25f}, std[2] = {0.5f, 0.25f};
    const float want[4] = {-1, 1, 1, 0};
    ns_image_normalize(&img, mean, std);
    CHECK(data_is(&img, 2, 1, 2, want, 0), "normalize per channel");
    ns_image_free(&img);
}

int main(void) {
    test_decode_all_variants();
    test_round_trip();
    test_encode_clamps();
    test_truncated();
    test_corrupted();
    test_oversized();
    test_ancillary();
    test_files();
    test_alloc();
    test_convert();
    test_resize_by_hand();
    test_resize_torch();
    test_center_crop();
    test_normalize();
    return check_done();
}
