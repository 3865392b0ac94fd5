// fuzz_png.c: libFuzzer target for the PNG decoder (lib/stream/image.c). Decodes the
// input; when that succeeds, encodes the image and decodes it again, which must
// give back the same shape. Build and run from the repo root:
//   clang -g -O1 -fsanitize=fuzzer,address,undefined -Ilib -I/usr/include/libpng16 fuzz/fuzz_png.c lib/stream/image.c lib/base/err.c -lpng16 -lm -o /tmp/fuzz_png && /tmp/fuzz_png -max_total_time=30
#include <stdint.h>
#include <stdlib.h>

#include "stream/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ns_image img = {0}, back = {0};
    ns_err err = {{0}};
    if (ns_png_decode(data, size, &img, &err) != 0) {
        if (err.msg[0] == '\0' || img.data) abort(); // a failure must say why, own nothing
        return 0;
    }
    void *buf = NULL;
    size_t len = 0;
    if (ns_png_encode(&img, &buf, &len, &err) != 0) abort();
    if (ns_png_decode(buf, len, &back, &err) != 0) abort();
    if (back.c != img.c || back.h != img.h || back.w != img.w) abort();
    free(buf);
    ns_image_free(&back);
    ns_image_free(&img);
    return 0;
}
