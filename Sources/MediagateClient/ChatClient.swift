import Foundation
import MediagateWire

/// The chat half of the API the upload command needs: log in, learn what an upload became,
/// post it into a room. Blocking, like `TusClient`, and sharing its connection.
public struct ChatClient {
    public let connection: APIConnection

    public init(connection: APIConnection) { self.connection = connection }

    /// `POST /api/auth/login` → tokens.
    public static func login(server: String, username: String, password: String) throws -> Tokens {
        let connection = APIConnection(server: server, auth: nil)
        let response = try connection.json("POST", APIPath.login, ["username": username, "password": password], expecting: [200])
        guard let tokens = Tokens(response: response, username: username) else {
            throw ClientError.protocolViolation("the login answer has no access_token")
        }
        return tokens
    }

    /// What a finished upload became, waiting while the server's pipeline works on it (202).
    ///
    /// Each request asks the server to hold its answer until processing ends (`?wait=`, shorter
    /// than the transport's stall timeout, which would take the silence for a dead server); a
    /// server that answers 202 at once anyway is asked again after short, growing pauses.
    public func completedFile(uploadURL: String, timeout: Duration = .seconds(300), retry: RetryPolicy = RetryPolicy()) throws -> StoredFile {
        let deadline = ContinuousClock.now + timeout
        var budget = RetryBudget(retry)
        let wait = min(10, connection.transport.stallTimeout.components.seconds / 2)
        let url = wait > 0 ? uploadURL + (uploadURL.contains("?") ? "&" : "?") + "wait=\(wait)" : uploadURL
        // Short pauses first: a photo is usually ready within a tenth of a second.
        var pause = 10_000 as useconds_t
        while true {
            let response: HTTPResponse
            do {
                response = try connection.send("GET", url)
            } catch let error as ClientError {
                try budget.pause(after: error)
                continue
            }
            switch response.status {
            case 200:
                let body = response.json
                guard let id = body["file_id"] as? String else { throw ClientError.protocolViolation("a ready upload without file_id") }
                return StoredFile(id: id, attachment: body["attachment"] as? [String: Any] ?? [:])
            case 202:
                guard ContinuousClock.now < deadline else {
                    throw ClientError.gaveUp(attempts: 0, last: "the server was still processing the file after \(timeout)")
                }
                usleep(pause)
                pause = min(pause * 3 / 2, 250_000)
            case let status where status >= 500:
                try budget.pause(after: ClientError.from(response))
            default:
                throw ClientError.from(response)
            }
        }
    }

    /// `POST /api/messages` with the file attached. The same `clientId` again returns the message
    /// already posted (200) instead of posting twice.
    public func post(file: StoredFile, room: Int, text: String, clientId: String, retry: RetryPolicy = RetryPolicy()) throws -> [String: Any] {
        var budget = RetryBudget(retry)
        while true {
            do {
                return try connection.json("POST", APIPath.messages, [
                    "room_id": room, "content": text, "client_id": clientId, "attachment": ["file_id": file.id],
                ], expecting: [200, 201]).json
            } catch let error as ClientError {
                try budget.pause(after: error)
            }
        }
    }

    /// `GET /api/rooms/{id}`: the room exists and we are in it (404 otherwise).
    public func checkRoom(_ room: Int) throws {
        let response = try connection.send("GET", APIPath.room(Int64(room)))
        guard response.status == 200 else { throw ClientError.from(response) }
    }
}

/// A file the server stored: its id and the attachment it made of it.
public struct StoredFile: @unchecked Sendable {
    public var id: String
    public var attachment: [String: Any]

    public init(id: String, attachment: [String: Any]) {
        self.id = id
        self.attachment = attachment
    }
}
