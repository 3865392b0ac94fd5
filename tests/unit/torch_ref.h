// torch_ref.h: PyTorch reference streams for the engine tests
// (test_engine.c, test_transformer_ref.c; written by tests/ref/gen_*_ref.py):
// reading one whole (load_refs, ref_get "<case>/<what>", free_refs) and the
// error measure against a reference tensor (ref_err: relative, floored at the
// reference's RMS value; see test_engine.c). Static state and functions:
// include it in one file of a test program.
#ifndef NS_TEST_TORCH_REF_H
#define NS_TEST_TORCH_REF_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/tensor.h"
#include "stream/tns.h"

// Relative error, each entry measured against its own size plus the
// reference's RMS value (test_engine.c explains why).
static double ref_err(const float *got, const float *want, int64_t n, double *max_abs) {
    double ss = 0, worst = 0, mabs = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)want[i] * want[i];
    double floor = fmax(sqrt(ss / (double)n), 1e-12);
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double rel = d / (fabs((double)want[i]) + floor);
        if (!(d <= mabs)) mabs = d;    // NaN sticks
        if (!(rel <= worst)) worst = rel;
    }
    if (max_abs) *max_abs = mabs;
    return worst;
}

// ----------------------------------------------------------------------------
// the reference stream, read whole

typedef struct ref {
    char name[NS_NAME_MAX + 1];
    ns_tensor t; // f32 (f16 and i32 records converted)
} ref;

static ref *refs;
static int nrefs;

static int load_refs(const char *path, ns_err *err) {
    ns_reader *rd = ns_reader_open(path, err);
    if (!rd) return -1;
    ns_record rec;
    int got, cap = 0;
    while ((got = ns_reader_next(rd, &rec, err)) == 1) {
        if (nrefs == cap) {
            cap = cap ? 2 * cap : 256;
            ref *grown = realloc(refs, (size_t)cap * sizeof *refs);
            if (!grown) {
                got = ns_errf(err, "out of memory");
                break;
            }
            refs = grown;
        }
        ref *r = &refs[nrefs];
        memset(r, 0, sizeof *r);
        snprintf(r->name, sizeof r->name, "%s", rec.name);
        if (ns_record_tensor_f32(&rec, &r->t, err) < 0) {
            got = -1;
            break;
        }
        nrefs++;
    }
    ns_reader_close(rd);
    return got;
}

static void free_refs(void) {
    for (int i = 0; i < nrefs; i++) ns_tensor_free(&refs[i].t);
    free(refs);
    refs = NULL;
    nrefs = 0;
}

// "<case>/<what>", or NULL
static const ns_tensor *ref_get(const char *cname, const char *what) {
    char name[NS_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s/%s", cname, what);
    for (int i = 0; i < nrefs; i++)
        if (strcmp(refs[i].name, name) == 0) return &refs[i].t;
    return NULL;
}

#endif
