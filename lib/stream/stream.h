/* stream: XMPP stream negotiation, sans-I/O (RFC 6120 §4–§7).
 *
 * The receiving (server) half of a client-to-server stream: stream headers,
 * features, STARTTLS, SASL, resource binding, stream errors and closing.
 * Bytes come in through stream_feed(); everything the stream needs from
 * outside — sending bytes, starting TLS, looking an account up, binding a
 * resource, delivering a stanza — goes out through a table of hooks that
 * the owner implements (server/c2s with sockets; unit tests with buffers).
 * Slow work is asynchronous: the hook starts it, and the owner reports the
 * result back with the matching stream_*() call.
 *
 * A stream never frees itself. After hooks->close the owner closes the
 * transport and, at a safe point, calls stream_free(). */
#ifndef STARLING_STREAM_STREAM_H
#define STARLING_STREAM_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jid/jid.h"
#include "sasl/sasl.h"
#include "xml/xml.h"

#define STREAM_NS_STREAMS_ERR "urn:ietf:params:xml:ns:xmpp-streams"
#define STREAM_NS_STANZAS     "urn:ietf:params:xml:ns:xmpp-stanzas"
#define STREAM_NS_TLS         "urn:ietf:params:xml:ns:xmpp-tls"
#define STREAM_NS_SASL        "urn:ietf:params:xml:ns:xmpp-sasl"
#define STREAM_NS_BIND        "urn:ietf:params:xml:ns:xmpp-bind"
#define STREAM_NS_SESSION     "urn:ietf:params:xml:ns:xmpp-session"
#define STREAM_NS_SASL_CB     "urn:xmpp:sasl-cb:0"

typedef enum stream_state {
    STREAM_WAIT_HEADER, /* waiting for the client's stream header */
    STREAM_OPEN,        /* negotiating or bound; elements flow */
    STREAM_TLS,         /* <proceed/> sent; the transport runs the handshake */
    STREAM_CLOSING,     /* our close tag sent; waiting for the client's */
    STREAM_CLOSED,      /* done; the transport is (being) closed */
} stream_state_t;

/* What the TLS layer tells the stream after a handshake. */
typedef struct stream_tls_info {
    const unsigned char *cb_exporter; /* tls-exporter data, or NULL */
    size_t cb_exporter_len;
    const unsigned char *cb_unique; /* tls-unique data, or NULL */
    size_t cb_unique_len;
    const char *const *cert_names; /* verified client cert XmppAddrs */
    size_t cert_name_count;
} stream_tls_info_t;

#define STREAM_NS_DIALBACK      "jabber:server:dialback"
#define STREAM_NS_DIALBACK_FEAT "urn:xmpp:features:dialback"

typedef struct stream_hooks {
    /* Queue bytes for the peer. */
    void (*send)(void *ud, const char *data, size_t len);
    /* <proceed/> has been queued: flush it in plaintext, then start the
     * server side of TLS and call stream_tls_done() when it finishes. */
    void (*start_tls)(void *ud);
    /* Close the transport once queued bytes are flushed. The stream will not
     * call any hook again. */
    void (*close)(void *ud);
    /* Look up an account; answer with stream_sasl_account(). */
    void (*lookup_account)(void *ud, const char *domain, const char *node);
    /* Run sasl_server_check_password(sess) on a worker thread; answer with
     * stream_sasl_password_checked(). */
    void (*check_password)(void *ud, sasl_server_t *sess);
    /* A SASL attempt failed. Returns how many milliseconds to hold the
     * <failure/> answer back (slowing down password guessing); with a
     * non-zero delay the stream handles nothing more until the owner calls
     * stream_auth_delay_done(). NULL or 0: answer at once. */
    unsigned (*auth_failed)(void *ud);
    /* Bind `resource` (NULL: generate one) for the authenticated user;
     * answer with stream_bind_done(). */
    void (*bind)(void *ud, const jid_t *user, const char *resource);
    /* A stanza from the bound client, with 'from' validated or stamped
     * (RFC 6120 §8.1.2.1). The callee owns the tree. */
    void (*stanza)(void *ud, xml_tree_t *stanza);
    /* Optional, preferred over send: queue bytes and return 0, or -1 when
     * they could not be queued (out of memory; the library never ignores
     * that): the stream then stops sending and closes itself
     * (CONVENTIONS.md, out-of-memory policy). */
    int (*send_checked)(void *ud, const char *data, size_t len);

    /* Optional (c2s): an IQ the client sent before authenticating, in the
     * stream's service `domain` (XEP-0077 in-band registration). Return
     * true to take the tree and answer later with stream_preauth_done()
     * (elements that arrive meanwhile wait); false leaves the tree to the
     * stream, which ends with not-authorized as without this hook. At
     * most 16 such IQs per stream, then policy-violation. */
    bool (*preauth_iq)(void *ud, const char *domain, xml_tree_t *iq);
    /* Optional (c2s): a stanza the stream answers itself once bound (the
     * RFC 3921 session IQ, a second bind), to be sent like the stanzas the
     * owner delivers, so that XEP-0198 counts it. NULL: sent with send. */
    void (*send_stanza)(void *ud, const char *data, size_t len);

    /* Server-to-server streams (stream_new_s2s_in) only; NULL otherwise.
     * Is the peer's TLS certificate valid for `domain` (RFC 6125, checked
     * by the owner)? Decides whether SASL EXTERNAL (XEP-0178) is offered
     * and accepted. */
    bool (*peer_cert_valid)(void *ud, const char *domain);
    /* XEP-0220 §2.1.2: the originating server `from` asks to send stanzas
     * to our domain `to` and gives `key`. The owner asks the authoritative
     * server and answers with stream_dialback_result(). */
    void (*dialback_result)(void *ud, const char *from, const char *to,
                            const char *key);
    /* XEP-0220 §2.3.2: a receiving server `from` asks whether `key` is
     * ours for its stream `id` from our domain `to`; the owner answers
     * with stream_dialback_verify_done(). */
    void (*dialback_verify)(void *ud, const char *from, const char *to,
                            const char *id, const char *key);
} stream_hooks_t;

typedef struct stream stream_t;

/* ------------------------------------------------- stream features
 *
 * What a stream offers in <stream:features/> and which top-level elements
 * (nonzas, RFC 6120 §4.1) it understands are one table. STARTTLS, SASL
 * (mechanisms and the XEP-0440 channel-binding list), resource binding and
 * the RFC 3921 session are built-in entries; the owner adds its own
 * (stream management, CSI, SASL2/Bind2, ...) through
 * stream_config_t.features without touching the state machine. */

/* When a feature is offered: bits of the negotiation state the stream is in
 * when it sends its features. */
enum {
    /* Before TLS, on a stream that can still start it (STARTTLS). */
    STREAM_FEAT_BEFORE_TLS = 1u << 0,
    /* Before authentication; withheld while TLS is required and not yet
     * negotiated (RFC 6120 §5.3.1). */
    STREAM_FEAT_BEFORE_AUTH = 1u << 1,
    /* After authentication, on the restarted stream where the client binds
     * a resource (bind, session, stream management, CSI). */
    STREAM_FEAT_AFTER_AUTH = 1u << 2,
};

typedef struct stream_feature stream_feature_t;
struct stream_feature {
    const char *ns;   /* namespace of the feature and of its elements */
    const char *name; /* local name of the feature element */
    unsigned when;    /* STREAM_FEAT_* bits */
    bool required;    /* written as <required/> by the default offer */
    /* Appends the feature element to `out`. Returns 0, 1 to offer nothing
     * on this stream, or -1 when out of memory. NULL: the default,
     * <name xmlns='ns'/> (with <required/> inside when required). */
    int (*offer)(stream_t *s, const stream_feature_t *f, buf_t *out);
    /* A top-level element in `ns` (any name), in whatever state the stream
     * is in: the handler checks that the state allows it (with
     * stream_is_authenticated(), stream_is_bound(), ...). It owns `t`,
     * answers with stream_send_nonza() and may end the stream with
     * stream_error(). `owner_ud` is the ud given to stream_new_c2s(). NULL:
     * the feature has no top-level elements (its namespace stays
     * unsupported-stanza-type). */
    void (*handle)(stream_t *s, void *owner_ud, const stream_feature_t *f,
                   xml_tree_t *t);
    void *ud; /* the feature's own data (module state), for offer/handle */
};

typedef struct stream_config {
    /* Domains served, nameprep'd: the one place the stream learns which
     * hosts its owner serves (stream_config_host()); the owner fills it
     * from the same list its router serves. */
    const char *const *hosts;
    size_t host_count;
    bool tls_available; /* a certificate is configured: offer STARTTLS */
    bool tls_required;  /* refuse authentication before TLS */
    /* The transport is TLS from the first byte (5223): STARTTLS is never
     * offered, and bytes fed before stream_tls_done() close the stream. */
    bool tls_direct;
    unsigned mechs;  /* sasl_mech_t bits allowed by configuration */
    bool offer_plus; /* offer -PLUS when channel binding is available */
    unsigned max_auth_failures; /* then policy-violation; at least 2 */
    xml_limits_t limits_preauth;
    xml_limits_t limits;
    const unsigned char *server_secret; /* fake SCRAM salts */
    size_t server_secret_len;
    unsigned scram_iterations;
    /* The owner's stream features, offered after the built-in ones in this
     * order. Their namespaces must differ from the built-in ones and from
     * jabber:client (stanzas are never a feature's). The array is
     * referenced like the rest of the config. */
    const stream_feature_t *features;
    size_t feature_count;
    /* s2s: Server Dialback (XEP-0220) is offered and accepted. */
    bool dialback;
} stream_config_t;

/* The configured host equal to `domain` (nameprep'd), or NULL. The stream
 * points at the configuration's string rather than keeping a copy. */
const char *stream_config_host(const stream_config_t *cfg, const char *domain);

/* The config is referenced, not copied: it must outlive the stream (the
 * server owns it; SIGHUP replaces it only between streams). */
stream_t *stream_new_c2s(const stream_config_t *cfg, const stream_hooks_t *h,
                         void *ud);
void stream_free(stream_t *s);

/* The receiving half of a server-to-server stream (RFC 6120, XEP-0220,
 * XEP-0178): content namespace jabber:server; features STARTTLS, SASL
 * EXTERNAL (when hooks->peer_cert_valid says the certificate is valid for
 * the header's 'from') and dialback (cfg->dialback); no binding. A stanza
 * reaches hooks->stanza only with a 'from' of a domain this stream
 * authenticated (EXTERNAL, or dialback for the pair of its 'from' and 'to'
 * domains) and a 'to' of a served domain; otherwise the stream ends with
 * invalid-from, host-unknown, improper-addressing or not-authorized. A
 * header without version='1.0' is refused (unsupported-version): pre-RFC
 * dialback-only peers are not spoken to. */
stream_t *stream_new_s2s_in(const stream_config_t *cfg, const stream_hooks_t *h,
                            void *ud);
/* The answer to hooks->dialback_result: NULL (valid: `from` may now send
 * to `to` on this stream), "invalid", or a stanza error condition for
 * type='error' (e.g. "remote-server-not-found"). */
void stream_dialback_result(stream_t *s, const char *from, const char *to,
                            const char *condition);
/* The answer to hooks->dialback_verify. */
void stream_dialback_verify_done(stream_t *s, const char *from, const char *to,
                                 const char *id, bool valid);
/* Whether `from_domain` may send stanzas to `to_domain` on this stream. */
bool stream_s2s_authorized(const stream_t *s, const char *from_domain,
                           const char *to_domain);
/* The 'from' of the peer's stream header (nameprep'd), or NULL. */
const char *stream_peer_domain(const stream_t *s);

/* Bytes from the transport (plaintext, after TLS). */
void stream_feed(stream_t *s, const char *data, size_t len);

/* The TLS handshake after STARTTLS finished (ok) or failed (the stream
 * closes without another byte: RFC 6120 §5.4.3.2 a TLS failure ends the
 * TCP connection). On a direct-TLS transport call it once, before any
 * byte, with ok = true. */
void stream_tls_done(stream_t *s, bool ok, const stream_tls_info_t *info);

/* Answers lookup_account: found == false for an unknown account. */
void stream_sasl_account(stream_t *s, bool found, const scram_cred_t *sha1,
                         const scram_cred_t *sha256,
                         const unsigned char *digest_md5 /* or NULL */);
/* A failure of the storage itself: temporary-auth-failure. */
void stream_sasl_lookup_failed(stream_t *s);
void stream_sasl_password_checked(stream_t *s, bool ok);
/* The delay that auth_failed asked for has passed: the <failure/> goes
 * out and queued elements are handled. */
void stream_auth_delay_done(stream_t *s);

/* Answers preauth_iq: sends `answer` (an IQ result or error; NULL: none)
 * and handles what waited. */
void stream_preauth_done(stream_t *s, const xml_node_t *answer);

/* Answers bind: resource is the bound resource on success; otherwise
 * `condition` is the stanza error condition (e.g. "conflict",
 * "resource-constraint", "not-allowed"). */
void stream_bind_done(stream_t *s, const char *resource, const char *condition);

/* Sends a stanza to the client (serialized with jabber:client as the
 * inherited namespace). Dropped, returning false, when the stream is not
 * bound or is closing. */
bool stream_send_element(stream_t *s, const xml_node_t *el);
/* Sends already serialized bytes of one stanza. */
bool stream_send_raw(stream_t *s, const char *data, size_t len);
/* Sends a top-level element that is not a stanza (a nonza: the answer of a
 * stream feature's handler), in any state where the stream is open, bound
 * or not. Returns false when the stream is not open or the bytes could not
 * be queued (the stream then ends itself with an error). */
bool stream_send_nonza(stream_t *s, const char *data, size_t len);

/* Ends the stream with a stream error (RFC 6120 §4.9): the error, our
 * close tag, then waiting for the client's close tag (the owner bounds the
 * wait with a timer and then calls stream_abort()). `condition` is an
 * RFC 6120 §4.9.3 name; text may be NULL. */
void stream_error(stream_t *s, const char *condition, const char *text);

/* Closes the stream without error: our close tag, then as above. */
void stream_close(stream_t *s);

/* The transport is gone (EOF, reset, timeout after our close): no more
 * bytes are sent; hooks->close is called if it was not already. */
void stream_abort(stream_t *s);

stream_state_t stream_state(const stream_t *s);
bool stream_is_bound(const stream_t *s);
/* Replaces the `ud` given to the hooks (a session that takes over this
 * stream: XEP-0198 resumption). */
void stream_set_owner(stream_t *s, void *ud);
/* The authenticated account's bare JID, or NULL before SASL succeeded. */
const jid_t *stream_user(const stream_t *s);
/* XEP-0198 resumption: an authenticated, unbound stream continues the
 * session of `full` (the account's own): it is bound to it without a
 * bind request and nothing is sent. False when the stream is not in that
 * state or `full` is another account's. */
bool stream_resume_bound(stream_t *s, const jid_t *full);
/* Stanzas the bound client has sent (each one handed to the owner or
 * answered by the stream), mod 2^32: XEP-0198's inbound count. */
uint32_t stream_stanzas_in(const stream_t *s);
bool stream_is_authenticated(const stream_t *s);
bool stream_is_tls(const stream_t *s);
/* The bound full JID (valid while bound), or NULL. */
const jid_t *stream_jid(const stream_t *s);
/* The stream id we sent in our header ("" before that). */
const char *stream_id(const stream_t *s);
/* The condition of the stream error we sent or NULL (for logs, tests);
 * "internal-server-error" when the stream closed because send_checked
 * could not queue its bytes (nothing more was sent then). */
const char *stream_error_sent(const stream_t *s);
/* The stream's xml:lang ("en" when the client gave none). */
const char *stream_lang(const stream_t *s);

#endif
