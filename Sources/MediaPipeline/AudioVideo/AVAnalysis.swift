import Foundation
import MediagateWire
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
    /// Frames decoded and dropped between a keyframe and the moment a poster is judged at: ten
    /// seconds at 30 fps, far more than any phone's keyframe interval.
    static let maxFramesForward = 300
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
        if facts.duration == nil, demuxer == "matroska" {
            facts.duration = matroskaDurationFromTail(path: path, startTime: input.context.pointee.start_time, deadline: deadline)
        }
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

    /// Bytes from the end of a Matroska file searched for its last cluster, smallest first.
    private static let tailWindows = [1 << 20, 16 << 20]
    /// Packets read from one window at most.
    private static let maxTailPackets = 20_000

    /// Matroska written live, as a browser's `MediaRecorder` writes WebM, has no Duration
    /// element and no Cues: its length is where its last cluster ends. Read from a second
    /// opening of the file, seeked by bytes into its tail (the demuxer resynchronises on the
    /// next cluster), so the first opening stays at the start for the poster. Bounded by the
    /// window, a packet count and the deadline; nil when the tail holds no whole cluster.
    private static func matroskaDurationFromTail(path: String, startTime: Int64, deadline: Deadline) -> Double? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        let size = Int64(info.st_size)
        let start = startTime == mg_av_nopts_value() ? 0 : Double(startTime) / Double(AV_TIME_BASE)
        for window in tailWindows {
            guard let tail = try? AVInput(path: path, demuxer: "matroska", deadline: deadline) else { return nil }
            let from = max(0, size - Int64(window))
            guard av_seek_frame(tail.context, -1, from, AVSEEK_FLAG_BYTE) >= 0 else { return nil }
            var end: Double?
            guard let packet = av_packet_alloc() else { return nil }
            defer {
                var owned: UnsafeMutablePointer<AVPacket>? = packet
                av_packet_free(&owned)
            }
            let streams = tail.streams
            for _ in 0..<maxTailPackets where !deadline.hasPassed {
                guard av_read_frame(tail.context, packet) >= 0 else { break }
                defer { av_packet_unref(packet) }
                let index = Int(packet.pointee.stream_index)
                let stamp = packet.pointee.pts != mg_av_nopts_value() ? packet.pointee.pts : packet.pointee.dts
                guard index < streams.count, stamp != mg_av_nopts_value() else { continue }
                let base = streams[index].pointee.time_base
                guard base.den > 0 else { continue }
                let seconds = Double(stamp + max(0, packet.pointee.duration)) * Double(base.num) / Double(base.den)
                end = max(end ?? seconds, seconds)
            }
            if let end, end > start { return end - start }
            if from == 0 { return nil }
        }
        return nil
    }

    // MARK: - Pictures

    /// A representative frame: the first one, unless it is black or blank; then the one with
    /// the most contrast of the moments at 10 %, 25 % and 50 % of the duration (a video that
    /// fades in is still dim at 10 %, so the first that is not black is not taken blindly).
    ///
    /// Seeking lands on the keyframe at or before each moment; the frames from there up to the
    /// moment are decoded and the one at the moment judged. Taking the keyframe itself would
    /// judge a video that fades in from black by a frame inside the fade, four times over.
    private static func poster(input: AVInput, stream: UnsafeMutablePointer<AVStream>, rotation: Int, maxPixels: Int,
                               request: ThumbnailRequest?, previewSize: Int, deadline: Deadline) throws(MediaError) -> RenderedPicture {
        let decoder = try AVDecoder(stream: stream, maxPixels: maxPixels)
        var best: (frame: AVFrameBox, contrast: Double)?
        let duration = self.duration(of: input, stream) ?? 0
        let positions: [Double?] = [nil] + (duration > 1 ? posterCandidates.map { $0 * duration } : [])
        for position in positions {
            let target = position.flatMap { seek(input, stream: stream, decoder: decoder, to: $0) }
            guard let frame = try decodeFrame(input, stream: stream, decoder: decoder, notBefore: target, deadline: deadline) else { continue }
            var mean = 0.0, deviation = 0.0
            guard mg_av_frame_luma_stats(frame.frame, &mean, &deviation) == 0 else {
                best = (frame, .infinity) // no Y plane to judge by: take it
                break
            }
            if best == nil || deviation > best!.contrast { best = (frame, deviation) }
            if position == nil, mean > 24, deviation > 8 { break } // it opens on a picture, not a black or flat frame
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

    /// Seeks to the keyframe at or before `seconds` into the stream; returns that moment as a
    /// timestamp in the stream's time base, or nil when the demuxer could not seek.
    private static func seek(_ input: AVInput, stream: UnsafeMutablePointer<AVStream>, decoder: AVDecoder, to seconds: Double) -> Int64? {
        let base = stream.pointee.time_base
        guard base.num > 0 else { return nil }
        var timestamp = Int64(seconds * Double(base.den) / Double(base.num))
        let start = stream.pointee.start_time
        if start != mg_av_nopts_value() { timestamp += start }
        guard av_seek_frame(input.context, stream.pointee.index, timestamp, AVSEEK_FLAG_BACKWARD) >= 0 else { return nil }
        avcodec_flush_buffers(decoder.context)
        return timestamp
    }

    /// The next decodable frame of `stream` whose timestamp is at least `notBefore` (any frame
    /// when nil), or nil at the end of the file. Frames before it are decoded and dropped, at
    /// most `maxFramesForward` of them: a video with keyframes minutes apart then yields the
    /// frame that far in, not an unbounded decode.
    private static func decodeFrame(_ input: AVInput, stream: UnsafeMutablePointer<AVStream>, decoder: AVDecoder,
                                    notBefore target: Int64? = nil, deadline: Deadline) throws(MediaError) -> AVFrameBox? {
        let frame = try AVFrameBox()
        guard let packet = av_packet_alloc() else { throw MediaError(.io, "FFmpeg: out of memory") }
        defer {
            var owned: UnsafeMutablePointer<AVPacket>? = packet
            av_packet_free(&owned)
        }
        var packetsSent = 0, framesSkipped = 0
        /// Whether `frame` (just decoded) is the one wanted; unreferences it when not.
        func wanted() -> Bool {
            let timestamp = frame.frame.pointee.best_effort_timestamp
            if let target, timestamp != mg_av_nopts_value(), timestamp < target, framesSkipped < maxFramesForward {
                framesSkipped += 1
                av_frame_unref(frame.frame)
                return false
            }
            return true
        }
        while true {
            // Every frame the decoder has ready, before it is given more.
            while avcodec_receive_frame(decoder.context, frame.frame) == 0 {
                if wanted() { return frame }
            }
            if packetsSent >= maxPacketsPerFrame + maxFramesForward { return nil }
            if deadline.hasPassed { throw MediaError(.timedOut, "decoding a video frame took longer than the time limit") }
            let status = av_read_frame(input.context, packet)
            if status == mg_averror_eof() {
                // Drain what the decoder holds; past the end the last frame is the best there is.
                avcodec_send_packet(decoder.context, nil)
                var last: AVFrameBox?
                while avcodec_receive_frame(decoder.context, frame.frame) == 0 {
                    let copy = try AVFrameBox()
                    av_frame_move_ref(copy.frame, frame.frame)
                    last = copy
                    if let target, copy.frame.pointee.best_effort_timestamp >= target { return copy }
                }
                return last
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
        }
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
