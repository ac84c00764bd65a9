import Foundation
internal import CVipsShim

/// Pixels of a tiny upright picture (3-band 8-bit sRGB), the input of the placeholder hash.
struct PreviewPixels: Sendable {
    var bytes: [UInt8]
    var width: Int
    var height: Int
}

/// What one decode pass produced: the encoded thumbnail when asked for, and the preview.
struct RenderedPicture: Sendable {
    var thumbnail: Thumbnail?
    var preview: PreviewPixels?
    /// Set when the picture was drawn from damaged bytes, as far as they go.
    var warning: String?
}

/// An image header read without decoding pixels.
struct ImageHeader: Sendable {
    var width: Int
    var height: Int
    var pages: Int
    var orientation: Int
    var loader: String
    var bands = 3
    var bytesPerBand = 1
    /// An interlaced PNG: libvips decodes it whole, into memory, before the first pixel is out.
    var interlaced = false
    /// A GIF whose logical screen differs from the canvas libvips would draw: frames are
    /// placed on this instead (see ``GIFScreen``).
    var gifScreen: GIFScreen?

    /// Bytes the decoded picture takes when the loader holds all of it at once (interlaced PNG;
    /// libheif and ImageMagick decode whole too), nil when libvips streams it tile by tile and
    /// memory does not grow with the picture.
    var wholeDecodeBytes: Int? {
        guard interlaced || ["heifload", "magickload"].contains(loader) else { return nil }
        let (product, overflow) = width.multipliedReportingOverflow(by: height * bands * bytesPerBand)
        return overflow ? .max : product
    }

    /// EXIF orientations 5...8 turn the picture a quarter turn.
    var isQuarterTurned: Bool { (5...8).contains(orientation) }
    var displayedWidth: Int { isQuarterTurned ? height : width }
    var displayedHeight: Int { isQuarterTurned ? width : height }
}

/// libvips, wrapped: header reads and one-pass thumbnails. Runs on media worker threads only.
enum VipsImaging {
    /// Decodes that hold a whole picture of at least `wholeDecodeGateBytes`, one at a time in
    /// the process (see ``MediaLimits/maxDecodedBytes``).
    static let wholeDecodes = DispatchSemaphore(value: 1)
    /// Over this, a whole decode waits its turn: a 12 or 24 MP HEIC (36, 72 MB) does not, so
    /// phones' photos still decode in parallel; a 48 MP one or that PNG (144, 294 MB) does.
    static let wholeDecodeGateBytes = 128 << 20

    static func releaseFreeMemory() { mg_release_free_memory() }

    /// Starts libvips the first time it is needed, once per process.
    static func start() throws(MediaError) {
        guard started else { throw MediaError(.unsupported, "libvips failed to start") }
    }

    // Swift runs a global's initialiser once, thread-safely.
    private static let started: Bool = {
        // One libvips thread per pipeline: the worker pool already spreads files over every core.
        mg_vips_startup("mediagate", 1, 100, 64 << 20, 10) == 0
    }()

    static func readHeader(path: String, route: VipsRoute) throws(MediaError) -> ImageHeader {
        try start()
        var header = mg_vips_header()
        var error: UnsafeMutablePointer<CChar>?
        guard mg_vips_read_header(path, route.readsThroughSource ? 1 : 0, &header, &error) == 0 else {
            throw failure(error, timedOut: false, context: "reading the image header")
        }
        let loader = withUnsafeBytes(of: header.loader) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        var image = ImageHeader(
            width: Int(header.width), height: Int(header.height), pages: max(1, Int(header.pages)),
            orientation: Int(header.orientation), loader: loader, bands: max(1, Int(header.bands)),
            bytesPerBand: max(1, Int(header.bytes_per_band)), interlaced: header.interlaced != 0)
        if loader == "gifload", let screen = GIFScreen.read(path: path), screen.width != image.width || screen.height != image.height {
            image.width = screen.width
            image.height = screen.height
            image.gifScreen = screen
        }
        return image
    }

    /// Thumbnails a file (first page or frame, orientation applied, shrink-on-load).
    ///
    /// A JPEG that ends early (an interrupted transfer; some phones' HDR JPEGs) is drawn as far
    /// as its bytes go, with a warning, as `vipsthumbnail` does: only after a strict pass has
    /// failed, so a damaged file is never passed off as a whole one.
    static func render(path: String, route: VipsRoute, header: ImageHeader, request: ThumbnailRequest?, previewSize: Int,
                       deadline: Deadline) throws(MediaError) -> RenderedPicture {
        do {
            return try render(path: path, route: route, header: header, request: request, previewSize: previewSize,
                              deadline: deadline, strict: true)
        } catch where error.code == .corrupt && header.loader == "jpegload" {
            // Not decided on libjpeg's words ("Premature end of JPEG file"): libvips' error
            // buffer is shared by every thread, so the message may be another file's.
            var rendered = try render(path: path, route: route, header: header, request: request, previewSize: previewSize,
                                      deadline: deadline, strict: false)
            rendered.warning = "the JPEG is cut short or damaged; it is shown as far as it decodes"
            return rendered
        }
    }

    private static func render(path: String, route: VipsRoute, header: ImageHeader, request: ThumbnailRequest?, previewSize: Int,
                               deadline: Deadline, strict: Bool) throws(MediaError) -> RenderedPicture {
        let shrink = header.loader == "jpegload" ? jpegShrink(header: header, request: request) : 1
        return try render(request: request, previewSize: previewSize, deadline: deadline, strict: strict) { spec, result, error in
            var spec = spec.pointee
            spec.jpeg_shrink = Int32(shrink)
            if let screen = header.gifScreen {
                spec.canvas_width = Int32(screen.width)
                spec.canvas_height = Int32(screen.height)
            }
            guard shrink > 1, strict, let keep = request?.decodedPicturePath else {
                return mg_vips_thumbnail_file(path, route.readsThroughSource ? 1 : 0, &spec, result, error)
            }
            return keep.withCString { keepPath in
                spec.decoded_path = keepPath
                return mg_vips_thumbnail_file(path, 0, &spec, result, error)
            }
        }
    }

    /// The largest libjpeg DCT scale (1/2, 1/4, 1/8) whose decoded picture still covers the
    /// thumbnail box, as PIL's draft mode picks; 1 when none does. libvips on its own keeps
    /// twice the box, which for a 12 MP photo means decoding four times the pixels.
    static func jpegShrink(header: ImageHeader, request: ThumbnailRequest?) -> Int {
        let boxWidth = Double(request?.width ?? 256), boxHeight = Double(request?.height ?? 256)
        let across = Double(header.displayedWidth) / boxWidth, down = Double(header.displayedHeight) / boxHeight
        // contain: the longer relative side sets the scale; cover: the shorter one must still fill the box.
        let factor = request?.fit == .cover ? min(across, down) : max(across, down)
        return [8, 4, 2].first { Double($0) <= factor } ?? 1
    }

    /// Thumbnails an encoded picture held in memory (cover art).
    static func render(encoded bytes: UnsafeRawBufferPointer, request: ThumbnailRequest?, previewSize: Int,
                       deadline: Deadline) throws(MediaError) -> RenderedPicture {
        try render(request: request, previewSize: previewSize, deadline: deadline) { spec, result, error in
            mg_vips_thumbnail_buffer(bytes.baseAddress, bytes.count, spec, result, error)
        }
    }

    /// Thumbnails packed RGB24 pixels (a video frame), turning them clockwise first.
    static func render(rgb pixels: UnsafePointer<UInt8>, width: Int, height: Int, clockwiseDegrees: Int,
                       request: ThumbnailRequest?, previewSize: Int, deadline: Deadline) throws(MediaError) -> RenderedPicture {
        try render(request: request, previewSize: previewSize, deadline: deadline) { spec, result, error in
            mg_vips_thumbnail_rgb(pixels, Int32(width), Int32(height), Int32(clockwiseDegrees), spec, result, error)
        }
    }

    /// Width × height an encoded picture in memory announces, read from its header only.
    static func pixelCount(ofEncoded bytes: UnsafeRawBufferPointer) throws(MediaError) -> Int {
        try start()
        var header = mg_vips_header()
        var error: UnsafeMutablePointer<CChar>?
        guard mg_vips_read_header_buffer(bytes.baseAddress, bytes.count, &header, &error) == 0 else {
            throw failure(error, timedOut: false, context: "reading the picture's header")
        }
        let product = Int(header.width).multipliedReportingOverflow(by: Int(header.height))
        return product.overflow ? .max : product.partialValue
    }

    /// The libvips loader that would read `bytes`, e.g. `jpegload_buffer`.
    static func loader(forEncoded bytes: UnsafeRawBufferPointer) throws(MediaError) -> String {
        try start()
        var name = [CChar](repeating: 0, count: 64)
        mg_vips_loader_for_buffer(bytes.baseAddress, bytes.count, &name, name.count)
        return String(decoding: name.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func render(
        request: ThumbnailRequest?, previewSize: Int, deadline: Deadline, strict: Bool = true,
        _ call: (UnsafePointer<mg_thumbnail_request>, UnsafeMutablePointer<mg_thumbnail_result>,
                 UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32
    ) throws(MediaError) -> RenderedPicture {
        try start()
        var spec = mg_thumbnail_request()
        // A preview alone still needs a small picture to derive it from.
        spec.width = Int32(request?.width ?? 256)
        spec.height = Int32(request?.height ?? 256)
        spec.cover = request?.fit == .cover ? 1 : 0
        spec.format = Int32(request.map { formatCode($0.format) } ?? Int(MG_FORMAT_NONE.rawValue))
        spec.quality = Int32(request?.quality ?? 80)
        spec.preview_size = Int32(previewSize)
        spec.fail_on_truncated = strict ? 1 : 0
        spec.deadline_us = deadline.onClock(now: mg_vips_now_us())

        var result = mg_thumbnail_result()
        var error: UnsafeMutablePointer<CChar>?
        guard call(&spec, &result, &error) == 0 else {
            throw failure(error, timedOut: result.timed_out != 0 || deadline.hasPassed, context: "decoding")
        }
        defer { mg_vips_result_free(&result) }

        var rendered = RenderedPicture()
        if let request, let data = result.data {
            rendered.thumbnail = Thumbnail(
                data: Data(bytes: data, count: result.size), width: Int(result.width),
                height: Int(result.height), format: request.format)
        }
        if let preview = result.preview {
            rendered.preview = PreviewPixels(
                bytes: Array(UnsafeBufferPointer(start: preview, count: result.preview_bytes)),
                width: Int(result.preview_width), height: Int(result.preview_height))
        }
        return rendered
    }

    /// Re-encodes a still image for upload (see `MediaProcessor.prepareImage`).
    static func rewrite(path: String, maxDimension: Int, strip: Bool, to outputPath: String) throws(MediaError) -> (width: Int, height: Int) {
        try start()
        var width: Int32 = 0, height: Int32 = 0
        var error: UnsafeMutablePointer<CChar>?
        guard mg_vips_rewrite_image(path, Int32(maxDimension), strip ? 1 : 0, 90, outputPath, &width, &height, &error) == 0 else {
            throw failure(error, timedOut: false, context: "re-encoding the image")
        }
        return (Int(width), Int(height))
    }

    private static func formatCode(_ format: ThumbnailRequest.Format) -> Int {
        switch format {
        case .jpeg: Int(MG_FORMAT_JPEG.rawValue)
        case .webp: Int(MG_FORMAT_WEBP.rawValue)
        case .png: Int(MG_FORMAT_PNG.rawValue)
        }
    }

    private static func failure(_ error: UnsafeMutablePointer<CChar>?, timedOut: Bool, context: String) -> MediaError {
        let message = error.map { String(cString: $0).trimmingCharacters(in: .whitespacesAndNewlines) } ?? "no message"
        mg_vips_free(error)
        if timedOut {
            return MediaError(.timedOut, "libvips stopped after the time limit while \(context)")
        }
        if message.contains("operation is blocked") || message.contains("is not a known file format") {
            return MediaError(.unsupported, "libvips: \(message)")
        }
        return MediaError(.corrupt, "libvips, \(context): \(message)")
    }
}
