/* s2s: federation — server-to-server streams on libuv (RFC 6120 for
 * servers, XEP-0220 Server Dialback, XEP-0178 SASL EXTERNAL, XEP-0368).
 *
 * Outgoing: the router hands stanzas for other domains to s2s
 * (router_remote_t). There is one outgoing connection per pair (our
 * domain, their domain), set up on the first stanza: a static route
 * (s2s.routes) or the domain's _xmpps-server/_xmpp-server SRV records
 * (fallback: the domain on 5269), TLS, then SASL EXTERNAL when the peer's
 * certificate is valid for its domain and ours is offered, else dialback
 * (when allowed). Stanzas wait in a bounded queue meanwhile; when the
 * connection fails they are answered with remote-server-not-found (or
 * remote-server-timeout), and later stanzas start a new attempt after a
 * randomized exponential backoff (RFC 6120 §3.3). An idle connection is
 * closed after s2s.idle_timeout.
 *
 * Incoming: listeners (5269, and 5270 for direct TLS) accept streams in
 * jabber:server; the stream (lib/stream) checks addressing; s2s answers
 * its questions — is the peer's certificate valid for the domain it claims
 * (RFC 6125), is a dialback key valid (by asking the authoritative server
 * over a separate connection, XEP-0220 §2.2) — and hands authorized
 * stanzas to the router (router_route_remote).
 *
 * Our XEP-0114 components' domains (router_is_component) count as ours:
 * other servers may address them and they may send out through s2s.
 *
 * Dialback keys follow XEP-0185: HMAC-SHA256 over "Receiving Originating
 * StreamID" with SHA256(secret) (hex) as the key; the secret is
 * s2s.dialback_secret or random at each start.
 *
 * Owner: one worker (worker.h), like c2s; touched only on its loop. */
#ifndef STARLING_S2S_S2S_H
#define STARLING_S2S_S2S_H

#include <stddef.h>

#include "worker.h"

/* Starts federation on worker `w` when s2s.enabled: TLS contexts, the
 * resolver, the listeners, and the router's remote. Sets w->s2s (NULL when
 * federation is off). Returns 0, or -1 after logging what failed. */
int s2s_start(worker_t *w);

/* Stops accepting and closes every s2s stream with `condition`; queued
 * stanzas are bounced. w->s2s_count reaches 0 once they are closed. */
void s2s_shutdown(worker_t *w, const char *condition);

/* Frees w->s2s once every s2s stream and link is gone (w->s2s_count is
 * 0); the loop must run on for the resolver to close. NULL is fine. */
void s2s_free(worker_t *w);

/* XEP-0185 §3: the dialback key for a stream with id `stream_id` from
 * `originating` to `receiving`, as 64 lowercase hex digits and a NUL.
 * Exposed for unit tests. */
void s2s_dialback_key(const unsigned char *secret, size_t secret_len,
                      const char *receiving, const char *originating,
                      const char *stream_id, char out[65]);

#endif
