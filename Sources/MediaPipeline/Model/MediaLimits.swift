/// Bounds on the work one file may cause. Every limit is checked before the expensive step it
/// protects: pixel and frame counts from the header, before any pixel is decoded.
public struct MediaLimits: Sendable, Hashable {
    /// Largest image or video frame, in pixels (width × height), that will be decoded.
    public var maxPixels: Int
    /// Most frames or pages an image may announce.
    public var maxFrames: Int
    /// Longest time decoding one file may take before it is stopped.
    public var timeLimit: Duration

    public init(maxPixels: Int = 50_000_000, maxFrames: Int = 10_000, timeLimit: Duration = .seconds(30)) {
        self.maxPixels = maxPixels
        self.maxFrames = maxFrames
        self.timeLimit = timeLimit
    }
}
