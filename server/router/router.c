/* Addressing and dispatch. The rules, in the order router_route() applies
 * them, with the sections that define them:
 *
 *  1. A malformed 'to' gets jid-malformed (RFC 6120 §8.3.3.8).
 *  2. An IQ that breaks RFC 6120 §8.2.3 (no id, bad type, wrong number of
 *     children) gets bad-request.
 *  3. 'to' a domain we do not serve (RFC 6120 §10.4): remote-server-not-found
 *     until federation exists.
 *  4. Otherwise the stanza is classified by addressee — the account (no
 *     'to', RFC 6120 §10.3; for an IQ also 'to' the sender's own bare JID),
 *     the server (our domain or domain/resource, §10.5.1), a local bare JID
 *     (RFC 6121 §8.5.2) or full JID (§8.5.3) — and the modules' hooks for
 *     that event run (modules/module.h). The IM rules (messages to a bare
 *     JID, the session's own presence) are such hooks, in server/im.
 *  5. What no hook handled gets the router's defaults: a bound full JID
 *     gets the stanza; an IQ get/set goes to the IQ handler for its
 *     namespace, and one that nobody handles gets service-unavailable with
 *     the original child (RFC 6120 §8.4); a message to the server gets
 *     service-unavailable; anything else is consumed.
 *
 * No namespace and no IM rule is decided here: a new XEP is a module. */
#include "router/router.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/rand.h"
#include "base/hash.h"
#include "base/xalloc.h"
#include "modules/module.h"
#include "stream/stanza.h"
#include "stream/stream.h"

struct router_account {
    struct router_account *next; /* hash chain */
    char *bare;                  /* "node@domain" */
    route_target_t *resources;
    unsigned count;
};

struct router {
    const router_config_t *cfg;
    const logger_t *log;
    struct router_account **buckets;
    size_t nbuckets;
    size_t accounts;
    size_t sessions;
    unsigned long serializations;
    unsigned requeueing; /* inside router_requeue */
    /* Where stanzas are serialized before their rcbuf is made: kept
     * between stanzas (up to SCRATCH_KEEP bytes) so that serializing does
     * not allocate and grow a buffer each time. */
    buf_t scratch;
    /* The server itself as a sender: stanzas handed back by sessions that
     * ended are routed again from here, and what comes back to it (an
     * error for the original sender) goes to the JID in its 'to'. */
    route_target_t self;
    /* Where stanzas for other domains go (server/s2s), or NULL. */
    const router_remote_t *remote;
    /* Where stanzas for components go (server/component), or NULL. */
    const router_remote_t *components;
};

/* ------------------------------------------------------------ registry */

/* ------------------------------------------------------------ stanzas */

enum { SCRATCH_KEEP = 64 * 1024 };

rcbuf_t *route_stanza_bytes(route_stanza_t *st)
{
    if (st->bytes != NULL)
        return st->bytes;
    buf_t local = BUF_INIT;
    buf_t *b = st->router != NULL ? &st->router->scratch : &local;
    buf_reset(b);
    if (xml_serialize(st->el, XML_NS_CLIENT, b) < 0)
        xalloc_fail(b->cap);
    st->bytes = rcbuf_new(b->data, b->len);
    if (st->bytes == NULL)
        xalloc_fail(b->len);
    if (b == &local || b->cap > SCRATCH_KEEP)
        buf_free(b);
    else
        buf_reset(b);
    if (st->router != NULL)
        st->router->serializations++;
    return st->bytes;
}

void route_stanza_done(route_stanza_t *st)
{
    rcbuf_unref(st->bytes);
    st->bytes = NULL;
}

bool router_deliver(route_target_t *t, route_stanza_t *st)
{
    if (st->router != NULL && st->router->requeueing > 0)
        st->requeued = true;
    return t->ops->deliver(t, st);
}

unsigned long router_serializations(const router_t *r)
{
    return r->serializations;
}

/* What the server sends as itself (the error for a stanza that came back)
 * goes to the bound session named by its 'to'; with none there it is
 * dropped, as a stanza to an absent resource would be. */
static bool self_deliver(route_target_t *t, route_stanza_t *st)
{
    router_t *r = (router_t *)((char *)t - offsetof(router_t, self));
    const char *to_s = xml_element_attr(st->el, NULL, "to");
    jid_t to;
    if (to_s == NULL || jid_parse(to_s, strlen(to_s), 0, &to) != JID_OK)
        return false;
    if (!router_serves(r, to.domain)) {
        /* An error for a component or another server's user (a stanza of
         * theirs that could not be delivered onwards). */
        jid_clear(&to);
        xml_tree_t *copy = xml_tree_new();
        if (copy == NULL || xml_node_copy(copy, NULL, st->el) == NULL)
            xalloc_fail(256);
        router_send_remote(r, copy);
        return true;
    }
    route_target_t *dest = router_find(r, &to);
    jid_clear(&to);
    if (dest == NULL) {
        LOG(r->log, LOG_DEBUG, 0, "%s from the server to %s dropped: not bound",
            st->el->name, to_s);
        return false;
    }
    st->requeued = r->requeueing > 0;
    return dest->ops->deliver(dest, st);
}

static void self_kick(route_target_t *t, const char *condition)
{
    (void)t;
    (void)condition;
}

static const route_target_ops_t self_ops = {.deliver = self_deliver,
                                            .kick = self_kick};

router_t *router_new(const router_config_t *cfg, const logger_t *log)
{
    router_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->cfg = cfg;
    r->log = log;
    r->self.ops = &self_ops;
    r->nbuckets = 64;
    r->buckets = calloc(r->nbuckets, sizeof(*r->buckets));
    if (r->buckets == NULL) {
        free(r);
        return NULL;
    }
    return r;
}

void router_free(router_t *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nbuckets; i++) {
        struct router_account *a = r->buckets[i];
        while (a != NULL) {
            struct router_account *next = a->next;
            for (route_target_t *t = a->resources; t != NULL;
                 t = t->next_resource)
                t->account = NULL;
            free(a->bare);
            free(a);
            a = next;
        }
    }
    free(r->buckets);
    buf_free(&r->scratch);
    free(r);
}

bool router_serves(const router_t *r, const char *domain)
{
    for (size_t i = 0; i < r->cfg->host_count; i++)
        if (strcmp(r->cfg->hosts[i], domain) == 0)
            return true;
    return false;
}

static struct router_account *account_find(const router_t *r, const char *bare)
{
    size_t b = hash_str(bare) & (r->nbuckets - 1);
    for (struct router_account *a = r->buckets[b]; a != NULL; a = a->next)
        if (strcmp(a->bare, bare) == 0)
            return a;
    return NULL;
}

static void grow(router_t *r)
{
    size_t n = r->nbuckets * 2;
    struct router_account **nb = calloc(n, sizeof(*nb));
    if (nb == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < r->nbuckets; i++) {
        struct router_account *a = r->buckets[i];
        while (a != NULL) {
            struct router_account *next = a->next;
            size_t b = hash_str(a->bare) & (n - 1);
            a->next = nb[b];
            nb[b] = a;
            a = next;
        }
    }
    free(r->buckets);
    r->buckets = nb;
    r->nbuckets = n;
}

static struct router_account *account_get(router_t *r, const char *bare)
{
    struct router_account *a = account_find(r, bare);
    if (a != NULL)
        return a;
    if (r->accounts + 1 > r->nbuckets)
        grow(r);
    a = xcalloc(1, sizeof(*a));
    a->bare = xstrdup(bare);
    size_t b = hash_str(bare) & (r->nbuckets - 1);
    a->next = r->buckets[b];
    r->buckets[b] = a;
    r->accounts++;
    return a;
}

static void account_drop(router_t *r, struct router_account *a)
{
    size_t b = hash_str(a->bare) & (r->nbuckets - 1);
    for (struct router_account **pp = &r->buckets[b]; *pp != NULL;
         pp = &(*pp)->next) {
        if (*pp == a) {
            *pp = a->next;
            break;
        }
    }
    r->accounts--;
    free(a->bare);
    free(a);
}

static route_target_t *resource_find(const struct router_account *a,
                                     const char *resource)
{
    for (route_target_t *t = a->resources; t != NULL; t = t->next_resource)
        if (strcmp(t->jid.resource, resource) == 0)
            return t;
    return NULL;
}

/* Runs the hooks of a session event for t. */
static void session_event(router_t *r, route_target_t *t, module_event_t ev)
{
    module_call_t c = {
        .router = r,
        .log = r->log,
        .from = t,
        .addressee = MODULE_TO_ACCOUNT,
    };
    module_dispatch(r->cfg->modules, ev, &c);
}

/* ---------------------------------------------------------------- holds */

struct router_held {
    struct router_held *next;
    xml_tree_t *tree;
};

/* Past this many queued stanzas a held session's input is paused. */
enum { HELD_PAUSE = 32 };

static void route_now(router_t *r, route_target_t *from, xml_tree_t *tree);

void router_hold(router_t *r, route_target_t *t)
{
    (void)r;
    t->holds++;
}

static void held_push(route_target_t *t, xml_tree_t *tree)
{
    struct router_held *h = xmalloc(sizeof(*h));
    h->next = NULL;
    h->tree = tree;
    if (t->held_tail != NULL)
        t->held_tail->next = h;
    else
        t->held_head = h;
    t->held_tail = h;
    t->held_count++;
    if (t->held_count >= HELD_PAUSE && !t->held_paused &&
        t->ops->pause != NULL) {
        t->held_paused = true;
        t->ops->pause(t, true);
    }
}

static xml_tree_t *held_pop(route_target_t *t)
{
    struct router_held *h = t->held_head;
    if (h == NULL)
        return NULL;
    t->held_head = h->next;
    if (t->held_head == NULL)
        t->held_tail = NULL;
    t->held_count--;
    xml_tree_t *tree = h->tree;
    free(h);
    return tree;
}

/* Past this many writes under way a session's messages wait too: the
 * store's queue (memory) is bounded per sender, as with holds. */
enum { WRITES_MAX = 256 };

/* Whether `tree` from t must wait: t is held, has too many writes under
 * way, or has some and this is not a message. */
static bool must_wait(const route_target_t *t, const xml_tree_t *tree)
{
    return t->holds > 0 || t->writes >= WRITES_MAX ||
           (t->writes > 0 && strcmp(tree->root->name, "message") != 0);
}

bool router_busy(const route_target_t *t)
{
    return t->holds > 0 || t->writes > 0 || t->held_head != NULL;
}

/* Routes what t queued, in order, until one must wait again (each stanza
 * may take a new hold or start a write). */
static void drain(router_t *r, route_target_t *t)
{
    while (t->held_head != NULL && !must_wait(t, t->held_head->tree))
        route_now(r, t, held_pop(t));
    if (t->held_head == NULL && t->held_paused) {
        t->held_paused = false;
        if (t->ops->pause != NULL)
            t->ops->pause(t, false);
    }
    if (!router_busy(t) && t->ops->settled != NULL)
        t->ops->settled(t);
}

void router_release(router_t *r, route_target_t *t)
{
    if (t->holds == 0)
        return;
    if (--t->holds > 0)
        return;
    drain(r, t);
}

void router_write_begin(router_t *r, route_target_t *t)
{
    (void)r;
    t->writes++;
}

void router_write_end(router_t *r, route_target_t *t)
{
    if (t->writes == 0)
        return;
    t->writes--;
    if (t->holds == 0 && (t->writes == 0 || t->held_head != NULL))
        drain(r, t);
}

/* A session that ends while held: its holds are void, and the stanzas it
 * sent meanwhile are routed on its behalf like those it never got. */
static void held_drop(router_t *r, route_target_t *t)
{
    t->holds = 0;
    t->writes = 0;
    t->held_paused = false;
    xml_tree_t *tree;
    while ((tree = held_pop(t)) != NULL)
        router_requeue(r, tree);
}

route_target_t *router_find_conn(router_t *r, const jid_t *full,
                                 unsigned long conn)
{
    route_target_t *t = router_find(r, full);
    return t != NULL && t->conn == conn ? t : NULL;
}

void router_unbind(router_t *r, route_target_t *t)
{
    struct router_account *a = t->account;
    if (a == NULL)
        return;
    if (router_busy(t))
        held_drop(r, t);
    session_event(r, t, MODULE_EV_SESSION_ENDED);
    for (route_target_t **pp = &a->resources; *pp != NULL;
         pp = &(*pp)->next_resource) {
        if (*pp == t) {
            *pp = t->next_resource;
            break;
        }
    }
    t->next_resource = NULL;
    t->account = NULL;
    t->available = false;
    a->count--;
    r->sessions--;
    if (a->resources == NULL)
        account_drop(r, a);
}

const char *router_bind(router_t *r, route_target_t *t, const jid_t *user,
                        const char *resource)
{
    char bare[JID_FORMAT_BUF];
    if (jid_format(user, true, bare, sizeof(bare)) < 0)
        return "internal-server-error";
    struct router_account *a = account_get(r, bare);
    if (a == NULL)
        return "resource-constraint";

    char generated[24];
    if (resource == NULL) {
        /* RFC 6120 §7.6: a server-generated resource, unique for the
         * account; 72 random bits make a collision vanishingly rare, and
         * we check anyway. */
        do {
            if (rand_id(generated, sizeof(generated), 72) < 0)
                return "internal-server-error";
        } while (resource_find(a, generated) != NULL);
        resource = generated;
    }

    route_target_t *old = resource_find(a, resource);
    if (old != NULL) {
        if (r->cfg->conflict == ROUTER_CONFLICT_OLD_WINS)
            return "conflict";
        /* RFC 6120 §7.7.2.2: the new session wins; the old one ends with
         * a conflict stream error. */
        router_unbind(r, old);
        LOG(r->log, LOG_INFO, old->conn,
            "resource conflict: replaced by connection c%lu", t->conn);
        old->ops->kick(old, "conflict");
        a = account_get(r, bare);
        if (a == NULL)
            return "resource-constraint";
    } else if (r->cfg->max_resources > 0 && a->count >= r->cfg->max_resources) {
        if (a->resources == NULL)
            account_drop(r, a);
        return "resource-constraint";
    }

    char full[JID_FORMAT_BUF + JID_PART_BUF];
    snprintf(full, sizeof(full), "%s/%s", bare, resource);
    jid_t j;
    if (jid_parse(full, strlen(full), 0, &j) != JID_OK) {
        if (a->resources == NULL)
            account_drop(r, a);
        return "bad-request";
    }
    jid_clear(&t->jid);
    t->jid = j;
    t->available = false;
    t->priority = 0;
    t->account = a;
    t->next_resource = a->resources;
    a->resources = t;
    a->count++;
    r->sessions++;
    session_event(r, t, MODULE_EV_SESSION_BOUND);
    return NULL;
}

size_t router_session_count(const router_t *r)
{
    return r->sessions;
}

route_target_t *router_find(router_t *r, const jid_t *full)
{
    if (full->resource == NULL)
        return NULL;
    route_target_t *t = router_resources(r, full);
    while (t != NULL && strcmp(t->jid.resource, full->resource) != 0)
        t = t->next_resource;
    return t;
}

route_target_t *router_resources(router_t *r, const jid_t *user)
{
    char bare[JID_FORMAT_BUF];
    if (jid_format(user, true, bare, sizeof(bare)) < 0)
        return NULL;
    struct router_account *a = account_find(r, bare);
    return a != NULL ? a->resources : NULL;
}

route_target_t *router_resources_bare(router_t *r, const char *bare)
{
    struct router_account *a = account_find(r, bare);
    return a != NULL ? a->resources : NULL;
}

/* ------------------------------------------------------------- replies */

/* The error reply to `stanza`, from `from_attr` (NULL: the original 'to',
 * or none). */
static void reply_error_from(route_target_t *to, const xml_node_t *stanza,
                             const char *from_attr, const char *type,
                             const char *condition)
{
    xml_tree_t *t = stanza_error_reply(stanza, type, condition, from_attr);
    if (t == NULL)
        return; /* an error is never answered (RFC 6120 §8.3.1) */
    route_stanza_t st = ROUTE_STANZA(t->root, NULL);
    to->ops->deliver(to, &st);
    route_stanza_done(&st);
    xml_tree_free(t);
}

void router_reply_error(route_target_t *to, const xml_node_t *stanza,
                        const char *type, const char *condition)
{
    /* RFC 6120 §8.3.1: 'from' is the entity that was addressed. */
    const char *from_attr = xml_element_attr(stanza, NULL, "to");
    if (from_attr == NULL && strcmp(stanza->name, "iq") != 0)
        from_attr = to->jid.domain; /* the server, for the account */
    /* An IQ with no 'to' was handled for the account: RFC 6120 §8.1.2.1
     * says its reply has no 'from' (or the bare JID), never the domain. */
    reply_error_from(to, stanza, from_attr, type, condition);
}

/* ------------------------------------------------------------- routing */

static bool is_type(const char *type, const char *want)
{
    return type != NULL && strcmp(type, want) == 0;
}

/* RFC 6120 §8.2.3 and feature set 10.4-1..5. */
static bool iq_valid(const xml_node_t *el)
{
    const char *id = xml_element_attr(el, NULL, "id");
    const char *type = xml_element_attr(el, NULL, "type");
    if (id == NULL || type == NULL)
        return false;
    size_t n = xml_element_count_children(el);
    if (is_type(type, "get") || is_type(type, "set"))
        return n == 1;
    if (is_type(type, "result"))
        return n <= 1;
    return is_type(type, "error");
}

/* What happens to a stanza that no hook handled. */
static void route_default(router_t *r, module_call_t *c)
{
    const xml_node_t *el = c->tree->root;
    const char *type = xml_element_attr(el, NULL, "type");

    if (c->addressee == MODULE_TO_FULL) {
        /* RFC 6121 §8.5.3.1: a connected resource gets the stanza. */
        route_target_t *t = router_find(r, c->to);
        if (t != NULL) {
            route_stanza_t st = ROUTE_STANZA(el, r);
            router_deliver(t, &st);
            route_stanza_done(&st);
            return;
        }
    }
    if (strcmp(el->name, "iq") == 0) {
        /* An IQ for the server itself, for an account (RFC 6120 §10.3.3,
         * §10.5.1; RFC 6121 §8.5.2.1.3) or for a resource that is not
         * there (§8.5.3.2.2): the module for its namespace answers, or
         * nobody does (feature set 10.4-6). Results and errors are
         * consumed. */
        if ((is_type(type, "get") || is_type(type, "set")) &&
            module_dispatch_iq(r->cfg->modules, c) != MODULE_HANDLED)
            router_reply_error(c->from, el, "cancel", "service-unavailable");
    } else if (c->addressee == MODULE_TO_SERVER &&
               strcmp(el->name, "message") == 0) {
        /* RFC 6120 §10.5.1: nothing here takes messages for the server. */
        if (!is_type(type, "error") && !is_type(type, "headline") &&
            !is_type(type, "groupchat"))
            router_reply_error(c->from, el, "cancel", "service-unavailable");
    }
    /* Presence to the server, and what the hooks left for bare or absent
     * full JIDs, is consumed. */
}

/* The addressee of a stanza whose 'to' is the local JID `to`. */
static module_addressee_t addressee_of(const route_target_t *from,
                                       const char *name, const jid_t *to)
{
    if (to->node == NULL)
        return MODULE_TO_SERVER;
    if (to->resource != NULL)
        return MODULE_TO_FULL;
    /* An IQ to one's own bare JID is handled for the account, like one
     * with no 'to' (RFC 6120 §10.3.3 and §8.1.2.1 treat them alike). */
    if (strcmp(name, "iq") == 0 && jid_bare_equal(to, &from->jid))
        return MODULE_TO_ACCOUNT;
    return MODULE_TO_BARE;
}

void router_route(router_t *r, route_target_t *from, xml_tree_t *tree)
{
    if (from->held_head != NULL || must_wait(from, tree)) {
        held_push(from, tree);
        return;
    }
    route_now(r, from, tree);
}

/* The sender of a stanza from another server, for the duration of its
 * routing: what modules deliver to it (an IQ result, an error, a probe's
 * answer) goes back to its server. */
typedef struct remote_sender {
    route_target_t t; /* first */
    router_t *r;
    const char *local; /* the domain it wrote to: the 'from' of replies */
    bool component;    /* a component (router_route_component) */
} remote_sender_t;

/* Where a stanza for a domain we do not serve goes: its component's
 * transport, or s2s. */
static void send_external(router_t *r, xml_tree_t *tree, const char *domain)
{
    if (router_is_component(r, domain)) {
        if (r->components != NULL) {
            r->components->send(r->components->ud, tree, domain);
            return;
        }
        /* Shutting down: the component is gone. */
        if (strcmp(tree->root->name, "presence") != 0)
            router_bounce(r, tree->root, "cancel", "service-unavailable");
    } else if (r->remote != NULL) {
        r->remote->send(r->remote->ud, tree, domain);
        return;
    } else {
        LOG(r->log, LOG_DEBUG, 0, "%s for %s not sent: federation is off",
            tree->root->name, domain);
    }
    xml_tree_free(tree);
}

static void route_now(router_t *r, route_target_t *from, xml_tree_t *tree)
{
    const xml_node_t *el = tree->root;
    const char *name = el->name;
    jid_t to = {0};
    module_call_t c = {
        .router = r,
        .log = r->log,
        .from = from,
        .tree = tree,
        .addressee = MODULE_TO_ACCOUNT,
    };

    if (strcmp(name, "iq") == 0 && !iq_valid(el)) {
        router_reply_error(from, el, "modify", "bad-request");
        goto done;
    }

    const char *to_s = xml_element_attr(el, NULL, "to");
    if (to_s != NULL) {
        if (jid_parse(to_s, strlen(to_s), 0, &to) != JID_OK) {
            /* RFC 6120 §8.3.3.8. The error must not carry the malformed
             * address as its 'from': it comes from our domain. */
            char domain[JID_FORMAT_BUF];
            snprintf(domain, sizeof(domain), "%s",
                     from->remote ? ((remote_sender_t *)from)->local
                                  : from->jid.domain);
            reply_error_from(from, el, domain, "modify", "jid-malformed");
            goto done;
        }
        /* Keep the prepared form on the wire. */
        char prepared[JID_FORMAT_BUF];
        if (jid_format(&to, false, prepared, sizeof(prepared)) >= 0)
            xml_element_set_attr(tree, tree->root, NULL, "to", prepared);
        c.to = &to;
        bool component_sender =
            from->remote && ((remote_sender_t *)from)->component;
        if (router_serves(r, to.domain)) {
            c.addressee = addressee_of(from, name, &to);
        } else if (router_is_component(r, to.domain)) {
            c.addressee = MODULE_TO_REMOTE;
        } else if (r->remote == NULL || (from->remote && !component_sender)) {
            /* RFC 6120 §10.4 with federation off; and a server never
             * relays one remote domain's stanza to another. */
            router_reply_error(from, el, "cancel", "remote-server-not-found");
            goto done;
        } else {
            c.addressee = MODULE_TO_REMOTE;
        }
    }

    /* Between two parties that are not ours (another server and a
     * component, or two components) no local user's rule applies: the
     * stanza is relayed as it is. */
    bool relay = from->remote && c.addressee == MODULE_TO_REMOTE;
    if (relay ||
        module_dispatch(r->cfg->modules, module_event_for(name, c.addressee),
                        &c) != MODULE_HANDLED) {
        if (c.addressee == MODULE_TO_REMOTE) {
            /* RFC 6120 §10.4: to the remote domain, whatever it is. */
            send_external(r, tree, to.domain);
            tree = NULL;
        } else {
            route_default(r, &c);
        }
    }

done:
    jid_clear(&to);
    xml_tree_free(tree);
}

void router_requeue(router_t *r, xml_tree_t *tree)
{
    const xml_node_t *el = tree->root;
    const char *type = xml_element_attr(el, NULL, "type");
    bool message = strcmp(el->name, "message") == 0;
    bool iq_request = strcmp(el->name, "iq") == 0 &&
                      (is_type(type, "get") || is_type(type, "set"));
    /* Presence for a resource that is gone is dropped (RFC 6121
     * §8.5.3.2.3), an error is never answered (RFC 6120 §8.3.1), and an
     * IQ result has nobody left waiting for it. */
    if (!message && !iq_request) {
        xml_tree_free(tree);
        return;
    }
    if (xml_element_attr(el, NULL, "to") == NULL) {
        /* A message with no 'to' was for the sender's own account (RFC
         * 6120 §10.3.1): it goes back to that bare JID. */
        const char *from_s = xml_element_attr(el, NULL, "from");
        jid_t from;
        char bare[JID_FORMAT_BUF];
        bool ok = message && from_s != NULL &&
                  jid_parse(from_s, strlen(from_s), 0, &from) == JID_OK;
        if (ok) {
            ok = jid_format(&from, true, bare, sizeof(bare)) >= 0 &&
                 xml_element_set_attr(tree, tree->root, NULL, "to", bare) == 0;
            jid_clear(&from);
        }
        if (!ok) {
            xml_tree_free(tree);
            return;
        }
    }
    LOG(r->log, LOG_DEBUG, 0, "%s for %s routed again: its session ended",
        el->name, xml_element_attr(el, NULL, "to"));
    r->requeueing++;
    router_route(r, &r->self, tree);
    r->requeueing--;
}

void router_requeue_error(router_t *r, const xml_node_t *stanza,
                          const char *type, const char *condition)
{
    r->requeueing++;
    router_reply_error(&r->self, stanza, type, condition);
    r->requeueing--;
}

/* Collects the one stanza of router_requeue_bytes(). */
static void requeue_header(void *ud, xml_tree_t *header)
{
    (void)ud;
    xml_tree_free(header);
}

static void requeue_element(void *ud, xml_tree_t *el)
{
    xml_tree_t **out = ud;
    if (*out == NULL)
        *out = el;
    else
        xml_tree_free(el);
}

static void requeue_end(void *ud)
{
    (void)ud;
}

void router_requeue_bytes(router_t *r, const char *data, size_t len)
{
    static const xml_parser_cbs_t cbs = {requeue_header, requeue_element,
                                         requeue_end};
    static const char header[] =
        "<stream:stream xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
    xml_tree_t *tree = NULL;
    xml_parser_t *p = xml_parser_new(NULL, &cbs, &tree);
    if (p == NULL)
        xalloc_fail(sizeof(header));
    /* Our own serialization: it parses, unless memory runs out. */
    if (xml_parser_feed(p, header, sizeof(header) - 1) != XML_OK ||
        xml_parser_feed(p, data, len) != XML_OK || tree == NULL) {
        LOG(r->log, LOG_WARN, 0, "a stanza handed back could not be read");
        xml_tree_free(tree);
        xml_parser_free(p);
        return;
    }
    xml_parser_free(p);
    router_requeue(r, tree);
}

/* ------------------------------------------------------- federation */

void router_set_remote(router_t *r, const router_remote_t *remote)
{
    r->remote = remote;
}

bool router_federates(const router_t *r)
{
    return r->remote != NULL || r->cfg->component_count > 0;
}

bool router_is_component(const router_t *r, const char *domain)
{
    for (size_t i = 0; i < r->cfg->component_count; i++)
        if (strcmp(r->cfg->components[i], domain) == 0)
            return true;
    return false;
}

const char *const *router_hosts(const router_t *r, size_t *count)
{
    *count = r->cfg->host_count;
    return r->cfg->hosts;
}

size_t router_component_count(const router_t *r)
{
    return r->cfg->component_count;
}

const char *router_component(const router_t *r, size_t i, const char **name)
{
    *name = r->cfg->component_names != NULL ? r->cfg->component_names[i] : NULL;
    return r->cfg->components[i];
}

void router_set_components(router_t *r, const router_remote_t *components)
{
    r->components = components;
}

void router_send_remote(router_t *r, xml_tree_t *tree)
{
    const char *to_s = xml_element_attr(tree->root, NULL, "to");
    jid_t to;
    if (to_s == NULL || jid_parse(to_s, strlen(to_s), 0, &to) != JID_OK) {
        xml_tree_free(tree);
        return;
    }
    if (router_serves(r, to.domain)) {
        LOG(r->log, LOG_DEBUG, 0, "%s for %s not sent: a local domain",
            tree->root->name, to_s);
        xml_tree_free(tree);
    } else {
        send_external(r, tree, to.domain);
    }
    jid_clear(&to);
}

void router_bounce(router_t *r, const xml_node_t *stanza, const char *type,
                   const char *condition)
{
    router_reply_error(&r->self, stanza, type, condition);
}

static bool remote_deliver(route_target_t *t, route_stanza_t *st)
{
    remote_sender_t *rs = (remote_sender_t *)t;
    xml_tree_t *copy = xml_tree_new();
    if (copy == NULL || xml_node_copy(copy, NULL, st->el) == NULL)
        xalloc_fail(256);
    /* RFC 6120 §8.1.2.1 lets a reply for an account carry no 'from', and
     * §10.3 no 'to'; over s2s both are required (§8.1.1.1, §8.1.2.2). */
    char jid[JID_FORMAT_BUF + JID_PART_BUF];
    if (xml_element_attr(copy->root, NULL, "to") == NULL &&
        (jid_format(&t->jid, false, jid, sizeof(jid)) < 0 ||
         xml_element_set_attr(copy, copy->root, NULL, "to", jid) < 0))
        xalloc_fail(256);
    if (xml_element_attr(copy->root, NULL, "from") == NULL &&
        xml_element_set_attr(copy, copy->root, NULL, "from", rs->local) < 0)
        xalloc_fail(256);
    router_send_remote(rs->r, copy);
    return true;
}

static void remote_kick(route_target_t *t, const char *condition)
{
    (void)t;
    (void)condition;
}

static const route_target_ops_t remote_ops = {.deliver = remote_deliver,
                                              .kick = remote_kick};

void router_reply_error_remote(router_t *r, const xml_node_t *stanza,
                               const char *type, const char *condition)
{
    const char *from_s = xml_element_attr(stanza, NULL, "from");
    const char *to_s = xml_element_attr(stanza, NULL, "to");
    remote_sender_t rs = {.t = {.ops = &remote_ops, .remote = true}, .r = r};
    jid_t to = {0};
    if (from_s != NULL && to_s != NULL &&
        jid_parse(from_s, strlen(from_s), 0, &rs.t.jid) == JID_OK &&
        jid_parse(to_s, strlen(to_s), 0, &to) == JID_OK) {
        char local[JID_FORMAT_BUF];
        snprintf(local, sizeof(local), "%s", to.domain);
        rs.local = local;
        router_reply_error(&rs.t, stanza, type, condition);
    }
    jid_clear(&to);
    jid_clear(&rs.t.jid);
}

void router_route_remote(router_t *r, xml_tree_t *tree)
{
    const char *from_s = xml_element_attr(tree->root, NULL, "from");
    const char *to_s = xml_element_attr(tree->root, NULL, "to");
    remote_sender_t rs = {.t = {.ops = &remote_ops, .remote = true}, .r = r};
    jid_t to = {0};
    /* The s2s stream checked both (RFC 6120 §8.1.1.1, §8.1.2.2): a stanza
     * that still fails here is dropped rather than answered. */
    if (from_s == NULL || to_s == NULL ||
        jid_parse(from_s, strlen(from_s), 0, &rs.t.jid) != JID_OK) {
        xml_tree_free(tree);
        return;
    }
    if (jid_parse(to_s, strlen(to_s), 0, &to) != JID_OK ||
        !(router_serves(r, to.domain) || router_is_component(r, to.domain)) ||
        router_serves(r, rs.t.jid.domain) ||
        router_is_component(r, rs.t.jid.domain)) {
        LOG(r->log, LOG_DEBUG, 0, "%s from %s to %s dropped: not for us",
            tree->root->name, from_s, to_s);
        xml_tree_free(tree);
    } else {
        char local[JID_FORMAT_BUF];
        snprintf(local, sizeof(local), "%s", to.domain);
        rs.local = local;
        route_now(r, &rs.t, tree);
        if (router_busy(&rs.t))
            LOG(r->log, LOG_ERROR, 0, "a remote sender was held: a bug");
    }
    jid_clear(&to);
    jid_clear(&rs.t.jid);
}

void router_route_component(router_t *r, xml_tree_t *tree)
{
    const char *from_s = xml_element_attr(tree->root, NULL, "from");
    const char *to_s = xml_element_attr(tree->root, NULL, "to");
    remote_sender_t rs = {
        .t = {.ops = &remote_ops, .remote = true}, .r = r, .component = true};
    jid_t to = {0};
    if (from_s == NULL || to_s == NULL ||
        jid_parse(from_s, strlen(from_s), 0, &rs.t.jid) != JID_OK ||
        jid_parse(to_s, strlen(to_s), 0, &to) != JID_OK ||
        !router_is_component(r, rs.t.jid.domain)) {
        /* The component's stream checked both: not reached. */
        xml_tree_free(tree);
        jid_clear(&rs.t.jid);
        return;
    }
    char local[JID_FORMAT_BUF];
    snprintf(local, sizeof(local), "%s", to.domain);
    rs.local = local;
    route_now(r, &rs.t, tree);
    if (router_busy(&rs.t))
        LOG(r->log, LOG_ERROR, 0, "a component sender was held: a bug");
    jid_clear(&to);
    jid_clear(&rs.t.jid);
}
