import Crypto
import Foundation

/// Signs file URLs so that a client that cannot send headers (the seed's `AsyncImage(url:)`)
/// can fetch a file: HMAC-SHA256 over the file id, the variant and an expiry.
///
/// Keys come from whoever builds the signer (the server reads them from its data directory):
/// new URLs use `current`, and URLs signed with `previous` keep working until they expire.
package struct URLSigner: Sendable {
    private let current: SymmetricKey
    private let previous: SymmetricKey?
    package let lifetime: TimeInterval
    /// Signatures already found to match (their expiry is still checked every time): the same
    /// signed thumbnail URL is asked for by every member of a room, and the HMAC was the
    /// largest cost of answering it from memory.
    private let matched = MemoryCache<Bool>(capacity: 50_000)

    package init(current: Data, previous: Data?, lifetime: TimeInterval) {
        self.current = SymmetricKey(data: current)
        self.previous = previous.map { SymmetricKey(data: $0) }
        self.lifetime = lifetime
    }

    /// `path?exp=…&sig=…` for `fileId` and `variant` ("original", "thumbnail").
    package func sign(_ path: String, fileId: String, variant: String, now: Date = Date()) -> String {
        let expiry = Int(now.timeIntervalSince1970 + lifetime)
        return "\(path)?exp=\(expiry)&sig=\(Self.mac(current, fileId: fileId, variant: variant, expiry: expiry))"
    }

    package enum Verdict: Equatable { case valid, expired, invalid }

    package func verify(fileId: String, variant: String, expiry: String?, signature: String?, now: Date = Date()) -> Verdict {
        guard let expiry, let expiryValue = Int(expiry), let signature else { return .invalid }
        let verdict = { Double(expiryValue) >= now.timeIntervalSince1970 ? Verdict.valid : .expired }
        // Only signatures that matched are kept, so a lookup tells a guesser nothing new.
        let key = "\(fileId):\(variant):\(expiry):\(signature)"
        if matched[key] != nil { return verdict() }
        func matches(_ key: SymmetricKey) -> Bool {
            // Constant-time comparison of the MACs.
            let expected = Self.mac(key, fileId: fileId, variant: variant, expiry: expiryValue).utf8
            return expected.count == signature.utf8.count && zip(expected, signature.utf8).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
        }
        guard matches(current) || previous.map(matches) == true else { return .invalid }
        matched.insert(true, forKey: key)
        return verdict()
    }

    private static func mac(_ key: SymmetricKey, fileId: String, variant: String, expiry: Int) -> String {
        let code = HMAC<SHA256>.authenticationCode(for: Data("\(fileId):\(variant):\(expiry)".utf8), using: key)
        return Data(code).base64URLEncodedString()
    }
}

extension Data {
    /// base64url without padding (RFC 4648 §5), byte by byte: Foundation's
    /// `replacingOccurrences` was the largest user-space cost of serving a cached thumbnail.
    package func base64URLEncodedString() -> String {
        let url: [UInt8] = base64EncodedData().compactMap { byte in
            switch byte {
            case UInt8(ascii: "+"): UInt8(ascii: "-")
            case UInt8(ascii: "/"): UInt8(ascii: "_")
            case UInt8(ascii: "="): nil
            default: byte
            }
        }
        return String(decoding: url, as: UTF8.self)
    }
}
