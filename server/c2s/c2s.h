/* c2s: client-to-server listeners and sessions on libuv.
 *
 * A session glues a connection (lib/net/conn: TCP, TLS as a layer, the
 * output queue with one write in flight, rate and size limits) and a
 * stream_t together and implements the stream's hooks: output goes to the
 * connection; account lookups go to the store, password checks to the
 * thread pool, binding and stanzas to the router. An idle session holds no
 * buffer: reads use the server's shared read buffer, and the connection
 * frees its output buffers once a write completes with nothing left. */
#ifndef STARLING_C2S_C2S_H
#define STARLING_C2S_C2S_H

#include "server.h"

/* Starts every configured c2s listener. Returns 0, or -1 after logging
 * which address could not be bound and why. */
int c2s_start(server_t *srv);

/* Stops accepting and ends every session with the stream error
 * `condition` ("system-shutdown"). Each closes once the client answers our
 * close tag or close_timeout passes; srv->session_count reaches 0 then. */
void c2s_shutdown(server_t *srv, const char *condition);

#endif
