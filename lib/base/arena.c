#include "base/arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A block header followed by its payload. Blocks form a singly linked list
 * from the newest to the oldest; only the newest has free space worth using. */
struct arena_block {
    struct arena_block *prev;
    size_t size; /* payload bytes */
    size_t used; /* payload bytes handed out */
    alignas(max_align_t) unsigned char data[];
};

struct arena {
    struct arena_block *head;
    size_t footprint;
    size_t next_size; /* payload size of the next block; doubles up to a cap */
};

enum { ARENA_MIN_BLOCK = 512, ARENA_MAX_GROWTH = 64 * 1024 };

static struct arena_block *block_new(size_t size)
{
    struct arena_block *b = malloc(sizeof(*b) + size);
    if (b == NULL)
        return NULL;
    b->prev = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

arena_t *arena_new(size_t first_block)
{
    arena_t *a = malloc(sizeof(*a));
    if (a == NULL)
        return NULL;
    a->head = NULL;
    a->footprint = sizeof(*a);
    a->next_size =
        first_block < ARENA_MIN_BLOCK ? ARENA_MIN_BLOCK : first_block;
    return a;
}

void arena_free(arena_t *a)
{
    if (a == NULL)
        return;
    struct arena_block *b = a->head;
    while (b != NULL) {
        struct arena_block *prev = b->prev;
        free(b);
        b = prev;
    }
    free(a);
}

void *arena_alloc(arena_t *a, size_t size)
{
    const size_t align = alignof(max_align_t);
    if (size > SIZE_MAX / 2)
        return NULL;
    size = (size + align - 1) & ~(align - 1);
    if (size == 0)
        size = align;
    struct arena_block *b = a->head;
    if (b == NULL || b->size - b->used < size) {
        size_t want = a->next_size;
        if (want < size)
            want = size;
        struct arena_block *nb = block_new(want);
        if (nb == NULL)
            return NULL;
        a->footprint += sizeof(*nb) + want;
        if (a->next_size < ARENA_MAX_GROWTH)
            a->next_size *= 2;
        /* A block made for one oversized request goes behind the current
         * head, so the head's remaining space stays usable. */
        if (b != NULL && want == size && b->size - b->used > 0) {
            nb->prev = b->prev;
            b->prev = nb;
            nb->used = size;
            return nb->data;
        }
        nb->prev = b;
        a->head = nb;
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += size;
    return p;
}

char *arena_strndup(arena_t *a, const char *s, size_t len)
{
    if (len == SIZE_MAX)
        return NULL;
    char *p = arena_alloc(a, len + 1);
    if (p == NULL)
        return NULL;
    if (len > 0)
        memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *arena_strdup(arena_t *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

size_t arena_footprint(const arena_t *a)
{
    return a->footprint;
}
