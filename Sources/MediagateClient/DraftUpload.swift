import Foundation
import MediagateWire

/// Uploads one file by the IETF "Resumable Uploads for HTTP" draft, as iOS's URLSession does:
/// the whole file in one request, resumable because the server announces the upload resource
/// in a `104 Upload Resumption Supported` before it reads the body.
///
/// The file is streamed from disk as libcurl sends it (never held in memory). After any
/// retryable failure the resource is asked for its offset (`HEAD`) and the rest goes in one
/// `PATCH` that completes the upload; an upload the server forgot starts over. Blocking: run it
/// on a thread of your own.
public final class DraftUpload {
    public typealias Version = ResumableDraft.InteropVersion

    public struct Options: Sendable {
        public var version: Version = .v8
        public var retry = RetryPolicy()
        /// Times an upload may be started over because the server forgot it, before giving up.
        public var maxRestarts = 3

        public init(version: Version = .v8, retry: RetryPolicy = RetryPolicy()) {
            self.version = version
            self.retry = retry
        }
    }

    let connection: APIConnection
    /// The creation endpoint, e.g. `http://127.0.0.1:8080/api/uploads`.
    let endpoint: String
    let options: Options
    /// Set from any thread to stop at the next progress callback.
    public let cancellation = CancellationFlag()

    public init(connection: APIConnection, endpoint: String? = nil, options: Options = Options()) {
        self.connection = connection
        self.endpoint = endpoint ?? connection.server + APIPath.uploads
        self.options = options
    }

    /// Uploads `path` as `filename` of type `mimeType`; returns the upload's URL (where tus's
    /// `GET` tells what it became).
    /// - Parameters:
    ///   - resuming: an upload URL from an earlier run, or nil to create one.
    ///   - created: called with the upload's URL as soon as the server names it, so it can be kept.
    public func upload(
        path: String, filename: String, mimeType: String, resuming: String?,
        created: @escaping (String) -> Void = { _ in },
        progress: @escaping (UploadProgress) -> Void = { _ in }
    ) throws -> String {
        let file = try ReadOnlyFile(path)
        let (descriptor, size) = (file.descriptor, file.size)

        var url = resuming
        var restarts = 0
        var budget = RetryBudget(options.retry)
        while true {
            do {
                let offset: Int
                if let known = url {
                    let state = try self.offset(of: known)
                    if state.complete { return known } // finished; only the answer was lost
                    if let length = state.length, length != size { throw ClientError.uploadGone(status: 409) }
                    offset = state.offset
                } else {
                    offset = 0
                }
                progress(UploadProgress(bytes: offset, total: size))
                let before = offset
                let answer = try send(descriptor, size: size, from: offset, to: url, filename: filename, mimeType: mimeType,
                                      announced: { location in
                                          url = location
                                          created(location)
                                      },
                                      progress: { [cancellation] sent in
                                          progress(UploadProgress(bytes: before + sent, total: size))
                                          return !cancellation.isSet
                                      })
                if let answer {
                    progress(UploadProgress(bytes: size, total: size))
                    return answer
                }
                budget.reset()
            } catch ClientError.uploadGone(let status) {
                restarts += 1
                guard restarts <= options.maxRestarts else { throw ClientError.uploadGone(status: status) }
                url = nil
            } catch let error as ClientError {
                if case .cancelled = error { throw error }
                try budget.pause(after: error)
            }
        }
    }

    /// The bytes from `offset` on, in a creation (no `url` yet) or an append that completes the
    /// upload. Returns the upload's URL once the server says it is complete; nil when it took
    /// some bytes but wants the rest asked for again (a 409 naming a new offset).
    private func send(_ descriptor: Int32, size: Int, from offset: Int, to url: String?, filename: String, mimeType: String,
                      announced: @escaping (String) -> Void, progress: @escaping (Int) -> Bool) throws -> String? {
        let version = options.version
        var headers = [(ResumableDraft.Header.interopVersion, String(version.rawValue)), version.completeness(true)]
        let target: String
        let method: String
        if let url {
            method = "PATCH"
            target = url
            headers.append((ResumableDraft.Header.offset, String(offset)))
            if version.usesPartialUploadType { headers.append(("Content-Type", ResumableDraft.partialUploadType)) }
        } else {
            method = "POST"
            target = endpoint
            headers.append(("Content-Type", mimeType))
            headers.append(("Content-Disposition", Self.disposition(filename)))
            if version >= .v7 { headers.append((ResumableDraft.Header.length, String(size))) }
        }
        var location = url
        let response = try connection.send(
            method, target, headers: headers, sending: .file(descriptor: descriptor, offset: offset, count: size - offset),
            progress: progress,
            interim: { [endpoint] status, fields in
                // The first 104 names the upload; later ones only report offsets.
                guard status == ResumableDraft.resumptionSupported, location == nil,
                      fields[ResumableDraft.Header.interopVersion.lowercased()] == String(version.rawValue),
                      let named = fields["location"] else { return }
                let absolute = TusClient.absolute(named, against: endpoint)
                location = absolute
                announced(absolute)
            })
        if response.status == 404 || response.status == 410 { throw ClientError.uploadGone(status: response.status) }
        if response.status == 409 { return nil }
        guard (200..<300).contains(response.status) else { throw ClientError.from(response) }
        guard let done = location ?? response["Location"].map({ TusClient.absolute($0, against: endpoint) }) else {
            throw ClientError.protocolViolation("\(method) answered \(response.status) without naming the upload")
        }
        return done
    }

    /// `HEAD`: the upload's offset, whether it is complete, and its length if known.
    public func offset(of url: String) throws -> (offset: Int, complete: Bool, length: Int?) {
        let version = options.version
        let response = try connection.send("HEAD", url, headers: [(ResumableDraft.Header.interopVersion, String(version.rawValue))])
        if response.status == 404 || response.status == 410 { throw ClientError.uploadGone(status: response.status) }
        guard (200..<300).contains(response.status) else { throw ClientError.from(response) }
        guard let offset = response[ResumableDraft.Header.offset].flatMap(ResumableDraft.integer) else {
            throw ClientError.protocolViolation("HEAD \(url) answered without a valid Upload-Offset")
        }
        let complete = version.claimsComplete { response[$0] } ?? false
        return (Int(offset), complete, response[ResumableDraft.Header.length].flatMap(ResumableDraft.integer).map(Int.init))
    }

    /// `DELETE`: cancellation. An upload the server no longer has counts as cancelled.
    public func cancel(_ url: String) throws {
        let response = try connection.send("DELETE", url, headers: [(ResumableDraft.Header.interopVersion, String(options.version.rawValue))])
        guard (200..<300).contains(response.status) || response.status == 404 || response.status == 410 else { throw ClientError.from(response) }
    }

    /// `inline; filename="…"; filename*=UTF-8''…` (RFC 6266), as the draft recommends.
    static func disposition(_ filename: String) -> String {
        let plain = String(filename.unicodeScalars.map { $0.isASCII && $0 != "\"" && $0 != "\\" && $0.value >= 0x20 ? Character($0) : "_" })
        let encoded = filename.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? plain
        return "inline; filename=\"\(plain)\"; filename*=UTF-8''\(encoded)"
    }
}
