internal import CMagic

/// One libmagic handle. libmagic is not safe to share across threads (with one cookie and
/// eight threads, most runs crashed or hung here), so every worker thread owns one of these.
final class MagicCookie {
    private let cookie: OpaquePointer

    init() throws(MediaError) {
        guard let cookie = magic_open(MAGIC_MIME_TYPE | MAGIC_ERROR) else {
            throw MediaError(.io, "libmagic: magic_open failed")
        }
        guard magic_load(cookie, nil) == 0 else {
            let message = magic_error(cookie).map { String(cString: $0) } ?? "no message"
            magic_close(cookie)
            throw MediaError(.io, "libmagic: cannot load its database: \(message)")
        }
        self.cookie = cookie
    }

    deinit {
        magic_close(cookie)
    }

    /// The MIME type libmagic reads from the first bytes of the file at `path`.
    func mimeType(ofFileAt path: String) throws(MediaError) -> String {
        guard let result = magic_file(cookie, path) else {
            let message = magic_error(cookie).map { String(cString: $0) } ?? "no message"
            throw MediaError(.io, "libmagic: \(message)")
        }
        return String(cString: result)
    }

    /// The MIME type of bytes in memory, such as a cover picture inside an MP3.
    func mimeType(of bytes: UnsafeRawBufferPointer) -> String? {
        guard let base = bytes.baseAddress, let result = magic_buffer(cookie, base, bytes.count) else {
            return nil
        }
        return String(cString: result)
    }
}

@available(*, unavailable, message: "libmagic handles must stay on the thread that made them")
extension MagicCookie: Sendable {}
