import AsyncHTTPClient
import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import _NIOFileSystem

/// Where a bucket lives: `s3://bucket?endpoint=http://127.0.0.1:8333&region=us-east-1&prefix=media/`.
///
/// Path-style addressing (`endpoint/bucket/key`), which every S3-compatible server (SeaweedFS,
/// MinIO, Ceph) and AWS itself still answer. Without `endpoint`, AWS's regional endpoint.
package struct S3Location: Sendable, Equatable {
    package var bucket: String
    /// `http` or `https`.
    package var scheme: String
    package var host: String
    package var port: Int?
    package var region: String
    /// Put before every key: several deployments can share a bucket.
    package var keyPrefix: String

    package init(bucket: String, scheme: String, host: String, port: Int?, region: String, keyPrefix: String = "") {
        self.bucket = bucket
        self.scheme = scheme
        self.host = host
        self.port = port
        self.region = region
        self.keyPrefix = keyPrefix
    }

    package struct Invalid: Error, CustomStringConvertible {
        package let description: String
    }

    package init(url text: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        guard let url = URLComponents(string: text), url.scheme == "s3", let bucket = url.host, !bucket.isEmpty else {
            throw Invalid(description: "an S3 blob store is s3://BUCKET?endpoint=URL&region=REGION, not \(text)")
        }
        guard bucket.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == ".") }), (3...63).contains(bucket.count) else {
            throw Invalid(description: "\(bucket) is not an S3 bucket name (3-63 lower-case letters, digits, dots and hyphens)")
        }
        let items = url.queryItems ?? []
        func item(_ name: String) -> String? { items.first { $0.name == name }?.value.flatMap { $0.isEmpty ? nil : $0 } }
        let region = item("region") ?? environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"] ?? "us-east-1"
        let endpointText = item("endpoint") ?? environment["AWS_ENDPOINT_URL_S3"] ?? environment["AWS_ENDPOINT_URL"]
            ?? "https://s3.\(region).amazonaws.com"
        guard let endpoint = URLComponents(string: endpointText), let scheme = endpoint.scheme, ["http", "https"].contains(scheme),
              let host = endpoint.host, !host.isEmpty, endpoint.path.isEmpty || endpoint.path == "/" else {
            throw Invalid(description: "the S3 endpoint must be http(s)://HOST[:PORT], not \(endpointText)")
        }
        var prefix = item("prefix") ?? ""
        if !prefix.isEmpty, !prefix.hasSuffix("/") { prefix += "/" }
        self.init(bucket: bucket, scheme: scheme, host: host, port: endpoint.port, region: region, keyPrefix: prefix)
    }

    /// The `Host` header: the port only when it is not the scheme's default.
    var hostHeader: String {
        guard let port, port != (scheme == "https" ? 443 : 80) else { return host }
        return "\(host):\(port)"
    }

    var origin: String { "\(scheme)://\(hostHeader)" }
}

/// What S3 answered when it refused a request: the HTTP status and S3's error `Code`.
package struct S3Error: Error, CustomStringConvertible {
    package let status: Int
    package let code: String
    package let message: String
    package let operation: String

    package var description: String { "S3 \(operation): \(status) \(code)\(message.isEmpty ? "" : ": \(message)")" }

    /// Worth another try: the server was busy or failed, not the request.
    package var isTransient: Bool { status >= 500 || status == 429 || code == "SlowDown" || code == "RequestTimeout" }
}

/// An object's size, entity tag and time of last change.
package struct S3ObjectInfo: Sendable, Equatable {
    package var key: String
    package var size: Int64
    package var lastModified: Date?
}

/// The S3 requests the gateway makes, signed with ``SigV4Signer`` and sent with
/// AsyncHTTPClient. Bodies stream both ways: a PUT reads its file in 1 MiB chunks as the
/// connection takes them, a GET hands its body on as it arrives; nothing holds an object in
/// memory.
package struct S3Client: Sendable {
    package let location: S3Location
    package let signer: SigV4Signer
    let http: HTTPClient
    /// Requests that failed for a transient reason are sent again this many times in all.
    package var attempts = 4

    /// One client for the process's S3 traffic: a connection pool per host, idle connections
    /// reused. Never shut down, like AsyncHTTPClient's own `shared`, with our timeouts: a
    /// request whose server stops answering fails after `read` instead of hanging its upload.
    package static let sharedHTTP: HTTPClient = {
        var pool = HTTPClient.Configuration.ConnectionPool(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 32)
        // A refused connection fails the request at once; ``retrying(_:_:)`` decides what
        // next. (AsyncHTTPClient's own retries went on until the request's deadline: a store
        // that was down held every request for a minute.)
        pool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup,
                          configuration: HTTPClient.Configuration(timeout: .init(connect: .seconds(5), read: .seconds(60), write: .seconds(60)),
                                                                  connectionPool: pool, decompression: .disabled))
    }()

    package init(location: S3Location, credentials: S3Credentials, http: HTTPClient = S3Client.sharedHTTP) {
        self.location = location
        self.signer = SigV4Signer(credentials: credentials, region: location.region)
        self.http = http
    }

    /// The object's size and date, or nil when there is none.
    package func head(_ key: String) async throws -> S3ObjectInfo? {
        let response = try await send("HEAD", key: key, operation: "HEAD \(key)", allowing: [404])
        guard response.status == .ok else { return nil }
        let size = response.headers.first(name: "content-length").flatMap(Int64.init) ?? 0
        let modified = response.headers.first(name: "last-modified").flatMap(Self.httpDate)
        return S3ObjectInfo(key: key, size: size, lastModified: modified)
    }

    /// Uploads the file at `path` as `key`, streamed. `sha256` is the file's SHA-256 (hex),
    /// signed as the payload's hash so S3 checks the bytes it stores; nil sends them unsigned.
    package func put(_ key: String, fileAt path: String, sha256: String?) async throws {
        try await retrying("PUT \(key)") {
            try await FileSystem.shared.withFileHandle(forReadingAt: FilePath(path)) { handle in
                let size = try await handle.info().size
                let body = HTTPClientRequest.Body.stream(handle.readChunks(in: 0..<size, chunkLength: .mebibytes(1)), length: .known(size))
                let response = try await execute("PUT", key: key, body: body, payloadSHA256: sha256 ?? SigV4Signer.unsignedPayload,
                                                  headers: [("content-length", String(size))])
                try await check(response, operation: "PUT \(key)")
            }
        }
    }

    /// Uploads `bytes` as `key`.
    package func put(_ key: String, bytes: ByteBuffer) async throws {
        try await retrying("PUT \(key)") {
            let hash = SigV4Signer.hex(SHA256.hash(data: bytes.readableBytesView))
            let response = try await execute("PUT", key: key, body: .bytes(bytes), payloadSHA256: hash,
                                              headers: [("content-length", String(bytes.readableBytes))])
            try await check(response, operation: "PUT \(key)")
        }
    }

    /// The object, or the bytes of `range` of it: status, headers and a body to stream. The
    /// caller reads the body to its end (or drops the response) before the connection is reused.
    package func get(_ key: String, range: ClosedRange<Int64>? = nil) async throws -> HTTPClientResponse {
        try await retrying("GET \(key)") { try await getOnce(key, range: range) }
    }

    private func getOnce(_ key: String, range: ClosedRange<Int64>?) async throws -> HTTPClientResponse {
        var headers: [(name: String, value: String)] = []
        if let range { headers.append(("range", "bytes=\(range.lowerBound)-\(range.upperBound)")) }
        let response = try await execute("GET", key: key, body: nil, payloadSHA256: SigV4Signer.emptyPayload, headers: headers)
        try await checkStatus(response, operation: "GET \(key)")
        return response
    }

    /// Downloads the object into a new file at `path` (replacing one that is there), streamed.
    package func download(_ key: String, to path: String) async throws {
        // One retry loop around the request and its body: a body cut off midway starts again.
        try await retrying("GET \(key)") {
            let response = try await getOnce(key, range: nil)
            try await FileSystem.shared.withFileHandle(forWritingAt: FilePath(path), options: .newFile(replaceExisting: true)) { handle in
                var writer = handle.bufferedWriter(capacity: .mebibytes(1))
                for try await chunk in response.body { try await writer.write(contentsOf: chunk) }
                try await writer.flush()
            }
        }
    }

    package func delete(_ key: String) async throws {
        _ = try await send("DELETE", key: key, operation: "DELETE \(key)", allowing: [404])
    }

    /// Every object under `prefix` (below the location's own prefix), page by page
    /// (ListObjectsV2, 1,000 keys a page). Keys come back without the location's prefix.
    package func list(prefix: String = "") async throws -> [S3ObjectInfo] {
        var found: [S3ObjectInfo] = []
        var continuation: String?
        repeat {
            var query: [(name: String, value: String)] = [("list-type", "2"), ("prefix", location.keyPrefix + prefix)]
            if let continuation { query.append(("continuation-token", continuation)) }
            let response = try await send("GET", key: nil, operation: "LIST \(prefix)", query: query, allowing: [], drainOnSuccess: false)
            let page = ListBucketResult(xml: try await Self.text(of: response, limit: 16 << 20))
            found += page.objects.map {
                S3ObjectInfo(key: String($0.key.dropFirst(location.keyPrefix.count)), size: $0.size, lastModified: $0.lastModified)
            }
            continuation = page.nextContinuationToken
        } while continuation != nil
        return found
    }

    /// A URL anyone may GET the object with until `expires` seconds from now.
    package func presignedURL(_ key: String, expires: Int, date: Date = Date()) -> String {
        let request = SignableRequest(method: "GET", host: location.hostHeader, path: objectPath(key))
        return "\(location.origin)\(request.encodedPath)?\(signer.presignedQuery(request, expires: expires, date: date))"
    }

    /// Whether the bucket exists and these credentials may read it (`/readyz`).
    package func checkBucket() async throws {
        _ = try await send("HEAD", key: nil, operation: "HEAD bucket \(location.bucket)", allowing: [])
    }

    // MARK: Requests

    private func objectPath(_ key: String?) -> String {
        guard let key else { return "/\(location.bucket)" }
        return "/\(location.bucket)/\(location.keyPrefix)\(key)"
    }

    /// A request without a body, retried while it fails transiently. Statuses in `allowing`
    /// are answers, not errors; any other status of 300 and up throws ``S3Error``.
    func send(_ method: String, key: String?, operation: String, query: [(name: String, value: String)] = [],
                      headers: [(name: String, value: String)] = [], allowing: Set<Int>,
                      drainOnSuccess: Bool = true) async throws -> HTTPClientResponse {
        try await retrying(operation) {
            let response = try await execute(method, key: key, query: query, body: nil, payloadSHA256: SigV4Signer.emptyPayload, headers: headers)
            if allowing.contains(Int(response.status.code)) || response.status.code < 300 {
                if drainOnSuccess || response.status.code >= 300 { _ = try? await response.body.collect(upTo: 1 << 20) }
                return response
            }
            try await check(response, operation: operation)
            return response
        }
    }

    func execute(_ method: String, key: String?, query: [(name: String, value: String)] = [],
                         body: HTTPClientRequest.Body?, payloadSHA256: String,
                         headers: [(name: String, value: String)]) async throws -> HTTPClientResponse {
        let signable = SignableRequest(method: method, host: location.hostHeader, path: objectPath(key), query: query, headers: headers)
        let query = signable.canonicalQuery
        var request = HTTPClientRequest(url: location.origin + signable.encodedPath + (query.isEmpty ? "" : "?" + query))
        request.method = HTTPMethod(rawValue: method)
        for (name, value) in headers + signer.sign(signable, payloadSHA256: payloadSHA256) {
            request.headers.add(name: name, value: value)
        }
        request.body = body
        // The deadline is for the response's head, which a PUT gets only once its body is
        // sent: a large body gets as long as it needs, and a stalled one fails by the read
        // and write timeouts (60 s without progress) instead.
        return try await http.execute(request, timeout: body == nil ? .seconds(30) : .hours(6))
    }

    /// Reads a successful response's (short) body to its end; throws ``S3Error`` for a status
    /// of 300 or more.
    func check(_ response: HTTPClientResponse, operation: String) async throws {
        try await checkStatus(response, operation: operation)
        _ = try await response.body.collect(upTo: 1 << 20)
    }

    /// Throws ``S3Error`` for a status of 300 or more, with S3's `Code` and `Message`; leaves a
    /// successful response's body to the caller.
    func checkStatus(_ response: HTTPClientResponse, operation: String) async throws {
        guard response.status.code >= 300 else { return }
        let text = (try? await Self.text(of: response, limit: 64 << 10)) ?? ""
        throw S3Error(status: Int(response.status.code), code: XMLText.first("Code", in: text) ?? response.status.reasonPhrase,
                      message: XMLText.first("Message", in: text) ?? "", operation: operation)
    }

    /// Runs `body` until it succeeds, S3 refuses it for a reason another try cannot change,
    /// or `attempts` are spent; waits 0.2, 0.4, 0.8 s between tries. A connection refused or
    /// reset (a restarting server), a timeout, a 5xx, 429 or `SlowDown` are worth another try.
    func retrying<T>(_ operation: String, _ body: () async throws -> T) async throws -> T {
        var attempt = 1
        while true {
            do {
                return try await body()
            } catch let error as S3Error where !error.isTransient {
                throw error
            } catch let error as FileSystemError {
                throw error
            } catch {
                if error is CancellationError || Task.isCancelled || attempt >= attempts { throw error }
            }
            try await Task.sleep(for: .milliseconds(100 << attempt))
            attempt += 1
        }
    }

    static func text(of response: HTTPClientResponse, limit: Int) async throws -> String {
        String(buffer: try await response.body.collect(upTo: limit))
    }

    static func httpDate(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter.date(from: text)
    }
}
