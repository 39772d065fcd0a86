/* XEP-0352 classification and the queue of an inactive client (csi.h). */
#include "c2s/csi.h"

#include <stdio.h>
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

/* What a newer held stanza replaces an older one by: a presence's sender;
 * a PEP event's sender, node and item id when it carries one item or one
 * retraction (the newer state of the same item: an avatar, a nickname, a
 * device list, one bookmark). NULL for anything else (kept as it is). */
static char *hold_key(const xml_node_t *el)
{
    const char *from = xml_element_attr(el, NULL, "from");
    if (from == NULL)
        return NULL;
    if (strcmp(el->name, "presence") == 0)
        return xstrdup(from);
    const xml_node_t *ev = xml_element_child(el, NS_PUBSUB_EV, "event");
    const xml_node_t *items =
        ev != NULL ? xml_element_child(ev, NS_PUBSUB_EV, "items") : NULL;
    const char *node =
        items != NULL ? xml_element_attr(items, NULL, "node") : NULL;
    const xml_node_t *one = NULL;
    size_t n = 0;
    for (const xml_node_t *ch = items != NULL ? items->children : NULL;
         ch != NULL; ch = ch->next)
        if (ch->kind == XML_NODE_ELEMENT) {
            one = ch;
            n++;
        }
    const char *id = one != NULL ? xml_element_attr(one, NULL, "id") : NULL;
    if (node == NULL || n != 1 || id == NULL)
        return NULL;
    /* Presence keys are JIDs, which hold no control character; an event's
     * starts with one, and the node's length keeps node and id apart. */
    size_t len = strlen(from) + strlen(node) + strlen(id) + 32;
    char *key = xmalloc(len);
    snprintf(key, len, "\n%s\n%zu:%s%s", from, strlen(node), node, id);
    return key;
}

void csi_hold(csi_t *c, const xml_node_t *el, rcbuf_t *b, bool sole)
{
    char *from = hold_key(el);
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
    c->held[c->count++] = (csi_entry_t){b, sole, from};
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
