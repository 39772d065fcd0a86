/* module: how a feature (a XEP, the IM rules of RFC 6121) plugs into the
 * server.
 *
 * A module is one C file with one module_desc_t: its name, its config
 * settings, init/fini, the IQ namespaces it answers, the hooks it runs on
 * routing and session events, and what it adds to service discovery. The
 * descriptors are listed once, in modules.c; the config's `modules` setting
 * switches them on and off.
 *
 * At start the enabled modules are built into a module_registry_t: one
 * instance per module (its settings and the state its init returned), the
 * hooks of every event sorted by priority, and the IQ handlers. The
 * registry is read-only afterwards, so that several worker threads can
 * share it; what a module changes at run time lives in its instance state,
 * never in a file-scope variable. The instance is shared by every worker
 * too: with one worker it may change on that worker's loop; once there are
 * several, such state must be per worker (docs/architecture.md, "State by
 * owner").
 *
 * The router does addressing and calls module_dispatch() for each routing
 * event: the hooks run from the highest priority down until one says
 * MODULE_HANDLED. An IQ get/set that no hook took is looked up by (type,
 * namespace of its child, addressee) among the IQ handlers; one that nobody
 * handles gets service-unavailable with the original child (RFC 6120
 * §8.4). */
#ifndef STARLING_MODULES_MODULE_H
#define STARLING_MODULES_MODULE_H

#include <stdbool.h>
#include <stddef.h>

#include "base/log.h"
#include "config/config.h"
#include "jid/jid.h"
#include "router/router.h"
#include "store/store.h"
#include "stream/stream.h"
#include "xml/xml.h"

typedef enum module_result {
    MODULE_PASS,    /* not mine, or not only mine: let the next one see it */
    MODULE_HANDLED, /* done with it; nothing after this runs */
} module_result_t;

/* Who a stanza is addressed to, from the router's point of view. */
typedef enum module_addressee {
    /* No 'to' (RFC 6120 §10.3), or, for an IQ, 'to' the sender's own bare
     * JID: the server handles it for the account. Replies carry no 'from'
     * or the bare JID (RFC 6120 §8.1.2.1), never the domain. */
    MODULE_TO_ACCOUNT,
    /* 'to' a domain we serve, or domain/resource (RFC 6120 §10.5.1). */
    MODULE_TO_SERVER,
    /* 'to' a local bare JID (RFC 6121 §8.5.2); for an IQ, of another
     * account (the sender's own is MODULE_TO_ACCOUNT). */
    MODULE_TO_BARE,
    /* 'to' a local full JID (RFC 6121 §8.5.3), bound or not. Hooks see
     * both; IQ handlers only IQs for a resource that is not bound (a bound
     * one gets the IQ itself). */
    MODULE_TO_FULL,
    /* 'to' a JID at a domain we do not serve (federation, RFC 6120
     * §10.4): after the hooks, the stanza goes to server/s2s, which sends
     * it or answers with remote-server-not-found / -timeout. */
    MODULE_TO_REMOTE,
    MODULE_TO_COUNT,
} module_addressee_t;

/* Bits for module_iq_handler_t.to. */
#define MODULE_TO_BIT(a) (1u << (a))

typedef enum module_event {
    /* Routing events: a stanza from a bound session, by kind and
     * addressee. The router's own default for each runs after the hooks
     * when none of them handled it: delivery to a bound full JID, the IQ
     * handlers, service-unavailable for a message to the server. */
    MODULE_EV_MESSAGE_ACCOUNT,
    MODULE_EV_MESSAGE_SERVER,
    MODULE_EV_MESSAGE_BARE,
    MODULE_EV_MESSAGE_FULL,
    MODULE_EV_MESSAGE_REMOTE,
    MODULE_EV_PRESENCE_ACCOUNT,
    MODULE_EV_PRESENCE_SERVER,
    MODULE_EV_PRESENCE_BARE,
    MODULE_EV_PRESENCE_FULL,
    MODULE_EV_PRESENCE_REMOTE,
    MODULE_EV_IQ_ACCOUNT,
    MODULE_EV_IQ_SERVER,
    MODULE_EV_IQ_BARE,
    MODULE_EV_IQ_FULL,
    MODULE_EV_IQ_REMOTE,
    /* Session events (no stanza): a resource was bound, sent available or
     * unavailable presence, or ended (unbound). Fired by the router
     * (bound, ended) and by server/im's presence (available: the
     * session's initial presence, not its updates; unavailable). */
    MODULE_EV_SESSION_BOUND,
    MODULE_EV_SESSION_AVAILABLE,
    MODULE_EV_SESSION_UNAVAILABLE,
    MODULE_EV_SESSION_ENDED,
    /* A message (normal or chat) for a local account with no available
     * resource of non-negative priority (RFC 6121 §8.5.2.2): c->to is that
     * bare JID. A hook that takes it (offline storage, XEP-0160) returns
     * HANDLED; otherwise the sender gets service-unavailable. Fired by
     * server/im. */
    MODULE_EV_MESSAGE_OFFLINE,
    /* A session can now receive messages sent to its bare JID: it sent
     * available presence with a non-negative priority, at its initial
     * presence or after a negative one (XEP-0160 §4 delivers offline
     * messages then). Fired by server/im's presence. */
    MODULE_EV_SESSION_REACHABLE,
    /* The XEP-0115 caps of an available session of ours are known
     * (module_registry_entity_has() answers for it): at its presence when
     * the ver was verified before, or once the server has verified it.
     * Fired by the caps module (PEP sends the last items then). */
    MODULE_EV_SESSION_CAPS,
    MODULE_EV_COUNT,
} module_event_t;

typedef enum module_iq_type {
    MODULE_IQ_GET,
    MODULE_IQ_SET,
} module_iq_type_t;

typedef struct module_registry module_registry_t;

/* What a hook or an IQ handler is given. Valid for the call only. */
typedef struct module_call {
    router_t *router;
    const module_registry_t *modules;
    const logger_t *log;
    /* The session that sent the stanza, or whose session event this is. */
    route_target_t *from;
    /* The stanza (the router owns it; a hook that keeps something copies
     * it), or NULL for a session event. */
    xml_tree_t *tree;
    /* Its 'to', parsed and prepared; NULL when it has none. */
    const jid_t *to;
    module_addressee_t addressee;
    module_event_t event;
    /* This module's instance: what its init returned, and its settings
     * (the module's own struct, filled from the config). */
    void *state;
    const void *settings;
    /* A message's id in its sender's archive (XEP-0359), "" when it has
     * none: set by the archive (mam.c), read by carbons for the copies of
     * what was sent (XEP-0313 §3.2). */
    char sender_sid[24];
} module_call_t;

typedef module_result_t (*module_hook_cb)(module_call_t *c);
/* `child` is the IQ's one child, whose namespace selected the handler. */
typedef module_result_t (*module_iq_cb)(module_call_t *c,
                                        const xml_node_t *child);

typedef struct module_hook {
    module_event_t event;
    int priority; /* higher runs first; equal: list order of modules.c */
    module_hook_cb run;
} module_hook_t;

typedef struct module_iq_handler {
    module_iq_type_t type;
    const char *ns; /* namespace of the IQ's child */
    unsigned to;    /* MODULE_TO_BIT()s of the addressees it answers */
    module_iq_cb handle;
} module_iq_handler_t;

/* XEP-0030 §3.1 identity. */
typedef struct module_identity {
    const char *category;
    const char *type;
    const char *name; /* or NULL */
} module_identity_t;

/* An IQ a client sent before authenticating (XEP-0077 in-band
 * registration, XEP-0445 invitation tokens): what a module's preauth_iq is
 * given. The c2s session stays while the request is open; the module
 * answers exactly once with module_preauth_answer(), at once or later
 * (after the store), which frees the request. */
typedef struct module_preauth module_preauth_t;
struct module_preauth {
    xml_tree_t *iq;      /* the request, owned by the request */
    const char *domain;  /* the service the stream names (a host of ours) */
    const char *address; /* the client's IP address */
    unsigned long conn;  /* the connection's id, unique on its worker */
    /* The owner's: sends `answer` (NULL: nothing) and frees p. */
    void (*answer)(module_preauth_t *p, const xml_node_t *answer);
};

/* Answers p (see module_preauth_t) and frees it. */
void module_preauth_answer(module_preauth_t *p, const xml_node_t *answer);
/* Answers p with an IQ error of `type` and `condition` (and `text` when
 * not NULL), without the request's payload (a password is never echoed). */
void module_preauth_error(module_preauth_t *p, const char *type,
                          const char *condition, const char *text);
/* Answers p with an empty IQ result. */
void module_preauth_result(module_preauth_t *p);

/* What init is given. */
typedef struct module_env {
    const server_config_t *cfg; /* NULL in unit tests that need none */
    const logger_t *log;
    const void *settings; /* this module's, or NULL when it has none */
    /* The store (store.h), answering on the worker's loop; NULL in unit
     * tests that run without one (a module then keeps nothing). */
    store_t *store;
} module_env_t;

typedef struct module_desc {
    const char *name; /* the name `modules = [...]` uses */
    /* Always on; the `modules` setting does not switch it (server/im). */
    bool core;
    /* On when the config does not name a `modules` list. */
    bool default_on;

    /* Settings, read from a group named after the module (`version = {
     * show_os = true; };`). `settings_default` points at a struct of
     * `settings_size` bytes holding the defaults; `settings` describes its
     * fields (name NULL ends). All NULL/0 for a module with none. */
    const config_field_t *settings;
    size_t settings_size;
    const void *settings_default;

    /* Returns the instance state (may be NULL) and sets *ok; false refuses
     * to start. NULL init: no state. */
    void *(*init)(const module_env_t *env, bool *ok);
    void (*fini)(void *state);

    const module_iq_handler_t *iq; /* handle NULL ends; may be NULL */
    const module_hook_t *hooks;    /* run NULL ends; may be NULL */

    /* XEP-0030 contributions of the server's domain: identities (category
     * NULL ends) and features (NULL ends); either may be NULL. */
    const module_identity_t *identities;
    const char *const *features;
    /* XEP-0030 features of an account's bare JID (what the server does
     * for every account: PEP), NULL ends; may be NULL. */
    const char *const *account_features;
    /* And identities of it (PEP: pubsub/pep), category NULL ends. */
    const module_identity_t *account_identities;
    /* XEP-0128 extensions (data forms) of the server's disco#info: adds
     * them under `query` of tree t. Returns 0, or -1 when out of memory.
     * NULL for a module with none. */
    int (*disco_extend)(void *state, const void *settings, xml_tree_t *t,
                        xml_node_t *query);

    /* Called once every module has started, with the registry (for what
     * needs to see them all: the server's XEP-0115 caps). May be NULL. */
    void (*ready)(void *state, const module_registry_t *reg);

    /* Whether the entity `full` (a full JID, ours or another server's)
     * announced `feature` in XEP-0115 caps the server verified (a PEP
     * node's "+notify"). NULL: not known by this module. */
    bool (*entity_has)(void *state, const char *full, const char *feature);

    /* Whether a stanza from JID `from` must not reach `to` or leave for
     * it (XEP-0191: one of them blocks the other). For what the server
     * itself sends on a user's behalf (presence broadcasts, probe
     * answers), which no routing hook sees. NULL: never. */
    bool (*blocked)(void *state, const char *from, const jid_t *to);

    /* Whether the account `owner` (bare JID) has `contact` (bare) in its
     * roster: 1 or 0 when the module has that roster in memory (the
     * account has a session), -1 when it would have to read the store.
     * NULL: not known by this module. */
    int (*in_roster)(void *state, const char *owner, const char *contact);

    /* Stream features and their top-level elements (stream management,
     * CSI, ...): rows of lib/stream's feature table (ns NULL ends; may be
     * NULL). The registry copies them with `ud` set to the module's
     * instance state; c2s offers them on every client stream. A row's
     * handle() gets the c2s session as owner_ud. */
    const stream_feature_t *stream_features;

    /* An IQ before authentication (module_preauth_t): returns false when
     * the module does not take it (the next module is asked; none: the
     * stream ends with not-authorized), true when it answers, now or
     * later. NULL: none. */
    bool (*preauth_iq)(void *state, const void *settings, module_preauth_t *p);
} module_desc_t;

/* Builds the registry from `count` descriptors, those with enabled[i] (or
 * core) on; settings[i] is module i's settings struct (NULL: the
 * descriptor's defaults). Calls every init in list order. Returns NULL
 * (and has called fini on those already started) when an init refuses or
 * memory runs out, with the reason in err. */
module_registry_t *module_registry_new(const module_desc_t *const *descs,
                                       size_t count, const bool *enabled,
                                       const void *const *settings,
                                       const server_config_t *cfg,
                                       store_t *store, const logger_t *log,
                                       char *err, size_t errlen);
/* Calls every fini in reverse order and frees. NULL is allowed. */
void module_registry_free(module_registry_t *reg);

/* The enabled modules, in list order. */
size_t module_registry_count(const module_registry_t *reg);
const module_desc_t *module_registry_desc(const module_registry_t *reg,
                                          size_t i);
bool module_registry_has(const module_registry_t *reg, const char *name);

/* The stream features of every enabled module, in list order, each with
 * `ud` = its module's state; *count gets their number. The array belongs
 * to the registry (and so is read-only and shared, like the registry). */
const stream_feature_t *
module_registry_stream_features(const module_registry_t *reg, size_t *count);

/* Calls every enabled module's disco_extend, in list order; -1 when one
 * failed (out of memory). */
int module_registry_disco_extend(const module_registry_t *reg, xml_tree_t *t,
                                 xml_node_t *query);

/* Offers p to the modules with a preauth_iq in list order; false when
 * none took it (p is then still the caller's). */
bool module_registry_preauth_iq(const module_registry_t *reg,
                                module_preauth_t *p);
/* Whether any enabled module takes IQs before authentication. */
bool module_registry_has_preauth(const module_registry_t *reg);

/* The roster module's answer to in_roster(), or -1 when none knows. */
int module_registry_in_roster(const module_registry_t *reg, const char *owner,
                              const char *contact);

/* Whether a module that keeps XEP-0115 caps knows `full` has `feature`. */
bool module_registry_entity_has(const module_registry_t *reg, const char *full,
                                const char *feature);

/* XEP-0030 §3.1: the server's disco#info under `query` of tree t — the
 * identities and features of every enabled module, and their XEP-0128
 * forms. 0, or -1 when out of memory. */
int module_registry_server_info(const module_registry_t *reg, xml_tree_t *t,
                                xml_node_t *query);

/* The node of the server's XEP-0115 caps. */
#define MODULE_CAPS_NODE "urn:starling:caps"

/* XEP-0115 §5.1: the SHA-1 verification string of a disco#info <query/>
 * (identities, features, XEP-0128 forms), base64, into out (29 bytes
 * suffice). 0, or -1 when the query is not well formed for it (a form
 * without FORM_TYPE, duplicate identities or features, §5.4). */
int module_caps_ver(const xml_node_t *query, char *out, size_t size);

/* Small helpers modules share. A string hash for their tables (djb2),
 * and "node@domain" split into its node (copied into node, size bytes)
 * and domain (pointing into bare); false when bare has no '@'. */
size_t module_str_hash(const char *s);
bool module_split_bare(const char *bare, char *node, size_t size,
                       const char **domain);

/* XEP-0082 DateTime, as clients send it in forms (XEP-0313 start/end):
 * exactly YYYY-MM-DDThh:mm:ss, optional fractional seconds (the first
 * three digits kept), then Z or ±hh:mm; fields in range (a leap second 60
 * is allowed). Milliseconds since the epoch in *ms, or false. */
bool module_datetime_parse(const char *s, int64_t *ms);
/* ms since the epoch → YYYY-MM-DDThh:mm:ss.sssZ into out (32 bytes do). */
void module_datetime_format(int64_t ms, char *out, size_t len);

/* Whether any enabled module says `from` -> `to` is blocked. */
bool module_registry_blocked(const module_registry_t *reg, const char *from,
                             const jid_t *to);

/* Runs the hooks of `ev` from the highest priority down until one returns
 * MODULE_HANDLED; fills c->state/settings for each. NULL reg: PASS. */
module_result_t module_dispatch(const module_registry_t *reg, module_event_t ev,
                                module_call_t *c);

/* Looks up the IQ handler for the IQ get/set c->tree->root by type,
 * namespace of its child and c->addressee, and runs it. PASS when none
 * matches or the one that matches passes. */
module_result_t module_dispatch_iq(const module_registry_t *reg,
                                   module_call_t *c);

/* The event for a stanza named `name` ("message", "presence", "iq") to
 * addressee `a`. */
module_event_t module_event_for(const char *name, module_addressee_t a);

/* ------------------------------------------------------------ replies */

/* Starts the result of the IQ c->tree->root (RFC 6120 §8.2.3): type
 * 'result', the same id, 'to' the sender, 'from' the entity addressed —
 * none when the IQ had no 'to' (RFC 6120 §8.1.2.1). Returns the <iq/> of a
 * new tree in *out (the caller adds the payload and sends it with
 * module_send()), or NULL when out of memory. */
xml_node_t *module_iq_result(const module_call_t *c, xml_tree_t **out);

/* Delivers a tree built for the sender to its session and frees it. */
void module_send(const module_call_t *c, xml_tree_t *t);

/* Answers the stanza with an error (router_reply_error()). */
void module_reply_error(const module_call_t *c, const char *type,
                        const char *condition);

/* ------------------------------------------------------- later replies
 *
 * A handler whose answer waits (for the store) keeps the stanza in a
 * module_later_t. A local sender is held (router_hold) until the answer
 * is given, so that its next stanzas are handled after this one; a sender
 * on another server is answered through its server. Exactly one of
 * module_later_send()/module_later_error()/module_later_drop() ends it. */
typedef struct module_later module_later_t;

/* Aborts when out of memory (like the store's requests). */
module_later_t *module_later_new(const module_call_t *c);
/* The stanza, as it was routed (its root). */
const xml_node_t *module_later_stanza(const module_later_t *l);
/* The account it was for (the 'to' bare JID, or the sender's own for an
 * IQ to the account): its node and domain. */
const char *module_later_node(const module_later_t *l);
const char *module_later_domain(const module_later_t *l);
/* It was addressed to the sender's own account (MODULE_TO_ACCOUNT). */
bool module_later_for_account(const module_later_t *l);
/* The sender's full JID, as a string ("" for the server's own sender). */
const char *module_later_sender(const module_later_t *l);
/* Starts the IQ result (as module_iq_result()). */
xml_node_t *module_later_result(module_later_t *l, xml_tree_t **out);
/* Delivers a stanza to the (local) sender and keeps l: for answers of
 * several stanzas before the IQ result (XEP-0313 query results). */
void module_later_deliver(module_later_t *l, const xml_node_t *el);
/* Sends t (NULL: nothing) to the sender, releases and frees l. */
void module_later_send(module_later_t *l, xml_tree_t *t);
/* After a store write: an empty result when err is STORE_OK (returns
 * true), else internal-server-error (false); either way l is ended. */
bool module_later_stored(module_later_t *l, int err);
/* Answers with an error, releases and frees l. */
void module_later_error(module_later_t *l, const char *type,
                        const char *condition);
/* The same with an application-specific condition <app_name
 * xmlns=app_ns/> beside the defined one (XEP-0060's pubsub#errors). */
void module_later_error_app(module_later_t *l, const char *type,
                            const char *condition, const char *app_ns,
                            const char *app_name);

/* Parses `len` bytes of serialized elements (as xml_serialize() wrote
 * them with no inherited namespace: stored documents) and adds copies of
 * them, in order, under `parent` of tree t. Returns 0, or -1 when the
 * bytes do not parse (a stored document this code did not write). Aborts
 * when out of memory. */
int module_parse_into(xml_tree_t *t, xml_node_t *parent, const char *data,
                      size_t len);
/* The first element of a stored document as the root of a new tree, or
 * NULL when the bytes hold none that parses. */
xml_tree_t *module_parse_doc(const char *data, size_t len);

#endif
