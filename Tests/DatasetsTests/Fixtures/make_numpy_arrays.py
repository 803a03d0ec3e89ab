#!/usr/bin/env python3
"""Writes the NumPy files the NumPy reader's tests load, with NumPy itself, into the directory given.

Run by the tests at test time (NumPyFileTests), so they always read what the installed NumPy writes:

    python3 Tests/DatasetsTests/Fixtures/make_numpy_arrays.py OUT_DIR

Every image array holds the same samples, written in a different way. Sample n's value at channel c, row h and
column w is (n*31 + c*17 + h*7 + w*3) % 256, as uint8 or as float32 divided by 255; the tests compute the same
formula on their own. Labels are [0, 3, 1, 4, 2] for N = 5 samples and [1, 0] for the 2 test samples.
"""
import os
import struct
import sys
import zipfile
import zlib

import numpy as np

N, C, H, W = 5, 3, 5, 6


def images(n=N, c=C, h=H, w=W):
    """[n, c, h, w] uint8 from the formula."""
    i, j, k, m = np.meshgrid(np.arange(n), np.arange(c), np.arange(h), np.arange(w), indexing="ij")
    return ((i * 31 + j * 17 + k * 7 + m * 3) % 256).astype(np.uint8)


def main(out):
    os.makedirs(out, exist_ok=True)

    def save(name, array, version=None):
        with open(os.path.join(out, name), "wb") as f:
            np.lib.format.write_array(f, array, version=version)

    nchw = images()
    nhwc = np.ascontiguousarray(nchw.transpose(0, 2, 3, 1))
    gray = images(c=1)[:, 0]
    unit = nchw.astype(np.float32) / np.float32(255)
    # Images: one sample set, many encodings.
    save("u8-nhw.npy", gray, version=(1, 0))
    save("u8-nhw-v2.npy", gray, version=(2, 0))
    save("u8-nhw-v3.npy", gray, version=(3, 0))
    save("u8-nhwc.npy", nhwc)
    save("u8-nchw.npy", nchw)
    save("u8-nchw-fortran.npy", np.asfortranarray(nchw))
    save("f4-nchw.npy", unit)
    save("f4-nchw-big-endian.npy", unit.astype(">f4"))
    save("f4-nhwc-big-endian-fortran.npy", np.asfortranarray(np.ascontiguousarray(unit.transpose(0, 2, 3, 1)).astype(">f4")))
    save("u8-flat.npy", gray.reshape(N, H * W))
    # Labels in every integer type NumPy has, both byte orders.
    labels = np.array([0, 3, 1, 4, 2])
    for dtype in ["|u1", "|i1", "<u2", ">i2", "<u4", ">u4", "<i4", "<i8", ">i8", "<u8"]:
        save("labels-" + dtype[1:] + ("-big-endian" if dtype[0] == ">" else "") + ".npy", labels.astype(dtype))
    save("labels-n1.npy", labels.reshape(N, 1).astype(np.int64))
    save("labels-short.npy", np.array([1, 0], dtype=np.int64))
    # Arrays it must refuse.
    save("f8.npy", nchw.astype(np.float64))
    save("i4-images.npy", nchw.astype(np.int32))
    save("labels-f4.npy", labels.astype(np.float32))
    save("labels-2d.npy", np.zeros((N, 2), dtype=np.int64))
    save("five-axes.npy", nchw.reshape(N, C, H, W, 1))
    save("ambiguous.npy", images(c=3, h=4, w=3))
    # Archives in Keras's mnist.npz layout: stored and deflated.
    splits = dict(
        x_train=nhwc, y_train=labels.astype(np.uint8), x_test=nhwc[:2], y_test=np.array([1, 0], dtype=np.int64)
    )
    np.savez(os.path.join(out, "stored.npz"), **splits)
    np.savez_compressed(os.path.join(out, "compressed.npz"), **splits)
    np.savez(os.path.join(out, "no-x-test.npz"), x_train=nhwc, y_train=labels, y_test=splits["y_test"])
    write_zip64_directory(os.path.join(out, "zip64-directory.npz"), splits)


def write_zip64_directory(path, arrays):
    """An .npz whose central directory itself uses ZIP64 (sizes and offsets 0xFFFFFFFF, read from the extra field
    0x0001, and a ZIP64 end record), as NumPy writes only for archives beyond 4 GiB. Built by hand, then read back
    with Python's zipfile to check it is a valid archive. Members alternate stored and deflated."""
    import io

    body, directory = b"", b""
    for index, (name, array) in enumerate(arrays.items()):
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, np.asanyarray(array))
        data = buffer.getvalue()
        method = index % 2 * 8
        stored = data if method == 0 else zlib.compress(data, 6)[2:-4]
        crc = zlib.crc32(data)
        filename = (name + ".npy").encode()
        offset = len(body)
        local_extra = struct.pack("<HHQQ", 1, 16, len(data), len(stored))
        body += struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 45, 0, method, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(filename), len(local_extra)
        )
        body += filename + local_extra + stored
        central_extra = struct.pack("<HHQQQ", 1, 24, len(data), len(stored), offset)
        directory += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50, 45, 45, 0, method, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(filename), len(central_extra),
            0, 0, 0, 0, 0xFFFFFFFF,
        )
        directory += filename + central_extra
    count = len(arrays)
    zip64_end = struct.pack(
        "<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, len(directory), len(body)
    )
    locator = struct.pack("<IIQI", 0x07064B50, 0, len(body) + len(directory), 1)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    with open(path, "wb") as f:
        f.write(body + directory + zip64_end + locator + end)
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
    loaded = np.load(path)
    for name, array in arrays.items():
        assert np.array_equal(loaded[name], array), name


if __name__ == "__main__":
    main(sys.argv[1])
