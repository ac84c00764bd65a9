import Foundation
import MediagateCore
import NIOCore
import NIOPosix

/// Uploads in progress as S3 multipart uploads, so that any node can continue one: the
/// database's offset is the truth, and every byte it counts is in the bucket.
///
/// An upload is the multipart upload of `uploads/<id>` (its S3 id kept in the object
/// `uploads/<id>.multipart`, written once at creation): parts of exactly `partBytes`, part n
/// holding bytes `(n-1)·partBytes ..< n·partBytes`. The parts' ETags are stored in the upload's
/// record with the offset (``UploadRecord/storeState``), so the record says which bytes count
/// even when a writer that was taken over sent a part again (S3 keeps the latest; SeaweedFS
/// keeps both, and assembles the ones the completion names). Bytes past the last whole part
/// (fewer than a part, which S3 refuses as anything but the last) are the object
/// `uploads/<id>.tail-<end>`, named by the offset they end at, so the tail of the stored offset
/// is always the one a writer finds, whoever wrote the others. A request collects its bytes in a staging file on this
/// node's disk (at most one part: never the upload in memory, nor on disk whole), sends each
/// part as it fills, and on `sync` sends its tail; only then does the engine store the offset.
/// The last bytes of the upload go as its last part instead, and processing assembles the object
/// (`CompleteMultipartUpload`) and fetches it.
package struct S3UploadStore: UploadStore {
    package let client: S3Client
    package let partBytes: Int64
    /// This node's staging files and assembled uploads.
    package let directory: String
    let multipartIds = MultipartIds()
    var threadPool: NIOThreadPool = .singleton

    package init(client: S3Client, partBytes: Int64, directory: String) throws {
        precondition(partBytes >= 5 << 20, "S3 refuses parts under 5 MiB but the last")
        self.client = client
        self.partBytes = partBytes
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    static func dataKey(_ id: String) -> String { "uploads/\(id)" }
    static func markerKey(_ id: String) -> String { "uploads/\(id).multipart" }
    static func tailPrefix(_ id: String) -> String { "uploads/\(id).tail-" }
    static func tailKey(_ id: String, end: Int64) -> String { tailPrefix(id) + String(end) }

    package func create(_ id: String) async throws {
        do {
            let multipart = try await client.createMultipartUpload(Self.dataKey(id))
            try await client.put(Self.markerKey(id), bytes: ByteBuffer(string: multipart))
            await multipartIds.set(id, multipart)
        } catch {
            throw S3BlobStore.unavailable(error)
        }
    }

    /// The upload's S3 multipart id: remembered by this node, else read from its marker.
    func multipartId(_ id: String) async throws -> String {
        if let known = await multipartIds.get(id) { return known }
        let response = try await client.get(Self.markerKey(id))
        let multipart = String(buffer: try await response.body.collect(upTo: 4096))
        await multipartIds.set(id, multipart)
        return multipart
    }

    package func remove(_ id: String) async throws {
        if let multipart = try? await multipartId(id) {
            try? await client.abortMultipartUpload(Self.dataKey(id), uploadId: multipart)
        }
        for tail in (try? await client.list(prefix: Self.tailPrefix(id))) ?? [] { try? await client.delete(tail.key) }
        try? await client.delete(Self.dataKey(id))
        try? await client.delete(Self.markerKey(id))
        await multipartIds.remove(id)
        let assembled = assembledPath(id)
        try await threadPool.runIfActive { _ = unlink(assembled) }
    }

    func assembledPath(_ id: String) -> String { "\(directory)/\(id)" }

    package func openForAppend(_ id: String, at offset: Int64, length: Int64?, state: String?, lease: WriterLease?) async throws -> any UploadAppender {
        do {
            let multipart = try await multipartId(id)
            let partStart = offset / partBytes * partBytes
            let staging = "\(directory)/\(id).\(UUID().uuidString).staging"
            let tail = offset - partStart
            if tail > 0 {
                try await client.download(Self.tailKey(id, end: offset), to: staging)
            } else {
                try await threadPool.runIfActive {
                    let descriptor = open(staging, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
                    guard descriptor >= 0 else { throw SystemCallError("create", errno) }
                    close(descriptor)
                }
            }
            // Tails of writers before this one (taken over, or whose offset was never stored)
            // are garbage now; the stored offset's own tail stays until a newer one is stored.
            for object in try await client.list(prefix: Self.tailPrefix(id)) where object.key != Self.tailKey(id, end: offset) {
                try? await client.delete(object.key)
            }
            // The parts the stored offset counts; any from a later part were sent by a writer
            // whose offset was never stored, and are sent again.
            let parts = try UploadParts(state).parts.filter { Int64($0.number) <= partStart / partBytes }
            let appender = try await S3UploadAppender(store: self, id: id, multipartId: multipart, stagingPath: staging,
                                                      partStart: partStart, staged: tail, parts: parts, length: length, lease: lease)
            return appender
        } catch let error as DomainError {
            throw error
        } catch {
            throw S3BlobStore.unavailable(error)
        }
    }

    /// The whole upload as a local file, for processing: its parts assembled in S3 (once), then
    /// fetched to this node.
    package func localPath(_ id: String, state: String?) async throws -> String {
        let path = assembledPath(id)
        if FileManager.default.fileExists(atPath: path) { return path }
        do {
            let multipart = try await multipartId(id)
            let key = Self.dataKey(id)
            do {
                let parts = try UploadParts(state).parts.map { S3Part(number: $0.number, etag: $0.etag, size: 0) }
                if parts.isEmpty {
                    // An empty upload has no part, and S3 assembles no object from none.
                    _ = FileManager.default.createFile(atPath: path, contents: nil)
                    return path
                }
                try await client.completeMultipartUpload(key, uploadId: multipart, parts: parts)
            } catch let error as S3Error where error.code == "NoSuchUpload" {
                // Assembled already (by an earlier attempt, on any node).
            }
            try await client.download(key, to: path + ".part")
            try await threadPool.runIfActive {
                guard rename(path + ".part", path) == 0 else { throw SystemCallError("rename", errno) }
            }
            return path
        } catch let error as DomainError {
            throw error
        } catch {
            throw S3BlobStore.unavailable(error)
        }
    }
}

/// The parts an upload's stored offset counts, as its record keeps them: JSON,
/// `{"parts":[{"n":1,"etag":"\"…\""},…]}`.
struct UploadParts: Codable, Equatable {
    struct Part: Codable, Equatable {
        var number: Int
        var etag: String
        enum CodingKeys: String, CodingKey { case number = "n", etag }
    }

    var parts: [Part] = []

    init(parts: [Part]) { self.parts = parts }

    init(_ state: String?) throws {
        guard let state, !state.isEmpty else { return }
        self = try JSONDecoder().decode(UploadParts.self, from: Data(state.utf8))
    }

    var text: String { String(decoding: try! JSONEncoder().encode(self), as: UTF8.self) }
}

/// Multipart ids this node has seen: they never change, so each is read from S3 once.
actor MultipartIds {
    private var ids: [String: String] = [:]
    func get(_ id: String) -> String? { ids[id] }
    func set(_ id: String, _ multipart: String) {
        if ids.count > 10_000 { ids.removeAll() }
        ids[id] = multipart
    }
    func remove(_ id: String) { ids[id] = nil }
}

/// One request's writes into an upload in S3. Not shared between tasks.
///
/// Bytes go to the staging file (in 1 MiB writes on the thread pool); a staging file that
/// holds a whole part becomes that part's file and is sent while the next part fills, up to
/// `maxPartsInFlight` parts at once: the socket and S3 work at the same time, and S3 gets
/// parallel streams as boto3 gives it. (One part at a time, in line with the request, got
/// 0.47× boto3's throughput: Docs/BENCHMARKS.md.) Before each part the lease is checked: a
/// writer taken over on this node stops there (the engine checks the database's fence at the
/// same moments, and the offset is stored only under it); `sync` waits for every part.
final class S3UploadAppender: UploadAppender, @unchecked Sendable {
    // @unchecked Sendable: used by one request handler at a time, every call awaited in turn.
    static let writeBatch = 1 << 20
    static let maxPartsInFlight = 4

    private let store: S3UploadStore
    private let id: String
    private let multipartId: String
    private let stagingPath: String
    private var descriptor: Int32
    /// Parts on their way to S3, oldest first, each in a file of its own.
    private var inFlight: [(number: Int, path: String, upload: Task<String, any Error>)] = []
    private let length: Int64?
    private let lease: WriterLease?
    /// Upload offset of the staging file's first byte: a multiple of the part size.
    private var partStart: Int64
    /// Bytes in the staging file.
    private var staged: Int64
    private var pending: [ByteBuffer] = []
    private var pendingBytes = 0
    private var isClosed = false
    /// The parts the new offset will count: the stored ones, then this writer's.
    private var parts: [Int: String]

    init(store: S3UploadStore, id: String, multipartId: String, stagingPath: String, partStart: Int64, staged: Int64,
         parts: [UploadParts.Part], length: Int64?, lease: WriterLease?) async throws {
        self.parts = Dictionary(parts.map { ($0.number, $0.etag) }, uniquingKeysWith: { $1 })
        self.store = store
        self.id = id
        self.multipartId = multipartId
        self.stagingPath = stagingPath
        self.partStart = partStart
        self.staged = staged
        self.length = length
        self.lease = lease
        descriptor = try await store.threadPool.runIfActive {
            let descriptor = open(stagingPath, O_WRONLY | O_CLOEXEC)
            guard descriptor >= 0 else { throw SystemCallError("open", errno) }
            return descriptor
        }
    }

    var offset: Int64 { partStart + staged + Int64(pendingBytes) }

    var state: String? {
        UploadParts(parts: parts.keys.sorted().map { UploadParts.Part(number: $0, etag: parts[$0]!) }).text
    }
    var end: Int64 { offset }

    func fillsBatch(adding count: Int) -> Bool {
        staged + Int64(pendingBytes + count) >= store.partBytes
    }

    func append(_ chunk: ByteBuffer) async throws {
        var chunk = chunk
        while chunk.readableBytes > 0 {
            let room = Int(store.partBytes - staged) - pendingBytes
            let piece = chunk.readSlice(length: min(room, chunk.readableBytes))!
            pending.append(piece)
            pendingBytes += piece.readableBytes
            if staged + Int64(pendingBytes) == store.partBytes {
                try await writePending()
                try await sendFullPart()
            } else if pendingBytes >= Self.writeBatch {
                try await writePending()
            }
        }
    }

    private func writePending() async throws {
        guard !pending.isEmpty else { return }
        let buffers = pending, at = staged, descriptor = descriptor
        pending = []
        let count = pendingBytes
        pendingBytes = 0
        try await store.threadPool.runIfActive {
            var position = off_t(at)
            for buffer in buffers {
                try buffer.withUnsafeReadableBytes { bytes in
                    var done = 0
                    while done < bytes.count {
                        let written = pwrite(descriptor, bytes.baseAddress! + done, bytes.count - done, position)
                        guard written > 0 else { throw SystemCallError("write", errno) }
                        done += written
                        position += off_t(written)
                    }
                }
            }
        }
        staged += Int64(count)
    }

    /// The full staging file becomes the file of the part that starts at `partStart`, sent in
    /// the background; a new staging file takes the next bytes.
    private func sendFullPart() async throws {
        if lease?.isRevoked == true { throw DomainError.uploadTakenOver }
        let number = Int(partStart / store.partBytes) + 1
        let partPath = "\(stagingPath).part\(number)", staging = stagingPath, full = descriptor
        descriptor = try await store.threadPool.runIfActive { () throws -> Int32 in
            Glibc.close(full)
            guard rename(staging, partPath) == 0 else { throw SystemCallError("rename", errno) }
            let descriptor = open(staging, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard descriptor >= 0 else { throw SystemCallError("create", errno) }
            return descriptor
        }
        partStart += store.partBytes
        staged = 0
        let client = store.client, key = S3UploadStore.dataKey(id), multipart = multipartId, size = store.partBytes
        inFlight.append((number, partPath, Task {
            try await client.uploadPart(key, uploadId: multipart, number: number, fileAt: partPath, range: 0..<size)
        }))
        if inFlight.count >= Self.maxPartsInFlight { try await settleOldestPart() }
    }

    /// Waits for the oldest part in flight and records its ETag.
    private func settleOldestPart() async throws {
        let part = inFlight.removeFirst()
        let result = await part.upload.result
        let path = part.path
        try? await store.threadPool.runIfActive { _ = unlink(path) }
        parts[part.number] = try result.get()
    }

    /// Sends the staging file's `bytes` as the upload's last part.
    private func sendLastPart(bytes: Int64) async throws {
        let number = Int(partStart / store.partBytes) + 1
        parts[number] = try await store.client.uploadPart(S3UploadStore.dataKey(id), uploadId: multipartId, number: number,
                                                          fileAt: stagingPath, range: 0..<bytes)
    }

    func finish() async throws { try await sync() }

    /// Sends what is staged: as the upload's last part when these are its last bytes, else as
    /// the tail object of this offset.
    func sync() async throws {
        do {
            try await writePending()
            while !inFlight.isEmpty { try await settleOldestPart() }
            guard staged > 0 else { return }
            if lease?.isRevoked == true { throw DomainError.uploadTakenOver }
            if let length, end == length {
                try await sendLastPart(bytes: staged)
            } else {
                let descriptor = descriptor
                try await store.threadPool.runIfActive { _ = fsync(descriptor) }
                try await store.client.put(S3UploadStore.tailKey(id, end: end), fileAt: stagingPath, sha256: nil)
            }
        } catch let error as DomainError {
            throw error
        } catch {
            throw S3BlobStore.unavailable(error)
        }
    }

    func close() async {
        guard !isClosed else { return }
        isClosed = true
        // Parts still on their way belong to a request that failed: stopped, their files removed.
        for part in inFlight {
            part.upload.cancel()
            _ = await part.upload.result
            let path = part.path
            try? await store.threadPool.runIfActive { _ = unlink(path) }
        }
        inFlight = []
        let descriptor = descriptor, path = stagingPath
        try? await store.threadPool.runIfActive {
            Glibc.close(descriptor)
            unlink(path)
        }
    }
}
