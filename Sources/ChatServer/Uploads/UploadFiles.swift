import Crypto
import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// The bytes of uploads in progress, one file each under `uploads/` in the data directory.
///
/// Every system call runs on NIO's blocking thread pool, never on an event loop or Swift's
/// cooperative pool: a `write` to a busy disk or an `fsync` can take milliseconds.
struct UploadFiles: Sendable {
    let directory: String
    var threadPool: NIOThreadPool = .singleton

    init(dataDirectory: String) throws {
        directory = (dataDirectory as NSString).appendingPathComponent("uploads")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    func path(_ id: String) -> String { (directory as NSString).appendingPathComponent(id) }

    func create(_ id: String) async throws {
        let path = path(id)
        try await threadPool.runIfActive {
            let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard descriptor >= 0 else { throw UploadFileError.system("create", errno) }
            close(descriptor)
        }
    }

    func remove(_ id: String) async throws {
        let path = path(id)
        try await threadPool.runIfActive { _ = unlink(path) }
    }

    /// Opens the upload's file for writing at `offset`, first cutting away anything past it
    /// (bytes of an interrupted request that were never acknowledged).
    ///
    /// With a `lease`, every write checks it on the thread that makes it, just before the
    /// system call: a writer that was taken over never writes again, even with a batch queued.
    func openForAppend(_ id: String, at offset: Int64, lease: WriterLease? = nil) async throws -> UploadFileWriter {
        let path = path(id)
        let descriptor = try await threadPool.runIfActive { () throws -> Int32 in
            let descriptor = open(path, O_WRONLY | O_CLOEXEC)
            guard descriptor >= 0 else { throw UploadFileError.system("open", errno) }
            guard ftruncate(descriptor, off_t(offset)) == 0 else {
                let error = errno
                close(descriptor)
                throw UploadFileError.system("truncate", error)
            }
            return descriptor
        }
        return UploadFileWriter(descriptor: descriptor, offset: offset, threadPool: threadPool, lease: lease)
    }
}

enum UploadFileError: Error, CustomStringConvertible {
    case system(String, Int32)
    /// Another request took the upload over; this writer's bytes were not written.
    case takenOver

    var description: String {
        switch self {
        case .system(let call, let code): "\(call): \(String(cString: strerror(code)))"
        case .takenOver: "another request took this upload over"
        }
    }
}

/// One request's writes into an upload's file. Not shared between tasks.
///
/// Socket reads (at most 64 KiB each) are gathered into 1 MiB batches, and one batch is written
/// on the thread pool while the next fills: one thread-pool hop per MiB instead of one per
/// read, and the disk and the socket work at the same time. That took loopback throughput from
/// 390 to over 600 MiB/s (Docs/BENCHMARKS.md). A batch is the received buffers themselves,
/// written with one `pwritev`: copying them into a batch buffer first cost 6 % of the CPU, and
/// allocating that buffer anew per batch another ~7 % in page faults. At most two batches are
/// held, so memory stays flat.
final class UploadFileWriter: @unchecked Sendable {
    // @unchecked Sendable: used by one request handler at a time; the descriptor is only
    // touched through the thread pool, and at most one write is in flight (every other call
    // waits for it first).
    static let batchSize = 1 << 20

    private let descriptor: Int32
    private let threadPool: NIOThreadPool
    /// Bytes handed to a write (in flight or done). After ``finish()`` or ``sync()``: on disk.
    private(set) var offset: Int64
    private var pending: [ByteBuffer] = []
    private var pendingBytes = 0
    private var inFlight: EventLoopFuture<Void>?
    private var isClosed = false
    private let lease: WriterLease?

    init(descriptor: Int32, offset: Int64, threadPool: NIOThreadPool, lease: WriterLease? = nil) {
        self.descriptor = descriptor
        self.offset = offset
        self.threadPool = threadPool
        self.lease = lease
    }

    deinit {
        if !isClosed { Glibc.close(descriptor) }
    }

    /// Where the next appended byte goes.
    var end: Int64 { offset + Int64(pendingBytes) }

    /// Whether appending `count` more bytes starts a write.
    func fillsBatch(adding count: Int) -> Bool { pendingBytes + count >= Self.batchSize }

    /// Appends `chunk`; a full batch starts its write (after the previous one has finished).
    func append(_ chunk: ByteBuffer) async throws {
        guard chunk.readableBytes > 0 else { return }
        pending.append(chunk)
        pendingBytes += chunk.readableBytes
        if pendingBytes >= Self.batchSize { try await startWrite() }
    }

    /// Writes everything appended so far and waits for it (no `fsync`).
    func finish() async throws {
        try await startWrite()
        try await drain()
    }

    /// Makes every byte appended so far durable; only then may the offset be acknowledged.
    func sync() async throws {
        try await finish()
        let descriptor = self.descriptor
        try await threadPool.runIfActive {
            guard fdatasync(descriptor) == 0 else { throw UploadFileError.system("fdatasync", errno) }
        }
    }

    func close() async {
        guard !isClosed else { return }
        try? await drain() // never close under a write still running
        isClosed = true
        let descriptor = self.descriptor
        try? await threadPool.runIfActive { _ = Glibc.close(descriptor) }
    }

    private func drain() async throws {
        guard let write = inFlight else { return }
        inFlight = nil
        try await write.get()
    }

    private func startWrite() async throws {
        guard pendingBytes > 0 else { return }
        try await drain()
        let batch = pending, start = offset, descriptor = self.descriptor, lease = self.lease
        offset += Int64(pendingBytes)
        pending = []
        pendingBytes = 0
        inFlight = threadPool.runIfActive(eventLoop: MultiThreadedEventLoopGroup.singleton.any()) {
            if lease?.isRevoked == true { throw UploadFileError.takenOver }
            try Self.write(batch, to: descriptor, at: start)
        }
    }

    /// Writes `buffers` back to back at `position`: one `pwritev`, then buffer by buffer for
    /// whatever a short write left.
    private static func write(_ buffers: [ByteBuffer], to descriptor: Int32, at position: Int64) throws {
        var done = try withIOVectors(buffers[...]) { vectors -> Int in
            while true {
                let result = pwritev(descriptor, vectors, Int32(vectors.count), off_t(position))
                if result >= 0 { return result }
                if errno != EINTR { throw UploadFileError.system("write", errno) }
            }
        }
        var at = position + Int64(done)
        for buffer in buffers {
            guard done < buffer.readableBytes else { done -= buffer.readableBytes; continue }
            try buffer.withUnsafeReadableBytes { bytes in
                var written = done
                while written < bytes.count {
                    let result = pwrite(descriptor, bytes.baseAddress! + written, bytes.count - written, off_t(at))
                    if result < 0 {
                        if errno == EINTR { continue }
                        throw UploadFileError.system("write", errno)
                    }
                    written += result
                    at += Int64(result)
                }
            }
            done = 0
        }
    }

    /// Calls `body` with an iovec per buffer, each pointing into its buffer's storage, valid
    /// for the duration of the call (hence the nesting: one `withUnsafeReadableBytes` each).
    private static func withIOVectors<Result>(_ buffers: ArraySlice<ByteBuffer>, _ vectors: [iovec] = [],
                                              _ body: ([iovec]) throws -> Result) throws -> Result {
        guard let first = buffers.first, vectors.count < 1024 else { return try body(vectors) } // 1024: Linux's IOV_MAX
        return try first.withUnsafeReadableBytes { bytes in
            try withIOVectors(buffers.dropFirst(), vectors + [iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress),
                                                                     iov_len: bytes.count)], body)
        }
    }
}

/// `Upload-Checksum` algorithms: sha1 (required by tus), sha256, md5.
enum ChunkChecksum {
    case sha1(Insecure.SHA1)
    case sha256(SHA256)
    case md5(Insecure.MD5)

    static let algorithms = "sha1,sha256,md5"

    init?(algorithm: String) {
        switch algorithm.lowercased() {
        case "sha1": self = .sha1(Insecure.SHA1())
        case "sha256": self = .sha256(SHA256())
        case "md5": self = .md5(Insecure.MD5())
        default: return nil
        }
    }

    mutating func update(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            switch self {
            case .sha1(var hasher): hasher.update(bufferPointer: bytes); self = .sha1(hasher)
            case .sha256(var hasher): hasher.update(bufferPointer: bytes); self = .sha256(hasher)
            case .md5(var hasher): hasher.update(bufferPointer: bytes); self = .md5(hasher)
            }
        }
    }

    var isSHA256: Bool {
        if case .sha256 = self { true } else { false }
    }

    func finalize() -> Data {
        switch self {
        case .sha1(let hasher): Data(hasher.finalize())
        case .sha256(let hasher): Data(hasher.finalize())
        case .md5(let hasher): Data(hasher.finalize())
        }
    }
}

/// One writer per upload. A new PATCH takes the upload over from a previous request whose
/// connection may have died silently, instead of answering 423 until that request times out.
///
/// A writer that has passed ``beginCommit(_:_:)`` (its bytes are all in and checked; it is
/// syncing them and storing the new offset) is never overtaken: the next writer waits for
/// the commit to end, then reads the offset it stored. Without that, a client that gave up on
/// a slow acknowledgement and resent the chunk could have its new request cut the file back
/// to the old offset just after the old request stored the new one, and a later failure of
/// the new request left a hole of zeros under an acknowledged offset (seen through a proxy
/// that cuts connections: one 512 KiB chunk of zeros in a 3 MiB file).
actor UploadWriters {
    private var holders: [String: WriterLease] = [:]
    /// Writers that were taken over and have not yet stopped.
    private var stopping = Set<ObjectIdentifier>()
    /// The writer of each upload that is committing, if one is.
    private var committing: [String: WriterLease] = [:]

    /// Makes the caller the upload's writer. A previous writer's lease is revoked at once (its
    /// queued writes are dropped, ``isCurrent`` turns false) and it is given up to half a second
    /// to stop; one stuck reading a dead socket never writes again. A previous writer that is
    /// committing is waited for until it is done, however long its sync takes.
    func acquire(_ id: String) async -> WriterLease {
        let lease = WriterLease()
        if let previous = holders[id] {
            let key = ObjectIdentifier(previous)
            stopping.insert(key)
            holders[id] = lease
            if committing[id] !== previous { previous.revoke() }
            for _ in 0..<20 where stopping.contains(key) {
                try? await Task.sleep(for: .milliseconds(25))
            }
            stopping.remove(key)
        } else {
            holders[id] = lease
        }
        while committing[id] != nil {
            try? await Task.sleep(for: .milliseconds(5))
        }
        return lease
    }

    func isCurrent(_ id: String, _ lease: WriterLease) -> Bool { holders[id] === lease }

    /// Whether `lease` is still the upload's writer; if so, nobody takes the upload over until
    /// it calls ``release(_:_:)``.
    func beginCommit(_ id: String, _ lease: WriterLease) -> Bool {
        guard holders[id] === lease else { return false }
        committing[id] = lease
        return true
    }

    func release(_ id: String, _ lease: WriterLease) {
        stopping.remove(ObjectIdentifier(lease))
        if committing[id] === lease { committing[id] = nil }
        if holders[id] === lease { holders[id] = nil }
    }
}

/// One request's right to write an upload's bytes, revoked when another request takes the
/// upload over. Checked by the writing thread right before each write, so a batch that was
/// already queued when the upload changed hands is dropped, not written over the new writer's.
final class WriterLease: Sendable {
    private let revoked = Atomic<Bool>(false)

    var isRevoked: Bool { revoked.load(ordering: .acquiring) }

    func revoke() { revoked.store(true, ordering: .releasing) }
}
