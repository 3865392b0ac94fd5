// test_centernet_ref.c: logo-det's detector against its torch twin. The graph
// ns_cnet_build makes (3 classes, width 4, 32 px) takes every parameter and
// buffer of tests/ref/det.tns (tests/ref/gen_det_ref.py; torch module names
// are node names, so a missing or misshapen tensor fails here); its eval-mode
// output and sigmoid heatmaps, its training-mode output, and the CenterNet loss
// and its gradient (ns_cnet_loss) must match what torch computed in float64.
// Error measure: torch_ref.h's ref_err.
#include "base/blas.h"
#include "check.h"
#include "detect/centernet.h"
#include "nn/engine.h"
#include "nn/ops.h"

#include <math.h>
#include <unistd.h>

#include "torch_ref.h"

#define REF_PATH "tests/ref/det.tns"
#define REF_TOL 1e-4

static void check_tensor(const char *what, const float *got, int64_t n) {
    const ns_tensor *want = ref_get("det", what);
    double mabs = INFINITY, e = want && want->numel == n ? ref_err(got, want->data, n, &mabs) : INFINITY;
    CHECK(e <= REF_TOL, "det: %s matches torch (maxdiff %.2e, err %.2e)", what, mabs, e);
}

static void check_detector(void) {
    ns_err err = {{0}};
    ns_model m;
    const ns_tensor *x = ref_get("det", "x");
    if (!x || x->ndim != 4) {
        CHECK(0, "det: the reference has det/x");
        return;
    }
    int64_t N = x->shape[0], S = x->shape[2], K = 3;
    if (ns_cnet_build(&m, (int)K, (int)S, 4, 1, &err) < 0) {
        CHECK(0, "det: build: %s", err.msg);
        return;
    }
    int missing = 0;
    for (int t = 0; t < m.ntensors; t++) {
        const ns_tensor *src = ref_get("det", m.tensors[t].name);
        if (!m.tensors[t].used) continue;
        if (!src || src->numel != m.tensors[t].t.numel) {
            CHECK(0, "det: torch has %s of %lld values", m.tensors[t].name, (long long)m.tensors[t].t.numel);
            missing++;
            continue;
        }
        memcpy(m.tensors[t].t.data, src->data, (size_t)src->numel * sizeof(float));
    }
    CHECK(missing == 0, "det: every tensor of the graph is in torch's state_dict (%d tensors)", m.ntensors);
    ns_engine e;
    if (missing || ns_engine_init(&e, &m, N, 0, &err) < 0) {
        ns_model_free(&m);
        return;
    }
    int64_t oh = S / 4, per = (K + 4) * oh * oh;
    const float *out = ns_engine_forward(&e, x->data, N, 0, &err);
    check_tensor("out.eval", out, N * per);
    float *sig = malloc((size_t)(N * K * oh * oh) * sizeof *sig);
    for (int64_t i = 0; i < N; i++) ns_sigmoid_forward(sig + i * K * oh * oh, out + i * per, K * oh * oh);
    check_tensor("heat.eval", sig, N * K * oh * oh);
    ns_engine_free(&e);
    ns_engine_init(&e, &m, N, 0, &err);
    out = ns_engine_forward(&e, x->data, N, 1, &err);
    check_tensor("out.train", out, N * per);
    const ns_tensor *heat = ref_get("det", "heat"), *reg = ref_get("det", "reg"), *mask = ref_get("det", "mask"),
                    *out_t = ref_get("det", "out.train"), *loss = ref_get("det", "loss"),
                    *parts = ref_get("det", "loss.parts");
    if (heat && reg && mask && out_t && loss && parts) {
        float *dout = malloc((size_t)(N * per) * sizeof *dout);
        double p[3];
        float l = ns_cnet_loss(dout, out_t->data, heat->data, reg->data, mask->data, N, K, oh, oh, p);
        const float *pw = parts->data;
        CHECK(fabs(l - ((float *)loss->data)[0]) < 1e-5 * fabs(((float *)loss->data)[0]) &&
                  fabs(p[0] - pw[0]) < 1e-5 * fabs(pw[0]) && fabs(p[1] - pw[1]) < 1e-5 * fabs(pw[1]) &&
                  fabs(p[2] - pw[2]) < 1e-5 * fabs(pw[2]),
              "det: CenterNet loss %.6f (focal %.6f, size %.6f, offset %.6f) is torch's %.6f", l, p[0], p[1], p[2],
              ((float *)loss->data)[0]);
        check_tensor("dout", dout, N * per);
        free(dout);
    } else {
        CHECK(0, "det: the reference has the targets and the loss");
    }
    free(sig);
    ns_engine_free(&e);
    ns_model_free(&m);
}

int main(void) {
    ns_blas_init();
    if (access(REF_PATH, R_OK) != 0) {
        SKIP("%s is missing (regenerate: /usr/bin/python3 tests/ref/gen_det_ref.py)", REF_PATH);
        return check_done();
    }
    ns_err err = {{0}};
    if (load_refs(REF_PATH, &err) < 0) {
        CHECK(0, "read %s: %s", REF_PATH, err.msg);
        free_refs();
        return check_done();
    }
    check_detector();
    free_refs();
    return check_done();
}
