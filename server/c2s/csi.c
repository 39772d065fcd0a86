/* XEP-0352 classification and the queue of an inactive client (csi.h). */
#include "c2s/csi.h"

#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"

#define NS_CHATSTATES "http://jabber.org/protocol/chatstates"
#define NS_PUBSUB_EV  "http://jabber.org/protocol/pubsub#event"

static bool is(const char *a, const char *b)
{
    return a != NULL && strcmp(a, b) == 0;
}

csi_class_t csi_classify(const xml_node_t *el)
{
    const char *type = xml_element_attr(el, NULL, "type");
    if (strcmp(el->name, "presence") == 0)
        return type == NULL || is(type, "unavailable") ? CSI_HOLD : CSI_URGENT;
    if (strcmp(el->name, "message") != 0 || is(type, "error"))
        return CSI_URGENT;
    bool chatstate = false, event = false;
    for (const xml_node_t *c = el->children; c != NULL; c = c->next) {
        if (c->kind != XML_NODE_ELEMENT)
            continue;
        if (is(c->ns, NS_CHATSTATES))
            chatstate = true;
        else if (is(c->ns, NS_PUBSUB_EV))
            event = true;
        else if (!(is(c->ns, XML_NS_CLIENT) && strcmp(c->name, "thread") == 0))
            return CSI_URGENT; /* a body, a subject, a receipt, anything */
    }
    if (event)
        return CSI_HOLD;
    return chatstate ? CSI_DROP : CSI_URGENT;
}

void csi_hold(csi_t *c, const xml_node_t *el, rcbuf_t *b, bool sole)
{
    const char *from = strcmp(el->name, "presence") == 0
                           ? xml_element_attr(el, NULL, "from")
                           : NULL;
    if (from != NULL)
        for (size_t i = 0; i < c->count; i++)
            if (is(c->held[i].key, from)) {
                rcbuf_unref(c->held[i].bytes);
                free(c->held[i].key);
                memmove(&c->held[i], &c->held[i + 1],
                        (c->count - i - 1) * sizeof(*c->held));
                c->count--;
                break;
            }
    if (c->count == c->cap) {
        c->cap = c->cap != 0 ? c->cap * 2 : 8;
        c->held = xreallocarray(c->held, c->cap, sizeof(*c->held));
    }
    rcbuf_ref(b);
    c->held[c->count++] =
        (csi_entry_t){b, sole, from != NULL ? xstrdup(from) : NULL};
}

csi_entry_t *csi_take(csi_t *c, size_t *count)
{
    csi_entry_t *v = c->held;
    *count = c->count;
    c->held = NULL;
    c->count = c->cap = 0;
    return v;
}

void csi_entries_free(csi_entry_t *v, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        rcbuf_unref(v[i].bytes);
        free(v[i].key);
    }
    free(v);
}

void csi_clear(csi_t *c)
{
    size_t n;
    csi_entry_t *v = csi_take(c, &n);
    csi_entries_free(v, n);
}
