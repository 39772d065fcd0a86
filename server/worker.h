/* worker: one event loop on one thread, and what only that loop touches.
 *
 * Owner: the thread that runs `loop`; main.c builds the one worker there is
 * today. Thread rule: every field is read and written on that thread only,
 * with no lock; another thread never reaches into a worker (later it will
 * post to the worker's mailbox, a uv_async_t, instead). The shared,
 * read-only state is reached through `srv`; nothing reaches a worker
 * through server_t. docs/architecture.md, "State by owner", says how
 * several workers fit. */
#ifndef STARLING_WORKER_H
#define STARLING_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "net/conn.h"
#include "router/router.h"
#include "server.h"

typedef struct c2s c2s_t;
typedef struct c2s_session c2s_session_t;
typedef struct s2s s2s_t;
struct components;

typedef struct worker {
    const server_t *srv; /* shared, read-only */
    uv_loop_t *loop;
    router_t *router; /* the sessions bound on this loop (later: a shard) */
    c2s_t *c2s;       /* the c2s listener component on this loop */
    s2s_t *s2s;       /* federation on this loop, or NULL when off */
    size_t s2s_count; /* open s2s streams and links (shutdown waits) */
    struct components *components; /* XEP-0114, or NULL when none */
    size_t component_conns;        /* open component connections */

    c2s_session_t *sessions; /* every open connection on this loop */
    size_t session_count;
    unsigned long next_conn_id;
    bool shutting_down;
    unsigned char read_buf[64 * 1024]; /* one read at a time per loop */
    /* Output queued during a turn of the loop is written at its end. */
    conn_flusher_t flusher;
} worker_t;

#endif
