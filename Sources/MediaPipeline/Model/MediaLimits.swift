/// Bounds on the work one file may cause. Every limit is checked before the expensive step it
/// protects: pixel and frame counts from the header, before any pixel is decoded.
public struct MediaLimits: Sendable, Hashable {
    /// Largest image or video frame, in pixels (width × height), that will be decoded.
    public var maxPixels: Int
    /// Most frames or pages an image may announce.
    public var maxFrames: Int
    /// Longest time decoding one file may take before it is stopped.
    public var timeLimit: Duration
    /// Most memory a picture decoded whole may take (pixels × bands × bytes per band). Such
    /// decodes also run one at a time (`VipsImaging.wholeDecodes`): an interlaced 16-bit PNG
    /// under the pixel limit decodes to 294 MB, and eight uploads at once took a server past
    /// 1.4 GB. The default still admits a 48 MP 10-bit HEIC (288 MB).
    public var maxDecodedBytes: Int

    public init(maxPixels: Int = 50_000_000, maxFrames: Int = 10_000, timeLimit: Duration = .seconds(30),
                maxDecodedBytes: Int = 320 << 20) {
        self.maxPixels = maxPixels
        self.maxFrames = maxFrames
        self.timeLimit = timeLimit
        self.maxDecodedBytes = maxDecodedBytes
    }
}
