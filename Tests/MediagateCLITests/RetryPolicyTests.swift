import Foundation
@testable import MediagateClient
import Testing

/// The client's retry decisions, without a server: what is retried, how long it waits.
@Suite("upload client retry policy")
struct RetryPolicyTests {
    static func response(_ status: Int, _ headers: [String: String] = [:], body: String = "") -> HTTPResponse {
        HTTPResponse(status: status, headers: headers, body: Data(body.utf8))
    }

    @Test("which answers are retried, and a mediagate error body is read")
    func retryable() {
        for status in [500, 502, 503, 408, 409, 423, 429, 460] {
            #expect(ClientError.from(Self.response(status)).isRetryable, "\(status)")
        }
        for status in [400, 401, 403, 404, 413, 415] {
            #expect(!ClientError.from(Self.response(status)).isRetryable, "\(status)")
        }
        let refused = ClientError.from(Self.response(415, body: #"{"error":{"code":"forbidden_type","message":"no executables"}}"#))
        guard case .http(415, "forbidden_type"?, "no executables") = refused else {
            Issue.record("\(refused)")
            return
        }
        #expect(!ClientError.cancelled.isRetryable && !ClientError.loginRequired("x").isRetryable)
    }

    @Test("backoff grows, stays under its cap, is jittered; Retry-After is honoured; the budget ends")
    func backoff() throws {
        let policy = RetryPolicy(maxAttempts: 3, baseDelay: .milliseconds(100), maxDelay: .milliseconds(400))
        let delays = (1...8).map { policy.delay(before: $0) }
        #expect(delays.allSatisfy { $0 <= .milliseconds(400) })
        #expect(Set((0..<20).map { _ in policy.delay(before: 4) }).count > 1) // jitter

        let busy = ClientError.from(Self.response(503, ["retry-after": "1"]))
        guard case .busy(503, 1) = busy else {
            Issue.record("\(busy)")
            return
        }
        var budget = RetryBudget(RetryPolicy(maxAttempts: 3, baseDelay: .milliseconds(1), maxDelay: .milliseconds(1)))
        let started = ContinuousClock.now
        try budget.pause(after: busy)
        #expect(ContinuousClock.now - started >= .seconds(1))
        try budget.pause(after: .http(status: 500, code: nil, message: ""))
        #expect(throws: ClientError.self) { try budget.pause(after: .http(status: 500, code: nil, message: "")) }
        budget.reset()
        try budget.pause(after: .http(status: 500, code: nil, message: ""))
        #expect(throws: ClientError.self) { try budget.pause(after: .http(status: 413, code: nil, message: "")) }
    }

    @Test("a local file that cannot be read is a local-file failure, not retried and not blamed on the server")
    func unreadableFile() throws {
        let upload = ResumableUpload(client: TusClient(connection: APIConnection(server: "http://127.0.0.1:9", auth: nil)))
        do {
            _ = try upload.upload(path: "/nonexistent/mediagate-test-file", metadata: [:], resuming: nil)
            Issue.record("uploading a missing file succeeded")
        } catch let error as ClientError {
            guard case .localFile(let message) = error else { Issue.record("\(error)"); return }
            #expect(message.contains("cannot open /nonexistent/mediagate-test-file"))
            #expect(!error.isRetryable)
            #expect(!error.description.contains("protocol"))
        }
    }
}
