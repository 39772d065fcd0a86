/* stream_component: the server half of an external component's stream
 * (XEP-0114, jabber:component:accept), sans-I/O like stream.h.
 *
 * The component opens a stream whose 'to' names the component's own domain
 * (not the server's); we answer with a header carrying a fresh id and
 * no features; the component proves it knows the shared secret with
 * <handshake>hex(SHA-1(id ‖ secret))</handshake>; we answer <handshake/>.
 * From then on stanzas flow both ways: each one from the component must
 * carry a 'to' and a 'from' whose domain is the component's (XEP-0114 §3),
 * or the stream ends (improper-addressing, invalid-from). Stanzas reach the
 * owner in jabber:client, as everything the router handles.
 *
 * Errors, all stream errors (XEP-0114 §3, RFC 6120 §4.9): an unknown
 * domain → host-unknown; a wrong handshake → not-authorized; a stanza
 * before the handshake → not-authorized; what the owner refuses after a
 * valid handshake (a second connection for a domain) → its condition,
 * e.g. conflict; XML errors as on every stream.
 *
 * A stream never frees itself: after hooks->close the owner closes the
 * transport and calls cstream_free() at a safe point. Every end — a
 * stream error, our close, the peer's close tag — calls hooks->close at
 * once; nothing is read after it. */
#ifndef STARLING_STREAM_COMPONENT_H
#define STARLING_STREAM_COMPONENT_H

#include <stdbool.h>
#include <stddef.h>

#include "xml/xml.h"

#define XML_NS_COMPONENT "jabber:component:accept"

typedef struct cstream cstream_t;

typedef struct cstream_hooks {
    /* Queue bytes for the component: 0, or -1 when they could not be
     * queued (the stream then sends nothing more and closes). */
    int (*send)(void *ud, const char *data, size_t len);
    /* The same for one whole stanza (cstream_send_element), so that the
     * transport can give it back if the connection breaks before it is
     * written; NULL: `send` is used. */
    int (*send_stanza)(void *ud, const char *data, size_t len);
    /* Close the transport once queued bytes are flushed; no hook is called
     * after this one. */
    void (*close)(void *ud);
    /* The shared secret of component domain `domain` (nameprep'd), or NULL
     * when no component of that name is configured. The string must stay
     * valid until the handshake has been checked (the configuration). */
    const char *(*secret)(void *ud, const char *domain);
    /* The handshake was right: may the component serve `domain` now? NULL
     * to accept, else the stream error condition to end with (e.g.
     * "conflict" when another connection holds the domain). */
    const char *(*authenticated)(void *ud, const char *domain);
    /* A stanza from the authenticated component, its namespace now
     * jabber:client, 'to' a JID, 'from' a JID at the component's domain.
     * The callee owns the tree. */
    void (*stanza)(void *ud, xml_tree_t *stanza);
} cstream_hooks_t;

/* `preauth` bounds elements before the handshake, `limits` after. Both
 * are copied. NULL when out of memory. */
cstream_t *cstream_new(const xml_limits_t *preauth, const xml_limits_t *limits,
                       const cstream_hooks_t *h, void *ud);
void cstream_free(cstream_t *cs);

/* Bytes from the transport. */
void cstream_feed(cstream_t *cs, const char *data, size_t len);

/* Sends a stanza (jabber:client elements are written without a namespace
 * declaration, so that they are in the stream's jabber:component:accept).
 * False when the stream is not authenticated or is closing. */
bool cstream_send_element(cstream_t *cs, const xml_node_t *el);

/* Ends the stream with a stream error (RFC 6120 §4.9): the error and our
 * close tag, then hooks->close (the owner's transport flushes them and
 * lingers for the peer's close tag). `text` may be NULL. */
void cstream_error(cstream_t *cs, const char *condition, const char *text);
/* Closes without error. */
void cstream_close(cstream_t *cs);
/* The transport is gone: nothing more is sent; hooks->close is called if
 * it was not already. */
void cstream_abort(cstream_t *cs);

bool cstream_is_authenticated(const cstream_t *cs);
bool cstream_is_open(const cstream_t *cs);
/* The component's domain once the header named one we serve, else NULL. */
const char *cstream_domain(const cstream_t *cs);
/* The stream id we sent ("" before). */
const char *cstream_id(const cstream_t *cs);
/* The condition of the stream error we sent, or NULL. */
const char *cstream_error_sent(const cstream_t *cs);

/* XEP-0114 §3: hex(SHA-1(id ‖ secret)) in lowercase, 40 digits and a NUL
 * (exposed for tests and the client side of tests). */
void cstream_handshake_digest(const char *id, const char *secret, char out[41]);

#endif
