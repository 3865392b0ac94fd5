// image.c: owns the in-memory image (ns_image), PNG decode/encode through
// libpng, and the transforms datasets need (channel conversion, bilinear resize,
// centre crop, normalisation).
//
// Shapes: C = channels (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA), H = height,
// W = width. Every image is (C, H, W) float, planar and C-contiguous: sample
// (c, y, x) is data[(c*H + y)*W + x]. PNG stores (H, W, C) interleaved bytes;
// the decoder and encoder transpose between the two.
//
// Untrusted PNGs are checked before anything large is allocated: each side must
// be at most NS_IMAGE_MAX_SIDE (libpng's user limits refuse it while reading
// IHDR), byte counts must not overflow size_t, and the image's raw sample bytes
// must be reachable from the file's size by deflate, whose ratio is at most
// 1032:1 (so a 100-byte file claiming 16384x16384 fails at once instead of
// allocating gigabytes and then running out of data).
//
// libpng reports errors by longjmp. Each libpng call runs inside a small
// *_guarded function that owns only the setjmp; everything that must be freed
// lives in a struct owned by its caller, so the cleanup after a longjmp sees
// well-defined values (no locals modified between setjmp and longjmp).
#include "stream/image.h"

#include <errno.h>
#include <fcntl.h>
#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/tempfile.h"

// Deflate cannot expand data by more than 1032:1 (zlib's technical notes);
// a little slack on top.
#define DEFLATE_MAX_RATIO 1040u

// ---------------------------------------------------------------------------
// The image itself

static int image_bytes(int c, int h, int w, size_t *nbytes, ns_err *err) {
    if (c < 1 || c > 4) return ns_errf(err, "image: %d channels (expected 1 to 4)", c);
    if (h < 1 || w < 1) return ns_errf(err, "image: size %dx%d is empty", w, h);
    size_t n = (size_t)c;
    if ((size_t)h > SIZE_MAX / sizeof(float) / n) goto overflow;
    n *= (size_t)h;
    if ((size_t)w > SIZE_MAX / sizeof(float) / n) goto overflow;
    *nbytes = n * (size_t)w * sizeof(float);
    return 0;
overflow:
    return ns_errf(err, "image: %dx%dx%d floats overflow size_t", c, h, w);
}

int ns_image_alloc(ns_image *img, int c, int h, int w, ns_err *err) {
    size_t nbytes;
    img->data = NULL;
    img->c = img->h = img->w = 0;
    if (image_bytes(c, h, w, &nbytes, err)) return -1;
    float *data = calloc(1, nbytes);
    if (!data) return ns_errf(err, "image: out of memory for %dx%dx%d floats", c, h, w);
    img->c = c;
    img->h = h;
    img->w = w;
    img->data = data;
    return 0;
}

void ns_image_free(ns_image *img) {
    if (!img) return;
    free(img->data);
    img->data = NULL;
    img->c = img->h = img->w = 0;
}

// Puts a freshly built image into *dst, releasing *src first when the caller
// passed the same struct for both (in-place transform).
static void image_replace(const ns_image *src, ns_image *dst, ns_image *built) {
    if (dst == src) ns_image_free(dst);
    *dst = *built;
}

// ---------------------------------------------------------------------------
// libpng glue shared by decode and encode

static PNG_NORETURN void png_on_error(png_structp png, png_const_charp msg) {
    ns_errf(png_get_error_ptr(png), "PNG: %s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg; // warnings (bad ancillary chunks, ...) are not errors: stay silent
}

// ---------------------------------------------------------------------------
// PNG decode

typedef struct png_reader {
    png_structp png;
    png_infop info;
    const unsigned char *src; // the whole file
    size_t len, pos;
    unsigned char *pixels;    // (H, rowbytes) after libpng's transforms
    png_bytep *rows;          // (H) pointers into pixels
    ns_image *img;
    ns_err *err;
} png_reader;

static void png_read_mem(png_structp png, png_bytep out, size_t n) {
    png_reader *r = png_get_io_ptr(png);
    if (n > r->len - r->pos) png_error(png, "truncated file");
    memcpy(out, r->src + r->pos, n);
    r->pos += n;
}

// Asks libpng for 8- or 16-bit samples: palette to RGB, low gray depths to 8
// bits, tRNS to an alpha channel, interlacing undone.
static void decode_set_transforms(png_reader *r) {
    int type = png_get_color_type(r->png, r->info);
    int depth = png_get_bit_depth(r->png, r->info);
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(r->png);
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(r->png);
    if (png_get_valid(r->png, r->info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(r->png);
    png_set_interlace_handling(r->png);
    png_read_update_info(r->png, r->info);
}

// Refuses sizes that are over the limit, overflow, or that the file is too short
// to hold. raw_rowbytes is the row size as stored (before transforms).
static int decode_check_size(png_reader *r, uint32_t w, uint32_t h, size_t raw_rowbytes) {
    if (w > NS_IMAGE_MAX_SIDE || h > NS_IMAGE_MAX_SIDE)
        return ns_errf(r->err, "PNG: %ux%u is larger than the limit of %d per side",
                       (unsigned)w, (unsigned)h, NS_IMAGE_MAX_SIDE);
    uint64_t raw = (uint64_t)raw_rowbytes * h;
    if (raw / DEFLATE_MAX_RATIO > r->len)
        return ns_errf(r->err,
                       "PNG: %ux%u needs %llu bytes of samples, more than a %zu-byte "
                       "file can hold (truncated or corrupt)",
                       (unsigned)w, (unsigned)h, (unsigned long long)raw, r->len);
    return 0;
}

// Converts the decoded (H, W, C) 8- or 16-bit big-endian samples to (C, H, W)
// floats in [0, 1].
static void decode_to_float(png_reader *r, int depth) {
    ns_image *img = r->img;
    size_t plane = (size_t)img->h * img->w;
    int c = img->c;
    for (int y = 0; y < img->h; y++) {
        const unsigned char *row = r->rows[y];
        float *out = img->data + (size_t)y * img->w;
        for (int x = 0; x < img->w; x++) {
            for (int k = 0; k < c; k++) {
                size_t i = (size_t)x * c + k;
                float v = depth == 16
                              ? (float)((row[2 * i] << 8) | row[2 * i + 1]) / 65535.0f
                              : (float)row[i] / 255.0f;
                out[k * plane + x] = v;
            }
        }
    }
}

// The whole decode; may longjmp out through png_on_error.
static int decode_body(png_reader *r) {
    png_read_info(r->png, r->info);
    uint32_t w = png_get_image_width(r->png, r->info);
    uint32_t h = png_get_image_height(r->png, r->info);
    if (decode_check_size(r, w, h, png_get_rowbytes(r->png, r->info))) return -1;
    decode_set_transforms(r);

    int depth = png_get_bit_depth(r->png, r->info);
    int channels = png_get_channels(r->png, r->info);
    size_t rowbytes = png_get_rowbytes(r->png, r->info);
    if ((depth != 8 && depth != 16) || channels < 1 || channels > 4)
        return ns_errf(r->err, "PNG: unexpected %d-bit %d-channel layout", depth, channels);
    if (rowbytes > SIZE_MAX / h)
        return ns_errf(r->err, "PNG: %ux%u rows overflow size_t", (unsigned)w, (unsigned)h);
    r->pixels = malloc(rowbytes * h);
    r->rows = malloc(sizeof *r->rows * h);
    if (!r->pixels || !r->rows)
        return ns_errf(r->err, "PNG: out of memory for %ux%u pixels", (unsigned)w, (unsigned)h);
    for (uint32_t y = 0; y < h; y++) r->rows[y] = r->pixels + (size_t)y * rowbytes;

    png_read_image(r->png, r->rows);
    png_read_end(r->png, NULL); // requires the rest of the file, up to IEND
    // The floats only once the file has proved complete.
    if (ns_image_alloc(r->img, channels, (int)h, (int)w, r->err)) return -1;
    decode_to_float(r, depth);
    return 0;
}

static int decode_guarded(png_reader *r) {
    if (setjmp(png_jmpbuf(r->png))) return -1;
    return decode_body(r);
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

// Reads the size straight from IHDR, which must follow the signature, so an
// oversized image is refused with a clear message (libpng's own check only
// says "Invalid IHDR data").
static int decode_check_header(const unsigned char *p, size_t len, ns_err *err) {
    if (len < 8 || png_sig_cmp(p, 0, 8)) return ns_errf(err, "PNG: not a PNG file (bad signature)");
    if (len < 24) return ns_errf(err, "PNG: truncated file (no IHDR)");
    if (be32(p + 8) != 13 || memcmp(p + 12, "IHDR", 4) != 0)
        return ns_errf(err, "PNG: the first chunk is not a 13-byte IHDR");
    uint32_t w = be32(p + 16), h = be32(p + 20);
    if (w > NS_IMAGE_MAX_SIDE || h > NS_IMAGE_MAX_SIDE)
        return ns_errf(err, "PNG: %lux%lu is larger than the limit of %d per side",
                       (unsigned long)w, (unsigned long)h, NS_IMAGE_MAX_SIDE);
    return 0;
}

int ns_png_decode(const void *buf, size_t len, ns_image *img, ns_err *err) {
    img->data = NULL;
    img->c = img->h = img->w = 0;
    if (decode_check_header(buf, len, err)) return -1;
    png_reader r = {.src = buf, .len = len, .img = img, .err = err};
    r.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, err, png_on_error, png_on_warning);
    if (!r.png) return ns_errf(err, "PNG: out of memory creating the reader");
    r.info = png_create_info_struct(r.png);
    int rc = -1;
    if (!r.info) {
        ns_errf(err, "PNG: out of memory creating the reader");
    } else {
        png_set_read_fn(r.png, &r, png_read_mem);
        png_set_user_limits(r.png, NS_IMAGE_MAX_SIDE, NS_IMAGE_MAX_SIDE);
        // Skip every ancillary chunk but tRNS unread (no colour management,
        // text or metadata here): libpng would otherwise allocate a chunk's
        // claimed length (sCAL, up to 2 GiB) before finding the file too short.
        png_set_keep_unknown_chunks(r.png, PNG_HANDLE_CHUNK_NEVER, NULL, -1);
        rc = decode_guarded(&r);
    }
    free(r.rows);
    free(r.pixels);
    png_destroy_read_struct(&r.png, r.info ? &r.info : NULL, NULL);
    if (rc) ns_image_free(img);
    return rc;
}

// ---------------------------------------------------------------------------
// PNG encode

typedef struct png_writer {
    png_structp png;
    png_infop info;
    unsigned char *out; // the growing file
    size_t len, cap;
    unsigned char *row; // (W, C) bytes
    const ns_image *img;
} png_writer;

static void png_write_mem(png_structp png, png_bytep data, size_t n) {
    png_writer *wr = png_get_io_ptr(png);
    if (n > wr->cap - wr->len) {
        size_t cap = wr->cap ? wr->cap : 4096;
        while (cap - wr->len < n) {
            if (cap > SIZE_MAX / 2) png_error(png, "encoded image too large");
            cap *= 2;
        }
        unsigned char *grown = realloc(wr->out, cap);
        if (!grown) png_error(png, "out of memory for the encoded image");
        wr->out = grown;
        wr->cap = cap;
    }
    memcpy(wr->out + wr->len, data, n);
    wr->len += n;
}

static void png_flush_mem(png_structp png) {
    (void)png;
}

// A float sample as an 8-bit value: clamped to [0, 1] (NaN gives 0), rounded
// to nearest.
static unsigned char quantize8(float x) {
    float v = x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f;
    return (unsigned char)(v * 255.0f + 0.5f);
}

static int encode_body(png_writer *wr) {
    static const int color_types[5] = {
        [1] = PNG_COLOR_TYPE_GRAY,
        [2] = PNG_COLOR_TYPE_GRAY_ALPHA,
        [3] = PNG_COLOR_TYPE_RGB,
        [4] = PNG_COLOR_TYPE_RGB_ALPHA,
    };
    const ns_image *img = wr->img;
    int c = img->c;
    size_t plane = (size_t)img->h * img->w;
    png_set_write_fn(wr->png, wr, png_write_mem, png_flush_mem);
    png_set_IHDR(wr->png, wr->info, (uint32_t)img->w, (uint32_t)img->h, 8, color_types[c],
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(wr->png, wr->info);
    for (int y = 0; y < img->h; y++) {
        const float *in = img->data + (size_t)y * img->w;
        for (int x = 0; x < img->w; x++)
            for (int k = 0; k < c; k++) wr->row[(size_t)x * c + k] = quantize8(in[k * plane + x]);
        png_write_row(wr->png, wr->row);
    }
    png_write_end(wr->png, NULL);
    return 0;
}

static int encode_guarded(png_writer *wr) {
    if (setjmp(png_jmpbuf(wr->png))) return -1;
    return encode_body(wr);
}

int ns_png_encode(const ns_image *img, void **buf, size_t *len, ns_err *err) {
    *buf = NULL;
    *len = 0;
    size_t nbytes;
    if (!img->data) return ns_errf(err, "PNG: no image to encode");
    if (image_bytes(img->c, img->h, img->w, &nbytes, err)) return -1;
    png_writer wr = {.img = img};
    wr.row = malloc((size_t)img->w * img->c);
    wr.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, err, png_on_error, png_on_warning);
    wr.info = wr.png ? png_create_info_struct(wr.png) : NULL;
    int rc = -1;
    if (!wr.row || !wr.png || !wr.info)
        ns_errf(err, "PNG: out of memory creating the writer");
    else
        rc = encode_guarded(&wr);
    png_destroy_write_struct(wr.png ? &wr.png : NULL, wr.info ? &wr.info : NULL);
    free(wr.row);
    if (rc) {
        free(wr.out);
        return -1;
    }
    *buf = wr.out;
    *len = wr.len;
    return 0;
}

// ---------------------------------------------------------------------------
// Files

// Reads a whole file (or pipe) into a malloc'd buffer.
static int read_all(const char *path, unsigned char **data, size_t *len, ns_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return ns_errf(err, "%s: %s", path, strerror(errno));
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            size_t grown_cap = cap ? cap * 2 : 65536;
            unsigned char *grown = grown_cap > cap ? realloc(buf, grown_cap) : NULL;
            if (!grown) {
                free(buf);
                fclose(f);
                return ns_errf(err, "%s: out of memory reading the file", path);
            }
            buf = grown;
            cap = grown_cap;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int failed = ferror(f);
    int saved = errno;
    fclose(f);
    if (failed) {
        free(buf);
        return ns_errf(err, "%s: %s", path, strerror(saved));
    }
    *data = buf;
    *len = n;
    return 0;
}

int ns_png_read_file(const char *path, ns_image *img, ns_err *err) {
    unsigned char *data = NULL;
    size_t len = 0;
    img->data = NULL;
    img->c = img->h = img->w = 0;
    if (read_all(path, &data, &len, err)) return -1;
    int rc = ns_png_decode(data, len, img, err);
    free(data);
    if (rc) ns_err_prefix(err, "%s", path);
    return rc;
}

static int write_all(int fd, const unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t put = write(fd, p, n);
        if (put < 0 && errno == EINTR) continue;
        if (put < 0) return -1;
        p += put;
        n -= (size_t)put;
    }
    return 0;
}

// Creates "<path>.tmp.<pid>.<n>" next to path (same directory, so rename is
// atomic); the name goes into tmp.
// Writes a regular file by temp file + rename, so a failure leaves nothing
// behind (and never a half-written file at path). Anything else that already
// exists at path (/dev/stdout, a pipe) is written in place.
static int write_bytes(const char *path, const unsigned char *p, size_t n, ns_err *err) {
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        if (fd < 0) return ns_errf(err, "%s: %s", path, strerror(errno));
        int failed = write_all(fd, p, n);
        int saved = errno;
        if (close(fd) && !failed) failed = -1, saved = errno;
        return failed ? ns_errf(err, "%s: %s", path, strerror(saved)) : 0;
    }
    char tmp[4096 + 64];
    int slot;
    int fd = ns_tempfile_create(path, tmp, sizeof tmp, &slot, err); // removed by a signal or an error exit
    if (fd < 0) return -1;
    int failed = write_all(fd, p, n);
    int saved = errno;
    if (close(fd) && !failed) failed = -1, saved = errno;
    if (!failed && rename(tmp, path)) failed = -1, saved = errno;
    if (failed) unlink(tmp);
    ns_tempfile_forget(slot);
    return failed ? ns_errf(err, "%s: %s", path, strerror(saved)) : 0;
}

int ns_png_write_file(const char *path, const ns_image *img, ns_err *err) {
    void *buf = NULL;
    size_t len = 0;
    if (ns_png_encode(img, &buf, &len, err)) return ns_err_prefix(err, "%s", path);
    int rc = write_bytes(path, buf, len, err);
    free(buf);
    return rc;
}

// ---------------------------------------------------------------------------
// Transforms

// ITU-R 601-2 luma, as PIL's convert("L").
static float luma(float r, float g, float b) {
    return 0.299f * r + 0.587f * g + 0.114f * b;
}

int ns_image_convert(const ns_image *src, int c, ns_image *dst, ns_err *err) {
    ns_image out;
    if (ns_image_alloc(&out, c, src->h, src->w, err)) return -1;
    size_t plane = (size_t)src->h * src->w;
    int src_rgb = src->c >= 3, dst_rgb = c >= 3;
    int src_alpha = src->c == 2 || src->c == 4, dst_alpha = c == 2 || c == 4;
    const float *s = src->data;
    float *d = out.data;
    if (src_rgb == dst_rgb) {
        memcpy(d, s, plane * (dst_rgb ? 3 : 1) * sizeof(float));
    } else if (dst_rgb) { // gray -> RGB: replicate
        for (int k = 0; k < 3; k++) memcpy(d + k * plane, s, plane * sizeof(float));
    } else { // RGB -> gray
        for (size_t i = 0; i < plane; i++) d[i] = luma(s[i], s[plane + i], s[2 * plane + i]);
    }
    if (dst_alpha) {
        float *da = d + (size_t)(c - 1) * plane;
        const float *sa = s + (size_t)(src->c - 1) * plane;
        for (size_t i = 0; i < plane; i++) da[i] = src_alpha ? sa[i] : 1.0f;
    }
    image_replace(src, dst, &out);
    return 0;
}

// Where output index i samples an axis of n_in inputs when resized to n_out:
// inputs lo and hi, mixed with weight frac on hi. torch's float arithmetic
// (area_pixel_compute_source_index, align_corners=False).
typedef struct axis_tap {
    int lo, hi;
    float frac;
} axis_tap;

static axis_tap *bilinear_taps(int n_in, int n_out) {
    axis_tap *taps = malloc(sizeof *taps * (size_t)n_out);
    if (!taps) return NULL;
    float scale = (float)n_in / (float)n_out;
    for (int i = 0; i < n_out; i++) {
        float real = scale * ((float)i + 0.5f) - 0.5f;
        if (real < 0.0f) real = 0.0f;
        int lo = (int)real; // real >= 0, so truncation is floor
        if (lo > n_in - 1) lo = n_in - 1;
        float frac = real - (float)lo;
        if (frac > 1.0f) frac = 1.0f;
        taps[i] = (axis_tap){lo, lo < n_in - 1 ? lo + 1 : lo, frac};
    }
    return taps;
}

int ns_image_resize(const ns_image *src, int h, int w, ns_image *dst, ns_err *err) {
    ns_image out;
    if (ns_image_alloc(&out, src->c, h, w, err)) return -1;
    axis_tap *ty = bilinear_taps(src->h, h), *tx = bilinear_taps(src->w, w);
    if (!ty || !tx) {
        free(ty);
        free(tx);
        ns_image_free(&out);
        return ns_errf(err, "resize: out of memory");
    }
    for (int k = 0; k < src->c; k++) {
        const float *in = src->data + (size_t)k * src->h * src->w;
        float *o = out.data + (size_t)k * h * w;
        for (int y = 0; y < h; y++) {
            const float *r0 = in + (size_t)ty[y].lo * src->w, *r1 = in + (size_t)ty[y].hi * src->w;
            float wy1 = ty[y].frac, wy0 = 1.0f - wy1;
            for (int x = 0; x < w; x++) {
                float wx1 = tx[x].frac, wx0 = 1.0f - wx1;
                float top = wx0 * r0[tx[x].lo] + wx1 * r0[tx[x].hi];
                float bottom = wx0 * r1[tx[x].lo] + wx1 * r1[tx[x].hi];
                o[(size_t)y * w + x] = wy0 * top + wy1 * bottom;
            }
        }
    }
    free(ty);
    free(tx);
    image_replace(src, dst, &out);
    return 0;
}

// Where a crop of n from an axis of size starts in source coordinates. Smaller
// crops start at int(round((size - n) / 2.0)) with Python's half-to-even
// rounding; larger ones pad (n - size) // 2 zeros before the image (negative
// start), as torchvision's CenterCrop.
static int crop_start(int size, int n) {
    if (n > size) return -((n - size) / 2);
    int d = size - n, half = d / 2;
    return (d % 2 == 1 && half % 2 == 1) ? half + 1 : half;
}

int ns_image_center_crop(const ns_image *src, int h, int w, ns_image *dst, ns_err *err) {
    ns_image out;
    if (ns_image_alloc(&out, src->c, h, w, err)) return -1; // zeroed: the padding
    int top = crop_start(src->h, h), left = crop_start(src->w, w);
    int x0 = left < 0 ? -left : 0, x1 = src->w - left < w ? src->w - left : w;
    for (int k = 0; k < src->c; k++) {
        for (int y = 0; y < h; y++) {
            int sy = y + top;
            if (sy < 0 || sy >= src->h) continue;
            const float *row = src->data + ((size_t)k * src->h + sy) * src->w;
            float *o = out.data + ((size_t)k * h + y) * w;
            memcpy(o + x0, row + (x0 + left), (size_t)(x1 - x0) * sizeof(float));
        }
    }
    image_replace(src, dst, &out);
    return 0;
}

void ns_image_normalize(ns_image *img, const float *mean, const float *std) {
    size_t plane = (size_t)img->h * img->w;
    for (int k = 0; k < img->c; k++) {
        float *p = img->data + (size_t)k * plane;
        for (size_t i = 0; i < plane; i++) p[i] = (p[i] - mean[k]) / std[k];
    }
}
