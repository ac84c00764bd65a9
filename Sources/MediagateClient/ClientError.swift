import Foundation

/// Why a client operation failed, in terms a person running `mediagate upload` can act on.
public enum ClientError: Error, CustomStringConvertible, Sendable {
    /// The connection failed, broke or stalled.
    case transport(TransportError)
    /// The server answered with an error status; `code` is its machine-readable `error` field.
    case http(status: Int, code: String?, message: String)
    /// 429 or 503 with `Retry-After: seconds`: come back no sooner than that.
    case busy(status: Int, retryAfter: Int)
    /// The server no longer knows the upload (404 or 410): it has to start over.
    case uploadGone(status: Int)
    /// The access token was refused and could not be refreshed.
    case loginRequired(String)
    /// Retries were spent; `last` is the final failure.
    case gaveUp(attempts: Int, last: String)
    /// The server said something that breaks the protocol.
    case protocolViolation(String)
    /// A local file (the one being sent, the credentials) could not be read or written.
    case localFile(String)
    /// The caller stopped the transfer.
    case cancelled

    /// Worth another attempt after a pause: broken connections, stalls, 5xx, 423 (locked),
    /// 429 (slow down), 460 (checksum mismatch: the chunk is sent again), 409 (offset moved).
    public var isRetryable: Bool {
        switch self {
        case .transport(let error): return error.isRetryable
        case .busy: return true
        case .http(let status, _, _): return status >= 500 || [408, 409, 423, 429, 460].contains(status)
        default: return false
        }
    }

    public var description: String {
        switch self {
        case .transport(let error): return error.description
        case .http(let status, let code, let message):
            return "HTTP \(status)" + (code.map { " \($0)" } ?? "") + (message.isEmpty ? "" : ": \(message)")
        case .busy(let status, let seconds): return "HTTP \(status): the server is busy; asked to wait \(seconds) s"
        case .uploadGone(let status): return "the server no longer has this upload (HTTP \(status))"
        case .loginRequired(let message): return message
        case .gaveUp(let attempts, let last): return "gave up after \(attempts) attempts: \(last)"
        case .protocolViolation(let message): return "protocol error: \(message)"
        case .localFile(let message): return message
        case .cancelled: return "cancelled"
        }
    }

    /// An error answer, with mediagate's `{"error": {"code", "message"}}` body when present.
    static func from(_ response: HTTPResponse) -> ClientError {
        if response.status == 429 || response.status == 503,
           let seconds = response["Retry-After"].flatMap(Int.init), seconds >= 0 {
            return .busy(status: response.status, retryAfter: seconds)
        }
        let error = response.json["error"] as? [String: Any]
        let message = error?["message"] as? String
            ?? String(decoding: response.body.prefix(200), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return .http(status: response.status, code: error?["code"] as? String, message: message)
    }
}
