#!/usr/bin/python3
# gen_transformer_ref.py: writes tests/ref/transformer.tns, what PyTorch
# computes in float64 for the transformer ops and a small ViT, for
# tests/unit/test_transformer_ref.c. Same records and conventions as
# gen_engine_ref.py (whose record() and run_case() this uses): per case C,
#   C/x (input, meta: the case's attributes), C/<tensor> f16 (parameters),
#   C/out.train, C/R, C/<param>.grad, C/x.grad, C/out.eval.
# Parameters are torch's default initialisation plus N(0, 0.1) noise (so that
# biases and norm affines are not 0 and 1, which would hide mix-ups), rounded
# to float16. Module names are netsmith's node names. The twin-attention case
# (CCT-Net's mixed heads: N = 4 samples are 2 pairs, the last of 4 heads reads
# the partner's keys and values) is written out with torch ops, as torch has
# no such module; it comes last so the other cases keep their bytes. Run from the repo root:
#     /usr/bin/python3 tests/ref/gen_transformer_ref.py
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_engine_ref import N, record, run_case  # noqa: E402

T, D = 5, 8  # token cases: input (T*D,) reshaped to T x D


class Softmax(nn.Module):  # input 3x4x5, per-sample axis 1 = torch dim 2
    def forward(self, x):
        return torch.softmax(x, dim=2)


class GeluTanh(nn.Module):
    def forward(self, x):
        return F.gelu(x, approximate="tanh")


class Single(nn.Module):
    def __init__(self, name, layer):
        super().__init__()
        self.name = name
        self.add_module(name, layer)

    def forward(self, x):
        return getattr(self, self.name)(x)


class PatchEmbed(nn.Conv2d):  # conv with stride = kernel, then (N, T, D)
    def __init__(self, c, d, p):
        super().__init__(c, d, p, stride=p)

    def forward(self, x):
        return super().forward(x).flatten(2).transpose(1, 2)


class ClsToken(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d) * 0.5)

    def forward(self, x):
        return torch.cat([self.weight.expand(x.shape[0], 1, -1), x], 1)


class PosEmbed(nn.Module):
    def __init__(self, t, d):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(t, d) * 0.5)

    def forward(self, x):
        return x + self.weight


class Tokens(nn.Module):  # reshape, cls_token, pos_embed, token_pool (mean)
    def __init__(self):
        super().__init__()
        self.cls_token = ClsToken(D)
        self.pos_embed = PosEmbed(T + 1, D)

    def forward(self, x):
        return self.pos_embed(self.cls_token(x.view(-1, T, D))).mean(1)


class SelfAttn(nn.Module):  # reshape, attention
    def __init__(self, heads, causal):
        super().__init__()
        self.attn = nn.MultiheadAttention(D, heads, batch_first=True)
        self.causal = causal

    def forward(self, x):
        t = x.view(-1, T, D)
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1) if self.causal else None
        return self.attn(t, t, t, attn_mask=mask, need_weights=False)[0]


class CrossAttn(nn.Module):  # queries: linear q_src of the tokens; keys, values: cls_token mem of them
    def __init__(self, heads):
        super().__init__()
        self.q_src = nn.Linear(D, D)
        self.mem = ClsToken(D)
        self.attn = nn.MultiheadAttention(D, heads, batch_first=True)

    def forward(self, x):
        t = x.view(-1, T, D)
        m = self.mem(t)
        return self.attn(self.q_src(t), m, m, need_weights=False)[0]


class TwinAttn(nn.Module):  # reshape, attention with cross_heads: the twin layout of N/2 pairs
    def __init__(self, heads, cross):
        super().__init__()
        self.attn = nn.MultiheadAttention(D, heads, batch_first=True)  # its parameters only
        self.heads, self.cross = heads, cross

    def forward(self, x):
        t = x.view(-1, T, D)
        n, h, dh = t.shape[0], self.heads, D // self.heads
        q, k, v = F.linear(t, self.attn.in_proj_weight, self.attn.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (z.view(n, T, h, dh).transpose(1, 2) for z in (q, k, v))  # (n, heads, T, dh)
        partner = (torch.arange(n) + n // 2) % n  # [x1 of all pairs; x2 of all pairs]
        own = h - self.cross  # the last `cross` heads attend to the partner's keys and values
        k = torch.cat([k[:, :own], k[partner, own:]], dim=1)
        v = torch.cat([v[:, :own], v[partner, own:]], dim=1)
        p = torch.softmax(q @ k.transpose(-2, -1) / dh ** 0.5, dim=-1)
        ctx = (p @ v).transpose(1, 2).reshape(n, T, D)
        return F.linear(ctx, self.attn.out_proj.weight, self.attn.out_proj.bias)


class ViT(nn.Module):  # lib/nn/arch.c build_vit
    def __init__(self, c, hw, patch, dim, depth, heads, classes):
        super().__init__()
        t = (hw // patch) ** 2
        self.patch_embed = PatchEmbed(c, dim, patch)
        self.cls_token = ClsToken(dim)
        self.pos_embed = PosEmbed(t + 1, dim)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.pos_embed(self.cls_token(self.patch_embed(x)))
        for layer in self.encoder.layers:
            x = layer(x)
        return self.head(self.norm(x)[:, 0])


class TextTransformer(nn.Module):  # lib/nn/arch.c build_text_transformer
    def __init__(self, vocab, ctx, dim, depth, heads, out):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, dim)
        self.positional_embedding = PosEmbed(ctx, dim)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(depth)])
        self.ln_final = nn.LayerNorm(dim)
        self.text_projection = nn.Linear(dim, out, bias=False)

    def forward(self, x):  # x: (N, ctx) token ids as numbers
        ids = x.long()
        t = self.positional_embedding(self.token_embedding(ids))
        causal = torch.triu(torch.ones(ids.shape[1], ids.shape[1], dtype=torch.bool), 1)
        for layer in self.encoder.layers:
            t = layer(t, src_mask=causal)
        t = self.ln_final(t)
        return self.text_projection(t[torch.arange(t.shape[0]), ids.argmax(-1)])  # CLIP's end token


TEXT_V, TEXT_L = 9, 6  # ids: 0..6 words, 7 start, 8 end (the largest), then 0


def text_ids(gen):
    x = torch.zeros(N, TEXT_L)
    for n in range(N):
        words = 1 + n % (TEXT_L - 2)  # 1 to 4 words: the end token at 2 to 5
        x[n, 0] = TEXT_V - 2
        x[n, 1:1 + words] = torch.randint(0, TEXT_V - 2, (words,), generator=gen).float()
        x[n, 1 + words] = TEXT_V - 1
    return x


def noisy(factory):
    def make():
        model = factory()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn(p.shape))
        return model
    return make


# name, input shape (per sample), model factory, meta for the C test
CASES = [
    ("softmax", (3, 4, 5), Softmax, {"axis": 1}),
    ("gelu_tanh", (12,), GeluTanh, {"approximate": 1}),
    ("groupnorm", (6, 5, 5), noisy(lambda: Single("gn", nn.GroupNorm(3, 6))), {"groups": 3}),
    ("patch_embed", (2, 10, 10), noisy(lambda: Single("patch_embed", PatchEmbed(2, 8, 3))),
     {"out": 8, "patch": 3}),
    ("tokens", (T * D,), noisy(Tokens), {"mode": 1}),
    ("attention", (T * D,), noisy(lambda: SelfAttn(2, False)), {"heads": 2}),
    ("attention_causal", (T * D,), noisy(lambda: SelfAttn(4, True)), {"heads": 4, "causal": 1}),
    ("attention_cross", (T * D,), noisy(lambda: CrossAttn(2)), {"heads": 2, "cross": 1}),
    ("vit", (1, 12, 12), noisy(lambda: ViT(1, 12, 4, 16, 2, 2, 10)),
     {"patch": 4, "width": 0.25, "depth": 2, "heads": 2, "classes": 10}),
    ("text", (TEXT_L,), noisy(lambda: TextTransformer(TEXT_V, TEXT_L, 16, 2, 2, 8)),
     {"vocab": TEXT_V, "width": 0.25, "depth": 2, "heads": 2, "classes": 8}),
    ("attention_twin", (T * D,), noisy(lambda: TwinAttn(4, 1)), {"heads": 4, "cross_heads": 1}),
]


def main():
    torch.manual_seed(20261206)
    gen = torch.Generator().manual_seed(20261207)
    blobs = []
    for name, in_shape, factory, meta in CASES:
        blobs += run_case(gen, name, in_shape, factory, meta, text_ids if name == "text" else None)
    with open("tests/ref/transformer.tns", "wb") as f:
        for b in blobs:
            f.write(b)


if __name__ == "__main__":
    main()
