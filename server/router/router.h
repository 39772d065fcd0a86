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
#include "base/rcbuf.h"
#include "jid/jid.h"
#include "xml/xml.h"

typedef struct route_target route_target_t;
typedef struct router router_t;

/* A stanza on its way to one or more targets: the tree, and its bytes,
 * serialized once (with jabber:client as the inherited namespace) the
 * first time a target asks for them and then shared by every recipient —
 * fan-out queues one reference-counted block on each connection instead
 * of serializing per recipient (CONVENTIONS.md, I/O). */
typedef struct route_stanza {
    const xml_node_t *el;
    rcbuf_t *bytes; /* NULL until route_stanza_bytes() */
    /* Other targets get this same stanza (a message to a bare JID with
     * several resources of equal priority, a headline): a copy that never
     * reaches this one is not handed back to the router, since another
     * resource received it. */
    bool shared;
    /* Routed again from a session that ended (router_requeue), or an
     * error caused by that: a backlog handed over at once, so a target
     * does not count it against its output limit. */
    bool requeued;
    router_t *router; /* counts serializations; may be NULL */
} route_stanza_t;

/* A stanza for one target: el, not yet serialized. */
#define ROUTE_STANZA(el_, r_)                                                  \
    ((route_stanza_t){                                                         \
        .el = (el_), .bytes = NULL, .shared = false, .router = (r_)})

/* The stanza's bytes, serialized on the first call (the server's
 * out-of-memory policy applies: it aborts). Owned by st. */
rcbuf_t *route_stanza_bytes(route_stanza_t *st);
/* Drops st's reference to its bytes (the connections keep theirs). */
void route_stanza_done(route_stanza_t *st);

typedef struct route_target_ops {
    /* Queues a stanza for the session's client; the bytes go out once the
     * current input has been handled, never from inside the sender's
     * parser callback. Returns false when the session can no longer take
     * stanzas (closing). */
    bool (*deliver)(route_target_t *t, route_stanza_t *stanza);
    /* Ends the session with a stream error (e.g. "conflict" when another
     * session took its resource). The router has already unbound it. */
    void (*kick)(route_target_t *t, const char *condition);
    /* Stops (true) or resumes (false) reading the session's input while
     * its stanzas are held (router_hold) and too many are queued. May be
     * NULL. */
    void (*pause)(route_target_t *t, bool paused);
    /* Every stanza the session sent while held has been handled (the last
     * hold is released and nothing waits): for XEP-0198, whose count of
     * handled stanzas must not run ahead of what is stored. May be NULL. */
    void (*settled)(route_target_t *t);
} route_target_ops_t;

struct router_held;
struct im_session;

struct route_target {
    const route_target_ops_t *ops;
    jid_t jid;          /* full JID while bound (owned by the router) */
    bool available;     /* sent available presence, not yet unavailable */
    int priority;       /* from its last available presence, -128..127 */
    unsigned long conn; /* connection id, for logs */
    /* server/im's state of this session (roster interest, last presence,
     * directed presence); NULL until it makes one. */
    struct im_session *im;
    /* A sender on another server (router_route_remote): not bound, never
     * held; what is delivered to it goes to its server (server/s2s). */
    bool remote;
    /* Its connection is gone and the session waits to be resumed (XEP-0198):
     * still bound and available, but nobody reads it now (XEP-0357 push
     * notifications are for such a session). Set by its owner. */
    bool detached;
    /* Router-private: holds taken (router_hold) and the stanzas that
     * arrived meanwhile, in order. */
    unsigned holds;
    unsigned writes; /* router_write_begin() not yet ended */
    struct router_held *held_head, *held_tail;
    size_t held_count;
    bool held_paused;
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
    /* XEP-0114 components attached to this server: their domains
     * (nameprep'd, none of `hosts`) and a name for service discovery each
     * (NULL: none). What is addressed to them goes to
     * router_set_components()'s transport. */
    const char *const *components;
    const char *const *component_names;
    size_t component_count;
} router_config_t;

/* The config is referenced and must outlive the router. */
router_t *router_new(const router_config_t *cfg, const logger_t *log);
void router_free(router_t *r);

bool router_serves(const router_t *r, const char *domain);
/* The served domains (router_config_t.hosts), *count of them. */
const char *const *router_hosts(const router_t *r, size_t *count);

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

/* Serializations made by route_stanza_bytes() for this router (tests and
 * benchmarks: a fan-out costs one). */
unsigned long router_serializations(const router_t *r);

/* Gives t the stanza (t->ops->deliver). */
bool router_deliver(route_target_t *t, route_stanza_t *st);

/* A stanza that was queued for a session that ended before writing it (a
 * slow reader dropped at its output cap, a reset, a conflict kick, a
 * shutdown) comes back here, parsed from its bytes; the router takes
 * ownership. It is routed again from the server on behalf of its sender
 * (RFC 6121 §8.5): another resource of the recipient, or an error to the
 * sender — never for an error, a presence or an IQ result, which are
 * dropped as the RFC drops them for an absent resource. */
void router_requeue(router_t *r, xml_tree_t *stanza);
/* The error answer to a stanza that router_requeue() routed, given later
 * (a module finished with it after waiting: offline storage full): sent as
 * part of the requeued backlog, so that it does not count against the
 * receiver's output limit either. */
void router_requeue_error(router_t *r, const xml_node_t *stanza,
                          const char *type, const char *condition);
/* The same for a stanza as it was queued: its bytes, as serialized inside a
 * jabber:client stream. */
void router_requeue_bytes(router_t *r, const char *data, size_t len);

/* A session's stanzas are handled in the order it sent them. A module
 * whose handling of a stanza waits for something (the store: a roster
 * being loaded, an offline message being committed) holds the session:
 * until every hold is released, the stanzas it sends next are queued, and
 * past a few dozen its input is paused (ops->pause). router_release() runs
 * the queue once the last hold is gone. A session that is unbound while
 * held loses its holds; what it had queued is handed to router_requeue().
 * So a client that sees the answer to a later stanza knows the earlier one
 * was done — e.g. stored durably. */
void router_hold(router_t *r, route_target_t *t);
void router_release(router_t *r, route_target_t *t);
/* A lighter promise for writes that need not stop a stream of messages
 * (the archive's copy of each): while a session has writes under way, its
 * next messages are handled at once, but any other stanza it sends (an IQ,
 * presence) waits — with everything after it — until they are done, and
 * so does its XEP-0198 ack (settled). So an answer still means "every
 * earlier stanza is stored", without a store round trip per message.
 * Past 256 under way, messages wait too (the store's queue stays bounded
 * per sender). Lost, like holds, when the session is unbound. */
void router_write_begin(router_t *r, route_target_t *t);
void router_write_end(router_t *r, route_target_t *t);
/* Whether something the session sent still waits for the store (a hold,
 * a write, a queued stanza): an acknowledgement waits for `settled`. */
bool router_busy(const route_target_t *t);
/* The bound session with this full JID and connection id (the same
 * session, not a later one that took its resource), or NULL: for a module
 * that must come back to a session after waiting. */
route_target_t *router_find_conn(router_t *r, const jid_t *full,
                                 unsigned long conn);

/* The session bound to the full JID `full`, or NULL. */
route_target_t *router_find(router_t *r, const jid_t *full);

/* The first bound session of the account of `user` (its resource, if any,
 * is ignored), or NULL; the others follow through t->next_resource. */
route_target_t *router_resources(router_t *r, const jid_t *user);

/* The same by the account's bare JID, "node@domain" as prepared. */
route_target_t *router_resources_bare(router_t *r, const char *bare);

/* ------------------------------------------------------- federation
 *
 * Stanzas for domains this server does not serve go to server/s2s through
 * router_remote_t; stanzas from other servers come in through
 * router_route_remote(). Without a remote (federation off) a stanza for
 * another domain is answered with remote-server-not-found (RFC 6120
 * §10.4). */
typedef struct router_remote {
    /* Takes `tree`: a stanza with a 'from' of ours and a 'to' at `domain`
     * (nameprep'd), in jabber:client. It is sent, queued while a
     * connection is set up, or answered with router_bounce(). */
    void (*send)(void *ud, xml_tree_t *tree, const char *domain);
    void *ud;
} router_remote_t;

/* Sets (NULL: clears) where remote stanzas go; `remote` must outlive its
 * use. */
void router_set_remote(router_t *r, const router_remote_t *remote);
/* Whether stanzas can leave this server at all: federation is on or
 * components are configured (a module then hands what is for a JID it
 * does not serve to router_send_remote()). */
bool router_federates(const router_t *r);

/* A stanza a module sends (a presence broadcast, a subscription, a probe)
 * to a JID of another server or of a component. Takes the tree; dropped
 * with a debug line when it cannot go there (federation off). */
void router_send_remote(router_t *r, xml_tree_t *tree);

/* ------------------------------------------------------- components
 *
 * XEP-0114 components (server/component) are domains of their own that
 * live outside the process: stanzas for them go to their transport as a
 * stanza for another server would go to s2s, whoever sent it (a local
 * user, another component, another server); stanzas from them come in
 * through router_route_component() and may go to local users, other
 * components and, with federation on, other servers. */

/* Whether `domain` (nameprep'd) is a configured component's. */
bool router_is_component(const router_t *r, const char *domain);
/* The configured components: how many, and the i-th one's domain (its
 * name for service discovery in *name, NULL when it has none). */
size_t router_component_count(const router_t *r);
const char *router_component(const router_t *r, size_t i, const char **name);
/* Sets (NULL: clears) where stanzas for components go. `send` takes the
 * tree (for `domain`, one of router_config_t.components): it delivers it
 * or, with the component away, answers it (router_bounce). */
void router_set_components(router_t *r, const router_remote_t *components);
/* A stanza from a component: 'from' a JID at the component's domain, 'to'
 * a valid JID (both checked by its stream), in jabber:client. Takes the
 * tree. Replies go back to the component. */
void router_route_component(router_t *r, xml_tree_t *tree);

/* The error for `stanza` that could not reach its remote domain
 * (remote-server-not-found, remote-server-timeout), sent by the server
 * to the stanza's local sender. Never for an error. */
void router_bounce(router_t *r, const xml_node_t *stanza, const char *type,
                   const char *condition);

/* A stanza from another server: its 'from' a JID of a domain the s2s
 * stream authenticated, its 'to' a JID of a domain we serve, already in
 * jabber:client. Takes the tree. Routed like a local user's stanza to
 * the same addressee (modules see a route_target_t with `remote` set as
 * the sender); replies and errors go back to the sender's server. */
void router_route_remote(router_t *r, xml_tree_t *tree);

/* The same as router_reply_error() for a stanza that came from another
 * server (router_route_remote), answered later, when its sender's
 * route_target_t is gone: the error goes back to that server. */
void router_reply_error_remote(router_t *r, const xml_node_t *stanza,
                               const char *type, const char *condition);

/* Sends an error reply to `stanza` back to `to` (RFC 6120 §8.3): type
 * 'error', to/from swapped, the original children included, never in
 * reply to an error. `type` is cancel/modify/wait/auth/continue. The
 * error's 'from' is the stanza's 'to'; when it had none, an IQ's error
 * has no 'from' (it was handled for the account, RFC 6120 §8.1.2.1) and a
 * message's or presence's comes from the sender's domain. */
void router_reply_error(route_target_t *to, const xml_node_t *stanza,
                        const char *type, const char *condition);

#endif
