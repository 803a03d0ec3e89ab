import Foundation
import TestSupport
import Testing

/// Runs a Python script with NumPy (python3-numpy, which launch/setup installs), for data files NumPy itself writes.
enum NumPyScript {
  static func run(_ script: String, _ arguments: [String] = [], sourceLocation: SourceLocation = #_sourceLocation)
    throws
  {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", script] + arguments
    let errors = Pipe()
    process.standardError = errors
    try process.run()
    let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    try #require(
      process.terminationStatus == 0, "python3 with NumPy failed (launch/setup installs python3-numpy):\n\(message)",
      sourceLocation: sourceLocation)
  }

  /// Colour images for `classes` classes, 3×12×12, made from a seed: the class sets which channel is brightest
  /// and where a bright square sits. Written as `nhwc.npz` (uint8, [N, 12, 12, 3], deflated), and as `nchw/`
  /// (`.npy` files, float32 [N, 3, 12, 12] = the bytes / 255, as the trainer scales them) and `names.txt`.
  static let colourImages = """
    import os, sys
    import numpy as np
    out, classes = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(7)
    def split(n):
        labels = rng.integers(0, classes, n)
        x = rng.integers(0, 90, (n, 12, 12, 3))
        for i, label in enumerate(labels):
            x[i, :, :, label % 3] += 100
            r, c = 2 + 3 * (label // 3 % 3), 2 + 2 * (label % 4)
            x[i, r:r + 3, c:c + 3, :] += 60
        return x.astype(np.uint8), labels.astype(np.int64)
    (xt, yt), (xs, ys) = split(512), split(128)
    np.savez_compressed(os.path.join(out, "nhwc.npz"), x_train=xt, y_train=yt, x_test=xs, y_test=ys)
    os.makedirs(os.path.join(out, "nchw"))
    for name, x in [("train-images", xt), ("test-images", xs)]:
        unit = np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype(np.float32) / np.float32(255)
        np.save(os.path.join(out, "nchw", name + ".npy"), unit)
    np.save(os.path.join(out, "nchw", "train-labels.npy"), yt)
    np.save(os.path.join(out, "nchw", "test-labels.npy"), ys.astype(np.uint16))
    with open(os.path.join(out, "names.txt"), "w") as f:
        f.write("".join("shade %d\\n" % k for k in range(classes)))
    """
}

/// Training on NumPy data, through the binary and real `mpirun`.
@Suite(.serialized, .enabled(if: DDPTrainProcess.mpirunAvailable, "mpirun is not installed (run launch/setup)"))
final class NumPyDataTests {
  let scratch: URL

  init() throws { scratch = try makeScratchDirectory("numpy-data") }
  deinit { try? FileManager.default.removeItem(at: scratch) }

  func train(ranks: Int, _ arguments: [String], checkpoints name: String) throws -> [Float] {
    let checkpoints = scratch.appendingPathComponent(name)
    let result = try DDPTrainProcess.mpirun(ranks: ranks, arguments + ["--checkpoint-dir", checkpoints.path])
    try #require(result.status == 0, "\(arguments): \(result.output)")
    return try finalParameters(in: checkpoints)
  }

  /// `train` on `--dataset kind --data-dir scratch/file`, its checkpoints in `scratch/<file>-<kind>`.
  func train(on kind: String, _ file: String, _ common: [String]) throws -> [Float] {
    try train(
      ranks: 2, common + ["--dataset", kind, "--data-dir", scratch.appendingPathComponent(file).path],
      checkpoints: "\(file)-\(kind)")
  }

  @Test("Fashion-MNIST converted to .npz by NumPy trains to bitwise the weights of its IDX files (K = 2)")
  func fashionMNISTAsNPZ() throws {
    try NumPyScript.run(
      """
      import gzip, sys
      import numpy as np
      source, out = sys.argv[1], sys.argv[2]
      def read(name, offset):
          return np.frombuffer(gzip.open(source + "/" + name + ".gz").read(), np.uint8, offset=offset)
      arrays = dict(
          x_train=read("train-images-idx3-ubyte", 16).reshape(-1, 28, 28), y_train=read("train-labels-idx1-ubyte", 8),
          x_test=read("t10k-images-idx3-ubyte", 16).reshape(-1, 28, 28),
          y_test=read("t10k-labels-idx1-ubyte", 8).astype(np.int64))
      np.savez(out + "/stored.npz", **arrays)
      np.savez_compressed(out + "/compressed.npz", **arrays)
      """, ["/usr/share/datasets/fashion-mnist", scratch.path])
    let common = ["--model", "cnn", "--batch-size", "16", "--max-steps", "12", "--seed", "5", "--random-flip"]
    let idx = try train(ranks: 2, common, checkpoints: "idx")
    let idxOwnCopies = try train(ranks: 2, common + ["--data-copies", "rank"], checkpoints: "idx-rank")
    #expect(bitwiseDifference(idxOwnCopies, idx) == nil, "IDX files, --data-copies rank")
    for (file, copies) in [("stored.npz", "host"), ("compressed.npz", "host"), ("compressed.npz", "rank")] {
      let npz = try train(
        ranks: 2,
        common + [
          "--dataset", "npz", "--data-dir", scratch.appendingPathComponent(file).path, "--data-copies", copies,
        ],
        checkpoints: "\(file)-\(copies)")
      #expect(bitwiseDifference(npz, idx) == nil, "\(file), --data-copies \(copies)")
    }
  }

  @Test(
    "colour images channels-last in uint8 train bitwise as channels-first float32; predict draws them in colour and names the classes"
  )
  func colourImages() throws {
    try NumPyScript.run(NumPyScript.colourImages, [scratch.path, "6"])
    let common = [
      "--model", "seq:conv8k3p1,relu,pool2,conv8k3p1,relu,pool2,flatten,linear6", "--batch-size", "16",
      "--max-steps", "40", "--seed", "3", "--random-crop", "1", "--random-flip", "--normalize",
      "0.4,0.4,0.4:0.25,0.25,0.25", "--class-names", scratch.appendingPathComponent("names.txt").path,
    ]
    let nhwc = try train(on: "npz", "nhwc.npz", common)
    let nchw = try train(on: "npy", "nchw", common)
    #expect(bitwiseDifference(nhwc, nchw) == nil)

    let picture = scratch.appendingPathComponent("colour.png")
    let predicted = try DDPTrainProcess.run([
      "predict", "--checkpoint", scratch.appendingPathComponent("nhwc.npz-npz").path, "--count", "4", "--image",
      picture.path,
      "--json",
    ])
    try #require(predicted.status == 0, "\(predicted.output)")
    #expect(predicted.stdout.contains("\"true_name\":\"shade "), "\(predicted.stdout)")
    // The picture has colour in it: decode the PNG (8-bit RGB, no filtering, as ddp-train writes it) and count
    // the pixels whose channels differ.
    try NumPyScript.run(
      """
      import struct, sys, zlib
      data = open(sys.argv[1], "rb").read()
      width, height = struct.unpack(">II", data[16:24])
      chunks, at = b"", 8
      while at < len(data):
          length, kind = struct.unpack(">I4s", data[at:at + 8])
          if kind == b"IDAT":
              chunks += data[at + 8:at + 8 + length]
          at += 12 + length
      raw = zlib.decompress(chunks)
      colour = 0
      for row in range(height):
          line = raw[row * (3 * width + 1) + 1:(row + 1) * (3 * width + 1)]
          colour += sum(1 for i in range(0, len(line), 3) if max(line[i:i + 3]) - min(line[i:i + 3]) > 40)
      assert colour > 500, "only %d colour pixels" % colour
      """, [picture.path])
    let evaluated = try DDPTrainProcess.run(["eval", "--checkpoint", scratch.appendingPathComponent("nchw-npy").path])
    try #require(evaluated.status == 0, "\(evaluated.output)")
    #expect(evaluated.stdout.contains("shade 5"), "\(evaluated.stdout)")
  }

  @Test(
    "Fashion-MNIST images as a PNG folder train bitwise as the same samples in an .npz (K = 2); the folders name the classes"
  )
  func imageFolder() throws {
    // The first 1200 training and 300 test images, each written as a PNG (zlib and struct: an encoder of the test's
    // own) into <class>/<index>.png, and the same samples in the folder's order (by class, then file) as an .npz.
    try NumPyScript.run(
      """
      import gzip, os, struct, sys, zlib
      import numpy as np
      source, out = sys.argv[1], sys.argv[2]
      names = ["0-t-shirt", "1-trouser", "2-pullover", "3-dress", "4-coat", "5-sandal", "6-shirt", "7-sneaker",
               "8-bag", "9-ankle-boot"]
      def read(name, offset):
          return np.frombuffer(gzip.open(source + "/" + name + ".gz").read(), np.uint8, offset=offset)
      def png(pixels):
          chunk = lambda tag, data: struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
          raw = b"".join(b"\\x00" + bytes(row) for row in pixels)
          return (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0))
                  + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
      arrays = {}
      for split, images, labels, count in [("train", "train-images-idx3-ubyte", "train-labels-idx1-ubyte", 1200),
                                           ("test", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 300)]:
          x = read(images, 16).reshape(-1, 28, 28)[:count]
          y = read(labels, 8)[:count]
          for i in range(count):
              folder = os.path.join(out, "folder", split, names[y[i]])
              os.makedirs(folder, exist_ok=True)
              with open(os.path.join(folder, "%05d.png" % i), "wb") as f:
                  f.write(png(x[i]))
          order = np.argsort(y, kind="stable")
          arrays["x_" + split], arrays["y_" + split] = x[order], y[order]
      np.savez(os.path.join(out, "sorted.npz"), **arrays)
      """, ["/usr/share/datasets/fashion-mnist", scratch.path])
    let common = ["--model", "cnn", "--batch-size", "16", "--max-steps", "20", "--seed", "9", "--random-crop", "2"]
    let folder = try train(on: "folder", "folder", common)
    let npz = try train(on: "npz", "sorted.npz", common)
    #expect(bitwiseDifference(folder, npz) == nil)
    let predicted = try DDPTrainProcess.run([
      "predict", "--checkpoint", scratch.appendingPathComponent("folder-folder").path, "--count", "3", "--json",
    ])
    try #require(predicted.status == 0, "\(predicted.output)")
    #expect(predicted.stdout.contains("\"true_name\":\"0-t-shirt\""), "\(predicted.stdout)")
  }

  @Test("70,000 classes: labels past 65,535 train, and eval reports the accuracy without a matrix")
  func manyClasses() throws {
    try NumPyScript.run(
      """
      import sys
      import numpy as np
      rng = np.random.default_rng(1)
      x = rng.random((96, 4), dtype=np.float32)
      y = rng.integers(65536, 70000, 96)
      np.savez(sys.argv[1] + "/many.npz", x_train=x[:64], y_train=y[:64], x_test=x[64:], y_test=y[64:])
      """, [scratch.path])
    let data = ["--dataset", "npz", "--data-dir", scratch.appendingPathComponent("many.npz").path]
    _ = try train(
      ranks: 2, data + ["--classes", "70000", "--model", "mlp:", "--batch-size", "8", "--max-steps", "4"],
      checkpoints: "many")
    let evaluated = try DDPTrainProcess.run(["eval", "--checkpoint", scratch.appendingPathComponent("many").path])
    try #require(evaluated.status == 0, "\(evaluated.output)")
    #expect(evaluated.stdout.contains("32 test samples of npz, 70000 classes"), "\(evaluated.stdout)")
    #expect(evaluated.stdout.contains("shown for at most 100 classes"))
  }
}
