/* Seconds as doubles for timing: wall (monotonic) and CPU of the whole process. */
#ifndef QS_CORE_CLOCK_H
#define QS_CORE_CLOCK_H

/* Returns monotonic wall-clock seconds since an arbitrary fixed point; only
 * differences between two calls mean anything. */
double clock_now(void);

/* Returns CPU seconds (user + system) used so far by the whole process, every
 * thread included: on a shared, loaded machine wall time mostly measures the
 * neighbours, CPU time the work. */
double clock_cpu_seconds(void);

#endif
