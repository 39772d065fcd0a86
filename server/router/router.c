/* Addressing and delivery. The rules, in the order router_route() applies
 * them, with the sections that define them:
 *
 *  1. A malformed 'to' gets jid-malformed (RFC 6120 §8.3.3.8).
 *  2. An IQ that breaks RFC 6120 §8.2.3 (no id, bad type, wrong number of
 *     children) gets bad-request.
 *  3. No 'to' (RFC 6120 §10.3): a message is handled as if sent to the
 *     sender's bare JID; presence updates the session's availability and
 *     priority (broadcast to subscribers is RFC 6121 §4, the roster issue);
 *     an IQ is handled by the server for the account.
 *  4. 'to' a domain we do not serve (RFC 6120 §10.4): remote-server-not-found
 *     until federation exists.
 *  5. 'to' our domain or domain/resource (RFC 6120 §10.5.1): the server.
 *  6. 'to' a local bare JID (RFC 6121 §8.5.2) or full JID (§8.5.3).
 * A server-handled IQ get/set in a namespace nobody handles gets
 * service-unavailable with the original child (RFC 6120 §8.4). */
#include "router/router.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rand.h"

#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"

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
};

/* ------------------------------------------------------------ registry */

static uint64_t hash_str(const char *s)
{
    /* FNV-1a: keys are prepared JIDs from our own clients, so flooding
     * the table needs many accounts, which the operator creates. */
    uint64_t h = 1469598103934665603ULL;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

router_t *router_new(const router_config_t *cfg, const logger_t *log)
{
    router_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->cfg = cfg;
    r->log = log;
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
    a = calloc(1, sizeof(*a));
    if (a == NULL || (a->bare = strdup(bare)) == NULL) {
        free(a);
        return NULL;
    }
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

void router_unbind(router_t *r, route_target_t *t)
{
    struct router_account *a = t->account;
    if (a == NULL)
        return;
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
    return NULL;
}

size_t router_session_count(const router_t *r)
{
    return r->sessions;
}

/* ------------------------------------------------------------- replies */

void router_reply_error(route_target_t *to, const xml_node_t *stanza,
                        const char *type, const char *condition)
{
    const char *stype = xml_element_attr(stanza, NULL, "type");
    /* RFC 6120 §8.3.1: never an error in reply to an error. */
    if (stype != NULL && strcmp(stype, "error") == 0)
        return;
    xml_tree_t *t = xml_tree_new();
    if (t == NULL)
        return;
    xml_node_t *e = xml_node_copy(t, NULL, stanza);
    if (e == NULL) {
        xml_tree_free(t);
        return;
    }
    /* RFC 6120 §8.3.1: 'from' is the entity that was addressed (our
     * domain when the stanza named none), 'to' the sender. */
    const char *orig_to = xml_element_attr(stanza, NULL, "to");
    const char *orig_from = xml_element_attr(stanza, NULL, "from");
    char domain[JID_FORMAT_BUF];
    if (orig_to == NULL) {
        snprintf(domain, sizeof(domain), "%s", to->jid.domain);
        orig_to = domain;
    }
    int rc = 0;
    rc |= xml_element_set_attr(t, e, NULL, "type", "error");
    rc |= xml_element_set_attr(t, e, NULL, "from", orig_to);
    if (orig_from != NULL)
        rc |= xml_element_set_attr(t, e, NULL, "to", orig_from);
    else
        xml_element_remove_attr(e, NULL, "to");
    xml_node_t *err = xml_element_new(t, e, e->ns, "error");
    xml_node_t *c =
        err != NULL ? xml_element_new(t, err, NS_STANZAS, condition) : NULL;
    if (c == NULL || rc != 0 ||
        xml_element_set_attr(t, err, NULL, "type", type) < 0) {
        xml_tree_free(t);
        return;
    }
    to->ops->deliver(to, e);
    xml_tree_free(t);
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

/* An IQ for the server itself or for the account (RFC 6120 §10.3.3,
 * §10.5.1; RFC 6121 §8.5.2.1.3). No modules handle any namespace yet, so
 * every get/set is service-unavailable, with the original child
 * (feature set 10.4-6); results and errors are consumed. */
static void server_iq(router_t *r, route_target_t *from, const xml_node_t *el)
{
    (void)r;
    const char *type = xml_element_attr(el, NULL, "type");
    if (is_type(type, "get") || is_type(type, "set"))
        router_reply_error(from, el, "cancel", "service-unavailable");
}

/* Handles presence with no 'to' from a session (RFC 6121 §4.2, §4.5): the
 * availability and priority that bare-JID routing uses. */
static void own_presence(route_target_t *from, xml_tree_t *t)
{
    const xml_node_t *el = t->root;
    const char *type = xml_element_attr(el, NULL, "type");
    if (type == NULL) {
        from->available = true;
        from->priority = 0;
        const xml_node_t *p = xml_element_child(el, el->ns, "priority");
        if (p != NULL) {
            const char *txt = xml_element_text(t, p);
            char *end = NULL;
            long v = txt != NULL ? strtol(txt, &end, 10) : 0;
            /* RFC 6121 §4.7.2.3: an integer from -128 to +127. */
            if (txt != NULL && end != txt && *end == '\0' && v >= -128 &&
                v <= 127)
                from->priority = (int)v;
        }
    } else if (strcmp(type, "unavailable") == 0) {
        from->available = false;
    }
}

/* Message to a local bare JID (RFC 6121 §8.5.2). */
static void message_to_bare(route_target_t *from, const xml_node_t *el,
                            struct router_account *a)
{
    const char *type = xml_element_attr(el, NULL, "type");
    if (type == NULL)
        type = "normal";
    if (strcmp(type, "error") == 0)
        return; /* §8.5.2.1.4 / §8.5.2.2.4: silently ignored */
    if (strcmp(type, "groupchat") == 0) {
        /* §8.5.2.1.2: a groupchat message to a user is an error. */
        router_reply_error(from, el, "cancel", "service-unavailable");
        return;
    }
    int best = -129;
    for (route_target_t *t = a != NULL ? a->resources : NULL; t != NULL;
         t = t->next_resource)
        if (t->available && t->priority >= 0 && t->priority > best)
            best = t->priority;
    if (best < 0) {
        /* §8.5.2.2: no available resource with a non-negative priority.
         * Offline storage arrives with the roster issue; until then the
         * sender learns the message was not delivered. Headlines are
         * dropped (§8.5.2.2.3). */
        if (strcmp(type, "headline") != 0)
            router_reply_error(from, el, "cancel", "service-unavailable");
        return;
    }
    /* §8.5.2.1.1: normal and chat go to the resources of the highest
     * non-negative priority; headline to every non-negative one. */
    bool all = strcmp(type, "headline") == 0;
    for (route_target_t *t = a->resources; t != NULL; t = t->next_resource)
        if (t->available && t->priority >= 0 && (all || t->priority == best))
            t->ops->deliver(t, el);
}

static void to_local(router_t *r, route_target_t *from, xml_tree_t *tree,
                     const jid_t *to)
{
    const xml_node_t *el = tree->root;
    const char *name = el->name;
    const char *type = xml_element_attr(el, NULL, "type");
    char bare[JID_FORMAT_BUF];
    if (jid_format(to, true, bare, sizeof(bare)) < 0)
        return;
    struct router_account *a = account_find(r, bare);

    if (to->resource != NULL) {
        route_target_t *t = a != NULL ? resource_find(a, to->resource) : NULL;
        if (t != NULL) {
            /* §8.5.3.1: a connected resource gets the stanza. */
            t->ops->deliver(t, el);
            return;
        }
        /* §8.5.3.2: no such resource. */
        if (strcmp(name, "message") == 0) {
            if (is_type(type, "groupchat")) {
                router_reply_error(from, el, "cancel", "service-unavailable");
                return;
            }
            message_to_bare(from, el, a);
        } else if (strcmp(name, "iq") == 0) {
            if (is_type(type, "get") || is_type(type, "set"))
                router_reply_error(from, el, "cancel", "service-unavailable");
        }
        /* §8.5.3.2.3: presence to an unknown resource is ignored
         * (subscription states arrive with the roster issue). */
        return;
    }

    if (strcmp(name, "message") == 0) {
        message_to_bare(from, el, a);
    } else if (strcmp(name, "presence") == 0) {
        /* §8.5.2.1.1 for directed availability: every available resource.
         * Subscription requests and probes are the roster issue's. */
        if (type == NULL || strcmp(type, "unavailable") == 0) {
            for (route_target_t *t = a != NULL ? a->resources : NULL; t != NULL;
                 t = t->next_resource)
                if (t->available)
                    t->ops->deliver(t, el);
        }
    } else {
        /* §8.5.2.1.3: an IQ to a bare JID is answered by the server on
         * behalf of the account. */
        server_iq(r, from, el);
    }
}

void router_route(router_t *r, route_target_t *from, xml_tree_t *tree)
{
    const xml_node_t *el = tree->root;
    const char *name = el->name;
    const char *type = xml_element_attr(el, NULL, "type");
    bool is_iq = strcmp(name, "iq") == 0;

    if (is_iq && !iq_valid(el)) {
        router_reply_error(from, el, "modify", "bad-request");
        xml_tree_free(tree);
        return;
    }

    const char *to_s = xml_element_attr(el, NULL, "to");
    if (to_s == NULL) {
        if (strcmp(name, "message") == 0) {
            /* RFC 6120 §10.3.1: as if sent to the sender's bare JID. */
            message_to_bare(from, el, from->account);
        } else if (strcmp(name, "presence") == 0) {
            own_presence(from, tree);
        } else {
            server_iq(r, from, el);
        }
        xml_tree_free(tree);
        return;
    }

    jid_t to;
    if (jid_parse(to_s, strlen(to_s), 0, &to) != JID_OK) {
        /* RFC 6120 §8.3.3.8. The error must not carry the malformed
         * address as its 'from': it comes from our domain. */
        xml_element_remove_attr(tree->root, NULL, "to");
        router_reply_error(from, el, "modify", "jid-malformed");
        xml_tree_free(tree);
        return;
    }
    /* Keep the prepared form on the wire. */
    char prepared[JID_FORMAT_BUF];
    if (jid_format(&to, false, prepared, sizeof(prepared)) >= 0)
        xml_element_set_attr(tree, tree->root, NULL, "to", prepared);

    if (!router_serves(r, to.domain)) {
        /* RFC 6120 §10.4: federation is not there yet. */
        router_reply_error(from, el, "cancel", "remote-server-not-found");
    } else if (to.node == NULL) {
        /* RFC 6120 §10.5.1: the server itself (domain or domain/resource). */
        if (is_iq)
            server_iq(r, from, el);
        else if (strcmp(name, "message") == 0 && !is_type(type, "error") &&
                 !is_type(type, "headline") && !is_type(type, "groupchat"))
            router_reply_error(from, el, "cancel", "service-unavailable");
        /* Presence to the server is consumed. */
    } else {
        to_local(r, from, tree, &to);
    }
    jid_clear(&to);
    xml_tree_free(tree);
}
