import Foundation

/// One thread's connection to a mediagate server: adds the access token to each request and,
/// when the server answers 401, renews the token and sends the request once more.
public final class APIConnection {
    public let server: String
    public let transport: HTTPTransport
    let auth: SessionAuth?

    public init(server: String, auth: SessionAuth?, transport: HTTPTransport = HTTPTransport()) {
        self.server = CredentialsFile.key(server)
        self.auth = auth
        self.transport = transport
    }

    /// `path` is either absolute (`http://…`) or relative to the server.
    public func send(
        _ method: String, _ path: String, headers: [(String, String)] = [],
        body: UnsafeRawBufferPointer? = nil, progress: ((Int) -> Bool)? = nil
    ) throws -> HTTPResponse {
        try send(method, path, headers: headers, sending: .memory(body), progress: progress)
    }

    /// As above, with any body; `interim` hears informational responses as they arrive.
    public func send(
        _ method: String, _ path: String, headers: [(String, String)] = [], sending body: HTTPTransport.Body,
        progress: ((Int) -> Bool)? = nil, interim: ((Int, [String: String]) -> Void)? = nil
    ) throws -> HTTPResponse {
        let url = path.hasPrefix("http://") || path.hasPrefix("https://") ? path : server + path
        var token = auth?.accessToken
        for attempt in 0..<2 {
            var all = headers
            if let token { all.append(("Authorization", "Bearer \(token)")) }
            let response: HTTPResponse
            do {
                response = try transport.perform(method: method, url: url, headers: all, sending: body, progress: progress, interim: interim)
            } catch {
                throw error.isAbort ? ClientError.cancelled : ClientError.transport(error)
            }
            guard response.status == 401, let auth, let rejected = token, attempt == 0 else { return response }
            token = try auth.renew(after: rejected, using: transport)
        }
        throw ClientError.loginRequired("the server refused a freshly renewed access token; run `mediagate login --server \(server)`")
    }

    /// A JSON request whose answer must be one of `expecting`.
    public func json(_ method: String, _ path: String, _ object: [String: Any], expecting: Set<Int>) throws -> HTTPResponse {
        let body = try JSONSerialization.data(withJSONObject: object)
        let response = try body.withUnsafeBytes {
            try send(method, path, headers: [("Content-Type", "application/json")], body: $0)
        }
        guard expecting.contains(response.status) else { throw ClientError.from(response) }
        return response
    }
}
