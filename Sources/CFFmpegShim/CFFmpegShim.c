#include "CFFmpegShim.h"

#include <math.h>
#include <libavutil/display.h>
#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>
#include <libavutil/time.h>
#include <libswscale/swscale.h>

void mg_av_startup(int log_level) { av_log_set_level(log_level); }

int mg_averror_eof(void) { return AVERROR_EOF; }
int mg_averror_eagain(void) { return AVERROR(EAGAIN); }
int mg_averror_exit(void) { return AVERROR_EXIT; }
int64_t mg_av_nopts_value(void) { return AV_NOPTS_VALUE; }
int64_t mg_av_now_us(void) { return av_gettime_relative(); }

void mg_av_strerror(int error, char *buffer, size_t capacity) {
    if (av_strerror(error, buffer, capacity) < 0) {
        snprintf(buffer, capacity, "FFmpeg error %d", error);
    }
}

// FFmpeg calls this during blocking I/O and between packets; non-zero aborts with AVERROR_EXIT.
static int interrupt_when_late(void *opaque) {
    const mg_av_deadline *deadline = opaque;
    return deadline->deadline_us > 0 && av_gettime_relative() > deadline->deadline_us;
}

int mg_av_open_local(AVFormatContext **out, const char *path, const char *demuxer,
                     mg_av_deadline *deadline) {
    const AVInputFormat *format = av_find_input_format(demuxer);
    if (format == NULL) return AVERROR_DEMUXER_NOT_FOUND;

    AVFormatContext *context = avformat_alloc_context();
    if (context == NULL) return AVERROR(ENOMEM);
    context->interrupt_callback.callback = interrupt_when_late;
    context->interrupt_callback.opaque = deadline;

    AVDictionary *options = NULL;
    av_dict_set(&options, "protocol_whitelist", "file", 0);
    av_dict_set(&options, "format_whitelist", demuxer, 0);
    // mov: never follow data references to other files.
    av_dict_set(&options, "enable_drefs", "0", 0);
    av_dict_set(&options, "use_absolute_path", "0", 0);
    int status = avformat_open_input(&context, path, format, &options);
    av_dict_free(&options);
    if (status < 0) return status; // avformat_open_input frees the context on failure
    *out = context;
    return 0;
}

int mg_av_find_stream_info(AVFormatContext *context, int64_t max_pixels) {
    unsigned count = context->nb_streams;
    AVDictionary **options = count ? av_calloc(count, sizeof(*options)) : NULL;
    if (count && options == NULL) return AVERROR(ENOMEM);
    char value[32];
    snprintf(value, sizeof(value), "%lld", (long long)max_pixels);
    for (unsigned i = 0; i < count; i++) av_dict_set(&options[i], "max_pixels", value, 0);
    int status = avformat_find_stream_info(context, options);
    for (unsigned i = 0; i < count; i++) av_dict_free(&options[i]);
    av_free(options);
    return status;
}

int mg_av_stream_clockwise_rotation(const AVStream *stream) {
    const int32_t *matrix =
        (const int32_t *)av_stream_get_side_data(stream, AV_PKT_DATA_DISPLAYMATRIX, NULL);
    if (matrix == NULL) return 0;
    double counterclockwise = av_display_rotation_get(matrix);
    if (isnan(counterclockwise)) return 0;
    // Same convention as the ffmpeg tool's autorotate: theta = -rotation, in [0, 360).
    long theta = lround(-counterclockwise);
    theta %= 360;
    if (theta < 0) theta += 360;
    // Snap to the nearest quarter turn.
    return (int)(((theta + 45) / 90) * 90 % 360);
}

int mg_av_stream_is_attached_picture(const AVStream *stream) {
    return (stream->disposition & AV_DISPOSITION_ATTACHED_PIC) != 0;
}

int mg_av_frame_luma_stats(const AVFrame *frame, double *mean, double *stddev) {
    const AVPixFmtDescriptor *descriptor = av_pix_fmt_desc_get(frame->format);
    if (descriptor == NULL || (descriptor->flags & AV_PIX_FMT_FLAG_RGB) ||
        descriptor->comp[0].depth != 8 || descriptor->comp[0].plane != 0 ||
        frame->width <= 0 || frame->height <= 0) {
        return -1;
    }
    const int step_x = frame->width / 64 > 0 ? frame->width / 64 : 1;
    const int step_y = frame->height / 64 > 0 ? frame->height / 64 : 1;
    const int pixel_step = descriptor->comp[0].step;
    double sum = 0, sum_sq = 0;
    long count = 0;
    for (int y = 0; y < frame->height; y += step_y) {
        const uint8_t *row = frame->data[0] + (ptrdiff_t)y * frame->linesize[0];
        for (int x = 0; x < frame->width; x += step_x) {
            double value = row[x * pixel_step + descriptor->comp[0].offset];
            sum += value;
            sum_sq += value * value;
            count++;
        }
    }
    *mean = sum / count;
    double variance = sum_sq / count - (*mean) * (*mean);
    *stddev = variance > 0 ? sqrt(variance) : 0;
    return 0;
}

int mg_av_frame_to_rgb24(const AVFrame *frame, int max_width, int max_height,
                         uint8_t **pixels, int *width, int *height) {
    double display_width = frame->width;
    if (frame->sample_aspect_ratio.num > 0 && frame->sample_aspect_ratio.den > 0) {
        display_width = frame->width * av_q2d(frame->sample_aspect_ratio);
    }
    double scale = fmin(1.0, fmin(max_width / display_width, (double)max_height / frame->height));
    int out_width = (int)lround(display_width * scale);
    int out_height = (int)lround(frame->height * scale);
    if (out_width < 1) out_width = 1;
    if (out_height < 1) out_height = 1;

    struct SwsContext *sws = sws_getContext(frame->width, frame->height, frame->format,
                                            out_width, out_height, AV_PIX_FMT_RGB24,
                                            SWS_BICUBIC, NULL, NULL, NULL);
    if (sws == NULL) return AVERROR(EINVAL);
    int stride = out_width * 3;
    uint8_t *buffer = av_malloc((size_t)stride * out_height);
    if (buffer == NULL) { sws_freeContext(sws); return AVERROR(ENOMEM); }
    uint8_t *planes[4] = {buffer, NULL, NULL, NULL};
    int strides[4] = {stride, 0, 0, 0};
    sws_scale(sws, (const uint8_t *const *)frame->data, frame->linesize, 0, frame->height,
              planes, strides);
    sws_freeContext(sws);
    *pixels = buffer;
    *width = out_width;
    *height = out_height;
    return 0;
}
