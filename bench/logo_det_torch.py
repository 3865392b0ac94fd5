#!/usr/bin/python3
# logo_det_torch.py: detection speed of logo-det's detector in PyTorch
# (tests/ref/centernet_torch.py) with the weights of a netsmith model stream,
# on the images of a detection stream: eval-mode forward, sigmoid, 3x3
# max-pool peaks and top-100, in batches, as `logo-det detect` does.
#   /usr/bin/python3 bench/logo_det_torch.py MODEL.tns IMAGES.tns CLASSES WIDTH [THREADS] [BATCH]
# Prints "torch images/s N" (the best of 2 passes) and the largest difference
# of the sigmoid heatmaps from a forward in float64 (a sanity check).
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
from centernet_torch import decode, load_model, read_tns  # noqa: E402


def main():
    model, images, K, W = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    batch = int(sys.argv[6]) if len(sys.argv) > 6 else 64
    torch.set_num_threads(threads)
    net = load_model(model, K, W).eval()
    xs = [a for kind, _, _, a in read_tns(images, lambda r: len(r["shape"]) == 4) if a is not None]
    x = torch.from_numpy(np.concatenate(xs).astype(np.float32))
    best = 0
    with torch.no_grad():
        for _ in range(2):
            t0 = time.perf_counter()
            for i in range(0, len(x), batch):
                decode(net(x[i:i + batch]), K, 100)
            best = max(best, len(x) / (time.perf_counter() - t0))
        h32 = torch.sigmoid(net(x[:8])[:, :K])
        h64 = torch.sigmoid(net.double()(x[:8].double())[:, :K])
    print("torch images/s %.1f  (%d images, %d threads, batch %d)" % (best, len(x), threads, batch))
    print("torch float32 vs float64 heatmaps: max diff %.2e" % (h32.double() - h64).abs().max().item())


if __name__ == "__main__":
    main()
