/* Crash-safe file replacement, written once for every writer of the tree
 * (GGUF, stats, quantized models, evaluation caches, plans, sessions).
 *
 * afile_open creates a fresh temporary "<path>.tmp.<pid>.<6 random chars>" in
 * the destination directory with O_CREAT|O_EXCL|O_NOFOLLOW (never through a
 * planted symlink, never shared with another writer of the same path), removes
 * the temporaries that dead processes of this user left for the same path,
 * afile_write buffers into it, and afile_commit flushes, fsyncs, closes,
 * renames it over path and fsyncs the directory. A kill at any instant leaves
 * path either absent, the old file or the complete new one; a full disk is
 * reported by name ("the disk is full (ENOSPC)").
 *
 * Fault injection for crash tests: QS_FAULT_AT="STAGE[:N]" kills the process
 * with SIGKILL (or, for STAGE "enospc-write", fails the write with ENOSPC) at
 * the N-th (default 1st) time any AtomicFile in the process reaches STAGE:
 * before-write, after-write, before-fsync, after-fsync, before-rename,
 * after-rename, after-dirsync. Tests only; read at every stage. */
#ifndef QS_CORE_ATOMICFILE_H
#define QS_CORE_ATOMICFILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct AtomicFile {
    char *path;          /* owned copy of the final name */
    char *tmp;           /* owned: the temporary beside it; NULL once gone */
    int fd;              /* the temporary's descriptor; -1 once closed */
    unsigned char *buf;  /* (cap) owned write buffer */
    size_t len, cap;     /* bytes buffered, buffer size */
    uint64_t written;    /* bytes handed to afile_write so far */
    int keep_backup;     /* set before commit: the replaced file stays as "<path>.bak" */
} AtomicFile;

/* Creates the temporary for path (see above) and starts *af on it. On error
 * *af holds nothing to release and err names path and the reason. */
Status afile_open(AtomicFile *af, const char *path, Err *err);

/* Appends n bytes. On error (ENOSPC named as a full disk) the temporary stays
 * until afile_abort; later writes keep failing. */
Status afile_write(AtomicFile *af, const void *p, size_t n, Err *err);

/* afile_write of printf-style text, for line-oriented files: a line is at
 * most 1023 bytes (longer output is cut there). */
Status afile_printf(AtomicFile *af, Err *err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Flushes, fsyncs and closes the temporary, keeps the current file as
 * "<path>.bak" when keep_backup is set (a hard link, else an fsynced copy),
 * renames the temporary over path and fsyncs the directory. Releases *af
 * whatever the outcome; on error the temporary is removed and path untouched. */
Status afile_commit(AtomicFile *af, Err *err);

/* Removes the temporary and releases *af; no-op on a zeroed, committed or
 * aborted AtomicFile. */
void afile_abort(AtomicFile *af);

/* fsyncs the directory holding path, so a rename into it is durable (for
 * files put in place by a rename of their own, such as calibration's H);
 * file systems that refuse are ignored. */
void afile_sync_dir(const char *path);

/* Replaces path with the n bytes at p through afile_open/write/commit. */
Status afile_save(const char *path, const void *p, size_t n, Err *err);

/* Makes dir (mode 0700 when created) and checks it is a real directory owned
 * by this user and writable by no one else, so a cache directory in a shared
 * place such as /tmp cannot be pre-planted by another user. */
Status afile_private_dir(const char *dir, Err *err);

/* An exclusive advisory lock on "<path>.lock" (created 0600 when missing),
 * for a cache entry that two processes could compute at once: the second
 * waits, then finds the first one's file. Returns the lock's descriptor in
 * *fd (release with afile_unlock), or an error naming the lock file. With
 * wait = 0 a held lock fails with ST_ERR_STATE at once. */
Status afile_lock(const char *path, int wait, int *fd, Err *err);

/* Releases a lock from afile_lock (fd < 0: no-op). The lock file stays. */
void afile_unlock(int fd);

#endif
