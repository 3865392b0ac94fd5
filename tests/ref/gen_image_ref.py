#!/usr/bin/python3
# gen_image_ref.py: writes tests/ref/image_resize.ref, torch's bilinear resize
# (F.interpolate, mode="bilinear", align_corners=False, no antialias) of small
# fixed inputs, for tests/unit/test_image.c. Needs python3-torch only to
# regenerate; the C test reads the committed file.
#
# File format: text lines, then raw data.
#   nsref image-resize 1
#   case C H W h w        one line per case: input (C,H,W) resized to (h,w)
#   end
# then for each case in order: the input, C*H*W float32, then torch's output,
# C*h*w float32; little-endian, C-contiguous (C, H, W).
#
# Run from the repo root: /usr/bin/python3 tests/ref/gen_image_ref.py
import struct

import torch
import torch.nn.functional as F

CASES = [  # (C, H, W, h, w)
    (3, 7, 5, 13, 11),   # upscale, non-square
    (3, 16, 12, 5, 7),   # downscale, non-square
    (1, 9, 6, 4, 11),    # down in H, up in W
    (2, 10, 10, 7, 13),  # non-integer ratios
]


def main():
    gen = torch.Generator().manual_seed(20240611)
    header = ["nsref image-resize 1"]
    blobs = []
    for c, h, w, oh, ow in CASES:
        x = torch.rand((1, c, h, w), generator=gen, dtype=torch.float32)
        y = F.interpolate(x, size=(oh, ow), mode="bilinear", align_corners=False)
        header.append(f"case {c} {h} {w} {oh} {ow}")
        for t in (x, y):
            flat = t.contiguous().view(-1).tolist()
            blobs.append(struct.pack(f"<{len(flat)}f", *flat))
    header.append("end")
    with open("tests/ref/image_resize.ref", "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        for b in blobs:
            f.write(b)


if __name__ == "__main__":
    main()
