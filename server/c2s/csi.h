/* csi: XEP-0352 client state indication for one c2s session — which
 * stanzas an inactive client gets at once, which wait, and the waiting
 * ones collapsed (the latest presence of each sender, the latest state of
 * each PEP item). No I/O: c2s.c
 * holds and flushes. */
#ifndef STARLING_C2S_CSI_H
#define STARLING_C2S_CSI_H

#include <stdbool.h>
#include <stddef.h>

#include "base/rcbuf.h"
#include "xml/xml.h"

typedef enum csi_class {
    CSI_URGENT, /* now (and what waits goes first): messages with a body,
                   IQs, subscriptions, errors, anything not known */
    CSI_HOLD,   /* until the client is active: presence, PEP events */
    CSI_DROP,   /* never while inactive: chat states alone (XEP-0085) */
} csi_class_t;

/* How a stanza for an inactive client is treated. */
csi_class_t csi_classify(const xml_node_t *el);

typedef struct csi_entry {
    rcbuf_t *bytes;
    bool sole;
    char *key; /* what a newer one replaces it by (csi.c hold_key) or NULL */
} csi_entry_t;

typedef struct csi {
    bool inactive;
    csi_entry_t *held;
    size_t count, cap;
} csi_t;

/* Keeps a stanza (takes a reference to b); a presence replaces the one
 * waiting from the same sender, a PEP event with one item the one waiting
 * for the same sender, node and item id; the newer goes at the end. */
void csi_hold(csi_t *c, const xml_node_t *el, rcbuf_t *b, bool sole);
/* Hands the waiting stanzas to the caller in order (*count of them; free
 * with csi_entries_free) and empties the queue. */
csi_entry_t *csi_take(csi_t *c, size_t *count);
void csi_entries_free(csi_entry_t *v, size_t count);
void csi_clear(csi_t *c);

#endif
