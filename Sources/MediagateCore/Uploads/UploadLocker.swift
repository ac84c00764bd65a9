import Synchronization

/// One writer per upload, within one process. A new PATCH takes the upload over from a previous request whose
/// connection may have died silently, instead of answering 423 until that request times out.
///
/// A writer that has passed ``beginCommit(_:_:)`` (its bytes are all in and checked; it is
/// syncing them and storing the new offset) is never overtaken: the next writer waits for
/// the commit to end, then reads the offset it stored. Without that, a client that gave up on
/// a slow acknowledgement and resent the chunk could have its new request cut the file back
/// to the old offset just after the old request stored the new one, and a later failure of
/// the new request left a hole of zeros under an acknowledged offset (seen through a proxy
/// that cuts connections: one 512 KiB chunk of zeros in a 3 MiB file).
package actor InProcessUploadLocker: UploadLocker {
    private var holders: [String: WriterLease] = [:]
    /// Writers that were taken over and have not yet stopped.
    private var stopping = Set<ObjectIdentifier>()
    /// The writer of each upload that is committing, if one is.
    private var committing: [String: WriterLease] = [:]

    package init() {}

    /// Makes the caller the upload's writer. A previous writer's lease is revoked at once (its
    /// queued writes are dropped, ``isCurrent`` turns false) and it is given up to half a second
    /// to stop; one stuck reading a dead socket never writes again. A previous writer that is
    /// committing is waited for until it is done, however long its sync takes.
    package func acquire(_ id: String) async -> WriterLease {
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

    package func isCurrent(_ id: String, _ lease: WriterLease) -> Bool { holders[id] === lease }

    /// Hands the upload from `lease` to `successor` (the same writer, with a fence).
    func replace(_ id: String, _ lease: WriterLease, with successor: WriterLease) {
        if holders[id] === lease { holders[id] = successor }
    }

    /// Whether `lease` is still the upload's writer; if so, nobody takes the upload over until
    /// it calls ``release(_:_:)``.
    package func beginCommit(_ id: String, _ lease: WriterLease) -> Bool {
        guard holders[id] === lease else { return false }
        committing[id] = lease
        return true
    }

    package func release(_ id: String, _ lease: WriterLease) {
        stopping.remove(ObjectIdentifier(lease))
        if committing[id] === lease { committing[id] = nil }
        if holders[id] === lease { holders[id] = nil }
    }
}

/// One request's right to write an upload's bytes, revoked when another request takes the
/// upload over. Checked by the writing thread right before each write, so a batch that was
/// already queued when the upload changed hands is dropped, not written over the new writer's.
package final class WriterLease: Sendable {
    private let revoked = Atomic<Bool>(false)
    /// The writer fence the database gave this writer (``FencedUploadLocker``), if any.
    package let fence: Int64?

    package init(fence: Int64? = nil) {
        self.fence = fence
    }

    package var isRevoked: Bool { revoked.load(ordering: .acquiring) }

    package func revoke() { revoked.store(true, ordering: .releasing) }
}

/// One writer per upload across every node that shares the database: the in-process locker
/// for writers on this node, and a fence from the database for writers anywhere.
///
/// A new writer takes the upload over at once, wherever the previous one is: it raises the
/// upload's `writer_fence`, and from then on the previous writer can store no offset (the
/// database stores one only under the fence it was written under) and stops at its next
/// check, before its next part. Nobody waits for a lock a dead node or a silent connection
/// holds, so there is no 423 and no timeout to wait out (tusd's lockers answer a PATCH that
/// finds another request holding the upload with 423 or ask it to let go and wait; across
/// servers they need an external locker).
package struct FencedUploadLocker: UploadLocker {
    let local = InProcessUploadLocker()
    let uploads: any UploadRepository

    package init(uploads: any UploadRepository) {
        self.uploads = uploads
    }

    package func acquire(_ id: String) async -> WriterLease {
        // This node's previous writer first (revoked at once, its commit waited for), then
        // every other node's, by the fence.
        let here = await local.acquire(id)
        guard let fence = try? await uploads.takeWriter(id: id) else { return here }
        let lease = WriterLease(fence: fence)
        await local.replace(id, here, with: lease)
        return lease
    }

    package func isCurrent(_ id: String, _ lease: WriterLease) async -> Bool {
        guard await local.isCurrent(id, lease) else { return false }
        guard let fence = lease.fence else { return true }
        return (try? await uploads.writerFence(id: id)) == fence
    }

    /// Also asks the database, just before the last bytes go out: a writer another node took
    /// over must not send them (with S3, the upload's last part or its tail) over the new
    /// writer's. The offset itself is stored only under the fence in any case.
    package func beginCommit(_ id: String, _ lease: WriterLease) async -> Bool {
        guard await local.beginCommit(id, lease) else { return false }
        guard let fence = lease.fence, (try? await uploads.writerFence(id: id)) != fence else { return true }
        await local.release(id, lease)
        return false
    }

    package func release(_ id: String, _ lease: WriterLease) async {
        await local.release(id, lease)
    }
}
