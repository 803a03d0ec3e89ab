#!/usr/bin/env python3
"""Writes the PNG image folders the image-folder tests read, with a PNG encoder of its own (zlib and struct, no
imaging library), into the directory given:

    python3 Tests/DatasetsTests/Fixtures/make_image_folders.py OUT_DIR

OUT_DIR/gray: classes cat, dog and eel, 8-bit gray 6x5 images. Image k of a class (files sorted by name) has the
pixel value (label*50 + k*13 + y*7 + x*3) % 256 at row y, column x.

OUT_DIR/colour: the same classes with one image of each PNG colour type: 0 (gray), 2 (RGB), 3 (palette) and 6 (RGBA,
opaque). Channel c of image k of class `label` is (label*50 + k*13 + c*29 + y*7 + x*3) % 256 for the colour ones;
the gray one has that value for c = 0 in every channel. Rows use PNG's five filter types in turn.

OUT_DIR/<problem>: folders that must be refused (see the tests).
"""
import os
import struct
import sys
import zlib

W, H = 6, 5
CLASSES = ["cat", "dog", "eel"]


def value(label, k, c, y, x):
    return (label * 50 + k * 13 + c * 29 + y * 7 + x * 3) % 256


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def encode(rows, color_type, channels, palette=None):
    """rows: lists of byte values, `channels` per pixel. Row y uses filter y % 5."""
    raw, previous = b"", [0] * len(rows[0])
    for y, row in enumerate(rows):
        kind = y % 5
        out = []
        for i, v in enumerate(row):
            a = row[i - channels] if i >= channels else 0
            b = previous[i]
            c = previous[i - channels] if i >= channels else 0
            predictor = [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]
            out.append((v - predictor) % 256)
        raw += bytes([kind] + out)
        previous = row

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, len(rows), 8, color_type, 0, 0, 0))
    if palette is not None:
        png += chunk(b"PLTE", bytes(v for rgb in palette for v in rgb))
    return png + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def gray_png(label, k):
    return encode([[value(label, k, 0, y, x) for x in range(W)] for y in range(H)], 0, 1)


def colour_png(label, k, color_type):
    pixels = [[[value(label, k, c, y, x) for c in range(3)] for x in range(W)] for y in range(H)]
    if color_type == 0:
        return gray_png(label, k)
    if color_type == 2:
        return encode([[v for p in row for v in p] for row in pixels], 2, 3)
    if color_type == 6:
        return encode([[v for p in row for v in p + [255]] for row in pixels], 6, 4)
    palette = sorted({tuple(p) for row in pixels for p in row})
    return encode([[palette.index(tuple(p)) for p in row] for row in pixels], 3, 1, palette)


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def main(out):
    for split, count in [("train", 4), ("test", 2)]:
        for label, name in enumerate(CLASSES):
            for k in range(count):
                write(f"{out}/gray/{split}/{name}/{k:03d}.png", gray_png(label, k))
                write(f"{out}/colour/{split}/{name}/{k:03d}.png", colour_png(label, k, [0, 2, 3, 6][k % 4]))
    # Folders that must be refused: each a copy of gray with one thing wrong.
    problems = {
        "other-size": lambda d: write(f"{d}/train/dog/001.png", encode([[1] * W] * (H + 1), 0, 1)),
        "empty-class": lambda d: [os.remove(f"{d}/train/eel/{k:03d}.png") for k in range(4)],
        "not-png": lambda d: write(f"{d}/train/cat/notes.txt", b"hello"),
        "unknown-test-class": lambda d: write(f"{d}/test/fox/000.png", gray_png(0, 0)),
        "corrupt": lambda d: write(f"{d}/test/cat/001.png", gray_png(0, 1)[:60]),
    }
    for problem, damage in problems.items():
        for split, count in [("train", 4), ("test", 2)]:
            for label, name in enumerate(CLASSES):
                for k in range(count):
                    write(f"{out}/{problem}/{split}/{name}/{k:03d}.png", gray_png(label, k))
        damage(f"{out}/{problem}")


if __name__ == "__main__":
    main(sys.argv[1])
