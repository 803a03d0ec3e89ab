import Datasets
import Optimizers

extension TrainOption {
  /// Every `train` option, in the order of `--help` and the README's table. Adding an option is one row here and
  /// one property of `TrainingConfiguration`; `TrainOptionTableTests` fails until both, and the README, agree.
  public static let all: [TrainOption] = [
    // The data and the model.
    .choice(
      "dataset", \.dataset, property: "dataset", default: "`fashion-mnist`",
      help: "`synthetic` is a deterministic learnable problem generated in memory", inStudy: .passedOn),
    .path(
      "data-dir", "PATH", \.dataDirectory, property: "dataDirectory", expected: "a directory path",
      default: "`/usr/share/datasets/fashion-mnist`",
      help:
        "IDX files `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each plain or `.gz`; for `npz` the `.npz` file; for `npy` the directory of `train-images.npy`, `train-labels.npy`, `test-images.npy`, `test-labels.npy`; for `folder` the directory of `train/<class>/*.png` and `test/<class>/*.png` (see \"Your own data\"); required but for `fashion-mnist`",
      inStudy: .passedOn),
    .value(
      "layout", "nhwc|nchw", \.layout, property: "layout", expected: "nhwc or nchw", default: "from the shape",
      help:
        "which axis of 4-axis NumPy images holds the channels: `nhwc` [N, H, W, C] or `nchw` [N, C, H, W]; by default the one of size 1, 3 or 4",
      inStudy: .passedOn, parse: { ImageLayout(rawValue: $0).map { .some($0) } }, show: { $0?.rawValue }),
    .number(
      "classes", "N", \.classes, property: "classes", default: "largest label + 1",
      help: "`npz`, `npy`: the number of classes (labels must be below it)", inStudy: .passedOn),
    .path(
      "class-names", "FILE", \.classNames, property: "classNames", expected: "a file path", default: "none",
      help:
        "one class name per line, in label order (`folder`: the folders' names by default); `eval` and `predict` show them",
      inStudy: .passedOn),
    .path(
      "cache-dir", "DIR", \.cacheDirectory, property: "cacheDirectory", expected: "a directory path",
      default: "`$XDG_CACHE_HOME/ddp-train` or `~/.cache/ddp-train`",
      help:
        "where decoded samples (`.gz` IDX files, compressed `.npz` members, PNG folders) are kept once per host for the host's ranks to map",
      inStudy: .passedOn),
    .choice(
      "data-copies", \.dataCopies, property: "dataCopies", default: "`host`",
      help:
        "`host`: the ranks of a host share one memory-mapped copy of the samples; `rank`: each rank reads its own (no cache, but for `folder`)",
      inStudy: .passedOn),
    .number(
      "synthetic-train", "N", \.synthetic.trainCount, property: "synthetic.trainCount", default: "8192",
      help: "`--dataset synthetic`: training samples", inStudy: .passedOn),
    .number(
      "synthetic-test", "N", \.synthetic.testCount, property: "synthetic.testCount", default: "2048",
      help: "`--dataset synthetic`: test samples", inStudy: .passedOn),
    .number(
      "synthetic-seed", "S", \.synthetic.seed, property: "synthetic.seed", default: "2017",
      help: "`--dataset synthetic`: the seed of the data itself (not of the run)", inStudy: .passedOn),
    .value(
      "model", "SPEC", \.model, property: "model", expected: "a model spec like mlp, mlp:H1,H2,..., cnn or seq:...",
      default: "`mlp`",
      help:
        "`mlp` = 784-256-128-10 with ReLU; `mlp:512,256,64` sets the hidden sizes (`mlp:` = none); `cnn` = the default convolutional network; `seq:TOKENS` any sequence of layers (see \"Models\")",
      inStudy: .passedOn, parse: { $0.isEmpty ? nil : $0 }, show: { $0 }),
    .choice(
      "batch-norm", \.batchNorm, property: "batchNorm", default: "`local`",
      help:
        "which samples each `bn` layer's training statistics cover: `local` each worker's B (Goyal et al.), `sync` all K·B of a micro-batch (PyTorch's SyncBatchNorm; K×B ≡ 1×(K·B)); see \"Batch normalisation\"",
      inStudy: .passedOn),
    .number(
      "random-crop", "P", \.randomCrop, property: "randomCrop", expected: "a number of pixels >= 0", default: "0",
      help:
        "training images zero-padded by P pixels and cropped back at a random place (torchvision's `RandomCrop(size, padding=P)`); 0 is off; see \"Augmentation\"",
      inStudy: .passedOn),
    .flag(
      "random-flip", \.randomFlip, property: "randomFlip", default: "off",
      help: "training images mirrored left to right with probability ½ (`RandomHorizontalFlip()`)",
      inStudy: .passedOn),
    .value(
      "normalize", "MEANS:STDS", \.normalize, property: "normalize",
      expected:
        "per-channel means and standard deviations like 0.286:0.353 (comma lists, one value per channel, stds > 0)",
      default: "none",
      help:
        "x = (pixel/255 − mean)/std per channel, in training, `eval` and `predict` (e.g. `0.286:0.353` for Fashion-MNIST)",
      inStudy: .passedOn, parse: { Normalization($0).map { .some($0) } }, show: { $0?.description }),
    .number(
      "label-smoothing", "ε", \.labelSmoothing, property: "labelSmoothing", default: "0",
      help:
        "the training loss's target is (1 − ε)·one-hot + ε/classes (`nn.CrossEntropyLoss(label_smoothing=ε)`); test losses stay plain cross-entropy",
      inStudy: .passedOn),
    // The batch and the length of the run.
    .number(
      "batch-size", "B", \.batchSize, property: "batchSize", default: "64",
      help: "per-worker mini-batch, 1 to the shard size N/K; the global batch is K·B", inStudy: .setPerRun),
    .number(
      "accumulate", "M", \.accumulate, property: "accumulate", default: "1",
      help: "micro-batches per step: global batch K·B·M", inStudy: .setPerRun),
    .number(
      "epochs", "E", \.epochs, property: "epochs", default: "10", help: "epochs to train", inStudy: .setPerRun),
    .number(
      "max-steps", "N", \.maxSteps, property: "maxSteps", default: "none",
      help: "stop after N optimizer steps instead (also the cosine horizon)", inStudy: .no),
    // The learning rate and the update.
    .number(
      "lr", "η", \.learningRate, property: "learningRate", default: "0.05",
      help: "the learning rate for a global batch of `--base-batch`", inStudy: .passedOn),
    .number(
      "base-batch", "n", \.baseBatch, property: "baseBatch", default: "64", help: "the global batch η is meant for",
      inStudy: .passedOn),
    .choice(
      "lr-scaling", \.lrScaling, property: "lrScaling", default: "`linear`", help: "peak = η·KB/n, η·sqrt(KB/n), or η",
      inStudy: .setPerRun),
    .number(
      "warmup-epochs", "W", \.warmupEpochs, property: "warmupEpochs", default: "2",
      help: "ramp linearly from η to the peak over round(W·steps per epoch) steps; fractions allowed, 0 = none",
      inStudy: .passedOn),
    .value(
      "schedule", "constant|cosine|step:E1,E2,...", \.schedule, property: "schedule",
      expected: "constant, cosine or step:E1,E2,... (epochs)", default: "`cosine`",
      help: "after warmup: hold, cosine to 0 at the last step, or ÷10 at each epoch Ei", inStudy: .passedOn,
      parse: { try? LRDecay(parsing: $0) }, show: { $0.description }),
    .choice(
      "optimizer", \.optimizer, property: "optimizer", default: "`sgd`",
      help:
        "`lars` (You et al. 2017): SGD with a per-layer trust ratio on weight tensors; `adamw`: `torch.optim.AdamW`; "
        + "`lamb`: apex's FusedLAMB (see \"Optimizers\")",
      inStudy: .setPerRun),
    .number(
      "momentum", "μ", \.momentum, property: "momentum", default: "0.9",
      help: "sgd, lars: `torch.optim.SGD` semantics (an error with adamw and lamb, whose momentum is β1)",
      inStudy: .passedOn),
    .flag(
      "nesterov", \.nesterov, property: "nesterov", default: "off",
      help: "sgd, lars: Nesterov momentum (an error with adamw and lamb)", inStudy: .passedOn),
    .number(
      "weight-decay", "λ", \.weightDecay, property: "weightDecay",
      default: "0.0005 (sgd, lars), 0.01 (adamw, lamb)",
      help:
        "sgd, lars: added to the gradient (`torch.optim.SGD`); adamw: w·(1 − lr·λ) first; lamb: + λ·w in the update",
      inStudy: .passedOn),
    .flag(
      "bias-decay", \.biasDecay, property: "biasDecay", default: "on",
      help: "off: no weight decay on biases and batch-norm γ, β (the rank-1 tensors), as Goyal et al.",
      inStudy: .passedOn),
    .value(
      "betas", "β1,β2", \.betas, property: "betas", expected: "two numbers in [0, 1) like 0.9,0.999",
      default: "0.9,0.999", help: "adamw, lamb: decay rates of the gradient's moment estimates", inStudy: .no,
      parse: { Betas(parsing: $0).map { .some($0) } }, show: { $0?.description }),
    .number(
      "eps", "ε", \.eps, property: "eps", default: "1e-8 (adamw), 1e-6 (lamb)",
      help: "adamw, lamb: added to the denominator √v̂", inStudy: .no),
    .number(
      "trust-coefficient", "tr", \.trustCoefficient, property: "trustCoefficient", default: "0.001",
      help: "LARS's trust coefficient: η_l = tr·‖w‖/(‖g‖ + wd·‖w‖)", inStudy: .passedOn),
    .number(
      "seed", "S", \.seed, property: "seed", default: "0", help: "initial weights and every epoch's permutation",
      inStudy: .passedOn),
    // Checkpoints.
    .path(
      "checkpoint-dir", "DIR", \.checkpointDirectory, property: "checkpointDirectory", expected: "a directory path",
      default: "none", help: "checkpoints in `DIR/step-<8 digits>/` (rank 0)", rankZeroOnly: true, inStudy: .no),
    .number(
      "checkpoint-every", "N", \.checkpointEvery, property: "checkpointEvery", default: "0",
      help: "every N steps besides the final one (0: only the final one)", inStudy: .no),
    .flag(
      "resume", \.resume, property: "resume", default: "off",
      help: "continue from the newest checkpoint in DIR that verifies; none is an error", inStudy: .no),
    .flag(
      "resume-if-any", \.resumeIfAny, property: "resumeIfAny", default: "off",
      help:
        "`--resume` when DIR holds a checkpoint, else a fresh start: one command for a job that may run again (a requeued batch job)",
      inStudy: .no),
    .flag(
      "start-fresh", \.startFresh, property: "startFresh", default: "off",
      help: "train anew although DIR holds checkpoints (same-step folders are replaced); without it, that is an error",
      inStudy: .no),
    .number(
      "keep", "N", \.keep, property: "keep", default: "all",
      help: "keep only the newest N checkpoints; older ones go only after a newer one is complete", inStudy: .no),
    // Failure detection.
    .number(
      "step-timeout", "S", \.stepTimeout, property: "stepTimeout", expected: "a number of seconds",
      default: "automatic",
      help: "end the job when a rank makes no progress for S seconds (automatic: 60 s, or 25 typical steps if longer)",
      inStudy: .no),
    .number(
      "check-consistency", "N", \.checkConsistency, property: "checkConsistency", default: "0",
      help:
        "check every N steps that all ranks hold identical parameters (always checked before a checkpoint and at the end)",
      inStudy: .no),
    // Metrics.
    .path(
      "metrics", "PATH", \.metricsPath, property: "metricsPath", expected: "a file path", default: "none",
      help: "JSON Lines metrics (appended; rank 0)", rankZeroOnly: true, inStudy: .no),
    .number(
      "log-every", "N", \.logEvery, property: "logEvery", default: "1",
      help: "a `step` metrics event every N steps (its lr, loss)", inStudy: .setPerRun),
    // How the work is done.
    .number(
      "blas-threads", "T", \.blasThreads, property: "blasThreads", default: "1", help: "OpenBLAS threads per rank",
      inStudy: .no),
    .flag(
      "shared-memory", \.sharedMemoryReduction, property: "sharedMemoryReduction", default: "on",
      help:
        "sum gradients through memory the ranks of a host share instead of MPI's all-reduce (all ranks on one host; across hosts, the first of the two levels); off: MPI's collectives",
      inStudy: .no),
    .flag(
      "overlap", \.overlapCommunication, property: "overlapCommunication", default: "off",
      help:
        "overlap MPI's gradient all-reduce with backward (buckets in reverse layer order, non-blocking all-reduce); uses MPI, so it turns the shared-memory reduction off; off by default because it did not measure faster here (BENCHMARKS.md)",
      inStudy: .no),
    .flag(
      "overlap-hosts", \.overlapAcrossHosts, property: "overlapAcrossHosts",
      default: "on with fp32, off with `--compress`",
      help:
        "ranks on several hosts: start each bucket's sum across hosts as soon as its host has summed it, while the backward computes the layers below; by default on with fp32 (54-70% faster on rate-limited links) and off with `--compress` (within 7% either way there; see \"Across hosts\")",
      inStudy: .no),
    .choice(
      "compress", \.compress, property: "compress", default: "`none`",
      help:
        "what crosses hosts: fp32, or bfloat16 / half precision with error feedback (half the bytes; sums stay fp32; see \"Across hosts\")",
      inStudy: .no),
    .flag(
      "deterministic", \.deterministic, property: "deterministic", default: "off",
      help:
        "sum gradients in rank order, so results do not depend on MPI's algorithm (the shared-memory reduction already does; with `--no-shared-memory`, by an all-gather)",
      inStudy: .no),
    .number(
      "simulate-workers", "K", \.simulateWorkers, property: "simulateWorkers", default: "none",
      help:
        "compute a K-worker run in this one process (debugging): bitwise the weights of `mpirun -np K ... --deterministic`",
      inStudy: .no),
  ]
}
