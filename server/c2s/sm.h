/* sm: the bookkeeping of XEP-0198 stream management for one c2s session:
 * the counters (mod 2^32) and the stanzas sent to the client that it has
 * not acknowledged yet, oldest first. No I/O: c2s.c speaks the protocol
 * and decides what happens to what is left. */
#ifndef STARLING_C2S_SM_H
#define STARLING_C2S_SM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/rcbuf.h"

/* An unacknowledged stanza: its bytes (one reference) and whether the
 * session was its only recipient (it goes back to the router if never
 * acknowledged; a copy another resource also got, or a stanza of the
 * server's own such as a ping, does not). */
typedef struct sm_entry {
    rcbuf_t *bytes;
    bool sole;
} sm_entry_t;

typedef struct sm {
    sm_entry_t *q; /* ring: `count` entries from `head` */
    size_t head, count, cap;
    uint32_t sent;    /* stanzas sent since enable */
    uint32_t acked;   /* the client's last h */
    uint32_t in_base; /* stream_stanzas_in() when enabled */
} sm_t;

void sm_init(sm_t *sm, uint32_t in_base);
/* Releases the entries (sm_take first to keep them). */
void sm_clear(sm_t *sm);
/* Counts a stanza sent and keeps it (takes a reference to b). */
void sm_push(sm_t *sm, rcbuf_t *b, bool sole);
/* The client's <a h='h'/>: drops the entries it covers. False when h
 * acknowledges more than was sent (XEP-0198 §4 handled-count-too-high);
 * nothing changes then. An h older than the last one changes nothing. */
bool sm_ack(sm_t *sm, uint32_t h);
size_t sm_unacked(const sm_t *sm);
/* The i-th unacknowledged entry, oldest first (i < sm_unacked()). */
const sm_entry_t *sm_at(const sm_t *sm, size_t i);

#endif
