import Foundation

/// The confusion matrix as a heat map: rows true, columns predicted, each cell's count written in it and its
/// colour by the share of its row (so rare and common classes read alike), the diagonal in green and mistakes
/// in red, with the class names on both axes.
extension ConfusionMatrix {
  /// A cell's colour: white at 0, full at the whole row.
  func cellColor(true label: Int, predicted: Int) -> (r: Double, g: Double, b: Double) {
    let row = counts[label].reduce(0, +)
    let share = row == 0 ? 0 : Double(counts[label][predicted]) / Double(row)
    // Mistakes are rarer than right answers: their scale saturates at a quarter of the row.
    let strength = label == predicted ? share : min(1, share * 4)
    let full = label == predicted ? (r: 0.13, g: 0.55, b: 0.13) : (r: 0.84, g: 0.15, b: 0.16)
    return (1 - strength * (1 - full.r), 1 - strength * (1 - full.g), 1 - strength * (1 - full.b))
  }

  /// Layout shared by both formats, in pixels.
  struct HeatMapLayout {
    let cell = 46
    let labelWidth: Int
    let top = 64
    var left: Int { labelWidth + 12 }
    func width(_ classes: Int) -> Int { left + classes * cell + 20 }
    func height(_ classes: Int) -> Int { top + classes * cell + 110 }
  }

  public func heatMapSVG(names: [String], title: String) -> String {
    let layout = HeatMapLayout(labelWidth: 8 * (names.map(\.count).max() ?? 8))
    let width = layout.width(classCount)
    let height = layout.height(classCount)
    let escape = SVGLineChart.escape
    var svg = """
      <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" viewBox="0 0 \(width) \(height)" font-family="Helvetica, Arial, sans-serif" font-size="12">
      <rect width="100%" height="100%" fill="white"/>
      <text x="\(width / 2)" y="22" text-anchor="middle" font-size="15" font-weight="bold">\(escape(title))</text>
      <text x="\(layout.left + classCount * layout.cell / 2)" y="\(layout.top - 10)" text-anchor="middle">predicted class →</text>

      """
    for label in 0..<classCount {
      let y = layout.top + label * layout.cell
      svg +=
        "<text x=\"\(layout.left - 6)\" y=\"\(y + layout.cell / 2 + 4)\" text-anchor=\"end\">\(escape(names[label]))</text>\n"
      for predicted in 0..<classCount {
        let x = layout.left + predicted * layout.cell
        let color = cellColor(true: label, predicted: predicted)
        let fill = String(
          format: "#%02x%02x%02x", Int(color.r * 255), Int(color.g * 255), Int(color.b * 255))
        let dark = color.g < 0.55 || color.r < 0.55
        svg +=
          "<rect x=\"\(x)\" y=\"\(y)\" width=\"\(layout.cell)\" height=\"\(layout.cell)\" fill=\"\(fill)\" stroke=\"#ccc\"/>\n"
        svg +=
          "<text x=\"\(x + layout.cell / 2)\" y=\"\(y + layout.cell / 2 + 4)\" text-anchor=\"middle\" fill=\"\(dark ? "white" : "black")\">\(counts[label][predicted])</text>\n"
      }
    }
    let bottom = layout.top + classCount * layout.cell
    for predicted in 0..<classCount {
      let x = layout.left + predicted * layout.cell + layout.cell / 2
      svg +=
        "<text x=\"\(x)\" y=\"\(bottom + 12)\" text-anchor=\"end\" transform=\"rotate(-45 \(x) \(bottom + 12))\">\(escape(names[predicted]))</text>\n"
    }
    svg +=
      "<text x=\"12\" y=\"\(layout.top + classCount * layout.cell / 2)\" transform=\"rotate(-90 12 \(layout.top + classCount * layout.cell / 2))\" text-anchor=\"middle\">true class</text>\n"
    svg +=
      "<text x=\"\(width / 2)\" y=\"\(height - 12)\" text-anchor=\"middle\">\(String(format: "accuracy %.4f: %d of %d right", accuracy, correct, total))</text>\n"
    svg += "</svg>\n"
    return svg
  }

  public func heatMapPNG(names: [String], title: String) -> [UInt8] {
    let rowNames = names.enumerated().map { "\($0.element) \($0.offset)" }
    let layout = HeatMapLayout(
      labelWidth: BitmapFont.width(of: rowNames.max { $0.count < $1.count } ?? "", scale: 1))
    let width = layout.width(classCount)
    let height = layout.height(classCount) - 30
    var image = RasterImage(width: width, height: height, background: .white)
    // The title at 2× when it fits, else 1×, cut short when even that does not fit.
    let titleScale = BitmapFont.width(of: title, scale: 2) <= width - 16 ? 2 : 1
    let fitting = String(title.prefix((width - 16) / (BitmapFont.advance * titleScale)))
    image.drawText(
      fitting, x: (width - BitmapFont.width(of: fitting, scale: titleScale)) / 2, y: 12, color: .black,
      scale: titleScale)
    let caption = "rows: true class, columns: predicted class"
    image.drawText(caption, x: layout.left, y: layout.top - 14, color: .black, scale: 1)
    for label in 0..<classCount {
      let y = layout.top + label * layout.cell
      let name = rowNames[label]
      image.drawText(
        name, x: layout.left - 6 - BitmapFont.width(of: name, scale: 1), y: y + layout.cell / 2 - 3, color: .black,
        scale: 1)
      for predicted in 0..<classCount {
        let x = layout.left + predicted * layout.cell
        let color = cellColor(true: label, predicted: predicted)
        image.fill(
          x: x, y: y, width: layout.cell, height: layout.cell,
          color: RGB(r: UInt8(color.r * 255), g: UInt8(color.g * 255), b: UInt8(color.b * 255)))
        image.strokeRect(x: x, y: y, width: layout.cell, height: layout.cell, color: .gray, thickness: 1)
        let text = String(counts[label][predicted])
        let dark = color.g < 0.55 || color.r < 0.55
        image.drawText(
          text, x: x + (layout.cell - BitmapFont.width(of: text, scale: 1)) / 2, y: y + layout.cell / 2 - 3,
          color: dark ? .white : .black, scale: 1)
      }
    }
    // Column names: numbered under the columns, with a key (there is no room for rotated text).
    let bottom = layout.top + classCount * layout.cell
    for predicted in 0..<classCount {
      let text = String(predicted)
      image.drawText(
        text, x: layout.left + predicted * layout.cell + (layout.cell - BitmapFont.width(of: text, scale: 1)) / 2,
        y: bottom + 6, color: .black, scale: 1)
    }
    let key = names.enumerated().map { "\($0.offset) \($0.element)" }
    for (line, start) in stride(from: 0, to: key.count, by: 5).enumerated() {
      image.drawText(
        key[start..<min(start + 5, key.count)].joined(separator: "  "), x: 8, y: bottom + 24 + 12 * line,
        color: .black, scale: 1)
    }
    let summary = String(format: "accuracy %.4f: %d of %d right", accuracy, correct, total)
    image.drawText(summary, x: 8, y: bottom + 56, color: .black, scale: 1)
    return image.png()
  }
}
