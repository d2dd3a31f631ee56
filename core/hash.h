/* 64-bit FNV-1a hashing for fingerprints (model files, calibration text). */
#ifndef QS_CORE_HASH_H
#define QS_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_SEED 0xcbf29ce484222325ull

/* Returns the FNV-1a hash of n bytes continuing from h (start with HASH_SEED). */
uint64_t hash_bytes(uint64_t h, const void *data, size_t n);

#endif
