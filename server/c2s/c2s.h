/* c2s: client-to-server listeners and sessions on libuv.
 *
 * A session glues a connection (lib/net/conn: TCP, TLS as a layer, the
 * output queue with one write in flight, rate and size limits) and a
 * stream_t together and implements the stream's hooks: output goes to the
 * connection; account lookups go to the store, password checks to the
 * thread pool, binding and stanzas to the router. An idle session holds no
 * buffer: reads use the worker's read buffer, and the connection
 * frees its output buffers once a write completes with nothing left. */
#ifndef STARLING_C2S_C2S_H
#define STARLING_C2S_C2S_H

#include "worker.h"

/* c2s_t: what the c2s listener component owns: its listeners, the recent
 * SASL failures per address and per account, and the connections and
 * unfinished authentications per address. Owner: one worker (today the
 * only one); thread rule: touched only on that worker's loop, like the
 * sessions it creates (which the worker lists). Private to c2s.c. */
typedef struct c2s c2s_t;

/* Starts every configured c2s listener on worker `w` and sets w->c2s.
 * Returns 0, or -1 after logging which address could not be bound and
 * why. */
int c2s_start(worker_t *w);

/* Stops accepting and ends every session of the worker with the stream
 * error `condition` ("system-shutdown"). Each closes once the client
 * answers our close tag or close_timeout passes; w->session_count reaches
 * 0 then. */
void c2s_shutdown(worker_t *w, const char *condition);

/* XEP-0198 stream management (urn:xmpp:sm:3) as a stream feature of
 * client streams, for the server's stream configuration when
 * c2s.stream_management is on: enable, acks both ways (counters mod
 * 2^32), at most c2s.max_unacked stanzas unacknowledged; when a session
 * ends, what its client never acknowledged goes back to the router
 * (another resource, offline storage, or an error to the sender).
 * Resumption is not offered yet. */
extern const stream_feature_t c2s_sm_feature;

/* XEP-0352 client state indication (urn:xmpp:csi:0), when
 * c2s.client_state_indication is on: while a client says it is inactive,
 * presence waits (the latest from each sender), PEP events wait, chat
 * states alone are dropped; anything else goes at once, after what
 * waited; <active/> sends what waited. */
extern const stream_feature_t c2s_csi_feature;

/* Frees w->c2s once the worker's loop has ended (no session left). */
void c2s_free(worker_t *w);

#endif
