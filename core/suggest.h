/* "Did you mean ...?": the closest of a list of names to a mistyped one
 * (subcommands, plan keys, session actions). */
#ifndef QS_CORE_SUGGEST_H
#define QS_CORE_SUGGEST_H

/* Edit distance (insertions, deletions, substitutions, and swaps of two
 * adjacent characters, each 1) between a and b, compared case-sensitively;
 * strings longer than 63 bytes count as far from everything (returns 64). */
int suggest_distance(const char *a, const char *b);

/* Index in names[0..n) of the name closest to s, or -1 when none is within
 * max(1, strlen(s) / 3) edits (a typo, not another word). Ties go to the
 * first. names stay the caller's. */
int suggest_closest(const char *s, const char *const *names, int n);

#endif
