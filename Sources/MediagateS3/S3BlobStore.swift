import Foundation
import MediagateCore
import NIOCore
import NIOPosix

/// Blobs as S3 objects, `blobs/<sha256>` in the bucket, shared by every node; each node keeps
/// the ones it used lately in a bounded cache on its own disk (``BlobCache``), because the
/// media pipeline and thumbnails read files, and files already here are served from here.
///
/// Content-addressed, so the bucket holds one object per content however many nodes and
/// uploads bring it: a store whose object exists (a HEAD) sends nothing.
package struct S3BlobStore: BlobStore {
    package let client: S3Client
    package let cache: BlobCache

    package init(client: S3Client, cache: BlobCache) {
        self.client = client
        self.cache = cache
    }

    static func key(_ sha256: String) -> String { "blobs/\(sha256)" }

    package func store(movingFileAt source: String, sha256: String) async throws {
        do {
            if try await client.head(Self.key(sha256)) == nil {
                // The key is the content's SHA-256, so it is also the payload hash S3 checks.
                try await client.put(Self.key(sha256), fileAt: source, sha256: sha256)
            }
        } catch {
            throw Self.unavailable(error)
        }
        try await cache.adopt(movingFileAt: source, sha256: sha256)
    }

    package func localPath(sha256: String) async throws -> String {
        try await cache.path(sha256: sha256) { temporary in
            do {
                try await client.download(Self.key(sha256), to: temporary)
            } catch {
                throw Self.unavailable(error)
            }
        }
    }

    package func read(sha256: String, range: ClosedRange<Int64>) async throws -> BlobBytes {
        if let path = await cache.cachedPath(sha256: sha256) { return .file(path) }
        do {
            let response = try await client.get(Self.key(sha256), range: range)
            // The caller has promised the client exactly this many bytes.
            let length = response.headers.first(name: "content-length").flatMap { Int64($0) }
            guard length == Int64(range.count) else {
                throw S3Error(status: Int(response.status.code), code: "UnexpectedLength",
                              message: "asked for \(range.count) bytes, got \(length.map(String.init) ?? "no length")", operation: "GET")
            }
            return .stream(response.body)
        } catch {
            throw Self.unavailable(error)
        }
    }

    package func removeOrphans(keeping keep: Set<String>, writtenBefore cutoff: Date) async throws -> Int {
        var removed = 0
        for object in try await client.list(prefix: "blobs/") {
            let sha256 = String(object.key.dropFirst("blobs/".count))
            guard !keep.contains(sha256), let modified = object.lastModified, modified < cutoff else { continue }
            try await client.delete(object.key)
            removed += 1
        }
        await cache.remove(notIn: keep)
        return removed
    }

    package func checkReachable() async throws {
        do { try await client.checkBucket() } catch { throw Self.unavailable(error) }
    }

    /// A missing object is a file whose bytes are gone; anything else means the store cannot
    /// be reached or refused us, which a client may retry.
    static func unavailable(_ error: any Error) -> any Error {
        if let error = error as? S3Error, error.status == 404 { return error }
        if error is CancellationError { return error }
        return DomainError.storageUnavailable("\(error)")
    }
}

/// This node's copies of blobs, `blob-cache/<sha256>` in the data directory, at most
/// `maxBytes` in all: past it, the least recently used go. A blob missing here is fetched
/// once however many ask at once.
///
/// A path handed out may be evicted while its reader opens it: eviction takes the least
/// recently used, so that needs a cache smaller than the blobs in use at one moment.
package actor BlobCache {
    package nonisolated let directory: String
    package nonisolated let maxBytes: Int64
    private var entries: [String: (size: Int64, used: UInt64)] = [:]
    private var totalBytes: Int64 = 0
    private var clock: UInt64 = 0
    private var fetching: [String: Task<String, any Error>] = [:]
    private let threadPool: NIOThreadPool

    package init(directory: String, maxBytes: Int64, threadPool: NIOThreadPool = .singleton) throws {
        self.directory = directory
        self.maxBytes = maxBytes
        self.threadPool = threadPool
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // What earlier runs left: kept, oldest first in line to go. Half-fetched files are removed.
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var found: [(name: String, size: Int64, modified: Date)] = []
        for name in names {
            let path = "\(directory)/\(name)"
            if name.hasSuffix(".part") { unlink(path); continue }
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
                  let size = attributes[.size] as? NSNumber, let modified = attributes[.modificationDate] as? Date else { continue }
            found.append((name, size.int64Value, modified))
        }
        for entry in found.sorted(by: { $0.modified < $1.modified }) {
            clock += 1
            entries[entry.name] = (entry.size, clock)
            totalBytes += entry.size
        }
    }

    package var bytes: Int64 { totalBytes }

    func file(_ sha256: String) -> String { "\(directory)/\(sha256)" }

    /// The blob's path if it is here now. Checked on disk too: an operator may clear the
    /// cache, and nodes that share a data directory share it.
    package func cachedPath(sha256: String) -> String? {
        guard entries[sha256] != nil else { return nil }
        let path = file(sha256)
        guard access(path, F_OK) == 0 else {
            totalBytes -= entries.removeValue(forKey: sha256)?.size ?? 0
            return nil
        }
        touch(sha256)
        return path
    }

    /// The blob's path, fetching it with `fetch` (which writes the file it is given) if it is
    /// not here.
    package func path(sha256: String, fetch: @escaping @Sendable (String) async throws -> Void) async throws -> String {
        if let path = cachedPath(sha256: sha256) { return path }
        if let running = fetching[sha256] { return try await running.value }
        let target = file(sha256)
        let task = Task<String, any Error> {
            let temporary = "\(target).\(UUID().uuidString).part"
            do {
                try await fetch(temporary)
                let size = try await threadPool.runIfActive { () throws -> Int64 in
                    var info = stat()
                    guard stat(temporary, &info) == 0, rename(temporary, target) == 0 else { throw SystemCallError("rename", errno) }
                    return Int64(info.st_size)
                }
                await self.added(sha256, size: size)
                return target
            } catch {
                unlink(temporary)
                throw error
            }
        }
        fetching[sha256] = task
        defer { fetching[sha256] = nil }
        return try await task.value
    }

    /// Moves a file just stored into the cache (or drops it, if the blob is already here).
    package func adopt(movingFileAt source: String, sha256: String) async throws {
        let target = file(sha256)
        let present = entries[sha256] != nil
        let size = try await threadPool.runIfActive { () throws -> Int64 in
            if present { unlink(source); return 0 }
            var info = stat()
            guard stat(source, &info) == 0, rename(source, target) == 0 else { throw SystemCallError("rename", errno) }
            return Int64(info.st_size)
        }
        if !present { added(sha256, size: size) }
    }

    /// Drops cached blobs no file names any more.
    package func remove(notIn keep: Set<String>) {
        for sha256 in entries.keys where !keep.contains(sha256) { evict(sha256) }
    }

    private func added(_ sha256: String, size: Int64) {
        if let old = entries[sha256] { totalBytes -= old.size }
        clock += 1
        entries[sha256] = (size, clock)
        totalBytes += size
        while totalBytes > maxBytes, entries.count > 1,
              let oldest = entries.filter({ $0.key != sha256 }).min(by: { $0.value.used < $1.value.used })?.key {
            evict(oldest)
        }
    }

    private func touch(_ sha256: String) {
        clock += 1
        entries[sha256]?.used = clock
    }

    private func evict(_ sha256: String) {
        guard let entry = entries.removeValue(forKey: sha256) else { return }
        totalBytes -= entry.size
        unlink(file(sha256))
    }
}
