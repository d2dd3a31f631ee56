#include "core/clock.h"

#include <time.h>

static double clock_read(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double clock_now(void) { return clock_read(CLOCK_MONOTONIC); }

double clock_cpu_seconds(void) { return clock_read(CLOCK_PROCESS_CPUTIME_ID); }
