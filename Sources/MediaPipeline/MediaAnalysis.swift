import Foundation
import MediagateWire

/// One file's trip through the pipeline, on a worker thread: sniff, hash, route, decode.
struct MediaAnalysis {
    let worker: MediaWorker
    let limits: MediaLimits
    /// Where SVG and PDF are decoded when set (see ``DecodeWorkerProcess``); in this process
    /// when nil, as in the worker itself and the command line.
    var isolation: DecodeWorkerProcess? = nil

    func probe(path: String, filename: String, thumbnail request: ThumbnailRequest?, depth: ProbeDepth = .full,
               knownSHA256: String? = nil) throws(MediaError) -> MediaReport {
        let size = try regularFileSize(path)
        let name = FileName.sanitized(filename)
        guard size > 0 else {
            return MediaReport(
                attachment: Attachment(type: .file, filename: name, size: 0, mimeType: "application/x-empty",
                                       sha256: FileDigest.emptySHA256),
                error: MediaError(.empty, "the file is empty"))
        }
        var sha256: String?
        if depth == .full {
            sha256 = if let knownSHA256, FileDigest.isSHA256Hex(knownSHA256) { knownSHA256 } else { try FileDigest.sha256Hex(ofFileAt: path) }
        }
        let mimeType = try sniff(path, size: size)
        let route = MediaRoute.forMimeType(mimeType)
        var attachment = Attachment(type: route.kind, filename: name, size: size, mimeType: mimeType, sha256: sha256)
        if let claimed = ClaimedType.mimeType(forFileName: name),
           MediaRoute.forMimeType(claimed).kind != route.kind {
            attachment.claimedMimeType = claimed
        }

        var report = MediaReport(attachment: attachment)
        let deadline = Deadline(after: limits.timeLimit)
        do {
            switch route.decoder {
            case .none:
                // An image, video or audio type we allow no decoder for (JPEG 2000, PSD,
                // playlists, …): say so, rather than pass it off as an ordinary file.
                if let family = mimeType.split(separator: "/").first, ["image", "video", "audio"].contains(family) {
                    report.error = MediaError(.unsupported, "\(mimeType) is not decoded here; it is kept as a file")
                }
            case .vips(let vipsRoute) where isolates(vipsRoute):
                let job = DecodeJob(mode: .probe, path: path, filename: name, headersOnly: depth == .headers, knownSHA256: sha256,
                                    thumbnail: request, limits: limits)
                let answer = try isolation!.run(job, deadline: deadline, on: worker)
                if var isolated = answer.attachment {
                    isolated.claimedMimeType = report.attachment.claimedMimeType
                    report.attachment = isolated
                }
                report.thumbnail = answer.decodedThumbnail
                report.error = answer.error
            case .vips(let vipsRoute):
                try describeImage(path: path, route: vipsRoute, request: request, deadline: deadline, decode: depth == .full, into: &report)
            case .ffmpeg(let demuxer):
                try describeAudioVideo(path: path, demuxer: demuxer, request: request, deadline: deadline, decode: depth == .full, into: &report)
            }
        } catch where error.code == .needsWholeDecodeLane {
            throw error  // the pool runs the job again on that lane
        } catch {
            report.error = error
            Self.deliverAsPlainFile(&report.attachment, because: error)
        }
        if report.error == nil, request != nil, report.thumbnail == nil, case .none = route.decoder {
            // Asked for a thumbnail of a text or office document: nothing to draw.
            report.error = MediaError(.noThumbnail, "\(mimeType) has no picture to make a thumbnail from")
        }
        return report
    }

    /// Media no decoder here can read (damaged, over the pixel limit, too slow, a codec we lack)
    /// is still the sender's file: it is delivered as type `file`, which clients offer as a
    /// download, rather than as an image or video they would try to decode themselves, and
    /// rather than refused (Element sends an image it cannot load as `m.file` the same way).
    /// The sniffed `mimeType` stays, for what it is worth; the file server sends it as
    /// `application/octet-stream`.
    static func deliverAsPlainFile(_ attachment: inout Attachment, because error: MediaError) {
        guard attachment.type != .file else { return }
        attachment.warning = "\(attachment.mimeType ?? "this file") could not be shown (\(error.code)): \(error.message); it is delivered as a plain file"
        attachment.type = .file
        attachment.blurhash = nil
    }

    func thumbnail(path: String, request: ThumbnailRequest) throws(MediaError) -> Thumbnail {
        let size = try regularFileSize(path)
        guard size > 0 else { throw MediaError(.empty, "the file is empty") }
        let mimeType = try sniff(path, size: size)
        let deadline = Deadline(after: limits.timeLimit)
        var report = MediaReport(attachment: Attachment(type: .file, filename: "", size: size, mimeType: mimeType))
        switch MediaRoute.forMimeType(mimeType).decoder {
        case .none:
            throw MediaError(.noThumbnail, "\(mimeType) has no picture to make a thumbnail from")
        case .vips(let route) where isolates(route):
            let job = DecodeJob(mode: .thumbnail, path: path, filename: "", headersOnly: false, knownSHA256: nil,
                                thumbnail: request, limits: limits)
            let answer = try isolation!.run(job, deadline: deadline, on: worker)
            if let error = answer.error { throw error }
            guard let thumbnail = answer.decodedThumbnail else { throw MediaError(.noThumbnail, "no picture was found") }
            return thumbnail
        case .vips(let route):
            try describeImage(path: path, route: route, request: request, deadline: deadline, into: &report)
        case .ffmpeg(let demuxer):
            try describeAudioVideo(path: path, demuxer: demuxer, request: request, deadline: deadline, into: &report)
        }
        if let error = report.error { throw error }
        guard let thumbnail = report.thumbnail else { throw MediaError(.noThumbnail, "no picture was found") }
        return thumbnail
    }

    // MARK: - Steps

    /// Whether this route's decoding goes to a worker process (see ``DecodeWorkerProcess``).
    private func isolates(_ route: VipsRoute) -> Bool {
        isolation != nil && !route.loaders.isDisjoint(with: DecodeWorkerProcess.unkillableLoaders)
    }

    private func regularFileSize(_ path: String) throws(MediaError) -> Int {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw MediaError(.io, "cannot read \(path): \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw MediaError(.io, "\(path) is not a regular file")
        }
        return Int(info.st_size)
    }

    /// The MIME type from the bytes: libmagic, then a look inside ZIP containers for office
    /// documents that libmagic 5.44 misses.
    private func sniff(_ path: String, size: Int) throws(MediaError) -> String {
        let magicType = ExecutableGuess.checked(try worker.magic().mimeType(ofFileAt: path), ofFileAt: path)
        if ZipDocumentSniffer.ambiguousTypes.contains(magicType),
           let office = ZipDocumentSniffer.documentType(ofFileAt: path, size: size) {
            return office
        }
        return magicType
    }

    private func describeImage(path: String, route: VipsRoute, request: ThumbnailRequest?, deadline: Deadline,
                               decode: Bool = true, into report: inout MediaReport) throws(MediaError) {
        let header = try VipsImaging.readHeader(path: path, route: route)
        guard route.loaders.contains(header.loader) else {
            throw MediaError(.unsupported, "the bytes sniffed as \(report.attachment.mimeType ?? "?") but libvips would read them with \(header.loader.isEmpty ? "no loader" : header.loader)")
        }
        // Checked from the header, before a single pixel is decoded.
        let pixels = header.width.multipliedReportingOverflow(by: header.height)
        guard !pixels.overflow, pixels.partialValue <= limits.maxPixels else {
            throw MediaError(.tooLarge, "\(header.width)×\(header.height) exceeds the \(limits.maxPixels)-pixel limit")
        }
        if let bytes = header.wholeDecodeBytes, bytes > limits.maxDecodedBytes {
            throw MediaError(.tooLarge, "decoding this \(header.width)×\(header.height) picture takes \(bytes >> 20) MiB at once, over the \(limits.maxDecodedBytes >> 20) MiB limit")
        }
        guard header.pages <= limits.maxFrames else {
            throw MediaError(.tooLarge, "\(header.pages) frames exceed the \(limits.maxFrames)-frame limit")
        }
        report.attachment.width = header.displayedWidth
        report.attachment.height = header.displayedHeight
        if route.isPaged { report.attachment.pageCount = header.pages }
        if route.isAnimatable {
            report.attachment.animated = header.pages > 1
            report.attachment.frameCount = header.pages
        }
        guard decode else { return }
        // A picture decoded whole waits for any other such decode to finish: one at a time
        // keeps the peak at one picture's bytes, however many arrive together. They wait on a
        // lane of their own (`MediaWorkerPool.run` moves the job there), not here: waiting here held every shared worker
        // while eight such uploads queued, and everyone's photos waited 10 s behind them
        // (Benchmarks/soak.py, big-png).
        let gated = (header.wholeDecodeBytes ?? 0) >= VipsImaging.wholeDecodeGateBytes
        if gated, MediaWorkerPool.isWorkerThread, !MediaWorkerPool.isWholeDecodeLane {
            throw MediaError(.needsWholeDecodeLane, "decodes on the whole-decode lane")
        }
        if gated {
            guard VipsImaging.wholeDecodes.wait(timeout: .now() + .microseconds(Int(deadline.remainingMicroseconds))) == .success else {
                throw MediaError(.timedOut, "waited past the time limit for memory to decode this picture in")
            }
        }
        defer {
            if gated {
                VipsImaging.wholeDecodes.signal()
                // glibc keeps freed heap for reuse; a burst of big decodes would otherwise leave
                // the process at its peak for good.
                VipsImaging.releaseFreeMemory()
            }
        }
        let rendered = try VipsImaging.render(path: path, route: route, header: header, request: request,
                                              previewSize: MediaProcessor.previewSize, deadline: deadline)
        apply(rendered, to: &report)
    }

    private func describeAudioVideo(path: String, demuxer: String, request: ThumbnailRequest?, deadline: Deadline,
                                    decode: Bool = true, into report: inout MediaReport) throws(MediaError) {
        let facts = try AVAnalysis.analyze(
            path: path, demuxer: demuxer, limits: limits, wantPicture: decode, request: decode ? request : nil,
            previewSize: MediaProcessor.previewSize, deadline: deadline, magic: worker.magic())
        var attachment = report.attachment
        attachment.type = facts.kind
        attachment.duration = facts.duration
        attachment.width = facts.width
        attachment.height = facts.height
        attachment.codec = facts.codec
        attachment.audioCodec = facts.audioCodec
        attachment.hasAudio = facts.kind == .video ? facts.hasAudio : nil
        if let mimeType = attachment.mimeType {
            attachment.mimeType = Self.mimeType(mimeType, refinedFor: facts.kind)
        }
        report.attachment = attachment
        if let rendered = facts.rendered { apply(rendered, to: &report) }
        if let error = facts.renderError {
            // A video none of whose frames decodes is not a video anyone can play.
            if facts.kind == .video { throw error }
            // Audio plays without its cover: a missing one matters only when a thumbnail was
            // asked for, a damaged one is reported but the file stays audio.
            if request != nil || error.code != .noThumbnail { report.error = error }
        }
    }

    private func apply(_ rendered: RenderedPicture, to report: inout MediaReport) {
        report.thumbnail = rendered.thumbnail
        report.attachment.warning = rendered.warning
        if let preview = rendered.preview {
            let landscape = preview.width >= preview.height
            report.attachment.blurhash = BlurHash.encode(
                pixels: preview.bytes, width: preview.width, height: preview.height,
                componentsX: landscape ? 4 : 3, componentsY: landscape ? 3 : 4)
        }
    }

    /// libmagic names containers, not contents: an audio-only MP4 is `video/mp4` to it.
    static func mimeType(_ sniffed: String, refinedFor kind: Attachment.Kind) -> String {
        switch (sniffed, kind) {
        case ("video/mp4", .audio), ("video/quicktime", .audio): "audio/mp4"
        case ("video/3gpp", .audio): "audio/3gpp"
        case ("video/3gpp2", .audio): "audio/3gpp2"
        case ("video/x-ms-asf", .audio): "audio/x-ms-wma"
        case ("video/webm", .audio): "audio/webm"
        case ("video/x-matroska", .audio): "audio/x-matroska"
        case ("video/ogg", .audio): "audio/ogg"
        case ("audio/ogg", .video): "video/ogg"
        case ("audio/x-m4a", .audio): "audio/mp4"
        default: sniffed
        }
    }
}

extension FileDigest {
    static let emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
}
