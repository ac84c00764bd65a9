import ArgumentParser
import Foundation
import MediagateClient
import NIOPosix

/// `mediagate login`: signs in once and keeps the tokens for later `upload` runs.
struct Login: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Log in to a mediagate server and store the tokens for later commands.",
        discussion: """
            The password is prompted for on a terminal, or read from the first line of standard \
            input. Tokens go to $MEDIAGATE_CREDENTIALS, else $XDG_CONFIG_HOME/mediagate/credentials.json \
            (~/.config/...), readable only by you; the access token is renewed automatically.
            """
    )

    @Option(help: "The server's base URL, e.g. http://127.0.0.1:8080 (or MEDIAGATE_SERVER).")
    var server: String?

    @Option(name: .shortAndLong, help: "Your user name on the server.")
    var username: String

    func run() async throws {
        let server = try ClientOptions(server: server).serverURL()
        let password = try readPassword(prompt: "Password for \(username) on \(server): ")
        do {
            // libcurl blocks: on a thread of its own, joined before the process exits.
            let thread = NIOThreadPool(numberOfThreads: 1)
            thread.start()
            let username = self.username
            let result: Result<Tokens, any Error>
            do {
                result = .success(try await thread.runIfActive {
                    try ChatClient.login(server: server, username: username, password: password)
                })
            } catch {
                result = .failure(error)
            }
            try? await thread.shutdownGracefully()
            let tokens = try result.get()
            let store = CredentialsFile.defaultLocation()
            try store.save(tokens, for: server)
            print("logged in to \(server) as \(tokens.username ?? username); tokens in \(store.path)")
        } catch let error as ClientError {
            FileHandle.standardError.write(Data("mediagate login: \(error)\n".utf8))
            if case .http(401, _, _) = error { throw ExitStatus.loginRequired }
            throw ExitCode.failure
        }
    }
}

extension ClientOptions {
    init(server: String?) {
        self.init()
        self.server = server
    }
}
