/* XEP-0191 Blocking Command: an account's list of JIDs it will not hear
 * from nor talk to.
 *
 *  - IQs for the account: get the list (the session then receives pushes),
 *    block items, unblock items, unblock all (no items). Each change is
 *    stored (kind "block", key the JID, prepared), answered once stored,
 *    and pushed to every resource of the account that asked for the list
 *    (§3.3–§3.5). A block without items is bad-request, a JID that does
 *    not parse jid-malformed.
 *  - A JID on the list matches as XEP-0016 §2.1 orders it: the full JID,
 *    the bare JID, domain/resource, the domain.
 *  - Inbound (§3.5 and §4): from a blocked JID to the account, presence,
 *    IQ results and errors are dropped, messages and IQ get/set answered
 *    service-unavailable — as if the account did not exist.
 *  - Outbound (§3.6): from the account to a blocked JID, messages and IQ
 *    get/set get not-acceptable with <blocked
 *    xmlns='urn:xmpp:blocking:errors'/>; presence is dropped.
 *  - What the server sends on the account's behalf (presence broadcasts,
 *    probe answers: server/im) asks module_registry_blocked(), so a
 *    blocked contact sees the account as offline; blocking sends the
 *    contacts that were subscribed unavailable presence from each
 *    available resource (§3.3), unblocking their current presence
 *    (§3.4).
 *
 * The lists of every account live in memory (they are small, and every
 * stanza to or from an account may need one), loaded from the store at
 * start; the store's requests run in order, so the load is done before
 * the first client has authenticated. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "im/im.h"
#include "modules/modules.h"
#include "stream/stanza.h"

#define NS_BLOCKING "urn:xmpp:blocking"
#define NS_ERRORS   "urn:xmpp:blocking:errors"
#define NBUCKETS    256

typedef struct block_list {
    struct block_list *next;
    char *owner; /* bare JID */
    char **jids;
    size_t n, cap;
} block_list_t;

/* A session that asked for the list: it gets the pushes. */
typedef struct watcher {
    struct watcher *next;
    jid_t jid;
    unsigned long conn;
} watcher_t;

typedef struct block_state {
    store_t *store;
    const logger_t *log;
    block_list_t *buckets[NBUCKETS];
    size_t lists;
    watcher_t *watchers;
    unsigned long next_id;
} block_state_t;

static block_list_t *list_find(block_state_t *st, const char *owner)
{
    if (st->lists == 0)
        return NULL;
    block_list_t *l = st->buckets[module_str_hash(owner) % NBUCKETS];
    while (l != NULL && strcmp(l->owner, owner) != 0)
        l = l->next;
    return l;
}

static block_list_t *list_get(block_state_t *st, const char *owner)
{
    block_list_t *l = list_find(st, owner);
    if (l != NULL)
        return l;
    l = xcalloc(1, sizeof(*l));
    l->owner = xstrdup(owner);
    size_t h = module_str_hash(owner) % NBUCKETS;
    l->next = st->buckets[h];
    st->buckets[h] = l;
    st->lists++;
    return l;
}

static bool list_has(const block_list_t *l, const char *jid)
{
    for (size_t i = 0; l != NULL && i < l->n; i++)
        if (strcmp(l->jids[i], jid) == 0)
            return true;
    return false;
}

/* Adds jid; false when it was there. */
static bool list_add(block_list_t *l, const char *jid)
{
    if (list_has(l, jid))
        return false;
    if (l->n == l->cap) {
        l->cap = l->cap != 0 ? l->cap * 2 : 4;
        l->jids = xreallocarray(l->jids, l->cap, sizeof(*l->jids));
    }
    l->jids[l->n++] = xstrdup(jid);
    return true;
}

static void list_remove(block_list_t *l, const char *jid)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->jids[i], jid) == 0) {
            free(l->jids[i]);
            l->jids[i] = l->jids[--l->n];
            return;
        }
}

static void list_clear(block_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->jids[i]);
    l->n = 0;
}

/* XEP-0016 §2.1: whether x matches an item of l. */
static bool list_matches(const block_list_t *l, const jid_t *x)
{
    if (l == NULL || l->n == 0)
        return false;
    char buf[JID_FORMAT_BUF + JID_PART_BUF];
    if (x->resource != NULL && jid_format(x, false, buf, sizeof(buf)) >= 0 &&
        list_has(l, buf))
        return true;
    if (x->node != NULL && jid_format(x, true, buf, sizeof(buf)) >= 0 &&
        list_has(l, buf))
        return true;
    if (x->resource != NULL) {
        snprintf(buf, sizeof(buf), "%.*s/%.*s", (int)x->domain_len, x->domain,
                 (int)x->resource_len, x->resource);
        if (list_has(l, buf))
            return true;
    }
    snprintf(buf, sizeof(buf), "%.*s", (int)x->domain_len, x->domain);
    return list_has(l, buf);
}

/* The list of the account of j (any resource ignored), or NULL. */
static block_list_t *list_of(block_state_t *st, const jid_t *j)
{
    char bare[JID_FORMAT_BUF];
    if (st->lists == 0 || j->node == NULL ||
        jid_format(j, true, bare, sizeof(bare)) < 0)
        return NULL;
    return list_find(st, bare);
}

/* ------------------------------------------------------------ loading */

static void on_loaded(void *ud, int err, const store_data_item_t *items,
                      size_t count)
{
    block_state_t *st = ud;
    if (err != STORE_OK && err != STORE_ERR_CLOSED)
        LOG(st->log, LOG_ERROR, 0, "block lists not loaded: %s",
            store_strerror(err));
    for (size_t i = 0; i < count; i++) {
        char owner[JID_FORMAT_BUF];
        snprintf(owner, sizeof(owner), "%s@%s", items[i].node, items[i].domain);
        list_add(list_get(st, owner), items[i].key);
    }
    if (count > 0)
        LOG(st->log, LOG_DEBUG, 0, "block lists: %zu entries loaded", count);
}

static void *block_init(const module_env_t *env, bool *ok)
{
    block_state_t *st = xcalloc(1, sizeof(*st));
    st->store = env->store;
    st->log = env->log;
    if (st->store != NULL)
        store_data_all(st->store, "block", on_loaded, st);
    *ok = true;
    return st;
}

static void block_fini(void *state)
{
    block_state_t *st = state;
    for (size_t i = 0; i < NBUCKETS; i++)
        while (st->buckets[i] != NULL) {
            block_list_t *l = st->buckets[i];
            st->buckets[i] = l->next;
            list_clear(l);
            free(l->jids);
            free(l->owner);
            free(l);
        }
    while (st->watchers != NULL) {
        watcher_t *w = st->watchers;
        st->watchers = w->next;
        jid_clear(&w->jid);
        free(w);
    }
    free(st);
}

/* ------------------------------------------------------------ pushes */

static void watch(block_state_t *st, const route_target_t *t)
{
    for (watcher_t *w = st->watchers; w != NULL; w = w->next)
        if (w->conn == t->conn && jid_bare_equal(&w->jid, &t->jid))
            return;
    watcher_t *w = xcalloc(1, sizeof(*w));
    if (jid_copy(&w->jid, &t->jid) != JID_OK)
        xalloc_fail(sizeof(*w));
    w->conn = t->conn;
    w->next = st->watchers;
    st->watchers = w;
}

static module_result_t on_ended(module_call_t *c)
{
    block_state_t *st = c->state;
    for (watcher_t **pp = &st->watchers; *pp != NULL; pp = &(*pp)->next) {
        watcher_t *w = *pp;
        if (w->conn == c->from->conn &&
            jid_bare_equal(&w->jid, &c->from->jid)) {
            *pp = w->next;
            jid_clear(&w->jid);
            free(w);
            break;
        }
    }
    return MODULE_PASS;
}

/* <iq type='set'><block|unblock><item jid/>...</...></iq> to every
 * watching resource of `owner`. */
static void push(block_state_t *st, router_t *r, const char *owner,
                 const char *verb, char *const *jids, size_t n)
{
    for (watcher_t *w = st->watchers; w != NULL; w = w->next) {
        char bare[JID_FORMAT_BUF], full[JID_FORMAT_BUF + JID_PART_BUF];
        jid_format(&w->jid, true, bare, sizeof(bare));
        if (strcmp(bare, owner) != 0)
            continue;
        route_target_t *t = router_find_conn(r, &w->jid, w->conn);
        if (t == NULL)
            continue;
        jid_format(&w->jid, false, full, sizeof(full));
        char id[32];
        snprintf(id, sizeof(id), "block-push-%lu", ++st->next_id);
        xml_tree_t *tr = xml_tree_new();
        xml_node_t *iq =
            tr != NULL ? xml_element_new(tr, NULL, XML_NS_CLIENT, "iq") : NULL;
        xml_node_t *v =
            iq != NULL ? xml_element_new(tr, iq, NS_BLOCKING, verb) : NULL;
        int rc = v != NULL ? 0 : -1;
        if (rc == 0) {
            rc |= xml_element_set_attr(tr, iq, NULL, "type", "set");
            rc |= xml_element_set_attr(tr, iq, NULL, "id", id);
            rc |= xml_element_set_attr(tr, iq, NULL, "to", full);
        }
        for (size_t i = 0; rc == 0 && i < n; i++) {
            xml_node_t *it = xml_element_new(tr, v, NS_BLOCKING, "item");
            rc |= it != NULL
                      ? xml_element_set_attr(tr, it, NULL, "jid", jids[i])
                      : -1;
        }
        if (rc != 0)
            xalloc_fail(256);
        route_stanza_t rs = ROUTE_STANZA(iq, r);
        router_deliver(t, &rs);
        route_stanza_done(&rs);
        xml_tree_free(tr);
    }
}

/* ------------------------------------------------------------ the IQs */

static module_result_t block_get(module_call_t *c, const xml_node_t *q)
{
    block_state_t *st = c->state;
    (void)q;
    if (c->addressee != MODULE_TO_ACCOUNT) {
        module_reply_error(c, "cancel", "forbidden");
        return MODULE_HANDLED;
    }
    xml_tree_t *t;
    xml_node_t *iq = module_iq_result(c, &t);
    xml_node_t *bl =
        iq != NULL ? xml_element_new(t, iq, NS_BLOCKING, "blocklist") : NULL;
    if (bl == NULL)
        xalloc_fail(256);
    const block_list_t *l = list_of(st, &c->from->jid);
    for (size_t i = 0; l != NULL && i < l->n; i++) {
        xml_node_t *it = xml_element_new(t, bl, NS_BLOCKING, "item");
        if (it == NULL ||
            xml_element_set_attr(t, it, NULL, "jid", l->jids[i]) < 0)
            xalloc_fail(256);
    }
    watch(st, c->from);
    module_send(c, t);
    return MODULE_HANDLED;
}

/* A change being stored: the answer and the push wait for the store. */
typedef struct change {
    block_state_t *st;
    router_t *router;
    module_later_t *l;
    char owner[JID_FORMAT_BUF];
    bool block;
    char **jids; /* the items as changed (unblock all: the old list) */
    size_t n;
    bool all; /* unblock all */
    unsigned pending;
    bool failed;
} change_t;

static void change_free(change_t *ch)
{
    for (size_t i = 0; i < ch->n; i++)
        free(ch->jids[i]);
    free(ch->jids);
    free(ch);
}

/* §3.3 and §3.4: the contacts just blocked or unblocked that may see the
 * account's presence (subscription from or both) get, from each available
 * resource, unavailable presence (blocked) or its current presence
 * (unblocked). */
static void send_presence(change_t *ch, const route_target_t *t,
                          const char *contact)
{
    char full[JID_FORMAT_BUF + JID_PART_BUF];
    jid_format(&t->jid, false, full, sizeof(full));
    const xml_node_t *cur = ch->block ? NULL : im_session_presence(t);
    if (!ch->block && cur == NULL)
        return;
    xml_tree_t *tr = xml_tree_new();
    xml_node_t *p = tr == NULL ? NULL
                    : cur != NULL
                        ? xml_node_copy(tr, NULL, cur)
                        : xml_element_new(tr, NULL, XML_NS_CLIENT, "presence");
    if (p == NULL ||
        (ch->block &&
         xml_element_set_attr(tr, p, NULL, "type", "unavailable") < 0) ||
        xml_element_set_attr(tr, p, NULL, "from", full) < 0 ||
        xml_element_set_attr(tr, p, NULL, "to", contact) < 0)
        xalloc_fail(256);
    const char *at = strchr(contact, '@');
    if (at != NULL && !router_serves(ch->router, at + 1)) {
        router_send_remote(ch->router, tr);
        return;
    }
    for (route_target_t *ct = router_resources_bare(ch->router, contact);
         ct != NULL; ct = ct->next_resource) {
        if (!ct->available)
            continue;
        route_stanza_t rs = ROUTE_STANZA(p, ch->router);
        router_deliver(ct, &rs);
        route_stanza_done(&rs);
    }
    xml_tree_free(tr);
}

static void on_roster(void *ud, int err, const store_roster_t *ros)
{
    change_t *ch = ud;
    for (size_t i = 0; err == STORE_OK && i < ros->count; i++) {
        const store_roster_item_t *it = &ros->items[i];
        if ((it->subscription & STORE_SUB_FROM) == 0)
            continue;
        jid_t cj;
        if (jid_parse(it->contact, strlen(it->contact), 0, &cj) != JID_OK)
            continue;
        block_list_t tmp = {.jids = ch->jids, .n = ch->n};
        bool hit = list_matches(&tmp, &cj);
        jid_clear(&cj);
        for (route_target_t *t = router_resources_bare(ch->router, ch->owner);
             hit && t != NULL; t = t->next_resource)
            if (t->available)
                send_presence(ch, t, it->contact);
    }
    change_free(ch);
}

static void on_stored(void *ud, int err)
{
    change_t *ch = ud;
    if (err != STORE_OK)
        ch->failed = true;
    if (--ch->pending > 0)
        return;
    if (!module_later_stored(ch->l, ch->failed ? STORE_ERR_IO : STORE_OK)) {
        change_free(ch);
        return;
    }
    push(ch->st, ch->router, ch->owner, ch->block ? "block" : "unblock",
         ch->all ? NULL : ch->jids, ch->all ? 0 : ch->n);
    if (ch->st->store != NULL) {
        const char *at = strchr(ch->owner, '@');
        char node[JID_FORMAT_BUF];
        snprintf(node, sizeof(node), "%.*s", (int)(at - ch->owner), ch->owner);
        store_roster_get(ch->st->store, at + 1, node, on_roster, ch);
        return;
    }
    change_free(ch);
}

static module_result_t block_set(module_call_t *c, const xml_node_t *v)
{
    block_state_t *st = c->state;
    bool block = strcmp(v->name, "block") == 0;
    if (c->addressee != MODULE_TO_ACCOUNT) {
        module_reply_error(c, "cancel", "forbidden");
        return MODULE_HANDLED;
    }
    if (!block && strcmp(v->name, "unblock") != 0) {
        module_reply_error(c, "modify", "bad-request");
        return MODULE_HANDLED;
    }
    if (st->store == NULL) {
        module_reply_error(c, "cancel", "service-unavailable");
        return MODULE_HANDLED;
    }
    change_t *ch = xcalloc(1, sizeof(*ch));
    ch->st = st;
    ch->router = c->router;
    ch->block = block;
    jid_format(&c->from->jid, true, ch->owner, sizeof(ch->owner));
    size_t cap = 0;
    for (const xml_node_t *it = xml_element_child(v, NS_BLOCKING, "item");
         it != NULL; it = xml_element_next(it, NS_BLOCKING, "item")) {
        const char *s = xml_element_attr(it, NULL, "jid");
        jid_t j;
        char prepared[JID_FORMAT_BUF + JID_PART_BUF];
        if (s == NULL || jid_parse(s, strlen(s), 0, &j) != JID_OK) {
            change_free(ch);
            module_reply_error(c, "modify", "jid-malformed");
            return MODULE_HANDLED;
        }
        int rc = jid_format(&j, false, prepared, sizeof(prepared));
        jid_clear(&j);
        if (rc < 0) {
            change_free(ch);
            module_reply_error(c, "modify", "jid-malformed");
            return MODULE_HANDLED;
        }
        bool dup = false;
        for (size_t i = 0; i < ch->n && !dup; i++)
            dup = strcmp(ch->jids[i], prepared) == 0;
        if (dup)
            continue;
        if (ch->n == cap) {
            cap = cap != 0 ? cap * 2 : 4;
            ch->jids = xreallocarray(ch->jids, cap, sizeof(*ch->jids));
        }
        ch->jids[ch->n++] = xstrdup(prepared);
    }
    if (block && ch->n == 0) {
        change_free(ch);
        module_reply_error(c, "modify", "bad-request");
        return MODULE_HANDLED;
    }
    block_list_t *l = list_get(st, ch->owner);
    ch->l = module_later_new(c);
    ch->pending = 1; /* released below, after the requests are made */
    const char *domain = module_later_domain(ch->l);
    const char *node = module_later_node(ch->l);
    if (!block && ch->n == 0) {
        /* Unblock all: the old list says who gets presence again. */
        ch->all = true;
        ch->jids = l->jids;
        ch->n = l->n;
        l->jids = NULL;
        l->n = l->cap = 0;
        ch->pending++;
        store_data_delete(st->store, domain, node, "block", NULL, on_stored,
                          ch);
    }
    for (size_t i = 0; i < ch->n && !ch->all; i++) {
        ch->pending++;
        if (block) {
            list_add(l, ch->jids[i]);
            store_data_put(st->store, domain, node, "block", ch->jids[i], "", 0,
                           on_stored, ch);
        } else {
            list_remove(l, ch->jids[i]);
            store_data_delete(st->store, domain, node, "block", ch->jids[i],
                              on_stored, ch);
        }
    }
    on_stored(ch, STORE_OK);
    return MODULE_HANDLED;
}

/* ------------------------------------------------------------ enforcement */

static bool is_type(const xml_node_t *el, const char *want)
{
    const char *t = xml_element_attr(el, NULL, "type");
    return t != NULL && strcmp(t, want) == 0;
}

/* §3.6: the account's own stanza to a JID it blocks. */
static void refuse_outbound(module_call_t *c)
{
    const xml_node_t *el = c->tree->root;
    if (strcmp(el->name, "presence") == 0 || is_type(el, "error") ||
        is_type(el, "result"))
        return; /* dropped */
    xml_tree_t *t = stanza_error_reply(el, "cancel", "not-acceptable", NULL);
    if (t == NULL)
        return;
    xml_node_t *err = xml_element_child(t->root, XML_NS_CLIENT, "error");
    if (err == NULL || xml_element_new(t, err, NS_ERRORS, "blocked") == NULL)
        xalloc_fail(256);
    module_send(c, t);
}

/* §3.5/§4: a stanza from a JID the recipient blocks. */
static void refuse_inbound(module_call_t *c)
{
    const xml_node_t *el = c->tree->root;
    if (strcmp(el->name, "presence") == 0 || is_type(el, "error") ||
        is_type(el, "result") || is_type(el, "groupchat") ||
        is_type(el, "headline"))
        return; /* dropped */
    module_reply_error(c, "cancel", "service-unavailable");
}

static module_result_t on_stanza(module_call_t *c)
{
    block_state_t *st = c->state;
    if (st->lists == 0 || c->to == NULL)
        return MODULE_PASS;
    /* The sender's own list (a local account), then the recipient's. */
    if (!c->from->remote && list_matches(list_of(st, &c->from->jid), c->to)) {
        refuse_outbound(c);
        return MODULE_HANDLED;
    }
    if (c->addressee != MODULE_TO_REMOTE &&
        list_matches(list_of(st, c->to), &c->from->jid)) {
        refuse_inbound(c);
        return MODULE_HANDLED;
    }
    return MODULE_PASS;
}

static bool block_blocked(void *state, const char *from, const jid_t *to)
{
    block_state_t *st = state;
    if (st->lists == 0)
        return false;
    jid_t f;
    if (jid_parse(from, strlen(from), 0, &f) != JID_OK)
        return false;
    bool hit =
        list_matches(list_of(st, to), &f) || list_matches(list_of(st, &f), to);
    jid_clear(&f);
    return hit;
}

static const module_iq_handler_t block_iq[] = {
    {MODULE_IQ_GET, NS_BLOCKING,
     MODULE_TO_BIT(MODULE_TO_ACCOUNT) | MODULE_TO_BIT(MODULE_TO_BARE),
     block_get},
    {MODULE_IQ_SET, NS_BLOCKING,
     MODULE_TO_BIT(MODULE_TO_ACCOUNT) | MODULE_TO_BIT(MODULE_TO_BARE),
     block_set},
    {0, NULL, 0, NULL},
};

/* Before everything else that handles stanzas between two parties. */
#define BLOCK_PRIORITY 50
static const module_hook_t block_hooks[] = {
    {MODULE_EV_MESSAGE_BARE, BLOCK_PRIORITY, on_stanza},
    {MODULE_EV_MESSAGE_FULL, BLOCK_PRIORITY, on_stanza},
    {MODULE_EV_MESSAGE_REMOTE, BLOCK_PRIORITY, on_stanza},
    {MODULE_EV_PRESENCE_BARE, BLOCK_PRIORITY, on_stanza},
    {MODULE_EV_PRESENCE_FULL, BLOCK_PRIORITY, on_stanza},
    {MODULE_EV_PRESENCE_REMOTE, BLOCK_PRIORITY, on_stanza},
    {MODULE_EV_IQ_BARE, BLOCK_PRIORITY, on_stanza},
    {MODULE_EV_IQ_FULL, BLOCK_PRIORITY, on_stanza},
    {MODULE_EV_IQ_REMOTE, BLOCK_PRIORITY, on_stanza},
    {MODULE_EV_SESSION_ENDED, BLOCK_PRIORITY, on_ended},
    {0, 0, NULL},
};

static const char *const block_features[] = {NS_BLOCKING, NULL};

const module_desc_t module_blocking = {
    .name = "blocking",
    .default_on = true,
    .init = block_init,
    .fini = block_fini,
    .iq = block_iq,
    .hooks = block_hooks,
    .features = block_features,
    .blocked = block_blocked,
};
