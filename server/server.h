/* server: the state of one starlingd process, owned by main.c and handed to
 * every part that needs it. No part keeps state in file-scope variables
 * (ARCHITECTURE.md, principle 4): it hangs off this struct. */
#ifndef STARLING_SERVER_H
#define STARLING_SERVER_H

#include <stdbool.h>
#include <uv.h>

#include "base/log.h"
#include "config/config.h"
#include "modules/module.h"
#include "net/tls.h"
#include "router/router.h"
#include "store/store.h"
#include "stream/stream.h"

typedef struct c2s_listener c2s_listener_t;
typedef struct c2s_session c2s_session_t;
typedef struct c2s_addr c2s_addr_t;

/* Recent SASL failures per client address and per account, to slow down
 * guessing. Small fixed tables: an attacker with many addresses or
 * accounts only evicts entries, and eviction only forgets a delay. A key
 * longer than the slot is cut; accounts that share the first 127 bytes
 * then share a count, which only delays failures. */
enum { AUTH_SLOTS = 256 };
typedef struct auth_slot {
    char key[128]; /* an address, or node@domain */
    unsigned failures;
    uint64_t last_ms;
} auth_slot_t;

/* Open connections per client address (c2s.c), hashed into buckets. */
enum { C2S_ADDR_BUCKETS = 1024 };

typedef struct server {
    uv_loop_t *loop;
    logger_t log;
    server_config_t *cfg;
    store_t *store;
    /* The enabled modules: built once at start, read-only afterwards. */
    module_registry_t *modules;
    router_t *router;
    router_config_t router_cfg;
    stream_config_t stream_cfg;          /* STARTTLS listeners */
    stream_config_t stream_cfg_loopback; /* same, TLS optional (switch) */
    stream_config_t stream_cfg_direct;   /* direct TLS listeners */
    tls_ctx_t *tls;           /* STARTTLS listeners; NULL without a cert */
    tls_ctx_t *tls_direct;    /* direct TLS listeners (ALPN xmpp-client) */
    unsigned char secret[32]; /* per-process secret for fake SCRAM salts */

    c2s_listener_t *listeners;
    c2s_session_t *sessions; /* every open connection */
    size_t session_count;
    unsigned long next_conn_id;
    unsigned char read_buf[64 * 1024]; /* one read at a time per loop */

    auth_slot_t auth_slots[AUTH_SLOTS];    /* per client address */
    auth_slot_t account_slots[AUTH_SLOTS]; /* per account, any address */
    c2s_addr_t *c2s_addrs[C2S_ADDR_BUCKETS];

    bool shutting_down;
} server_t;

#endif
