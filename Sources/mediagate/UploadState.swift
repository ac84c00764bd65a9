import Crypto
import Foundation
import MediagateClient

/// Which file is which, across runs: its absolute path, size, modification time and a hash of
/// its first MiB. A file edited in place gets a new identity and is uploaded again.
struct FileIdentity: Sendable {
    var path: String
    var size: Int
    var modified: Double
    var headHash: String

    init(path: String) throws {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        let descriptor = open(absolute, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw UploadFailure("cannot open: \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw UploadFailure("cannot stat: \(String(cString: strerror(errno)))") }
        var head = [UInt8](repeating: 0, count: 1 << 20)
        let count = head.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress!, $0.count, 0) }
        guard count >= 0 else { throw UploadFailure("cannot read: \(String(cString: strerror(errno)))") }
        self.path = absolute
        self.size = Int(status.st_size)
        self.modified = Double(status.st_mtim.tv_sec) + Double(status.st_mtim.tv_nsec) / 1e9
        self.headHash = SHA256.hash(data: head[0..<count]).hexString
    }

    /// The state file's key for this file posted to `room` on `server`.
    func key(server: String, room: Int) -> String {
        SHA256.hash(data: Data("\(server)\n\(room)\n\(path)\n\(size)\n\(modified)\n\(headHash)".utf8)).hexString
    }
}

/// The upload state file: for each file (by `FileIdentity` and destination), its tus URL, the
/// stored file's id and the message that posted it. A rerun resumes or skips from here.
///
/// Written whole to a temporary file and renamed after every change, so a kill at any moment
/// leaves a readable file. One process at a time: two runs sharing a state file lose each
/// other's entries, though the server's `client_id` check still keeps messages single.
final class UploadStateFile: @unchecked Sendable {
    struct Entry: Codable {
        var path: String
        var uploadURL: String?
        var fileId: String?
        var messageId: Int?
        var updated: Date

        enum CodingKeys: String, CodingKey {
            case path, uploadURL = "upload_url", fileId = "file_id", messageId = "message_id", updated
        }
    }

    let path: String
    private let lock = NSLock()
    private var entries: [String: Entry]

    /// `--state`, else `$XDG_STATE_HOME/mediagate/uploads.json`, else `~/.local/state/mediagate/uploads.json`.
    static func defaultPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        let state = environment["XDG_STATE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (NSHomeDirectory() as NSString).appendingPathComponent(".local/state")
        return (state as NSString).appendingPathComponent("mediagate/uploads.json")
    }

    init(path: String) throws {
        self.path = path
        if let data = FileManager.default.contents(atPath: path) {
            do {
                entries = try Self.decoder.decode([String: Entry].self, from: data)
            } catch {
                throw UploadFailure("the upload state file \(path) is unreadable (\(error)); move it away to start afresh")
            }
        } else {
            entries = [:]
        }
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
    }

    subscript(key: String) -> Entry? { lock.withLock { entries[key] } }

    /// Where the re-encoded copy of the file under `key` is kept until it is posted.
    func preparedPath(key: String, suffix: String) -> String {
        let directory = ((path as NSString).deletingLastPathComponent as NSString).appendingPathComponent("prepared")
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                 attributes: [.posixPermissions: 0o700])
        return (directory as NSString).appendingPathComponent("\(key.prefix(32)).\(suffix)")
    }

    /// Changes one entry and writes the file before returning.
    func update(_ key: String, path: String, _ change: (inout Entry) -> Void) throws {
        try lock.withLock {
            var entry = entries[key] ?? Entry(path: path, updated: Date())
            change(&entry)
            entry.updated = Date()
            entries[key] = entry
            try AtomicFile.write(try Self.encoder.encode(entries), to: self.path, mode: 0o600)
        }
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }()

    private static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()
}

/// A file that could not be uploaded, said in a way the user can act on.
struct UploadFailure: Error, CustomStringConvertible {
    var description: String
    var code: String?
    init(_ description: String, code: String? = nil) {
        self.description = description
        self.code = code
    }
}

extension Digest {
    var hexString: String { map { String(format: "%02x", $0) }.joined() }
}
