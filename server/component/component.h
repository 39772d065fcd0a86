/* component: external components on libuv (XEP-0114, jabber:component:
 * accept) — a bot, a gateway — each serving a domain of its own.
 *
 * The configured components (component.domains) are known to the router
 * from the start (router_config_t.components): it sends what is addressed
 * to their domains here, whoever sent it. A component connects to one of
 * the component.listen listeners, names its domain in the stream header
 * and proves the shared secret (lib/stream/stream_component.h); from then
 * on its stanzas go to the router (router_route_component) and stanzas for
 * its domain come to it. One connection per domain: a second one is
 * refused with <conflict/> while the first is up. While a component is
 * away, messages and IQs for it are answered with service-unavailable and
 * presence is dropped.
 *
 * Owner: one worker (worker.h), like c2s and s2s; touched only on its
 * loop. */
#ifndef STARLING_COMPONENT_COMPONENT_H
#define STARLING_COMPONENT_COMPONENT_H

#include "worker.h"

/* Starts the listeners when components are configured and sets the
 * router's component transport. Sets w->components (NULL: none
 * configured). Returns 0, or -1 after logging what failed. */
int component_start(worker_t *w);

/* Stops accepting and ends every component stream with `condition`;
 * w->component_conns reaches 0 once they are closed. */
void component_shutdown(worker_t *w, const char *condition);

/* Frees w->components once every connection is gone. NULL is fine. */
void component_free(worker_t *w);

#endif
