import Foundation

/// A small line chart rendered as a standalone SVG file (any browser shows it): a title, both axes with ticks
/// and labels, grid lines, one line per series (gaps where a value is missing), optional markers and dashed
/// reference lines, and a legend to the right of the plot.
public struct SVGLineChart: Sendable {
  public enum Scale: Sendable {
    case linear
    /// Ticks at powers of two, labelled as integers (batch sizes, worker counts).
    case log2
  }

  public enum Marker: Sendable {
    case none
    case circle
    /// A point that is not a normal value (e.g. a diverged run drawn at chance accuracy).
    case cross
  }

  public struct Point: Sendable {
    public var x: Double
    /// nil leaves a gap in the line.
    public var y: Double?
    public var marker: Marker
    public init(x: Double, y: Double?, marker: Marker = .circle) {
      self.x = x
      self.y = y
      self.marker = marker
    }
  }

  public struct Series: Sendable {
    public var name: String
    public var points: [Point]
    public var dashed: Bool
    public init(name: String, points: [Point], dashed: Bool = false) {
      self.name = name
      self.points = points
      self.dashed = dashed
    }
  }

  public struct ReferenceLine: Sendable {
    public var y: Double
    public var label: String
    public init(y: Double, label: String) {
      self.y = y
      self.label = label
    }
  }

  public var title: String
  public var xLabel: String
  public var yLabel: String
  public var xScale: Scale = .linear
  public var series: [Series] = []
  /// Fixed y range; by default the data's, rounded out to tick marks.
  public var yRange: ClosedRange<Double>? = nil
  /// Fixed x tick positions (e.g. exactly the batches studied); by default chosen from the data.
  public var xTicks: [Double]? = nil
  public var referenceLines: [ReferenceLine] = []
  /// A line under the title (e.g. the cross marker's meaning).
  public var note: String? = nil
  public var width = 820.0
  public var height = 480.0

  public init(title: String, xLabel: String, yLabel: String) {
    self.title = title
    self.xLabel = xLabel
    self.yLabel = yLabel
  }

  static let palette = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#7f7f7f", "#bcbd22",
  ]

  /// The whole SVG document.
  public func render() -> String {
    let left = 80.0
    let right = width - 210
    let top = note == nil ? 50.0 : 66.0
    let bottom = height - 60
    let xs = series.flatMap { $0.points.map(\.x) }.filter(\.isFinite)
    let ys =
      series.flatMap { $0.points.compactMap(\.y) }.filter(\.isFinite) + referenceLines.map(\.y)

    // x axis.
    var xLow = (xTicks ?? xs).min() ?? 0
    var xHigh = (xTicks ?? xs).max() ?? 1
    let xTickValues: [Double]
    switch xScale {
    case .linear:
      if xHigh <= xLow { xHigh = xLow + 1 }
      xTickValues = xTicks ?? Self.niceTicks(low: xLow, high: xHigh)
      xLow = min(xLow, xTickValues.first ?? xLow)
      xHigh = max(xHigh, xTickValues.last ?? xHigh)
    case .log2:
      xLow = max(xLow, 1e-9)
      if xHigh <= xLow { xHigh = xLow * 2 }
      xTickValues =
        xTicks
        ?? stride(
          from: Foundation.log2(xLow).rounded(.down), through: Foundation.log2(xHigh).rounded(.up),
          by: 1
        ).map {
          pow(2, $0)
        }
      xLow = min(xLow, xTickValues.first ?? xLow)
      xHigh = max(xHigh, xTickValues.last ?? xHigh)
    }
    func transform(_ x: Double) -> Double { xScale == .log2 ? Foundation.log2(x) : x }
    let (tLow, tHigh) = (transform(xLow), transform(xHigh))
    let xPad = (tHigh - tLow) * 0.03
    func px(_ x: Double) -> Double {
      left + (transform(x) - tLow + xPad) / (tHigh - tLow + 2 * xPad) * (right - left)
    }

    // y axis.
    var yLow = yRange?.lowerBound ?? (ys.min() ?? 0)
    var yHigh = yRange?.upperBound ?? (ys.max() ?? 1)
    if yHigh <= yLow {
      yHigh = yLow + max(abs(yLow) * 0.1, 1e-9)
      yLow -= max(abs(yLow) * 0.1, 1e-9)
    }
    var yTickValues = Self.niceTicks(low: yLow, high: yHigh)
    if yRange == nil, yTickValues.count >= 2 {
      let step = yTickValues[1] - yTickValues[0]
      yLow = (yLow / step).rounded(.down) * step
      yHigh = (yHigh / step).rounded(.up) * step
      yTickValues = Self.niceTicks(low: yLow, high: yHigh)
    }
    func py(_ y: Double) -> Double { bottom - (y - yLow) / (yHigh - yLow) * (bottom - top) }

    var svg = """
      <svg xmlns="http://www.w3.org/2000/svg" width="\(f(width))" height="\(f(height))" viewBox="0 0 \(f(width)) \(f(height))" font-family="Helvetica, Arial, sans-serif" font-size="12">
      <rect width="100%" height="100%" fill="white"/>
      <text x="\(f((left + right) / 2))" y="24" text-anchor="middle" font-size="15" font-weight="bold">\(Self.escape(title))</text>

      """
    if let note {
      svg +=
        "<text x=\"\(f((left + right) / 2))\" y=\"42\" text-anchor=\"middle\" fill=\"#555\">\(Self.escape(note))</text>\n"
    }
    // Grid, ticks and tick labels.
    let yStep = yTickValues.count >= 2 ? yTickValues[1] - yTickValues[0] : 1
    for value in yTickValues where value >= yLow - 1e-12 && value <= yHigh + 1e-12 {
      let y = py(value)
      svg +=
        "<line x1=\"\(f(left))\" y1=\"\(f(y))\" x2=\"\(f(right))\" y2=\"\(f(y))\" stroke=\"#e5e5e5\"/>\n"
      svg +=
        "<text x=\"\(f(left - 8))\" y=\"\(f(y + 4))\" text-anchor=\"end\">\(Self.tickLabel(value, step: yStep))</text>\n"
    }
    let xStep = xTickValues.count >= 2 ? xTickValues[1] - xTickValues[0] : 1
    for value in xTickValues {
      let x = px(value)
      svg +=
        "<line x1=\"\(f(x))\" y1=\"\(f(top))\" x2=\"\(f(x))\" y2=\"\(f(bottom))\" stroke=\"#f0f0f0\"/>\n"
      svg +=
        "<line x1=\"\(f(x))\" y1=\"\(f(bottom))\" x2=\"\(f(x))\" y2=\"\(f(bottom + 5))\" stroke=\"black\"/>\n"
      let label = xScale == .log2 ? Self.integerLabel(value) : Self.tickLabel(value, step: xStep)
      svg += "<text x=\"\(f(x))\" y=\"\(f(bottom + 19))\" text-anchor=\"middle\">\(label)</text>\n"
    }
    // Axes and their labels.
    svg +=
      "<line x1=\"\(f(left))\" y1=\"\(f(bottom))\" x2=\"\(f(right))\" y2=\"\(f(bottom))\" stroke=\"black\"/>\n"
    svg +=
      "<line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(bottom))\" stroke=\"black\"/>\n"
    svg +=
      "<text x=\"\(f((left + right) / 2))\" y=\"\(f(height - 16))\" text-anchor=\"middle\" font-size=\"13\">\(Self.escape(xLabel))</text>\n"
    let yMid = (top + bottom) / 2
    svg +=
      "<text x=\"20\" y=\"\(f(yMid))\" text-anchor=\"middle\" font-size=\"13\" transform=\"rotate(-90 20 \(f(yMid)))\">\(Self.escape(yLabel))</text>\n"

    for line in referenceLines where line.y >= yLow && line.y <= yHigh {
      let y = py(line.y)
      svg +=
        "<line x1=\"\(f(left))\" y1=\"\(f(y))\" x2=\"\(f(right))\" y2=\"\(f(y))\" stroke=\"#444\" stroke-dasharray=\"2 3\"/>\n"
      svg +=
        "<text x=\"\(f(right - 4))\" y=\"\(f(y - 4))\" text-anchor=\"end\" fill=\"#444\">\(Self.escape(line.label))</text>\n"
    }

    // The series, clipped to the plot area.
    svg +=
      "<defs><clipPath id=\"plot\"><rect x=\"\(f(left))\" y=\"\(f(top - 6))\" width=\"\(f(right - left))\" height=\"\(f(bottom - top + 12))\"/></clipPath></defs>\n"
    svg += "<g clip-path=\"url(#plot)\">\n"
    for (index, entry) in series.enumerated() {
      let color = Self.palette[index % Self.palette.count]
      let dash = entry.dashed ? " stroke-dasharray=\"6 4\"" : ""
      var path = ""
      var penDown = false
      for point in entry.points {
        guard let y = point.y, y.isFinite, point.x.isFinite, point.marker != .cross else {
          penDown = false
          continue
        }
        path += (penDown ? " L" : " M") + "\(f(px(point.x))) \(f(py(y)))"
        penDown = true
      }
      if !path.isEmpty {
        svg +=
          "<path d=\"\(path.dropFirst())\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(dash)/>\n"
      }
      for point in entry.points {
        guard let y = point.y, y.isFinite, point.x.isFinite else { continue }
        let (x, yy) = (px(point.x), py(y))
        switch point.marker {
        case .none: break
        case .circle:
          svg += "<circle cx=\"\(f(x))\" cy=\"\(f(yy))\" r=\"3.5\" fill=\"\(color)\"/>\n"
        case .cross:
          svg +=
            "<path d=\"M\(f(x - 5)) \(f(yy - 5)) L\(f(x + 5)) \(f(yy + 5)) M\(f(x - 5)) \(f(yy + 5)) L\(f(x + 5)) \(f(yy - 5))\" stroke=\"\(color)\" stroke-width=\"2.5\"/>\n"
        }
      }
    }
    svg += "</g>\n"

    // Legend.
    var legendY = top + 8
    for (index, entry) in series.enumerated() {
      let color = Self.palette[index % Self.palette.count]
      let dash = entry.dashed ? " stroke-dasharray=\"6 4\"" : ""
      svg +=
        "<line x1=\"\(f(right + 16))\" y1=\"\(f(legendY))\" x2=\"\(f(right + 44))\" y2=\"\(f(legendY))\" stroke=\"\(color)\" stroke-width=\"2\"\(dash)/>\n"
      svg +=
        "<text x=\"\(f(right + 50))\" y=\"\(f(legendY + 4))\">\(Self.escape(entry.name))</text>\n"
      legendY += 20
    }
    svg += "</svg>\n"
    return svg
  }

  /// About five round-numbered ticks covering [low, high].
  static func niceTicks(low: Double, high: Double, count: Double = 5) -> [Double] {
    let span = high - low
    guard span > 0, span.isFinite else { return [low] }
    let raw = span / count
    let magnitude = pow(10, (log10(raw)).rounded(.down))
    let fraction = raw / magnitude
    let step = (fraction < 1.5 ? 1 : fraction < 3 ? 2 : fraction < 7 ? 5 : 10) * magnitude
    var ticks: [Double] = []
    var value = (low / step).rounded(.up) * step
    while value <= high + step * 1e-9 {
      ticks.append(abs(value) < step * 1e-9 ? 0 : value)
      value += step
    }
    return ticks
  }

  static func tickLabel(_ value: Double, step: Double) -> String {
    let decimals = max(0, Int(-(log10(step)).rounded(.down)))
    if abs(value) >= 10_000 && decimals == 0 { return integerLabel(value) }
    return String(format: "%.\(decimals)f", value)
  }

  static func integerLabel(_ value: Double) -> String {
    abs(value) < 1e15 ? String(Int(value.rounded())) : String(value)
  }

  /// `text` safe inside XML character data and attribute values (every SVG this project writes uses it).
  public static func escape(_ text: String) -> String {
    var escaped = ""
    for character in text {
      switch character {
      case "&": escaped += "&amp;"
      case "<": escaped += "&lt;"
      case ">": escaped += "&gt;"
      case "\"": escaped += "&quot;"
      case "'": escaped += "&apos;"
      default: escaped.append(character)
      }
    }
    return escaped
  }

  private func f(_ value: Double) -> String { String(format: "%.1f", value) }
}
