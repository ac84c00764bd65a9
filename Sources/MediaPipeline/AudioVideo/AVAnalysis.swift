import Foundation
internal import CFFmpeg
internal import CFFmpegShim

/// What FFmpeg found in an audio or video file.
struct AVFacts: Sendable {
    var kind: Attachment.Kind
    var duration: Double?
    var width: Int?
    var height: Int?
    var codec: String?
    var audioCodec: String?
    var hasAudio: Bool
    var rendered: RenderedPicture?
    /// Why no picture was rendered though one was wanted.
    var renderError: MediaError?
}

/// Probes audio and video with FFmpeg and picks their poster or cover picture.
enum AVAnalysis {
    /// Packets read while looking for one decodable frame before giving up.
    private static let maxPacketsPerFrame = 600
    /// Later positions, as fractions of the duration, tried when the opening frame is blank.
    private static let posterCandidates: [Double] = [0.1, 0.25, 0.5]

    static func analyze(path: String, demuxer: String, limits: MediaLimits, wantPicture: Bool,
                        request: ThumbnailRequest?, previewSize: Int, deadline: Deadline,
                        magic: MagicCookie) throws(MediaError) -> AVFacts {
        let input = try AVInput(path: path, demuxer: demuxer, deadline: deadline)
        let status = mg_av_find_stream_info(input.context, Int64(limits.maxPixels))
        guard status >= 0 else { throw AVLibrary.error(status, while: "reading stream information", deadline: deadline) }

        let streams = input.streams
        let video = streams
            .filter { $0.pointee.codecpar.pointee.codec_type == AVMEDIA_TYPE_VIDEO && mg_av_stream_is_attached_picture($0) == 0 }
            .max { pixelCount($0) < pixelCount($1) }
        let audio = streams.first { $0.pointee.codecpar.pointee.codec_type == AVMEDIA_TYPE_AUDIO }
        let cover = streams.first { mg_av_stream_is_attached_picture($0) != 0 && $0.pointee.attached_pic.size > 0 }

        guard video != nil || audio != nil else {
            throw MediaError(.unsupported, "no audio or video stream in the \(demuxer) container")
        }
        var facts = AVFacts(kind: video != nil ? .video : .audio, hasAudio: audio != nil)
        facts.duration = duration(of: input, video ?? audio!)
        if let audio { facts.audioCodec = codecName(audio) }

        if let video {
            let parameters = video.pointee.codecpar.pointee
            let rotation = Int(mg_av_stream_clockwise_rotation(video))
            var width = Int(parameters.width)
            let height = Int(parameters.height)
            guard width > 0, height > 0 else { throw MediaError(.corrupt, "the video stream has no size") }
            guard width * height <= limits.maxPixels else {
                throw MediaError(.tooLarge, "a \(width)×\(height) video exceeds the \(limits.maxPixels)-pixel limit")
            }
            let aspect = video.pointee.sample_aspect_ratio.num > 0 ? video.pointee.sample_aspect_ratio : parameters.sample_aspect_ratio
            if aspect.num > 0, aspect.den > 0, aspect.num != aspect.den {
                width = Int((Double(width) * Double(aspect.num) / Double(aspect.den)).rounded())
            }
            let turned = rotation == 90 || rotation == 270
            facts.width = turned ? height : width
            facts.height = turned ? width : height
            facts.codec = codecName(video)
            if wantPicture {
                do {
                    facts.rendered = try poster(input: input, stream: video, rotation: rotation, maxPixels: limits.maxPixels, request: request,
                                                previewSize: previewSize, deadline: deadline)
                } catch {
                    facts.renderError = error
                }
            }
        } else {
            facts.codec = facts.audioCodec
            facts.audioCodec = nil
            if wantPicture {
                if let cover {
                    do {
                        facts.rendered = try coverArt(cover, request: request, previewSize: previewSize,
                                                      maxPixels: limits.maxPixels, deadline: deadline, magic: magic)
                    } catch {
                        facts.renderError = error
                    }
                } else {
                    facts.renderError = MediaError(.noThumbnail, "the audio has no embedded cover art")
                }
            }
        }
        return facts
    }

    // MARK: - Facts

    private static func pixelCount(_ stream: UnsafeMutablePointer<AVStream>) -> Int {
        Int(stream.pointee.codecpar.pointee.width) * Int(stream.pointee.codecpar.pointee.height)
    }

    private static func codecName(_ stream: UnsafeMutablePointer<AVStream>) -> String {
        String(cString: avcodec_get_name(stream.pointee.codecpar.pointee.codec_id))
    }

    private static func duration(of input: AVInput, _ stream: UnsafeMutablePointer<AVStream>) -> Double? {
        let containerDuration = input.context.pointee.duration
        if containerDuration != mg_av_nopts_value(), containerDuration > 0 {
            return Double(containerDuration) / Double(AV_TIME_BASE)
        }
        let streamDuration = stream.pointee.duration
        let base = stream.pointee.time_base
        guard streamDuration != mg_av_nopts_value(), streamDuration > 0, base.den > 0 else { return nil }
        return Double(streamDuration) * Double(base.num) / Double(base.den)
    }

    // MARK: - Pictures

    /// A representative frame: the first one, unless it is black or blank and a later keyframe
    /// (at 10 %, 25 %, 50 % of the duration) has a picture.
    private static func poster(input: AVInput, stream: UnsafeMutablePointer<AVStream>, rotation: Int, maxPixels: Int,
                               request: ThumbnailRequest?, previewSize: Int, deadline: Deadline) throws(MediaError) -> RenderedPicture {
        let decoder = try AVDecoder(stream: stream, maxPixels: maxPixels)
        var best: (frame: AVFrameBox, contrast: Double)?
        let duration = self.duration(of: input, stream) ?? 0
        let positions: [Double?] = [nil] + (duration > 1 ? posterCandidates.map { $0 * duration } : [])
        for position in positions {
            if let position { seek(input, stream: stream, decoder: decoder, to: position) }
            guard let frame = try decodeFrame(input, stream: stream, decoder: decoder, deadline: deadline) else { continue }
            var mean = 0.0, deviation = 0.0
            guard mg_av_frame_luma_stats(frame.frame, &mean, &deviation) == 0 else {
                best = (frame, .infinity) // no Y plane to judge by: take it
                break
            }
            if best == nil || deviation > best!.contrast { best = (frame, deviation) }
            if mean > 24, deviation > 8 { break } // a picture, not a black or flat frame
        }
        guard let chosen = best?.frame else { throw MediaError(.corrupt, "no video frame could be decoded") }

        // Scale in FFmpeg to twice the box, then let libvips make the final, sharper reduction.
        let side = request.map { 2 * max($0.width, $0.height) } ?? 256
        var pixels: UnsafeMutablePointer<UInt8>?
        var width: Int32 = 0, height: Int32 = 0
        let status = mg_av_frame_to_rgb24(chosen.frame, Int32(side), Int32(side), &pixels, &width, &height)
        guard status == 0, let pixels else { throw AVLibrary.error(status, while: "converting the frame") }
        defer { av_free(pixels) }
        return try VipsImaging.render(rgb: pixels, width: Int(width), height: Int(height), clockwiseDegrees: rotation,
                                      request: request, previewSize: previewSize, deadline: deadline)
    }

    private static func seek(_ input: AVInput, stream: UnsafeMutablePointer<AVStream>, decoder: AVDecoder, to seconds: Double) {
        let base = stream.pointee.time_base
        guard base.num > 0 else { return }
        var timestamp = Int64(seconds * Double(base.den) / Double(base.num))
        let start = stream.pointee.start_time
        if start != mg_av_nopts_value() { timestamp += start }
        if av_seek_frame(input.context, stream.pointee.index, timestamp, AVSEEK_FLAG_BACKWARD) >= 0 {
            avcodec_flush_buffers(decoder.context)
        }
    }

    /// The next decodable frame of `stream`, or nil at the end of the file.
    private static func decodeFrame(_ input: AVInput, stream: UnsafeMutablePointer<AVStream>, decoder: AVDecoder,
                                    deadline: Deadline) throws(MediaError) -> AVFrameBox? {
        let frame = try AVFrameBox()
        guard let packet = av_packet_alloc() else { throw MediaError(.io, "FFmpeg: out of memory") }
        defer {
            var owned: UnsafeMutablePointer<AVPacket>? = packet
            av_packet_free(&owned)
        }
        var packetsSent = 0
        while packetsSent < maxPacketsPerFrame {
            if deadline.hasPassed { throw MediaError(.timedOut, "decoding a video frame took longer than the time limit") }
            let status = av_read_frame(input.context, packet)
            if status == mg_averror_eof() {
                avcodec_send_packet(decoder.context, nil) // drain what the decoder holds
                return avcodec_receive_frame(decoder.context, frame.frame) == 0 ? frame : nil
            }
            if status < 0 { throw AVLibrary.error(status, while: "reading a packet", deadline: deadline) }
            guard packet.pointee.stream_index == stream.pointee.index else {
                av_packet_unref(packet)
                continue
            }
            packetsSent += 1
            let sent = avcodec_send_packet(decoder.context, packet)
            av_packet_unref(packet)
            if sent < 0, sent != mg_averror_eagain() { continue } // a damaged packet: try the next
            if avcodec_receive_frame(decoder.context, frame.frame) == 0 { return frame }
        }
        return nil
    }

    /// The picture embedded in an audio file, if it is a JPEG, PNG, WebP or GIF.
    private static func coverArt(_ stream: UnsafeMutablePointer<AVStream>, request: ThumbnailRequest?, previewSize: Int,
                                 maxPixels: Int, deadline: Deadline, magic: MagicCookie) throws(MediaError) -> RenderedPicture {
        let packet = stream.pointee.attached_pic
        let bytes = UnsafeRawBufferPointer(start: packet.data, count: Int(packet.size))
        let allowed: [String: String] = [
            "image/jpeg": "jpegload_buffer", "image/png": "pngload_buffer",
            "image/webp": "webpload_buffer", "image/gif": "gifload_buffer",
        ]
        guard let type = magic.mimeType(of: bytes), let loader = allowed[type] else {
            throw MediaError(.unsupported, "the embedded cover art is not a JPEG, PNG, WebP or GIF")
        }
        guard try VipsImaging.loader(forEncoded: bytes) == loader else {
            throw MediaError(.corrupt, "the embedded cover art does not decode as \(type)")
        }
        // The same header-first pixel limit as for image files: cover art is attacker-chosen too.
        guard try VipsImaging.pixelCount(ofEncoded: bytes) <= maxPixels else {
            throw MediaError(.tooLarge, "the embedded cover art exceeds the \(maxPixels)-pixel limit")
        }
        return try VipsImaging.render(encoded: bytes, request: request, previewSize: previewSize, deadline: deadline)
    }
}
