// Fixed-argument helpers around FFmpeg for Swift.
//
// Swift cannot use FFmpeg's error macros (`AVERROR(EAGAIN)`, `AVERROR_EOF`), `AV_NOPTS_VALUE`,
// or the `data`/`linesize` arrays of an AVFrame without awkward tuple rebinding; and opening a
// file safely takes an interrupt callback, which must be a C function. Those live here.
#ifndef MG_FFMPEG_SHIM_H
#define MG_FFMPEG_SHIM_H

#include <stdint.h>
#include <libavformat/avformat.h>

/// Silences FFmpeg's own logging (user-controlled text never reaches av_log as a format).
void mg_av_startup(int log_level);

int mg_averror_eof(void);
int mg_averror_eagain(void);
int mg_averror_exit(void);
int64_t mg_av_nopts_value(void);
int64_t mg_av_now_us(void);

/// Writes FFmpeg's message for an error code into `buffer`.
void mg_av_strerror(int error, char *buffer, size_t capacity);

/// A deadline the interrupt callback checks, on av_gettime_relative()'s clock.
typedef struct mg_av_deadline {
    int64_t deadline_us;
} mg_av_deadline;

/// Opens `path` with exactly the demuxer `demuxer` (e.g. "mov", "matroska"), reading only
/// through the `file` protocol and with the demuxer whitelist set to that one name, so a file
/// cannot pull in playlists, concat scripts, references to other files or network URLs.
/// `deadline` must outlive the context. Returns 0 or an AVERROR.
int mg_av_open_local(AVFormatContext **out, const char *path, const char *demuxer,
                     mg_av_deadline *deadline);

/// avformat_find_stream_info with every stream's probing decoder limited to `max_pixels`:
/// finding stream parameters decodes a few frames (and embedded cover pictures), which must not
/// allocate whatever size a hostile header announces.
int mg_av_find_stream_info(AVFormatContext *context, int64_t max_pixels);

/// Clockwise degrees (0, 90, 180, 270) a stream's display matrix turns it by for display.
int mg_av_stream_clockwise_rotation(const AVStream *stream);

/// Whether a stream is embedded cover art rather than moving pictures.
int mg_av_stream_is_attached_picture(const AVStream *stream);

/// Mean and standard deviation of the luma of a frame (sampled on a grid), used to tell a
/// black or blank frame from a picture. Returns -1 for pixel formats without an 8-bit Y plane.
int mg_av_frame_luma_stats(const AVFrame *frame, double *mean, double *stddev);

/// Converts a decoded frame to packed RGB24, scaled (with the sample aspect ratio applied) to
/// fit within max_width x max_height. `*pixels` is freed with av_free.
int mg_av_frame_to_rgb24(const AVFrame *frame, int max_width, int max_height,
                         uint8_t **pixels, int *width, int *height);

#endif
