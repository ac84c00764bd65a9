import Foundation

/// Removes where a picture was taken from the file itself, in place: EXIF GPS and XMP location
/// properties in JPEG, PNG, WebP and HEIF/AVIF files (what phones and cameras write).
///
/// Lossless by construction: only metadata bytes change, the file keeps its length, and the
/// picture's bytes are never touched (no re-encoding). The walk reads segment and box headers
/// and only the metadata blocks themselves (at most `maxBlockBytes` each), so its cost does not
/// grow with the picture. Other files, and files whose structure does not parse, are left as
/// they are. Videos' location atoms (`©xyz`, Apple's ISO 6709 key) are not handled yet.
public enum LocationMetadata {
    /// What a strip removed.
    public struct Removal: Sendable, Equatable {
        /// GPS directories taken out of EXIF blocks.
        public var exifGPSDirectories = 0
        /// XMP properties that named a place.
        public var xmpProperties = 0

        public var removedAnything: Bool { exifGPSDirectories + xmpProperties > 0 }

        public init() {}

        /// Wipes an EXIF block's GPS directory, counting it; returns whether bytes changed.
        mutating func wipeExif(_ bytes: inout [UInt8], tiffAt start: Int) -> Bool {
            guard LocationWipers.wipeExifGPS(&bytes, tiffAt: start) else { return false }
            exifGPSDirectories += 1
            return true
        }

        /// Wipes the XMP text from `start` to the end, counting what went.
        mutating func wipeXMP(_ bytes: inout [UInt8], from start: Int) -> Bool {
            guard start <= bytes.count else { return false }
            let removed = LocationWipers.wipeXMPLocation(&bytes, in: start..<bytes.count)
            xmpProperties += removed
            return removed > 0
        }
    }

    /// A metadata block larger than this is left alone (EXIF in a JPEG is at most 64 KiB).
    static let maxBlockBytes = 16 << 20
    /// Segments, chunks or boxes walked at most, so that a file made of millions of tiny ones
    /// costs a bounded number of reads.
    static let maxWalkSteps = 100_000

    /// Strips the file at `path` in place. Throws only when the file cannot be opened, read or
    /// written; a structure that does not parse is not an error (the file is kept as it is).
    public static func strip(fileAt path: String) throws(MediaError) -> Removal {
        let file = try PatchableFile(path: path)
        defer { file.close() }
        var removal = Removal()
        guard let head = file.read(at: 0, count: 12) else { return removal }
        if head.starts(with: [0xFF, 0xD8, 0xFF]) {
            try stripJPEG(file, &removal)
        } else if head.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) {
            try stripPNG(file, &removal)
        } else if head.starts(with: Array("RIFF".utf8)), head[8..<12].elementsEqual("WEBP".utf8) {
            try stripWebP(file, &removal)
        } else if head[4..<8].elementsEqual("ftyp".utf8) {
            try stripHEIF(file, &removal)
        }
        return removal
    }

    // MARK: - JPEG: APP1 segments (EXIF, XMP, extended XMP), up to the first scan

    private static let exifHeader = Array("Exif\0\0".utf8)
    private static let xmpHeader = Array("http://ns.adobe.com/xap/1.0/\0".utf8)
    /// Extended XMP: the header, a 32-byte GUID, the full length and this part's offset.
    private static let extendedXMPHeader = Array("http://ns.adobe.com/xmp/extension/\0".utf8)

    private static func stripJPEG(_ file: PatchableFile, _ removal: inout Removal) throws(MediaError) {
        var position: Int64 = 2
        for _ in 0..<maxWalkSteps {
            guard let marker = file.read(at: position, count: 4), marker[0] == 0xFF else { return }
            switch marker[1] {
            case 0xFF: position += 1; continue  // fill byte
            case 0x01, 0xD0...0xD8: position += 2; continue  // markers without a length
            case 0xD9, 0xDA: return  // the end, or the first scan: metadata comes before it
            default: break
            }
            let length = Int(marker[2]) << 8 | Int(marker[3])
            guard length >= 2 else { return }
            if marker[1] == 0xE1, var payload = file.read(at: position + 4, count: length - 2) {
                var changed = false
                if payload.starts(with: exifHeader) {
                    changed = removal.wipeExif(&payload, tiffAt: exifHeader.count)
                } else if let textStart = xmpTextStart(payload) {
                    changed = removal.wipeXMP(&payload, from: textStart)
                }
                if changed { try file.write(payload, at: position + 4) }
            }
            position += 2 + Int64(length)
        }
    }

    private static func xmpTextStart(_ payload: [UInt8]) -> Int? {
        if payload.starts(with: xmpHeader) { return xmpHeader.count }
        if payload.starts(with: extendedXMPHeader) { return extendedXMPHeader.count + 32 + 8 }
        return nil
    }

    // MARK: - PNG: eXIf and the XMP iTXt chunk (each chunk's CRC written anew)

    private static func stripPNG(_ file: PatchableFile, _ removal: inout Removal) throws(MediaError) {
        var position: Int64 = 8
        for _ in 0..<maxWalkSteps {
            guard let header = file.read(at: position, count: 8) else { return }
            let length = Int(bigEndian: header, at: 0, size: 4)
            let type = Array(header[4..<8])
            if type.elementsEqual("IEND".utf8) { return }
            let isExif = type.elementsEqual("eXIf".utf8), isText = type.elementsEqual("iTXt".utf8)
            if isExif || isText, length <= maxBlockBytes, var data = file.read(at: position + 8, count: length) {
                var changed = false
                if isExif {
                    changed = removal.wipeExif(&data, tiffAt: 0)
                } else if let textStart = pngXMPTextStart(data) {
                    changed = removal.wipeXMP(&data, from: textStart)
                }
                if changed {
                    try file.write(data, at: position + 8)
                    let crc = CRC32.checksum(type + data)
                    try file.write([UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)],
                                   at: position + 8 + Int64(length))
                }
            }
            position += 12 + Int64(length)
        }
    }

    /// Where the text of an uncompressed `XML:com.adobe.xmp` iTXt chunk starts: after the
    /// keyword, the two compression bytes, the language tag and the translated keyword.
    private static func pngXMPTextStart(_ data: [UInt8]) -> Int? {
        let keyword = Array("XML:com.adobe.xmp\0".utf8)
        guard data.starts(with: keyword), data.count > keyword.count + 2, data[keyword.count] == 0,  // not compressed
              let languageEnd = data[(keyword.count + 2)...].firstIndex(of: 0),
              let translatedEnd = data[(languageEnd + 1)...].firstIndex(of: 0) else { return nil }
        return translatedEnd + 1
    }

    // MARK: - WebP: the RIFF container's EXIF and XMP chunks

    private static func stripWebP(_ file: PatchableFile, _ removal: inout Removal) throws(MediaError) {
        var position: Int64 = 12
        for _ in 0..<maxWalkSteps {
            guard let header = file.read(at: position, count: 8) else { return }
            let length = Int(littleEndian: header, at: 4, size: 4)
            let type = header[0..<4]
            let isExif = type.elementsEqual("EXIF".utf8), isXMP = type.elementsEqual("XMP ".utf8)
            if isExif || isXMP, length <= maxBlockBytes, var data = file.read(at: position + 8, count: length) {
                // Some writers keep JPEG's "Exif\0\0" in front of the TIFF header.
                let changed = isExif ? removal.wipeExif(&data, tiffAt: data.starts(with: exifHeader) ? exifHeader.count : 0)
                                     : removal.wipeXMP(&data, from: 0)
                if changed { try file.write(data, at: position + 8) }
            }
            position += 8 + Int64(length) + Int64(length & 1)
        }
    }

    // MARK: - HEIF and AVIF: the `Exif` item and the XMP `mime` item, found through iinf and iloc

    private static func stripHEIF(_ file: PatchableFile, _ removal: inout Removal) throws(MediaError) {
        guard let meta = topLevelMetaBox(file) else { return }
        let items = HEIFItems(meta: meta.payload)
        for item in items.metadataItems {
            guard let location = items.location(of: item.id), location.length <= maxBlockBytes else { continue }
            let base: Int64
            switch location.constructionMethod {
            case 0: base = 0
            case 1:  // inside the meta box's idat
                guard let idat = items.idatPayloadOffset else { continue }
                base = meta.payloadOffset + Int64(idat)
            default: continue
            }
            guard location.offset < file.size else { continue }
            let fileOffset = base + location.offset
            guard var data = file.read(at: fileOffset, count: location.length) else { continue }
            let changed: Bool
            if item.isExif {
                // The item starts with the offset of the TIFF header after these four bytes.
                let skip = Int(bigEndian: data, at: 0, size: 4)
                changed = data.count >= 4 && skip <= data.count && removal.wipeExif(&data, tiffAt: 4 + skip)
            } else {
                changed = removal.wipeXMP(&data, from: 0)
            }
            if changed { try file.write(data, at: fileOffset) }
        }
    }

    /// The top-level `meta` box's payload (after its version and flags) and where it starts.
    private static func topLevelMetaBox(_ file: PatchableFile) -> (payload: [UInt8], payloadOffset: Int64)? {
        var position: Int64 = 0
        for _ in 0..<1_000 {
            guard let header = file.read(at: position, count: 8) else { return nil }
            var size = Int64(Int(bigEndian: header, at: 0, size: 4))
            var headerSize: Int64 = 8
            if size == 1 {
                guard let large = file.read(at: position + 8, count: 8) else { return nil }
                size = Int64(Int(bigEndian: large, at: 0, size: 8))
                headerSize = 16
            }
            if header[4..<8].elementsEqual("meta".utf8) {
                let payloadSize = (size == 0 ? file.size - position : size) - headerSize - 4
                guard payloadSize > 0, payloadSize <= maxBlockBytes,
                      let payload = file.read(at: position + headerSize + 4, count: Int(payloadSize)) else { return nil }
                return (payload, position + headerSize + 4)
            }
            guard size >= headerSize, size <= file.size - position else { return nil }
            position += size
        }
        return nil
    }
}

/// The items of a HEIF `meta` box that carry metadata, and where their bytes are.
private struct HEIFItems {
    struct Item { var id: UInt32; var isExif: Bool }
    struct Location { var constructionMethod: Int; var offset: Int64; var length: Int }

    private(set) var metadataItems: [Item] = []
    private var locations: [UInt32: Location] = [:]
    /// Where the `idat` box's payload starts inside the meta payload.
    private(set) var idatPayloadOffset: Int?

    func location(of id: UInt32) -> Location? { locations[id] }

    init(meta: [UInt8]) {
        var reader = BoxReader(bytes: meta, position: 0, end: meta.count)
        while let box = reader.nextBox() {
            switch box.type {
            case "iinf": readItemInfo(box.payload)
            case "iloc": readLocations(box.payload)
            case "idat": idatPayloadOffset = box.payload.position
            default: break
            }
        }
    }

    private mutating func readItemInfo(_ payload: BoxReader) {
        var reader = payload
        guard let version = reader.u8(), reader.skip(3), let _ = version == 0 ? reader.uint(2) : reader.uint(4) else { return }
        while let entry = reader.nextBox() {
            guard entry.type == "infe" else { continue }
            var infe = entry.payload
            guard let entryVersion = infe.u8(), entryVersion >= 2, infe.skip(3),
                  let id = infe.uint(entryVersion == 2 ? 2 : 4), infe.skip(2), let type = infe.fourCC() else { continue }
            if type == "Exif" {
                metadataItems.append(Item(id: UInt32(id), isExif: true))
            } else if type == "mime", let _ = infe.cString() /* item name */, infe.cString() == "application/rdf+xml" {
                metadataItems.append(Item(id: UInt32(id), isExif: false))
            }
        }
    }

    /// Items with one extent and no data reference (bytes in this file) are all we patch.
    private mutating func readLocations(_ payload: BoxReader) {
        var reader = payload
        guard let version = reader.u8(), version <= 2, reader.skip(3), let sizes = reader.u8(), let sizes2 = reader.u8(),
              let count = reader.uint(version < 2 ? 2 : 4) else { return }
        let (offsetSize, lengthSize) = (Int(sizes >> 4), Int(sizes & 0x0F))
        let (baseOffsetSize, indexSize) = (Int(sizes2 >> 4), version == 0 ? 0 : Int(sizes2 & 0x0F))
        for _ in 0..<min(count, 100_000) {
            guard let id = reader.uint(version < 2 ? 2 : 4) else { return }
            var method = 0
            if version > 0 {
                guard let value = reader.uint(2) else { return }
                method = value & 0x0F
            }
            guard let dataReference = reader.uint(2), let base = reader.uint(baseOffsetSize),
                  let extents = reader.uint(2) else { return }
            var firstExtent: (offset: Int, length: Int)?
            for _ in 0..<extents {
                guard reader.skip(indexSize), let offset = reader.uint(offsetSize), let length = reader.uint(lengthSize) else { return }
                if firstExtent == nil { firstExtent = (offset, length) }
            }
            if dataReference == 0, extents == 1, let extent = firstExtent, extent.length > 0 {
                let (offset, overflow) = base.addingReportingOverflow(extent.offset)
                if !overflow { locations[UInt32(truncatingIfNeeded: id)] = Location(constructionMethod: method, offset: Int64(offset), length: extent.length) }
            }
        }
    }
}

/// Reads ISO BMFF boxes and big-endian fields from a buffer, never past `end`.
private struct BoxReader {
    let bytes: [UInt8]
    var position: Int
    let end: Int

    mutating func skip(_ count: Int) -> Bool {
        guard count >= 0, count <= end - position else { return false }
        position += count
        return true
    }

    mutating func u8() -> UInt8? { uint(1).map(UInt8.init) }

    /// An unsigned big-endian field of 0, 1, 2, 4 or 8 bytes (0 reads as 0, as iloc means).
    mutating func uint(_ size: Int) -> Int? {
        guard [0, 1, 2, 4, 8].contains(size), size <= end - position else { return nil }
        let value = Int(bigEndian: bytes, at: position, size: size)
        position += size
        return value
    }

    mutating func fourCC() -> String? {
        guard 4 <= end - position else { return nil }
        defer { position += 4 }
        return String(decoding: bytes[position..<(position + 4)], as: UTF8.self)
    }

    mutating func cString() -> String? {
        guard let terminator = bytes[position..<end].firstIndex(of: 0) else { return nil }
        defer { position = terminator + 1 }
        return String(decoding: bytes[position..<terminator], as: UTF8.self)
    }

    /// The next child box: its type and a reader over its payload.
    mutating func nextBox() -> (type: String, payload: BoxReader)? {
        let start = position
        guard let size32 = uint(4), let type = fourCC() else { return nil }
        var size = size32
        if size == 1 {
            guard let large = uint(8) else { return nil }
            size = large
        } else if size == 0 {
            size = end - start
        }
        let headerSize = position - start
        guard size >= headerSize, size <= end - start else { return nil }
        position = start + size
        return (type, BoxReader(bytes: bytes, position: start + headerSize, end: start + size))
    }
}

fileprivate extension Int {
    /// An unsigned big-endian field; sizes over 8 bytes are not fields, and 8-byte values past
    /// `Int.max` saturate (no offset in a real file comes near).
    init(bigEndian bytes: [UInt8], at start: Int, size: Int) {
        var value: UInt64 = 0
        for index in start..<Swift.min(start + size, bytes.count) where index >= 0 { value = value << 8 | UInt64(bytes[index]) }
        self = value > UInt64(Int.max) ? Int.max : Int(value)
    }

    init(littleEndian bytes: [UInt8], at start: Int, size: Int) {
        var value: UInt64 = 0
        for index in (start..<Swift.min(start + size, bytes.count)).reversed() where index >= 0 { value = value << 8 | UInt64(bytes[index]) }
        self = value > UInt64(Int.max) ? Int.max : Int(value)
    }
}

/// A file patched in place with `pread`/`pwrite`.
private struct PatchableFile {
    let descriptor: Int32
    let size: Int64

    init(path: String) throws(MediaError) {
        descriptor = open(path, O_RDWR | O_CLOEXEC)
        guard descriptor >= 0 else { throw MediaError(.io, "cannot open \(path): \(String(cString: strerror(errno)))") }
        var status = stat()
        size = fstat(descriptor, &status) == 0 ? Int64(status.st_size) : 0
    }

    func close() { _ = Foundation.close(descriptor) }

    /// Exactly `count` bytes at `offset`, or nil when the file has fewer there.
    func read(at offset: Int64, count: Int) -> [UInt8]? {
        guard offset >= 0, count >= 0, count <= LocationMetadata.maxBlockBytes, Int64(count) <= size - offset else { return nil }
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let got = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress! + done, count - done, off_t(offset) + off_t(done)) }
            if got < 0, errno == EINTR { continue }
            guard got > 0 else { return nil }
            done += got
        }
        return bytes
    }

    func write(_ bytes: [UInt8], at offset: Int64) throws(MediaError) {
        var done = 0
        while done < bytes.count {
            let wrote = bytes.withUnsafeBytes { pwrite(descriptor, $0.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done)) }
            if wrote < 0, errno == EINTR { continue }
            guard wrote > 0 else { throw MediaError(.io, "cannot write metadata: \(String(cString: strerror(errno)))") }
            done += wrote
        }
    }
}

/// PNG's chunk checksum (ISO 3309 CRC-32, as zlib computes it).
enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 == 1 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1 }
        return value
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}
