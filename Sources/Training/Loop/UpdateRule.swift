import GradientExchange
import Layers
import Optimizers

/// Step 4's rule: the optimizer the configuration names, over the model's parameters. When it can add the two
/// addends a reducer may leave of the summed gradient (`TwoAddendOptimizer`), it is also held as one, cast once
/// here rather than at every step.
struct UpdateRule {
  let optimizer: any Optimizer
  private let twoAddend: (any TwoAddendOptimizer)?

  init(configuration: TrainingConfiguration, model: Sequential) {
    let count = model.parameterCount
    let decay = WeightDecayCoverage(views: model.views, biases: configuration.biasDecay)
    let adam = AdamOptions(
      beta1: configuration.resolvedBetas.first, beta2: configuration.resolvedBetas.second,
      eps: configuration.resolvedEps, weightDecay: configuration.resolvedWeightDecay)
    switch configuration.optimizer {
    case .sgd:
      optimizer = SGD(
        parameterCount: count,
        options: SGDOptions(
          momentum: configuration.resolvedMomentum, weightDecay: configuration.resolvedWeightDecay,
          nesterov: configuration.resolvedNesterov), decay: decay)
    case .lars:
      optimizer = LARS(
        parameterCount: count, layers: model.views,
        options: LARSOptions(
          momentum: configuration.resolvedMomentum, weightDecay: configuration.resolvedWeightDecay,
          trustCoefficient: configuration.trustCoefficient, nesterov: configuration.resolvedNesterov),
        decaysBiases: configuration.biasDecay)
    case .adamw:
      optimizer = AdamW(parameterCount: count, options: adam, decay: decay)
    case .lamb:
      optimizer = LAMB(
        parameterCount: count, tensors: model.views, options: adam, decaysBiases: configuration.biasDecay)
    }
    twoAddend = optimizer as? TwoAddendOptimizer
  }

  /// Whether the update can take the parameters' summed gradient as two addends (`ReducedGradients.addends`).
  var takesAddends: Bool { twoAddend != nil }

  /// One optimizer step of `parameters` on `reduced` with `learningRate`; returns whether every gradient was finite.
  func apply(_ reduced: ReducedGradients, to parameters: UnsafeMutablePointer<Float>, learningRate: Float) -> Bool {
    if let (first, second) = reduced.addends, let twoAddend {
      return twoAddend.step(parameters: parameters, gradients: first, plus: second, learningRate: learningRate)
    }
    precondition(reduced.addends == nil, "an optimizer that cannot add the gradient's addends was handed them")
    return optimizer.step(parameters: parameters, gradients: reduced.sums.pointer, learningRate: learningRate)
  }
}
