/// Why the pipeline could not fully analyse or thumbnail a file.
///
/// Errors carry a stable ``code`` (fit for a metric label or an API error code) and a message
/// captured at the failing call, such as libvips' error buffer or `av_strerror`'s text. New codes
/// can be added without breaking callers that switch over the existing ones with `==`.
public struct MediaError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable, machine-readable reason.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String {
            case unsupported
            case corrupt
            case tooLarge = "too_large"
            case timedOut = "timed_out"
            case io
            case empty
            case noThumbnail = "no_thumbnail"
            case overloaded
            case needsWholeDecodeLane = "needs_whole_decode_lane"
        }

        private let base: Base

        /// No decoder here for this type, or policy keeps the type away from the decoders.
        public static let unsupported = Code(base: .unsupported)
        /// The bytes claim a format they do not follow (truncated, damaged, inconsistent).
        public static let corrupt = Code(base: .corrupt)
        /// The header announces more pixels or frames than the configured limits.
        public static let tooLarge = Code(base: .tooLarge)
        /// Decoding took longer than the per-file time limit and was stopped.
        public static let timedOut = Code(base: .timedOut)
        /// The file could not be read.
        public static let io = Code(base: .io)
        /// The file has no bytes.
        public static let empty = Code(base: .empty)
        /// The file is fine but has nothing to draw a thumbnail from (audio without a cover).
        public static let noThumbnail = Code(base: .noThumbnail)
        /// The worker pool's queue is full; try again later.
        public static let overloaded = Code(base: .overloaded)
        /// A picture this big decodes on the whole-decode lane, not on a shared worker (never
        /// leaves `MediaProcessor`, which moves the job there).
        static let needsWholeDecodeLane = Code(base: .needsWholeDecodeLane)

        public var description: String { base.rawValue }

        /// The code a ``description`` names (as a worker process reports it); `corrupt` for a
        /// name this version does not know.
        init(named name: String) {
            base = Base(rawValue: name) ?? .corrupt
        }

        private init(base: Base) {
            self.base = base
        }
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// A short label for logs and metrics, e.g. `too_large`.
    public var shortDescription: String { code.description }

    public var description: String { "\(code): \(message)" }
}
