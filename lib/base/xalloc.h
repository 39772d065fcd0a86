/* xalloc: the server's out-of-memory policy in one place (CONVENTIONS.md,
 * Memory and lifetimes). starlingd, starlingctl and everything under
 * server/ allocate through these: a failed allocation writes one line to
 * stderr and aborts. That is safe because every size a peer controls is
 * bounded before it is allocated, so running out of memory means the host
 * is out of memory, not that a peer asked for too much.
 *
 * The client library (lib/client, and lib/ code it uses) does not use
 * these: a library returns an error and never decides to end its host
 * process. */
#ifndef STARLING_BASE_XALLOC_H
#define STARLING_BASE_XALLOC_H

#include <stddef.h>

/* Writes "out of memory (N bytes)" to stderr and aborts. It allocates
 * nothing and takes no lock, so any thread may call it. */
_Noreturn void xalloc_fail(size_t size);

/* Never return NULL. xmalloc(0) and xcalloc(n, 0) return a unique pointer
 * that must be freed; xcalloc and xreallocarray check n * size for
 * overflow (which is fatal too: such a size is a bug, not a peer). */
void *xmalloc(size_t size) __attribute__((malloc, returns_nonnull));
void *xcalloc(size_t n, size_t size) __attribute__((malloc, returns_nonnull));
void *xrealloc(void *p, size_t size) __attribute__((returns_nonnull));
void *xreallocarray(void *p, size_t n, size_t size)
    __attribute__((returns_nonnull));
char *xstrdup(const char *s) __attribute__((malloc, returns_nonnull));

#endif
