// fuzz_tns.c: libFuzzer target for the TNS stream reader. The input is a
// stream; every record is read, copied into a tensor and its metadata walked,
// as tools do. Built and run by fuzz/run.sh (`make fuzz`).
#include "fuzz_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd;
    ns_reader *r = fuzz_reader(data, size, &fd);
    if (!r) return 0;
    ns_err err;
    ns_reader_require_unique_names(r, size % 2);
    ns_record rec;
    while (ns_reader_next(r, &rec, &err) == 1) {
        ns_tensor t;
        if (rec.has_data && ns_record_tensor_f32(&rec, &t, &err) == 0) ns_tensor_free(&t);
        char **strs;
        size_t n;
        if (ns_obj_strs(rec.meta, "general.labels", &strs, &n, &err) == 1) ns_strings_free(strs, n);
        int64_t ids[16];
        ns_obj_i64s(rec.meta, "labels", ids, 16, &n, &err);
    }
    ns_reader_close(r);
    close(fd);
    return 0;
}
