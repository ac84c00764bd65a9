#ifndef MEDIAGATE_CCURLSHIM_H
#define MEDIAGATE_CCURLSHIM_H

// Fixed-argument wrappers around libcurl's variadic curl_easy_setopt/curl_easy_getinfo,
// which Swift cannot call. One wrapper per argument type, so the compiler checks what is passed.

#include <curl/curl.h>

typedef size_t (*mg_curl_data_callback)(char *data, size_t size, size_t count, void *context);
typedef int (*mg_curl_progress_callback)(void *context, curl_off_t download_total, curl_off_t download_now,
                                         curl_off_t upload_total, curl_off_t upload_now);

CURLcode mg_curl_set_long(CURL *handle, CURLoption option, long value);
CURLcode mg_curl_set_offset(CURL *handle, CURLoption option, curl_off_t value);
/// Strings (copied by libcurl), header lists and callback contexts (not copied: keep them alive).
CURLcode mg_curl_set_pointer(CURL *handle, CURLoption option, const void *value);
/// CURLOPT_WRITEFUNCTION, CURLOPT_HEADERFUNCTION or CURLOPT_READFUNCTION.
CURLcode mg_curl_set_data_callback(CURL *handle, CURLoption option, mg_curl_data_callback callback);
/// CURLOPT_XFERINFOFUNCTION; also turns progress reporting on.
CURLcode mg_curl_set_progress_callback(CURL *handle, mg_curl_progress_callback callback);
CURLcode mg_curl_get_long(CURL *handle, CURLINFO info, long *value);

#endif
