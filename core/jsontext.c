#include "core/jsontext.h"

#include <string.h>

Status jsontext_check_nul(const char *text, size_t n, const char *what, Err *err) {
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (!in_str) {
            in_str = c == '"';
            continue;
        }
        if (c == '"') {
            in_str = 0;
        } else if (c == '\\' && i + 1 < n) {
            if (text[i + 1] == 'u' && i + 6 <= n && !memcmp(text + i + 2, "0000", 4))
                return err_set(err, ST_ERR_FORMAT,
                               "%s: offset %zu: a JSON string holds \\u0000 (a NUL character), which would cut it short",
                               what, i);
            i++; /* the escaped character */
        }
    }
    return ST_OK;
}
