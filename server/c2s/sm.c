/* XEP-0198 counters and the unacknowledged queue (sm.h). */
#include "c2s/sm.h"

#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"

void sm_init(sm_t *sm, uint32_t in_base)
{
    memset(sm, 0, sizeof(*sm));
    sm->in_base = in_base;
}

void sm_clear(sm_t *sm)
{
    for (size_t i = 0; i < sm->count; i++)
        rcbuf_unref(sm->q[(sm->head + i) % sm->cap].bytes);
    free(sm->q);
    sm->q = NULL;
    sm->head = sm->count = sm->cap = 0;
}

void sm_push(sm_t *sm, rcbuf_t *b, bool sole)
{
    if (sm->count == sm->cap) {
        size_t cap = sm->cap != 0 ? sm->cap * 2 : 16;
        sm_entry_t *q = xreallocarray(NULL, cap, sizeof(*q));
        for (size_t i = 0; i < sm->count; i++)
            q[i] = sm->q[(sm->head + i) % sm->cap];
        free(sm->q);
        sm->q = q;
        sm->cap = cap;
        sm->head = 0;
    }
    rcbuf_ref(b);
    sm->q[(sm->head + sm->count) % sm->cap] = (sm_entry_t){b, sole};
    sm->count++;
    sm->sent++;
}

bool sm_ack(sm_t *sm, uint32_t h)
{
    /* Both counters wrap at 2^32 (XEP-0198 §5): compare distances. */
    uint32_t newly = h - sm->acked;
    if (newly > sm->count) {
        /* Either an <a/> older than the last one (a small step back:
         * nothing to do), or more than was ever sent. */
        return (uint32_t)(sm->acked - h) < 0x80000000u;
    }
    for (uint32_t i = 0; i < newly; i++) {
        rcbuf_unref(sm->q[sm->head].bytes);
        sm->head = (sm->head + 1) % sm->cap;
        sm->count--;
    }
    sm->acked = h;
    return true;
}

size_t sm_unacked(const sm_t *sm)
{
    return sm->count;
}

const sm_entry_t *sm_at(const sm_t *sm, size_t i)
{
    return &sm->q[(sm->head + i) % sm->cap];
}
