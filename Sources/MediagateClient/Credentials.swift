import Foundation
import MediagateWire

/// A login's tokens, as `POST /api/auth/login` and `/refresh` return them.
public struct Tokens: Codable, Sendable, Equatable {
    public var accessToken: String
    /// Absent for a token handed in with `--token`: it cannot be renewed.
    public var refreshToken: String?
    public var username: String?

    public init(accessToken: String, refreshToken: String? = nil, username: String? = nil) {
        self.accessToken = accessToken
        self.refreshToken = refreshToken
        self.username = username
    }

    enum CodingKeys: String, CodingKey {
        case accessToken = "access_token", refreshToken = "refresh_token", username
    }
}

/// The per-user credentials file: tokens per server URL, readable by its owner only (0600).
///
/// `MEDIAGATE_CREDENTIALS` names the file; otherwise `$XDG_CONFIG_HOME/mediagate/credentials.json`,
/// or `~/.config/mediagate/credentials.json`.
public struct CredentialsFile: Sendable {
    public var path: String

    /// A relative `path` is taken from the working directory now (a bare file name has no
    /// directory to create otherwise).
    public init(path: String) { self.path = URL(fileURLWithPath: path).standardizedFileURL.path }

    public static func defaultLocation(environment: [String: String] = ProcessInfo.processInfo.environment) -> CredentialsFile {
        if let path = environment["MEDIAGATE_CREDENTIALS"], !path.isEmpty { return CredentialsFile(path: path) }
        let config = environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (NSHomeDirectory() as NSString).appendingPathComponent(".config")
        return CredentialsFile(path: (config as NSString).appendingPathComponent("mediagate/credentials.json"))
    }

    public func tokens(for server: String) throws -> Tokens? {
        try load()[Self.key(server)]
    }

    /// A damaged file is replaced: logging in is how the user repairs it.
    public func save(_ tokens: Tokens, for server: String) throws {
        var all = (try? load()) ?? [:]
        all[Self.key(server)] = tokens
        try write(all)
    }

    public func remove(server: String) throws {
        var all = try load()
        guard all.removeValue(forKey: Self.key(server)) != nil else { return }
        try write(all)
    }

    private func load() throws -> [String: Tokens] {
        guard let data = FileManager.default.contents(atPath: path) else { return [:] }
        do {
            return try JSONDecoder().decode([String: Tokens].self, from: data)
        } catch {
            throw ClientError.loginRequired("the credentials file \(path) is damaged (\(error)); run `mediagate login` again")
        }
    }

    /// Written to a private temporary file and renamed over the old one, so a crash leaves
    /// either the old or the new file, and the tokens are never readable by others.
    private func write(_ all: [String: Tokens]) throws {
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(all), to: path, mode: 0o600)
    }

    /// Servers are told apart by scheme, host and port; a trailing slash does not matter.
    public static func key(_ server: String) -> String {
        server.hasSuffix("/") ? String(server.dropLast()) : server
    }
}

/// Replace-by-rename writes shared by the credentials and upload-state files.
public enum AtomicFile {
    public static func write(_ data: Data, to path: String, mode: mode_t) throws {
        let temporary = path + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard descriptor >= 0 else { throw posixError("cannot create \(temporary)") }
        var written = 0
        let ok = data.withUnsafeBytes { bytes -> Bool in
            while written < bytes.count {
                let count = Foundation.write(descriptor, bytes.baseAddress! + written, bytes.count - written)
                guard count > 0 else { return false }
                written += count
            }
            return fsync(descriptor) == 0
        }
        close(descriptor)
        guard ok, rename(temporary, path) == 0 else {
            let error = posixError("cannot write \(path)")
            unlink(temporary)
            throw error
        }
    }

    static func posixError(_ what: String) -> ClientError {
        .localFile("\(what): \(String(cString: strerror(errno)))")
    }
}

/// The tokens one run uses, shared by its upload threads; renews the access token once when the
/// server refuses it, however many threads noticed at the same time.
public final class SessionAuth: @unchecked Sendable {
    public let server: String
    private let store: CredentialsFile?
    private let lock = NSLock()
    private var tokens: Tokens

    /// `store` receives renewed tokens; nil for a token that came from the command line.
    public init(server: String, tokens: Tokens, store: CredentialsFile?) {
        self.server = CredentialsFile.key(server)
        self.tokens = tokens
        self.store = store
    }

    public var accessToken: String { lock.withLock { tokens.accessToken } }

    /// A fresh access token after `rejected` was refused. When another thread already renewed
    /// it, that token is returned without asking the server again.
    func renew(after rejected: String, using transport: HTTPTransport) throws -> String {
        try lock.withLock {
            if tokens.accessToken != rejected { return tokens.accessToken }
            guard let refresh = tokens.refreshToken else {
                throw ClientError.loginRequired("the server refused the access token and it cannot be renewed; pass a new --token or run `mediagate login --server \(server)`")
            }
            let body = try JSONSerialization.data(withJSONObject: ["refresh_token": refresh])
            let response: HTTPResponse
            do {
                response = try body.withUnsafeBytes {
                    try transport.perform(method: "POST", url: server + APIPath.refresh,
                                          headers: [("Content-Type", "application/json")], body: $0)
                }
            } catch let error as TransportError {
                throw ClientError.transport(error)
            }
            if response.status == 401 || response.status == 403 {
                try? store?.remove(server: server)
                throw ClientError.loginRequired("your login on \(server) has expired or was revoked; log in again with `mediagate login --server \(server)`")
            }
            guard response.status == 200, let renewed = Tokens(response: response, username: tokens.username) else {
                throw ClientError.from(response)
            }
            tokens = renewed
            try store?.save(renewed, for: server)
            return renewed.accessToken
        }
    }
}

extension Tokens {
    init?(response: HTTPResponse, username: String?) {
        let body = response.json
        guard let access = body["access_token"] as? String else { return nil }
        let user = (body["user"] as? [String: Any])?["username"] as? String
        self.init(accessToken: access, refreshToken: body["refresh_token"] as? String, username: user ?? username)
    }
}
