/* listen: one TCP listener of the config (config_listener_t) on a loop,
 * shared by c2s and s2s. */
#ifndef STARLING_LISTEN_H
#define STARLING_LISTEN_H

#include <stddef.h>
#include <uv.h>

#include "base/log.h"
#include "config/config.h"

/* Initializes `tcp` on `loop` (the caller sets tcp->data and closes the
 * handle, whatever the outcome), binds it to lc's address and port and
 * listens with `cb`. Writes "ADDRESS:PORT (STARTTLS|direct TLS|no TLS)"
 * (no TLS for kind "component") — the
 * port the kernel chose when lc asks for 0 — into name and logs "KIND
 * listening on NAME". Returns 0, or -1 after logging why. */
int server_listen(uv_loop_t *loop, uv_tcp_t *tcp, const config_listener_t *lc,
                  uv_connection_cb cb, const char *kind, const logger_t *log,
                  char *name, size_t namelen);

#endif
