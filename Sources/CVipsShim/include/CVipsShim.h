// Fixed-argument wrappers around libvips for Swift.
//
// libvips' load, thumbnail and save entry points are variadic (`vips_thumbnail(path, &out,
// width, "height", h, NULL)`), which Swift cannot call. Each function here does one whole job
// with fixed arguments, so that the Swift side never holds a half-built VipsImage. Types in this
// header are plain C so the Swift code does not need to import libvips to use them.
#ifndef MG_VIPS_SHIM_H
#define MG_VIPS_SHIM_H

#include <stddef.h>
#include <stdint.h>

/// Starts libvips once per process, blocks every loader libvips itself marks untrusted, then
/// unblocks the few that mediagate reaches only after sniffing (SVG from a source, PDF, and
/// ImageMagick for BMP). Returns 0 on success.
int mg_vips_startup(const char *argv0, int concurrency, int cache_max_operations,
                    size_t cache_max_memory, int cache_max_files);

/// Releases libvips' per-thread buffers; call as a worker thread exits.
void mg_vips_thread_shutdown(void);

/// What the header of an image says, read without decoding pixels.
typedef struct mg_vips_header {
    int width;          ///< stored width (before EXIF orientation)
    int height;         ///< stored height of one page/frame
    int pages;          ///< frames (GIF, WebP), pages (PDF) or top-level images (HEIF)
    int orientation;    ///< EXIF orientation 1...8; 1 when absent
    int bands;
    int has_alpha;
    int bytes_per_band; ///< 1 for 8-bit, 2 for 16-bit, 4 for float
    int interlaced;     ///< 1: an interlaced (Adam7) PNG, which is decoded whole into memory
    char loader[64];    ///< nickname of the loader libvips picked, e.g. "jpegload"
} mg_vips_header;

/// Which encoder a thumbnail is written with. `MG_FORMAT_NONE` computes only the preview.
typedef enum mg_format {
    MG_FORMAT_NONE = 0,
    MG_FORMAT_JPEG = 1,
    MG_FORMAT_WEBP = 2,
    MG_FORMAT_PNG = 3,
} mg_format;

typedef struct mg_thumbnail_request {
    int width;              ///< box width
    int height;             ///< box height
    int cover;              ///< 1: fill the box and crop the centre; 0: fit inside the box
    int format;             ///< an mg_format
    int quality;            ///< 1...100 for JPEG and WebP
    int preview_size;       ///< longest side of the tiny sRGB preview; 0 for none
    int fail_on_truncated;  ///< 1: a truncated or corrupt file is an error, not a grey image
    int64_t deadline_us;    ///< g_get_monotonic_time() after which work is killed; 0 for none
    int jpeg_shrink;        ///< 2, 4 or 8: decode a JPEG file at 1/N (DCT scaling) first; 0 or 1: let libvips choose
    const char *decoded_path; ///< with jpeg_shrink > 1: also write the decoded picture, upright, as a Q90 JPEG here; NULL: don't
    int canvas_width;       ///< > 0: a GIF's logical screen; the first frame is placed on a transparent canvas this size
    int canvas_height;
} mg_thumbnail_request;

typedef struct mg_thumbnail_result {
    void *data;                 ///< encoded thumbnail (free with mg_vips_result_free)
    size_t size;
    int width;
    int height;
    unsigned char *preview;     ///< 3-band 8-bit sRGB pixels, alpha flattened onto white
    size_t preview_bytes;
    int preview_width;
    int preview_height;
    int timed_out;              ///< 1 when the deadline killed the computation
} mg_thumbnail_result;

/// Reads the header of `path`. With `from_source` the file is read through a VipsSource,
/// which gives loaders no file name to resolve other files against (used for SVG).
/// Returns 0, or -1 with `*error` set (free with mg_vips_free).
int mg_vips_read_header(const char *path, int from_source, mg_vips_header *out, char **error);

/// Reads the header of an encoded image in memory (cover art) without decoding pixels.
int mg_vips_read_header_buffer(const void *buffer, size_t length, mg_vips_header *out, char **error);

/// The loader nickname libvips would pick for an in-memory image, or "" if none.
void mg_vips_loader_for_buffer(const void *buffer, size_t length, char *nickname, size_t capacity);

/// Thumbnails a file with shrink-on-load, EXIF orientation applied, never upscaled, metadata
/// stripped; first page/frame only.
int mg_vips_thumbnail_file(const char *path, int from_source, const mg_thumbnail_request *request,
                           mg_thumbnail_result *out, char **error);

/// Thumbnails an encoded image in memory (audio cover art).
int mg_vips_thumbnail_buffer(const void *buffer, size_t length, const mg_thumbnail_request *request,
                             mg_thumbnail_result *out, char **error);

/// Thumbnails packed 8-bit RGB pixels (a decoded video frame), first rotating them clockwise
/// by 0, 90, 180 or 270 degrees.
int mg_vips_thumbnail_rgb(const unsigned char *pixels, int width, int height, int clockwise_degrees,
                          const mg_thumbnail_request *request, mg_thumbnail_result *out, char **error);

void mg_vips_result_free(mg_thumbnail_result *result);
void mg_vips_free(void *pointer);

/// Hands freed heap memory back to the kernel (glibc's malloc_trim) after a large decode.
void mg_release_free_memory(void);

/// The monotonic clock libvips' deadlines are measured on, in microseconds.
int64_t mg_vips_now_us(void);

/// Re-encodes an image before it is uploaded: EXIF orientation applied to the pixels, scaled
/// down so neither side exceeds `max_dimension` (0: any size), first page/frame only, metadata
/// (EXIF, GPS, XMP, IPTC) dropped when `strip`, written to `out_path` in the format its suffix
/// names (.jpg, .png, .webp, .heic, .avif, .tif) at `quality` where the format has one.
/// Writes the result's size to `width`/`height`. Returns 0, or -1 with `*error` set.
int mg_vips_rewrite_image(const char *path, int max_dimension, int strip, int quality, const char *out_path,
                          int *width, int *height, char **error);

#endif
