import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import Synchronization
import MediagateCore
import MediagateWire

/// Open connections per client address, shared by every connection's `ConnectionGuardHandler`.
///
/// One address holding thousands of sockets (half a request line each, never finished) used to
/// exhaust the process's descriptors and stop `/healthz`: past `maxPerAddress` a new
/// connection from that address is answered 503 and closed at once, before any parsing.
final class ConnectionCounts: Sendable {
    let maxPerAddress: Int
    private let open = Mutex([String: Int]())

    init(maxPerAddress: Int) {
        self.maxPerAddress = maxPerAddress
    }

    /// Counts a new connection from `address`; false (not counted) when it would go past the cap.
    func admit(_ address: String) -> Bool {
        open.withLock { open in
            let count = open[address, default: 0]
            guard maxPerAddress <= 0 || count < maxPerAddress else { return false }
            open[address] = count + 1
            return true
        }
    }

    func release(_ address: String) {
        open.withLock { open in
            let count = open[address, default: 0] - 1
            open[address] = count > 0 ? count : nil
        }
    }
}

/// The first handler of every connection, before the HTTP codec: it admits the connection
/// against its address's cap, and closes one whose first request head has not ended within
/// `headerTimeout` (a slowloris; Hummingbird's idle timeout only starts once a head is parsed).
/// After that head it passes bytes on untouched: later requests on the connection are bounded
/// by Hummingbird's idle timeout, upgraded WebSockets by their ping.
final class ConnectionGuardHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let counts: ConnectionCounts
    private let headerTimeout: TimeAmount
    private var address: String?
    private var started = false
    private var refused = false
    private var headEnded = false
    /// How much of "\r\n\r\n" the bytes so far end with.
    private var matched = 0
    private var timeout: Scheduled<Void>?

    private static let refusal = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 92\r\nRetry-After: 5\r\nConnection: close\r\n\r\n{\"error\":{\"code\":\"too_many_connections\",\"message\":\"too many connections from this address\"}}"

    init(counts: ConnectionCounts, headerTimeout: TimeAmount) {
        self.counts = counts
        self.headerTimeout = headerTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    private func start(_ context: ChannelHandlerContext) {
        guard !started else { return }
        started = true
        let address = context.channel.remoteAddress?.ipAddress ?? "unknown"
        guard counts.admit(address) else {
            refused = true
            context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: Self.refusal)), promise: nil)
            context.close(promise: nil)
            return
        }
        self.address = address
        let channel = context.channel
        timeout = context.eventLoop.scheduleTask(in: headerTimeout) { channel.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return } // being closed: nothing reaches the parser
        if !headEnded {
            let buffer = unwrapInboundIn(data)
            buffer.withUnsafeReadableBytes { bytes in
                for byte in bytes where !headEnded {
                    // Progress through "\r\n\r\n"; a CR that breaks a run may start the next.
                    let expected: UInt8 = matched % 2 == 0 ? 13 : 10
                    matched = byte == expected ? matched + 1 : (byte == 13 ? 1 : 0)
                    if matched == 4 { headEnded = true }
                }
            }
            if headEnded {
                timeout?.cancel()
                timeout = nil
            }
        }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timeout?.cancel()
        timeout = nil
        if let address {
            counts.release(address)
            self.address = nil
        }
        context.fireChannelInactive()
    }
}

/// A server child channel that puts a `ConnectionGuardHandler` in front of another's pipeline.
struct GuardedChildChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value
    let base: Base
    let counts: ConnectionCounts
    let headerTimeout: TimeAmount

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ConnectionGuardHandler(counts: counts, headerTimeout: headerTimeout))
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}
