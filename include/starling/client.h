/**
 * @file starling/client.h
 * @brief libstarling: an XMPP client library (RFC 6120, RFC 6121) on libuv.
 *
 * A starling_client_t is one account's connection: it finds the server
 * (DNS SRV, XEP-0368), secures the stream (STARTTLS or direct TLS, with
 * certificate validation per RFC 6125 against the system store, a CA file
 * or a pinned key — never "accept anything" unless asked for explicitly),
 * authenticates (the strongest SASL mechanism both sides support: SCRAM
 * with channel binding first), binds a resource, and then sends and
 * receives stanzas. Events arrive through callbacks on the caller's loop.
 *
 * Threads: a client belongs to the thread that runs its loop. Every
 * function must be called on that thread, and every callback runs on it.
 * Different clients on different loops are independent.
 *
 * Memory: strings passed in are copied before the call returns; pointers
 * given to a callback are valid only during the callback.
 *
 * Signals: the library writes to sockets with libuv (write(2)) and leaves
 * the process's signal dispositions alone; a program should ignore SIGPIPE
 * (signal(SIGPIPE, SIG_IGN)), or a server that resets the connection
 * while the client writes ends the process.
 */
#ifndef STARLING_CLIENT_H
#define STARLING_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "starling/version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define STARLING_API __attribute__((visibility("default")))
#else
#define STARLING_API
#endif

/** An opaque client: one account, one connection at a time. */
typedef struct starling_client starling_client_t;

/** An opaque stanza handed to callbacks. */
typedef struct starling_stanza starling_stanza_t;

/** What kind of failure a starling_error_t describes. */
typedef enum starling_error_kind {
    STARLING_ERR_NONE = 0,
    STARLING_ERR_DNS,         /**< the domain could not be resolved */
    STARLING_ERR_NETWORK,     /**< TCP connection refused, reset, unreachable */
    STARLING_ERR_TLS,         /**< handshake failed */
    STARLING_ERR_CERTIFICATE, /**< the server's certificate did not verify */
    STARLING_ERR_AUTH,        /**< SASL failed (condition says why) */
    STARLING_ERR_STREAM,      /**< the server sent a stream error */
    STARLING_ERR_STANZA,      /**< an error reply to a stanza we sent */
    STARLING_ERR_TIMEOUT,     /**< an IQ or the connection timed out */
    STARLING_ERR_PROTOCOL,    /**< the server broke the protocol */
    STARLING_ERR_CONFIG,      /**< bad options (JID, files) */
    STARLING_ERR_CLOSED,      /**< the connection was closed */
} starling_error_kind_t;

/** A structured error. Strings are NULL when not applicable. */
typedef struct starling_error {
    starling_error_kind_t kind;
    /** RFC condition: "not-authorized", "conflict", "item-not-found", ... */
    const char *condition;
    /** Stanza error type ("cancel", "modify", ...) for STARLING_ERR_STANZA. */
    const char *type;
    /** The server's human-readable text, if it sent one. */
    const char *text;
    /** One line saying what happened, for logs and users. */
    const char *description;
} starling_error_t;

/** Options for starling_client_new(). Zero-initialise, then set. */
typedef struct starling_client_opts {
    const char *jid;      /**< "user@domain" or "user@domain/resource" */
    const char *password; /**< NULL when a client certificate is used */
    /** "host" or "host:port": connect there instead of looking the domain
     *  up in DNS. */
    const char *server;
    /** With `server`: TLS from the first byte (XEP-0368), default STARTTLS. */
    bool direct_tls;
    /** DNS servers "host:port,..." instead of the system's (tests). */
    const char *dns_servers;
    /** Trust anchors (PEM) instead of the system store. */
    const char *ca_file;
    /** Accept the server only if its public key's SHA-256, base64 (as
     *  HPKP wrote pins), equals this. Checked in addition to ca_file /
     *  system validation unless insecure_tls is set. */
    const char *pin_sha256;
    /** Accept any certificate. Only ever set from an explicit user choice. */
    bool insecure_tls;
    /** Client certificate and key (PEM) for SASL EXTERNAL. */
    const char *client_cert;
    const char *client_key;
    /** Allow a server that offers no TLS (loopback tests only). */
    bool allow_plaintext;
    /** Reconnect with exponential backoff and jitter after an unexpected
     *  disconnect, re-sending the last presence (RFC 6120 §3.3). */
    bool reconnect;
    /** Default timeout of IQ requests, milliseconds (0: 30000). */
    unsigned iq_timeout_ms;
} starling_client_opts_t;

/** Message types (RFC 6121 §5.2.2). */
typedef enum starling_msg_type {
    STARLING_MSG_NORMAL,
    STARLING_MSG_CHAT,
    STARLING_MSG_GROUPCHAT,
    STARLING_MSG_HEADLINE,
    STARLING_MSG_ERROR,
} starling_msg_type_t;

/** A received message. */
typedef struct starling_message {
    const char *from;
    const char *to;
    const char *id;
    starling_msg_type_t type;
    const char *body;                /**< NULL if absent */
    const char *subject;             /**< NULL if absent */
    const char *thread;              /**< NULL if absent */
    const starling_stanza_t *stanza; /**< the whole stanza */
} starling_message_t;

/** Presence types (RFC 6121 §4.7.1, §3). */
typedef enum starling_presence_type {
    STARLING_PRES_AVAILABLE,
    STARLING_PRES_UNAVAILABLE,
    STARLING_PRES_SUBSCRIBE,
    STARLING_PRES_SUBSCRIBED,
    STARLING_PRES_UNSUBSCRIBE,
    STARLING_PRES_UNSUBSCRIBED,
    STARLING_PRES_PROBE,
    STARLING_PRES_ERROR,
} starling_presence_type_t;

/** A received presence. */
typedef struct starling_presence {
    const char *from;
    starling_presence_type_t type;
    const char *show;   /**< "away", "chat", "dnd", "xa" or NULL */
    const char *status; /**< NULL if absent */
    int priority;
    const starling_stanza_t *stanza;
} starling_presence_t;

/** A roster item (RFC 6121 §2.1.2). */
typedef struct starling_roster_item {
    const char *jid;
    const char *name;         /**< NULL if none */
    const char *subscription; /**< "none", "to", "from", "both", "remove" */
    bool ask_subscribe;       /**< a subscription request is pending */
    const char *const *groups;
    size_t group_count;
} starling_roster_item_t;

/** Event callbacks. Any may be NULL. */
typedef struct starling_client_events {
    /** Negotiation finished: bound as `jid`. */
    void (*connected)(starling_client_t *c, const char *jid, void *ud);
    /** The connection ended; err NULL after starling_client_disconnect(). */
    void (*disconnected)(starling_client_t *c, const starling_error_t *err,
                         void *ud);
    void (*message)(starling_client_t *c, const starling_message_t *m,
                    void *ud);
    /** Availability, and subscription requests / answers (12-*). */
    void (*presence)(starling_client_t *c, const starling_presence_t *p,
                     void *ud);
    /** A roster push from the server (already acknowledged). */
    void (*roster_push)(starling_client_t *c, const starling_roster_item_t *it,
                        void *ud);
    /** An IQ get/set addressed to us. Return true after answering it with
     *  starling_iq_reply(); false and the library answers
     *  service-unavailable (RFC 6120 §8.4). */
    bool (*iq)(starling_client_t *c, const starling_stanza_t *iq, void *ud);
} starling_client_events_t;

/** Creates a client on `loop`. Returns NULL with *err filled (kind
 *  STARLING_ERR_CONFIG: malformed JID, unreadable files). */
STARLING_API starling_client_t *
starling_client_new(uv_loop_t *loop, const starling_client_opts_t *opts,
                    const starling_client_events_t *ev, void *ud,
                    starling_error_t *err);

/** Closes the connection at once (no events) and frees the client once its
 *  handles are closed; the loop must run on for that. */
STARLING_API void starling_client_free(starling_client_t *c);

/** Starts connecting; `connected` or `disconnected` follows. */
STARLING_API int starling_client_connect(starling_client_t *c);

/** Closes the stream politely (our close tag, then the server's);
 *  `disconnected` follows with err NULL. No reconnection. */
STARLING_API void starling_client_disconnect(starling_client_t *c);

/** The bound full JID, or NULL when not connected. */
STARLING_API const char *starling_client_jid(const starling_client_t *c);

/** The SASL mechanism used, e.g. "SCRAM-SHA-256-PLUS", or NULL. */
STARLING_API const char *starling_client_mechanism(const starling_client_t *c);

/** Sends a message. type, subject and thread may be NULL / default.
 *  Returns 0, or -1 when not connected or the arguments are invalid. */
STARLING_API int starling_send_message(starling_client_t *c, const char *to,
                                       starling_msg_type_t type,
                                       const char *body, const char *subject,
                                       const char *thread);

/** Sends presence. to NULL: broadcast (initial presence, 13-1; with type
 *  UNAVAILABLE, 13-2). show/status NULL for none. Subscription types need
 *  `to`: SUBSCRIBE (12-1), SUBSCRIBED (approve, 12-2), UNSUBSCRIBED (deny,
 *  12-3), UNSUBSCRIBE (cancel, 12-4). */
STARLING_API int starling_send_presence(starling_client_t *c, const char *to,
                                        starling_presence_type_t type,
                                        const char *show, const char *status,
                                        int priority);

/** Sends one serialized stanza as given (debugging; `starling raw`). */
STARLING_API int starling_send_raw(starling_client_t *c, const char *xml);

/** Result of an IQ request: result (err NULL) or error / timeout. */
typedef void (*starling_iq_cb)(starling_client_t *c,
                               const starling_stanza_t *result,
                               const starling_error_t *err, void *ud);

/** Sends an IQ get or set with one child element given as XML text
 *  (e.g. "<query xmlns='jabber:iq:version'/>"), tracks its id, and calls cb
 *  with the result, the error reply, or a timeout (timeout_ms 0: the
 *  client's default). Returns 0 or -1. */
STARLING_API int starling_iq_send(starling_client_t *c, const char *to,
                                  bool set, const char *child_xml,
                                  unsigned timeout_ms, starling_iq_cb cb,
                                  void *ud);

/** Answers an IQ get/set received in the `iq` event: result with an
 *  optional child (XML text, may be NULL), or an error when condition is
 *  not NULL. */
STARLING_API int starling_iq_reply(starling_client_t *c,
                                   const starling_stanza_t *iq,
                                   const char *child_xml,
                                   const char *error_type,
                                   const char *condition);

/** Roster (RFC 6121 §2). items is the whole roster (NULL on error); ver is
 *  the new roster version or NULL. */
typedef void (*starling_roster_cb)(starling_client_t *c,
                                   const starling_roster_item_t *items,
                                   size_t count, const char *ver,
                                   const starling_error_t *err, void *ud);
/** Gets the roster; `ver` (may be NULL) asks for versioning (§2.6). */
STARLING_API int starling_roster_get(starling_client_t *c, const char *ver,
                                     starling_roster_cb cb, void *ud);
/** Adds or updates an item (name and groups may be NULL / 0). */
STARLING_API int starling_roster_set(starling_client_t *c, const char *jid,
                                     const char *name,
                                     const char *const *groups, size_t ngroups,
                                     starling_iq_cb cb, void *ud);
/** Removes an item (subscriptions are cancelled by the server). */
STARLING_API int starling_roster_remove(starling_client_t *c, const char *jid,
                                        starling_iq_cb cb, void *ud);

/** Stanza accessors (valid during the callback). */
STARLING_API const char *starling_stanza_name(const starling_stanza_t *s);
STARLING_API const char *starling_stanza_attr(const starling_stanza_t *s,
                                              const char *name);
/** The text of the first child element with this namespace (NULL: the
 *  stanza's) and name, or NULL. */
STARLING_API const char *starling_stanza_child_text(const starling_stanza_t *s,
                                                    const char *ns,
                                                    const char *name);
/** The stanza serialized (malloc'd; free() it). */
STARLING_API char *starling_stanza_to_string(const starling_stanza_t *s);

/** A short English description of an error kind. */
STARLING_API const char *starling_error_kind_name(starling_error_kind_t k);

/* ------------------------------------------------------------------ */
/* Blocking convenience layer for scripts and tests.                  */
/* ------------------------------------------------------------------ */

/** A connection driven by blocking calls: each call runs the client's
 *  private loop until what it waits for has happened or its timeout
 *  passed. Not for use inside a libuv callback. One thread at a time. */
typedef struct starling_sync starling_sync_t;

/** A message taken with starling_sync_wait_message(). */
typedef struct starling_sync_message {
    char *from;
    char *body; /**< NULL if the message had none */
    starling_msg_type_t type;
} starling_sync_message_t;

/** Connects and waits until bound, at most timeout_ms. Always returns a
 *  handle (NULL only when out of memory); on failure
 *  starling_sync_error() says why. Close it with starling_sync_close(). */
STARLING_API starling_sync_t *
starling_sync_connect(const starling_client_opts_t *opts, unsigned timeout_ms);

/** The last failure, or NULL after success. Valid until the next call. */
STARLING_API const starling_error_t *
starling_sync_error(const starling_sync_t *s);

/** The underlying client (for the asynchronous API on the same thread). */
STARLING_API starling_client_t *starling_sync_client(starling_sync_t *s);

/** Sends a message and waits until the server has handled it: 0, or -1
 *  when it was refused (an error reply), the connection failed or the
 *  timeout passed (starling_sync_error() says which). */
STARLING_API int starling_sync_send_message(starling_sync_t *s, const char *to,
                                            starling_msg_type_t type,
                                            const char *body,
                                            unsigned timeout_ms);

/** Waits for the next incoming message (messages that arrived earlier are
 *  queued, up to 256): 0 and *out filled (free with
 *  starling_sync_message_clear()), or -1 on timeout or disconnection. */
STARLING_API int starling_sync_wait_message(starling_sync_t *s,
                                            unsigned timeout_ms,
                                            starling_sync_message_t *out);
STARLING_API void starling_sync_message_clear(starling_sync_message_t *m);

/** Sends an IQ and waits for the answer: 0 with the result stanza as XML
 *  in *result (malloc'd; may be NULL when not wanted), or -1 (error reply,
 *  timeout, disconnection: see starling_sync_error()). */
STARLING_API int starling_sync_iq(starling_sync_t *s, const char *to, bool set,
                                  const char *child_xml, unsigned timeout_ms,
                                  char **result);

/** Closes the stream politely (bounded by 5 s) and frees everything. */
STARLING_API void starling_sync_close(starling_sync_t *s);

#ifdef __cplusplus
}
#endif

#endif
