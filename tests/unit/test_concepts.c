// test_concepts.c: attribute tables (good and broken), pixel statistics of
// hand-made images, quantile thresholds and the concepts they give, captions.
// sanitize: yes
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cav/concepts.h"

static char path[] = "/tmp/test_concepts_XXXXXX";

static void write_file(const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void test_attr_table(void) {
    ns_err err;
    ns_attr_table t;
    write_file("# a comment\nclass\tfootwear\tlong\nSandal\t1\t0\n\nDress\t0\t1\r\nBag\t0\t0\n");
    int rc = ns_attr_table_load(&t, path, &err);
    CHECK(rc == 0 && t.nattrs == 2 && t.nclasses == 3, "table: 2 attributes, 3 classes (%s)", rc ? err.msg : "ok");
    if (rc == 0) {
        CHECK(strcmp(t.attrs[1], "long") == 0 && strcmp(t.classes[1], "Dress") == 0 && t.values[1 * 2 + 1] == 1 &&
                  t.values[0] == 1 && t.values[2 * 2] == 0,
              "names and values");
        char *labels[3] = {"Bag", "Sandal", "Dress"};
        uint8_t rows[6];
        CHECK(ns_attr_table_for_labels(&t, labels, 3, rows, &err) == 0 && rows[0] == 0 && rows[1] == 0 && rows[2] == 1 &&
                  rows[5] == 1,
              "rows in the stream's class order");
        char *missing[3] = {"Bag", "Sandal", "Coat"};
        CHECK(ns_attr_table_for_labels(&t, missing, 3, rows, &err) < 0 && strstr(err.msg, "'Coat'"),
              "a stream class not in the table: %s", err.msg);
        CHECK(ns_attr_table_for_labels(&t, labels, 2, rows, &err) < 0 && strstr(err.msg, "'Dress'"),
              "a table class not in the stream: %s", err.msg);
        ns_attr_table_free(&t);
    }
    struct {
        const char *text, *want;
    } bad[] = {
        {"klass\ta\nX\t1\n", "must start with 'class'"},
        {"class\nX\n", "names no attribute"},
        {"class\ta\ta\nX\t1\t0\n", "given twice"},
        {"class\ta\tb\nX\t1\n", "line 2: 2 fields"},
        {"class\ta\nX\t2\n", "not 0 or 1"},
        {"class\ta\nX\t1\nX\t0\n", "class 'X' given twice"},
        {"class\ta\n", "no class rows"},
        {"", "empty"},
        {"class\ta\n\t1\n", "empty class name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(bad[i].text);
        rc = ns_attr_table_load(&t, path, &err);
        CHECK(rc < 0 && strstr(err.msg, bad[i].want), "bad table %zu: %s", i, rc < 0 ? err.msg : "accepted");
    }
    CHECK(ns_attr_table_load(&t, "/nonexistent/table.tsv", &err) < 0 && strstr(err.msg, "cannot open"), "missing file: %s",
          err.msg);
}

// The table as cav-fit reads it (these checks were test_probe's, for the
// second reader cav_io.c had, whose messages said "path:3:" where this one
// says "path line 3:", as concept-bank always did): names, values, errors.
static void test_attr_table_for_cav_fit(void) {
    ns_err err;
    ns_attr_table a;
    write_file("class\tround\tred\nball\t1\t0\napple\t1\t1\n");
    int rc = ns_attr_table_load(&a, path, &err);
    CHECK(rc == 0 && a.nclasses == 2 && a.nattrs == 2 && strcmp(a.attrs[1], "red") == 0 &&
              strcmp(a.classes[1], "apple") == 0 && a.values[1 * 2 + 1] == 1 && a.values[0 * 2 + 1] == 0,
          "attribute table read");
    if (rc == 0) ns_attr_table_free(&a);
    write_file("class\tround\tred\nball\t1\t0\napple\t1\n");
    CHECK(ns_attr_table_load(&a, path, &err) < 0 && strstr(err.msg, "line 3: 2 fields, the header has 3"),
          "a short row: %s", err.msg);
    write_file("class\tround\nball\tyes\n");
    CHECK(ns_attr_table_load(&a, path, &err) < 0 && strstr(err.msg, "'yes', not 0 or 1"), "a bad value: %s", err.msg);
    // every message starts with the path and line
    write_file("class\tround\nball\t1\nball\t0\n");
    char want[64];
    snprintf(want, sizeof want, "%s line 3: ", path);
    CHECK(ns_attr_table_load(&a, path, &err) < 0 && strncmp(err.msg, want, strlen(want)) == 0,
          "errors start with the path and line (%s)", err.msg);
}

static void test_pixel_stats(void) {
    // 5x5, a 3x3 block of 1.0 with a centre of 0.6: area 9/25, mean (8 + 0.6)/9,
    // one interior pixel (the centre) with |4*1 - 4*0.6| = 1.6
    float img[25] = {0};
    for (int y = 1; y < 4; y++)
        for (int x = 1; x < 4; x++) img[y * 5 + x] = 1;
    img[12] = 0.6f;
    double s[NS_STAT_COUNT];
    ns_pixel_stats(s, img, 1, 5, 5, 0.05);
    CHECK(fabs(s[NS_STAT_AREA] - 9.0 / 25) < 1e-12, "area %g", s[NS_STAT_AREA]);
    CHECK(fabs(s[NS_STAT_INTENSITY] - 8.6 / 9) < 1e-6, "intensity %g", s[NS_STAT_INTENSITY]);
    CHECK(fabs(s[NS_STAT_TEXTURE] - 1.6) < 1e-6, "texture %g", s[NS_STAT_TEXTURE]);
    // a uniform block has no texture; two channels average
    float two[2 * 25] = {0};
    for (int y = 1; y < 4; y++)
        for (int x = 1; x < 4; x++) two[y * 5 + x] = 0.2f, two[25 + y * 5 + x] = 0.6f;
    ns_pixel_stats(s, two, 2, 5, 5, 0.05);
    CHECK(fabs(s[NS_STAT_INTENSITY] - 0.4) < 1e-6 && s[NS_STAT_TEXTURE] == 0, "2 channels: intensity %g, texture %g",
          s[NS_STAT_INTENSITY], s[NS_STAT_TEXTURE]);
    float empty[25] = {0};
    ns_pixel_stats(s, empty, 1, 5, 5, 0.05);
    CHECK(s[0] == 0 && s[1] == 0 && s[2] == 0, "an empty image: all zero");
}

static void test_thresholds(void) {
    ns_err err;
    double stats[10 * NS_STAT_COUNT];
    for (int i = 0; i < 10; i++)
        for (int s = 0; s < NS_STAT_COUNT; s++) stats[i * NS_STAT_COUNT + s] = s == 2 ? 9 - i : i;
    ns_thresholds th;
    CHECK(ns_thresholds_fit(&th, stats, 10, 0.3, &err) == 0, "fit");
    // numpy.quantile(range(10), [0.3, 0.7]) = 2.7, 6.3
    CHECK(fabs(th.low[0] - 2.7) < 1e-12 && fabs(th.high[0] - 6.3) < 1e-12 && fabs(th.low[2] - 2.7) < 1e-12,
          "quantiles 2.7 and 6.3 (%g, %g)", th.low[0], th.high[0]);
    uint8_t c[NS_PIXEL_CONCEPTS];
    double bright_plain_mid[3] = {7, 1, 4};
    ns_pixel_concepts(c, bright_plain_mid, &th);
    CHECK(c[0] == 1 && c[1] == 0 && c[2] == 0 && c[3] == 1 && c[4] == 2 && c[5] == 2,
          "bright, not dark, not patterned, plain, size unknown (%d %d %d %d %d %d)", c[0], c[1], c[2], c[3], c[4], c[5]);
    int counts[3] = {0, 0, 0};
    for (int i = 0; i < 10; i++) {
        ns_pixel_concepts(c, stats + i * NS_STAT_COUNT, &th);
        counts[c[0]]++;
    }
    CHECK(counts[1] == 3 && counts[0] == 3 && counts[2] == 4, "top 3, bottom 3, middle 4 of 10 (%d %d %d)", counts[1],
          counts[0], counts[2]);
    CHECK(ns_thresholds_fit(&th, stats, 10, 0.6, &err) < 0 && strstr(err.msg, "0.6"), "quantile 0.6 refused: %s", err.msg);
    CHECK(ns_thresholds_fit(&th, stats, 10, 0.5, &err) == 0 && th.low[0] == th.high[0], "q 0.5: one cut at the median");
    ns_pixel_concepts(c, bright_plain_mid, &th);
    CHECK(c[0] == 1 && c[2] == 0 && c[4] == 0, "q 0.5: nothing unknown");
}

static void test_captions(void) {
    char *names[5] = {"footwear", "upper-body", "bright", "dark", "patterned"};
    char *kinds[5] = {"class", "class", "pixel", "pixel", "pixel"};
    uint8_t values[5] = {1, 0, 1, 0, 2};
    ns_rng rng;
    char buf[256], again[256], phrase[64];
    ns_concept_phrase(phrase, sizeof phrase, "has-sleeves");
    CHECK(strcmp(phrase, "has sleeves") == 0, "phrase: %s", phrase);
    int all_ok = 1;
    for (int seed = 0; seed < 20; seed++) {
        ns_rng_seed(&rng, (uint64_t)seed);
        ns_caption_make(buf, sizeof buf, "Sneaker", values, names, kinds, 5, 0.0, &rng);
        ns_rng_seed(&rng, (uint64_t)seed);
        ns_caption_make(again, sizeof again, "Sneaker", values, names, kinds, 5, 0.0, &rng);
        all_ok &= strcmp(buf, again) == 0 && strstr(buf, "Sneaker") && strstr(buf, "footwear") && strstr(buf, "bright") &&
                  !strstr(buf, "upper") && !strstr(buf, "dark") && !strstr(buf, "patterned") && !strstr(buf, "  ");
    }
    CHECK(all_ok, "no dropout: the class and exactly the concepts with value 1, seeded (%s)", buf);
    int dropped = 0, kept = 0;
    for (int seed = 0; seed < 400; seed++) {
        ns_rng_seed(&rng, (uint64_t)seed);
        ns_caption_make(buf, sizeof buf, "Sneaker", values, names, kinds, 5, 0.5, &rng);
        if (strstr(buf, "footwear")) kept++;
        else dropped++;
    }
    CHECK(kept > 150 && dropped > 150, "dropout 0.5 drops a word about half the time (%d of 400 kept)", kept);
    ns_rng_seed(&rng, 1);
    ns_caption_make(buf, 16, "Sneaker", values, names, kinds, 5, 0.0, &rng);
    CHECK(strlen(buf) < 16, "a short buffer truncates (%s)", buf);
}

int main(void) {
    int fd = mkstemp(path);
    close(fd);
    test_attr_table();
    test_attr_table_for_cav_fit();
    test_pixel_stats();
    test_thresholds();
    test_captions();
    unlink(path);
    return check_done();
}
