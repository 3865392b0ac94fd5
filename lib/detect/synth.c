// synth.c: synthetic logo scenes (synth.h). Artwork is trimmed to its visible
// pixels and kept at four sizes, so a small logo is sampled from a small mip
// instead of aliasing. Shapes: artwork (4, h, w); scenes (3, S, S); a pasted
// logo is first rendered into an RGBA patch of its rotated footprint.
#include "detect/synth.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"

#define ART_SIDE 128
#define ALPHA_IN_BOX 0.5f
#define PLACE_TRIES 12

// --- artwork -------------------------------------------------------------------

// Trims img (RGBA) to the pixels with alpha >= ALPHA_IN_BOX and builds the
// mips. Fails when nothing is visible.
static int art_prepare(ns_logo_art *art, ns_image *rgba, ns_err *err) {
    int x0 = rgba->w, y0 = rgba->h, x1 = -1, y1 = -1;
    const float *alpha = rgba->data + (size_t)3 * rgba->h * rgba->w;
    for (int y = 0; y < rgba->h; y++)
        for (int x = 0; x < rgba->w; x++)
            if (alpha[(size_t)y * rgba->w + x] >= ALPHA_IN_BOX) {
                if (x < x0) x0 = x;
                if (x > x1) x1 = x;
                if (y < y0) y0 = y;
                if (y > y1) y1 = y;
            }
    if (x1 < 0) return ns_errf(err, "no visible pixel (alpha is below %.1f everywhere)", (double)ALPHA_IN_BOX);
    ns_image trim;
    if (ns_image_alloc(&trim, 4, y1 - y0 + 1, x1 - x0 + 1, err) < 0) return -1;
    for (int c = 0; c < 4; c++)
        for (int y = y0; y <= y1; y++)
            memcpy(trim.data + ((size_t)c * trim.h + (y - y0)) * trim.w,
                   rgba->data + ((size_t)c * rgba->h + y) * rgba->w + x0, (size_t)trim.w * sizeof(float));
    int rc = 0;
    for (int m = 0; m < NS_ART_MIPS && !rc; m++) {
        double side = (double)(ART_SIDE >> m), longest = trim.w > trim.h ? trim.w : trim.h;
        int h = (int)fmax(1, round(trim.h * side / longest)), w = (int)fmax(1, round(trim.w * side / longest));
        const ns_image *src = m == 0 ? &trim : &art->mip[m - 1];
        rc = ns_image_resize(src, h, w, &art->mip[m], err);
    }
    ns_image_free(&trim);
    return rc;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const ns_logo_art *)a)->name, ((const ns_logo_art *)b)->name);
}

int ns_artwork_load_dir(const char *dir, ns_artwork *a, ns_err *err) {
    memset(a, 0, sizeof *a);
    DIR *d = opendir(dir);
    if (!d) return ns_errf(err, "%s: cannot open the artwork directory", dir);
    int cap = 0, rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len < 5 || strcmp(e->d_name + len - 4, ".png") != 0) continue;
        if (len - 4 >= NS_ART_NAME_MAX) {
            rc = ns_errf(err, "%s/%s: brand name too long", dir, e->d_name);
            break;
        }
        if (a->n == cap) {
            cap = cap ? 2 * cap : 64;
            ns_logo_art *p = realloc(a->items, (size_t)cap * sizeof *p);
            if (!p) {
                rc = ns_errf(err, "out of memory");
                break;
            }
            a->items = p;
        }
        ns_logo_art *art = &a->items[a->n];
        memset(art, 0, sizeof *art);
        memcpy(art->name, e->d_name, len - 4);
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ns_image img = {0};
        rc = ns_png_read_file(path, &img, err);
        if (!rc) rc = ns_image_convert(&img, 4, &img, err);
        if (!rc) {
            rc = art_prepare(art, &img, err);
            if (rc) ns_err_prefix(err, "%s", path);
        }
        ns_image_free(&img);
        a->n++; // freed with the rest on failure
    }
    closedir(d);
    if (!rc && a->n == 0) rc = ns_errf(err, "%s: no PNG artwork in the directory", dir);
    if (rc) {
        ns_artwork_free(a);
        return -1;
    }
    qsort(a->items, (size_t)a->n, sizeof *a->items, by_name);
    return 0;
}

int ns_artwork_builtin(int n, ns_artwork *a, ns_err *err) {
    memset(a, 0, sizeof *a);
    if (n < 1 || n > 100000) return ns_errf(err, "built-in brands: 1 to 100000 (%d)", n);
    a->items = calloc((size_t)n, sizeof *a->items);
    if (!a->items) return ns_errf(err, "out of memory");
    // glyph k: the 15 bits of a 5x5 pattern mirrored left-right (3 free columns),
    // drawn from a sequence that skips repeats and near-empty patterns
    ns_rng rng;
    ns_rng_seed(&rng, 0x6c6f676f);
    uint32_t *used = calloc((size_t)n, sizeof *used);
    if (!used) return ns_errf(err, "out of memory");
    int rc = 0;
    for (int k = 0; k < n && !rc; k++) {
        uint32_t bits;
        for (;;) {
            bits = (uint32_t)(ns_rng_next(&rng) & 0x7fff);
            int ones = __builtin_popcount(bits), again = ones < 5 || ones > 12;
            for (int j = 0; j < k && !again; j++) again = used[j] == bits;
            if (!again) break;
        }
        used[k] = bits;
        float rgb[3];
        for (int c = 0; c < 3; c++) rgb[c] = (float)(0.15 + 0.7 * ns_rng_uniform(&rng));
        ns_image img;
        const int cell = 8, side = 5 * cell;
        if (ns_image_alloc(&img, 4, side, side, err) < 0) {
            rc = -1;
            break;
        }
        for (int y = 0; y < side; y++)
            for (int x = 0; x < side; x++) {
                int col = x / cell, row = y / cell, fc = col < 3 ? col : 4 - col;
                int on = (bits >> (row * 3 + fc)) & 1;
                for (int c = 0; c < 3; c++) img.data[((size_t)c * side + y) * side + x] = rgb[c];
                img.data[((size_t)3 * side + y) * side + x] = (float)on;
            }
        snprintf(a->items[k].name, NS_ART_NAME_MAX, "shape-%03d", k);
        rc = art_prepare(&a->items[k], &img, err);
        ns_image_free(&img);
        a->n = k + 1;
    }
    free(used);
    if (rc) ns_artwork_free(a);
    return rc;
}

void ns_artwork_free(ns_artwork *a) {
    for (int i = 0; i < a->n; i++)
        for (int m = 0; m < NS_ART_MIPS; m++) ns_image_free(&a->items[i].mip[m]);
    free(a->items);
    memset(a, 0, sizeof *a);
}

// --- splits ----------------------------------------------------------------------

int ns_synth_split_make(const ns_artwork *a, int nclasses, uint64_t brand_seed, int heldout, ns_synth_split *s,
                        ns_err *err) {
    memset(s, 0, sizeof *s);
    if (nclasses < 1 || nclasses > a->n)
        return ns_errf(err, "%d classes asked for, the artwork has %d brands", nclasses, a->n);
    if (heldout && nclasses >= a->n)
        return ns_errf(err, "a held-out split needs more brands than the %d classes (%d)", nclasses, a->n);
    int64_t *perm = malloc((size_t)a->n * sizeof *perm);
    s->task = malloc((size_t)a->n * sizeof *s->task);
    s->others = malloc((size_t)a->n * sizeof *s->others);
    if (!perm || !s->task || !s->others) {
        free(perm);
        ns_synth_split_free(s);
        return ns_errf(err, "out of memory");
    }
    for (int i = 0; i < a->n; i++) perm[i] = i;
    ns_rng rng;
    ns_rng_seed(&rng, brand_seed);
    ns_rng_shuffle(&rng, perm, a->n);
    int lo = heldout ? nclasses : 0, hi = heldout ? (2 * nclasses < a->n ? 2 * nclasses : a->n) : nclasses;
    for (int i = 0; i < a->n; i++) {
        if (i >= lo && i < hi) s->task[s->ntask++] = (int)perm[i];
        else s->others[s->nothers++] = (int)perm[i];
    }
    // classes in name order, so class indices follow the brand names
    for (int i = 1; i < s->ntask; i++)
        for (int j = i; j > 0 && s->task[j - 1] > s->task[j]; j--) {
            int t = s->task[j];
            s->task[j] = s->task[j - 1];
            s->task[j - 1] = t;
        }
    free(perm);
    return 0;
}

void ns_synth_split_free(ns_synth_split *s) {
    free(s->task);
    free(s->others);
    memset(s, 0, sizeof *s);
}

// --- scenes ----------------------------------------------------------------------

void ns_synth_config_default(ns_synth_config *c) {
    memset(c, 0, sizeof *c);
    c->size = 128;
    c->max_logos = 4;
    c->min_scale = 0.08;
    c->max_scale = 0.5;
    c->max_rotate = 30;
    c->p_recolor = 0.3;
    c->p_occlude = 0.2;
    c->p_blur = 0.2;
    c->p_distractor = 0.3;
}

static float *px(ns_image *img, int c, int y, int x) {
    return img->data + ((size_t)c * img->h + y) * img->w + x;
}

static void random_colour(ns_rng *rng, float rgb[3]) {
    for (int c = 0; c < 3; c++) rgb[c] = (float)ns_rng_uniform(rng);
}

static void fill_gradient(ns_image *img, ns_rng *rng) {
    float a[3], b[3];
    random_colour(rng, a);
    random_colour(rng, b);
    double angle = 2 * M_PI * ns_rng_uniform(rng), dx = cos(angle), dy = sin(angle);
    for (int y = 0; y < img->h; y++)
        for (int x = 0; x < img->w; x++) {
            double t = 0.5 + 0.5 * ((x / (double)img->w - 0.5) * dx + (y / (double)img->h - 0.5) * dy) * 1.41;
            for (int c = 0; c < 3; c++) *px(img, c, y, x) = (float)(a[c] + (b[c] - a[c]) * t);
        }
}

// Value noise: random colours on a coarse grid, bilinearly interpolated.
static void fill_noise(ns_image *img, ns_rng *rng) {
    int g = 2 + (int)ns_rng_below(rng, 7);
    float grid[9][9][3];
    for (int i = 0; i <= g; i++)
        for (int j = 0; j <= g; j++) random_colour(rng, grid[i][j]);
    for (int y = 0; y < img->h; y++)
        for (int x = 0; x < img->w; x++) {
            double fy = y * (double)g / img->h, fx = x * (double)g / img->w;
            int i = (int)fy, j = (int)fx;
            double ty = fy - i, tx = fx - j;
            for (int c = 0; c < 3; c++)
                *px(img, c, y, x) = (float)((1 - ty) * ((1 - tx) * grid[i][j][c] + tx * grid[i][j + 1][c]) +
                                            ty * ((1 - tx) * grid[i + 1][j][c] + tx * grid[i + 1][j + 1][c]));
        }
}

// Stripes or checks of two colours.
static void fill_texture(ns_image *img, ns_rng *rng) {
    float a[3], b[3];
    random_colour(rng, a);
    random_colour(rng, b);
    double period = 4 + 20 * ns_rng_uniform(rng), angle = M_PI * ns_rng_uniform(rng);
    int checks = ns_rng_below(rng, 2) == 0;
    for (int y = 0; y < img->h; y++)
        for (int x = 0; x < img->w; x++) {
            double u = x * cos(angle) + y * sin(angle), v = -x * sin(angle) + y * cos(angle);
            double t = 0.5 + 0.5 * sin(2 * M_PI * u / period);
            if (checks) t = ((int)floor(u / period) + (int)floor(v / period)) & 1;
            for (int c = 0; c < 3; c++) *px(img, c, y, x) = (float)(a[c] + (b[c] - a[c]) * t);
        }
}

// A few tinted dataset images (bright object on dark ground: alpha = value).
static int fill_clutter(ns_image *img, ns_rng *rng, ns_dataset *ds, ns_err *err) {
    fill_gradient(img, rng);
    int count = 2 + (int)ns_rng_below(rng, 4);
    for (int k = 0; k < count; k++) {
        ns_image src, big;
        int64_t i = (int64_t)ns_rng_below(rng, (uint64_t)ns_dataset_size(ds));
        if (ns_dataset_get(ds, i, &src, NULL, err) < 0) return -1;
        int side = (int)(img->w * (0.3 + 0.4 * ns_rng_uniform(rng)));
        int rc = ns_image_convert(&src, 1, &src, err);
        if (!rc) rc = ns_image_resize(&src, side, side, &big, err);
        ns_image_free(&src);
        if (rc) return -1;
        float tint[3];
        random_colour(rng, tint);
        int oy = (int)ns_rng_below(rng, (uint64_t)(img->h - side + 1)), ox = (int)ns_rng_below(rng, (uint64_t)(img->w - side + 1));
        for (int y = 0; y < side; y++)
            for (int x = 0; x < side; x++) {
                float v = big.data[(size_t)y * side + x], al = v > 1 ? 1 : v < 0 ? 0 : v;
                for (int c = 0; c < 3; c++) {
                    float *p = px(img, c, oy + y, ox + x);
                    *p = *p * (1 - al) + tint[c] * v * al;
                }
            }
        ns_image_free(&big);
    }
    return 0;
}

// Bilinear RGBA sample of art at (x, y), transparent outside.
static void sample(const ns_image *art, double x, double y, float out[4]) {
    x -= 0.5;
    y -= 0.5;
    int x0 = (int)floor(x), y0 = (int)floor(y);
    double tx = x - x0, ty = y - y0;
    for (int c = 0; c < 4; c++) out[c] = 0;
    for (int dy = 0; dy < 2; dy++)
        for (int dx = 0; dx < 2; dx++) {
            int xx = x0 + dx, yy = y0 + dy;
            if (xx < 0 || yy < 0 || xx >= art->w || yy >= art->h) continue;
            double wgt = (dx ? tx : 1 - tx) * (dy ? ty : 1 - ty);
            float a = art->data[((size_t)3 * art->h + yy) * art->w + xx];
            for (int c = 0; c < 3; c++) out[c] += (float)(wgt * a * art->data[((size_t)c * art->h + yy) * art->w + xx]);
            out[3] += (float)(wgt * a);
        }
}

// A logo rendered into an RGBA patch (colour premultiplied by alpha).
typedef struct patch {
    ns_image rgba;
    int x, y;        // top-left in the scene
    float box[4];    // tight box of alpha >= 0.5, scene pixels
} patch;

static int render_logo(const ns_logo_art *art, const ns_synth_config *cfg, ns_rng *rng, int recolour, patch *p,
                       ns_err *err) {
    const int S = cfg->size;
    double longest = S * exp(log(cfg->min_scale) + (log(cfg->max_scale) - log(cfg->min_scale)) * ns_rng_uniform(rng));
    int m = 0;
    while (m + 1 < NS_ART_MIPS && (ART_SIDE >> (m + 1)) >= longest) m++;
    const ns_image *src = &art->mip[m];
    double scale = longest / (src->w > src->h ? src->w : src->h);
    double theta = (2 * ns_rng_uniform(rng) - 1) * cfg->max_rotate * M_PI / 180, cs = cos(theta), sn = sin(theta);
    double hw = src->w * scale / 2, hh = src->h * scale / 2;
    double ext_x = fabs(hw * cs) + fabs(hh * sn), ext_y = fabs(hw * sn) + fabs(hh * cs);
    int pw = (int)ceil(2 * ext_x) + 2, ph = (int)ceil(2 * ext_y) + 2;
    if (pw > S) pw = S;
    if (ph > S) ph = S;
    if (ns_image_alloc(&p->rgba, 4, ph, pw, err) < 0) return -1;
    float tint[3];
    random_colour(rng, tint);
    for (int y = 0; y < ph; y++)
        for (int x = 0; x < pw; x++) {
            double dx = x + 0.5 - pw / 2.0, dy = y + 0.5 - ph / 2.0;
            double u = (cs * dx + sn * dy) / scale + src->w / 2.0, v = (-sn * dx + cs * dy) / scale + src->h / 2.0;
            float s[4];
            sample(src, u, v, s);
            for (int c = 0; c < 3; c++) {
                float col = recolour ? tint[c] * s[3] * (0.6f + 0.4f * (s[0] + s[1] + s[2]) / 3) : s[c];
                *px(&p->rgba, c, y, x) = col;
            }
            *px(&p->rgba, 3, y, x) = s[3];
        }
    return 0;
}

// 3x3 box blur of every channel of the patch.
static int blur_patch(patch *p, ns_err *err) {
    ns_image out;
    if (ns_image_alloc(&out, 4, p->rgba.h, p->rgba.w, err) < 0) return -1;
    for (int c = 0; c < 4; c++)
        for (int y = 0; y < out.h; y++)
            for (int x = 0; x < out.w; x++) {
                float s = 0;
                for (int dy = -1; dy <= 1; dy++)
                    for (int dx = -1; dx <= 1; dx++) {
                        int yy = y + dy, xx = x + dx;
                        if (yy >= 0 && xx >= 0 && yy < out.h && xx < out.w) s += *px(&p->rgba, c, yy, xx);
                    }
                *px(&out, c, y, x) = s / 9;
            }
    ns_image_free(&p->rgba);
    p->rgba = out;
    return 0;
}

// Tight box of alpha >= 0.5 in patch pixels; 0 when nothing is.
static int patch_box(const patch *p, float box[4]) {
    int x0 = p->rgba.w, y0 = p->rgba.h, x1 = -1, y1 = -1;
    for (int y = 0; y < p->rgba.h; y++)
        for (int x = 0; x < p->rgba.w; x++)
            if (p->rgba.data[((size_t)3 * p->rgba.h + y) * p->rgba.w + x] >= ALPHA_IN_BOX) {
                if (x < x0) x0 = x;
                if (x > x1) x1 = x;
                if (y < y0) y0 = y;
                if (y > y1) y1 = y;
            }
    if (x1 < 0) return 0;
    box[0] = (float)x0;
    box[1] = (float)y0;
    box[2] = (float)(x1 + 1);
    box[3] = (float)(y1 + 1);
    return 1;
}

static void composite(ns_image *img, const patch *p) {
    for (int y = 0; y < p->rgba.h; y++)
        for (int x = 0; x < p->rgba.w; x++) {
            float a = p->rgba.data[((size_t)3 * p->rgba.h + y) * p->rgba.w + x];
            if (a <= 0) continue;
            for (int c = 0; c < 3; c++) {
                float *q = px(img, c, p->y + y, p->x + x);
                *q = *q * (1 - a) + *px((ns_image *)&p->rgba, c, y, x);
            }
        }
}

// Covers 10..35% of a box with a flat rectangle from one of its corners.
static void occlude(ns_image *img, const float box[4], ns_rng *rng) {
    double frac = 0.1 + 0.25 * ns_rng_uniform(rng), aspect = 0.5 + ns_rng_uniform(rng);
    double bw = box[2] - box[0], bh = box[3] - box[1];
    double ow = fmin(bw, bw * sqrt(frac * aspect)), oh = fmin(bh, bw * bh * frac / fmax(ow, 1e-6));
    int right = ns_rng_below(rng, 2), bottom = ns_rng_below(rng, 2);
    int x0 = (int)(right ? box[2] - ow : box[0]), y0 = (int)(bottom ? box[3] - oh : box[1]);
    int x1 = (int)(x0 + ow), y1 = (int)(y0 + oh);
    float rgb[3];
    random_colour(rng, rgb);
    for (int y = y0 < 0 ? 0 : y0; y < y1 && y < img->h; y++)
        for (int x = x0 < 0 ? 0 : x0; x < x1 && x < img->w; x++)
            for (int c = 0; c < 3; c++) *px(img, c, y, x) = rgb[c];
}

static double overlap_of_smaller(const float a[4], const float b[4]) {
    double iw = fmin(a[2], b[2]) - fmax(a[0], b[0]), ih = fmin(a[3], b[3]) - fmax(a[1], b[1]);
    if (iw <= 0 || ih <= 0) return 0;
    double sa = (a[2] - a[0]) * (a[3] - a[1]), sb = (b[2] - b[0]) * (b[3] - b[1]);
    return iw * ih / fmin(sa, sb);
}

// Renders and places one logo; *placed 0 when no free spot was found.
static int paste_logo(ns_image *img, const ns_logo_art *art, const ns_synth_config *cfg, ns_rng *rng,
                      const ns_det_box *taken, int ntaken, float box[4], int *placed, ns_err *err) {
    *placed = 0;
    for (int tries = 0; tries < PLACE_TRIES && !*placed; tries++) {
        patch p = {0};
        if (render_logo(art, cfg, rng, ns_rng_uniform(rng) < cfg->p_recolor, &p, err) < 0) return -1;
        if (ns_rng_uniform(rng) < cfg->p_blur && blur_patch(&p, err) < 0) {
            ns_image_free(&p.rgba);
            return -1;
        }
        float b[4];
        if (patch_box(&p, b) && b[2] - b[0] >= 3 && b[3] - b[1] >= 3) {
            p.x = (int)ns_rng_below(rng, (uint64_t)(cfg->size - p.rgba.w + 1));
            p.y = (int)ns_rng_below(rng, (uint64_t)(cfg->size - p.rgba.h + 1));
            float sb[4] = {b[0] + p.x, b[1] + p.y, b[2] + p.x, b[3] + p.y};
            int free_spot = 1;
            for (int k = 0; k < ntaken && free_spot; k++) {
                float t[4] = {taken[k].x0, taken[k].y0, taken[k].x1, taken[k].y1};
                free_spot = overlap_of_smaller(sb, t) < 0.3;
            }
            if (free_spot) {
                composite(img, &p);
                memcpy(box, sb, sizeof sb);
                *placed = 1;
            }
        }
        ns_image_free(&p.rgba);
    }
    return 0;
}

int ns_synth_scene(const ns_artwork *a, const ns_synth_split *s, const ns_synth_config *cfg, int64_t index,
                   ns_image *img, ns_det_box *boxes, int *nboxes, ns_err *err) {
    *nboxes = 0;
    if (s->ntask < 1) return ns_errf(err, "no task classes");
    if (cfg->size < 16 || cfg->max_logos < 1 || !(cfg->min_scale > 0) || !(cfg->max_scale >= cfg->min_scale) ||
        cfg->max_scale > 1)
        return ns_errf(err, "bad scene settings (size %d, logos %d, scale %g..%g)", cfg->size, cfg->max_logos,
                       cfg->min_scale, cfg->max_scale);
    ns_rng rng;
    ns_rng_seed_stream(&rng, cfg->seed, cfg->stream, (uint64_t)index);
    if (ns_image_alloc(img, 3, cfg->size, cfg->size, err) < 0) return -1;
    int kind = (int)ns_rng_below(&rng, cfg->clutter ? 4 : 3), rc = 0;
    if (kind == 0) fill_gradient(img, &rng);
    else if (kind == 1) fill_noise(img, &rng);
    else if (kind == 2) fill_texture(img, &rng);
    else rc = fill_clutter(img, &rng, cfg->clutter, err);
    // distractors first, so task logos may cover them but never the reverse
    if (!rc && s->nothers > 0 && ns_rng_uniform(&rng) < cfg->p_distractor) {
        int count = 1 + (int)ns_rng_below(&rng, 2);
        for (int k = 0; k < count && !rc; k++) {
            float box[4];
            int placed;
            const ns_logo_art *art = &a->items[s->others[ns_rng_below(&rng, (uint64_t)s->nothers)]];
            rc = paste_logo(img, art, cfg, &rng, NULL, 0, box, &placed, err);
        }
    }
    int want = 1 + (int)ns_rng_below(&rng, (uint64_t)cfg->max_logos);
    for (int k = 0; k < want * 3 && *nboxes < want && !rc; k++) {
        int cls = (int)ns_rng_below(&rng, (uint64_t)s->ntask), placed;
        float box[4];
        rc = paste_logo(img, &a->items[s->task[cls]], cfg, &rng, boxes, *nboxes, box, &placed, err);
        if (rc || !placed) continue;
        if (ns_rng_uniform(&rng) < cfg->p_occlude) occlude(img, box, &rng);
        boxes[(*nboxes)++] = (ns_det_box){box[0], box[1], box[2], box[3], 1.0f, cls};
    }
    if (!rc && *nboxes == 0) rc = ns_errf(err, "scene %lld: no logo fitted (scale too large?)", (long long)index);
    if (!rc) { // mild sensor noise, then clamp
        double sigma = 0.02 * ns_rng_uniform(&rng);
        for (size_t i = 0; i < (size_t)3 * img->h * img->w; i++) {
            float v = img->data[i] + (float)(sigma * ns_rng_normal(&rng));
            img->data[i] = v < 0 ? 0 : v > 1 ? 1 : v;
        }
    }
    if (rc) ns_image_free(img);
    return rc;
}
