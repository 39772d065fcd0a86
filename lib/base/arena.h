/* Arena: a bump allocator whose blocks are all freed in one call.
 *
 * One arena backs one parsed element tree (and anything derived from it), so a
 * stanza is released with a single arena_free() once it has been routed. The
 * arena grows by chained blocks; nothing allocated from it is freed
 * individually. Allocation failure is reported as NULL (the library never
 * aborts); callers bound every size a peer controls before allocating. */
#ifndef STARLING_BASE_ARENA_H
#define STARLING_BASE_ARENA_H

#include <stddef.h>

typedef struct arena arena_t;

/* Creates an arena whose first block holds at least `first_block` bytes
 * (0 picks a small default). Returns NULL on allocation failure. */
arena_t *arena_new(size_t first_block);

/* Frees the arena and every allocation made from it. NULL is allowed. */
void arena_free(arena_t *a);

/* Returns `size` bytes aligned for any object, or NULL when out of memory. */
void *arena_alloc(arena_t *a, size_t size);

/* Copies `len` bytes of `s` and appends a NUL. */
char *arena_strndup(arena_t *a, const char *s, size_t len);

/* Copies a NUL-terminated string. */
char *arena_strdup(arena_t *a, const char *s);

/* Total bytes obtained from the system for this arena (for limits and tests).
 */
size_t arena_footprint(const arena_t *a);

#endif
