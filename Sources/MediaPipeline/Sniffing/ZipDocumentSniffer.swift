import Foundation

/// Tells office documents apart from other ZIP files by the names inside them.
///
/// libmagic 5.44 calls many real `.docx`/`.xlsx` files `application/zip` or
/// `application/octet-stream`, because it only looks at the first entry. The central directory
/// at the end of the archive lists every entry, so reading it settles the question without
/// inflating anything.
enum ZipDocumentSniffer {
    /// Types worth a second look.
    static let ambiguousTypes: Set<String> = ["application/zip", "application/octet-stream", "application/x-zip-compressed"]

    private static let maxEntries = 20_000
    private static let maxDirectoryBytes = 16 << 20

    /// The office MIME type of the ZIP archive at `path`, or nil if it is not one we know.
    static func documentType(ofFileAt path: String, size: Int) -> String? {
        guard size >= 22, let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        guard let directory = centralDirectory(handle, size: size) else { return nil }
        var names = Set<String>()
        var offset = 0
        var mimetypeEntryOffset: Int?
        while offset + 46 <= directory.count, names.count < maxEntries {
            guard directory.uint32(at: offset) == 0x0201_4b50 else { break }
            let nameLength = Int(directory.uint16(at: offset + 28))
            let extraLength = Int(directory.uint16(at: offset + 30))
            let commentLength = Int(directory.uint16(at: offset + 32))
            guard offset + 46 + nameLength <= directory.count else { break }
            let name = String(decoding: directory[(offset + 46)..<(offset + 46 + nameLength)], as: UTF8.self)
            if name == "mimetype" { mimetypeEntryOffset = Int(directory.uint32(at: offset + 42)) }
            names.insert(name)
            offset += 46 + nameLength + extraLength + commentLength
        }
        if names.contains("[Content_Types].xml") {
            if names.contains(where: { $0.hasPrefix("word/") }) {
                return "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            if names.contains(where: { $0.hasPrefix("xl/") }) {
                return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            }
            if names.contains(where: { $0.hasPrefix("ppt/") }) {
                return "application/vnd.openxmlformats-officedocument.presentationml.presentation"
            }
        }
        if let entry = mimetypeEntryOffset {
            return openDocumentType(handle, localHeaderOffset: entry)
        }
        return nil
    }

    private static func centralDirectory(_ handle: FileHandle, size: Int) -> Data? {
        // The end-of-central-directory record sits in the last 22 + up to 65535 comment bytes.
        let tailLength = min(size, 22 + 65_535)
        guard (try? handle.seek(toOffset: UInt64(size - tailLength))) != nil,
              let tail = try? handle.read(upToCount: tailLength), tail.count >= 22 else { return nil }
        var end = tail.count - 22
        while end >= 0, tail.uint32(at: end) != 0x0605_4b50 { end -= 1 }
        guard end >= 0 else { return nil }
        let directorySize = Int(tail.uint32(at: end + 12))
        let directoryOffset = Int(tail.uint32(at: end + 16))
        guard directorySize <= maxDirectoryBytes, directoryOffset + directorySize <= size,
              (try? handle.seek(toOffset: UInt64(directoryOffset))) != nil,
              let directory = try? handle.read(upToCount: directorySize), directory.count == directorySize
        else { return nil }
        return directory
    }

    // ODF puts its type, uncompressed, in an entry named "mimetype".
    private static func openDocumentType(_ handle: FileHandle, localHeaderOffset: Int) -> String? {
        guard (try? handle.seek(toOffset: UInt64(localHeaderOffset))) != nil,
              let header = try? handle.read(upToCount: 30), header.count == 30,
              header.uint32(at: 0) == 0x0403_4b50, header.uint16(at: 8) == 0 else { return nil }
        let length = Int(header.uint32(at: 18))
        let skip = Int(header.uint16(at: 26)) + Int(header.uint16(at: 28))
        guard length > 0, length < 128, (try? handle.seek(toOffset: UInt64(localHeaderOffset + 30 + skip))) != nil,
              let body = try? handle.read(upToCount: length) else { return nil }
        let type = String(decoding: body, as: UTF8.self)
        return type.hasPrefix("application/vnd.oasis.opendocument.") ? type : nil
    }
}

extension Data {
    fileprivate func uint16(at offset: Int) -> UInt16 {
        let base = startIndex + offset
        return UInt16(self[base]) | UInt16(self[base + 1]) << 8
    }

    fileprivate func uint32(at offset: Int) -> UInt32 {
        let base = startIndex + offset
        return UInt32(self[base]) | UInt32(self[base + 1]) << 8 | UInt32(self[base + 2]) << 16 | UInt32(self[base + 3]) << 24
    }
}
