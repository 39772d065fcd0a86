/* hash: the string hash of Starling's chained hash tables (the router's
 * accounts, the roster cache and rosters). FNV-1a, 64 bits: keys are
 * prepared JIDs, and flooding a table needs many accounts or contacts,
 * which the operator creates or the roster limit bounds. */
#ifndef STARLING_BASE_HASH_H
#define STARLING_BASE_HASH_H

#include <stdint.h>

static inline uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

#endif
