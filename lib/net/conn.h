/* conn: one byte-stream connection on libuv, with TLS as a layer on it.
 *
 * A conn_t is a TCP handle plus a table of layer functions (conn_layer_t:
 * input, output, shutdown) that turn socket bytes into the owner's
 * plaintext and the owner's plaintext into socket bytes. It starts with the
 * plain layer; conn_start_tls() swaps in the TLS layer (lib/net/tls, memory
 * BIOs), the way libstrophe swaps conn->intf and nginx c->recv. Everything
 * above it — c2s, the client library, next s2s — sees plaintext only.
 *
 * Output. The owner queues blocks: owned bytes (copied, coalesced) or
 * shared reference-counted blocks (rcbuf_t, one serialization queued on
 * many connections). The queue keeps block boundaries and an opaque tag per
 * block, so what was never written can be walked and handed back. Exactly
 * one write is in flight: the plain layer writes queued blocks themselves
 * (no copy); the TLS layer encrypts them only when they become the next
 * write, so a block not yet written is still plaintext and can be taken
 * back. Bytes queued plus bytes in flight are checked against a soft limit
 * (reported to the owner, who may stop feeding the connection) and a hard
 * limit (the unwritten blocks are detached and the owner is told to end
 * the stream; what it queues then bypasses the limit, and the connection
 * closes, its last bytes going as far as the socket takes them).
 *
 * Input. A token bucket bounds the read rate: reading pauses while the
 * bucket is empty (read less to slow a peer down). The owner can also
 * pause reading for a while (conn_pause: delayed SASL failures) or stop it.
 *
 * Lifetime. A conn_t is heap-allocated with one owner and one close path:
 * conn_close() (orderly: flush, TLS close_notify, FIN; bounded by a linger
 * time) or conn_abort() (at once). It is freed in its handles' close
 * callback, after the `closed` event, never inside one of its own
 * callbacks; so the owner may call any conn_* function from an event, and
 * its pointer stays valid until `closed`. */
#ifndef STARLING_NET_CONN_H
#define STARLING_NET_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "base/rcbuf.h"
#include "net/tls.h"

typedef enum conn_error {
    CONN_OK = 0,
    CONN_ERR_NOMEM = -1,
    CONN_ERR_EOF = -2,        /* the peer ended the TCP stream */
    CONN_ERR_IO = -3,         /* a read or write failed (reset, ...) */
    CONN_ERR_TLS = -4,        /* the TLS handshake or a record failed */
    CONN_ERR_TLS_VERIFY = -5, /* the peer certificate did not verify */
    CONN_ERR_TLS_CLOSED = -6, /* the peer sent close_notify */
    CONN_ERR_CLOSED = -7,     /* the connection is closing or broken */
} conn_error_t;

const char *conn_strerror(int err);

typedef struct conn conn_t;

/* What a connection tells its owner. Every member may be NULL. */
typedef struct conn_events {
    /* Plaintext from the peer. */
    void (*data)(void *ud, const char *data, size_t len);
    /* The TLS handshake finished: CONN_OK, CONN_ERR_TLS or
     * CONN_ERR_TLS_VERIFY. Channel-binding data and the peer's names are
     * available from then on. */
    void (*tls_done)(void *ud, int status);
    /* The peer is gone or broke the protocol below XML (CONN_ERR_EOF, _IO,
     * _TLS, _TLS_CLOSED): no more data comes. The owner ends its stream and
     * calls conn_close() or conn_abort(). */
    void (*error)(void *ud, int err);
    /* Queued output crossed the soft limit upwards (over = true) or drained
     * below it again. */
    void (*soft_limit)(void *ud, bool over);
    /* Queued output crossed the hard limit. The unwritten blocks have been
     * detached: conn_unsent_walk() shows them during this call only. What
     * the owner queues during the call (a stream error and close tag)
     * bypasses the limit; afterwards the connection closes (conn_close with
     * the configured linger) unless the owner closed it already. */
    void (*overflow)(void *ud);
    /* The connection is gone (just before `closed`) and this tagged block
     * never reached the socket whole: it was still queued, or in a write
     * the kernel did not finish taking (cancelled by the close; after a
     * failed write every block of it counts). In queue order. Blocks
     * detached by `overflow` are not shown again, and neither are those
     * encrypted for an orderly TLS close (a reading peer gets them). */
    void (*unsent)(void *ud, const char *data, size_t len, void *tag);
    /* A conn_pause() ended; reading has resumed (unless stopped). */
    void (*resumed)(void *ud);
    /* The last event: the handles are closed, the conn is freed when this
     * returns. */
    void (*closed)(void *ud);
} conn_events_t;

/* Deferred writing for every connection of one loop: what is queued from
 * inside a callback (a stanza routed while the sender's input is being
 * parsed) is written once the loop's I/O callbacks of this turn are done —
 * from a check handle, with an idle handle keeping the loop from blocking
 * meanwhile — not from inside the caller's stack. Owned by the loop's
 * owner (the server's worker); a connection refers to it through
 * conn_opts_t.flusher. */
typedef struct conn_flusher {
    uv_check_t check;
    uv_idle_t idle;
    conn_t *head; /* connections with output waiting for the turn's end */
} conn_flusher_t;

void conn_flusher_init(uv_loop_t *loop, conn_flusher_t *f);
/* Closes its handles (run the loop once more for their callbacks). Every
 * connection using it must be closed first. */
void conn_flusher_close(conn_flusher_t *f);

typedef struct conn_opts {
    /* NULL: queued output is written at once. */
    conn_flusher_t *flusher;
    size_t soft_limit;  /* bytes queued + in flight; 0: none */
    size_t hard_limit;  /* 0: none */
    size_t rate_limit;  /* bytes per second read; 0: none */
    size_t rate_burst;  /* bucket size (>= one read to be useful) */
    unsigned linger_ms; /* conn_close after an overflow; 0: 10 s */
    /* Where reads land. A loop-wide buffer serves every connection of the
     * loop (libuv calls the read callback before the next allocation);
     * NULL: the conn allocates its own 16 KiB while reading. */
    char *read_buf;
    size_t read_buf_size;
} conn_opts_t;

/* A connection with an initialized but unconnected TCP handle: accept into
 * it (conn_accept) or connect it (conn_connect). NULL when out of memory. */
conn_t *conn_new(uv_loop_t *loop, const conn_opts_t *o, const conn_events_t *ev,
                 void *ud);
/* Hands the connection (and its events) to a new owner, e.g. from the
 * connector to the client. */
void conn_set_owner(conn_t *c, const conn_events_t *ev, void *ud);

int conn_accept(conn_t *c, uv_stream_t *listener);
typedef void (*conn_connect_cb)(conn_t *c, int status, void *ud);
/* Connects to sa; cb gets 0 or a libuv error. Nothing may be written
 * before it succeeded. */
int conn_connect(conn_t *c, const struct sockaddr *sa, conn_connect_cb cb,
                 void *ud);

/* The peer's address, "" when unknown. */
const char *conn_peer_addr(const conn_t *c);
void conn_peer_sockaddr(const conn_t *c, struct sockaddr_storage *out);

void conn_read_start(conn_t *c);
void conn_read_stop(conn_t *c);
/* Stops reading for ms milliseconds; `resumed` follows. A pause in
 * progress is extended, never shortened. */
void conn_pause(conn_t *c, uint64_t ms);

/* Swaps in the TLS layer (server role, or client role when server_name is
 * not NULL). Blocks already queued are written in plaintext first (the
 * <proceed/> before a server's handshake). Returns CONN_OK or an error. */
int conn_start_tls(conn_t *c, tls_ctx_t *ctx, const char *server_name);
bool conn_is_tls(const conn_t *c);
/* The TLS session, for version, ALPN, pinning (NULL on a plain conn). */
tls_conn_t *conn_tls(conn_t *c);
/* Channel binding (RFC 9266 tls-exporter, RFC 5929 tls-unique) after the
 * handshake: the length written, or -1 when not available. */
int conn_cb_exporter(conn_t *c, unsigned char *out, size_t size);
int conn_cb_unique(conn_t *c, unsigned char *out, size_t size);
/* The verified peer certificate's names (tls_conn_peer_names). */
int conn_peer_names(conn_t *c, char ***names);

/* Queues bytes (copied). Returns CONN_OK, CONN_ERR_CLOSED (closing or
 * broken: dropped) or CONN_ERR_NOMEM. Crossing the hard limit is reported
 * through `overflow`, not by the return value. */
int conn_write(conn_t *c, const void *data, size_t len);
/* Queues bytes (copied) as a block of their own, never merged with
 * neighbours: one stanza that conn_unsent_walk() can show back whole. */
int conn_write_block(conn_t *c, const void *data, size_t len, void *tag);
/* Queues a shared block (takes a reference) with an opaque tag that
 * conn_unsent_walk() shows back. */
int conn_send_shared(conn_t *c, rcbuf_t *b);
int conn_send_shared_tagged(conn_t *c, rcbuf_t *b, void *tag);
/* The same; with `unlimited`, the block does not count against the hard
 * limit (a backlog handed over from a connection that ended: bounded by
 * what that one held, and not this peer's fault). */
int conn_send_shared_ex(conn_t *c, rcbuf_t *b, void *tag, bool unlimited);

/* During `overflow`: calls fn for every detached block, in queue order,
 * with its bytes and tag (NULL for owned bytes unless given). */
typedef void (*conn_unsent_cb)(void *arg, const char *data, size_t len,
                               void *tag);
void conn_unsent_walk(conn_t *c, conn_unsent_cb fn, void *arg);

/* Bytes queued and in flight. */
size_t conn_queued(const conn_t *c);
/* Bytes handed to libuv in the write in flight (0: none). */
size_t conn_in_flight(const conn_t *c);

/* Ends the connection in order: stops reading, writes what is queued,
 * then TLS close_notify, then FIN, and closes. After linger_ms (0: no
 * bound) without the output drained it aborts. Idempotent. */
void conn_close(conn_t *c, unsigned linger_ms);
/* Closes at once; queued output is dropped. */
void conn_abort(conn_t *c);
bool conn_closing(const conn_t *c);

#endif
