/// Display names for files, made safe to show and to put in a `Content-Disposition` header.
public enum FileName {
    /// The longest name kept, in UTF-8 bytes (the common file-system limit).
    public static let maxBytes = 255

    /// Returns the last path component of `name` without control characters, bidirectional
    /// overrides (which can make `exe.jpg` read as `gpj.exe`) or leading dots, cut to
    /// ``maxBytes`` on a character boundary; `"file"` when nothing is left.
    public static func sanitized(_ name: String) -> String {
        let lastComponent = name.split(whereSeparator: { $0 == "/" || $0 == "\\" }).last.map(String.init) ?? ""
        var scalars = String.UnicodeScalarView()
        for scalar in lastComponent.unicodeScalars where !isUnsafe(scalar) {
            scalars.append(scalar)
        }
        var cleaned = String(scalars).trimmingCharacters(in: " .\t")
        while cleaned.utf8.count > maxBytes {
            // Keep the extension where possible: cut the stem.
            if let dot = cleaned.lastIndex(of: "."), cleaned.distance(from: dot, to: cleaned.endIndex) <= 16,
               dot > cleaned.startIndex {
                let stem = cleaned[..<dot]
                cleaned = String(stem.dropLast()) + cleaned[dot...]
            } else {
                cleaned.removeLast()
            }
        }
        return cleaned.isEmpty ? "file" : cleaned
    }

    private static func isUnsafe(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F: return true              // C0 and C1 controls
        case 0x200E, 0x200F, 0x061C: return true                  // LRM, RLM, ALM
        case 0x202A...0x202E, 0x2066...0x2069: return true        // embeddings, overrides, isolates
        case 0x2028, 0x2029, 0xFEFF: return true                  // separators, BOM
        default: return false
        }
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> String {
        let unwanted = Set(set)
        var slice = Substring(self)
        while let first = slice.first, unwanted.contains(first) { slice.removeFirst() }
        while let last = slice.last, unwanted.contains(last) { slice.removeLast() }
        return String(slice)
    }
}
