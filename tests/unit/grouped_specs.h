// grouped_specs.h: two small specs with grouped convolutions, shared by the
// channel-group tests (test_chgroups) and the pruning tests (test_prune).
//   grouped_spec    4x8x8 input; g1 4 groups (2 -> 3 per group), g2 2 groups
//                   (6 -> 4), g3 4 groups (2 -> 2) around a residual add
//   depthwise_spec  3x8x8 input; depthwise 3x3 convs (groups = channels) with
//                   a pointwise conv between, the second around a residual add
#ifndef NS_TEST_GROUPED_SPECS_H
#define NS_TEST_GROUPED_SPECS_H

static const char grouped_spec[] =
    "# grouped convs: g1 4 groups (2 -> 3 per group), g2 2 groups (6 -> 4),\n"
    "# g3 4 groups (2 -> 2) around a residual add\n"
    "[input]\nshape = 4x8x8\n"
    "[conv2d c1]\nout = 8\npad = 1\n[batchnorm]\n[relu]\n"
    "[conv2d g1]\nout = 12\ngroups = 4\npad = 1\n[batchnorm]\n[relu]\n"
    "[conv2d g2]\nout = 8\ngroups = 2\npad = 1\n[batchnorm]\n[relu r2]\n"
    "[conv2d g3]\nout = 8\ngroups = 4\nkernel = 1\n[batchnorm]\n"
    "[add]\nfrom = -1, r2\n[relu]\n[global_avgpool]\n"
    "[linear fc]\nout = 3\n";

static const char depthwise_spec[] =
    "[input]\nshape = 3x8x8\n"
    "[conv2d c1]\nout = 8\npad = 1\nbias = 0\n[batchnorm]\n[relu]\n"
    "[conv2d dw]\nout = 8\ngroups = 8\npad = 1\n[batchnorm]\n[relu]\n"
    "[conv2d pw]\nout = 6\nkernel = 1\n[batchnorm]\n[relu rp]\n"
    "[conv2d dw2]\nout = 6\ngroups = 6\npad = 1\nbias = 0\n"
    "[add]\nfrom = -1, rp\n[flatten]\n"
    "[linear fc]\nout = 4\n";

#endif
