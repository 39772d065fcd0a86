/* router: addressing and delivery (RFC 6120 §8 and §10, RFC 6121 §8), and
 * the registry of bound sessions.
 *
 * The router knows sessions only as route_target_t: a full JID, the
 * availability and priority the session announced, and a table of two
 * functions (deliver, kick). c2s embeds one in each session; tests embed
 * one in a struct that records what it was given (tests/unit/test_router.c).
 * The router does addressing only: what to do with a stanza for a given
 * addressee is decided by the modules' hooks and IQ handlers
 * (modules/module.h), the IM rules of RFC 6121 among them (server/im).
 * Everything here runs on the loop thread that owns the users concerned
 * (ARCHITECTURE.md, Scale). */
#ifndef STARLING_ROUTER_ROUTER_H
#define STARLING_ROUTER_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "base/log.h"
#include "jid/jid.h"
#include "xml/xml.h"

typedef struct route_target route_target_t;

typedef struct route_target_ops {
    /* Sends a stanza to the session's client. Returns false when the
     * session can no longer take stanzas (closing). */
    bool (*deliver)(route_target_t *t, const xml_node_t *stanza);
    /* Ends the session with a stream error (e.g. "conflict" when another
     * session took its resource). The router has already unbound it. */
    void (*kick)(route_target_t *t, const char *condition);
} route_target_ops_t;

struct route_target {
    const route_target_ops_t *ops;
    jid_t jid;          /* full JID while bound (owned by the router) */
    bool available;     /* sent available presence, not yet unavailable */
    int priority;       /* from its last available presence, -128..127 */
    unsigned long conn; /* connection id, for logs */
    /* Router-private links. */
    route_target_t *next_resource;
    struct router_account *account;
};

typedef enum router_conflict {
    ROUTER_CONFLICT_NEW_WINS,
    ROUTER_CONFLICT_OLD_WINS,
} router_conflict_t;

struct module_registry;

typedef struct router_config {
    const char *const *hosts; /* served domains, nameprep'd */
    size_t host_count;
    router_conflict_t conflict;
    unsigned max_resources;
    /* The modules whose hooks and IQ handlers the router dispatches to
     * (modules/module.h); NULL: none, so only addressing and delivery to
     * full JIDs remain. Shared and read-only. */
    const struct module_registry *modules;
} router_config_t;

typedef struct router router_t;

/* The config is referenced and must outlive the router. */
router_t *router_new(const router_config_t *cfg, const logger_t *log);
void router_free(router_t *r);

bool router_serves(const router_t *r, const char *domain);

/* Binds `resource` (Resourceprep'd, or NULL for a generated one) for the
 * bare JID `user` to target t. On success fills t->jid and returns NULL;
 * otherwise returns the stanza error condition ("conflict",
 * "resource-constraint", "internal-server-error"). With new-wins, a session
 * holding the resource is unbound and kicked with "conflict" first. */
const char *router_bind(router_t *r, route_target_t *t, const jid_t *user,
                        const char *resource);

/* Removes a bound target (its session ends). Safe to call for a target
 * that is not bound. */
void router_unbind(router_t *r, route_target_t *t);

/* Routes a stanza sent by the bound client of `from` (its 'from' already
 * stamped). Takes ownership of the tree. Every stanza is delivered,
 * answered by the server, or answered with an error — except where the
 * RFCs say to ignore it silently (errors, some presence). */
void router_route(router_t *r, route_target_t *from, xml_tree_t *stanza);

/* Number of bound sessions (for logs and tests). */
size_t router_session_count(const router_t *r);

/* The session bound to the full JID `full`, or NULL. */
route_target_t *router_find(router_t *r, const jid_t *full);

/* The first bound session of the account of `user` (its resource, if any,
 * is ignored), or NULL; the others follow through t->next_resource. */
route_target_t *router_resources(router_t *r, const jid_t *user);

/* Sends an error reply to `stanza` back to `to` (RFC 6120 §8.3): type
 * 'error', to/from swapped, the original children included, never in
 * reply to an error. `type` is cancel/modify/wait/auth/continue. The
 * error's 'from' is the stanza's 'to'; when it had none, an IQ's error
 * has no 'from' (it was handled for the account, RFC 6120 §8.1.2.1) and a
 * message's or presence's comes from the sender's domain. */
void router_reply_error(route_target_t *to, const xml_node_t *stanza,
                        const char *type, const char *condition);

#endif
