/* What the server half (stream.c) and the client half (stream_client.c) of
 * an XMPP stream share: SASL element decoding, the stream-error writer and
 * the parser restart. Internal to lib/stream. */
#ifndef STARLING_STREAM_INTERNAL_H
#define STARLING_STREAM_INTERNAL_H

#include <stdbool.h>

#include "base/buf.h"
#include "xml/xml.h"

/* Longest base64 text accepted in one SASL element. */
enum { STREAM_SASL_DATA_MAX = 16 * 1024 };

/* Decodes the base64 text of a SASL element (<auth/>, <response/>,
 * <challenge/>, <success/>; RFC 6120 §6.4.2): "=" is empty data; no text
 * at all is no data. Returns the length (the bytes in a malloc'd *out, NULL
 * for length 0), or -1 for bad encoding, text longer than
 * STREAM_SASL_DATA_MAX or lack of memory. *present (may be NULL) says
 * whether the element had any text. */
long stream_sasl_decode(xml_tree_t *t, const xml_node_t *el,
                        unsigned char **out, bool *present);

/* The first child of el in `ns` that is not <text/>: the defined condition
 * of a stream error, a SASL <failure/> or a stanza error; NULL if none. */
const char *stream_condition_of(const xml_node_t *el, const char *ns);

/* The <text/> child of el in `ns`, or NULL. */
const char *stream_text_of(xml_tree_t *t, const xml_node_t *el, const char *ns);

/* Appends <stream:error><CONDITION xmlns='...streams'/>[<text
 * xml:lang='en'>TEXT</text>]</stream:error> (RFC 6120 §4.9.2), without the
 * close tag. Returns 0 or -1 when out of memory (b then holds a partial
 * element that must not be sent). */
int stream_write_error(buf_t *b, const char *condition, const char *text);

/* Restarts the stream's parser (RFC 6120 §5.4.3.3 after TLS, §6.4.6 after
 * SASL): inside a feed the parser is stopped and *need_reset set, so that
 * the rest of the chunk is dropped and the reset happens when the feed
 * returns; outside it the parser is reset now. Returns 0 or -1 when the
 * reset ran out of memory. */
int stream_parser_restart(xml_parser_t *p, bool in_feed, bool *need_reset);

#endif
