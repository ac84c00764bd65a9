#include "CVipsShim.h"

#include <malloc.h>
#include <string.h>
#include <vips/vips.h>

// libvips keeps one error buffer for the whole process, and worker threads fail at the same
// time: each function here clears it only on its own failure, right after copying it, never on
// success, so that one file's success does not erase the message of another's failure.
static char *copy_error(void) {
    char *message = vips_error_buffer_copy();
    if (message == NULL || message[0] == '\0') {
        g_free(message);
        message = g_strdup("libvips failed without a message");
    }
    return message;
}

// libvips reports recoverable trouble (an ignored colour profile, a bad tile) as GLib
// warnings on stderr; every failure that matters reaches the caller as an error instead.
static void drop_log_message(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer user) {
    (void)domain; (void)level; (void)message; (void)user;
}

int mg_vips_startup(const char *argv0, int concurrency, int cache_max_operations,
                    size_t cache_max_memory, int cache_max_files) {
    g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO,
                      drop_log_message, NULL);
    if (VIPS_INIT(argv0)) {
        return -1;
    }
    // libvips will "load" a CSV, a matrix file or a FITS file as an image if asked; block
    // every loader it flags untrusted, then allow back only those reached after sniffing.
    vips_block_untrusted_set(TRUE);
    vips_operation_block_set("VipsForeignLoadSvgSource", FALSE);
    vips_operation_block_set("VipsForeignLoadPdfFile", FALSE);
    vips_operation_block_set("VipsForeignLoadMagickFile", FALSE);
    vips_concurrency_set(concurrency);
    vips_cache_set_max(cache_max_operations);
    vips_cache_set_max_mem(cache_max_memory);
    vips_cache_set_max_files(cache_max_files);
    return 0;
}

void mg_vips_thread_shutdown(void) { vips_thread_shutdown(); }

int64_t mg_vips_now_us(void) { return g_get_monotonic_time(); }

void mg_release_free_memory(void) { malloc_trim(0); }

void mg_vips_free(void *pointer) { g_free(pointer); }

void mg_vips_result_free(mg_thumbnail_result *result) {
    g_free(result->data);
    g_free(result->preview);
    result->data = NULL;
    result->preview = NULL;
}

static void copy_nickname(const char *class_name, char *nickname, size_t capacity) {
    nickname[0] = '\0';
    if (class_name == NULL) return;
    const char *nick = vips_nickname_find(g_type_from_name(class_name));
    g_strlcpy(nickname, nick ? nick : class_name, capacity);
}

void mg_vips_loader_for_buffer(const void *buffer, size_t length, char *nickname, size_t capacity) {
    const char *class_name = vips_foreign_find_load_buffer(buffer, length);
    copy_nickname(class_name, nickname, capacity);
    if (class_name == NULL) vips_error_clear();
}

// What a loaded (not decoded) image's header says.
static void fill_header(VipsImage *image, mg_vips_header *out) {
    out->width = vips_image_get_width(image);
    out->height = vips_image_get_page_height(image);
    out->pages = vips_image_get_n_pages(image);
    out->bands = vips_image_get_bands(image);
    out->has_alpha = vips_image_hasalpha(image);
    out->bytes_per_band = (int)vips_format_sizeof(vips_image_get_format(image));
    int interlaced = 0;
    out->interlaced = vips_image_get_typeof(image, "interlaced") && vips_image_get_int(image, "interlaced", &interlaced) == 0
        ? interlaced : 0;
    out->orientation = 1;
    int orientation = 1;
    if (vips_image_get_typeof(image, VIPS_META_ORIENTATION) &&
        vips_image_get_int(image, VIPS_META_ORIENTATION, &orientation) == 0 &&
        orientation >= 1 && orientation <= 8) {
        out->orientation = orientation;
    }
}

int mg_vips_read_header(const char *path, int from_source, mg_vips_header *out, char **error) {
    memset(out, 0, sizeof(*out));
    VipsImage *image = NULL;
    if (from_source) {
        VipsSource *source = vips_source_new_from_file(path);
        if (source == NULL) goto fail;
        image = vips_image_new_from_source(source, "", "access", VIPS_ACCESS_SEQUENTIAL, NULL);
        g_object_unref(source);
    } else {
        image = vips_image_new_from_file(path, "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    }
    if (image == NULL) goto fail;
    // The loader that read the header records its nickname on the image; asking for it here
    // saves a second pass over every loader's sniffing.
    const char *loader = NULL;
    if (vips_image_get_typeof(image, VIPS_META_LOADER) &&
        vips_image_get_string(image, VIPS_META_LOADER, &loader) == 0 && loader != NULL) {
        g_strlcpy(out->loader, loader, sizeof(out->loader));
    }
    fill_header(image, out);
    g_object_unref(image);
    return 0;
fail:
    *error = copy_error();
    vips_error_clear();
    return -1;
}

int mg_vips_read_header_buffer(const void *buffer, size_t length, mg_vips_header *out, char **error) {
    memset(out, 0, sizeof(*out));
    VipsImage *image = vips_image_new_from_buffer(buffer, length, "", "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    if (image == NULL) {
        *error = copy_error();
        vips_error_clear();
        return -1;
    }
    fill_header(image, out);
    g_object_unref(image);
    return 0;
}

// MARK: - Deadline

typedef struct deadline_watch {
    int64_t deadline_us;
    int fired;
} deadline_watch;

// Called by libvips from its worker threads while pixels are computed. Setting the kill flag
// makes the running pipeline stop with an error at its next tile.
static void on_eval(VipsImage *image, VipsProgress *progress, void *user) {
    (void)progress;
    deadline_watch *watch = user;
    if (watch->deadline_us > 0 && g_get_monotonic_time() > watch->deadline_us) {
        watch->fired = 1;
        vips_image_set_kill(image, TRUE);
    }
}

// MARK: - Finishing a thumbnail

static VipsImage *flatten_to_srgb8(VipsImage *in) {
    VipsImage *srgb = NULL, *flat = NULL, *cast = NULL;
    if (vips_colourspace(in, &srgb, VIPS_INTERPRETATION_sRGB, NULL)) return NULL;
    if (vips_image_hasalpha(srgb)) {
        VipsArrayDouble *white = vips_array_double_newv(3, 255.0, 255.0, 255.0);
        int failed = vips_flatten(srgb, &flat, "background", white, NULL);
        vips_area_unref(VIPS_AREA(white));
        g_object_unref(srgb);
        if (failed) return NULL;
    } else {
        flat = srgb;
    }
    if (vips_cast_uchar(flat, &cast, NULL)) {
        g_object_unref(flat);
        return NULL;
    }
    g_object_unref(flat);
    return cast;
}

// Computes `thumb` once into memory (under the deadline), then encodes it and derives the
// preview from the in-memory copy, so pixels are decoded a single time.
static int finish(VipsImage *thumb, const mg_thumbnail_request *request,
                  mg_thumbnail_result *out, char **error) {
    deadline_watch watch = {request->deadline_us, 0};
    VipsImage *memory = NULL, *encodable = NULL;
    int status = -1;

    vips_image_set_progress(thumb, TRUE);
    gulong handler = g_signal_connect(thumb, "eval", G_CALLBACK(on_eval), &watch);
    memory = vips_image_copy_memory(thumb);
    g_signal_handler_disconnect(thumb, handler);
    if (memory == NULL) goto done;

    out->width = vips_image_get_width(memory);
    out->height = vips_image_get_height(memory);

    if (request->format != MG_FORMAT_NONE) {
        int failed;
        void *data = NULL;
        size_t size = 0;
        if (request->format == MG_FORMAT_JPEG) {
            encodable = flatten_to_srgb8(memory);
            if (encodable == NULL) goto done;
            failed = vips_jpegsave_buffer(encodable, &data, &size, "Q", request->quality,
                                          "strip", TRUE, NULL);
        } else {
            VipsImage *srgb = NULL;
            if (vips_colourspace(memory, &srgb, VIPS_INTERPRETATION_sRGB, NULL)) goto done;
            if (vips_cast_uchar(srgb, &encodable, NULL)) { g_object_unref(srgb); goto done; }
            g_object_unref(srgb);
            if (request->format == MG_FORMAT_WEBP) {
                failed = vips_webpsave_buffer(encodable, &data, &size, "Q", request->quality,
                                              "strip", TRUE, NULL);
            } else {
                failed = vips_pngsave_buffer(encodable, &data, &size, "strip", TRUE,
                                             "compression", 6, NULL);
            }
        }
        if (failed) goto done;
        out->data = data;
        out->size = size;
    }

    if (request->preview_size > 0) {
        VipsImage *small = NULL, *flat = NULL;
        if (vips_thumbnail_image(memory, &small, request->preview_size,
                                 "height", request->preview_size, "size", VIPS_SIZE_DOWN, NULL)) goto done;
        flat = flatten_to_srgb8(small);
        g_object_unref(small);
        if (flat == NULL) goto done;
        size_t bytes = 0;
        void *pixels = vips_image_write_to_memory(flat, &bytes);
        out->preview_width = vips_image_get_width(flat);
        out->preview_height = vips_image_get_height(flat);
        g_object_unref(flat);
        if (pixels == NULL) goto done;
        out->preview = pixels;
        out->preview_bytes = bytes;
    }
    status = 0;

done:
    if (encodable) g_object_unref(encodable);
    if (memory) g_object_unref(memory);
    if (status != 0) {
        out->timed_out = watch.fired;
        *error = copy_error();
        mg_vips_result_free(out);
        vips_error_clear();
    }
    return status;
}

static VipsInteresting crop_for(const mg_thumbnail_request *request) {
    return request->cover ? VIPS_INTERESTING_CENTRE : VIPS_INTERESTING_NONE;
}

static VipsFailOn fail_on_for(const mg_thumbnail_request *request) {
    return request->fail_on_truncated ? VIPS_FAIL_ON_TRUNCATED : VIPS_FAIL_ON_NONE;
}

/// A JPEG decoded at a DCT scale the caller chose. libvips' own shrink-on-load keeps a factor
/// of two in hand for quality (12 MP to 320 px decodes at 1/4, 1000x750); the caller asks for
/// the largest scale that still covers the box, as PIL's draft mode does: 1/8 here, about
/// 40 % less time. With `decoded_path` the decoded picture is also kept (upright, Q90), so
/// that later thumbnails no larger than it need not decode the original again.
static int thumbnail_scaled_jpeg(const char *path, const mg_thumbnail_request *request,
                                 mg_thumbnail_result *out, char **error) {
    VipsImage *decoded = NULL, *thumb = NULL;
    // Random access when the picture is kept: libvips then decodes once into memory and both
    // the thumbnail and the kept copy read from there.
    int failed = request->decoded_path
        ? vips_jpegload(path, &decoded, "shrink", request->jpeg_shrink, "fail_on", fail_on_for(request), NULL)
        : vips_jpegload(path, &decoded, "shrink", request->jpeg_shrink, "fail_on", fail_on_for(request),
                        "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    if (!failed) {
        failed = vips_thumbnail_image(decoded, &thumb, request->width, "height", request->height,
                                      "size", VIPS_SIZE_DOWN, "crop", crop_for(request), NULL);
    }
    if (failed) {
        if (decoded) g_object_unref(decoded);
        *error = copy_error();
        vips_error_clear();
        return -1;
    }
    int status = finish(thumb, request, out, error);
    g_object_unref(thumb);
    if (status == 0 && request->decoded_path) {
        VipsImage *upright = NULL;
        // Best effort: the thumbnail is what was asked for; without the copy, later
        // thumbnails come from the original.
        if (vips_autorot(decoded, &upright, NULL) == 0) {
            VipsImage *srgb = flatten_to_srgb8(upright);
            if (srgb == NULL || vips_jpegsave(srgb, request->decoded_path, "Q", 90, "strip", TRUE, NULL)) {
                remove(request->decoded_path);
                vips_error_clear();
            }
            if (srgb) g_object_unref(srgb);
            g_object_unref(upright);
        } else {
            vips_error_clear();
        }
    }
    g_object_unref(decoded);
    return status;
}

/// A GIF's first frame on its logical screen. libvips (libnsgif) sizes its canvas from the
/// frames when the screen size is one it distrusts (640x480, 800x600, ...), but always keeps
/// the screen's origin; so cropping or extending at (0, 0) gives the screen the file declares.
static int thumbnail_gif_on_canvas(const char *path, const mg_thumbnail_request *request,
                                   mg_thumbnail_result *out, char **error) {
    VipsImage *frame = NULL, *alpha = NULL, *canvas = NULL, *thumb = NULL;
    int failed = vips_gifload(path, &frame, "fail_on", fail_on_for(request), NULL);
    if (!failed) {
        if (vips_image_hasalpha(frame)) {
            alpha = frame;
            g_object_ref(alpha);
        } else {
            failed = vips_bandjoin_const1(frame, &alpha, 255.0, NULL);
        }
    }
    // VIPS_EXTEND_BLACK is zero in every band: transparent, as browsers show an empty screen.
    if (!failed) failed = vips_embed(alpha, &canvas, 0, 0, request->canvas_width, request->canvas_height,
                                     "extend", VIPS_EXTEND_BLACK, NULL);
    if (!failed) failed = vips_thumbnail_image(canvas, &thumb, request->width, "height", request->height,
                                               "size", VIPS_SIZE_DOWN, "crop", crop_for(request), NULL);
    if (frame) g_object_unref(frame);
    if (alpha) g_object_unref(alpha);
    if (canvas) g_object_unref(canvas);
    if (failed) { *error = copy_error(); vips_error_clear(); return -1; }
    int status = finish(thumb, request, out, error);
    g_object_unref(thumb);
    return status;
}

int mg_vips_thumbnail_file(const char *path, int from_source, const mg_thumbnail_request *request,
                           mg_thumbnail_result *out, char **error) {
    memset(out, 0, sizeof(*out));
    VipsImage *thumb = NULL;
    int failed;
    if (request->canvas_width > 0 && request->canvas_height > 0) {
        return thumbnail_gif_on_canvas(path, request, out, error);
    } else if (from_source) {
        VipsSource *source = vips_source_new_from_file(path);
        if (source == NULL) { *error = copy_error(); return -1; }
        failed = vips_thumbnail_source(source, &thumb, request->width,
                                       "height", request->height, "size", VIPS_SIZE_DOWN,
                                       "crop", crop_for(request), "fail_on", fail_on_for(request), NULL);
        g_object_unref(source);
    } else if (request->jpeg_shrink > 1) {
        return thumbnail_scaled_jpeg(path, request, out, error);
    } else {
        failed = vips_thumbnail(path, &thumb, request->width,
                                "height", request->height, "size", VIPS_SIZE_DOWN,
                                "crop", crop_for(request), "fail_on", fail_on_for(request), NULL);
    }
    if (failed) { *error = copy_error(); vips_error_clear(); return -1; }
    int status = finish(thumb, request, out, error);
    g_object_unref(thumb);
    return status;
}

int mg_vips_thumbnail_buffer(const void *buffer, size_t length, const mg_thumbnail_request *request,
                             mg_thumbnail_result *out, char **error) {
    memset(out, 0, sizeof(*out));
    VipsImage *thumb = NULL;
    if (vips_thumbnail_buffer((void *)buffer, length, &thumb, request->width,
                              "height", request->height, "size", VIPS_SIZE_DOWN,
                              "crop", crop_for(request), "fail_on", fail_on_for(request), NULL)) {
        *error = copy_error();
        vips_error_clear();
        return -1;
    }
    int status = finish(thumb, request, out, error);
    g_object_unref(thumb);
    return status;
}

int mg_vips_thumbnail_rgb(const unsigned char *pixels, int width, int height, int clockwise_degrees,
                          const mg_thumbnail_request *request, mg_thumbnail_result *out, char **error) {
    memset(out, 0, sizeof(*out));
    VipsImage *frame = vips_image_new_from_memory_copy(pixels, (size_t)width * height * 3,
                                                       width, height, 3, VIPS_FORMAT_UCHAR);
    if (frame == NULL) { *error = copy_error(); return -1; }
    frame->Type = VIPS_INTERPRETATION_sRGB;

    VipsImage *upright = NULL;
    int failed = 0;
    switch (clockwise_degrees) {
    case 90: failed = vips_rot(frame, &upright, VIPS_ANGLE_D90, NULL); break;
    case 180: failed = vips_rot(frame, &upright, VIPS_ANGLE_D180, NULL); break;
    case 270: failed = vips_rot(frame, &upright, VIPS_ANGLE_D270, NULL); break;
    default: upright = frame; g_object_ref(upright); break;
    }
    g_object_unref(frame);
    if (failed) { *error = copy_error(); vips_error_clear(); return -1; }

    VipsImage *thumb = NULL;
    failed = vips_thumbnail_image(upright, &thumb, request->width, "height", request->height,
                                  "size", VIPS_SIZE_DOWN, "crop", crop_for(request), NULL);
    g_object_unref(upright);
    if (failed) { *error = copy_error(); vips_error_clear(); return -1; }
    int status = finish(thumb, request, out, error);
    g_object_unref(thumb);
    return status;
}

int mg_vips_rewrite_image(const char *path, int max_dimension, int strip, int quality, const char *out_path,
                          int *width, int *height, char **error) {
    VipsImage *image = NULL;
    int box = max_dimension > 0 ? max_dimension : VIPS_MAX_COORD;
    // vips_thumbnail is the one call that shrinks on load, rotates upright and never enlarges.
    if (vips_thumbnail(path, &image, box, "height", box, "size", VIPS_SIZE_DOWN,
                       "fail_on", VIPS_FAIL_ON_ERROR, NULL)) {
        *error = copy_error();
        vips_error_clear();
        return -1;
    }
    // Savers take their options after the file name: "photo.jpg[Q=90,strip]".
    const char *suffix = strrchr(out_path, '.');
    int lossy = suffix != NULL && strcmp(suffix, ".png") != 0 && strcmp(suffix, ".tif") != 0;
    char *target = lossy
        ? g_strdup_printf("%s[Q=%d%s]", out_path, quality, strip ? ",strip" : "")
        : g_strdup_printf("%s%s", out_path, strip ? "[strip]" : "");
    int failed = vips_image_write_to_file(image, target, NULL);
    g_free(target);
    *width = vips_image_get_width(image);
    *height = vips_image_get_height(image);
    g_object_unref(image);
    if (failed) {
        *error = copy_error();
        vips_error_clear();
        return -1;
    }
    return 0;
}
