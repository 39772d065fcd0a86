/* rand: unpredictable bytes from the kernel (getrandom), for stream ids,
 * SCRAM nonces and salts. */
#ifndef STARLING_BASE_RAND_H
#define STARLING_BASE_RAND_H

#include <stddef.h>

/* Fills buf with n random bytes. Returns 0, or -1 if the kernel failed
 * (the caller must not fall back to anything predictable). */
int rand_bytes(void *buf, size_t n);

/* Writes a random identifier of `bits` bits (a multiple of 8, at most 512)
 * as unpadded base64url text plus a NUL into out, which must hold at least
 * bits / 6 + 2 bytes. Returns 0 or -1. */
int rand_id(char *out, size_t out_size, unsigned bits);

#endif
