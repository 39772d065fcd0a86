/* stream_client: the initiating (client) half of an XMPP client-to-server
 * stream, sans-I/O (RFC 6120 §4–§7): our header, the server's features,
 * STARTTLS, SASL (lib/sasl/sasl_client.h), resource binding, then stanzas.
 *
 * Bytes from the server come in through sclient_feed(); what the client
 * needs from outside goes out through hooks. The owner (lib/client with
 * sockets; unit tests with scripted server byte streams) does the I/O. */
#ifndef STARLING_STREAM_STREAM_CLIENT_H
#define STARLING_STREAM_STREAM_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "jid/jid.h"
#include "sasl/sasl_client.h"
#include "xml/xml.h"

typedef enum sclient_state {
    SCLIENT_CONNECTING,  /* nothing sent yet */
    SCLIENT_NEGOTIATING, /* header sent; TLS / SASL / bind in progress */
    SCLIENT_TLS,         /* <proceed/> received: owner runs the handshake */
    SCLIENT_READY,       /* bound: stanzas flow */
    SCLIENT_CLOSING,     /* our close tag sent */
    SCLIENT_CLOSED,
} sclient_state_t;

/* Why negotiation or the stream ended, for the application and the CLI's
 * one-line errors. */
typedef enum sclient_error {
    SCLIENT_OK = 0,
    SCLIENT_ERR_STREAM = -1,   /* the server sent a stream error */
    SCLIENT_ERR_AUTH = -2,     /* SASL failure (wrong password, ...) */
    SCLIENT_ERR_NO_TLS = -3,   /* the server offers no STARTTLS and
                                  plaintext was not allowed */
    SCLIENT_ERR_TLS = -4,      /* <failure/> to STARTTLS, handshake failed */
    SCLIENT_ERR_NO_MECH = -5,  /* no usable SASL mechanism */
    SCLIENT_ERR_BIND = -6,     /* the bind request was refused */
    SCLIENT_ERR_PROTOCOL = -7, /* the server broke the protocol */
    SCLIENT_ERR_CLOSED = -8,   /* the server closed the stream */
    SCLIENT_ERR_DIALBACK = -9, /* s2s: dialback refused (invalid, error) */
} sclient_error_t;

typedef struct sclient_tls_info {
    const unsigned char *cb_exporter;
    size_t cb_exporter_len;
    const unsigned char *cb_unique;
    size_t cb_unique_len;
    bool have_client_cert;
    /* s2s: the server's certificate is valid for the 'to' domain (RFC
     * 6125, checked by the owner): SASL EXTERNAL may be used. */
    bool peer_cert_valid;
} sclient_tls_info_t;

typedef struct sclient_hooks {
    void (*send)(void *ud, const char *data, size_t len);
    /* <proceed/> arrived: start the client side of TLS over the same
     * connection and call sclient_tls_done() when it finishes. */
    void (*start_tls)(void *ud);
    /* Close the transport once queued bytes are written. */
    void (*close)(void *ud);
    /* Negotiation finished: bound as `jid`. */
    void (*ready)(void *ud, const jid_t *jid);
    /* A stanza from the server (the callee owns the tree): message,
     * presence or iq in jabber:client, only in READY. Other top-level
     * elements (extensions not negotiated here) are dropped. */
    void (*stanza)(void *ud, xml_tree_t *stanza);
    /* The stream failed or ended: err, with the RFC condition (stream
     * error, SASL failure or stanza error condition) and the server's text
     * when there was one, and a one-line description. Called at most
     * once, before close; not called when the owner ended the stream
     * (sclient_close, sclient_abort). A server that closes first, even
     * after READY, gives SCLIENT_ERR_CLOSED. `condition` is NULL when the
     * failure was detected here without one (e.g. NO_TLS, NO_MECH, a
     * server signature that does not verify). */
    void (*failed)(void *ud, int err, const char *condition, const char *text,
                   const char *description);
    /* Optional, preferred over send: queue bytes and return 0, or -1 when
     * they could not be queued (out of memory). The stream then reports
     * SCLIENT_ERR_PROTOCOL "resource-constraint" through failed and
     * closes; sclient_send() returns false. */
    int (*send_checked)(void *ud, const char *data, size_t len);

    /* s2s only (sclient_new_s2s / _verify); NULL otherwise. */
    /* Dialback (XEP-0220 §2.1.1) is the way in: compute the key for the
     * receiving server's stream id (XEP-0185) and give it with
     * sclient_s2s_dialback(). */
    void (*dialback_key)(void *ud, const char *stream_id);
    /* The authoritative server's answer to our <db:verify/>. */
    void (*dialback_verified)(void *ud, bool valid);
} sclient_hooks_t;

typedef struct sclient_config {
    const char *jid;      /* "user@domain" or "user@domain/resource" */
    const char *password; /* NULL with a client certificate (EXTERNAL) */
    bool direct_tls;      /* the transport is TLS from the first byte */
    bool allow_plaintext; /* never require STARTTLS (tests on loopback) */
    bool allow_plain;     /* PLAIN over TLS (default true) */
    xml_limits_t limits;  /* any field 0: xml_limits_default() */
} sclient_config_t;

typedef struct sclient sclient_t;

/* An outgoing server-to-server stream (RFC 6120; XEP-0178 SASL EXTERNAL,
 * XEP-0220 dialback): our header in jabber:server with the dialback
 * namespace declared, STARTTLS when offered (required unless
 * allow_plaintext), then SASL EXTERNAL when the peer offers it, we present
 * a certificate (have_cert) and the peer's certificate is valid for `to`
 * (sclient_tls_info_t.peer_cert_valid); otherwise dialback when allowed
 * and offered. hooks->ready(ud, NULL) once `from` may send to `to`; no
 * resource binding. Stanzas that arrive on it are dropped (the stream is
 * one-way: XEP-0288 is not spoken). */
typedef struct sclient_s2s_config {
    const char *from; /* our domain */
    const char *to;   /* the peer's domain */
    bool direct_tls;
    bool allow_plaintext;
    bool have_cert;
    bool dialback;
    xml_limits_t limits;
} sclient_s2s_config_t;
sclient_t *sclient_new_s2s(const sclient_s2s_config_t *cfg,
                           const sclient_hooks_t *h, void *ud);
/* A verification stream (XEP-0220 §2.3): to the authoritative server of
 * `to`, TLS when offered, then <db:verify from to id>key</db:verify>; the
 * answer goes to hooks->dialback_verified. No authentication. */
sclient_t *sclient_new_s2s_verify(const sclient_s2s_config_t *cfg,
                                  const char *id, const char *key,
                                  const sclient_hooks_t *h, void *ud);
/* The answer to hooks->dialback_key. */
void sclient_s2s_dialback(sclient_t *c, const char *key);
/* The id of the peer's current stream header, or "". */
const char *sclient_stream_id(const sclient_t *c);

/* Copies what it needs from cfg. Returns NULL on a malformed JID, one
 * without a localpart (it is the SASL account name), or out of memory. */
sclient_t *sclient_new(const sclient_config_t *cfg, const sclient_hooks_t *h,
                       void *ud);
void sclient_free(sclient_t *c);

/* Sends our stream header (call when the TCP connection is up; on a
 * direct TLS transport after the handshake, with sclient_tls_done first). */
void sclient_start(sclient_t *c);
/* Bytes from the server (plaintext, after TLS). Ignored before
 * sclient_start(), during the TLS handshake and after close; must not be
 * called from inside a hook. */
void sclient_feed(sclient_t *c, const char *data, size_t len);
void sclient_tls_done(sclient_t *c, bool ok, const sclient_tls_info_t *info);

/* After READY: send a stanza (serialized with jabber:client inherited). */
bool sclient_send(sclient_t *c, const xml_node_t *stanza);
/* Closes gracefully: our close tag, then waiting for the server's. */
void sclient_close(sclient_t *c);
/* The transport is gone. */
void sclient_abort(sclient_t *c);

sclient_state_t sclient_state(const sclient_t *c);
const jid_t *sclient_jid(const sclient_t *c); /* bound full JID or NULL */
/* The SASL mechanism used (after success), e.g. "SCRAM-SHA-256-PLUS". */
const char *sclient_mechanism(const sclient_t *c);

#endif
