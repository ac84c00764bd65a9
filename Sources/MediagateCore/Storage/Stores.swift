import Foundation
import NIOCore

/// Where stored files' bytes live, one blob per content, named by its SHA-256.
///
/// The media pipeline and thumbnails need a local file: a store on disk hands out its own
/// path; a remote store (S3) fetches into a per-node cache. Serving needs only a byte range,
/// which a remote store streams without fetching the whole blob.
package protocol BlobStore: Sendable {
    /// Moves the file at `source` into the store as `sha256`, or deletes it when the store
    /// already has those bytes.
    func store(movingFileAt source: String, sha256: String) async throws
    /// A local file holding the blob.
    func localPath(sha256: String) async throws -> String
    /// The bytes of `range` of the blob, for sending: a local file when this node has one,
    /// else a stream of exactly those bytes.
    func read(sha256: String, range: ClosedRange<Int64>) async throws -> BlobBytes
    /// Deletes blobs not in `keep` that were last written before `cutoff`; returns how many.
    func removeOrphans(keeping keep: Set<String>, writtenBefore cutoff: Date) async throws -> Int
    /// Throws when the store cannot take or give bytes now (`/readyz`).
    func checkReachable() async throws
}

/// A blob's bytes as ``BlobStore/read(sha256:range:)`` hands them out.
package enum BlobBytes: Sendable {
    /// A file holding the whole blob: send the range from it.
    case file(String)
    /// Exactly the range's bytes, as they arrive.
    case stream(any AsyncSequence<ByteBuffer, any Error> & Sendable)
}

/// The bytes of uploads in progress.
package protocol UploadStore: Sendable {
    func create(_ id: String) async throws
    func remove(_ id: String) async throws
    /// Opens the upload for writing at `offset`, dropping any bytes past it (an interrupted
    /// request's, never acknowledged). Every write checks `lease` first: a writer that was
    /// taken over never writes again. `length` is the upload's, when known: a store that
    /// keeps the last bytes apart from the rest needs to know which ones are last. `state` is
    /// the record's ``UploadRecord/storeState``: where the stored offset's bytes are.
    func openForAppend(_ id: String, at offset: Int64, length: Int64?, state: String?, lease: WriterLease?) async throws -> any UploadAppender
    /// A local file with the upload's bytes, for the pipeline (which may rewrite it in place
    /// and moves it into the blob store); `state` as stored with the completing offset.
    func localPath(_ id: String, state: String?) async throws -> String
}

/// One request's writes into an upload. Not shared between tasks.
package protocol UploadAppender: AnyObject, Sendable {
    /// Bytes handed to a write so far. After ``finish()`` or ``sync()``: all written.
    var offset: Int64 { get }
    /// Where the next appended byte goes.
    var end: Int64 { get }
    /// Whether appending `count` more bytes starts a write (a moment to check the lease).
    func fillsBatch(adding count: Int) -> Bool
    func append(_ chunk: ByteBuffer) async throws
    /// Writes everything appended so far and waits for it.
    func finish() async throws
    /// Makes every byte appended so far durable; only then may the offset be acknowledged.
    func sync() async throws
    /// After ``sync()``: what the record keeps with the new offset (``UploadRecord/storeState``),
    /// or nil to keep what it has.
    var state: String? { get }
    func close() async
}

/// One writer per upload at a time (see ``InProcessUploadLocker``).
package protocol UploadLocker: Sendable {
    /// Makes the caller the upload's writer, taking it over from a previous one.
    func acquire(_ id: String) async -> WriterLease
    /// Whether `lease` still holds the upload.
    func isCurrent(_ id: String, _ lease: WriterLease) async -> Bool
    /// Whether `lease` still holds the upload; if so, nobody takes it over until ``release(_:_:)``.
    func beginCommit(_ id: String, _ lease: WriterLease) async -> Bool
    func release(_ id: String, _ lease: WriterLease) async
}

/// Processing a completed upload into a stored file: the job upload completion leaves.
package struct ProcessingJob: Sendable, Equatable {
    package var uploadId: String
    /// The bytes' SHA-256 when the server computed it while receiving them (a whole-upload
    /// `sha256` checksum), so the pipeline need not read the file again for it.
    package var contentSHA256: String?

    package init(uploadId: String, contentSHA256: String? = nil) {
        self.uploadId = uploadId
        self.contentSHA256 = contentSHA256
    }
}

/// A job some worker holds until `leasedUntil`.
package struct LeasedJob: Sendable, Equatable {
    package var id: Int64
    package var job: ProcessingJob
    /// Claims so far, this one included: a worker that died mid-job counts.
    package var attempts: Int

    package init(id: Int64, job: ProcessingJob, attempts: Int) {
        self.id = id
        self.job = job
        self.attempts = attempts
    }
}

/// Durable work: jobs are stored, each taken by one worker at a time for a lease; a worker
/// that dies leaves its job to be taken again when the lease ends.
package protocol JobQueue: Sendable {
    /// Queues a job (idempotent: an upload has at most one).
    func enqueue(_ job: ProcessingJob, now: Date) async throws
    /// Takes the next due job, if any, for `lease` seconds.
    func claim(owner: String, lease: TimeInterval, now: Date) async throws -> LeasedJob?
    /// The job is done (or given up): it leaves the queue.
    func complete(_ id: Int64) async throws
    /// The job failed; it may be taken again from `retryAt`.
    func retry(_ id: Int64, at retryAt: Date, error: String) async throws
    /// Jobs waiting and jobs leased now.
    func depth(now: Date) async throws -> (queued: Int, running: Int)
}
