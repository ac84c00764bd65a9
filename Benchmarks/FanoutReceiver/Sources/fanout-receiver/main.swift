// fanout-receiver PORT THREADS < paths
//
// Reads WebSocket paths (one per line) from standard input until an empty line, opens one
// connection per path to 127.0.0.1:PORT, and prints "ready N" once every socket has had the
// server's `connected` frame. Then it records, for every `message` frame, the message's `seq`
// and its latency: CLOCK_MONOTONIC now (the clock Python's perf_counter reads) minus the `t` the
// sender put in the content. On "stop" it prints "seq latency" lines, then "done".
import Foundation
import NIOCore
import NIOPosix

func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// Samples per event-loop thread, merged at the end (each handler writes only its loop's slot).
final class Samples: @unchecked Sendable {
    let lock = NSLock()
    var values: [(Int, Double)] = []
    var connected = 0

    func add(_ batch: [(Int, Double)]) {
        lock.lock(); values += batch; lock.unlock()
    }

    func connectedOne() -> Int {
        lock.lock(); defer { lock.unlock() }
        connected += 1
        return connected
    }
}

enum Markers {
    static let message = Array(#""type":"message""#.utf8)
    static let connected = Array(#""type":"connected""#.utf8)
    static let seq = Array(#"seq\": "#.utf8)
    static let time = Array(#"t\": "#.utf8)
    static let headerEnd = Array("\r\n\r\n".utf8)
}

final class Receiver: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let path: String
    let port: Int
    let samples: Samples
    let onConnected: (Int) -> Void
    var buffer = ByteBuffer()
    var upgraded = false
    var pending: [(Int, Double)] = []

    init(path: String, port: Int, samples: Samples, onConnected: @escaping (Int) -> Void) {
        self.path = path
        self.port = port
        self.samples = samples
        self.onConnected = onConnected
    }

    func channelActive(context: ChannelHandlerContext) {
        let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        let request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n\r\n"
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: request)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let now = monotonicSeconds()
        var incoming = unwrapInboundIn(data)
        buffer.writeBuffer(&incoming)
        if !upgraded {
            guard let end = buffer.withUnsafeReadableBytes({ find(Markers.headerEnd, in: $0) }) else { return }
            let head = buffer.readString(length: end) ?? ""
            guard head.hasPrefix("HTTP/1.1 101") else { fatalError("upgrade refused: \(head)") }
            upgraded = true
        }
        while buffer.readableBytes >= 2 {
            let start = buffer.readerIndex
            let first = buffer.getInteger(at: start, as: UInt8.self)!
            var length = Int(buffer.getInteger(at: start + 1, as: UInt8.self)! & 0x7F)
            var headerLength = 2
            if length == 126 {
                guard buffer.readableBytes >= 4 else { break }
                length = Int(buffer.getInteger(at: start + 2, as: UInt16.self)!)
                headerLength = 4
            } else if length == 127 {
                guard buffer.readableBytes >= 10 else { break }
                length = Int(buffer.getInteger(at: start + 2, as: UInt64.self)!)
                headerLength = 10
            }
            guard buffer.readableBytes >= headerLength + length else { break }
            buffer.moveReaderIndex(forwardBy: headerLength)
            let payload = buffer.readSlice(length: length)!
            switch first & 0x0F {
            case 1: handleText(payload, now: now)
            case 9: send(opcode: 10, payload: payload, context: context)
            case 8: context.close(promise: nil)
            default: break
            }
        }
        if buffer.readableBytes == 0 { buffer.clear() }
    }

    func handleText(_ payload: ByteBuffer, now: Double) {
        payload.withUnsafeReadableBytes { bytes in
            if find(Markers.message, in: bytes) != nil {
                // The content is escaped JSON: {\"seq\": 12, \"t\": 1234.5}
                guard let seq = number(after: Markers.seq, in: bytes), let sent = number(after: Markers.time, in: bytes) else { return }
                pending.append((Int(seq), now - sent))
                if pending.count >= 64 { flushSamples() }
            } else if find(Markers.connected, in: bytes) != nil {
                onConnected(samples.connectedOne())
            }
        }
    }

    /// Offset just past `marker` in `bytes`: memchr for the first byte, memcmp for the rest.
    func find(_ marker: [UInt8], in bytes: UnsafeRawBufferPointer) -> Int? {
        marker.withUnsafeBytes { needle in
            guard let base = bytes.baseAddress, let needleBase = needle.baseAddress, needle.count <= bytes.count else { return nil }
            var offset = 0
            let last = bytes.count - needle.count
            while offset <= last {
                guard let hit = memchr(base + offset, Int32(marker[0]), last - offset + 1) else { return nil }
                let position = base.distance(to: UnsafeRawPointer(hit))
                if memcmp(hit, needleBase, needle.count) == 0 { return position + needle.count }
                offset = position + 1
            }
            return nil
        }
    }

    func number(after marker: [UInt8], in bytes: UnsafeRawBufferPointer) -> Double? {
        guard let start = find(marker, in: bytes) else { return nil }
        var end = start
        while end < bytes.count, (bytes[end] >= 48 && bytes[end] <= 57) || bytes[end] == 46 || bytes[end] == 101 || bytes[end] == 45 { end += 1 }
        return Double(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self))
    }

    func flushSamples() {
        samples.add(pending)
        pending.removeAll(keepingCapacity: true)
    }

    func send(opcode: UInt8, payload: ByteBuffer, context: ChannelHandlerContext) {
        var frame = ByteBuffer()
        frame.writeInteger(0x80 | opcode)
        frame.writeInteger(0x80 | UInt8(payload.readableBytes))
        frame.writeInteger(UInt32(0)) // mask key 0: XOR leaves the payload as it is
        var copy = payload
        frame.writeBuffer(&copy)
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
    }
}

let arguments = CommandLine.arguments
guard arguments.count == 3, let port = Int(arguments[1]), let threads = Int(arguments[2]) else {
    FileHandle.standardError.write(Data("usage: fanout-receiver PORT THREADS < paths\n".utf8))
    exit(2)
}
var paths = [String]()
while let line = readLine(), !line.isEmpty { paths.append(line) }

let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
let samples = Samples()
var handlers = [(Receiver, Channel)]()
let allConnected = DispatchSemaphore(value: 0)
for path in paths {
    let handler = Receiver(path: path, port: port, samples: samples) { count in
        if count == paths.count { allConnected.signal() }
    }
    let channel = try ClientBootstrap(group: group)
        .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
        .channelInitializer { channel in channel.pipeline.addHandler(handler) }
        .connect(host: "127.0.0.1", port: port).wait()
    handlers.append((handler, channel))
}
allConnected.wait()
print("ready \(paths.count)")
fflush(stdout)
while let line = readLine(), line != "stop" {}
// Each handler's pending samples belong to its event loop: flush them there.
for (handler, channel) in handlers {
    try channel.eventLoop.submit { handler.flushSamples() }.wait()
}
for (seq, latency) in samples.values { print("\(seq) \(latency)") }
print("done")
fflush(stdout)
exit(0)
