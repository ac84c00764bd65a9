import Foundation
import Logging
import MediaPipeline
import NIOCore

/// Resumable uploads, whatever protocol carries them (tus today): creation under the policy,
/// appends by one writer at a time made durable before their offset is stored, termination,
/// and what a completed upload became. The HTTP layer parses headers and writes responses;
/// the rules live here.
///
/// Durability: an append's bytes are written, synced (`durable`), and only then is the new
/// offset stored. After a crash the stored offset never counts a byte that is not durable, and
/// bytes past it are dropped when the next append opens the upload. The append that completes
/// an upload stores its processing job in the same transaction.
package struct UploadEngine: Sendable {
    package let uploads: any UploadRepository
    package let store: any UploadStore
    package let locker: any UploadLocker
    package let policy: UploadPolicy
    package let rooms: any RoomRepository
    package let files: FileStore
    package let ingest: AttachmentIngest
    /// Rung after a completed upload's job is stored, so this node starts it at once.
    package let jobDoorbell: Doorbell
    /// The largest upload (`Tus-Max-Size`).
    package let maxSize: Int64
    package let expiry: TimeInterval
    /// Sync before acknowledging an offset.
    package let durable: Bool

    package init(uploads: any UploadRepository, store: any UploadStore, locker: any UploadLocker, policy: UploadPolicy,
                 rooms: any RoomRepository, files: FileStore, ingest: AttachmentIngest, jobDoorbell: Doorbell, maxSize: Int64,
                 expiry: TimeInterval, durable: Bool) {
        self.uploads = uploads
        self.store = store
        self.locker = locker
        self.policy = policy
        self.rooms = rooms
        self.files = files
        self.ingest = ingest
        self.jobDoorbell = jobDoorbell
        self.maxSize = maxSize
        self.expiry = expiry
        self.durable = durable
    }

    /// The chunk's declared checksum: the algorithm and the digest it must come to.
    package typealias Checksum = (algorithm: ChunkChecksum, expected: Data)

    /// What a completed upload became.
    package enum Outcome: Sendable {
        case processing
        case stored(StoredFile)
    }

    // MARK: Creation

    /// A new upload of `length` bytes (nil: declared later), its `metadata` kept verbatim.
    /// Policy comes before bytes: a length past `maxSize` or the quota, a claimed `filetype`
    /// the policy forbids, or a `room_id` the user is not in is refused before anything is stored.
    /// With a `handoff`, the completed upload goes to that request instead of the pipeline, and
    /// may be at most as large as its endpoint takes.
    package func create(userId: Int64, length: Int64?, metadata: String?, handoff: UploadHandoff? = nil) async throws -> UploadRecord {
        let maxSize = largest(handoff)
        try policy.checkStart(userId: userId)
        if let length, length > maxSize { throw DomainError.tooLarge("the upload is larger than the maximum of \(maxSize) bytes") }
        let parsed = try UploadMetadata.parse(metadata)
        if let length {
            try await checkQuota(adding: length, userId: userId)
            try policy.checkDisk(adding: length)
        }
        if let claimed = parsed["filetype"], policy.forbids(claimed) { throw DomainError.forbiddenType(claimed) }
        if let roomValue = parsed["room_id"] {
            guard let roomId = Int64(roomValue), try await rooms.isMember(roomId: roomId, userId: userId) else {
                throw DomainError.notFound("no such room")
            }
        }
        let now = Date()
        let record = UploadRecord(id: RandomToken.make(), userId: userId, length: length, offset: 0, metadata: metadata,
                                  createdAt: now, expiresAt: now.addingTimeInterval(expiry), handoff: handoff)
        // The check above answers most refusals cheaply; this one, in the insert's transaction,
        // holds against creations racing each other.
        switch try await uploads.create(record, quota: policy.quotaBytes, maxOpen: policy.maxOpenUploads) {
        case .created: break
        case .overQuota: throw policy.quotaExceeded
        case .tooManyOpen:
            throw DomainError.rateLimited(retryAfter: 60, what: "unfinished uploads (at most \(policy.maxOpenUploads ?? 0)); finish or delete some")
        }
        do { try await store.create(record.id) } catch {
            try? await uploads.delete(id: record.id)
            throw error
        }
        return record
    }

    // MARK: Reading

    /// `userId`'s upload (not found for anyone else's); an unfinished one past its expiry is gone.
    package func upload(id: String, userId: Int64) async throws -> UploadRecord {
        guard let record = try await uploads.upload(id: id), record.userId == userId else {
            throw DomainError.notFound("no such upload")
        }
        if record.completedAt == nil, record.expiresAt <= Date() { throw DomainError.uploadExpired }
        return record
    }

    /// What the upload became: incomplete, refused, still processing, or a stored file. With a
    /// `wait`, a processing upload is waited for (once) up to that long.
    package func outcome(of id: String, userId: Int64, wait: Duration?) async throws -> Outcome {
        var record = try await upload(id: id, userId: userId)
        if let wait, record.completedAt != nil, record.rejection == nil, record.fileId == nil {
            // Once: a wake-up means processing ended, whether or not it made a file (a failure
            // stays processing until the job's retry), so the answer is whatever is there now.
            await ingest.waiters.next(record.id, timeout: wait)
            record = try await upload(id: id, userId: userId)
        }
        guard record.completedAt != nil else { throw DomainError.uploadIncomplete(offset: record.offset, length: record.length) }
        if let rejection = record.rejection { throw DomainError.uploadRefused(code: rejection) }
        guard let fileId = record.fileId, let file = try await files.file(id: fileId) else { return .processing }
        return .stored(file)
    }

    // MARK: Appending

    /// Appends `body` at `claimedOffset`, which must be the upload's offset, checks the
    /// chunk's checksum, makes the bytes durable, then stores and returns the new offset.
    /// `declaredLength` sets a deferred length. An empty append to a completed upload (a client
    /// retrying a last append it never saw answered) changes nothing and returns its offset.
    package func append<Body: AsyncSequence & Sendable>(
        to record: UploadRecord, claimedOffset: Int64, declaredLength: Int64?, expectsBytes: Bool, body: Body,
        checksum: Checksum?, keepsPartialBody: Bool = false, logger: Logger
    ) async throws -> Int64 where Body.Element == ByteBuffer {
        var record = record
        guard claimedOffset == record.offset else {
            throw DomainError.offsetMismatch(current: record.offset, "the upload is at offset \(record.offset), not \(claimedOffset)")
        }
        if record.completedAt != nil {
            // A finished upload was handed to the pipeline once: it is not opened again.
            guard !expectsBytes else { throw DomainError.tooLarge("the upload is complete; no bytes can follow") }
            return record.offset
        }
        if record.length == nil, let length = declaredLength {
            guard length >= record.offset else { throw DomainError.badInput("the length must not be below the current offset") }
            let maxSize = largest(record.handoff)
            guard length <= maxSize else { throw DomainError.tooLarge("the upload is larger than the maximum of \(maxSize) bytes") }
            // The quota already counts what arrived; only the rest is new.
            try await checkQuota(adding: length - record.offset, userId: record.userId)
            try policy.checkDisk(adding: length - record.offset)
            record.length = length
        }
        return try await receive(body, into: record, checksum: checksum, keepsPartialBody: keepsPartialBody, logger: logger)
    }

    private func receive<Body: AsyncSequence & Sendable>(_ body: Body, into record: UploadRecord, checksum: Checksum?,
                                                         keepsPartialBody: Bool, logger: Logger) async throws -> Int64
    where Body.Element == ByteBuffer {
        var checksum = checksum
        let maxSize = largest(record.handoff)
        var limit = record.length ?? maxSize
        if record.length == nil, let room = try await policy.remaining(for: record.userId, in: uploads) {
            limit = min(limit, record.offset + room)
        }
        let lease = await locker.acquire(record.id)
        // Read again as the upload's writer: a request taken over may have stored a new offset
        // since this one read it, and opening at the old one would cut those bytes away.
        let current = try? await uploads.upload(id: record.id)
        guard let current, current.offset == record.offset else {
            await locker.release(record.id, lease)
            if let current {
                throw DomainError.offsetMismatch(current: current.offset, "the upload moved on while this request waited for it")
            }
            throw DomainError.conflict("the upload moved on while this request waited for it")
        }
        let writer: any UploadAppender
        do { writer = try await store.openForAppend(record.id, at: record.offset, length: record.length, state: current.storeState, lease: lease) } catch {
            await locker.release(record.id, lease)
            throw error
        }
        do {
            // With `keepsPartialBody`, a body that breaks off (a dropped connection) still
            // counts for what arrived: it is made durable and its offset stored, so the client
            // resumes from there. Not with a checksum, which only the whole chunk can meet.
            var brokenOff: (any Error)?
            var chunks = body.makeAsyncIterator()
            while true {
                let next: ByteBuffer?
                do { next = try await chunks.next() } catch {
                    guard keepsPartialBody, checksum == nil else { throw error }
                    brokenOff = error
                    break
                }
                guard let chunk = next else { break }
                // Checked before a batch is written, so a writer that was taken over stops
                // within a MiB; checking every socket read cost an actor hop per 64 KiB.
                if writer.fillsBatch(adding: chunk.readableBytes), await !locker.isCurrent(record.id, lease) {
                    throw DomainError.uploadTakenOver
                }
                // The bytes past the stored offset are cut off when the upload is next opened;
                // truncating here could cut a newer writer's bytes instead.
                guard writer.end + Int64(chunk.readableBytes) <= limit else {
                    if record.length == nil, limit < maxSize { throw policy.quotaExceeded }
                    throw DomainError.tooLarge("the body runs past the upload's length (\(limit) bytes)")
                }
                try await writer.append(chunk)
                checksum?.algorithm.update(chunk)
            }
            if let checksum, checksum.algorithm.finalize() != checksum.expected {
                throw DomainError.checksumMismatch(offset: record.offset)
            }
            guard await locker.beginCommit(record.id, lease) else { throw DomainError.uploadTakenOver }
            if durable { try await writer.sync() } else { try await writer.finish() }
            let offset = writer.offset
            let complete = record.length.map { offset == $0 } ?? false
            // A chunk that was the whole upload has a verified checksum that is the content's
            // hash when it is SHA-256: the pipeline need not read the file again for it.
            // An upload with a handoff is not the pipeline's: its request takes the bytes.
            let processing = complete && record.handoff == nil
            let contentSHA256 = complete && record.offset == 0 ? checksum.flatMap { $0.algorithm.isSHA256 ? $0.expected.hexString : nil } : nil
            // The processing job is stored with the last offset: the pipeline runs off the
            // request, on whichever node takes the job; a crash before it ends leaves the job.
            // Under this writer's fence: if another node took the upload over meanwhile, this
            // request stores nothing and its bytes count for nothing.
            guard try await uploads.advance(id: record.id, to: offset, length: record.length, completedAt: complete ? Date() : nil,
                                            processing: processing ? ProcessingJob(uploadId: record.id, contentSHA256: contentSHA256) : nil,
                                            storeState: writer.state, ifWriter: lease.fence) else {
                throw DomainError.uploadTakenOver
            }
            await writer.close()
            await locker.release(record.id, lease)
            if complete {
                logger.info("upload complete", metadata: ["upload": "\(record.id)", "bytes": "\(offset)"])
                if processing { jobDoorbell.ring() }
            }
            if let brokenOff {
                logger.info("upload body broke off; kept what arrived", metadata: ["upload": "\(record.id)", "offset": "\(offset)"])
                throw brokenOff
            }
            return offset
        } catch {
            // A dropped connection keeps what was synced earlier; this request's bytes past the
            // stored offset are cut off by the next append.
            await writer.close()
            await locker.release(record.id, lease)
            throw error
        }
    }

    /// Appends a body of any length as consecutive appends of at most `segmentBytes`, each
    /// made durable and its offset stored before the next begins, keeping what arrived of a
    /// body that breaks off: a long single request (the IETF draft's) loses at most one
    /// segment to a crash or a dropped connection. `checkpoint` hears each offset stored while
    /// more follows.
    package func appendInSegments<Body: AsyncSequence & Sendable>(
        to record: UploadRecord, claimedOffset: Int64, declaredLength: Int64?, body: Body, segmentBytes: Int64,
        logger: Logger, checkpoint: (Int64) async throws -> Void
    ) async throws -> Int64 where Body.Element == ByteBuffer {
        let segments = BodySegments(body)
        var record = record
        var offset = claimedOffset
        var declared = declaredLength
        while true {
            offset = try await append(to: record, claimedOffset: offset, declaredLength: declared, expectsBytes: true,
                                      body: segments.next(segmentBytes), checksum: nil, keepsPartialBody: true, logger: logger)
            if record.length == nil { record.length = declared }
            declared = nil
            record.offset = offset
            guard try await segments.hasMore() else { return offset }
            try await checkpoint(offset)
        }
    }

    /// Ends an upload whose length was not declared where it stands: its length becomes its
    /// offset, which completes it (an empty append that declares the length).
    package func complete(_ record: UploadRecord, logger: Logger) async throws -> Int64 {
        try await append(to: record, claimedOffset: record.offset, declaredLength: record.offset, expectsBytes: false,
                         body: EmptyBody(), checksum: nil, logger: logger)
    }

    /// `userId`'s upload as a client about to resume it must see it: a request still writing it
    /// is stopped first, so the offset answered is the one the next append must claim (the
    /// draft's advice: a client asking for the offset has given the earlier request up).
    package func uploadForResumption(id: String, userId: Int64) async throws -> UploadRecord {
        _ = try await upload(id: id, userId: userId)
        let lease = await locker.acquire(id)
        await locker.release(id, lease)
        return try await upload(id: id, userId: userId)
    }

    /// The bytes of a completed upload, on this node's disk (fetched first when they are elsewhere).
    package func completedBytes(_ record: UploadRecord) async throws -> String {
        try await store.localPath(record.id, state: record.storeState)
    }

    // MARK: Termination

    /// Deletes the upload, its state and its bytes, stopping anyone still writing it.
    package func terminate(_ record: UploadRecord) async throws {
        let lease = await locker.acquire(record.id)
        try await uploads.delete(id: record.id)
        try await store.remove(record.id)
        await locker.release(record.id, lease)
    }

    /// The largest upload: `maxSize`, or less for an endpoint that takes less.
    package func largest(_ handoff: UploadHandoff?) -> Int64 {
        min(handoff?.maxBytes ?? maxSize, maxSize)
    }

    /// A request body with nothing in it.
    private struct EmptyBody: AsyncSequence, Sendable {
        typealias Element = ByteBuffer
        struct AsyncIterator: AsyncIteratorProtocol {
            mutating func next() async throws -> ByteBuffer? { nil }
        }
        func makeAsyncIterator() -> AsyncIterator { AsyncIterator() }
    }

    /// Quota refusal when `bytes` more would take the user past it.
    private func checkQuota(adding bytes: Int64, userId: Int64) async throws {
        if let room = try await policy.remaining(for: userId, in: uploads), bytes > room { throw policy.quotaExceeded }
    }
}
