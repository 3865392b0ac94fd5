// convert.c: YOLO txt and COCO JSON import and export (convert.h), and
// ns_det_set written back as a detection stream. Shapes: ns_det_set images
// and boxes; YOLO rows (class, cx, cy, w, h[, score]) normalised.
#include "detect/convert.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/json.h"
#include "base/jsonparse.h"

// --- YOLO ------------------------------------------------------------------------

static int write_file(const char *path, const char *text, size_t len, ns_err *err) {
    FILE *f = fopen(path, "wb");
    if (!f) return ns_errf(err, "%s: %s", path, strerror(errno));
    int bad = fwrite(text, 1, len, f) != len;
    bad |= fclose(f) != 0;
    return bad ? ns_errf(err, "%s: write error", path) : 0;
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[4400];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    closedir(d);
    rmdir(dir);
}

int ns_det_write_yolo(const ns_det_set *s, const char *dir, ns_err *err) {
    struct stat st;
    if (stat(dir, &st) == 0) return ns_errf(err, "%s exists already", dir);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmpXXXXXX", dir);
    if (!mkdtemp(tmp)) return ns_errf(err, "%s: cannot create a directory beside it (%s)", dir, strerror(errno));
    int rc = 0;
    char path[4200];
    char *text = NULL;
    size_t len = 0;
    if (s->nlabels) {
        FILE *f = open_memstream(&text, &len);
        for (size_t k = 0; f && k < s->nlabels; k++) fprintf(f, "%s\n", s->labels[k]);
        if (f) fclose(f);
        snprintf(path, sizeof path, "%s/classes.txt", tmp);
        rc = text ? write_file(path, text, len, err) : ns_errf(err, "out of memory");
        free(text);
    }
    for (int64_t i = 0; !rc && i < s->nimages; i++) {
        const ns_det_image *im = &s->images[i];
        text = NULL;
        FILE *f = open_memstream(&text, &len);
        if (!f) {
            rc = ns_errf(err, "out of memory");
            break;
        }
        for (int64_t j = im->first; j < im->first + im->count; j++) {
            const ns_det_box *b = &s->boxes[j];
            fprintf(f, "%lld %.6f %.6f %.6f %.6f", (long long)b->cls, (b->x0 + b->x1) / 2.0 / im->w,
                    (b->y0 + b->y1) / 2.0 / im->h, (double)(b->x1 - b->x0) / im->w, (double)(b->y1 - b->y0) / im->h);
            if (s->has_scores) fprintf(f, " %.6f", (double)b->score);
            fputc('\n', f);
        }
        fclose(f);
        snprintf(path, sizeof path, "%s/%06lld.txt", tmp, (long long)im->id);
        rc = write_file(path, text ? text : "", text ? len : 0, err);
        free(text);
    }
    if (!rc && rename(tmp, dir) != 0) rc = ns_errf(err, "%s: cannot rename into place (%s)", dir, strerror(errno));
    if (rc) remove_tree(tmp);
    return rc;
}

// Width and height from a PNG's IHDR; 0 when path is not a PNG.
static int png_size(const char *path, int64_t *h, int64_t *w) {
    unsigned char b[24];
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    if (n < 24 || memcmp(b, "\x89PNG\r\n\x1a\n", 8) != 0 || memcmp(b + 12, "IHDR", 4) != 0) return 0;
    *w = (int64_t)b[16] << 24 | b[17] << 16 | b[18] << 8 | b[19];
    *h = (int64_t)b[20] << 24 | b[21] << 16 | b[22] << 8 | b[23];
    return *w > 0 && *h > 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int read_lines(const char *path, char ***lines, size_t *n, ns_err *err) {
    FILE *f = fopen(path, "r");
    *lines = NULL;
    *n = 0;
    if (!f) return ns_errf(err, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0, slots = 0;
    ssize_t len;
    int rc = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (*n == slots) {
            slots = slots ? 2 * slots : 16;
            char **p = realloc(*lines, slots * sizeof *p);
            if (!p) {
                rc = ns_errf(err, "out of memory");
                break;
            }
            *lines = p;
        }
        if (!((*lines)[(*n)++] = strdup(line))) {
            rc = ns_errf(err, "out of memory");
            break;
        }
    }
    free(line);
    fclose(f);
    return rc;
}

int ns_det_read_yolo(const char *dir, int64_t h, int64_t w, ns_det_set *s, ns_err *err) {
    memset(s, 0, sizeof *s);
    DIR *d = opendir(dir);
    if (!d) return ns_errf(err, "%s: cannot open the directory", dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int rc = 0, numeric = 1;
    while (!rc && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len < 5 || strcmp(e->d_name + len - 4, ".txt") || !strcmp(e->d_name, "classes.txt"))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **p = realloc(names, cap * sizeof *p);
            if (!p) {
                rc = ns_errf(err, "out of memory");
                break;
            }
            names = p;
        }
        if (!(names[n++] = strndup(e->d_name, len - 4))) rc = ns_errf(err, "out of memory");
        else numeric &= strspn(names[n - 1], "0123456789") == len - 4 && len - 4 < 18;
    }
    closedir(d);
    if (!rc && n == 0) rc = ns_errf(err, "%s: no YOLO label files (NAME.txt)", dir);
    if (!rc) qsort(names, n, sizeof *names, cmp_str);
    char path[4200];
    snprintf(path, sizeof path, "%s/classes.txt", dir);
    if (!rc && access(path, F_OK) == 0) rc = read_lines(path, &s->labels, &s->nlabels, err);
    ns_det_box *boxes = NULL;
    size_t bcap = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        int64_t ih = h, iw = w;
        snprintf(path, sizeof path, "%s/%s.png", dir, names[i]);
        if (!png_size(path, &ih, &iw) && (h <= 0 || w <= 0)) {
            rc = ns_errf(err, "%s/%s.txt: no %s.png beside it to give the image size (use --size)", dir, names[i],
                         names[i]);
            break;
        }
        snprintf(path, sizeof path, "%s/%s.txt", dir, names[i]);
        char **lines;
        size_t nl;
        if ((rc = read_lines(path, &lines, &nl, err)) < 0) break;
        if (nl > bcap) {
            bcap = nl;
            ns_det_box *p = realloc(boxes, bcap * sizeof *p);
            if (!p) rc = ns_errf(err, "out of memory");
            else boxes = p;
        }
        size_t nb = 0;
        for (size_t k = 0; !rc && k < nl; k++) {
            double v[6];
            long long cls;
            char extra;
            int got = sscanf(lines[k], "%lld %lf %lf %lf %lf %lf %c", &cls, &v[0], &v[1], &v[2], &v[3], &v[4], &extra);
            if (lines[k][strspn(lines[k], " \t")] == 0) continue; // blank line
            if (got != 5 && got != 6) {
                rc = ns_errf(err, "%s:%zu: not \"class cx cy w h [score]\"", path, k + 1);
                break;
            }
            ns_det_box b = {(float)((v[0] - v[2] / 2) * iw), (float)((v[1] - v[3] / 2) * ih),
                            (float)((v[0] + v[2] / 2) * iw), (float)((v[1] + v[3] / 2) * ih),
                            got == 6 ? (float)v[4] : 1.0f, cls};
            // rounding of the normalised text may step a hair outside: clamp that only
            if (b.x0 < 0 && b.x0 > -0.01f * iw) b.x0 = 0;
            if (b.y0 < 0 && b.y0 > -0.01f * ih) b.y0 = 0;
            if (b.x1 > iw && b.x1 < 1.01f * iw) b.x1 = (float)iw;
            if (b.y1 > ih && b.y1 < 1.01f * ih) b.y1 = (float)ih;
            float q[4] = {b.x0, b.y0, b.x1, b.y1};
            if (ns_det_box_check(q, b.cls, ih, iw, (int64_t)s->nlabels, err) < 0) {
                rc = ns_err_prefix(err, "%s:%zu", path, k + 1);
                break;
            }
            if (got == 6) s->has_scores = 1;
            boxes[nb++] = b;
        }
        ns_strings_free(lines, nl);
        if (!rc) rc = ns_det_set_add_image(s, numeric ? atoll(names[i]) : (int64_t)i, ih, iw, boxes, (int64_t)nb, err);
    }
    free(boxes);
    ns_strings_free(names, n);
    if (!rc) rc = ns_det_set_index(s, err);
    if (rc) ns_det_set_free(s);
    return rc;
}

// --- COCO --------------------------------------------------------------------------

int ns_det_write_coco(const ns_det_set *s, FILE *f, ns_err *err) {
    fputs("{\"images\": [", f);
    for (int64_t i = 0; i < s->nimages; i++)
        fprintf(f, "%s\n  {\"id\": %lld, \"width\": %lld, \"height\": %lld, \"file_name\": \"%06lld.png\"}",
                i ? "," : "", (long long)s->images[i].id, (long long)s->images[i].w, (long long)s->images[i].h,
                (long long)s->images[i].id);
    fputs("],\n\"annotations\": [", f);
    int64_t ann = 0;
    for (int64_t i = 0; i < s->nimages; i++)
        for (int64_t j = s->images[i].first; j < s->images[i].first + s->images[i].count; j++) {
            const ns_det_box *b = &s->boxes[j];
            double bw = (double)b->x1 - b->x0, bh = (double)b->y1 - b->y0;
            fprintf(f, "%s\n  {\"id\": %lld, \"image_id\": %lld, \"category_id\": %lld, \"bbox\": [", ann ? "," : "",
                    (long long)ann + 1, (long long)s->images[i].id, (long long)b->cls);
            ns_json_number(f, b->x0);
            fputs(", ", f);
            ns_json_number(f, b->y0);
            fputs(", ", f);
            ns_json_number(f, bw);
            fputs(", ", f);
            ns_json_number(f, bh);
            fputs("], \"area\": ", f);
            ns_json_number(f, bw * bh);
            fputs(", \"iscrowd\": 0", f);
            if (s->has_scores) {
                fputs(", \"score\": ", f);
                ns_json_number(f, b->score);
            }
            fputc('}', f);
            ann++;
        }
    fputs("],\n\"categories\": [", f);
    int64_t k = (int64_t)s->nlabels;
    for (int64_t j = 0; j < s->nboxes; j++)
        if (s->boxes[j].cls + 1 > k) k = s->boxes[j].cls + 1;
    for (int64_t c = 0; c < k; c++) {
        fprintf(f, "%s\n  {\"id\": %lld, \"name\": ", c ? "," : "", (long long)c);
        char num[32];
        snprintf(num, sizeof num, "%lld", (long long)c);
        const char *name = (size_t)c < s->nlabels ? s->labels[c] : num;
        ns_json_string(f, name, strlen(name));
        fputc('}', f);
    }
    fputs("]}\n", f);
    return ferror(f) ? ns_errf(err, "write error") : 0;
}

static int json_num(const ns_jvalue *obj, const char *key, double *out) {
    const ns_jvalue *v = ns_json_get(obj, key);
    if (!v || v->type != NS_JNUM || !isfinite(v->num)) return -1;
    *out = v->num;
    return 0;
}

typedef struct cat_ref { double id; size_t pos; } cat_ref;
static int by_cat_id(const void *a, const void *b) {
    double x = ((const cat_ref *)a)->id, y = ((const cat_ref *)b)->id;
    return (x > y) - (x < y);
}

// Reads the COCO tree into s.
static int coco_tree(const ns_jvalue *root, ns_det_set *s, ns_err *err) {
    const ns_jvalue *images = ns_json_get(root, "images"), *anns = ns_json_get(root, "annotations"),
                    *cats = ns_json_get(root, "categories");
    if (!images || images->type != NS_JARR) return ns_errf(err, "no \"images\" array");
    if (!anns || anns->type != NS_JARR) return ns_errf(err, "no \"annotations\" array");
    if (!cats || cats->type != NS_JARR) return ns_errf(err, "no \"categories\" array");
    cat_ref *cr = malloc((cats->n + 1) * sizeof *cr);
    if (!cr) return ns_errf(err, "out of memory");
    s->labels = calloc(cats->n + 1, sizeof *s->labels);
    if (!s->labels) return free(cr), ns_errf(err, "out of memory");
    for (size_t c = 0; c < cats->n; c++) {
        const ns_jvalue *name = ns_json_get(&cats->items[c], "name");
        if (json_num(&cats->items[c], "id", &cr[c].id) < 0 || !name || name->type != NS_JSTR)
            return free(cr), ns_errf(err, "category %zu: needs a numeric id and a name", c);
        cr[c].pos = c;
    }
    qsort(cr, cats->n, sizeof *cr, by_cat_id);
    for (size_t c = 0; c < cats->n; c++) {
        if (c && cr[c].id == cr[c - 1].id) {
            double id = cr[c].id;
            free(cr);
            return ns_errf(err, "category id %g appears twice", id);
        }
        if (!(s->labels[c] = strdup(ns_json_get(&cats->items[cr[c].pos], "name")->str)))
            return free(cr), ns_errf(err, "out of memory");
        s->nlabels = c + 1;
    }
    int rc = 0;
    for (size_t i = 0; !rc && i < images->n; i++) {
        double id, w, h;
        if (json_num(&images->items[i], "id", &id) < 0 || json_num(&images->items[i], "width", &w) < 0 ||
            json_num(&images->items[i], "height", &h) < 0 || w < 1 || h < 1 || w > 1e6 || h > 1e6 ||
            id != floor(id))
            rc = ns_errf(err, "image %zu: needs an integer id, a width and a height", i);
        else rc = ns_det_set_add_image(s, (int64_t)id, (int64_t)h, (int64_t)w, NULL, 0, err);
    }
    if (!rc) rc = ns_det_set_index(s, err);
    // annotations: gathered per image, then laid out image by image
    int64_t *owner = malloc((anns->n + 1) * sizeof *owner);
    ns_det_box *all = malloc((anns->n + 1) * sizeof *all);
    if (!rc && (!owner || !all)) rc = ns_errf(err, "out of memory");
    for (size_t a = 0; !rc && a < anns->n; a++) {
        const ns_jvalue *an = &anns->items[a], *bbox = ns_json_get(an, "bbox");
        double img, cat, score = 1;
        if (json_num(an, "image_id", &img) < 0 || json_num(an, "category_id", &cat) < 0 || !bbox ||
            bbox->type != NS_JARR || bbox->n != 4) {
            rc = ns_errf(err, "annotation %zu: needs image_id, category_id and bbox [x, y, w, h]", a);
            break;
        }
        double q[4];
        for (int k = 0; k < 4 && !rc; k++)
            if (bbox->items[k].type != NS_JNUM) rc = ns_errf(err, "annotation %zu: bbox is not 4 numbers", a);
            else q[k] = bbox->items[k].num;
        if (rc) break;
        if (ns_json_get(an, "score") && json_num(an, "score", &score) < 0) {
            rc = ns_errf(err, "annotation %zu: score is not a number", a);
            break;
        }
        s->has_scores |= ns_json_get(an, "score") != NULL;
        int64_t im = img == floor(img) ? ns_det_set_find(s, (int64_t)img) : -1;
        if (im < 0) {
            rc = ns_errf(err, "annotation %zu: unknown image_id %g", a, img);
            break;
        }
        cat_ref key = {cat, 0}, *hit = bsearch(&key, cr, cats->n, sizeof *cr, by_cat_id);
        if (!hit) {
            rc = ns_errf(err, "annotation %zu: unknown category_id %g", a, cat);
            break;
        }
        all[a] = (ns_det_box){(float)q[0], (float)q[1], (float)(q[0] + q[2]), (float)(q[1] + q[3]), (float)score,
                              (int64_t)(hit - cr)};
        float xyxy[4] = {all[a].x0, all[a].y0, all[a].x1, all[a].y1};
        if (ns_det_box_check(xyxy, all[a].cls, s->images[im].h, s->images[im].w, (int64_t)s->nlabels, err) < 0) {
            rc = ns_err_prefix(err, "annotation %zu", a);
            break;
        }
        owner[a] = im;
        s->images[im].count++;
    }
    if (!rc) { // counting sort by image
        int64_t at = 0;
        for (int64_t i = 0; i < s->nimages; i++) {
            s->images[i].first = at;
            at += s->images[i].count;
            s->images[i].count = 0;
        }
        free(s->boxes);
        s->boxes = malloc(((size_t)at + 1) * sizeof *s->boxes);
        s->cap_boxes = at + 1;
        if (!s->boxes) rc = ns_errf(err, "out of memory");
        for (size_t a = 0; !rc && a < anns->n; a++) {
            ns_det_image *im = &s->images[owner[a]];
            s->boxes[im->first + im->count++] = all[a];
        }
        s->nboxes = at;
    }
    free(owner);
    free(all);
    free(cr);
    return rc;
}

int ns_det_read_coco(const char *path, ns_det_set *s, ns_err *err) {
    memset(s, 0, sizeof *s);
    FILE *f = fopen(path, "rb");
    if (!f) return ns_errf(err, "%s: %s", path, strerror(errno));
    char *text = NULL;
    size_t len = 0, cap = 0, got;
    char chunk[65536];
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + got > cap) {
            cap = (len + got) * 2;
            char *p = realloc(text, cap);
            if (!p) {
                free(text);
                fclose(f);
                return ns_errf(err, "%s: out of memory", path);
            }
            text = p;
        }
        memcpy(text + len, chunk, got);
        len += got;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(text);
        return ns_errf(err, "%s: read error", path);
    }
    ns_jvalue root;
    int rc = ns_json_parse(text ? text : "", len, &root, err);
    free(text);
    if (rc == 0) {
        rc = root.type == NS_JOBJ ? coco_tree(&root, s, err) : ns_errf(err, "not a JSON object");
        ns_json_free(&root);
    }
    if (rc) {
        ns_det_set_free(s);
        return ns_err_prefix(err, "%s", path);
    }
    return 0;
}

// --- back to a stream ------------------------------------------------------------------

int ns_det_set_write(ns_writer *w, const ns_det_set *s, int batch, ns_err *err) {
    if (s->nlabels) {
        ns_map meta;
        ns_map_init(&meta);
        ns_map_strs(&meta, "general.labels", (const char *const *)s->labels, s->nlabels);
        int rc = ns_write_meta(w, "", &meta, err);
        ns_map_free(&meta);
        if (rc < 0) return -1;
    }
    for (int64_t i = 0; i < s->nimages;) {
        int64_t n = 1, total = s->images[i].count;
        while (i + n < s->nimages && n < batch && s->images[i + n].h == s->images[i].h &&
               s->images[i + n].w == s->images[i].w)
            total += s->images[i + n++].count;
        ns_det_boxes b;
        if (ns_det_boxes_alloc(&b, n, total, s->has_scores, err) < 0) return -1;
        b.h = s->images[i].h;
        b.w = s->images[i].w;
        int64_t at = 0;
        for (int64_t k = 0; k < n; k++) {
            const ns_det_image *im = &s->images[i + k];
            b.ids[k] = im->id;
            for (int64_t j = im->first; j < im->first + im->count; j++, at++) {
                const ns_det_box *x = &s->boxes[j];
                float q[4] = {x->x0, x->y0, x->x1, x->y1};
                memcpy(b.xyxy + 4 * at, q, sizeof q);
                b.classes[at] = x->cls;
                if (b.scores) b.scores[at] = x->score;
            }
            b.offsets[k + 1] = at;
        }
        int rc = ns_det_boxes_validate(&b, (int64_t)s->nlabels, err) < 0 || ns_det_boxes_write(w, "boxes", &b, err) < 0;
        ns_det_boxes_free(&b);
        if (rc) return -1;
        i += n;
    }
    return 0;
}
