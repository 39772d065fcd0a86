#include "base/xalloc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Noreturn void xalloc_fail(size_t size)
{
    /* No stdio: it may allocate, and this may be any thread. */
    char msg[64];
    int n = snprintf(msg, sizeof(msg), "out of memory (%zu bytes)\n", size);
    if (n > 0)
        (void)!write(STDERR_FILENO, msg, (size_t)n);
    abort();
}

void *xmalloc(size_t size)
{
    void *p = malloc(size != 0 ? size : 1);
    if (p == NULL)
        xalloc_fail(size);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        xalloc_fail(SIZE_MAX);
    void *p = calloc(n != 0 ? n : 1, size != 0 ? size : 1);
    if (p == NULL)
        xalloc_fail(n * size);
    return p;
}

void *xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size != 0 ? size : 1);
    if (q == NULL)
        xalloc_fail(size);
    return q;
}

void *xreallocarray(void *p, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        xalloc_fail(SIZE_MAX);
    return xrealloc(p, n * size);
}

char *xstrdup(const char *s)
{
    size_t len = strlen(s) + 1;
    char *p = xmalloc(len);
    memcpy(p, s, len);
    return p;
}
