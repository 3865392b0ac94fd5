#!/usr/bin/python3
# vit_torch.py: the PyTorch peer of `build/bench/engine_speed --arch vit`: the
# vit built-in of lib/nn/arch.c with its defaults (1x28x28 input, 7x7 patches
# to 16 tokens of 64 features, a class token, learned positions, 4 pre-norm
# TransformerEncoderLayer blocks with 4 heads, GELU, MLP 256, dropout 0, then
# LayerNorm, the class token, a linear to 10 classes) on random inputs.
# Prints images/s for inference (eval mode, no_grad) and for training (train
# mode, forward + softmax cross-entropy + backward, no optimiser step), each
# after warm-up, the median of the timed repeats: bench/torch_speed.py's
# timing and report (imported from there).
#
#   /usr/bin/python3 bench/vit_torch.py [--batch 256] [--threads 2] [--iters 10]
#
# Eval mode with no_grad lets torch take TransformerEncoderLayer's fused fast
# path (torch._transformer_encoder_layer_fwd) where it applies; training runs
# the ordinary modules.
import torch
import torch.nn as nn

from torch_speed import report_speed, speed_args


class ViT(nn.Module):
    def __init__(self, in_c=1, hw=28, patch=7, dim=64, depth=4, heads=4, classes=10):
        super().__init__()
        tokens = (hw // patch) ** 2
        self.patch_embed = nn.Conv2d(in_c, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, tokens + 1, dim))
        self.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x)[:, 0])


def main():
    ap = speed_args(__doc__)
    ap.add_argument("--patch", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ViT(patch=args.patch)
    x = torch.rand(args.batch, 1, 28, 28) * 2 - 1
    y = torch.randint(0, 10, (args.batch,))
    params = sum(p.numel() for p in model.parameters())
    report_speed(model, x, y, args, f"vit patch={args.patch} params={params}")


if __name__ == "__main__":
    main()
