import Foundation

/// Writes `DIR/cluster.yaml` for `ddp-train launch`: this host with two slots, a short synthetic run of `maxSteps`
/// steps (2 workers × 16); returns its path.
func writeLocalLaunchConfig(in directory: URL, maxSteps: Int) throws -> String {
  let path = directory.appendingPathComponent("cluster.yaml").path
  try """
  cluster:
    hosts:
      - name: localhost
        slots: 2
  train:
    dataset: synthetic
    synthetic-train: 512
    model: mlp:16
    batch-size: 16
    max-steps: \(maxSteps)
  """.write(toFile: path, atomically: true, encoding: .utf8)
  return path
}
