import Foundation

/// The size a GIF is shown at: its logical screen, read from the bytes.
///
/// libvips 8.14 reads GIFs through libnsgif, which distrusts some screen sizes (640×480,
/// 800×600, anything over 2048, zero) and then sizes the canvas to the first frame instead. A
/// sticker or screen recording whose first frame covers only part of its screen then reports
/// that part. Browsers, `ffprobe` and the GIF89a specification use the logical screen,
/// enlarged only when the first frame reaches beyond it; so does this.
struct GIFScreen: Equatable, Sendable {
    var width: Int
    var height: Int

    /// Bytes read looking for the first image descriptor: extensions (comments, XMP) before it
    /// may be long, but a file that hides its first frame further in is left to libvips.
    static let searchLimit = 1 << 20

    /// The canvas of the GIF at `path`, or nil when the bytes are not a GIF this can walk.
    static func read(path: String) -> GIFScreen? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        guard let bytes = try? handle.read(upToCount: searchLimit) else { return nil }
        return parse(bytes)
    }

    static func parse(_ data: Data) -> GIFScreen? {
        let bytes = [UInt8](data)
        func u16(_ at: Int) -> Int? { at + 1 < bytes.count ? Int(bytes[at]) | Int(bytes[at + 1]) << 8 : nil }
        guard bytes.count >= 13, bytes.starts(with: Array("GIF8".utf8)),
              let screenWidth = u16(6), let screenHeight = u16(8) else { return nil }
        var at = 13
        if bytes[10] & 0x80 != 0 { at += 3 << (Int(bytes[10] & 0x07) + 1) } // global colour table
        while at < bytes.count {
            switch bytes[at] {
            case 0x21: // extension: label, then sub-blocks until a zero-length one
                at += 2
                while at < bytes.count, bytes[at] != 0 { at += Int(bytes[at]) + 1 }
                at += 1
            case 0x2C: // the first image descriptor
                guard let x = u16(at + 1), let y = u16(at + 3), let width = u16(at + 5), let height = u16(at + 7),
                      width > 0, height > 0 else { return nil }
                return GIFScreen(width: max(screenWidth, x + width), height: max(screenHeight, y + height))
            default: // the trailer, or damage, before any frame
                return nil
            }
        }
        return nil
    }
}
