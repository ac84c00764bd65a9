import Crypto
import Foundation
import MediagateWire
import NIOCore

/// `Upload-Checksum` algorithms: sha1 (required by tus), sha256, md5.
package enum ChunkChecksum {
    case sha1(Insecure.SHA1)
    case sha256(SHA256)
    case md5(Insecure.MD5)

    package static let algorithms = Tus.checksumAlgorithms

    package init?(algorithm: String) {
        switch algorithm.lowercased() {
        case "sha1": self = .sha1(Insecure.SHA1())
        case "sha256": self = .sha256(SHA256())
        case "md5": self = .md5(Insecure.MD5())
        default: return nil
        }
    }

    package mutating func update(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            switch self {
            case .sha1(var hasher): hasher.update(bufferPointer: bytes); self = .sha1(hasher)
            case .sha256(var hasher): hasher.update(bufferPointer: bytes); self = .sha256(hasher)
            case .md5(var hasher): hasher.update(bufferPointer: bytes); self = .md5(hasher)
            }
        }
    }

    package var isSHA256: Bool {
        if case .sha256 = self { true } else { false }
    }

    package func finalize() -> Data {
        switch self {
        case .sha1(let hasher): Data(hasher.finalize())
        case .sha256(let hasher): Data(hasher.finalize())
        case .md5(let hasher): Data(hasher.finalize())
        }
    }
}

