/* Checks on JSON text before it is handed to cJSON (plain text scanning, so
 * model/'s Hugging Face readers and sessions/ share it). */
#ifndef QS_CORE_JSONTEXT_H
#define QS_CORE_JSONTEXT_H

#include <stddef.h>

#include "core/status.h"

/* cJSON decodes the escape \u0000 into a NUL byte that ends the C string, so
 * "0.q\u0000garbage" would be read as "0.q". Returns ST_OK when no string of
 * the n bytes at text holds that escape, else ST_ERR_FORMAT naming what (the
 * file) and the byte offset. */
Status jsontext_check_nul(const char *text, size_t n, const char *what, Err *err);

#endif
