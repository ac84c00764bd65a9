import Foundation

/// The BlurHash encoder (https://blurha.sh): a 20–30 character string from which a client
/// paints a soft gradient of the picture before the picture itself arrives.
enum BlurHash {
    /// Encodes 3-band 8-bit sRGB pixels with `componentsX` × `componentsY` DCT components (1...9).
    static func encode(pixels: [UInt8], width: Int, height: Int, componentsX: Int, componentsY: Int) -> String? {
        guard width > 0, height > 0, pixels.count >= width * height * 3,
              (1...9).contains(componentsX), (1...9).contains(componentsY) else { return nil }

        // Linear light, computed once per pixel instead of once per pixel per component.
        let linear = pixels.prefix(width * height * 3).map { sRGBToLinear[Int($0)] }
        var factors = [(Double, Double, Double)]()
        factors.reserveCapacity(componentsX * componentsY)
        for j in 0..<componentsY {
            let rowBasis = (0..<height).map { cos(Double.pi * Double(j) * Double($0) / Double(height)) }
            for i in 0..<componentsX {
                let columnBasis = (0..<width).map { cos(Double.pi * Double(i) * Double($0) / Double(width)) }
                var r = 0.0, g = 0.0, b = 0.0
                for y in 0..<height {
                    for x in 0..<width {
                        let basis = columnBasis[x] * rowBasis[y]
                        let offset = 3 * (y * width + x)
                        r += basis * linear[offset]
                        g += basis * linear[offset + 1]
                        b += basis * linear[offset + 2]
                    }
                }
                let normalisation = (i == 0 && j == 0 ? 1.0 : 2.0) / Double(width * height)
                factors.append((r * normalisation, g * normalisation, b * normalisation))
            }
        }

        var hash = base83(componentsX - 1 + (componentsY - 1) * 9, length: 1)
        let ac = factors.dropFirst()
        let maximum: Double
        if ac.isEmpty {
            maximum = 1
            hash += base83(0, length: 1)
        } else {
            let actual = ac.map { max(abs($0.0), abs($0.1), abs($0.2)) }.max() ?? 0
            let quantised = max(0, min(82, Int((actual * 166 - 0.5).rounded(.down))))
            maximum = Double(quantised + 1) / 166
            hash += base83(quantised, length: 1)
        }
        let dc = factors[0]
        hash += base83((linearToSRGB(dc.0) << 16) + (linearToSRGB(dc.1) << 8) + linearToSRGB(dc.2), length: 4)
        for factor in ac {
            func quantise(_ value: Double) -> Int {
                max(0, min(18, Int((signedPow(value / maximum, 0.5) * 9 + 9.5).rounded(.down))))
            }
            hash += base83(quantise(factor.0) * 19 * 19 + quantise(factor.1) * 19 + quantise(factor.2), length: 2)
        }
        return hash
    }

    private static let sRGBToLinear: [Double] = (0..<256).map { byte in
        let value = Double(byte) / 255
        return value <= 0.04045 ? value / 12.92 : pow((value + 0.055) / 1.055, 2.4)
    }

    private static func linearToSRGB(_ value: Double) -> Int {
        let v = max(0, min(1, value))
        return v <= 0.003_130_8 ? Int(v * 12.92 * 255 + 0.5) : Int((1.055 * pow(v, 1 / 2.4) - 0.055) * 255 + 0.5)
    }

    private static func signedPow(_ value: Double, _ exponent: Double) -> Double {
        value < 0 ? -pow(-value, exponent) : pow(value, exponent)
    }

    private static let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~")

    private static func base83(_ value: Int, length: Int) -> String {
        var result = ""
        var divisor = 1
        for _ in 1..<max(1, length) { divisor *= 83 }
        for _ in 0..<length {
            result.append(alphabet[(value / divisor) % 83])
            divisor = max(1, divisor / 83)
        }
        return result
    }
}
