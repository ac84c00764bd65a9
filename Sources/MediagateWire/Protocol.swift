/// Paths of the gateway's API, for the server's routes and the clients that call them.
public enum APIPath {
    public static let login = "/api/auth/login"
    public static let refresh = "/api/auth/refresh"
    public static let messages = "/api/messages"
    public static let rooms = "/api/rooms"
    /// The tus creation endpoint; an upload lives at `uploads/<id>`.
    public static let uploads = "/api/uploads"
    /// The seed app's multipart upload.
    public static let uploadFile = "/api/upload-file"
    public static let files = "/api/files"

    public static func room(_ id: Int64) -> String { "\(rooms)/\(id)" }
    public static func upload(_ id: String) -> String { "\(uploads)/\(id)" }
    public static func file(_ id: String) -> String { "\(files)/\(id)" }
    public static func thumbnail(_ fileId: String) -> String { "\(files)/\(fileId)/thumbnail" }
}

/// tus 1.0 as this gateway speaks it: the version, the extensions and the header names.
public enum Tus {
    public static let version = "1.0.0"
    public static let extensions = "creation,creation-with-upload,creation-defer-length,termination,checksum,expiration"
    /// `Upload-Checksum` algorithms the server verifies.
    public static let checksumAlgorithms = "sha1,sha256,md5"
    /// The content type of PATCH bodies.
    public static let chunkContentType = "application/offset+octet-stream"

    public enum Header {
        public static let resumable = "Tus-Resumable"
        public static let version = "Tus-Version"
        public static let extensions = "Tus-Extension"
        public static let maxSize = "Tus-Max-Size"
        public static let checksumAlgorithm = "Tus-Checksum-Algorithm"
        public static let offset = "Upload-Offset"
        public static let length = "Upload-Length"
        public static let deferLength = "Upload-Defer-Length"
        public static let metadata = "Upload-Metadata"
        public static let checksum = "Upload-Checksum"
        public static let expires = "Upload-Expires"
    }
}

/// What a server on its embedded defaults accepts, for clients that check a file before
/// sending it. A server's own configuration may differ; the server's answer is the truth.
public enum UploadDefaults {
    /// Sniffed types refused by default: programs a computer would run.
    public static let forbiddenMimeTypes = [
        "application/x-executable", "application/x-pie-executable", "application/x-sharedlib",
        "application/x-dosexec", "application/vnd.microsoft.portable-executable", "application/x-msdownload",
        "application/x-mach-binary", "application/x-msi",
    ]
}
