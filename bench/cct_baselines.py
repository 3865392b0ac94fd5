#!/usr/bin/env python3
"""cct_baselines.py REPS.tsv QUERIES.tsv K SEED: the two embedding baselines
of bench/cct.sh on features written by `tns-tsv --labels --flatten` (label,
then the features, one sample per line): K representatives per class drawn
at random (numpy, SEED), then

  ncm     nearest class mean (ProtoNet-style): squared Euclidean distance to
          the mean of each class's K representatives
  linear  a linear softmax head trained on the K x k representatives (full
          batch gradient descent, 300 steps, lr 0.5, L2 1e-3, features
          L2-normalised)

Prints "ncm ACC F1" and "linear ACC F1"; macro-F1 as scikit-learn's
f1_score(average="macro") (classes in the truth or the predictions)."""
import sys
import numpy as np

def macro_f1(pred, truth):
    f1 = []
    for c in np.union1d(pred, truth):
        tp = np.sum((pred == c) & (truth == c))
        fp = np.sum((pred == c) & (truth != c))
        fn = np.sum((pred != c) & (truth == c))
        f1.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1))

def main():
    reps = np.loadtxt(sys.argv[1], ndmin=2)
    qs = np.loadtxt(sys.argv[2], ndmin=2)
    K, seed = int(sys.argv[3]), int(sys.argv[4])
    rng = np.random.default_rng(seed)
    ry, rx = reps[:, 0].astype(int), reps[:, 1:]
    qy, qx = qs[:, 0].astype(int), qs[:, 1:]
    classes = np.unique(ry)
    pick = np.concatenate([rng.choice(np.flatnonzero(ry == c), K, replace=False) for c in classes])
    sx, sy = rx[pick], ry[pick]
    means = np.stack([sx[sy == c].mean(0) for c in classes])
    d = ((qx[:, None, :] - means[None]) ** 2).sum(-1)
    pred = classes[d.argmin(1)]
    print("ncm\t%.4f\t%.4f" % ((pred == qy).mean(), macro_f1(pred, qy)))
    def norm(x):
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    X, Q = norm(sx), norm(qx)
    W = np.zeros((X.shape[1], len(classes)))
    b = np.zeros(len(classes))
    Y = (sy[:, None] == classes[None]).astype(float)
    for _ in range(300):
        z = X @ W + b
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        g = (p - Y) / len(X)
        W -= 0.5 * (X.T @ g + 1e-3 * W)
        b -= 0.5 * g.sum(0)
    pred = classes[(Q @ W + b).argmax(1)]
    print("linear\t%.4f\t%.4f" % ((pred == qy).mean(), macro_f1(pred, qy)))

main()
