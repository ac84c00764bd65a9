import Crypto
import Foundation
import MediagateWire

/// The tus 1.0 requests, one at a time over one connection: creation, offset, PATCH, termination.
/// Statuses are turned into `ClientError`s here; deciding what to retry is `ResumableUpload`'s job.
public final class TusClient {
    public enum Checksum: String, Sendable, CaseIterable {
        case sha1, sha256, md5, none
    }

    public let connection: APIConnection
    /// The creation endpoint, e.g. `http://127.0.0.1:8080/api/uploads`.
    public let endpoint: String

    public init(connection: APIConnection, endpoint: String? = nil) {
        self.connection = connection
        self.endpoint = endpoint ?? connection.server + APIPath.uploads
    }

    private static let resumable = (Tus.Header.resumable, Tus.version)

    /// `OPTIONS`: the server's largest upload, if it says.
    public func maxSize() throws -> Int? {
        let response = try connection.send("OPTIONS", endpoint, headers: [Self.resumable])
        guard (200..<300).contains(response.status) else { throw ClientError.from(response) }
        return response[Tus.Header.maxSize].flatMap(Int.init)
    }

    /// `POST`: a new upload of `length` bytes; returns its absolute URL.
    public func create(length: Int, metadata: [String: String]) throws -> String {
        let encoded = metadata.sorted { $0.key < $1.key }
            .map { "\($0.key) \(Data($0.value.utf8).base64EncodedString())" }.joined(separator: ",")
        var headers = [Self.resumable, (Tus.Header.length, String(length))]
        if !encoded.isEmpty { headers.append((Tus.Header.metadata, encoded)) }
        let response = try connection.send("POST", endpoint, headers: headers)
        guard response.status == 201 else { throw ClientError.from(response) }
        guard let location = response["Location"] else { throw ClientError.protocolViolation("201 without a Location") }
        return absolute(location)
    }

    /// `HEAD`: how many bytes the server has, and the upload's length.
    public func offset(of url: String) throws -> (offset: Int, length: Int?) {
        let response = try connection.send("HEAD", url, headers: [Self.resumable])
        if response.status == 404 || response.status == 410 { throw ClientError.uploadGone(status: response.status) }
        guard response.status == 200 || response.status == 204 else { throw ClientError.from(response) }
        guard let offset = response[Tus.Header.offset].flatMap(Int.init), offset >= 0 else {
            throw ClientError.protocolViolation("HEAD \(url) answered without a valid Upload-Offset")
        }
        return (offset, response[Tus.Header.length].flatMap(Int.init))
    }

    /// `PATCH`: `bytes` at `offset`; returns the server's new offset. `progress` sees the bytes
    /// of this chunk sent so far and may return false to stop.
    public func append(
        to url: String, at offset: Int, bytes: UnsafeRawBufferPointer, checksum: Checksum,
        progress: ((Int) -> Bool)? = nil
    ) throws -> Int {
        var headers = [Self.resumable, (Tus.Header.offset, String(offset)), ("Content-Type", Tus.chunkContentType)]
        if let digest = Self.digest(bytes, checksum) { headers.append((Tus.Header.checksum, "\(checksum.rawValue) \(digest)")) }
        let response = try connection.send("PATCH", url, headers: headers, body: bytes, progress: progress)
        if response.status == 404 || response.status == 410 { throw ClientError.uploadGone(status: response.status) }
        guard response.status == 204 || response.status == 200 else { throw ClientError.from(response) }
        guard let next = response[Tus.Header.offset].flatMap(Int.init), next >= offset, next <= offset + bytes.count else {
            throw ClientError.protocolViolation("PATCH \(url) answered with an impossible Upload-Offset")
        }
        return next
    }

    /// `DELETE`: termination. An upload the server no longer has counts as terminated.
    public func terminate(_ url: String) throws {
        let response = try connection.send("DELETE", url, headers: [Self.resumable])
        guard response.status == 204 || response.status == 404 || response.status == 410 else { throw ClientError.from(response) }
    }

    static func digest(_ bytes: UnsafeRawBufferPointer, _ checksum: Checksum) -> String? {
        switch checksum {
        case .sha1: Data(Insecure.SHA1.hash(data: bytes)).base64EncodedString()
        case .sha256: Data(SHA256.hash(data: bytes)).base64EncodedString()
        case .md5: Data(Insecure.MD5.hash(data: bytes)).base64EncodedString()
        case .none: nil
        }
    }

    private func absolute(_ location: String) -> String {
        Self.absolute(location, against: endpoint)
    }

    /// A `Location` header made absolute against the endpoint that answered it.
    static func absolute(_ location: String, against endpoint: String) -> String {
        if location.hasPrefix("http://") || location.hasPrefix("https://") { return location }
        guard location.hasPrefix("/"), let url = URL(string: endpoint), let scheme = url.scheme, let host = url.host else {
            return endpoint + "/" + location
        }
        return "\(scheme)://\(host)" + (url.port.map { ":\($0)" } ?? "") + location
    }
}
