/* im internals: what the roster module's files share (roster.c: the
 * account cache, jabber:iq:roster and the subscription state machine of RFC
 * 6121 §3 and Appendix A; presence.c: presence broadcast, probes and
 * directed presence of RFC 6121 §4). Nothing outside server/im includes
 * this.
 *
 * The roster of an account is kept in memory while the account has a bound
 * session or work waiting on it (an im_account_t in the module's cache);
 * otherwise it lives in the store only. Loading is asynchronous: work for
 * an account that is loading waits in the account's queue (im_job_t) and
 * runs, in order, once the roster is there; the session whose stanza
 * caused it is held meanwhile (router_hold), so that its later stanzas are
 * handled after it. Every change is written through to the store at once
 * (store_roster_update), in the order made; since the store runs requests
 * in order, a roster loaded later sees every change made before. */
#ifndef STARLING_IM_IM_INTERNAL_H
#define STARLING_IM_IM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/rcbuf.h"
#include "modules/module.h"
#include "router/router.h"
#include "store/store.h"

#define IM_NS_ROSTER "jabber:iq:roster"

typedef struct im_state im_state_t;
typedef struct im_account im_account_t;

/* A contact of an account: a roster item, or only a pending inbound
 * subscription request from someone not in the roster ("None + Pending
 * In" has no item, RFC 6121 §3.1.3). */
typedef struct im_item {
    struct im_item *next; /* hash chain */
    char *contact;        /* bare JID */
    char *name;           /* or NULL */
    char **groups;
    size_t group_count;
    unsigned sub; /* STORE_SUB_* */
    bool ask;
    bool approved;
    bool in_roster;
    /* The pending request's stanza, as delivered (from the contact's bare
     * JID to the account's), or NULL. */
    rcbuf_t *pending;
} im_item_t;

typedef enum im_load {
    IM_LOADING,
    IM_READY,
    IM_MISSING, /* no such account */
} im_load_t;

typedef struct im_job im_job_t;
/* Runs with the account loaded (READY or MISSING). `j->tree` is the
 * stanza; the job is freed afterwards. */
typedef void (*im_job_fn)(im_state_t *st, im_account_t *a, im_job_t *j);

struct im_job {
    im_job_t *next;
    im_job_fn run;
    xml_tree_t *tree; /* owned when `owned` */
    bool owned;
    /* The session that sent the stanza, when one did: found again by JID
     * and connection id (it may be gone when the job runs), and held
     * while the job waits. */
    jid_t origin;
    unsigned long origin_conn;
    bool has_origin;
    bool held;
};

struct im_account {
    im_account_t *next; /* cache hash chain */
    char *bare;         /* node@domain */
    char *node, *domain;
    im_load_t load;
    int64_t version;
    im_item_t **buckets;
    size_t nbuckets;
    size_t entries; /* items and pending-only entries */
    size_t items;   /* in_roster ones: what the size limit counts */
    im_job_t *jobs, *jobs_tail;
    bool running; /* its jobs are running: new ones queue behind */
};

/* One per bound session (route_target_t.im). */
typedef struct im_session {
    bool interested; /* asked for the roster: gets roster pushes */
    /* Its last available presence, serialized with its 'from' and no
     * 'to' (the recipient's is spliced in), or NULL while unavailable. */
    rcbuf_t *presence;
    const xml_node_t *presence_el; /* presence_tree's root */
    xml_tree_t *presence_tree;
    /* JIDs it sent directed available presence to that its broadcast
     * does not reach (RFC 6121 §4.6): they get its unavailable. */
    char **directed;
    size_t directed_count;
} im_session_t;

typedef struct im_settings {
    unsigned max_items;
} im_settings_t;

struct im_state {
    store_t *store; /* NULL: nothing is kept (unit tests) */
    const logger_t *log;
    const im_settings_t *settings;
    /* Set from each call: there is one worker (docs/architecture.md,
     * State by owner; with several, the cache becomes per worker). */
    router_t *router;
    const module_registry_t *modules;
    im_account_t **buckets;
    size_t nbuckets;
    size_t accounts;
    unsigned long next_id;
};

/* --- roster.c --- */

/* The cached account of `bare`, or NULL. */
im_account_t *im_account_find(im_state_t *st, const char *bare);
/* Runs j on the account of `bare` now when it is loaded, or once it is
 * (loading it when it is not cached). Takes ownership of j. */
void im_account_with(im_state_t *st, const char *bare, im_job_t *j);
/* Frees the account when nothing needs it in memory any more. */
void im_account_idle(im_state_t *st, im_account_t *a);
/* The same, counting session `gone` (being unbound) as not there. */
void im_account_idle_except(im_state_t *st, im_account_t *a,
                            const route_target_t *gone);
im_item_t *im_item_find(const im_account_t *a, const char *contact);

/* A job for stanza `tree` (not copied: the caller owns it while the job
 * runs at once; im_account_with copies it when it has to wait) sent by
 * `origin` (NULL: by the server). */
im_job_t *im_job_new(im_job_fn fn, xml_tree_t *tree,
                     const route_target_t *origin);

/* --- presence.c --- */

im_session_t *im_session_of(route_target_t *t);
/* Gives every available resource of `bare` the stanza `el`, with the
 * resource's full JID spliced in as 'to' when `tmpl` bytes are given
 * (serialized without 'to'), or as they are. */
void im_deliver_available(im_state_t *st, const char *bare,
                          const xml_node_t *el);
/* Sends the current presence of every available resource of the account
 * `from_bare` to every available resource of `to_bare` (after an approval,
 * RFC 6121 §3.1.5), or their unavailable presence (after a cancellation,
 * §3.2.2 and §3.3.3). */
void im_presence_to_contact(im_state_t *st, const char *from_bare,
                            const char *to_bare, bool available);

/* The presence hooks (presence.c) the module descriptor lists. */
module_result_t im_presence_account(module_call_t *c);
module_result_t im_presence_directed(module_call_t *c);
module_result_t im_session_bound(module_call_t *c);
module_result_t im_session_ended(module_call_t *c);
/* Delivers the pending requests of account `a` to session t (at its
 * initial presence, RFC 6121 §3.1.3). */
void im_pending_deliver(im_state_t *st, im_account_t *a, route_target_t *t);
/* Presence broadcast of an account whose roster is loaded. */
void im_broadcast(im_state_t *st, im_account_t *a, route_target_t *from,
                  const xml_node_t *el, bool available);

#endif
