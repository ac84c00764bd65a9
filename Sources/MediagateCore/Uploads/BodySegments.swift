import NIOCore

/// One request body read as consecutive segments of at most a given size, each an
/// `AsyncSequence` of its own, so that each can be one append of ``UploadEngine`` (written,
/// made durable, its offset stored) while the request goes on.
///
/// Used by one task at a time: a segment is read to its end before the next is made.
final class BodySegments<Base: AsyncSequence & Sendable>: @unchecked Sendable where Base.Element == ByteBuffer {
    private var iterator: Base.AsyncIterator
    /// Bytes read from the body that belong to the next segment.
    private var leftover: ByteBuffer?
    private var ended = false

    init(_ body: Base) {
        iterator = body.makeAsyncIterator()
    }

    /// The next segment, `bytes` long unless the body ends first.
    func next(_ bytes: Int64) -> Segment {
        Segment(source: self, limit: bytes)
    }

    /// Whether any byte follows; reads ahead one chunk to know. Throws what the body throws.
    func hasMore() async throws -> Bool {
        if leftover != nil { return true }
        if ended { return false }
        leftover = try await iterator.next()
        if leftover == nil { ended = true }
        return leftover != nil
    }

    fileprivate func read(upTo bytes: Int) async throws -> ByteBuffer? {
        guard bytes > 0, try await hasMore(), var chunk = leftover else { return nil }
        leftover = nil
        guard chunk.readableBytes > bytes, let head = chunk.readSlice(length: bytes) else { return chunk }
        leftover = chunk // the rest, for the next segment
        return head
    }

    struct Segment: AsyncSequence, Sendable {
        typealias Element = ByteBuffer
        let source: BodySegments
        let limit: Int64

        struct AsyncIterator: AsyncIteratorProtocol {
            let source: BodySegments
            var remaining: Int64

            mutating func next() async throws -> ByteBuffer? {
                guard remaining > 0, let chunk = try await source.read(upTo: Int(clamping: remaining)) else { return nil }
                remaining -= Int64(chunk.readableBytes)
                return chunk
            }
        }

        func makeAsyncIterator() -> AsyncIterator { AsyncIterator(source: source, remaining: limit) }
    }
}
