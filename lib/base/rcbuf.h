/* rcbuf: an immutable, reference-counted block of bytes.
 *
 * A stanza serialized once for several recipients lives in one rcbuf; each
 * connection that queues it holds a reference until the bytes are written
 * (or handed back), so the block is never copied per recipient. Only the
 * reference count changes after creation, on the loop that owns the
 * connections (not atomic: a block crossing workers will be copied into the
 * mailbox or get an atomic count then). */
#ifndef STARLING_BASE_RCBUF_H
#define STARLING_BASE_RCBUF_H

#include <stddef.h>

typedef struct rcbuf rcbuf_t;

/* A block holding a copy of data (len bytes, NUL-terminated for logging).
 * The reference count starts at 1, held by the caller. NULL when memory
 * runs out. */
rcbuf_t *rcbuf_new(const void *data, size_t len);

rcbuf_t *rcbuf_ref(rcbuf_t *b);
/* Drops one reference; the last frees the block. NULL is allowed. */
void rcbuf_unref(rcbuf_t *b);

const char *rcbuf_data(const rcbuf_t *b);
size_t rcbuf_len(const rcbuf_t *b);
/* The number of references (for tests and assertions). */
unsigned rcbuf_refs(const rcbuf_t *b);

#endif
