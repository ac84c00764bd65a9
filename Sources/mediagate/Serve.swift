import ArgumentParser
import ChatServer
import Foundation
import Hummingbird
import Logging

/// `mediagate serve`: the chat gateway.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the chat gateway: accounts, rooms, messages and WebSocket chat.",
        discussion: "Embedded defaults: SQLite in ./mediagate-data, listening on 127.0.0.1:8000. SIGTERM or SIGINT stops it gracefully."
    )

    @OptionGroup var server: ServerOptions

    @Option(help: "Address to listen on (default 127.0.0.1; 0.0.0.0 for every interface).")
    var host: String?

    @Option(help: "Port to listen on (default 8000).")
    var port: Int?

    @Flag(inversion: .prefixedNo, help: "Allow POST /api/auth/register (default: allowed).")
    var registration: Bool?

    @Flag(inversion: .prefixedNo, help: "fdatasync each tus PATCH before acknowledging its offset (default: on).")
    var durableUploads: Bool?

    @Option(help: "Log lines as text or json (one JSON object per line; default: text, or LOG_FORMAT).")
    var logFormat: String?

    func run() async throws {
        var configuration = try server.configuration()
        if let durableUploads { configuration.durableUploads = durableUploads }
        if let host { configuration.host = host }
        if let port { configuration.port = port }
        if let registration { configuration.allowRegistration = registration }
        switch logFormat ?? ProcessInfo.processInfo.environment["LOG_FORMAT"] ?? "text" {
        case "json": LoggingSystem.bootstrap { JSONLogHandler(label: $0) }
        case "text": break
        case let other: throw ValidationError("--log-format is text or json, not \(other)")
        }
        var logger = Logger(label: "mediagate")
        logger.logLevel = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) } ?? .info
        let app = try await buildApplication(configuration, logger: logger)
        try await app.runService()
    }
}

/// `mediagate user`: account administration on the server's data directory.
struct UserCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user", abstract: "Manage accounts.", subcommands: [AddUser.self])
}

struct AddUser: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Create an account.",
        discussion: "The password is prompted for on a terminal, or read from the first line of standard input."
    )

    @Argument(help: "The user name: 1-32 letters, digits, '.', '_' or '-'.")
    var name: String

    @OptionGroup var server: ServerOptions

    func run() async throws {
        let password = try readPassword(prompt: "Password for \(name): ")
        let services = try await ChatServices(configuration: try server.configuration())
        do {
            let user = try await services.addUser(username: name, password: password)
            print("created user \(user.username) (id \(user.id))")
        } catch let error as APIError {
            throw ValidationError(error.message)
        }
    }
}
