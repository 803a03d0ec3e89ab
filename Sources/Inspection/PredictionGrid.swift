import Foundation

/// A picture of predictions: one tile per test sample, in a grid, each showing the image with its index, its true
/// class, the predicted class and that class's probability, framed green when right and red when wrong.
///
/// Both formats share one layout (`Layout`), so a PNG and an SVG of the same tiles line up pixel for pixel:
///
///     margin, title "<right> of <n> right", then rows of cells, `gap` apart:
///     ┌──────────────────────────┐  each cell: `pad`, the image (`scale`× its pixels, centred),
///     │        [  image  ]       │  then two text lines at 1× the 5×7 font:
///     │ #42 true: Ankle boot     │    "#<index> true: <trueName>"
///     │ pred: Sneaker 61%        │    "pred: <predictedName> <p>%"  (red when wrong)
///     └──────────────────────────┘  border: 2 px green (right) or 4 px red (wrong)
///
/// Cells are as wide as the widest image or label among the tiles (class names run to 11 characters,
/// "T-shirt/top"), so every label fits, and all cells have one size so the grid's columns line up.
public enum PredictionGrid {
  /// One sample to draw.
  public struct Tile: Equatable, Sendable {
    /// Values in 0 ... 1, `[channels, height, width]`. One channel is an intensity where 1 is ink (drawn dark on a
    /// light page, as in Fashion-MNIST and MNIST); three are red, green and blue, drawn as they are.
    public var pixels: [Float]
    public var width: Int
    public var height: Int
    /// 1 (gray) or 3 (colour).
    public var channels: Int
    /// The sample's index in its test set.
    public var index: Int
    public var trueName: String
    public var predictedName: String
    /// The predicted class's probability, 0 ... 1 (shown as a whole percentage).
    public var probability: Double
    public var correct: Bool

    public init(
      pixels: [Float], width: Int, height: Int, channels: Int = 1, index: Int, trueName: String,
      predictedName: String, probability: Double, correct: Bool
    ) {
      precondition(channels == 1 || channels == 3, "a tile is gray or colour")
      precondition(pixels.count == channels * width * height, "a tile holds channels × height × width values")
      self.pixels = pixels
      self.channels = channels
      self.width = width
      self.height = height
      self.index = index
      self.trueName = trueName
      self.predictedName = predictedName
      self.probability = probability
      self.correct = correct
    }

    /// The first label line, "#<index> true: <trueName>".
    public var trueLine: String { "#\(index) true: \(trueName)" }
    /// The second label line, "pred: <predictedName> <p>%", p rounded to a whole percent.
    public var predictedLine: String { "pred: \(predictedName) \(PredictionGrid.percent(probability))" }
  }

  /// The grid as a PNG: `columns` tiles a row (fewer when there are fewer tiles), each image enlarged `scale`
  /// times (at least 2, so 28×28 samples stay readable).
  public static func png(_ tiles: [Tile], columns: Int = 8, scale: Int = 3) -> [UInt8] {
    let layout = Layout(tiles, columns: columns, scale: scale)
    var image = RasterImage(width: layout.width, height: layout.height, background: .white)
    let title = layout.title
    image.drawText(title, x: Layout.margin, y: Layout.margin, color: .black, scale: Layout.titleScale)
    for (position, tile) in tiles.enumerated() {
      let cell = layout.cellOrigin(position)
      let frame = layout.imageFrame(tile, position: position)
      if tile.width > 0 && tile.height > 0 {
        image.strokeRect(
          x: frame.x - 1, y: frame.y - 1, width: frame.width + 2, height: frame.height + 2, color: Layout.imageEdge,
          thickness: 1)
        draw(tile, into: &image, atX: frame.x, y: frame.y, scale: layout.scale)
      }
      let text = layout.textOrigin(position)
      image.drawText(tile.trueLine, x: text.x, y: text.y, color: .black, scale: Layout.textScale)
      image.drawText(
        tile.predictedLine, x: text.x, y: text.y + Layout.lineHeight, color: tile.correct ? .black : .red,
        scale: Layout.textScale)
      image.strokeRect(
        x: cell.x, y: cell.y, width: layout.cellWidth, height: layout.cellHeight,
        color: tile.correct ? .green : .red, thickness: Layout.border(tile))
    }
    return image.png()
  }

  /// The grid as an SVG document with the same layout as `png`: each image an `<image>` holding the tile's
  /// enlarged PNG as a base64 data URL, the labels real (selectable, searchable) `<text>` in a monospace font
  /// sized like the bitmap font, the wrong predictions' second line and border in red.
  public static func svg(_ tiles: [Tile], columns: Int = 8, scale: Int = 3) -> String {
    let layout = Layout(tiles, columns: columns, scale: scale)
    let red = "#d62728"
    let green = "#228b22"
    var svg = """
      <svg xmlns="http://www.w3.org/2000/svg" width="\(layout.width)" height="\(layout.height)" \
      viewBox="0 0 \(layout.width) \(layout.height)" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" \
      font-size="10">
      <rect width="100%" height="100%" fill="white"/>
      <text x="\(Layout.margin)" y="\(Layout.margin + 12)" font-size="17" font-weight="bold">\
      \(escape(layout.title))</text>

      """
    for (position, tile) in tiles.enumerated() {
      let cell = layout.cellOrigin(position)
      let frame = layout.imageFrame(tile, position: position)
      let border = Layout.border(tile)
      // SVG strokes straddle the path; inset by half the width so the border lies inside the cell as in the PNG.
      let inset = Double(border) / 2
      svg += """
        <g>
        <rect x="\(Double(cell.x) + inset)" y="\(Double(cell.y) + inset)" \
        width="\(Double(layout.cellWidth) - 2 * inset)" height="\(Double(layout.cellHeight) - 2 * inset)" fill="white" \
        stroke="\(tile.correct ? green : red)" stroke-width="\(border)"/>

        """
      if tile.width > 0 && tile.height > 0 {
        var picture = RasterImage(width: frame.width, height: frame.height, background: .white)
        draw(tile, into: &picture, atX: 0, y: 0, scale: layout.scale)
        let base64 = Data(picture.png()).base64EncodedString()
        svg += """
          <rect x="\(Double(frame.x) - 0.5)" y="\(Double(frame.y) - 0.5)" width="\(frame.width + 1)" \
          height="\(frame.height + 1)" fill="none" stroke="#dddddd" stroke-width="1"/>
          <image x="\(frame.x)" y="\(frame.y)" width="\(frame.width)" height="\(frame.height)" \
          image-rendering="pixelated" href="data:image/png;base64,\(base64)"/>

          """
      }
      let text = layout.textOrigin(position)
      // A text element's y is its baseline: the bitmap glyphs' bottom row is 7 px below their top.
      svg += """
        <text x="\(text.x)" y="\(text.y + 7)">\(escape(tile.trueLine))</text>
        <text x="\(text.x)" y="\(text.y + Layout.lineHeight + 7)"\(tile.correct ? "" : " fill=\"\(red)\"")>\
        \(escape(tile.predictedLine))</text>
        </g>

        """
    }
    svg += "</svg>\n"
    return svg
  }

  /// `probability` as a whole percentage, "97%"; clamped to 0 ... 100, "?%" when it is not a number.
  /// A gray tile inverted (ink dark), a colour one as it is.
  static func draw(_ tile: Tile, into image: inout RasterImage, atX x: Int, y: Int, scale: Int) {
    if tile.channels == 3 {
      image.drawColour(tile.pixels, width: tile.width, height: tile.height, atX: x, y: y, scale: scale)
    } else {
      image.drawGray(tile.pixels, width: tile.width, height: tile.height, atX: x, y: y, scale: scale, invert: true)
    }
  }

  static func percent(_ probability: Double) -> String {
    guard probability.isFinite else { return "?%" }
    return "\(Int((min(1, max(0, probability)) * 100).rounded()))%"
  }

  static func escape(_ text: String) -> String { SVGLineChart.escape(text) }

  /// Where everything goes, in pixels from the picture's top-left corner; shared by `png` and `svg`.
  struct Layout {
    /// Space around the whole picture.
    static let margin = 12
    /// Space between neighbouring cells.
    static let gap = 8
    /// Space between a cell's edge and its contents (room for the thickest border and the image's edge line).
    static let pad = 7
    static let textScale = 1
    static let titleScale = 2
    /// Distance between the tops of the two label lines (7 px glyphs and 4 px of air).
    static let lineHeight = 11
    /// Between the image's bottom and the first label line.
    static let textGap = 6
    static let imageEdge = RGB(gray: 0xDD)

    /// Border widths: a wrong tile's is thicker so it stands out even without colour.
    static func border(_ tile: Tile) -> Int { tile.correct ? 2 : 4 }

    let scale: Int
    let columns: Int
    let rows: Int
    /// The largest image among the tiles, enlarged.
    let imageWidth: Int
    let imageHeight: Int
    let cellWidth: Int
    let cellHeight: Int
    let title: String
    let width: Int
    let height: Int

    init(_ tiles: [Tile], columns: Int, scale: Int) {
      self.scale = max(2, scale)
      self.columns = max(1, min(columns, tiles.count))
      rows = (tiles.count + self.columns - 1) / self.columns
      imageWidth = (tiles.map(\.width).max() ?? 0) * self.scale
      imageHeight = (tiles.map(\.height).max() ?? 0) * self.scale
      let label = tiles.map { max($0.trueLine.count, $0.predictedLine.count) }.max() ?? 0
      let labelWidth = label * BitmapFont.advance * Layout.textScale
      cellWidth = 2 * Layout.pad + max(imageWidth, labelWidth)
      cellHeight =
        Layout.pad + imageHeight + Layout.textGap + Layout.lineHeight + BitmapFont.glyphHeight * Layout.textScale
        + Layout.pad
      title = "\(tiles.filter(\.correct).count) of \(tiles.count) right"
      let gridWidth = tiles.isEmpty ? 0 : self.columns * cellWidth + (self.columns - 1) * Layout.gap
      let titleWidth = BitmapFont.width(of: title, scale: Layout.titleScale)
      width = 2 * Layout.margin + max(gridWidth, titleWidth)
      let gridHeight = rows == 0 ? 0 : rows * cellHeight + (rows - 1) * Layout.gap
      height = Layout.gridTop + gridHeight + Layout.margin
    }

    /// The top of the first row: below the margin, the title (7 px × its scale) and 12 px of air.
    static let gridTop = margin + BitmapFont.glyphHeight * titleScale + 12

    /// The top-left corner of the `position`th cell (row-major).
    func cellOrigin(_ position: Int) -> (x: Int, y: Int) {
      let column = position % columns
      let row = position / columns
      return (Layout.margin + column * (cellWidth + Layout.gap), Layout.gridTop + row * (cellHeight + Layout.gap))
    }

    /// Where the `position`th tile's enlarged image goes: centred across the cell, at the top of the image area.
    func imageFrame(_ tile: Tile, position: Int) -> (x: Int, y: Int, width: Int, height: Int) {
      let cell = cellOrigin(position)
      let width = tile.width * scale
      let height = tile.height * scale
      return (cell.x + (cellWidth - width) / 2, cell.y + Layout.pad + (imageHeight - height) / 2, width, height)
    }

    /// The top-left corner of the `position`th cell's first label line.
    func textOrigin(_ position: Int) -> (x: Int, y: Int) {
      let cell = cellOrigin(position)
      return (cell.x + Layout.pad, cell.y + Layout.pad + imageHeight + Layout.textGap)
    }
  }
}
