/* XEP-0163 Personal Eventing Protocol: every account is a XEP-0060
 * publish-subscribe service with the subset PEP needs — what Conversations,
 * Dino, Gajim and Converse.js use for bookmarks (XEP-0402), nicknames
 * (XEP-0172), avatars (XEP-0084) and OMEMO device lists.
 *
 *  - publish (the account only): a node is created at its first publish
 *    (#auto-create) with the defaults (access presence, max_items 1) or
 *    what publish-options say (#publish-options); on an existing node,
 *    publish-options that differ from its configuration get conflict +
 *    precondition-not-met (XEP-0060 §7.1.5). An item without an id gets
 *    one; an item carries exactly one payload; at most max_items are kept,
 *    the oldest go.
 *  - items (the account, and others as the access model allows: open
 *    anyone, presence contacts with a subscription from or both —
 *    not-authorized + presence-subscription-required otherwise —,
 *    whitelist the account only — not-allowed + closed-node): all or the
 *    max_items newest, or the ones named; item-not-found for no node.
 *  - retract (with notify), node configuration (pubsub#owner configure:
 *    get the form, submit it), node delete.
 *  - notifications: a publish (and a retract with notify) is sent as a
 *    headline <event/> from the account's bare JID to each available
 *    resource of the account and, for access presence and open, of its
 *    contacts with a subscription from or both, that announced
 *    NODE+notify in caps the server verified (XEP-0115,
 *    module_registry_entity_has()); contacts on other servers get it at
 *    their bare JID (their server delivers headlines to every available
 *    resource).
 *  - the last item of each node a session wants, once its caps are known
 *    (see "last items" below).
 *  - disco#items of the account: the nodes the requester may read.
 *  - XEP-0411: the node storage:bookmarks (XEP-0048 in PEP) and the
 *    private-storage document of that namespace are kept the same: a
 *    publish here writes both (private.c does the same the other way),
 *    and the node is created whitelist.
 * Not yet: explicit subscriptions, item-level access, pubsub#notify_delete
 * events.
 *
 * Stored: node configurations (kind "pepnode", key the node) and items
 * (kind "pep/NODE", key the item id, value the payload as serialized). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/xalloc.h"
#include "modules/modules.h"
#include "modules/pep_form.h"

#define NS_PUBSUB        "http://jabber.org/protocol/pubsub"
#define NS_PUBSUB_OWNER  "http://jabber.org/protocol/pubsub#owner"
#define NS_PUBSUB_EVENT  "http://jabber.org/protocol/pubsub#event"
#define NS_PUBSUB_ERRORS "http://jabber.org/protocol/pubsub#errors"
#define NS_DATA          "jabber:x:data"
#define NS_DISCO_ITEMS   "http://jabber.org/protocol/disco#items"
/* XEP-0048 bookmarks, kept the same in PEP and private storage (XEP-0411). */
#define NS_LEGACY_BOOKMARKS "storage:bookmarks"
#define MAX_NODE_LEN        512

typedef struct pep_state {
    store_t *store;
    const logger_t *log;
    unsigned long next_id;
} pep_state_t;

static void *pep_init(const module_env_t *env, bool *ok)
{
    pep_state_t *st = xcalloc(1, sizeof(*st));
    st->store = env->store;
    st->log = env->log;
    *ok = true;
    return st;
}

static void pep_fini(void *state)
{
    free(state);
}

/* ------------------------------------------------------------ helpers */

static char *kind_of(const char *node)
{
    size_t n = strlen(node) + 5;
    char *k = xmalloc(n);
    snprintf(k, n, "pep/%s", node);
    return k;
}

/* Adds <item id=...>payload</item> in namespace ns under parent. */
static void add_item(xml_tree_t *t, xml_node_t *parent, const char *ns,
                     const char *id, const char *payload, size_t len)
{
    xml_node_t *it = xml_element_new(t, parent, ns, "item");
    if (it == NULL || xml_element_set_attr(t, it, NULL, "id", id) < 0 ||
        (len > 0 && module_parse_into(t, it, payload, len) < 0))
        xalloc_fail(256);
}

/* A notification <message type='headline'><event><items node>...</items>
 * </event></message> from `owner` (bare), its <items/> in *items. */
static xml_tree_t *event_new(pep_state_t *st, const char *owner,
                             const char *node, xml_node_t **items)
{
    char id[32];
    snprintf(id, sizeof(id), "pep-%lu", ++st->next_id);
    xml_tree_t *t = xml_tree_new();
    xml_node_t *m =
        t != NULL ? xml_element_new(t, NULL, XML_NS_CLIENT, "message") : NULL;
    xml_node_t *ev =
        m != NULL ? xml_element_new(t, m, NS_PUBSUB_EVENT, "event") : NULL;
    *items =
        ev != NULL ? xml_element_new(t, ev, NS_PUBSUB_EVENT, "items") : NULL;
    if (*items == NULL ||
        xml_element_set_attr(t, m, NULL, "type", "headline") < 0 ||
        xml_element_set_attr(t, m, NULL, "id", id) < 0 ||
        xml_element_set_attr(t, m, NULL, "from", owner) < 0 ||
        xml_element_set_attr(t, *items, NULL, "node", node) < 0)
        xalloc_fail(256);
    return t;
}

/* Sends event tree t to every available resource of `bare` (local) that
 * wants NODE+notify, with 'to' set to each. */
/* XEP-0163 §4.3.2: never to a contact the owner blocks or who blocks
 * the owner (XEP-0191), whose routing hooks these do not pass. */
static void notify_local(router_t *r, const module_registry_t *reg,
                         xml_tree_t *t, const char *owner, const char *bare,
                         const char *notify)
{
    for (route_target_t *res = router_resources_bare(r, bare); res != NULL;
         res = res->next_resource) {
        char full[JID_FORMAT_BUF + JID_PART_BUF];
        if (!res->available ||
            jid_format(&res->jid, false, full, sizeof(full)) < 0 ||
            !module_registry_entity_has(reg, full, notify) ||
            module_registry_blocked(reg, owner, &res->jid))
            continue;
        if (xml_element_set_attr(t, t->root, NULL, "to", full) < 0)
            xalloc_fail(64);
        route_stanza_t rs = ROUTE_STANZA(t->root, r);
        router_deliver(res, &rs);
        route_stanza_done(&rs);
    }
}

/* What a notification needs once the owner's roster is there. */
typedef struct notify_job {
    pep_state_t *st;
    router_t *router;
    const module_registry_t *reg;
    char owner[JID_FORMAT_BUF];
    char *node;
    pep_node_config_t config;
    xml_tree_t *event;
} notify_job_t;

static void notify_free(notify_job_t *j)
{
    free(j->node);
    xml_tree_free(j->event);
    free(j);
}

static void on_notify_roster(void *ud, int err, const store_roster_t *ros)
{
    notify_job_t *j = ud;
    size_t n = strlen(j->node) + 8;
    char *notify = xmalloc(n);
    snprintf(notify, n, "%s+notify", j->node);
    notify_local(j->router, j->reg, j->event, j->owner, j->owner, notify);
    for (size_t i = 0;
         err == STORE_OK && j->config.access != PEP_ACCESS_WHITELIST &&
         i < ros->count;
         i++) {
        const store_roster_item_t *it = &ros->items[i];
        if ((it->subscription & STORE_SUB_FROM) == 0)
            continue;
        const char *at = strchr(it->contact, '@');
        if (at != NULL && router_serves(j->router, at + 1)) {
            notify_local(j->router, j->reg, j->event, j->owner, it->contact,
                         notify);
        } else if (router_federates(j->router)) {
            jid_t to;
            if (jid_parse(it->contact, strlen(it->contact), 0, &to) != JID_OK)
                continue;
            bool blocked = module_registry_blocked(j->reg, j->owner, &to);
            jid_clear(&to);
            if (blocked)
                continue;
            xml_tree_t *copy = xml_tree_new();
            if (copy == NULL ||
                xml_node_copy(copy, NULL, j->event->root) == NULL ||
                xml_element_set_attr(copy, copy->root, NULL, "to",
                                     it->contact) < 0)
                xalloc_fail(256);
            router_send_remote(j->router, copy);
        }
    }
    free(notify);
    notify_free(j);
}

static void notify(pep_state_t *st, router_t *r, const module_registry_t *reg,
                   const char *owner, const char *node,
                   const pep_node_config_t *config, xml_tree_t *event)
{
    notify_job_t *j = xcalloc(1, sizeof(*j));
    j->st = st;
    j->router = r;
    j->reg = reg;
    snprintf(j->owner, sizeof(j->owner), "%s", owner);
    j->node = xstrdup(node);
    j->config = *config;
    j->event = event;
    const char *at = strchr(owner, '@');
    char nodepart[JID_FORMAT_BUF];
    snprintf(nodepart, sizeof(nodepart), "%.*s", (int)(at - owner), owner);
    store_roster_get(st->store, at + 1, nodepart, on_notify_roster, j);
}

/* ------------------------------------------------------------ requests */

typedef enum op_kind {
    OP_PUBLISH,
    OP_ITEMS,
    OP_RETRACT,
    OP_CONFIGURE_GET,
    OP_CONFIGURE_SET,
    OP_DELETE,
} op_kind_t;

/* One request in flight: its steps chain through store callbacks. */
typedef struct pep_op {
    pep_state_t *st;
    router_t *router;
    const module_registry_t *reg;
    module_later_t *l;
    op_kind_t kind;
    char owner[JID_FORMAT_BUF]; /* bare */
    char requester[JID_FORMAT_BUF];
    char *node, *items_kind;
    char *item_id;
    char *payload; /* publish: serialized */
    size_t payload_len;
    pep_node_config_t config; /* publish-options / configure applied */
    unsigned options_named;
    bool has_options;
    bool exists;
    unsigned max_items; /* items: the max_items asked, 0 all */
    char **ids;         /* items: the ids asked for */
    size_t nids;
    bool notify_retract;
} pep_op_t;

static void op_free(pep_op_t *op)
{
    free(op->node);
    free(op->items_kind);
    free(op->item_id);
    free(op->payload);
    for (size_t i = 0; i < op->nids; i++)
        free(op->ids[i]);
    free(op->ids);
    free(op);
}

static void op_fail(pep_op_t *op, const char *type, const char *cond)
{
    module_later_error(op->l, type, cond);
    op_free(op);
}

static void op_fail_app(pep_op_t *op, const char *type, const char *cond,
                        const char *app)
{
    module_later_error_app(op->l, type, cond, NS_PUBSUB_ERRORS, app);
    op_free(op);
}

/* The publish's result: <pubsub><publish node><item id/></publish>. */
static void publish_done(pep_op_t *op)
{
    xml_tree_t *t;
    xml_node_t *iq = module_later_result(op->l, &t);
    xml_node_t *ps =
        iq != NULL ? xml_element_new(t, iq, NS_PUBSUB, "pubsub") : NULL;
    xml_node_t *p =
        ps != NULL ? xml_element_new(t, ps, NS_PUBSUB, "publish") : NULL;
    xml_node_t *it =
        p != NULL ? xml_element_new(t, p, NS_PUBSUB, "item") : NULL;
    if (it == NULL || xml_element_set_attr(t, p, NULL, "node", op->node) < 0 ||
        xml_element_set_attr(t, it, NULL, "id", op->item_id) < 0)
        xalloc_fail(256);
    module_later_send(op->l, t);
}

/* --- publish --- */

static void on_trim(void *ud, int err, const store_data_item_t *items,
                    size_t count)
{
    pep_op_t *op = ud;
    char node[JID_FORMAT_BUF];
    const char *domain;
    module_split_bare(op->owner, node, sizeof(node), &domain);
    for (size_t i = 0; err == STORE_OK && count > op->config.max_items &&
                       i < count - op->config.max_items;
         i++)
        store_data_delete(op->st->store, domain, node, op->items_kind,
                          items[i].key, NULL, NULL);
    op_free(op);
}

static void on_item_stored(void *ud, int err)
{
    pep_op_t *op = ud;
    if (err != STORE_OK) {
        op_fail(op, "wait", "internal-server-error");
        return;
    }
    publish_done(op); /* ends op->l */
    op->l = NULL;
    /* The notification, then the oldest items beyond max_items. */
    xml_node_t *items;
    xml_tree_t *ev = event_new(op->st, op->owner, op->node, &items);
    add_item(ev, items, NS_PUBSUB_EVENT, op->item_id, op->payload,
             op->payload_len);
    notify(op->st, op->router, op->reg, op->owner, op->node, &op->config, ev);
    char node[JID_FORMAT_BUF];
    const char *domain;
    module_split_bare(op->owner, node, sizeof(node), &domain);
    store_data_get(op->st->store, domain, node, op->items_kind, NULL, on_trim,
                   op);
}

static void store_item(pep_op_t *op)
{
    char node[JID_FORMAT_BUF];
    const char *domain;
    module_split_bare(op->owner, node, sizeof(node), &domain);
    bool legacy_bm = strcmp(op->node, NS_LEGACY_BOOKMARKS) == 0;
    if (!op->exists) {
        char conf[128];
        /* XEP-0048 bookmarks in PEP are private, whatever a client forgot
         * to ask for. */
        if (legacy_bm && !(op->options_named & PEP_NAMED_ACCESS))
            op->config.access = PEP_ACCESS_WHITELIST;
        pep_config_write(&op->config, conf, sizeof(conf));
        store_data_put(op->st->store, domain, node, "pepnode", op->node, conf,
                       strlen(conf), NULL, NULL);
    }
    /* XEP-0411: what legacy clients read from private storage is the
     * same document. */
    if (legacy_bm)
        store_data_put(op->st->store, domain, node, "private",
                       NS_LEGACY_BOOKMARKS, op->payload, op->payload_len, NULL,
                       NULL);
    store_data_put(op->st->store, domain, node, op->items_kind, op->item_id,
                   op->payload, op->payload_len, on_item_stored, op);
}

/* --- the node's configuration, the first step of every operation --- */

static void on_items(void *ud, int err, const store_data_item_t *items,
                     size_t count);
static void on_deleted(void *ud, int err);

static void on_config(void *ud, int err, const store_data_item_t *items,
                      size_t count)
{
    pep_op_t *op = ud;
    if (err != STORE_OK) {
        op_fail(op, "wait", "internal-server-error");
        return;
    }
    op->exists = count > 0;
    pep_node_config_t cur = pep_node_defaults;
    if (op->exists)
        pep_config_read(items[0].value, &cur);
    char node[JID_FORMAT_BUF];
    const char *domain;
    module_split_bare(op->owner, node, sizeof(node), &domain);
    switch (op->kind) {
    case OP_PUBLISH:
        if (op->exists && op->has_options) {
            /* XEP-0060 §7.1.5: every option given must match. */
            const pep_node_config_t *w = &op->config;
            unsigned n = op->options_named;
            if (((n & PEP_NAMED_ACCESS) && w->access != cur.access) ||
                ((n & PEP_NAMED_MAX_ITEMS) && w->max_items != cur.max_items) ||
                ((n & PEP_NAMED_PERSIST) && w->persist != cur.persist) ||
                ((n & PEP_NAMED_NOTIFY_RETRACT) &&
                 w->notify_retract != cur.notify_retract)) {
                module_later_error_app(op->l, "cancel", "conflict",
                                       NS_PUBSUB_ERRORS,
                                       "precondition-not-met");
                op_free(op);
                return;
            }
        }
        if (op->exists)
            op->config = cur;
        store_item(op);
        return;
    case OP_ITEMS:
    case OP_RETRACT:
    case OP_DELETE:
    case OP_CONFIGURE_GET:
    case OP_CONFIGURE_SET:
        break;
    }
    if (!op->exists) {
        op_fail(op, "cancel", "item-not-found");
        return;
    }
    const pep_node_config_t submitted = op->config; /* configure set */
    op->config = cur;
    if (op->kind == OP_ITEMS) {
        bool owner = strcmp(op->requester, op->owner) == 0;
        if (!owner && cur.access == PEP_ACCESS_WHITELIST) {
            op_fail_app(op, "cancel", "not-allowed", "closed-node");
            return;
        }
        store_data_get(op->st->store, domain, node, op->items_kind, NULL,
                       on_items, op);
        return;
    }
    if (op->kind == OP_RETRACT) {
        /* Does the item exist? (items of one node: few) */
        store_data_get(op->st->store, domain, node, op->items_kind, op->item_id,
                       on_items, op);
        return;
    }
    if (op->kind == OP_DELETE) {
        store_data_delete(op->st->store, domain, node, op->items_kind, NULL,
                          NULL, NULL);
        store_data_delete(op->st->store, domain, node, "pepnode", op->node,
                          on_deleted, op);
        return;
    }
    if (op->kind == OP_CONFIGURE_SET) {
        char conf[128];
        pep_node_config_t merged = cur;
        /* Re-apply the submitted fields over the stored configuration. */
        if (op->options_named & PEP_NAMED_ACCESS)
            merged.access = submitted.access;
        if (op->options_named & PEP_NAMED_MAX_ITEMS)
            merged.max_items = submitted.max_items;
        if (op->options_named & PEP_NAMED_PERSIST)
            merged.persist = submitted.persist;
        if (op->options_named & PEP_NAMED_NOTIFY_RETRACT)
            merged.notify_retract = submitted.notify_retract;
        pep_config_write(&merged, conf, sizeof(conf));
        store_data_put(op->st->store, domain, node, "pepnode", op->node, conf,
                       strlen(conf), on_deleted, op);
        return;
    }
    /* OP_CONFIGURE_GET: the form. */
    xml_tree_t *t;
    xml_node_t *iq = module_later_result(op->l, &t);
    xml_node_t *ps =
        iq != NULL ? xml_element_new(t, iq, NS_PUBSUB_OWNER, "pubsub") : NULL;
    xml_node_t *cf = ps != NULL
                         ? xml_element_new(t, ps, NS_PUBSUB_OWNER, "configure")
                         : NULL;
    xml_node_t *x = cf != NULL ? xml_element_new(t, cf, NS_DATA, "x") : NULL;
    if (x == NULL || xml_element_set_attr(t, cf, NULL, "node", op->node) < 0 ||
        xml_element_set_attr(t, x, NULL, "type", "form") < 0)
        xalloc_fail(256);
    char max[16];
    snprintf(max, sizeof(max), "%u", cur.max_items);
    const struct {
        const char *var, *type, *value;
    } fields[] = {
        {"FORM_TYPE", "hidden", FT_NODE_CONFIG},
        {"pubsub#access_model", "list-single", pep_access_names[cur.access]},
        {"pubsub#max_items", "text-single", max},
        {"pubsub#persist_items", "boolean", cur.persist ? "1" : "0"},
        {"pubsub#notify_retract", "boolean", cur.notify_retract ? "1" : "0"},
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        xml_node_t *f = xml_element_new(t, x, NS_DATA, "field");
        xml_node_t *v =
            f != NULL ? xml_element_new(t, f, NS_DATA, "value") : NULL;
        if (v == NULL ||
            xml_element_set_attr(t, f, NULL, "var", fields[i].var) < 0 ||
            xml_element_set_attr(t, f, NULL, "type", fields[i].type) < 0 ||
            xml_element_add_text(t, v, fields[i].value,
                                 strlen(fields[i].value)) < 0)
            xalloc_fail(256);
        if (i == 1)
            for (size_t k = 0; k < 3; k++) {
                xml_node_t *o = xml_element_new(t, f, NS_DATA, "option");
                xml_node_t *ov =
                    o != NULL ? xml_element_new(t, o, NS_DATA, "value") : NULL;
                if (ov == NULL ||
                    xml_element_add_text(t, ov, pep_access_names[k],
                                         strlen(pep_access_names[k])) < 0)
                    xalloc_fail(256);
            }
    }
    module_later_send(op->l, t);
    op_free(op);
}

/* Delete and configure-set end here: an empty result. */
static void on_deleted(void *ud, int err)
{
    pep_op_t *op = ud;
    module_later_stored(op->l, err);
    op_free(op);
}

static void on_retracted(void *ud, int err)
{
    pep_op_t *op = ud;
    if (module_later_stored(op->l, err) && op->notify_retract) {
        xml_node_t *items;
        xml_tree_t *ev = event_new(op->st, op->owner, op->node, &items);
        xml_node_t *r = xml_element_new(ev, items, NS_PUBSUB_EVENT, "retract");
        if (r == NULL ||
            xml_element_set_attr(ev, r, NULL, "id", op->item_id) < 0)
            xalloc_fail(256);
        notify(op->st, op->router, op->reg, op->owner, op->node, &op->config,
               ev);
    }
    op_free(op);
}

/* The presence access model: is the requester a contact with a
 * subscription from? */
static void on_access_roster(void *ud, int err, const store_roster_t *ros);

static void send_items(pep_op_t *op, const store_data_item_t *items,
                       size_t count)
{
    xml_tree_t *t;
    xml_node_t *iq = module_later_result(op->l, &t);
    xml_node_t *ps =
        iq != NULL ? xml_element_new(t, iq, NS_PUBSUB, "pubsub") : NULL;
    xml_node_t *its =
        ps != NULL ? xml_element_new(t, ps, NS_PUBSUB, "items") : NULL;
    if (its == NULL || xml_element_set_attr(t, its, NULL, "node", op->node) < 0)
        xalloc_fail(256);
    size_t first = 0;
    if (op->max_items > 0 && count > op->max_items)
        first = count - op->max_items;
    for (size_t i = first; i < count; i++) {
        bool wanted = op->nids == 0;
        for (size_t k = 0; k < op->nids && !wanted; k++)
            wanted = strcmp(op->ids[k], items[i].key) == 0;
        if (wanted)
            add_item(t, its, NS_PUBSUB, items[i].key, items[i].value,
                     items[i].len);
    }
    module_later_send(op->l, t);
    op_free(op);
}

/* Items are kept in op while the roster is read: a copy. */
typedef struct items_copy {
    pep_op_t *op;
    store_data_item_t *items;
    char **strings; /* what items point into: key, value, key, ... */
    size_t count;
} items_copy_t;

static void on_items(void *ud, int err, const store_data_item_t *items,
                     size_t count)
{
    pep_op_t *op = ud;
    if (err != STORE_OK) {
        op_fail(op, "wait", "internal-server-error");
        return;
    }
    char node[JID_FORMAT_BUF];
    const char *domain;
    module_split_bare(op->owner, node, sizeof(node), &domain);
    if (op->kind == OP_RETRACT) {
        if (count == 0) {
            op_fail(op, "cancel", "item-not-found");
            return;
        }
        store_data_delete(op->st->store, domain, node, op->items_kind,
                          op->item_id, on_retracted, op);
        return;
    }
    bool owner = strcmp(op->requester, op->owner) == 0;
    if (owner || op->config.access == PEP_ACCESS_OPEN) {
        send_items(op, items, count);
        return;
    }
    /* Presence access: keep the items, read the owner's roster. */
    items_copy_t *cp = xcalloc(1, sizeof(*cp));
    cp->op = op;
    cp->count = count;
    cp->items = xcalloc(count + 1, sizeof(*cp->items));
    cp->strings = xcalloc(2 * count + 1, sizeof(*cp->strings));
    for (size_t i = 0; i < count; i++) {
        char *k = xstrdup(items[i].key);
        char *v = xmalloc(items[i].len + 1);
        memcpy(v, items[i].value, items[i].len);
        v[items[i].len] = '\0';
        cp->strings[2 * i] = k;
        cp->strings[2 * i + 1] = v;
        cp->items[i].key = k;
        cp->items[i].value = v;
        cp->items[i].len = items[i].len;
    }
    store_roster_get(op->st->store, domain, node, on_access_roster, cp);
}

static void on_access_roster(void *ud, int err, const store_roster_t *ros)
{
    items_copy_t *cp = ud;
    pep_op_t *op = cp->op;
    bool ok = false;
    for (size_t i = 0; err == STORE_OK && i < ros->count && !ok; i++)
        ok = strcmp(ros->items[i].contact, op->requester) == 0 &&
             (ros->items[i].subscription & STORE_SUB_FROM) != 0;
    if (ok)
        send_items(op, cp->items, cp->count);
    else
        op_fail_app(op, "auth", "not-authorized",
                    "presence-subscription-required");
    for (size_t i = 0; i < 2 * cp->count; i++)
        free(cp->strings[i]);
    free(cp->strings);
    free(cp->items);
    free(cp);
}

/* ------------------------------------------------------------ last items
 *
 * XEP-0163 §4.3.4 (send_last_published_item on_sub_and_presence): once
 * the caps of an available session of ours are known (MODULE_EV_SESSION_
 * CAPS), it gets the last item of each node it wants (+notify) of its own
 * account and of every local contact whose presence it may see
 * (subscription to or both) — what the node's access model allows. The
 * contacts come from the account's roster, their nodes and items from the
 * store; each answer that arrives after the session has gone is dropped.
 * Contacts on other servers send theirs themselves. */

typedef struct last_job {
    unsigned refs;
    pep_state_t *st;
    router_t *router;
    const module_registry_t *reg;
    jid_t who; /* the session, found again with conn */
    unsigned long conn;
    char account[JID_FORMAT_BUF];
    char full[JID_FORMAT_BUF + JID_PART_BUF];
} last_job_t;

typedef struct last_req {
    last_job_t *job;
    char owner[JID_FORMAT_BUF];
    char *node; /* items step */
} last_req_t;

static void job_unref(last_job_t *j)
{
    if (--j->refs > 0)
        return;
    jid_clear(&j->who);
    free(j);
}

static last_req_t *last_req_new(last_job_t *j, const char *owner,
                                const char *node)
{
    last_req_t *r = xcalloc(1, sizeof(*r));
    r->job = j;
    j->refs++;
    snprintf(r->owner, sizeof(r->owner), "%s", owner);
    r->node = node != NULL ? xstrdup(node) : NULL;
    return r;
}

static void last_req_free(last_req_t *r)
{
    job_unref(r->job);
    free(r->node);
    free(r);
}

static void on_last_items(void *ud, int err, const store_data_item_t *items,
                          size_t count)
{
    last_req_t *r = ud;
    last_job_t *j = r->job;
    route_target_t *t = router_find_conn(j->router, &j->who, j->conn);
    if (err == STORE_OK && count > 0 && t != NULL && t->available &&
        !module_registry_blocked(j->reg, r->owner, &j->who)) {
        xml_node_t *its;
        xml_tree_t *ev = event_new(j->st, r->owner, r->node, &its);
        add_item(ev, its, NS_PUBSUB_EVENT, items[count - 1].key,
                 items[count - 1].value, items[count - 1].len);
        if (xml_element_set_attr(ev, ev->root, NULL, "to", j->full) < 0)
            xalloc_fail(64);
        route_stanza_t rs = ROUTE_STANZA(ev->root, j->router);
        router_deliver(t, &rs);
        route_stanza_done(&rs);
        xml_tree_free(ev);
    }
    last_req_free(r);
}

static void on_last_nodes(void *ud, int err, const store_data_item_t *items,
                          size_t count)
{
    last_req_t *r = ud;
    last_job_t *j = r->job;
    bool own = strcmp(r->owner, j->account) == 0;
    char node[JID_FORMAT_BUF];
    const char *domain;
    for (size_t i = 0; err == STORE_OK && i < count &&
                       module_split_bare(r->owner, node, sizeof(node), &domain);
         i++) {
        pep_node_config_t conf;
        pep_config_read(items[i].value, &conf);
        if (!own && conf.access == PEP_ACCESS_WHITELIST)
            continue;
        size_t n = strlen(items[i].key) + 8;
        char *notify = xmalloc(n);
        snprintf(notify, n, "%s+notify", items[i].key);
        bool wants = module_registry_entity_has(j->reg, j->full, notify);
        free(notify);
        if (!wants)
            continue;
        char *kind = kind_of(items[i].key);
        store_data_get(j->st->store, domain, node, kind, NULL, on_last_items,
                       last_req_new(j, r->owner, items[i].key));
        free(kind);
    }
    last_req_free(r);
}

static void last_owner(last_job_t *j, const char *owner)
{
    char node[JID_FORMAT_BUF];
    const char *domain;
    if (!module_split_bare(owner, node, sizeof(node), &domain))
        return;
    store_data_get(j->st->store, domain, node, "pepnode", NULL, on_last_nodes,
                   last_req_new(j, owner, NULL));
}

static void on_last_roster(void *ud, int err, const store_roster_t *ros)
{
    last_job_t *j = ud;
    last_owner(j, j->account);
    for (size_t i = 0; err == STORE_OK && i < ros->count; i++) {
        const store_roster_item_t *it = &ros->items[i];
        const char *at = strchr(it->contact, '@');
        if ((it->subscription & STORE_SUB_TO) != 0 && at != NULL &&
            router_serves(j->router, at + 1))
            last_owner(j, it->contact);
    }
    job_unref(j);
}

static module_result_t on_session_caps(module_call_t *c)
{
    pep_state_t *st = c->state;
    if (st->store == NULL || c->from->remote || c->from->account == NULL)
        return MODULE_PASS;
    last_job_t *j = xcalloc(1, sizeof(*j));
    j->refs = 1;
    j->st = st;
    j->router = c->router;
    j->reg = c->modules;
    if (jid_copy(&j->who, &c->from->jid) != JID_OK)
        xalloc_fail(sizeof(j->who));
    j->conn = c->from->conn;
    jid_format(&c->from->jid, true, j->account, sizeof(j->account));
    jid_format(&c->from->jid, false, j->full, sizeof(j->full));
    char node[JID_FORMAT_BUF];
    const char *domain;
    if (!module_split_bare(j->account, node, sizeof(node), &domain)) {
        job_unref(j);
        return MODULE_PASS;
    }
    store_roster_get(st->store, domain, node, on_last_roster, j);
    return MODULE_PASS;
}

static const module_hook_t pep_hooks[] = {
    {MODULE_EV_SESSION_CAPS, 0, on_session_caps},
    {0, 0, NULL},
};

/* ------------------------------------------------------------ the IQs */

static pep_op_t *op_new(module_call_t *c, op_kind_t kind, const char *node)
{
    pep_op_t *op = xcalloc(1, sizeof(*op));
    op->st = c->state;
    op->router = c->router;
    op->reg = c->modules;
    op->kind = kind;
    op->node = xstrdup(node);
    op->items_kind = kind_of(node);
    op->config = pep_node_defaults;
    jid_format(&c->from->jid, true, op->requester, sizeof(op->requester));
    op->l = module_later_new(c);
    snprintf(op->owner, sizeof(op->owner), "%s@%s", module_later_node(op->l),
             module_later_domain(op->l));
    return op;
}

static void op_start(pep_op_t *op)
{
    char node[JID_FORMAT_BUF];
    const char *domain;
    module_split_bare(op->owner, node, sizeof(node), &domain);
    store_data_get(op->st->store, domain, node, "pepnode", op->node, on_config,
                   op);
}

/* The single element child of el, or NULL (none or several). */
static const xml_node_t *only_child(const xml_node_t *el)
{
    const xml_node_t *one = NULL;
    for (const xml_node_t *ch = el->children; ch != NULL; ch = ch->next) {
        if (ch->kind != XML_NODE_ELEMENT)
            continue;
        if (one != NULL)
            return NULL;
        one = ch;
    }
    return one;
}

static bool node_ok(const char *node)
{
    return node != NULL && node[0] != '\0' && strlen(node) <= MAX_NODE_LEN;
}

static void error_app(module_call_t *c, const char *type, const char *cond,
                      const char *app)
{
    module_later_error_app(module_later_new(c), type, cond, NS_PUBSUB_ERRORS,
                           app);
}

static module_result_t pubsub_set(module_call_t *c, const xml_node_t *ps)
{
    pep_state_t *st = c->state;
    if (st->store == NULL) {
        module_reply_error(c, "cancel", "service-unavailable");
        return MODULE_HANDLED;
    }
    if (c->addressee != MODULE_TO_ACCOUNT) {
        module_reply_error(c, "auth", "forbidden");
        return MODULE_HANDLED;
    }
    const xml_node_t *pub = xml_element_child(ps, NS_PUBSUB, "publish");
    const xml_node_t *ret = xml_element_child(ps, NS_PUBSUB, "retract");
    if (pub != NULL) {
        const char *node = xml_element_attr(pub, NULL, "node");
        if (!node_ok(node)) {
            error_app(c, "modify", "bad-request", "nodeid-required");
            return MODULE_HANDLED;
        }
        const xml_node_t *item = xml_element_child(pub, NS_PUBSUB, "item");
        const xml_node_t *payload = item != NULL ? only_child(item) : NULL;
        if (payload == NULL) {
            error_app(c, "modify", "bad-request",
                      item == NULL ? "item-required" : "invalid-payload");
            return MODULE_HANDLED;
        }
        pep_node_config_t opts = pep_node_defaults;
        unsigned named = 0;
        const xml_node_t *po =
            xml_element_child(ps, NS_PUBSUB, "publish-options");
        const xml_node_t *x =
            po != NULL ? xml_element_child(po, NS_DATA, "x") : NULL;
        if (x != NULL) {
            pep_form_result_t fr =
                pep_form_apply(x, FT_PUBLISH_OPTS, &opts, &named);
            if (fr != PEP_FORM_OK) {
                /* §7.1.5: options this service cannot meet. */
                error_app(c, fr == PEP_FORM_WRONG_TYPE ? "modify" : "cancel",
                          fr == PEP_FORM_WRONG_TYPE ? "bad-request"
                                                    : "conflict",
                          fr == PEP_FORM_WRONG_TYPE ? "invalid-options"
                                                    : "precondition-not-met");
                return MODULE_HANDLED;
            }
        }
        buf_t b = BUF_INIT;
        if (xml_serialize(payload, NULL, &b) != 0)
            xalloc_fail(256);
        pep_op_t *op = op_new(c, OP_PUBLISH, node);
        op->payload = b.data != NULL ? b.data : xstrdup("");
        op->payload_len = b.len;
        op->config = opts;
        op->options_named = named;
        op->has_options = x != NULL;
        const char *id = xml_element_attr(item, NULL, "id");
        if (id != NULL && id[0] != '\0') {
            op->item_id = xstrdup(id);
        } else {
            char gen[48];
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            snprintf(gen, sizeof(gen), "%lld%09ld-%lu", (long long)ts.tv_sec,
                     ts.tv_nsec, ++st->next_id);
            op->item_id = xstrdup(gen);
        }
        op_start(op);
        return MODULE_HANDLED;
    }
    if (ret != NULL) {
        const char *node = xml_element_attr(ret, NULL, "node");
        const xml_node_t *item = xml_element_child(ret, NS_PUBSUB, "item");
        const char *id =
            item != NULL ? xml_element_attr(item, NULL, "id") : NULL;
        if (!node_ok(node)) {
            error_app(c, "modify", "bad-request", "nodeid-required");
            return MODULE_HANDLED;
        }
        if (id == NULL) {
            error_app(c, "modify", "bad-request", "item-required");
            return MODULE_HANDLED;
        }
        const char *n = xml_element_attr(ret, NULL, "notify");
        pep_op_t *op = op_new(c, OP_RETRACT, node);
        op->item_id = xstrdup(id);
        op->notify_retract =
            n != NULL && (strcmp(n, "1") == 0 || strcmp(n, "true") == 0);
        op_start(op);
        return MODULE_HANDLED;
    }
    module_reply_error(c, "cancel", "feature-not-implemented");
    return MODULE_HANDLED;
}

static module_result_t pubsub_get(module_call_t *c, const xml_node_t *ps)
{
    pep_state_t *st = c->state;
    const xml_node_t *items = xml_element_child(ps, NS_PUBSUB, "items");
    if (st->store == NULL || items == NULL) {
        module_reply_error(c, "cancel", "feature-not-implemented");
        return MODULE_HANDLED;
    }
    const char *node = xml_element_attr(items, NULL, "node");
    if (!node_ok(node)) {
        error_app(c, "modify", "bad-request", "nodeid-required");
        return MODULE_HANDLED;
    }
    pep_op_t *op = op_new(c, OP_ITEMS, node);
    const char *max = xml_element_attr(items, NULL, "max_items");
    if (max != NULL)
        op->max_items = (unsigned)strtoul(max, NULL, 10);
    for (const xml_node_t *it = xml_element_child(items, NS_PUBSUB, "item");
         it != NULL; it = xml_element_next(it, NS_PUBSUB, "item")) {
        const char *id = xml_element_attr(it, NULL, "id");
        if (id == NULL)
            continue;
        op->ids = xreallocarray(op->ids, op->nids + 1, sizeof(*op->ids));
        op->ids[op->nids++] = xstrdup(id);
    }
    op_start(op);
    return MODULE_HANDLED;
}

static module_result_t owner_iq(module_call_t *c, const xml_node_t *ps,
                                bool set)
{
    pep_state_t *st = c->state;
    if (st->store == NULL) {
        module_reply_error(c, "cancel", "service-unavailable");
        return MODULE_HANDLED;
    }
    if (c->addressee != MODULE_TO_ACCOUNT) {
        module_reply_error(c, "auth", "forbidden");
        return MODULE_HANDLED;
    }
    const xml_node_t *cf = xml_element_child(ps, NS_PUBSUB_OWNER, "configure");
    const xml_node_t *del = xml_element_child(ps, NS_PUBSUB_OWNER, "delete");
    const xml_node_t *what = cf != NULL ? cf : del;
    const char *node =
        what != NULL ? xml_element_attr(what, NULL, "node") : NULL;
    if (what == NULL || (del != NULL && !set)) {
        module_reply_error(c, "cancel", "feature-not-implemented");
        return MODULE_HANDLED;
    }
    if (!node_ok(node)) {
        error_app(c, "modify", "bad-request", "nodeid-required");
        return MODULE_HANDLED;
    }
    if (del != NULL) {
        op_start(op_new(c, OP_DELETE, node));
        return MODULE_HANDLED;
    }
    if (!set) {
        op_start(op_new(c, OP_CONFIGURE_GET, node));
        return MODULE_HANDLED;
    }
    const xml_node_t *x = xml_element_child(cf, NS_DATA, "x");
    pep_node_config_t conf = pep_node_defaults;
    unsigned named = 0;
    if (x == NULL ||
        pep_form_apply(x, FT_NODE_CONFIG, &conf, &named) != PEP_FORM_OK) {
        module_reply_error(c, "modify", "not-acceptable");
        return MODULE_HANDLED;
    }
    pep_op_t *op = op_new(c, OP_CONFIGURE_SET, node);
    op->config = conf;
    op->options_named = named;
    op_start(op);
    return MODULE_HANDLED;
}

static module_result_t owner_get(module_call_t *c, const xml_node_t *ps)
{
    return owner_iq(c, ps, false);
}

static module_result_t owner_set(module_call_t *c, const xml_node_t *ps)
{
    return owner_iq(c, ps, true);
}

/* --- disco#items of the account: its nodes (XEP-0163 §9, XEP-0060
 * §5.2), those the requester may read; an account that does not exist
 * gets service-unavailable. --- */

typedef struct nodes_req {
    module_later_t *l;
    pep_state_t *st;
    bool owner;
    bool subscribed; /* the requester may see the owner's presence */
    char owner_jid[JID_FORMAT_BUF];
    char requester[JID_FORMAT_BUF];
} nodes_req_t;

static void on_node_list(void *ud, int err, const store_data_item_t *items,
                         size_t count)
{
    nodes_req_t *r = ud;
    if (err != STORE_OK) {
        module_later_error(r->l, "wait", "internal-server-error");
        free(r);
        return;
    }
    xml_tree_t *t;
    xml_node_t *iq = module_later_result(r->l, &t);
    xml_node_t *q =
        iq != NULL ? xml_element_new(t, iq, NS_DISCO_ITEMS, "query") : NULL;
    if (q == NULL)
        xalloc_fail(256);
    for (size_t i = 0; i < count; i++) {
        pep_node_config_t conf;
        pep_config_read(items[i].value, &conf);
        bool ok = r->owner || conf.access == PEP_ACCESS_OPEN ||
                  (conf.access == PEP_ACCESS_PRESENCE && r->subscribed);
        if (!ok)
            continue;
        xml_node_t *it = xml_element_new(t, q, NS_DISCO_ITEMS, "item");
        if (it == NULL ||
            xml_element_set_attr(t, it, NULL, "jid", r->owner_jid) < 0 ||
            xml_element_set_attr(t, it, NULL, "node", items[i].key) < 0)
            xalloc_fail(256);
    }
    module_later_send(r->l, t);
    free(r);
}

static void on_nodes_roster(void *ud, int err, const store_roster_t *ros)
{
    nodes_req_t *r = ud;
    if (err != STORE_OK) {
        module_later_error(r->l, "cancel",
                           err == STORE_ERR_NOT_FOUND
                               ? "service-unavailable"
                               : "internal-server-error");
        free(r);
        return;
    }
    for (size_t i = 0; i < ros->count && !r->subscribed; i++)
        r->subscribed = strcmp(ros->items[i].contact, r->requester) == 0 &&
                        (ros->items[i].subscription & STORE_SUB_FROM) != 0;
    store_data_get(r->st->store, module_later_domain(r->l),
                   module_later_node(r->l), "pepnode", NULL, on_node_list, r);
}

static module_result_t pep_disco_items(module_call_t *c, const xml_node_t *q)
{
    pep_state_t *st = c->state;
    if (st->store == NULL || xml_element_attr(q, NULL, "node") != NULL)
        return MODULE_PASS;
    nodes_req_t *r = xcalloc(1, sizeof(*r));
    r->st = st;
    r->l = module_later_new(c);
    r->owner = c->addressee == MODULE_TO_ACCOUNT;
    snprintf(r->owner_jid, sizeof(r->owner_jid), "%s@%s",
             module_later_node(r->l), module_later_domain(r->l));
    jid_format(&c->from->jid, true, r->requester, sizeof(r->requester));
    if (r->owner)
        store_data_get(st->store, module_later_domain(r->l),
                       module_later_node(r->l), "pepnode", NULL, on_node_list,
                       r);
    else
        store_roster_get(st->store, module_later_domain(r->l),
                         module_later_node(r->l), on_nodes_roster, r);
    return MODULE_HANDLED;
}

#define TO_ACCOUNTS                                                            \
    (MODULE_TO_BIT(MODULE_TO_ACCOUNT) | MODULE_TO_BIT(MODULE_TO_BARE))

static const module_iq_handler_t pep_iq[] = {
    {MODULE_IQ_GET, NS_PUBSUB, TO_ACCOUNTS, pubsub_get},
    {MODULE_IQ_SET, NS_PUBSUB, TO_ACCOUNTS, pubsub_set},
    {MODULE_IQ_GET, NS_PUBSUB_OWNER, TO_ACCOUNTS, owner_get},
    {MODULE_IQ_SET, NS_PUBSUB_OWNER, TO_ACCOUNTS, owner_set},
    {MODULE_IQ_GET, NS_DISCO_ITEMS, TO_ACCOUNTS, pep_disco_items},
    {0, NULL, 0, NULL},
};

static const module_identity_t pep_identities[] = {
    {"pubsub", "pep", NULL},
    {NULL, NULL, NULL},
};

static const char *const pep_account_features[] = {
    NS_PUBSUB,
    NS_PUBSUB "#access-open",
    NS_PUBSUB "#access-presence",
    NS_PUBSUB "#access-whitelist",
    NS_PUBSUB "#auto-create",
    NS_PUBSUB "#config-node",
    NS_PUBSUB "#delete-nodes",
    NS_PUBSUB "#filtered-notifications",
    NS_PUBSUB "#item-ids",
    NS_PUBSUB "#persistent-items",
    NS_PUBSUB "#publish",
    NS_PUBSUB "#publish-options",
    NS_PUBSUB "#retract-items",
    NS_PUBSUB "#retrieve-items",
    "urn:xmpp:bookmarks-conversion:0", /* XEP-0411, with private.c */
    NULL,
};

const module_desc_t module_pep = {
    .name = "pep",
    .default_on = true,
    .init = pep_init,
    .fini = pep_fini,
    .iq = pep_iq,
    .hooks = pep_hooks,
    .account_identities = pep_identities,
    .account_features = pep_account_features,
};
