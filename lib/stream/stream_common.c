/* The parts of stream negotiation that both halves share. */
#include "stream/stream_internal.h"

#include <stdlib.h>
#include <string.h>

#include "base/base64.h"
#include "stream/stream.h"

long stream_sasl_decode(xml_tree_t *t, const xml_node_t *el,
                        unsigned char **out, bool *present)
{
    const char *txt = xml_element_text(t, el);
    *out = NULL;
    if (present != NULL)
        *present = txt != NULL && txt[0] != '\0';
    if (txt == NULL)
        return -1;
    if (txt[0] == '\0' || strcmp(txt, "=") == 0)
        return 0;
    size_t n = strlen(txt);
    if (n > STREAM_SASL_DATA_MAX)
        return -1;
    *out = malloc(n / 4 * 3 + 1);
    if (*out == NULL)
        return -1;
    long r = base64_decode(txt, n, *out, n / 4 * 3 + 1);
    if (r < 0) {
        free(*out);
        *out = NULL;
    }
    return r;
}

const char *stream_condition_of(const xml_node_t *el, const char *ns)
{
    for (const xml_node_t *n = el->children; n != NULL; n = n->next)
        if (xml_element_is(n, ns, NULL) && strcmp(n->name, "text") != 0)
            return n->name;
    return NULL;
}

const char *stream_text_of(xml_tree_t *t, const xml_node_t *el, const char *ns)
{
    const xml_node_t *n = xml_element_child(el, ns, "text");
    return n != NULL ? xml_element_text(t, n) : NULL;
}

int stream_write_error(buf_t *b, const char *condition, const char *text)
{
    int rc = buf_append_str(b, "<stream:error><");
    rc |= buf_append_str(b, condition);
    rc |= buf_append_str(b, " xmlns='" STREAM_NS_STREAMS_ERR "'/>");
    if (text != NULL) {
        rc |= buf_append_str(b, "<text xmlns='" STREAM_NS_STREAMS_ERR
                                "' xml:lang='en'>");
        rc |= xml_escape(text, strlen(text), b);
        rc |= buf_append_str(b, "</text>");
    }
    rc |= buf_append_str(b, "</stream:error>");
    return rc != 0 ? -1 : 0;
}

int stream_parser_restart(xml_parser_t *p, bool in_feed, bool *need_reset)
{
    if (in_feed) {
        xml_parser_stop(p);
        *need_reset = true;
        return 0;
    }
    *need_reset = false;
    return xml_parser_reset(p) != XML_OK ? -1 : 0;
}
