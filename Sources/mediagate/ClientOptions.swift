import ArgumentParser
import Foundation
import MediagateClient

/// Options of the commands that talk to a running server: where it is and who we are there.
struct ClientOptions: ParsableArguments {
    @Option(help: "The server's base URL, e.g. http://127.0.0.1:8080 (or MEDIAGATE_SERVER).")
    var server: String?

    @Option(help: "An access token to use instead of the stored login (or MEDIAGATE_TOKEN). It is not renewed.")
    var token: String?

    /// The server URL from the option or the environment, without a trailing slash.
    func serverURL() throws -> String {
        guard let url = server ?? ProcessInfo.processInfo.environment["MEDIAGATE_SERVER"], !url.isEmpty else {
            throw ValidationError("Name the server with --server URL (or MEDIAGATE_SERVER).")
        }
        guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme ?? ""), parsed.host != nil else {
            throw ValidationError("--server must be an http:// or https:// URL, not '\(url)'.")
        }
        return CredentialsFile.key(url)
    }

    /// The tokens to send: `--token`/`MEDIAGATE_TOKEN`, else the login stored for the server.
    func session() throws -> SessionAuth {
        let server = try serverURL()
        if let token = token ?? ProcessInfo.processInfo.environment["MEDIAGATE_TOKEN"], !token.isEmpty {
            return SessionAuth(server: server, tokens: Tokens(accessToken: token), store: nil)
        }
        let store = CredentialsFile.defaultLocation()
        guard let tokens = try store.tokens(for: server) else {
            throw ClientError.loginRequired("not logged in to \(server); run `mediagate login --server \(server)` (or pass --token)")
        }
        return SessionAuth(server: server, tokens: tokens, store: store)
    }
}

/// Exit statuses scripts can tell apart.
enum ExitStatus {
    /// Some files did not make it (the others did).
    static let someFailed = ExitCode(1)
    /// The login is missing, expired or revoked: `mediagate login` again (sysexits' EX_NOPERM).
    static let loginRequired = ExitCode(77)
}

/// A password typed at a terminal without echo, or the first line of standard input.
func readPassword(prompt: String) throws -> String {
    if isatty(STDIN_FILENO) != 0, let typed = getpass(prompt) {
        return String(cString: typed)
    }
    guard let line = Swift.readLine(strippingNewline: true), !line.isEmpty else {
        throw ValidationError("no password on standard input")
    }
    return line
}
