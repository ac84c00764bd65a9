import ArgumentParser
import ChatServer
import Foundation

/// Where the server's configuration comes from: defaults, then `--config` file, then
/// `MEDIAGATE_*` environment variables, then these flags.
struct ServerOptions: ParsableArguments {
    @Option(help: "A JSON configuration file (keys as in Docs/API.md).", completion: .file(extensions: ["json"]))
    var config: String?

    @Option(help: "Directory for the database and signing key (default: mediagate-data).", completion: .directory)
    var dataDir: String?

    @Option(help: "The shared database, postgres://user[:password]@host[:port]/name (default: SQLite in the data directory).")
    var database: String?

    @Option(help: "Where files' bytes live: s3://bucket?endpoint=URL&region=R, credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (default: the data directory).")
    var blobStore: String?

    func configuration(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ChatConfiguration {
        var configuration = try config.map { path in
            do { return try ChatConfiguration.load(file: path) } catch {
                throw ValidationError("cannot read --config \(path): \(error)")
            }
        } ?? ChatConfiguration()
        configuration.apply(environment: environment)
        if let dataDir { configuration.dataDirectory = dataDir }
        if let database { configuration.database = database }
        if let blobStore { configuration.blobStore = blobStore }
        return configuration
    }
}
