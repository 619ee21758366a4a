"""Write a PNG contact sheet of SynthVQA items (one row of frames per item) and print the QA.

Usage: python scripts/testbed_synthvqa_preview.py OUT.png [--split train] [--n 7] [--every 2]
"""

from __future__ import annotations

import argparse
import struct
import zlib

import torch

from vidpress.testbed.synthvqa import SynthVQA
from vidpress.testbed.video import default_clips


def write_png(path: str, rgb: torch.Tensor) -> None:
    """uint8 [H, W, 3] -> PNG file (no imaging library needed)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].contiguous().numpy().tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--split", default="train")
    ap.add_argument("--n", type=int, default=7)
    ap.add_argument("--every", type=int, default=2, help="show every k-th frame")
    ap.add_argument("--scale", type=int, default=4, help="downscale factor")
    args = ap.parse_args()
    ds = SynthVQA(default_clips(), split=args.split, size=args.n)
    rows = []
    for item in ds:
        frames = item.frames[:: args.every, :, :: args.scale, :: args.scale]  # [t, 3, h, w]
        rows.append(torch.cat(list(frames.permute(0, 2, 3, 1)), dim=1))  # [h, t*w, 3]
        print(
            f"[{item.index}] {item.family} ({item.source}) {item.question} "
            f"{item.options} -> {item.answer_letter}"
        )
    write_png(args.out, torch.cat(rows, dim=0))


if __name__ == "__main__":
    main()
