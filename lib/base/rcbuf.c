#include "base/rcbuf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct rcbuf {
    unsigned refs;
    size_t len;
    char data[]; /* len bytes and a NUL */
};

rcbuf_t *rcbuf_new(const void *data, size_t len)
{
    if (len > SIZE_MAX - sizeof(rcbuf_t) - 1)
        return NULL;
    rcbuf_t *b = malloc(sizeof(*b) + len + 1);
    if (b == NULL)
        return NULL;
    b->refs = 1;
    b->len = len;
    if (len > 0)
        memcpy(b->data, data, len);
    b->data[len] = '\0';
    return b;
}

rcbuf_t *rcbuf_ref(rcbuf_t *b)
{
    b->refs++;
    return b;
}

void rcbuf_unref(rcbuf_t *b)
{
    if (b != NULL && --b->refs == 0)
        free(b);
}

const char *rcbuf_data(const rcbuf_t *b)
{
    return b->data;
}

size_t rcbuf_len(const rcbuf_t *b)
{
    return b->len;
}

unsigned rcbuf_refs(const rcbuf_t *b)
{
    return b->refs;
}
