/* buf: a growable byte buffer (for serializing, and for bytes in flight).
 * Functions return 0, or -1 when memory runs out (the buffer is then left
 * as it was). */
#ifndef STARLING_BASE_BUF_H
#define STARLING_BASE_BUF_H

#include <stddef.h>

typedef struct buf {
    char *data; /* NUL-terminated whenever len > 0 or data != NULL */
    size_t len;
    size_t cap;
} buf_t;

#define BUF_INIT                                                               \
    {                                                                          \
        NULL, 0, 0                                                             \
    }

int buf_reserve(buf_t *b, size_t extra);
int buf_append(buf_t *b, const void *data, size_t len);
int buf_append_str(buf_t *b, const char *s);
/* Removes the first n bytes (n <= len). */
void buf_consume(buf_t *b, size_t n);
void buf_reset(buf_t *b); /* len = 0, keeps the memory */
void buf_free(buf_t *b);  /* releases the memory */

#endif
