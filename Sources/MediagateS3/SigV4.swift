import Crypto
import Foundation

/// An access key and its secret, as the AWS SDKs read them from the environment.
package struct S3Credentials: Sendable, Equatable {
    package var accessKeyId: String
    package var secretAccessKey: String
    /// Temporary credentials (STS) come with a session token, sent as `X-Amz-Security-Token`.
    package var sessionToken: String?

    package init(accessKeyId: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`, or nil when a key is missing.
    package static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> S3Credentials? {
        guard let id = environment["AWS_ACCESS_KEY_ID"], !id.isEmpty,
              let secret = environment["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty else { return nil }
        let token = environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        return S3Credentials(accessKeyId: id, secretAccessKey: secret, sessionToken: token)
    }
}

/// One HTTP request to sign: what AWS Signature Version 4 covers.
///
/// `path` and `query` are raw (not percent-encoded): the signer encodes them once, the same way
/// for the canonical request and for the URL it sends, so the two can never disagree.
package struct SignableRequest: Sendable {
    package var method: String
    /// `host` or `host:port`, as sent in the `Host` header.
    package var host: String
    /// The raw path, starting with `/`: `/bucket/key`.
    package var path: String
    package var query: [(name: String, value: String)]
    /// Headers to sign besides `host` and the `x-amz-*` ones the signer adds.
    package var headers: [(name: String, value: String)]

    package init(method: String, host: String, path: String, query: [(name: String, value: String)] = [],
                 headers: [(name: String, value: String)] = []) {
        self.method = method
        self.host = host
        self.path = path
        self.query = query
        self.headers = headers
    }

    /// The path as sent: every byte but unreserved characters and `/` percent-encoded.
    package var encodedPath: String { SigV4Signer.uriEncode(path, keepingSlash: true) }

    /// The query as sent and as signed: names and values encoded, sorted by name, then value.
    package var canonicalQuery: String {
        var pairs: [(name: String, value: String)] = []
        for item in query {
            pairs.append((SigV4Signer.uriEncode(item.name), SigV4Signer.uriEncode(item.value)))
        }
        pairs.sort { left, right in left.name == right.name ? left.value < right.value : left.name < right.name }
        var parts: [String] = []
        for pair in pairs { parts.append(pair.name + "=" + pair.value) }
        return parts.joined(separator: "&")
    }
}

/// AWS Signature Version 4 for S3, written from AWS's specification ("Authenticating
/// Requests: Using the Authorization Header" and "Using Query Parameters") and checked
/// against botocore's `S3SigV4Auth` and `S3SigV4QueryAuth` (Tests/ChatServerTests/S3SignerTests).
///
/// S3's canonical URI is the path encoded once (other AWS services encode it twice), and
/// S3 requires the `x-amz-content-sha256` header: the payload's hash, or `UNSIGNED-PAYLOAD`.
package struct SigV4Signer: Sendable {
    package static let unsignedPayload = "UNSIGNED-PAYLOAD"
    /// SHA-256 of no bytes: the payload hash of a GET, HEAD or DELETE.
    package static let emptyPayload = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    package let credentials: S3Credentials
    package let region: String
    package let service: String

    package init(credentials: S3Credentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// The headers to send with `request` for it to be authenticated: `x-amz-date`,
    /// `x-amz-content-sha256`, the session token if any, and `Authorization`.
    package func sign(_ request: SignableRequest, payloadSHA256: String, date: Date = Date()) -> [(name: String, value: String)] {
        let timestamp = Self.timestamp(date)
        var added: [(name: String, value: String)] = [("x-amz-date", timestamp), ("x-amz-content-sha256", payloadSHA256)]
        if let token = credentials.sessionToken { added.append(("x-amz-security-token", token)) }
        var signing = request
        signing.headers += added
        let (canonicalHeaders, signedHeaders) = Self.canonicalHeaders(signing)
        let canonicalRequest = [request.method, request.encodedPath, request.canonicalQuery,
                                canonicalHeaders, signedHeaders, payloadSHA256].joined(separator: "\n")
        let scope = self.scope(timestamp)
        let signature = self.signature(canonicalRequest: canonicalRequest, timestamp: timestamp, scope: scope)
        added.append(("authorization", "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyId)/\(scope), "
                          + "SignedHeaders=\(signedHeaders), Signature=\(signature)"))
        return added
    }

    /// A presigned URL's query: the request's own parameters, then the authentication ones and
    /// `X-Amz-Signature`. Only `host` is signed; the payload is `UNSIGNED-PAYLOAD`.
    package func presignedQuery(_ request: SignableRequest, expires: Int, date: Date = Date()) -> String {
        let timestamp = Self.timestamp(date)
        let scope = self.scope(timestamp)
        var signing = request
        signing.headers = []
        signing.query += [("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
                          ("X-Amz-Credential", "\(credentials.accessKeyId)/\(scope)"),
                          ("X-Amz-Date", timestamp), ("X-Amz-Expires", String(expires)), ("X-Amz-SignedHeaders", "host")]
        if let token = credentials.sessionToken { signing.query.append(("X-Amz-Security-Token", token)) }
        let (canonicalHeaders, signedHeaders) = Self.canonicalHeaders(signing)
        let canonicalRequest = [request.method, request.encodedPath, signing.canonicalQuery,
                                canonicalHeaders, signedHeaders, Self.unsignedPayload].joined(separator: "\n")
        let signature = self.signature(canonicalRequest: canonicalRequest, timestamp: timestamp, scope: scope)
        return signing.canonicalQuery + "&X-Amz-Signature=" + signature
    }

    private func scope(_ timestamp: String) -> String {
        "\(timestamp.prefix(8))/\(region)/\(service)/aws4_request"
    }

    private func signature(canonicalRequest: String, timestamp: String, scope: String) -> String {
        let stringToSign = ["AWS4-HMAC-SHA256", timestamp, scope,
                            Self.hex(SHA256.hash(data: Data(canonicalRequest.utf8)))].joined(separator: "\n")
        var key = SymmetricKey(data: Data("AWS4\(credentials.secretAccessKey)".utf8))
        for part in [String(timestamp.prefix(8)), region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        return Self.hex(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: key))
    }

    /// Lower-cased names, values with surrounding and repeated inner spaces trimmed, sorted by
    /// name; repeated names joined by commas. Returns the block and the `SignedHeaders` list.
    private static func canonicalHeaders(_ request: SignableRequest) -> (String, String) {
        var byName: [String: [String]] = ["host": [request.host]]
        for (name, value) in request.headers {
            let collapsed = value.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            byName[name.lowercased(), default: []].append(collapsed)
        }
        let names = byName.keys.sorted()
        let block = names.map { "\($0):\(byName[$0]!.joined(separator: ","))\n" }.joined()
        return (block, names.joined(separator: ";"))
    }

    static func timestamp(_ date: Date) -> String {
        var time = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&time, &parts)
        return String(format: "%04d%02d%02dT%02d%02d%02dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                      parts.tm_hour, parts.tm_min, parts.tm_sec)
    }

    /// RFC 3986 percent-encoding of every byte but `A-Z a-z 0-9 - _ . ~` (and `/` in a path).
    package static func uriEncode(_ text: String, keepingSlash: Bool = false) -> String {
        var encoded = ""
        encoded.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                encoded.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "/") where keepingSlash:
                encoded.append("/")
            default:
                encoded += String(format: "%%%02X", byte)
            }
        }
        return encoded
    }

    package static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        digest.map { String(format: "%02x", $0) }.joined()
    }
}
