import Hummingbird
import Logging
import MediagateCore
import MediagateWire

/// Logs each request (method, path, query, status, duration) with the values of secret query
/// parameters replaced: Hummingbird's `LogRequestsMiddleware` writes the whole URI, which put
/// `?token=` access tokens and signed URLs' `sig` into every log that kept them.
struct RedactingLogMiddleware<Context: RequestContext>: RouterMiddleware {
    /// Query parameters whose values are credentials.
    static var secretParameters: Set<Substring> { ["token", "access_token", "sig", "signature"] }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        func log(_ status: Int) {
            context.logger.info("request", metadata: [
                "hb.request.method": .string(request.method.rawValue),
                "hb.request.path": .string(Self.redacted(path: request.uri.path, query: request.uri.query)),
                "hb.response.status": .stringConvertible(status),
                "duration_ms": .stringConvertible((ContinuousClock.now - started).milliseconds),
            ])
        }
        do {
            let response = try await next(request, context)
            log(response.status.code)
            return response
        } catch {
            log((error as? any HTTPResponseError)?.status.code ?? 500)
            throw error
        }
    }

    /// `path?query` with every secret parameter's value replaced by `REDACTED`.
    static func redacted(path: String, query: String?) -> String {
        guard let query, !query.isEmpty else { return path }
        let pairs = query.split(separator: "&", omittingEmptySubsequences: false).map { pair -> String in
            let name = pair.split(separator: "=", maxSplits: 1).first ?? ""
            return secretParameters.contains(name.lowercased()[...]) ? "\(name)=REDACTED" : String(pair)
        }
        return path + "?" + pairs.joined(separator: "&")
    }
}

extension Duration {
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
