import HTTPTypes
import Hummingbird
import MediagateCore
import MediagateWire

/// Behind a reverse proxy every request comes from the proxy's address: one attacker's failed
/// logins then throttled everyone (20 failures blocked every login). When the peer is one of
/// `trustedProxies`, the client is the right-most `X-Forwarded-For` entry that is not itself a
/// trusted proxy (entries to its left are whatever the client wrote). From anyone else the
/// header is ignored.
struct ClientAddressMiddleware: RouterMiddleware {
    typealias Context = ChatRequestContext
    let trustedProxies: Set<String>

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard trustedProxies.contains(context.remoteAddress) else { return try await next(request, context) }
        let hops = request.headers[values: .xForwardedFor].flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard let client = hops.last(where: { !trustedProxies.contains($0) }) ?? hops.first else {
            return try await next(request, context)
        }
        var context = context
        context.remoteAddress = client
        return try await next(request, context)
    }
}

extension HTTPField.Name {
    static let xForwardedFor = Self("X-Forwarded-For")!
}
