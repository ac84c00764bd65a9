import Crypto
import Foundation
import MediagateWire

/// Streaming SHA-256 of a file: a fixed buffer, never the whole file in memory.
enum FileDigest {
    private static let bufferSize = 256 << 10

    /// 64 lowercase hexadecimal digits, as `sha256Hex` writes them.
    static func isSHA256Hex(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    static func sha256Hex(ofFileAt path: String) throws(MediaError) -> String {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw MediaError(.io, "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        defer { _ = Foundation.close(descriptor) }
        var hasher = SHA256()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let count = read(descriptor, buffer.baseAddress, bufferSize)
            if count == 0 { break }
            if count < 0 {
                if errno == EINTR { continue }
                throw MediaError(.io, "cannot read \(path): \(String(cString: strerror(errno)))")
            }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        }
        return hasher.finalize().hexString
    }
}

extension Sequence<UInt8> {
    /// Lowercase hexadecimal, as the pipeline writes content hashes (`Attachment.sha256`).
    /// Public so that the server and the client write digests the same way.
    public var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for byte in self {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
