#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const status_messages[] = {
#define QS_X_MSG(name, msg) msg,
    QS_STATUS_TABLE(QS_X_MSG)
#undef QS_X_MSG
};

const char *status_message(Status s) {
    if ((int)s < 0 || s >= ST_COUNT_) return "unknown status";
    return status_messages[s];
}

void err_init(Err *err) {
    if (!err) return;
    err->code = ST_OK;
    err->detail[0] = '\0';
}

Status err_set(Err *err, Status code, const char *fmt, ...) {
    if (!err) return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->detail, sizeof err->detail, fmt, ap);
    va_end(ap);
    return code;
}

Status err_wrap(Err *err, const char *fmt, ...) {
    if (!err) return ST_OK;
    char prefix[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[sizeof err->detail];
    memcpy(old, err->detail, sizeof old);
    snprintf(err->detail, sizeof err->detail, "%s: %s", prefix, old);
    return err->code;
}
