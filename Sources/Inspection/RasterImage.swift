/// An 8-bit-per-channel colour.
public struct RGB: Equatable, Hashable, Sendable {
  public var r: UInt8
  public var g: UInt8
  public var b: UInt8

  public init(r: UInt8, g: UInt8, b: UInt8) {
    self.r = r
    self.g = g
    self.b = b
  }

  /// A gray of `level` in each channel.
  public init(gray level: UInt8) { self.init(r: level, g: level, b: level) }

  public static let white = RGB(r: 255, g: 255, b: 255)
  public static let black = RGB(r: 0, g: 0, b: 0)
  /// The same greens and reds as the SVG pictures (`#228b22` right, `#d62728` wrong).
  public static let green = RGB(r: 0x22, g: 0x8B, b: 0x22)
  public static let red = RGB(r: 0xD6, g: 0x27, b: 0x28)
  /// Mid gray, for grid lines and secondary text.
  public static let gray = RGB(r: 0x99, g: 0x99, b: 0x99)
  /// Near-white, for panels set off from a white page.
  public static let lightGray = RGB(r: 0xEE, g: 0xEE, b: 0xEE)
}

/// An RGB canvas for drawing pictures pixel by pixel and saving them as PNG.
///
/// Coordinates are in pixels with the origin at the top-left corner, x to the right and y downward. Every drawing
/// call clips to the canvas, so shapes may lie partly (or wholly) outside it.
public struct RasterImage: Sendable {
  public let width: Int
  public let height: Int
  /// Row-major, top row first, 3 bytes (R, G, B) per pixel: `width * height * 3` bytes; pixel (x, y) starts at
  /// `3 * (y * width + x)`.
  public var pixels: [UInt8]

  /// A `width`×`height` canvas (both at least 1, as PNG needs) filled with `background`.
  public init(width: Int, height: Int, background: RGB = .white) {
    precondition(width > 0 && height > 0, "RasterImage: needs at least one pixel, got \(width)×\(height)")
    self.width = width
    self.height = height
    var pixels = [UInt8](repeating: 0, count: width * height * 3)
    for offset in stride(from: 0, to: pixels.count, by: 3) {
      pixels[offset] = background.r
      pixels[offset + 1] = background.g
      pixels[offset + 2] = background.b
    }
    self.pixels = pixels
  }

  /// The colour at (`x`, `y`), which must lie on the canvas.
  public func pixel(x: Int, y: Int) -> RGB {
    precondition((0..<width).contains(x) && (0..<height).contains(y), "RasterImage: (\(x), \(y)) is off the canvas")
    let offset = 3 * (y * width + x)
    return RGB(r: pixels[offset], g: pixels[offset + 1], b: pixels[offset + 2])
  }

  /// Sets (`x`, `y`) to `color`; does nothing off the canvas.
  public mutating func setPixel(x: Int, y: Int, color: RGB) {
    guard (0..<width).contains(x), (0..<height).contains(y) else { return }
    let offset = 3 * (y * width + x)
    pixels[offset] = color.r
    pixels[offset + 1] = color.g
    pixels[offset + 2] = color.b
  }

  /// Paints the rectangle with top-left corner (`x`, `y`) and the given size, clipped to the canvas.
  public mutating func fill(x: Int, y: Int, width: Int, height: Int, color: RGB) {
    let left = max(0, x)
    let right = min(self.width, x + width)
    let top = max(0, y)
    let bottom = min(self.height, y + height)
    guard left < right, top < bottom else { return }
    for row in top..<bottom {
      var offset = 3 * (row * self.width + left)
      for _ in left..<right {
        pixels[offset] = color.r
        pixels[offset + 1] = color.g
        pixels[offset + 2] = color.b
        offset += 3
      }
    }
  }

  /// Outlines the rectangle with top-left corner (`x`, `y`) and the given size by a border `thickness` pixels
  /// wide, drawn inside the rectangle (so the outline never grows the shape), clipped to the canvas.
  public mutating func strokeRect(x: Int, y: Int, width: Int, height: Int, color: RGB, thickness: Int = 1) {
    guard width > 0, height > 0, thickness > 0 else { return }
    let band = min(thickness, (min(width, height) + 1) / 2)
    fill(x: x, y: y, width: width, height: band, color: color)
    fill(x: x, y: y + height - band, width: width, height: band, color: color)
    fill(x: x, y: y + band, width: band, height: height - 2 * band, color: color)
    fill(x: x + width - band, y: y + band, width: band, height: height - 2 * band, color: color)
  }

  /// Writes `text` in the 5×7 bitmap font with its top-left corner at (`x`, `y`): each font pixel becomes a
  /// `scale`×`scale` block, each character advances 6 × `scale` pixels, and only ink pixels are painted (the
  /// background shows through). Clipped to the canvas; see `BitmapFont.width(of:scale:)` to centre or align it.
  public mutating func drawText(_ text: String, x: Int, y: Int, color: RGB, scale: Int = 1) {
    BitmapFont.render(text, x: x, y: y, scale: scale) { px, py in setPixel(x: px, y: py, color: color) }
  }

  /// Blits a grayscale image with its top-left corner at (`x`, `y`), enlarged `scale` times by nearest neighbour
  /// (each value becomes a `scale`×`scale` block), clipped to the canvas.
  ///
  /// `values` is row-major, `width * height` intensities in 0 ... 1 (outside values are clamped), 0 black and 1
  /// white; with `invert` 1 is black instead, which suits data where 1 is ink (Fashion-MNIST's garments, MNIST's
  /// strokes) and a white page reads better.
  public mutating func drawGray(
    _ values: [Float], width: Int, height: Int, atX x: Int, y: Int, scale: Int = 1, invert: Bool = false
  ) {
    precondition(values.count == width * height, "drawGray: \(width)×\(height) needs \(width * height) values")
    let scale = max(1, scale)
    for row in 0..<height {
      for column in 0..<width {
        var value = values[row * width + column]
        value = value.isNaN ? 0 : min(1, max(0, value))
        if invert { value = 1 - value }
        let level = UInt8((value * 255).rounded())
        fill(x: x + column * scale, y: y + row * scale, width: scale, height: scale, color: RGB(gray: level))
      }
    }
  }

  /// Draws a colour image, `values` being its red, green and blue planes (`[3, height, width]`, each value in
  /// 0 ... 1), each pixel a `scale`×`scale` square with its top-left corner at (`x`, `y`).
  public mutating func drawColour(_ values: [Float], width: Int, height: Int, atX x: Int, y: Int, scale: Int = 1) {
    precondition(
      values.count == 3 * width * height, "drawColour: \(width)×\(height) needs \(3 * width * height) values")
    let plane = width * height
    func level(_ value: Float) -> UInt8 { UInt8(((value.isNaN ? 0 : min(1, max(0, value))) * 255).rounded()) }
    for row in 0..<height {
      for column in 0..<width {
        let p = row * width + column
        let color = RGB(r: level(values[p]), g: level(values[plane + p]), b: level(values[2 * plane + p]))
        fill(x: x + column * scale, y: y + row * scale, width: max(1, scale), height: max(1, scale), color: color)
      }
    }
  }

  /// The canvas as a PNG file.
  public func png() -> [UInt8] { PNG.encode(width: width, height: height, rgb: pixels) }
}
