// fuzz_archive.c: libFuzzer target for opening datasets from bytes (lib/stream/dataset.c,
// lib/stream/idx.c, through libarchive): tar/zip/... archives, IDX files, plain or
// compressed. Opens the input with ns_dataset_open_memory and decodes every
// sample with ns_dataset_get; a failure must say why, and what opens must be
// self-consistent (labels in range, names present). Build and run from the
// repo root (seed it with a few small tar, tar.gz, zip and IDX files):
//   clang-14 -g -O1 -fsanitize=fuzzer,address,undefined -Ilib $(pkg-config --cflags libarchive libpng) fuzz/fuzz_archive.c lib/stream/dataset.c lib/stream/idx.c lib/stream/image.c lib/base/err.c -larchive -lpng16 -lm -o /tmp/fuzz_archive && /tmp/fuzz_archive -max_total_time=30 -artifact_prefix=/tmp/ CORPUS_DIR
#include <stdint.h>
#include <stdlib.h>

#include "stream/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init;
    if (!init) { // far below libFuzzer's 2 GB RSS limit, however the input inflates
        ns_dataset_set_max_bytes((uint64_t)64 << 20);
        init = 1;
    }
    ns_err err = {{0}};
    ns_dataset *ds = ns_dataset_open_memory(data, size, &err);
    if (!ds) {
        if (err.msg[0] == '\0') abort(); // a failure must say why
        return 0;
    }
    int k = ns_dataset_num_classes(ds);
    for (int c = 0; c < k; c++)
        if (!ns_dataset_class_name(ds, c)) abort();
    for (int64_t i = 0; i < ns_dataset_size(ds); i++) {
        ns_image img;
        int label = -2;
        err.msg[0] = '\0';
        if (!ns_dataset_sample_name(ds, i)) abort();
        if (ns_dataset_get(ds, i, &img, &label, &err) != 0) {
            if (err.msg[0] == '\0' || img.data) abort();
            continue;
        }
        if (label < -1 || label >= k || (label == -1 && k > 0)) abort();
        if (img.c < 1 || img.h < 1 || img.w < 1 || !img.data) abort();
        ns_image_free(&img);
    }
    ns_dataset_close(ds);
    return 0;
}
