import Foundation
import MediagateCore
import NIOPosix

/// Blobs as files in the data directory, `files/<sha256>`: identical content is kept once.
/// Every system call runs on NIO's blocking thread pool.
package struct DiskBlobStore: BlobStore {
    package let directory: String
    package var threadPool: NIOThreadPool = .singleton

    package init(dataDirectory: String) throws {
        directory = (dataDirectory as NSString).appendingPathComponent("files")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    package func path(sha256: String) -> String { "\(directory)/\(sha256)" }

    package func localPath(sha256: String) async throws -> String { path(sha256: sha256) }

    package func read(sha256: String, range: ClosedRange<Int64>) async throws -> BlobBytes { .file(path(sha256: sha256)) }

    /// The data directory is checked by `/readyz` itself.
    package func checkReachable() async throws {}

    package func store(movingFileAt source: String, sha256: String) async throws {
        let target = path(sha256: sha256)
        try await threadPool.runIfActive {
            if FileManager.default.fileExists(atPath: target) {
                _ = unlink(source)
            } else if rename(source, target) != 0 {
                throw SystemCallError("rename", errno)
            }
        }
    }

    package func removeOrphans(keeping keep: Set<String>, writtenBefore cutoff: Date) async throws -> Int {
        try await OrphanFiles.remove(in: directory, suffix: "", keeping: keep, writtenBefore: cutoff, threadPool: threadPool)
    }
}
