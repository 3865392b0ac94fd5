// test_detect.c: unit tests for lib/detect: the boxes record (round trip and
// hostile records: boxes outside the image, no area, unknown classes, counts
// that do not add up, NaN), VOC and COCO AP on hand-computed cases, scene
// synthesis (determinism, tight boxes, bad artwork) and box drawing.
// Shapes: boxes (B, 4) f32 pixels; images (C, H, W).
// sanitize: yes
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "detect/boxes.h"
#include "detect/draw.h"
#include "detect/eval.h"
#include "base/jsonparse.h"
#include "detect/synth.h"

#define NEAR(a, b) (fabs((a) - (b)) < 1e-6)

// Writes a boxes record with the given meta pieces into a memory stream and
// reads it back through ns_det_boxes_read. Returns its result.
static int roundtrip_raw(int64_t nb, const float *xyxy, const int64_t *counts, size_t ncounts,
                         const int64_t *classes, size_t nclasses_given, int64_t h, int64_t w, int64_t nclasses,
                         ns_det_boxes *out, ns_err *err) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ns_writer wr;
    ns_writer_init(&wr, f);
    ns_tensor t;
    int64_t shape[2] = {nb, 4};
    ns_tensor_alloc(&t, NS_F32, 2, shape, err);
    memcpy(t.data, xyxy, (size_t)nb * 4 * sizeof(float));
    ns_map meta;
    ns_map_init(&meta);
    int64_t size[2] = {h, w}, ids[16];
    for (int i = 0; i < 16; i++) ids[i] = i;
    ns_map_i64s(&meta, "image.size", size, 2);
    ns_map_i64s(&meta, "ids", ids, ncounts);
    ns_map_i64s(&meta, "counts", counts, ncounts);
    ns_map_i64s(&meta, "classes", classes, nclasses_given);
    ns_write_record(&wr, NS_DET_KIND, "boxes", &t, NULL, &meta, err);
    ns_map_free(&meta);
    ns_tensor_free(&t);
    ns_writer_free(&wr);
    fclose(f);
    char path[] = "/tmp/test_detect_XXXXXX";
    int fd = mkstemp(path);
    if (write(fd, buf, len) != (ssize_t)len) return -2;
    close(fd);
    free(buf);
    ns_reader *r = ns_reader_open(path, err);
    ns_record rec;
    int rc = ns_reader_next(r, &rec, err) == 1 ? ns_det_boxes_read(&rec, nclasses, out, err) : -2;
    ns_reader_close(r);
    unlink(path);
    return rc;
}

static void test_records(void) {
    ns_err err;
    ns_det_boxes b;
    const float good[8] = {1, 2, 10, 12, 0, 0, 32, 24};
    const int64_t counts[2] = {1, 1}, classes[2] = {0, 2};
    int rc = roundtrip_raw(2, good, counts, 2, classes, 2, 24, 32, 3, &b, &err);
    CHECK(rc == 0 && b.n == 2 && b.total == 2 && b.offsets[1] == 1 && b.classes[1] == 2 && b.xyxy[6] == 32 &&
              b.h == 24 && b.w == 32 && !b.scores,
          "a valid boxes record reads back (%s)", rc ? err.msg : "");
    if (rc == 0) ns_det_boxes_free(&b);

    const float outside[4] = {1, 2, 40, 12};
    rc = roundtrip_raw(1, outside, counts, 1, classes, 1, 24, 32, 3, &b, &err);
    CHECK(rc == -1 && strstr(err.msg, "outside"), "a box outside the image fails (%s)", err.msg);
    const float negative[4] = {10, 2, 5, 12};
    rc = roundtrip_raw(1, negative, counts, 1, classes, 1, 24, 32, 3, &b, &err);
    CHECK(rc == -1 && strstr(err.msg, "no area"), "a box with x1 < x0 fails (%s)", err.msg);
    const float flat[4] = {5, 2, 5, 12};
    rc = roundtrip_raw(1, flat, counts, 1, classes, 1, 24, 32, 3, &b, &err);
    CHECK(rc == -1 && strstr(err.msg, "no area"), "a box of width 0 fails (%s)", err.msg);
    const float nan_box[4] = {NAN, 2, 5, 12};
    rc = roundtrip_raw(1, nan_box, counts, 1, classes, 1, 24, 32, 3, &b, &err);
    CHECK(rc == -1 && strstr(err.msg, "finite"), "a NaN coordinate fails (%s)", err.msg);
    const float neg_origin[4] = {-1, 2, 5, 12};
    rc = roundtrip_raw(1, neg_origin, counts, 1, classes, 1, 24, 32, 3, &b, &err);
    CHECK(rc == -1 && strstr(err.msg, "outside"), "a box left of the image fails (%s)", err.msg);
    rc = roundtrip_raw(2, good, counts, 2, classes, 2, 24, 32, 2, &b, &err);
    CHECK(rc == -1 && strstr(err.msg, "unknown class 2"), "a class beyond general.labels fails (%s)", err.msg);
    const int64_t neg_class[2] = {0, -1};
    rc = roundtrip_raw(2, good, counts, 2, neg_class, 2, 24, 32, 0, &b, &err);
    CHECK(rc == -1 && strstr(err.msg, "unknown class -1"), "a negative class fails (%s)", err.msg);
    const int64_t too_many[2] = {2, 1}, too_few[2] = {1, 0}, negative_count[2] = {-1, 3};
    rc = roundtrip_raw(2, good, too_many, 2, classes, 2, 24, 32, 3, &b, &err);
    CHECK(rc == -1 && strstr(err.msg, "more than"), "counts adding up to more than the boxes fail (%s)", err.msg);
    rc = roundtrip_raw(2, good, too_few, 2, classes, 2, 24, 32, 3, &b, &err);
    CHECK(rc == -1 && strstr(err.msg, "add up to 1"), "counts adding up to fewer fail (%s)", err.msg);
    rc = roundtrip_raw(2, good, negative_count, 2, classes, 2, 24, 32, 3, &b, &err);
    CHECK(rc == -1 && strstr(err.msg, "negative"), "a negative count fails (%s)", err.msg);
    rc = roundtrip_raw(2, good, counts, 2, classes, 1, 24, 32, 3, &b, &err);
    CHECK(rc == -1 && strstr(err.msg, "classes"), "fewer classes than boxes fail (%s)", err.msg);
}

// Builds a set: one image per entry of nper, boxes in order.
static void make_set(ns_det_set *s, int nimg, const int *nper, const ns_det_box *boxes) {
    ns_err err;
    memset(s, 0, sizeof *s);
    for (int i = 0, k = 0; i < nimg; k += nper[i], i++) ns_det_set_add_image(s, i, 100, 200, boxes + k, nper[i], &err);
    ns_det_set_index(s, &err);
}

static void test_ap_curves(void) {
    // TP, FP, TP of 2: precision 1, .5, .667 at recall .5, .5, 1
    const double prec[3] = {1, 0.5, 2.0 / 3}, rec[3] = {0.5, 0.5, 1};
    CHECK(NEAR(ns_det_ap_all_points(prec, rec, 3), 0.5 + 0.5 * 2 / 3.0), "all-point AP by hand (%g)",
          ns_det_ap_all_points(prec, rec, 3));
    CHECK(NEAR(ns_det_ap_voc11(prec, rec, 3), (6 + 5 * 2 / 3.0) / 11), "11-point AP by hand (%g)",
          ns_det_ap_voc11(prec, rec, 3));
    ns_det_box a = {0, 0, 10, 10, 1, 0}, b = {5, 0, 15, 10, 1, 0};
    CHECK(NEAR(ns_det_iou(&a, &b), 50.0 / 150), "IoU of half-overlapping squares is 1/3");
}

static void test_eval(void) {
    ns_err err;
    ns_det_class_ap ap[3];
    ns_det_summary sum;
    // ground truth: image 0 has class 0 at two places, image 1 a class-1 box
    const ns_det_box gtb[3] = {{10, 10, 50, 50, 1, 0}, {100, 10, 140, 50, 1, 0}, {0, 0, 150, 100, 1, 1}};
    const int gtn[2] = {2, 1};
    ns_det_set gt;
    make_set(&gt, 2, gtn, gtb);

    ns_det_set dt;
    const ns_det_box perfect[3] = {{10, 10, 50, 50, 0.9f, 0}, {100, 10, 140, 50, 0.8f, 0}, {0, 0, 150, 100, 0.7f, 1}};
    make_set(&dt, 2, gtn, perfect);
    int rc = ns_det_evaluate(&gt, &dt, 3, 100, ap, &sum, &err);
    CHECK(rc == 0 && NEAR(sum.map_voc11, 1) && NEAR(sum.map_voc_all, 1) && NEAR(sum.map_coco, 1) &&
              NEAR(sum.map50, 1) && NEAR(sum.map75, 1) && sum.nclasses_scored == 2,
          "perfect detections: every mAP is 1 (%g %g %g)", sum.map_voc11, sum.map_voc_all, sum.map_coco);
    CHECK(isnan(ap[2].voc_all) && isnan(ap[2].coco), "a class with neither truth nor detections has no AP");
    CHECK(NEAR(sum.map_medium, 1) && NEAR(sum.map_large, 1) && isnan(sum.map_small),
          "areas: 40x40 boxes are medium, 150x100 large, no small (%g %g %g)", sum.map_small, sum.map_medium,
          sum.map_large);
    ns_det_set_free(&dt);

    // a duplicate between two true positives: TP, FP, TP
    const ns_det_box dup[3] = {{10, 10, 50, 50, 0.9f, 0}, {10, 10, 50, 50, 0.8f, 0}, {100, 10, 140, 50, 0.7f, 0}};
    const int dupn[2] = {3, 0};
    make_set(&dt, 2, dupn, dup);
    rc = ns_det_evaluate(&gt, &dt, 3, 100, ap, &sum, &err);
    CHECK(rc == 0 && ap[0].tp50 == 2 && NEAR(ap[0].voc_all, 0.5 + 0.5 * 2 / 3.0) &&
              NEAR(ap[0].voc11, (6 + 5 * 2 / 3.0) / 11) && NEAR(ap[0].coco, (51 + 50 * 2 / 3.0) / 101),
          "a duplicate is a false positive (all-point %g, 11-point %g, COCO %g)", ap[0].voc_all, ap[0].voc11,
          ap[0].coco);
    CHECK(NEAR(ap[1].voc_all, 0) && NEAR(sum.map_voc_all, (0.5 + 0.5 * 2 / 3.0) / 2),
          "a missed class scores 0 and counts in the mean (%g)", sum.map_voc_all);
    ns_det_set_free(&dt);

    // one of two found: recall .5 at precision 1
    const ns_det_box half[1] = {{100, 10, 140, 50, 0.5f, 0}};
    const int halfn[2] = {1, 0};
    make_set(&dt, 2, halfn, half);
    ns_det_evaluate(&gt, &dt, 3, 100, ap, &sum, &err);
    CHECK(NEAR(ap[0].voc_all, 0.5) && NEAR(ap[0].voc11, 6 / 11.0) && NEAR(ap[0].coco, 51 / 101.0),
          "a miss halves recall (%g, %g, %g)", ap[0].voc_all, ap[0].voc11, ap[0].coco);
    ns_det_set_free(&dt);

    // detections of a class with no ground truth: no AP, excluded from the means
    const ns_det_box stray[2] = {{10, 10, 50, 50, 0.9f, 0}, {10, 10, 50, 50, 0.95f, 2}};
    const int strayn[2] = {2, 0};
    make_set(&dt, 2, strayn, stray);
    ns_det_evaluate(&gt, &dt, 3, 100, ap, &sum, &err);
    CHECK(ap[2].ndet == 1 && ap[2].ngt == 0 && isnan(ap[2].voc_all) && sum.nclasses_scored == 2 &&
              NEAR(sum.map_voc_all, (0.5 + 0) / 2),
          "a class with detections but no truth has no AP and is left out (%g)", sum.map_voc_all);
    ns_det_set_free(&dt);

    // IoU exactly 0.5: VOC needs more, COCO accepts it at .50 only
    const ns_det_box edge[2] = {{10, 10, 50, 90, 0.9f, 0}};
    const int edgen[2] = {1, 0};
    make_set(&dt, 2, edgen, edge);
    ns_det_evaluate(&gt, &dt, 3, 100, ap, &sum, &err);
    CHECK(NEAR(ap[0].voc_all, 0) && NEAR(ap[0].ap50, 51 / 101.0) && NEAR(ap[0].ap75, 0) &&
              NEAR(ap[0].coco, 51 / 101.0 / 10),
          "IoU 0.5: a miss for VOC (> 0.5), a hit for COCO (>= 0.5) (%g, %g)", ap[0].voc_all, ap[0].ap50);
    ns_det_set_free(&dt);

    // COCO keeps max_dets per image: the true positive ranked third is dropped
    const ns_det_box many[3] = {{60, 60, 90, 90, 0.9f, 0}, {150, 60, 190, 90, 0.8f, 0}, {10, 10, 50, 50, 0.7f, 0}};
    const int manyn[2] = {3, 0};
    make_set(&dt, 2, manyn, many);
    ns_det_evaluate(&gt, &dt, 3, 2, ap, &sum, &err);
    CHECK(NEAR(ap[0].coco, 0) && ap[0].voc_all > 0, "max_dets drops the third detection for COCO only");
    ns_det_set_free(&dt);

    // detections for an image the ground truth lacks
    const ns_det_box one[1] = {{1, 1, 5, 5, 0.5f, 0}};
    const int onen[3] = {0, 0, 1};
    make_set(&dt, 3, onen, one);
    rc = ns_det_evaluate(&gt, &dt, 3, 100, ap, &sum, &err);
    CHECK(rc == -1 && strstr(err.msg, "image 2"), "detections for an unknown image fail (%s)", err.msg);
    ns_det_set_free(&dt);
    ns_det_set_free(&gt);
}

static void test_synth(void) {
    ns_err err;
    ns_artwork art;
    int rc = ns_artwork_builtin(12, &art, &err);
    CHECK(rc == 0 && art.n == 12 && strcmp(art.items[3].name, "shape-003") == 0, "built-in artwork");
    ns_synth_split sp, held;
    rc = ns_synth_split_make(&art, 5, 1, 0, &sp, &err);
    int rc2 = ns_synth_split_make(&art, 5, 1, 1, &held, &err);
    int disjoint = rc == 0 && rc2 == 0 && sp.ntask == 5 && held.ntask == 5 && sp.nothers == 7;
    for (int i = 0; disjoint && i < 5; i++)
        for (int j = 0; j < 5; j++) disjoint &= sp.task[i] != held.task[j];
    CHECK(disjoint, "the held-out split's brands are not the task's");
    ns_synth_config cfg;
    ns_synth_config_default(&cfg);
    cfg.size = 64;
    ns_image a, b;
    ns_det_box ba[4], bb[4];
    int na, nb, inside = 1;
    ns_synth_scene(&art, &sp, &cfg, 7, &a, ba, &na, &err);
    ns_synth_scene(&art, &sp, &cfg, 7, &b, bb, &nb, &err);
    int same = na == nb && na >= 1;
    for (int k = 0; same && k < na; k++)
        same = ba[k].x0 == bb[k].x0 && ba[k].y0 == bb[k].y0 && ba[k].x1 == bb[k].x1 && ba[k].y1 == bb[k].y1 &&
               ba[k].cls == bb[k].cls;
    CHECK(same &&
              memcmp(a.data, b.data, (size_t)3 * 64 * 64 * sizeof(float)) == 0,
          "the same scene twice is identical");
    ns_image_free(&b);
    cfg.stream = 1;
    ns_synth_scene(&art, &sp, &cfg, 7, &b, bb, &nb, &err);
    CHECK(memcmp(a.data, b.data, (size_t)3 * 64 * 64 * sizeof(float)) != 0, "another split draws another scene");
    ns_image_free(&a);
    ns_image_free(&b);
    for (int64_t i = 0; i < 50; i++) {
        ns_synth_scene(&art, &sp, &cfg, i, &a, ba, &na, &err);
        for (int k = 0; k < na; k++) {
            float q[4] = {ba[k].x0, ba[k].y0, ba[k].x1, ba[k].y1};
            inside &= ns_det_box_check(q, ba[k].cls, 64, 64, 5, &err) == 0;
        }
        ns_image_free(&a);
    }
    CHECK(inside, "50 scenes: every box is valid and inside the image");
    // a plain square logo, no rotation, no blur or colour change: the box is the square
    ns_synth_config plain = cfg;
    plain.max_rotate = 0;
    plain.p_blur = plain.p_recolor = plain.p_occlude = plain.p_distractor = 0;
    plain.max_logos = 1;
    plain.min_scale = plain.max_scale = 0.5;
    ns_artwork sq = {calloc(1, sizeof(ns_logo_art)), 1};
    ns_image s;
    ns_image_alloc(&s, 4, 16, 16, &err);
    for (size_t i = 0; i < (size_t)4 * 256; i++) s.data[i] = 1;
    for (int m = 0; m < NS_ART_MIPS; m++) ns_image_resize(&s, 128 >> m, 128 >> m, &sq.items[0].mip[m], &err);
    ns_image_free(&s);
    ns_synth_split one;
    ns_synth_split_make(&sq, 1, 1, 0, &one, &err);
    ns_synth_scene(&sq, &one, &plain, 0, &a, ba, &na, &err);
    CHECK(na == 1 && NEAR(ba[0].x1 - ba[0].x0, 32) && NEAR(ba[0].y1 - ba[0].y0, 32),
          "a 32-pixel square logo gets a 32x32 box (%gx%g)", (double)(ba[0].x1 - ba[0].x0),
          (double)(ba[0].y1 - ba[0].y0));
    // the pixel at the box centre is the logo's colour (white), the one outside is not all white
    int cx = (int)(ba[0].x0 + ba[0].x1) / 2, cy = (int)(ba[0].y0 + ba[0].y1) / 2;
    CHECK(a.data[(size_t)cy * 64 + cx] > 0.9f, "the logo is pasted where its box is");
    ns_image_free(&a);
    ns_synth_split_free(&one);
    ns_artwork_free(&sq);
    ns_synth_split_free(&sp);
    ns_synth_split_free(&held);
    rc = ns_synth_split_make(&art, 12, 1, 1, &held, &err);
    CHECK(rc == -1 && strstr(err.msg, "held-out"), "held-out needs spare brands (%s)", err.msg);
    ns_artwork_free(&art);

    // bad artwork directories
    char dir[] = "/tmp/test_detect_art_XXXXXX";
    mkdtemp(dir);
    rc = ns_artwork_load_dir(dir, &art, &err);
    CHECK(rc == -1 && strstr(err.msg, "no PNG"), "an empty artwork directory fails (%s)", err.msg);
    char path[256];
    snprintf(path, sizeof path, "%s/bad.png", dir);
    FILE *f = fopen(path, "wb");
    fputs("\x89PNG\r\n\x1a\nnot really", f);
    fclose(f);
    rc = ns_artwork_load_dir(dir, &art, &err);
    CHECK(rc == -1 && strstr(err.msg, "bad.png"), "a corrupt PNG fails naming the file (%s)", err.msg);
    unlink(path);
    snprintf(path, sizeof path, "%s/clear.png", dir);
    ns_image_alloc(&s, 4, 8, 8, &err); // all transparent
    ns_png_write_file(path, &s, &err);
    ns_image_free(&s);
    rc = ns_artwork_load_dir(dir, &art, &err);
    CHECK(rc == -1 && strstr(err.msg, "no visible pixel") && strstr(err.msg, "clear.png"),
          "an invisible logo fails (%s)", err.msg);
    unlink(path);
    rmdir(dir);
    rc = ns_artwork_load_dir("/nonexistent/art", &art, &err);
    CHECK(rc == -1, "a missing artwork directory fails (%s)", err.msg);
}

static void test_draw(void) {
    ns_err err;
    ns_image img;
    ns_image_alloc(&img, 1, 40, 60, &err);
    ns_det_boxes b;
    ns_det_boxes_alloc(&b, 1, 1, 0, &err);
    b.h = 40;
    b.w = 60;
    b.offsets[1] = 1;
    const float q[4] = {10, 20, 30, 35};
    memcpy(b.xyxy, q, sizeof q);
    b.classes[0] = 0;
    int rc = ns_det_draw_image(&img, &b, 0, NULL, 0, &err);
    float rgb[3];
    ns_det_class_colour(0, rgb);
    CHECK(rc == 0 && img.c == 3 && img.data[(size_t)34 * 60 + 29] == rgb[0] &&
              img.data[(size_t)(2 * 40 + 27) * 60 + 10] == rgb[2] && img.data[(size_t)27 * 60 + 20] == 0,
          "the outline is drawn in the class colour and the inside is untouched");
    ns_image_free(&img);
    ns_image_alloc(&img, 3, 30, 60, &err);
    rc = ns_det_draw_image(&img, &b, 0, NULL, 0, &err);
    CHECK(rc == -1 && strstr(err.msg, "60x30"), "boxes for another image size fail (%s)", err.msg);
    ns_image_free(&img);
    ns_det_boxes_free(&b);
}

static void test_json(void) {
    ns_err err;
    ns_jvalue v;
    const char *ok = " {\"a\": [1, -2.5e1, true, null], \"s\": \"x\\u00e9\\ud83d\\ude00\\n\"} ";
    int rc = ns_json_parse(ok, strlen(ok), &v, &err);
    const ns_jvalue *a = ns_json_get(&v, "a"), *str = ns_json_get(&v, "s");
    CHECK(rc == 0 && a && a->n == 4 && a->items[1].num == -25 && a->items[2].type == NS_JBOOL &&
              a->items[3].type == NS_JNULL && str && strcmp(str->str, "x\xc3\xa9\xf0\x9f\x98\x80\n") == 0,
          "JSON: objects, arrays, numbers, literals, escapes and surrogate pairs (%s)", rc ? err.msg : "");
    if (rc == 0) ns_json_free(&v);
    const char *bad[] = {"{\"a\": 1", "[1, 2", "\"abc", "{\"a\" 1}", "[1,]", "\"\\x\"", "\"\\u12\"", "01x",
                         "[1] 2", "", "{1: 2}", "\"a\\"};
    int all_fail = 1;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rc = ns_json_parse(bad[i], strlen(bad[i]), &v, &err);
        if (rc == 0) {
            all_fail = 0;
            ns_json_free(&v);
            printf("# parsed: %s\n", bad[i]);
        }
    }
    CHECK(all_fail, "JSON: truncated and malformed texts fail");
    char deep[300];
    memset(deep, '[', sizeof deep);
    rc = ns_json_parse(deep, sizeof deep, &v, &err);
    CHECK(rc == -1 && strstr(err.msg, "nested too deeply"), "JSON: nesting is capped (%s)", err.msg);
}

int main(void) {
    test_json();
    test_records();
    test_ap_curves();
    test_eval();
    test_synth();
    test_draw();
    return check_done();
}
