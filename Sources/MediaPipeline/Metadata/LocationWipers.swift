/// The two places a picture keeps where it was taken, wiped in a byte buffer without changing
/// its length: an EXIF (TIFF) block's GPS directory, and XMP properties that name a place.
///
/// Keeping the length is what makes the removal lossless and cheap: the container around the
/// block (a JPEG segment, a PNG chunk, a HEIF item's extent) needs no rewriting, and every other
/// byte of the file, the picture's included, stays as it was. The input is hostile: every offset
/// read from it is checked, and a block that does not parse is left alone.
enum LocationWipers {
    /// Removes the GPS directory from the TIFF structure starting at `start` (`II*\0` or
    /// `MM\0*`): its entry in IFD0 is taken out (the later entries move up) and the directory
    /// and every value it points to are zeroed. Returns whether there was one.
    static func wipeExifGPS(_ bytes: inout [UInt8], tiffAt start: Int) -> Bool {
        guard var tiff = TIFFView(bytes: bytes, start: start),
              let ifd0 = tiff.u32(4).map(Int.init), let count = tiff.u16(ifd0).map(Int.init),
              tiff.contains(ifd0, count: 2 + 12 * count + 4) else { return false }
        var gpsIndex: Int?
        var gpsOffset = 0
        for index in 0..<count {
            let entry = ifd0 + 2 + 12 * index
            guard let tag = tiff.u16(entry) else { return false }
            if tag == 0x8825, let offset = tiff.u32(entry + 8) {
                gpsIndex = index
                gpsOffset = Int(offset)
                break
            }
        }
        guard let gpsIndex else { return false }
        // The GPS directory's values that do not fit in their entry, then the directory itself.
        if let gpsCount = tiff.u16(gpsOffset).map(Int.init) {
            for index in 0..<gpsCount {
                let entry = gpsOffset + 2 + 12 * index
                guard let type = tiff.u16(entry), let valueCount = tiff.u32(entry + 4) else { break }
                let size = Int(valueCount).multipliedReportingOverflow(by: Self.typeSize(type))
                if !size.overflow, size.partialValue > 4, let offset = tiff.u32(entry + 8) {
                    tiff.zero(Int(offset), count: size.partialValue)
                }
            }
            tiff.zero(gpsOffset, count: 2 + 12 * gpsCount + 4)
        }
        // IFD0 without the pointer: later entries and the next-directory offset move up 12 bytes.
        let firstMoved = ifd0 + 2 + 12 * (gpsIndex + 1)
        let end = ifd0 + 2 + 12 * count + 4
        tiff.move(from: firstMoved, to: firstMoved - 12, count: end - firstMoved)
        tiff.zero(end - 12, count: 12)
        tiff.setU16(ifd0, UInt16(count - 1))
        bytes = tiff.bytes
        return true
    }

    /// Bytes per value of a TIFF field type; unknown types count as 1 (the spec's advice is to
    /// skip them, and a byte each never zeroes more than the entry claims).
    private static func typeSize(_ type: UInt16) -> Int {
        switch type {
        case 3, 8: 2
        case 4, 9, 11, 13: 4
        case 5, 10, 12, 16, 17, 18: 8
        default: 1
        }
    }

    /// Blanks, with spaces, every XMP property in `range` that names a place: attributes
    /// (`exif:GPSLatitude="…"`) and elements (`<photoshop:City>…</photoshop:City>`) alike.
    /// Whitespace is where XML allows it in both spots, so the packet stays well formed.
    /// Returns how many properties went.
    static func wipeXMPLocation(_ bytes: inout [UInt8], in range: Range<Int>) -> Int {
        let range = range.clamped(to: bytes.indices)
        var removed = 0
        var position = range.lowerBound
        while position < range.upperBound {
            guard bytes[position] == UInt8(ascii: "<") else { position += 1; continue }
            let nameStart = position + 1
            let nameEnd = scanName(bytes, from: nameStart, limit: range.upperBound)
            let name = bytes[nameStart..<nameEnd]
            if isLocationProperty(name) {
                // An element that never ends is a broken packet: stop rather than search the
                // rest again for every such tag.
                guard let end = elementEnd(bytes, name: name, tagStart: position, limit: range.upperBound) else { break }
                blank(&bytes, position..<end)
                removed += 1
                position = end
                continue
            }
            // Other tags: look at their attributes, up to the tag's `>`.
            var cursor = nameEnd
            while cursor < range.upperBound, bytes[cursor] != UInt8(ascii: ">") {
                let byte = bytes[cursor]
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "'") {
                    cursor = (bytes[(cursor + 1)..<range.upperBound].firstIndex(of: byte) ?? range.upperBound - 1) + 1
                    continue
                }
                guard isNameByte(byte) else { cursor += 1; continue }
                let attributeEnd = scanName(bytes, from: cursor, limit: range.upperBound)
                var valueStart = attributeEnd
                while valueStart < range.upperBound, isSpace(bytes[valueStart]) || bytes[valueStart] == UInt8(ascii: "=") {
                    valueStart += 1
                }
                guard valueStart < range.upperBound, bytes[valueStart] == UInt8(ascii: "\"") || bytes[valueStart] == UInt8(ascii: "'"),
                      let close = bytes[(valueStart + 1)..<range.upperBound].firstIndex(of: bytes[valueStart]) else {
                    cursor = max(attributeEnd, cursor + 1)
                    continue
                }
                if isLocationProperty(bytes[cursor..<attributeEnd]) {
                    blank(&bytes, cursor..<(close + 1))
                    removed += 1
                }
                cursor = close + 1
            }
            position = cursor
        }
        return removed
    }

    /// Location properties by their usual prefixes: every `GPS…` (EXIF's in XMP, DJI's `Gps…`)
    /// and the IPTC/Photoshop place fields. Prefixes are only conventions in XMP, but every
    /// writer we know uses these.
    private static let placeProperties: Set<String> = [
        "photoshop:city", "photoshop:state", "photoshop:country",
        "iptc4xmpcore:location", "iptc4xmpcore:countrycode",
        "iptc4xmpext:locationcreated", "iptc4xmpext:locationshown",
    ]

    private static func isLocationProperty(_ name: ArraySlice<UInt8>) -> Bool {
        guard let colon = name.firstIndex(of: UInt8(ascii: ":")) else { return false }
        let lowered = String(decoding: name, as: UTF8.self).lowercased()
        return name[(colon + 1)...].prefix(3).map { $0 | 0x20 } == Array("gps".utf8) || placeProperties.contains(lowered)
    }

    /// Where the element whose start tag opens at `tagStart` ends (one past its `>`), or nil.
    private static func elementEnd(_ bytes: [UInt8], name: ArraySlice<UInt8>, tagStart: Int, limit: Int) -> Int? {
        guard let close = bytes[tagStart..<limit].firstIndex(of: UInt8(ascii: ">")) else { return nil }
        if bytes[close - 1] == UInt8(ascii: "/") { return close + 1 }
        let endTag = Array("</".utf8) + name
        var search = close + 1
        while search + endTag.count <= limit {
            guard let candidate = bytes[search..<limit].firstIndex(of: UInt8(ascii: "<")) else { return nil }
            if candidate + endTag.count <= limit, bytes[candidate..<(candidate + endTag.count)].elementsEqual(endTag),
               let end = bytes[(candidate + endTag.count)..<limit].firstIndex(of: UInt8(ascii: ">")) {
                return end + 1
            }
            search = candidate + 1
        }
        return nil
    }

    private static func scanName(_ bytes: [UInt8], from start: Int, limit: Int) -> Int {
        var end = start
        while end < limit, isNameByte(bytes[end]) { end += 1 }
        return end
    }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        !isSpace(byte) && !"<>/=\"'?!".utf8.contains(byte)
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }

    private static func blank(_ bytes: inout [UInt8], _ range: Range<Int>) {
        for index in range { bytes[index] = 0x20 }
    }
}

/// A TIFF structure inside a buffer: offsets relative to its header, in its byte order, every
/// read and write checked against the buffer's end.
private struct TIFFView {
    var bytes: [UInt8]
    let start: Int
    let littleEndian: Bool

    init?(bytes: [UInt8], start: Int) {
        guard start >= 0, start + 8 <= bytes.count else { return nil }
        let order = (bytes[start], bytes[start + 1])
        switch order {
        case (0x49, 0x49): littleEndian = true
        case (0x4D, 0x4D): littleEndian = false
        default: return nil
        }
        self.bytes = bytes
        self.start = start
        guard u16(2) == 42 else { return nil }
    }

    func contains(_ offset: Int, count: Int) -> Bool { absolute(offset, count) != nil }

    private func absolute(_ offset: Int, _ count: Int) -> Int? {
        guard offset >= 0, count >= 0, offset <= bytes.count - start - count else { return nil }
        return start + offset
    }

    func u16(_ offset: Int) -> UInt16? {
        guard let at = absolute(offset, 2) else { return nil }
        let (a, b) = (UInt16(bytes[at]), UInt16(bytes[at + 1]))
        return littleEndian ? a | b << 8 : a << 8 | b
    }

    func u32(_ offset: Int) -> UInt32? {
        guard let high = u16(offset + (littleEndian ? 2 : 0)), let low = u16(offset + (littleEndian ? 0 : 2)) else { return nil }
        return UInt32(high) << 16 | UInt32(low)
    }

    mutating func setU16(_ offset: Int, _ value: UInt16) {
        guard let at = absolute(offset, 2) else { return }
        let (high, low) = (UInt8(value >> 8), UInt8(value & 0xFF))
        (bytes[at], bytes[at + 1]) = littleEndian ? (low, high) : (high, low)
    }

    /// Zeroes `count` bytes at `offset`, or as many of them as lie inside the buffer.
    mutating func zero(_ offset: Int, count: Int) {
        guard offset >= 0, count > 0, offset < bytes.count - start else { return }
        let from = start + offset
        for index in from..<min(bytes.count, from + min(count, bytes.count)) { bytes[index] = 0 }
    }

    mutating func move(from source: Int, to target: Int, count: Int) {
        guard count > 0, let from = absolute(source, count), let to = absolute(target, count) else { return }
        let moved = Array(bytes[from..<(from + count)])
        bytes.replaceSubrange(to..<(to + count), with: moved)
    }
}
