import Crypto
import Foundation
import MediaPipeline
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
/// A journal: one JSON line per change, appended (no fsync: it must survive a killed process,
/// which the page cache does, and after a power cut the server's `client_id` check still keeps
/// messages single). Loading keeps each key's last line and skips a torn last line; the journal
/// is compacted to one line per file at each start. Appending keeps an update O(1) however many
/// files the state holds (rewriting the whole file each time cost O(n²) over a batch). One
/// process at a time: two runs sharing a state file may lose each other's entries.
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

    /// One journal line.
    private struct Record: Codable {
        var key: String
        var entry: Entry
    }

    let path: String
    private let lock = NSLock()
    private var entries: [String: Entry] = [:]
    private let descriptor: Int32

    /// `--state`, else `$XDG_STATE_HOME/mediagate/uploads.jsonl`, else `~/.local/state/mediagate/uploads.jsonl`.
    static func defaultPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        let state = environment["XDG_STATE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (NSHomeDirectory() as NSString).appendingPathComponent(".local/state")
        return (state as NSString).appendingPathComponent("mediagate/uploads.jsonl")
    }

    init(path relative: String) throws {
        // Absolute, so that a bare file name has a directory to create and keep `prepared/` in.
        let path = URL(fileURLWithPath: relative).standardizedFileURL.path
        self.path = path
        var lineCount = 0
        var needsRewrite = false
        if let data = FileManager.default.contents(atPath: path), !data.isEmpty {
            let lines = data.split(separator: UInt8(ascii: "\n"))
            let torn = data.last != UInt8(ascii: "\n")
            for (index, line) in lines.enumerated() {
                do {
                    let record = try Self.decoder.decode(Record.self, from: line)
                    entries[record.key] = record.entry
                    lineCount += 1
                } catch where torn && index == lines.count - 1 {
                    needsRewrite = true // the last append was cut short by a kill: drop it
                } catch {
                    throw UploadFailure("the upload state file \(path) is damaged at line \(index + 1); move it away to start afresh")
                }
            }
        }
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        if needsRewrite || lineCount > entries.count {
            var journal = Data()
            for (key, entry) in entries { journal.append(try Self.line(key, entry)) }
            try AtomicFile.write(journal, to: path, mode: 0o600)
        }
        descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw UploadFailure("cannot open the upload state file \(path): \(String(cString: strerror(errno)))") }
    }

    deinit { close(descriptor) }

    subscript(key: String) -> Entry? { lock.withLock { entries[key] } }

    /// Where the re-encoded copy of the file under `key` is kept until it is posted.
    func preparedPath(key: String, suffix: String) -> String {
        let directory = ((path as NSString).deletingLastPathComponent as NSString).appendingPathComponent("prepared")
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                 attributes: [.posixPermissions: 0o700])
        return (directory as NSString).appendingPathComponent("\(key.prefix(32)).\(suffix)")
    }

    /// Changes one entry and appends it to the journal before returning.
    func update(_ key: String, path: String, _ change: (inout Entry) -> Void) throws {
        try lock.withLock {
            var entry = entries[key] ?? Entry(path: path, updated: Date())
            change(&entry)
            entry.updated = Date()
            entries[key] = entry
            let line = try Self.line(key, entry)
            // One write(2) of a whole line: a kill leaves it whole or torn, never interleaved.
            let written = line.withUnsafeBytes { Foundation.write(descriptor, $0.baseAddress!, $0.count) }
            guard written == line.count else {
                throw UploadFailure("cannot write the upload state file \(self.path): \(String(cString: strerror(errno)))")
            }
        }
    }

    private static func line(_ key: String, _ entry: Entry) throws -> Data {
        var data = try encoder.encode(Record(key: key, entry: entry))
        data.append(UInt8(ascii: "\n"))
        return data
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
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
