/* stanza: helpers for stanzas that every half of Starling builds the same
 * way (the c2s stream, the router, the client library). */
#ifndef STARLING_STREAM_STANZA_H
#define STARLING_STREAM_STANZA_H

#include "xml/xml.h"

/* Builds the error reply to `stanza` (RFC 6120 §8.3): the same element
 * name, namespace and id, type='error', 'to' set to the original 'from'
 * (left out when it had none), 'from' set to `from` when given, else to the
 * original 'to' (left out when it had none), the original children kept
 * (§8.3.1 allows them, and an IQ error names the request that failed), then
 * <error type='TYPE'><CONDITION xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'
 * /></error>. `type` is an RFC 6120 §8.3.2 error type ("cancel", "modify",
 * "auth", "wait", "continue"); `condition` an §8.3.3 condition name.
 *
 * Returns a new tree owned by the caller, or NULL when no reply must be
 * sent — the stanza is itself an error (§8.3.1: never answer an error with
 * an error) or is not a message, presence or iq — or when out of memory. */
xml_tree_t *stanza_error_reply(const xml_node_t *stanza, const char *type,
                               const char *condition, const char *from);

/* Moves el and every descendant in namespace `from` (jabber:server on
 * s2s, jabber:component:accept on component streams) to jabber:client,
 * in which the router handles and delivers stanzas (RFC 6120 §4.8.3: the
 * server translates). */
void stanza_to_client_ns(xml_node_t *el, const char *from);

#endif
