/* Stanza error replies (RFC 6120 §8.3). */
#include "stream/stanza.h"

#include <string.h>

#include "stream/stream.h"

static bool is_stanza(const xml_node_t *el)
{
    return el != NULL && el->kind == XML_NODE_ELEMENT &&
           (strcmp(el->name, "message") == 0 ||
            strcmp(el->name, "presence") == 0 || strcmp(el->name, "iq") == 0);
}

xml_tree_t *stanza_error_reply(const xml_node_t *stanza, const char *type,
                               const char *condition, const char *from)
{
    if (!is_stanza(stanza) || type == NULL || condition == NULL)
        return NULL;
    const char *orig_type = xml_element_attr(stanza, NULL, "type");
    /* RFC 6120 §8.3.1: an error is never answered with an error. */
    if (orig_type != NULL && strcmp(orig_type, "error") == 0)
        return NULL;
    const char *id = xml_element_attr(stanza, NULL, "id");
    const char *to = xml_element_attr(stanza, NULL, "to");
    const char *orig_from = xml_element_attr(stanza, NULL, "from");
    if (from == NULL)
        from = to;

    xml_tree_t *t = xml_tree_new();
    if (t == NULL)
        return NULL;
    xml_node_t *r = xml_element_new(t, NULL, stanza->ns, stanza->name);
    if (r == NULL || xml_element_set_attr(t, r, NULL, "type", "error") < 0 ||
        (id != NULL && xml_element_set_attr(t, r, NULL, "id", id) < 0) ||
        (orig_from != NULL &&
         xml_element_set_attr(t, r, NULL, "to", orig_from) < 0) ||
        (from != NULL && xml_element_set_attr(t, r, NULL, "from", from) < 0))
        goto oom;
    /* xml:lang stays with the content it describes (RFC 6120 §8.1.5). */
    const char *lang = xml_element_attr(stanza, XML_NS_XML, "lang");
    if (lang != NULL &&
        xml_element_set_attr(t, r, XML_NS_XML, "lang", lang) < 0)
        goto oom;
    for (const xml_node_t *c = stanza->children; c != NULL; c = c->next) {
        if (c->kind != XML_NODE_ELEMENT)
            continue; /* white space between children carries nothing */
        if (xml_node_copy(t, r, c) == NULL)
            goto oom;
    }
    xml_node_t *e = xml_element_new(t, r, stanza->ns, "error");
    if (e == NULL || xml_element_set_attr(t, e, NULL, "type", type) < 0 ||
        xml_element_new(t, e, STREAM_NS_STANZAS, condition) == NULL)
        goto oom;
    return t;
oom:
    xml_tree_free(t);
    return NULL;
}

void stanza_to_client_ns(xml_node_t *el, const char *from)
{
    if (el->ns != NULL && strcmp(el->ns, from) == 0)
        el->ns = XML_NS_CLIENT;
    for (xml_node_t *c = el->children; c != NULL; c = c->next)
        if (c->kind == XML_NODE_ELEMENT)
            stanza_to_client_ns(c, from);
}
