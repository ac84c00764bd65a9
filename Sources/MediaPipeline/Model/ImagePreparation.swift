import Foundation
import MediagateWire

/// What may be done to an image before it is uploaded (`mediagate upload --strip-metadata
/// --max-dimension N --convert-heic`), and what that makes of a given file.
public struct ImagePreparation: Sendable, Equatable {
    /// Drop EXIF (GPS included), XMP and IPTC; the orientation goes into the pixels.
    public var stripMetadata = false
    /// Scale down so neither displayed side exceeds this; never enlarge.
    public var maxDimension: Int?
    /// Re-encode HEIC/HEIF as JPEG, for clients that cannot show it.
    public var convertHEIC = false

    public init(stripMetadata: Bool = false, maxDimension: Int? = nil, convertHEIC: Bool = false) {
        self.stripMetadata = stripMetadata
        self.maxDimension = maxDimension
        self.convertHEIC = convertHEIC
    }

    /// The re-encoding a file needs: its new name, type and file suffix.
    public struct Plan: Sendable, Equatable {
        public var filename: String
        public var mimeType: String
        public var suffix: String
    }

    /// Still images libvips can write back in their own format.
    private static let suffixes = [
        "image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/heic": "heic",
        "image/heif": "heif", "image/avif": "avif", "image/tiff": "tif",
    ]

    /// What to do with `attachment` (as probed), or nil to upload it as it is: not an image we
    /// rewrite (animated, SVG, GIF, BMP, documents, video), or nothing asked applies to it.
    public func plan(for attachment: Attachment) -> Plan? {
        guard attachment.type == .image, attachment.animated != true, let mime = attachment.mimeType,
              let suffix = Self.suffixes[mime] else { return nil }
        let isHEIF = mime == "image/heic" || mime == "image/heif"
        let convert = convertHEIC && isHEIF
        let longest = max(attachment.width ?? 0, attachment.height ?? 0)
        let shrink = maxDimension.map { longest > $0 } ?? false
        guard convert || shrink || stripMetadata else { return nil }
        guard convert else { return Plan(filename: attachment.filename, mimeType: mime, suffix: suffix) }
        let stem = (attachment.filename as NSString).deletingPathExtension
        return Plan(filename: (stem.isEmpty ? "image" : stem) + ".jpg", mimeType: "image/jpeg", suffix: "jpg")
    }
}
