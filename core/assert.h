/* Invariant checks whose fatal path goes through a replaceable hook, so the
 * TUI can restore the terminal before the process aborts. */
#ifndef QS_CORE_ASSERT_H
#define QS_CORE_ASSERT_H

typedef void (*FatalHook)(void);

/* Installs a hook run once before abort() on a failed ASSERT; NULL clears it. */
void assert_set_fatal_hook(FatalHook hook);

/* Runs the hook, prints the location and message to stderr, then aborts. */
_Noreturn void assert_fail(const char *expr, const char *file, int line);

#define ASSERT(cond) \
    do { if (!(cond)) assert_fail(#cond, __FILE__, __LINE__); } while (0)

#endif
