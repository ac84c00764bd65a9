import Foundation

/// Where one file's upload stands, for progress displays.
public struct UploadProgress: Sendable {
    /// Bytes the server has acknowledged plus those of the chunk in flight.
    public var bytes: Int
    public var total: Int
}

/// Uploads one file with tus, from wherever the server has got to, until every byte is there.
///
/// The file is read one chunk at a time into a buffer that is reused, so memory stays at one
/// chunk however large the file. After any retryable failure the server is asked for its offset
/// (`HEAD`) and the upload goes on from there; an upload the server forgot starts over.
/// Blocking: run it on a thread of your own.
public final class ResumableUpload {
    public struct Options: Sendable {
        public var chunkSize = 8 << 20
        public var checksum: TusClient.Checksum = .sha256
        public var retry = RetryPolicy()
        /// Times an upload may be started over because the server forgot it, before giving up.
        public var maxRestarts = 3

        public init(chunkSize: Int = 8 << 20, checksum: TusClient.Checksum = .sha256, retry: RetryPolicy = RetryPolicy()) {
            self.chunkSize = chunkSize
            self.checksum = checksum
            self.retry = retry
        }
    }

    let client: TusClient
    let options: Options
    /// Set from any thread to stop at the next progress callback.
    public let cancellation = CancellationFlag()

    public init(client: TusClient, options: Options = Options()) {
        self.client = client
        self.options = options
    }

    /// Uploads `path` and returns the upload's URL.
    /// - Parameters:
    ///   - resuming: an upload URL from an earlier run, or nil to create one.
    ///   - created: called with each new upload URL before a byte is sent, so it can be kept.
    public func upload(
        path: String, metadata: [String: String], resuming: String?,
        created: (String) throws -> Void = { _ in },
        progress: @escaping (UploadProgress) -> Void = { _ in }
    ) throws -> String {
        let file = try ReadOnlyFile(path)
        let (descriptor, size) = (file.descriptor, file.size)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, min(options.chunkSize, size)), alignment: 16)
        defer { buffer.deallocate() }

        var url = resuming
        var restarts = 0
        var budget = RetryBudget(options.retry)
        while true {
            do {
                var offset: Int
                if let known = url {
                    let state = try client.offset(of: known)
                    if let length = state.length, length != size {
                        throw ClientError.uploadGone(status: 409) // a different file's upload: start again
                    }
                    offset = state.offset
                } else {
                    let fresh = try client.create(length: size, metadata: metadata)
                    try created(fresh)
                    url = fresh
                    offset = 0
                }
                progress(UploadProgress(bytes: offset, total: size))
                while offset < size {
                    let count = try read(descriptor, into: buffer, at: offset, count: min(buffer.count, size - offset))
                    let base = offset
                    let next = try client.append(
                        to: url!, at: offset, bytes: UnsafeRawBufferPointer(rebasing: buffer[0..<count]),
                        checksum: options.checksum,
                        progress: { [cancellation] sent in
                            progress(UploadProgress(bytes: base + sent, total: size))
                            return !cancellation.isSet
                        })
                    if next > offset { budget.reset() }
                    offset = next
                    progress(UploadProgress(bytes: offset, total: size))
                    if cancellation.isSet { throw ClientError.cancelled }
                }
                return url!
            } catch ClientError.uploadGone(let status) {
                restarts += 1
                guard restarts <= options.maxRestarts else { throw ClientError.uploadGone(status: status) }
                url = nil
            } catch let error as ClientError {
                try budget.pause(after: error)
            }
        }
    }

    private func read(_ descriptor: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int, count: Int) throws -> Int {
        var done = 0
        while done < count {
            let got = pread(descriptor, buffer.baseAddress! + done, count - done, off_t(offset + done))
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else { throw ClientError.localFile("the file shrank or could not be read while uploading") }
            done += got
        }
        return done
    }
}

/// A file open for reading and its size when opened; closed when released.
final class ReadOnlyFile {
    let descriptor: Int32
    let size: Int

    init(_ path: String) throws {
        descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw AtomicFile.posixError("cannot open \(path)") }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            close(descriptor)
            throw AtomicFile.posixError("cannot stat \(path)")
        }
        size = Int(status.st_size)
    }

    deinit { close(descriptor) }
}

/// A flag one thread sets and others poll.
public final class CancellationFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    public init() {}
    public var isSet: Bool { lock.withLock { value } }
    public func set() { lock.withLock { value = true } }
}
