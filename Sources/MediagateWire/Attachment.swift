/// What a chat client needs to render a file: the seed article's `Attachment` model with the
/// same JSON keys, plus additive fields that older clients ignore.
///
/// ```json
/// {"type":"image","filename":"IMG_0001.jpg","url":"/api/files/<id>","size":2481023,
///  "mimeType":"image/jpeg","thumbnailUrl":"/api/files/<id>/thumbnail","duration":null,
///  "width":3024,"height":4032,"sha256":"…","blurhash":"…","pageCount":null,
///  "animated":false,"codec":null}
/// ```
public struct Attachment: Codable, Sendable, Hashable {
    /// The seed's `AttachmentType`: how a client should present the file.
    public enum Kind: String, Codable, Sendable, CaseIterable {
        case image, video, audio, document, file
    }

    // The seed article's keys.
    public var type: Kind
    public var filename: String
    public var url: String?
    public var size: Int?
    public var mimeType: String?
    public var thumbnailUrl: String?
    /// Seconds, for audio and video.
    public var duration: Double?
    /// Width as displayed: EXIF orientation or the video's display rotation applied.
    public var width: Int?
    /// Height as displayed.
    public var height: Int?

    // Additive keys.
    /// Lower-case hex SHA-256 of the original bytes.
    public var sha256: String?
    /// A BlurHash of the thumbnail, for painting a placeholder before the image loads.
    public var blurhash: String?
    /// Pages of a PDF.
    public var pageCount: Int?
    /// Whether a GIF or WebP has more than one frame.
    public var animated: Bool?
    /// Frames of an animated image.
    public var frameCount: Int?
    /// The video codec of a video, or the audio codec of an audio file (FFmpeg's short name).
    public var codec: String?
    /// The audio codec of a video with sound.
    public var audioCodec: String?
    /// Whether a video has a sound track.
    public var hasAudio: Bool?
    /// The type the file name's extension claims, when it differs from the sniffed ``mimeType``.
    public var claimedMimeType: String?
    /// Something a person should know about the file: a picture drawn from a truncated file,
    /// or media kept as a plain file because it could not be decoded (see ``type``).
    public var warning: String?

    public init(
        type: Kind, filename: String, url: String? = nil, size: Int? = nil, mimeType: String? = nil,
        thumbnailUrl: String? = nil, duration: Double? = nil, width: Int? = nil, height: Int? = nil,
        sha256: String? = nil, blurhash: String? = nil, pageCount: Int? = nil, animated: Bool? = nil,
        frameCount: Int? = nil, codec: String? = nil, audioCodec: String? = nil, hasAudio: Bool? = nil,
        claimedMimeType: String? = nil, warning: String? = nil
    ) {
        self.type = type
        self.filename = filename
        self.url = url
        self.size = size
        self.mimeType = mimeType
        self.thumbnailUrl = thumbnailUrl
        self.duration = duration
        self.width = width
        self.height = height
        self.sha256 = sha256
        self.blurhash = blurhash
        self.pageCount = pageCount
        self.animated = animated
        self.frameCount = frameCount
        self.codec = codec
        self.audioCodec = audioCodec
        self.hasAudio = hasAudio
        self.claimedMimeType = claimedMimeType
        self.warning = warning
    }

    private enum CodingKeys: String, CodingKey {
        case type, filename, url, size, mimeType, thumbnailUrl, duration, width, height
        case sha256, blurhash, pageCount, animated, frameCount, codec, audioCodec, hasAudio, claimedMimeType, warning
    }

    // Written by hand so that absent values appear as `null`, as in the SPEC's example, rather
    // than being left out: clients can tell "unknown" from "this server is too old".
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(type, forKey: .type)
        try container.encode(filename, forKey: .filename)
        try container.encode(url, forKey: .url)
        try container.encode(size, forKey: .size)
        try container.encode(mimeType, forKey: .mimeType)
        try container.encode(thumbnailUrl, forKey: .thumbnailUrl)
        try container.encode(duration, forKey: .duration)
        try container.encode(width, forKey: .width)
        try container.encode(height, forKey: .height)
        try container.encode(sha256, forKey: .sha256)
        try container.encode(blurhash, forKey: .blurhash)
        try container.encode(pageCount, forKey: .pageCount)
        try container.encode(animated, forKey: .animated)
        try container.encode(frameCount, forKey: .frameCount)
        try container.encode(codec, forKey: .codec)
        try container.encode(audioCodec, forKey: .audioCodec)
        try container.encode(hasAudio, forKey: .hasAudio)
        try container.encode(claimedMimeType, forKey: .claimedMimeType)
        try container.encode(warning, forKey: .warning)
    }
}
