// draw.c: box outlines and labels on RGB images (draw.h), with a 3x5 pixel
// font. Shapes: images (3, H, W) floats in [0, 1].
#include "detect/draw.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define GLYPH_W 3
#define GLYPH_H 5

// Each glyph: 5 rows of 3 pixels, top row first, '1' = ink.
static const struct { char c; const char *rows; } font[] = {
    {'0', "111101101101111"}, {'1', "010110010010111"}, {'2', "111001111100111"}, {'3', "111001111001111"},
    {'4', "101101111001001"}, {'5', "111100111001111"}, {'6', "111100111101111"}, {'7', "111001001001001"},
    {'8', "111101111101111"}, {'9', "111101111001111"}, {'A', "010101111101101"}, {'B', "110101110101110"},
    {'C', "011100100100011"}, {'D', "110101101101110"}, {'E', "111100110100111"}, {'F', "111100110100100"},
    {'G', "011100101101011"}, {'H', "101101111101101"}, {'I', "111010010010111"}, {'J', "001001001101010"},
    {'K', "101101110101101"}, {'L', "100100100100111"}, {'M', "101111111101101"}, {'N', "110101101101101"},
    {'O', "010101101101010"}, {'P', "110101110100100"}, {'Q', "010101101110011"}, {'R', "110101110101101"},
    {'S', "011100010001110"}, {'T', "111010010010010"}, {'U', "101101101101111"}, {'V', "101101101101010"},
    {'W', "101101111111101"}, {'X', "101101010101101"}, {'Y', "101101010010010"}, {'Z', "111001010100111"},
    {'-', "000000111000000"}, {'.', "000000000000010"}, {'_', "000000000000111"}, {':', "000010000010000"},
    {'/', "001001010100100"}, {' ', "000000000000000"}, {'?', "111001011000010"},
};

static const char *glyph(char c) {
    c = (char)toupper((unsigned char)c);
    for (size_t i = 0; i < sizeof font / sizeof font[0]; i++)
        if (font[i].c == c) return font[i].rows;
    return glyph('?');
}

void ns_det_class_colour(int64_t k, float rgb[3]) {
    static const float palette[10][3] = {
        {0.90f, 0.10f, 0.10f}, {0.10f, 0.70f, 0.20f}, {0.15f, 0.35f, 0.95f}, {0.95f, 0.75f, 0.05f},
        {0.80f, 0.20f, 0.85f}, {0.05f, 0.80f, 0.85f}, {1.00f, 0.50f, 0.05f}, {0.55f, 0.85f, 0.10f},
        {0.95f, 0.40f, 0.60f}, {0.50f, 0.30f, 0.10f},
    };
    memcpy(rgb, palette[(k < 0 ? -k : k) % 10], 3 * sizeof(float));
}

static void put(ns_image *img, int x, int y, const float rgb[3]) {
    if (x < 0 || y < 0 || x >= img->w || y >= img->h) return;
    for (int c = 0; c < 3; c++) img->data[((size_t)c * img->h + y) * img->w + x] = rgb[c];
}

void ns_det_draw_text(ns_image *img, int x, int y, const char *text, const float rgb[3]) {
    for (; *text; text++, x += GLYPH_W + 1) {
        const char *g = glyph(*text);
        for (int r = 0; r < GLYPH_H; r++)
            for (int q = 0; q < GLYPH_W; q++)
                if (g[r * GLYPH_W + q] == '1') put(img, x + q, y + r, rgb);
    }
}

void ns_det_draw_box(ns_image *img, const float q[4], int64_t cls, float score, char *const *labels,
                     size_t nlabels) {
    float rgb[3];
    ns_det_class_colour(cls, rgb);
    int x0 = (int)floorf(q[0]), y0 = (int)floorf(q[1]), x1 = (int)ceilf(q[2]) - 1, y1 = (int)ceilf(q[3]) - 1;
    for (int x = x0; x <= x1; x++) put(img, x, y0, rgb), put(img, x, y1, rgb);
    for (int y = y0; y <= y1; y++) put(img, x0, y, rgb), put(img, x1, y, rgb);
    char text[64];
    if (cls >= 0 && (size_t)cls < nlabels) snprintf(text, sizeof text, "%.20s", labels[cls]);
    else snprintf(text, sizeof text, "%lld", (long long)cls);
    if (score >= 0) {
        size_t len = strlen(text);
        snprintf(text + len, sizeof text - len, " %.2f", (double)score);
    }
    int tw = (int)strlen(text) * (GLYPH_W + 1) + 1, ty = y0 - GLYPH_H - 2 >= 0 ? y0 - GLYPH_H - 2 : y0 + 1;
    for (int y = ty; y < ty + GLYPH_H + 2; y++)
        for (int x = x0; x < x0 + tw; x++) put(img, x, y, rgb);
    const float ink[3] = {1, 1, 1}, dark[3] = {0, 0, 0};
    ns_det_draw_text(img, x0 + 1, ty + 1, text, rgb[0] + rgb[1] + rgb[2] > 1.8f ? dark : ink);
}

int ns_det_draw_image(ns_image *img, const ns_det_boxes *b, int64_t j, char *const *labels, size_t nlabels,
                      ns_err *err) {
    if (j < 0 || j >= b->n) return ns_errf(err, "no image %lld among the %lld boxed", (long long)j, (long long)b->n);
    if (img->h != b->h || img->w != b->w)
        return ns_errf(err, "image of %dx%d, boxes for %lldx%lld", img->w, img->h, (long long)b->w, (long long)b->h);
    if (img->c != 3 && ns_image_convert(img, 3, img, err) < 0) return -1;
    for (int64_t k = b->offsets[j]; k < b->offsets[j + 1]; k++)
        ns_det_draw_box(img, b->xyxy + 4 * k, b->classes[k], b->scores ? b->scores[k] : -1.0f, labels, nlabels);
    return 0;
}
