/* server: what every part of one starlingd process shares.
 *
 * Owner: main.c builds it before any loop runs and frees it after the last
 * one has ended. Thread rule: read-only once start-up is over, so that any
 * number of workers (worker.h), each on its own thread, may read it
 * without locks. What changes while the server runs is elsewhere: per loop
 * in worker_t, per component in that component's own struct (c2s_t). The
 * only writes after start are SIGHUP's, on the one worker's loop:
 * log_set_level() (atomic) and tls_ctx_reload() (not thread-safe: with
 * several workers it goes through their mailboxes).
 * No part keeps state in file-scope variables (ARCHITECTURE.md, principle
 * 4). docs/architecture.md, "State by owner", says which struct a new field
 * goes in. */
#ifndef STARLING_SERVER_H
#define STARLING_SERVER_H

#include "base/log.h"
#include "config/config.h"
#include "modules/module.h"
#include "net/tls.h"
#include "router/router.h"
#include "store/store.h"
#include "stream/stream.h"

typedef struct server {
    logger_t log;
    server_config_t *cfg;
    /* The store answers on the loop it was opened with (store.h): today
     * the one worker's. */
    store_t *store;
    /* The enabled modules: built once at start, read-only afterwards. */
    module_registry_t *modules;
    router_config_t router_cfg; /* what every router is built from */
    /* The component domains and names of cfg, as router_cfg lists them. */
    const char **component_domains, **component_names;
    stream_config_t stream_cfg;          /* STARTTLS listeners */
    stream_feature_t *features;          /* their features (modules', c2s's) */
    stream_config_t stream_cfg_loopback; /* same, TLS optional (switch) */
    stream_config_t stream_cfg_direct;   /* direct TLS listeners */
    tls_ctx_t *tls;           /* STARTTLS listeners; NULL without a cert */
    tls_ctx_t *tls_direct;    /* direct TLS listeners (ALPN xmpp-client) */
    unsigned char secret[32]; /* per-process secret for fake SCRAM salts */
} server_t;

#endif
