import Foundation
import NIOCore
import NIOPosix
import MediagateCore

/// The bytes of uploads in progress, one file each under `uploads/` in the data directory.
///
/// Every system call runs on NIO's blocking thread pool, never on an event loop or Swift's
/// cooperative pool: a `write` to a busy disk or an `fsync` can take milliseconds.
package struct DiskUploadStore: UploadStore {
    package let directory: String
    package var threadPool: NIOThreadPool = .singleton

    package init(dataDirectory: String) throws {
        directory = (dataDirectory as NSString).appendingPathComponent("uploads")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    package func path(_ id: String) -> String { (directory as NSString).appendingPathComponent(id) }

    package func create(_ id: String) async throws {
        let path = path(id)
        try await threadPool.runIfActive {
            let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard descriptor >= 0 else { throw SystemCallError("create", errno) }
            close(descriptor)
        }
    }

    package func remove(_ id: String) async throws {
        let path = path(id)
        try await threadPool.runIfActive { _ = unlink(path) }
    }

    /// Opens the upload's file for writing at `offset`, first cutting away anything past it
    /// (bytes of an interrupted request that were never acknowledged).
    ///
    /// With a `lease`, every write checks it on the thread that makes it, just before the
    /// system call: a writer that was taken over never writes again, even with a batch queued.
    package func localPath(_ id: String) async throws -> String { path(id) }

    package func localPath(_ id: String, state: String?) async throws -> String { path(id) }

    package func openForAppend(_ id: String, at offset: Int64, length: Int64?, state: String?, lease: WriterLease?) async throws -> any UploadAppender {
        let path = path(id)
        let descriptor = try await threadPool.runIfActive { () throws -> Int32 in
            let descriptor = open(path, O_WRONLY | O_CLOEXEC)
            guard descriptor >= 0 else { throw SystemCallError("open", errno) }
            guard ftruncate(descriptor, off_t(offset)) == 0 else {
                let error = errno
                close(descriptor)
                throw SystemCallError("truncate", error)
            }
            return descriptor
        }
        return UploadFileWriter(descriptor: descriptor, offset: offset, threadPool: threadPool, lease: lease)
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
final class UploadFileWriter: UploadAppender, @unchecked Sendable {
    // @unchecked Sendable: used by one request handler at a time; the descriptor is only
    // touched through the thread pool, and at most one write is in flight (every other call
    // waits for it first).
    static let batchSize = 1 << 20
    /// The file is the whole state.
    var state: String? { nil }

    private let descriptor: Int32
    private let threadPool: NIOThreadPool
    /// Bytes handed to a write (in flight or done). After ``finish()`` or ``sync()``: on disk.
    package private(set) var offset: Int64
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
    package var end: Int64 { offset + Int64(pendingBytes) }

    /// Whether appending `count` more bytes starts a write.
    package func fillsBatch(adding count: Int) -> Bool { pendingBytes + count >= Self.batchSize }

    /// Appends `chunk`; a full batch starts its write (after the previous one has finished).
    package func append(_ chunk: ByteBuffer) async throws {
        guard chunk.readableBytes > 0 else { return }
        pending.append(chunk)
        pendingBytes += chunk.readableBytes
        if pendingBytes >= Self.batchSize { try await startWrite() }
    }

    /// Writes everything appended so far and waits for it (no `fsync`).
    package func finish() async throws {
        try await startWrite()
        try await drain()
    }

    /// Makes every byte appended so far durable; only then may the offset be acknowledged.
    package func sync() async throws {
        try await finish()
        let descriptor = self.descriptor
        try await threadPool.runIfActive {
            guard fdatasync(descriptor) == 0 else { throw SystemCallError("fdatasync", errno) }
        }
    }

    package func close() async {
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
            if lease?.isRevoked == true { throw DomainError.uploadTakenOver }
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
                if errno != EINTR { throw SystemCallError("write", errno) }
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
                        throw SystemCallError("write", errno)
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
