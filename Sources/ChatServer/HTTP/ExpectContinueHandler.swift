import HTTPTypes
import NIOCore
import NIOHTTPTypes
import MediagateCore
import MediagateWire

/// Answers `Expect: 100-continue` with `100 Continue` as soon as the request head arrives.
///
/// curl (and libcurl clients) send that header with any body over 1 MiB and then wait up to a
/// second for the interim answer before sending the body; Hummingbird sends none, so every
/// large multipart upload or tus PATCH from curl paid a one-second pause (measured: a 2.5 MB
/// `curl -F` upload took 1.19 s, 0.11 s with `Expect:` cleared). The answer goes out at once,
/// before the route decides anything: a request refused early (413, 401) still gets its final
/// status, the client merely sends the body it would have sent after the one-second wait anyway.
final class ExpectContinueHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundOut = HTTPResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(var head) = unwrapInboundIn(data),
              head.headerFields[.expect]?.lowercased() == "100-continue" else {
            context.fireChannelRead(data)
            return
        }
        head.headerFields[.expect] = nil
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
        context.fireChannelRead(wrapInboundOut(.head(head)))
    }
}
