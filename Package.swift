// swift-tools-version:6.0
// The targets are layered from C upward, without cycles: each imports only targets to its left or on a line above
// (see README, "Architecture"):
//   C shims (CMPI, COpenBLAS, CZlib, CPNG), C kernels (CKernels), Diagnostics (input errors), HostCounters (/proc/stat)
//   → Tensors → Layers → Optimizers
//   → Datasets → Communication → Checkpoints
//   → GradientExchange (how K gradient buffers become one sum) → Training (the loop, its options, guards, output)
//   → Inspection (predictions, pictures, a run's charts) → ScalingStudy
//   → Benchmarks (bench's measuring) → MPICommunication (the only target that links MPI) → ddp-train (the executable).
import PackageDescription

let package = Package(
  name: "ddp-train",
  platforms: [.macOS(.v13)],
  products: [
    .executable(name: "ddp-train", targets: ["ddp-train"]),
    // For the tests only: an LD_PRELOAD allocation counter (the steady-state step must not allocate).
    .library(name: "ddp-malloc-counter", type: .dynamic, targets: ["MallocCounter"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
  ],
  targets: [
    // C shims: module maps over system headers, found through pkg-config.
    .systemLibrary(
      name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
    .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
    .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
    .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),

    // The hot elementwise loops (SGD update, finite check, rank-order add), compiled per instruction set
    // (baseline, AVX2, AVX-512) and picked at load time; bit-identical results whichever runs.
    // Always optimised (debug builds too), so that the tests exercise the vectorised clones CI would ship.
    .target(name: "CKernels", cSettings: [.unsafeFlags(["-O2"])]),
    // Float32 buffers, GEMM through cblas_sgemm, elementwise kernels, the naive oracle, RNG.
    .target(name: "Tensors", dependencies: ["COpenBLAS", "CKernels"]),
    // Input errors (exit status 2) and the one type for a bad input file; everything above may throw them.
    .target(name: "Diagnostics"),
    // The Layer protocol and its layers (Linear, Conv2d, MaxPool2d, ReLU, Flatten), the Sequential model over one
    // flat parameter buffer, model specs, softmax cross-entropy.
    .target(name: "Layers", dependencies: ["Tensors", "Diagnostics"]),
    // torch.optim.SGD semantics and the learning-rate policy (pure functions of the step).
    .target(name: "Optimizers", dependencies: ["Tensors", "Layers", "CKernels", "Diagnostics"]),
    // IDX files (plain or gzip), NumPy arrays, PNG image folders, synthetic data; the host's one mapped copy of the
    // samples and its cache; the distributed sampler.
    .target(name: "Datasets", dependencies: ["CZlib", "CPNG", "CKernels", "Tensors", "Diagnostics"]),
    // The host's own counters: CPU time by state from /proc/stat (the hypervisor's steal).
    .target(name: "HostCounters"),
    // The Communicator protocol, the world of one, and an in-process group of threads for tests.
    .target(name: "Communication"),
    // safetensors, state.json and the checkpoint directory (atomic, rank 0 only).
    .target(name: "Checkpoints", dependencies: ["Diagnostics"]),
    // How a step's K gradient buffers become their sum on every rank: the reducers (blocking, rank-ordered,
    // overlapping, shared memory, two levels across hosts), the exchange between hosts' peers (fp32 or 16-bit with
    // error feedback), and `Reduction`, which picks one for the world. Knows nothing of the training loop.
    .target(name: "GradientExchange", dependencies: ["Communication", "Tensors", "CKernels"]),
    // The training loop (Loop), its options (Configuration), its guards against stalls, signals and failing ranks
    // (Supervision), and what it prints and writes (Output); talks only to `Communicator`.
    .target(
      name: "Training",
      dependencies: [
        "Tensors", "Layers", "Optimizers", "Datasets", "Communication", "Checkpoints", "GradientExchange",
        "Diagnostics", "CKernels", "HostCounters",
      ]),
    // The one target that links MPI.
    .target(name: "MPICommunication", dependencies: ["CMPI", "Communication"]),
    // Measuring code of `ddp-train bench`: medians, cblas_sgemm reference figures, peak RSS, metrics parsing, the
    // collective's timestamps and skew.
    .target(name: "Benchmarks", dependencies: ["Tensors", "Layers", "GradientExchange"]),
    // What a trained model gets right and wrong, and how a run went: predictions with class names, the confusion
    // matrix and per-class scores, PNG and SVG pictures of them, metrics files read back and charted (`predict`,
    // `eval`, `plot`), and the SVG line chart the scaling study draws too.
    .target(
      name: "Inspection",
      dependencies: ["Training", "Layers", "Datasets", "Checkpoints", "Diagnostics", "CZlib"]),
    // `ddp-train scaling`: plans trainings, runs them through mpirun as subprocesses, reads their metrics and
    // writes the report (Markdown, JSON, SVG charts). Never calls MPI itself.
    .target(name: "ScalingStudy", dependencies: ["Training", "Optimizers", "Inspection"]),
    // The command-line tool: train (default), eval, predict, plot, launch, bench, scaling.
    .executableTarget(
      name: "ddp-train",
      dependencies: [
        "Training", "MPICommunication", "Benchmarks", "HostCounters", "ScalingStudy", "Inspection", "Diagnostics",
        "CKernels",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Yams", package: "Yams"),
      ]),

    .testTarget(name: "TensorsTests", dependencies: ["Tensors"]),
    .testTarget(name: "LayersTests", dependencies: ["Layers", "Tensors", "Checkpoints"], exclude: ["Fixtures"]),
    .testTarget(
      name: "OptimizersTests", dependencies: ["Optimizers", "Layers", "Checkpoints"], exclude: ["Fixtures"]),
    .testTarget(name: "DatasetsTests", dependencies: ["Datasets"]),
    .testTarget(name: "CheckpointsTests", dependencies: ["Checkpoints"]),
    // The reducers alone and the trainer that uses them, over in-process thread groups.
    .testTarget(name: "TrainingTests", dependencies: ["Training", "GradientExchange", "Communication", "Checkpoints"]),
    .testTarget(name: "BenchmarksTests", dependencies: ["Benchmarks", "HostCounters"]),
    .testTarget(name: "InspectionTests", dependencies: ["Inspection", "Layers", "Datasets", "CZlib"]),
    // Launches the built `ddp-train` through real `mpirun`; never calls MPI in-process.
    // Runs the built binary as a subprocess (alone or under mpirun) for the tests that launch it.
    .target(name: "TestSupport", path: "Tests/TestSupport"),
    .target(name: "MallocCounter", path: "Tests/MallocCounter"),
    .testTarget(
      name: "EndToEndTests", dependencies: ["ddp-train", "Checkpoints", "Training", "Tensors", "TestSupport"],
      exclude: ["Golden"]),
    // The study's planning, metrics reading and report logic; its --quick run through the built binary.
    .testTarget(name: "ScalingStudyTests", dependencies: ["ScalingStudy", "Inspection", "ddp-train", "TestSupport"]),
  ],
  swiftLanguageModes: [.v5]
)
