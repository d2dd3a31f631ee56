/* Status codes for library code: one X-macro table gives the enum and the
 * messages, so a caller can always print "what kind" plus a detail string. */
#ifndef QS_CORE_STATUS_H
#define QS_CORE_STATUS_H

#include <stddef.h>

#define QS_STATUS_TABLE(X)                                   \
    X(ST_OK, "ok")                                           \
    X(ST_ERR_IO, "i/o error")                                \
    X(ST_ERR_NOMEM, "out of memory")                         \
    X(ST_ERR_FORMAT, "malformed file")                       \
    X(ST_ERR_UNSUPPORTED, "unsupported")                     \
    X(ST_ERR_ARG, "invalid argument")                        \
    X(ST_ERR_RANGE, "value out of range")                    \
    X(ST_ERR_MISMATCH, "mismatch")                           \
    X(ST_ERR_CANCELLED, "cancelled")                         \
    X(ST_ERR_STATE, "invalid state")                         \
    X(ST_ERR_NUMERIC, "numerical failure")

typedef enum {
#define QS_X_ENUM(name, msg) name,
    QS_STATUS_TABLE(QS_X_ENUM)
#undef QS_X_ENUM
    ST_COUNT_
} Status;

/* A status plus a formatted detail ("model.gguf: tensor 'x' offset 123 past EOF").
 * Embedded by callers; err_init zeroes it. */
typedef struct Err {
    Status code;
    char detail[512];
} Err;

/* Returns the static message for a status (never NULL; owned by the table). */
const char *status_message(Status s);

/* Resets *err to ST_OK with an empty detail. err may be NULL (no-op). */
void err_init(Err *err);

/* Records code and a printf-style detail in *err (err may be NULL) and
 * returns code, so callers can write `return err_set(err, ST_ERR_IO, "...")`. */
Status err_set(Err *err, Status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends a printf-style context to err->detail ("ctx: old detail"); returns err->code. */
Status err_wrap(Err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
