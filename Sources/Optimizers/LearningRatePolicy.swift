#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// How the learning rate follows the global batch size.
public enum LRScaling: String, Codable, CaseIterable, Sendable {
  /// η·r (Goyal et al.), r = globalBatch / baseBatch.
  case linear
  /// η·√r.
  case sqrt
  /// η, whatever the batch.
  case none
}

/// The learning rate as a pure function of the optimizer step t (0-based). No state: resuming needs only
/// the step, and every rank computes the same value.
public struct LearningRatePolicy: Codable, Equatable, Sendable {
  /// η, the lr for a global batch of baseBatch.
  public var baseLearningRate: Double
  /// n.
  public var baseBatch: Int
  /// K·B·M: ranks × per-rank batch × accumulation steps.
  public var globalBatch: Int
  public var scaling: LRScaling
  /// W (fractions allowed, 0 = none).
  public var warmupEpochs: Double
  public var decay: LRDecay
  public var stepsPerEpoch: Int
  /// T, the run's last step is T−1.
  public var totalSteps: Int

  public init(
    baseLearningRate: Double, baseBatch: Int, globalBatch: Int, scaling: LRScaling, warmupEpochs: Double,
    decay: LRDecay, stepsPerEpoch: Int, totalSteps: Int
  ) {
    self.baseLearningRate = baseLearningRate
    self.baseBatch = baseBatch
    self.globalBatch = globalBatch
    self.scaling = scaling
    self.warmupEpochs = warmupEpochs
    self.decay = decay
    self.stepsPerEpoch = stepsPerEpoch
    self.totalSteps = totalSteps
  }

  /// Checks the values a user can get wrong; the message names the option.
  public func validate() throws(LRPolicyError) {
    guard baseLearningRate.isFinite, baseLearningRate > 0 else {
      throw LRPolicyError("invalid --lr \(baseLearningRate): expected a number > 0")
    }
    guard baseBatch > 0 else {
      throw LRPolicyError("invalid --base-batch \(baseBatch): expected a whole number > 0")
    }
    guard globalBatch > 0 else {
      throw LRPolicyError("invalid global batch \(globalBatch): expected > 0")
    }
    guard warmupEpochs.isFinite, warmupEpochs >= 0 else {
      throw LRPolicyError(
        "invalid --warmup-epochs \(warmupEpochs): expected a number >= 0 (0 = no warmup)")
    }
    guard stepsPerEpoch > 0 else {
      throw LRPolicyError("invalid steps per epoch \(stepsPerEpoch): expected > 0")
    }
    guard totalSteps >= 0 else {
      throw LRPolicyError("invalid total steps \(totalSteps): expected >= 0")
    }
  }

  /// r = globalBatch/baseBatch.
  public var batchRatio: Double { Double(globalBatch) / Double(baseBatch) }

  /// linear: η·r, sqrt: η·√r, none: η.
  public var peakLR: Double {
    switch scaling {
    case .linear: return baseLearningRate * batchRatio
    case .sqrt: return baseLearningRate * batchRatio.squareRoot()
    case .none: return baseLearningRate
    }
  }

  /// round(W·stepsPerEpoch), halves away from zero.
  public var warmupSteps: Int {
    Int((warmupEpochs * Double(stepsPerEpoch)).rounded())
  }

  /// The first step at which each milestone of a step decay applies: round(m·stepsPerEpoch).
  public var milestoneSteps: [Int] {
    guard case .step(let milestones) = decay else { return [] }
    return milestones.map { Int(($0 * Double(stepsPerEpoch)).rounded()) }
  }

  /// t < warmupSteps: η + (peak − η)·t/warmupSteps (step 0 uses η; the ramp reaches the peak at t = warmupSteps).
  /// Then constant: peak; cosine: peak·½(1 + cos(π·(t − warmupSteps)/max(1, T − warmupSteps))), reaching 0 at
  /// t = T and staying 0 after; step: peak·0.1^(number of milestones m with t ≥ round(m·stepsPerEpoch)).
  public func learningRate(atStep t: Int) -> Double {
    let peak = peakLR
    let warmup = warmupSteps
    if t < warmup {
      return baseLearningRate + (peak - baseLearningRate) * Double(t) / Double(warmup)
    }
    switch decay {
    case .constant:
      return peak
    case .cosine:
      let progress = min(1, Double(t - warmup) / Double(max(1, totalSteps - warmup)))
      return peak * 0.5 * (1 + cos(Double.pi * progress))
    case .step:
      let passed = milestoneSteps.reduce(0) { t >= $1 ? $0 + 1 : $0 }
      return peak * pow(0.1, Double(passed))
    }
  }

  /// Lines for the console, e.g. "lr policy: η=0.05 at n=64, linear scaling ×4 → peak 0.2; warmup 2 epochs
  /// (1874 steps) from 0.05; then cosine to 0 at step 9370".
  public var summaryLines: [String] {
    let f = Self.format
    var line = "lr policy: η=\(f(baseLearningRate)) at n=\(baseBatch), "
    switch scaling {
    case .linear: line += "linear scaling ×\(f(batchRatio))"
    case .sqrt: line += "sqrt scaling ×√\(f(batchRatio))"
    case .none: line += "no scaling (global batch \(globalBatch))"
    }
    line += " → peak \(f(peakLR)); "
    if warmupSteps > 0 {
      line += "warmup \(f(warmupEpochs)) epochs (\(warmupSteps) steps) from \(f(baseLearningRate)); then "
    } else {
      line += "no warmup; "
    }
    switch decay {
    case .constant:
      line += "constant"
    case .cosine:
      line += "cosine to 0 at step \(totalSteps)"
    case .step(let milestones):
      let pairs = zip(milestones, milestoneSteps).map { "epoch \(f($0)) (step \($1))" }
      line += "×0.1 at " + pairs.joined(separator: ", ")
    }
    return [line]
  }

  /// Six significant digits, without trailing zeros: 0.2, 0.0707107, 4.
  static func format(_ x: Double) -> String {
    guard x.isFinite, x != 0 else { return String(x) }
    let digits = 6 - Int((log10(abs(x))).rounded(.down)) - 1
    if digits <= 0 {
      let rounded = x.rounded()
      return abs(rounded) < 1e15 ? String(Int(rounded)) : String(rounded)
    }
    let scale = pow(10, Double(min(digits, 22)))
    let rounded = (x * scale).rounded() / scale
    return rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
  }
}
