/* roster: RFC 6121 rosters (§2), roster versioning (XEP-0237) and the
 * presence subscription state machine (§3, Appendix A), for accounts of
 * this server; presence.c adds presence broadcast on the same state.
 *
 * A core module: rosters and subscriptions are what RFC 6121 is. Its hooks
 * run at priority 10, before server/im's delivery rules (0), and take the
 * presence stanzas that are subscription traffic.
 *
 * How the state machine is written: a subscription stanza a user sends is
 * first processed for the sender ("outbound", RFC 6121 §3.x.2 and Appendix
 * A.2/A.3), which may change the sender's item and decides whether the
 * stanza goes on; then for the contact ("inbound", §3.x.3 and Appendix
 * A.4), which may change the contact's item and decides whether the
 * contact's resources see it. Each side works on one account's roster, so
 * that a contact on another server (federation, next) is the same code
 * with the inbound half run there. Subscription bits: STORE_SUB_TO (the
 * user receives the contact's presence), STORE_SUB_FROM (the contact
 * receives the user's); `ask` is Pending Out, a stored request is Pending
 * In. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "base/xalloc.h"
#include "im/im_internal.h"
#include "modules/modules.h"
#include "stream/stanza.h"

/* Longest name or group name accepted in a roster item (RFC 6121 §2.3.3
 * lets the server pick; Prosody and ejabberd allow about this much). */
enum { ROSTER_TEXT_MAX = 1024, ROSTER_GROUPS_MAX = 64 };

static bool is(const char *a, const char *b)
{
    return a != NULL && strcmp(a, b) == 0;
}

/* ---------------------------------------------------------------- items */

im_item_t *im_item_find(const im_account_t *a, const char *contact)
{
    if (a->nbuckets == 0)
        return NULL;
    size_t b = hash_str(contact) & (a->nbuckets - 1);
    for (im_item_t *it = a->buckets[b]; it != NULL; it = it->next)
        if (strcmp(it->contact, contact) == 0)
            return it;
    return NULL;
}

static void items_grow(im_account_t *a)
{
    size_t n = a->nbuckets == 0 ? 16 : a->nbuckets * 2;
    im_item_t **nb = xcalloc(n, sizeof(*nb));
    for (size_t i = 0; i < a->nbuckets; i++) {
        im_item_t *it = a->buckets[i];
        while (it != NULL) {
            im_item_t *next = it->next;
            size_t b = hash_str(it->contact) & (n - 1);
            it->next = nb[b];
            nb[b] = it;
            it = next;
        }
    }
    free(a->buckets);
    a->buckets = nb;
    a->nbuckets = n;
}

static im_item_t *item_add(im_account_t *a, const char *contact)
{
    if (a->entries + 1 > a->nbuckets)
        items_grow(a);
    im_item_t *it = xcalloc(1, sizeof(*it));
    it->contact = xstrdup(contact);
    size_t b = hash_str(contact) & (a->nbuckets - 1);
    it->next = a->buckets[b];
    a->buckets[b] = it;
    a->entries++;
    return it;
}

static void item_groups_free(im_item_t *it)
{
    for (size_t i = 0; i < it->group_count; i++)
        free(it->groups[i]);
    free(it->groups);
    it->groups = NULL;
    it->group_count = 0;
}

static void item_free(im_item_t *it)
{
    item_groups_free(it);
    free(it->contact);
    free(it->name);
    rcbuf_unref(it->pending);
    free(it);
}

static void item_remove(im_account_t *a, im_item_t *it)
{
    size_t b = hash_str(it->contact) & (a->nbuckets - 1);
    for (im_item_t **pp = &a->buckets[b]; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == it) {
            *pp = it->next;
            break;
        }
    }
    if (it->in_roster)
        a->items--;
    a->entries--;
    item_free(it);
}

/* An entry that is neither an item nor a request is dropped. */
static void item_maybe_drop(im_account_t *a, im_item_t *it)
{
    if (!it->in_roster && it->pending == NULL)
        item_remove(a, it);
}

static void item_set_in_roster(im_account_t *a, im_item_t *it)
{
    if (!it->in_roster) {
        it->in_roster = true;
        a->items++;
    }
}

/* ---------------------------------------------------------------- store */

static void on_saved(void *ud, int err)
{
    im_state_t *st = ud;
    if (err != STORE_OK)
        LOG(st->log, LOG_WARN, 0, "roster change not stored: %s",
            store_strerror(err));
}

/* Writes the entry through to the store: the item (or its removal when it
 * is not in the roster) with the next roster version when `roster` says
 * the item changed, and the pending request as `pending` says. */
static void item_store(im_state_t *st, im_account_t *a, im_item_t *it,
                       bool roster, store_pending_op_t pending)
{
    if (roster)
        a->version++;
    if (st->store == NULL)
        return;
    store_roster_item_t item = {
        .contact = it->contact,
        .name = it->name,
        .groups = (const char *const *)it->groups,
        .group_count = it->group_count,
        .subscription = it->sub,
        .ask = it->ask,
        .approved = it->approved,
    };
    store_roster_change_t ch = {
        .contact = it->contact,
        .item = it->in_roster ? &item : NULL,
        .pending = pending,
        .pending_stanza = it->pending != NULL ? rcbuf_data(it->pending) : NULL,
        .pending_len = it->pending != NULL ? rcbuf_len(it->pending) : 0,
        .version = roster ? a->version : 0,
    };
    if (!roster && pending == STORE_PENDING_KEEP)
        return;
    store_roster_update(st->store, a->domain, a->node, &ch, on_saved, st);
}

/* ---------------------------------------------------------------- cache */

static void account_free(im_account_t *a)
{
    for (size_t i = 0; i < a->nbuckets; i++) {
        im_item_t *it = a->buckets[i];
        while (it != NULL) {
            im_item_t *next = it->next;
            item_free(it);
            it = next;
        }
    }
    free(a->buckets);
    free(a->bare);
    free(a->node); /* and domain, in the same block */
    free(a);
}

im_account_t *im_account_find(im_state_t *st, const char *bare)
{
    if (st->nbuckets == 0)
        return NULL;
    size_t b = hash_str(bare) & (st->nbuckets - 1);
    for (im_account_t *a = st->buckets[b]; a != NULL; a = a->next)
        if (strcmp(a->bare, bare) == 0)
            return a;
    return NULL;
}

static void cache_grow(im_state_t *st)
{
    size_t n = st->nbuckets == 0 ? 64 : st->nbuckets * 2;
    im_account_t **nb = xcalloc(n, sizeof(*nb));
    for (size_t i = 0; i < st->nbuckets; i++) {
        im_account_t *a = st->buckets[i];
        while (a != NULL) {
            im_account_t *next = a->next;
            size_t b = hash_str(a->bare) & (n - 1);
            a->next = nb[b];
            nb[b] = a;
            a = next;
        }
    }
    free(st->buckets);
    st->buckets = nb;
    st->nbuckets = n;
}

static void cache_remove(im_state_t *st, im_account_t *a)
{
    size_t b = hash_str(a->bare) & (st->nbuckets - 1);
    for (im_account_t **pp = &st->buckets[b]; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == a) {
            *pp = a->next;
            break;
        }
    }
    st->accounts--;
}

void im_account_idle_except(im_state_t *st, im_account_t *a,
                            const route_target_t *gone)
{
    if (a == NULL || a->load == IM_LOADING || a->jobs != NULL || a->running)
        return;
    if (st->router != NULL)
        for (route_target_t *t = router_resources_bare(st->router, a->bare);
             t != NULL; t = t->next_resource)
            if (t != gone)
                return;
    cache_remove(st, a);
    account_free(a);
}

void im_account_idle(im_state_t *st, im_account_t *a)
{
    im_account_idle_except(st, a, NULL);
}

im_job_t *im_job_new(im_job_fn fn, xml_tree_t *tree,
                     const route_target_t *origin)
{
    im_job_t *j = xcalloc(1, sizeof(*j));
    j->run = fn;
    j->tree = tree;
    if (origin != NULL && origin->account != NULL &&
        jid_copy(&j->origin, &origin->jid) == JID_OK) {
        j->has_origin = true;
        j->origin_conn = origin->conn;
    }
    return j;
}

static void job_free(im_state_t *st, im_job_t *j)
{
    if (j->held && st->router != NULL) {
        route_target_t *t =
            router_find_conn(st->router, &j->origin, j->origin_conn);
        if (t != NULL)
            router_release(st->router, t);
    }
    if (j->has_origin)
        jid_clear(&j->origin);
    if (j->owned)
        xml_tree_free(j->tree);
    free(j);
}

static void run_jobs(im_state_t *st, im_account_t *a)
{
    /* A job's end may release a held session whose next stanza brings
     * work for this same account: it queues behind (im_account_with),
     * and the account is not freed under this loop. */
    a->running = true;
    while (a->jobs != NULL) {
        im_job_t *j = a->jobs;
        a->jobs = j->next;
        if (a->jobs == NULL)
            a->jobs_tail = NULL;
        j->run(st, a, j);
        job_free(st, j);
    }
    a->running = false;
    im_account_idle(st, a);
}

typedef struct load_req {
    im_state_t *st;
    char *bare;
} load_req_t;

static void on_loaded(void *ud, int err, const store_roster_t *r)
{
    load_req_t *lr = ud;
    im_state_t *st = lr->st;
    im_account_t *a = im_account_find(st, lr->bare);
    free(lr->bare);
    free(lr);
    if (a == NULL || a->load != IM_LOADING)
        return;
    if (err == STORE_ERR_NOT_FOUND) {
        a->load = IM_MISSING;
    } else if (err != STORE_OK) {
        /* The store logged why. An empty roster would be rewritten over
         * the real one by the next change: treat the account as absent
         * for now, and load again next time. */
        LOG(st->log, LOG_WARN, 0, "roster of %s not loaded: %s", a->bare,
            store_strerror(err));
        a->load = IM_MISSING;
    } else {
        a->version = r->version;
        for (size_t i = 0; i < r->count; i++) {
            const store_roster_item_t *si = &r->items[i];
            im_item_t *it = item_add(a, si->contact);
            item_set_in_roster(a, it);
            it->name = si->name != NULL ? xstrdup(si->name) : NULL;
            it->sub = si->subscription & STORE_SUB_BOTH;
            it->ask = si->ask;
            it->approved = si->approved;
            if (si->group_count > 0) {
                it->groups = xcalloc(si->group_count, sizeof(char *));
                for (size_t g = 0; g < si->group_count; g++)
                    it->groups[g] = xstrdup(si->groups[g]);
                it->group_count = si->group_count;
            }
        }
        for (size_t i = 0; i < r->pending_count; i++) {
            const store_roster_pending_t *p = &r->pending[i];
            im_item_t *it = im_item_find(a, p->contact);
            if (it == NULL)
                it = item_add(a, p->contact);
            rcbuf_unref(it->pending);
            it->pending = rcbuf_new(p->stanza, p->len);
            if (it->pending == NULL)
                xalloc_fail(p->len);
        }
        a->load = IM_READY;
    }
    /* A failed load is not kept past its jobs: once idle, the account
     * leaves the cache and the next need loads it again. */
    run_jobs(st, a);
}

static im_account_t *account_get(im_state_t *st, const char *bare)
{
    im_account_t *a = im_account_find(st, bare);
    if (a != NULL)
        return a;
    const char *at = strchr(bare, '@');
    if (at == NULL)
        return NULL;
    if (st->accounts + 1 > st->nbuckets)
        cache_grow(st);
    a = xcalloc(1, sizeof(*a));
    a->bare = xstrdup(bare);
    /* node and domain point into one copy: "node\0domain". */
    size_t len = strlen(bare);
    a->node = xmalloc(len + 1);
    memcpy(a->node, bare, len + 1);
    a->node[at - bare] = '\0';
    a->domain = a->node + (at - bare) + 1;
    size_t b = hash_str(bare) & (st->nbuckets - 1);
    a->next = st->buckets[b];
    st->buckets[b] = a;
    st->accounts++;
    if (st->store == NULL) {
        a->load = IM_READY;
        return a;
    }
    a->load = IM_LOADING;
    load_req_t *lr = xmalloc(sizeof(*lr));
    lr->st = st;
    lr->bare = xstrdup(bare);
    store_roster_get(st->store, a->domain, a->node, on_loaded, lr);
    return a;
}

void im_account_with(im_state_t *st, const char *bare, im_job_t *j)
{
    im_account_t *a = account_get(st, bare);
    if (a == NULL) {
        job_free(st, j);
        return;
    }
    if (a->load != IM_LOADING && a->jobs == NULL && !a->running) {
        a->running = true;
        j->run(st, a, j);
        job_free(st, j);
        /* What the job's end queued (a released session's next stanza
         * for this account) runs now, in order. */
        run_jobs(st, a);
        return;
    }
    /* It waits: keep a copy of the stanza, and hold its sender. */
    if (j->tree != NULL && !j->owned) {
        xml_tree_t *copy = xml_tree_new();
        if (copy == NULL || xml_node_copy(copy, NULL, j->tree->root) == NULL)
            xalloc_fail(sizeof(*copy));
        j->tree = copy;
        j->owned = true;
    }
    if (j->has_origin && !j->held && st->router != NULL) {
        route_target_t *t =
            router_find_conn(st->router, &j->origin, j->origin_conn);
        if (t != NULL) {
            router_hold(st->router, t);
            j->held = true;
        }
    }
    if (a->jobs_tail != NULL)
        a->jobs_tail->next = j;
    else
        a->jobs = j;
    a->jobs_tail = j;
}

/* --------------------------------------------------------------- pushes */

static void version_str(const im_account_t *a, char *buf, size_t len)
{
    snprintf(buf, len, "%" PRId64, a->version);
}

/* Appends <item/> for `it` to parent; `remove` writes subscription
 * 'remove' (RFC 6121 §2.5.2's push). */
static void item_xml(xml_tree_t *t, xml_node_t *parent, const im_item_t *it,
                     bool remove)
{
    static const char *const subs[] = {"none", "to", "from", "both"};
    xml_node_t *item = xml_element_new(t, parent, IM_NS_ROSTER, "item");
    if (item == NULL ||
        xml_element_set_attr(t, item, NULL, "jid", it->contact) < 0 ||
        xml_element_set_attr(t, item, NULL, "subscription",
                             remove ? "remove" : subs[it->sub & 3]) < 0)
        xalloc_fail(64);
    if (remove)
        return;
    if ((it->name != NULL &&
         xml_element_set_attr(t, item, NULL, "name", it->name) < 0) ||
        (it->ask &&
         xml_element_set_attr(t, item, NULL, "ask", "subscribe") < 0) ||
        (it->approved &&
         xml_element_set_attr(t, item, NULL, "approved", "true") < 0))
        xalloc_fail(64);
    for (size_t g = 0; g < it->group_count; g++) {
        xml_node_t *gr = xml_element_new(t, item, IM_NS_ROSTER, "group");
        if (gr == NULL || xml_element_add_text(t, gr, it->groups[g],
                                               strlen(it->groups[g])) < 0)
            xalloc_fail(64);
    }
}

/* A roster push of `it` (RFC 6121 §2.1.6) to every interested resource of
 * the account, with the account's current version (XEP-0237). */
static void push_item(im_state_t *st, im_account_t *a, const im_item_t *it,
                      bool remove)
{
    if (st->router == NULL)
        return;
    route_target_t *first = router_resources_bare(st->router, a->bare);
    if (first == NULL)
        return;
    xml_tree_t *t = xml_tree_new();
    if (t == NULL)
        xalloc_fail(sizeof(*t));
    xml_node_t *iq = xml_element_new(t, NULL, XML_NS_CLIENT, "iq");
    xml_node_t *q =
        iq != NULL ? xml_element_new(t, iq, IM_NS_ROSTER, "query") : NULL;
    char ver[24], id[32];
    version_str(a, ver, sizeof(ver));
    if (q == NULL || xml_element_set_attr(t, iq, NULL, "type", "set") < 0 ||
        xml_element_set_attr(t, q, NULL, "ver", ver) < 0)
        xalloc_fail(64);
    item_xml(t, q, it, remove);
    for (route_target_t *r = first; r != NULL; r = r->next_resource) {
        if (r->im == NULL || !r->im->interested)
            continue;
        char to[JID_FORMAT_BUF + JID_PART_BUF];
        jid_format(&r->jid, false, to, sizeof(to));
        snprintf(id, sizeof(id), "push%lu", ++st->next_id);
        if (xml_element_set_attr(t, iq, NULL, "id", id) < 0 ||
            xml_element_set_attr(t, iq, NULL, "to", to) < 0)
            xalloc_fail(64);
        route_stanza_t rs = ROUTE_STANZA(iq, st->router);
        router_deliver(r, &rs);
        route_stanza_done(&rs);
    }
    xml_tree_free(t);
}

/* The item changed: stored with the next version, then pushed. */
static void item_changed(im_state_t *st, im_account_t *a, im_item_t *it,
                         store_pending_op_t pending)
{
    item_store(st, a, it, true, pending);
    push_item(st, a, it, false);
}

/* ------------------------------------------------------- subscriptions */

static void job_inbound(im_state_t *st, im_account_t *a, im_job_t *j);

/* Builds a subscription stanza from the bare JID `from` to `to`, with the
 * children of `src` (status, nick, ...; may be NULL). */
static xml_tree_t *sub_stanza(const char *from, const char *to,
                              const char *type, const xml_node_t *src)
{
    xml_tree_t *t = xml_tree_new();
    xml_node_t *p =
        t != NULL ? xml_element_new(t, NULL, XML_NS_CLIENT, "presence") : NULL;
    if (p == NULL || xml_element_set_attr(t, p, NULL, "from", from) < 0 ||
        xml_element_set_attr(t, p, NULL, "to", to) < 0 ||
        xml_element_set_attr(t, p, NULL, "type", type) < 0)
        xalloc_fail(64);
    const char *id = src != NULL ? xml_element_attr(src, NULL, "id") : NULL;
    if (id != NULL && xml_element_set_attr(t, p, NULL, "id", id) < 0)
        xalloc_fail(64);
    if (src != NULL)
        for (const xml_node_t *ch = src->children; ch != NULL; ch = ch->next)
            if (ch->kind == XML_NODE_ELEMENT && xml_node_copy(t, p, ch) == NULL)
                xalloc_fail(64);
    return t;
}

/* Routes a subscription stanza to its contact's server: the inbound half
 * runs on the contact's account when it is ours. Takes the tree. `origin`
 * (the user's session, or NULL) is held while the contact's roster loads,
 * so that what the user sends next is handled after it. */
static void sub_route(im_state_t *st, xml_tree_t *t,
                      const route_target_t *origin)
{
    const char *to = xml_element_attr(t->root, NULL, "to");
    const char *at = to != NULL ? strchr(to, '@') : NULL;
    if (at == NULL || st->router == NULL) {
        xml_tree_free(t);
        return;
    }
    if (!router_serves(st->router, at + 1)) {
        /* A contact on another server: its server runs the inbound
         * half (server/s2s; dropped when federation is off). */
        router_send_remote(st->router, t);
        return;
    }
    im_job_t *j = im_job_new(job_inbound, t, origin);
    j->owned = true;
    im_account_with(st, to, j);
}

/* Outbound processing of a subscription stanza of type `type` that the
 * account `a` sends to `contact` (RFC 6121 §3.1.2, §3.2.2, §3.3.2,
 * §3.4, Appendix A.2 and A.3). `src` is the user's stanza (its children go
 * along), `origin` the sending session or NULL. Routes what goes on. */
static void sub_outbound(im_state_t *st, im_account_t *a, const char *contact,
                         const char *type, const xml_node_t *src,
                         route_target_t *origin)
{
    im_item_t *it = im_item_find(a, contact);
    bool route = false;
    bool changed = false;
    store_pending_op_t pending = STORE_PENDING_KEEP;

    if (is(type, "subscribe")) {
        /* §3.1.2: always routed; the contact's server answers for a
         * subscription it already granted. Pending Out is set unless the
         * user is already subscribed. */
        route = true;
        if (it == NULL || !it->in_roster) {
            if (st->settings->max_items > 0 &&
                a->items >= st->settings->max_items) {
                if (origin != NULL)
                    router_reply_error(origin, src, "wait",
                                       "resource-constraint");
                return;
            }
            if (it == NULL)
                it = item_add(a, contact);
            item_set_in_roster(a, it);
            changed = true;
        }
        if (!(it->sub & STORE_SUB_TO) && !it->ask) {
            it->ask = true;
            changed = true;
        }
    } else if (is(type, "unsubscribe")) {
        /* §3.3.2, A.2.2: cancels To and Pending Out; always routed. */
        route = true;
        if (it != NULL && it->in_roster &&
            ((it->sub & STORE_SUB_TO) || it->ask)) {
            it->sub &= ~(unsigned)STORE_SUB_TO;
            it->ask = false;
            changed = true;
        }
    } else if (is(type, "subscribed")) {
        if (it != NULL && it->pending != NULL) {
            /* §3.1.5, A.3.1: approval of a pending request. */
            rcbuf_unref(it->pending);
            it->pending = NULL;
            pending = STORE_PENDING_CLEAR;
            item_set_in_roster(a, it);
            it->sub |= STORE_SUB_FROM;
            it->approved = false;
            changed = route = true;
        } else if (it == NULL || !(it->sub & STORE_SUB_FROM)) {
            /* §3.4.1: pre-approval; never routed. */
            if (it == NULL || !it->in_roster) {
                if (st->settings->max_items > 0 &&
                    a->items >= st->settings->max_items) {
                    if (origin != NULL)
                        router_reply_error(origin, src, "wait",
                                           "resource-constraint");
                    return;
                }
                if (it == NULL)
                    it = item_add(a, contact);
                item_set_in_roster(a, it);
                changed = true;
            }
            if (!it->approved) {
                it->approved = true;
                changed = true;
            }
        }
        /* Already From or Both: nothing changes and nothing is routed. */
    } else if (is(type, "unsubscribed")) {
        if (it != NULL && (it->sub & STORE_SUB_FROM)) {
            /* §3.2.2, A.3.2: cancels the contact's subscription. */
            it->sub &= ~(unsigned)STORE_SUB_FROM;
            changed = route = true;
        } else if (it != NULL && it->pending != NULL) {
            /* §3.2.2: denies a pending request. */
            route = true;
        }
        if (it != NULL && it->pending != NULL) {
            rcbuf_unref(it->pending);
            it->pending = NULL;
            pending = STORE_PENDING_CLEAR;
        }
        if (it != NULL && it->approved) {
            /* §3.4.2: cancels a pre-approval; not routed. */
            it->approved = false;
            changed = true;
        }
    } else {
        return;
    }

    if (it != NULL) {
        if (changed && it->in_roster)
            item_changed(st, a, it, pending);
        else if (pending != STORE_PENDING_KEEP)
            item_store(st, a, it, false, pending);
        bool from_granted = is(type, "subscribed") && route;
        bool from_cancelled = is(type, "unsubscribed") && changed && route;
        item_maybe_drop(a, it);
        /* §3.2.2: before the cancellation goes, the contact gets the
         * user's unavailable presence; §3.1.5: after an approval, its
         * current presence. */
        if (from_cancelled)
            im_presence_to_contact(st, a->bare, contact, false);
        if (route)
            sub_route(st, sub_stanza(a->bare, contact, type, src), origin);
        if (from_granted)
            im_presence_to_contact(st, a->bare, contact, true);
        return;
    }
    if (route)
        sub_route(st, sub_stanza(a->bare, contact, type, src), origin);
}

/* Inbound processing on the contact's account `a` of a subscription
 * stanza from `user` (RFC 6121 §3.1.3, §3.2.3, §3.3.3, Appendix A.4).
 * The stanza reaches the account's available resources only where the
 * tables say so. */
static void job_inbound(im_state_t *st, im_account_t *a, im_job_t *j)
{
    const xml_node_t *el = j->tree->root;
    const char *type = xml_element_attr(el, NULL, "type");
    const char *user = xml_element_attr(el, NULL, "from");
    if (user == NULL)
        return;
    if (a->load == IM_MISSING)
        return; /* RFC 6121 §8.5.1: no such user: silently ignored */
    im_item_t *it = im_item_find(a, user);
    bool deliver = false, changed = false;
    store_pending_op_t pending = STORE_PENDING_KEEP;

    if (is(type, "subscribe")) {
        if (it != NULL && (it->sub & STORE_SUB_FROM)) {
            /* §3.1.3: already granted: the server answers for the
             * contact. */
            sub_route(st, sub_stanza(a->bare, user, "subscribed", NULL), NULL);
            return;
        }
        if (it != NULL && it->approved) {
            /* §3.4: pre-approved: the only approval the server gives. */
            it->approved = false;
            it->sub |= STORE_SUB_FROM;
            item_changed(st, a, it, STORE_PENDING_KEEP);
            sub_route(st, sub_stanza(a->bare, user, "subscribed", NULL), NULL);
            im_presence_to_contact(st, a->bare, user, true);
            return;
        }
        if (it != NULL && it->pending != NULL)
            return; /* A.4.1: already pending: not delivered again */
        if (it == NULL)
            it = item_add(a, user);
        rcbuf_t *b = route_stanza_bytes(&ROUTE_STANZA(el, st->router));
        it->pending = b;
        item_store(st, a, it, false, STORE_PENDING_SET);
        /* §3.1.3: to every available resource now; those that become
         * available later get it at their initial presence. */
        im_deliver_available(st, a->bare, el);
        return;
    } else if (is(type, "unsubscribe")) {
        /* A.4.2: the user cancels its subscription to the contact (the
         * contact's From), or withdraws a pending request. */
        if (it != NULL && it->pending != NULL) {
            rcbuf_unref(it->pending);
            it->pending = NULL;
            pending = STORE_PENDING_CLEAR;
            deliver = true;
        }
        if (it != NULL && (it->sub & STORE_SUB_FROM)) {
            it->sub &= ~(unsigned)STORE_SUB_FROM;
            changed = deliver = true;
        }
    } else if (is(type, "subscribed")) {
        /* A.4.3: only an answer to Pending Out counts. */
        if (it != NULL && it->in_roster && it->ask &&
            !(it->sub & STORE_SUB_TO)) {
            it->ask = false;
            it->sub |= STORE_SUB_TO;
            changed = deliver = true;
        }
    } else if (is(type, "unsubscribed")) {
        /* A.4.4: the contact cancels To or denies Pending Out. */
        if (it != NULL && it->in_roster &&
            ((it->sub & STORE_SUB_TO) || it->ask)) {
            it->sub &= ~(unsigned)STORE_SUB_TO;
            it->ask = false;
            changed = deliver = true;
        }
    } else {
        return;
    }
    if (it == NULL)
        return;
    if (changed && it->in_roster)
        item_changed(st, a, it, pending);
    else if (pending != STORE_PENDING_KEEP)
        item_store(st, a, it, false, pending);
    bool from_cancelled = is(type, "unsubscribe") && changed;
    item_maybe_drop(a, it);
    if (deliver)
        im_deliver_available(st, a->bare, el);
    /* §3.3.3: after the user unsubscribes, it gets the contact's
     * unavailable presence. */
    if (from_cancelled)
        im_presence_to_contact(st, a->bare, user, false);
}

static void job_outbound(im_state_t *st, im_account_t *a, im_job_t *j)
{
    if (a->load != IM_READY)
        return;
    const xml_node_t *el = j->tree->root;
    const char *to = xml_element_attr(el, NULL, "to");
    jid_t contact;
    if (to == NULL || jid_parse(to, strlen(to), 0, &contact) != JID_OK)
        return;
    char bare[JID_FORMAT_BUF];
    int n = jid_format(&contact, true, bare, sizeof(bare));
    jid_clear(&contact);
    if (n < 0)
        return;
    route_target_t *origin =
        j->has_origin && st->router != NULL
            ? router_find_conn(st->router, &j->origin, j->origin_conn)
            : NULL;
    sub_outbound(st, a, bare, xml_element_attr(el, NULL, "type"), el, origin);
}

/* ------------------------------------------------------------ the IQ */

/* The reply to the roster IQ `el` from session `t`: a result (with the
 * query `q` when not NULL) or an error. */
static void iq_result(im_state_t *st, route_target_t *t, const xml_node_t *el,
                      xml_tree_t *payload)
{
    xml_tree_t *r = xml_tree_new();
    xml_node_t *iq =
        r != NULL ? xml_element_new(r, NULL, XML_NS_CLIENT, "iq") : NULL;
    const char *id = xml_element_attr(el, NULL, "id");
    char to[JID_FORMAT_BUF + JID_PART_BUF];
    jid_format(&t->jid, false, to, sizeof(to));
    if (iq == NULL || xml_element_set_attr(r, iq, NULL, "type", "result") < 0 ||
        xml_element_set_attr(r, iq, NULL, "id", id != NULL ? id : "") < 0 ||
        xml_element_set_attr(r, iq, NULL, "to", to) < 0)
        xalloc_fail(64);
    /* RFC 6120 §8.1.2.1: handled for the account: no 'from', or the bare
     * JID when the IQ was sent to it. */
    const char *from = xml_element_attr(el, NULL, "to");
    if (from != NULL && xml_element_set_attr(r, iq, NULL, "from", from) < 0)
        xalloc_fail(64);
    if (payload != NULL && xml_node_copy(r, iq, payload->root) == NULL)
        xalloc_fail(64);
    route_stanza_t rs = ROUTE_STANZA(iq, st->router);
    router_deliver(t, &rs);
    route_stanza_done(&rs);
    xml_tree_free(r);
}

static void job_roster_get(im_state_t *st, im_account_t *a, im_job_t *j)
{
    route_target_t *t =
        router_find_conn(st->router, &j->origin, j->origin_conn);
    if (t == NULL)
        return;
    const xml_node_t *el = j->tree->root;
    if (a->load != IM_READY) {
        router_reply_error(t, el, "wait", "internal-server-error");
        return;
    }
    im_session_t *s = im_session_of(t);
    s->interested = true;
    const xml_node_t *q = xml_element_child(el, IM_NS_ROSTER, "query");
    const char *ver = q != NULL ? xml_element_attr(q, NULL, "ver") : NULL;
    char cur[24];
    version_str(a, cur, sizeof(cur));
    if (ver != NULL && strcmp(ver, cur) == 0) {
        /* XEP-0237 §3 (RFC 6121 §2.6.3): unchanged: an empty result; the
         * client keeps its cached roster. */
        iq_result(st, t, el, NULL);
        return;
    }
    xml_tree_t *p = xml_tree_new();
    xml_node_t *query =
        p != NULL ? xml_element_new(p, NULL, IM_NS_ROSTER, "query") : NULL;
    if (query == NULL)
        xalloc_fail(64);
    if (ver != NULL && xml_element_set_attr(p, query, NULL, "ver", cur) < 0)
        xalloc_fail(64);
    for (size_t b = 0; b < a->nbuckets; b++)
        for (const im_item_t *it = a->buckets[b]; it != NULL; it = it->next)
            if (it->in_roster)
                item_xml(p, query, it, false);
    iq_result(st, t, el, p);
    xml_tree_free(p);
}

/* RFC 6121 §2.5: removal cancels both directions first. */
static void roster_remove(im_state_t *st, im_account_t *a, im_item_t *it,
                          route_target_t *t)
{
    char *contact = xstrdup(it->contact);
    bool to = (it->sub & STORE_SUB_TO) || it->ask;
    bool from = (it->sub & STORE_SUB_FROM) || it->pending != NULL;
    /* §2.5.2: unsubscribe for To / Pending Out, unsubscribed for From /
     * Pending In, each with its side effects; the item goes without
     * pushes of those intermediate states. */
    if (to)
        sub_route(st, sub_stanza(a->bare, contact, "unsubscribe", NULL), t);
    if (from) {
        if (it->sub & STORE_SUB_FROM) /* §3.2.2: unavailable first */
            im_presence_to_contact(st, a->bare, contact, false);
        sub_route(st, sub_stanza(a->bare, contact, "unsubscribed", NULL), t);
    }
    bool had_pending = it->pending != NULL;
    item_remove(a, it);
    a->version++;
    if (st->store != NULL) {
        store_roster_change_t ch = {
            .contact = contact,
            .item = NULL,
            .pending = had_pending ? STORE_PENDING_CLEAR : STORE_PENDING_KEEP,
            .version = a->version,
        };
        store_roster_update(st->store, a->domain, a->node, &ch, on_saved, st);
    }
    im_item_t gone = {.contact = contact};
    push_item(st, a, &gone, true);
    free(contact);
}

static const char *check_text(const char *s)
{
    size_t n = strlen(s);
    return n > ROSTER_TEXT_MAX ? "not-acceptable" : NULL;
}

static void job_roster_set(im_state_t *st, im_account_t *a, im_job_t *j)
{
    route_target_t *t =
        router_find_conn(st->router, &j->origin, j->origin_conn);
    if (t == NULL)
        return;
    xml_tree_t *tree = j->tree;
    const xml_node_t *el = tree->root;
    if (a->load != IM_READY) {
        router_reply_error(t, el, "wait", "internal-server-error");
        return;
    }
    const xml_node_t *q = xml_element_child(el, IM_NS_ROSTER, "query");
    /* RFC 6121 §2.3.3: exactly one item. */
    const xml_node_t *item =
        q != NULL ? xml_element_child(q, IM_NS_ROSTER, "item") : NULL;
    if (item == NULL || xml_element_count_children(q) != 1) {
        router_reply_error(t, el, "modify", "bad-request");
        return;
    }
    const char *jid_s = xml_element_attr(item, NULL, "jid");
    jid_t contact;
    if (jid_s == NULL ||
        jid_parse(jid_s, strlen(jid_s), 0, &contact) != JID_OK) {
        router_reply_error(t, el, "modify", "jid-malformed");
        return;
    }
    char bare[JID_FORMAT_BUF];
    bool full = contact.resource != NULL;
    int n = jid_format(&contact, true, bare, sizeof(bare));
    jid_clear(&contact);
    if (n < 0 || full) {
        /* Rosters hold bare JIDs (RFC 6121 §2.1.1). */
        router_reply_error(t, el, "modify", "bad-request");
        return;
    }
    im_item_t *it = im_item_find(a, bare);
    if (is(xml_element_attr(item, NULL, "subscription"), "remove")) {
        if (it == NULL || !it->in_roster) {
            router_reply_error(t, el, "cancel", "item-not-found");
            return;
        }
        roster_remove(st, a, it, t);
        iq_result(st, t, el, NULL);
        return;
    }
    /* §2.3.3: the name and each group within limits, groups not empty
     * and not repeated. Other attributes (subscription, ask, approved)
     * are the server's: ignored (§2.1.2). */
    const char *name = xml_element_attr(item, NULL, "name");
    if (name != NULL && check_text(name) != NULL) {
        router_reply_error(t, el, "modify", "not-acceptable");
        return;
    }
    size_t ngroups = 0;
    const char *groups[ROSTER_GROUPS_MAX];
    for (const xml_node_t *g = xml_element_child(item, IM_NS_ROSTER, "group");
         g != NULL; g = xml_element_next(g, IM_NS_ROSTER, "group")) {
        const char *txt = xml_element_text(tree, g);
        if (txt == NULL)
            xalloc_fail(64);
        if (txt[0] == '\0' || check_text(txt) != NULL ||
            ngroups == ROSTER_GROUPS_MAX) {
            router_reply_error(t, el, "modify", "not-acceptable");
            return;
        }
        for (size_t k = 0; k < ngroups; k++) {
            if (strcmp(groups[k], txt) == 0) {
                router_reply_error(t, el, "modify", "bad-request");
                return;
            }
        }
        groups[ngroups++] = txt;
    }
    if ((it == NULL || !it->in_roster) && st->settings->max_items > 0 &&
        a->items >= st->settings->max_items) {
        /* The roster is full (the limit is `roster.max_items`). */
        router_reply_error(t, el, "cancel", "not-allowed");
        return;
    }
    if (it == NULL)
        it = item_add(a, bare);
    item_set_in_roster(a, it);
    free(it->name);
    it->name = name != NULL && name[0] != '\0' ? xstrdup(name) : NULL;
    item_groups_free(it);
    if (ngroups > 0) {
        it->groups = xcalloc(ngroups, sizeof(char *));
        for (size_t k = 0; k < ngroups; k++)
            it->groups[k] = xstrdup(groups[k]);
        it->group_count = ngroups;
    }
    item_changed(st, a, it, STORE_PENDING_KEEP);
    iq_result(st, t, el, NULL);
}

/* The roster of the sender's account: always loaded by now or loading
 * (since bind). */
static void with_own_account(module_call_t *c, im_job_fn fn)
{
    im_state_t *st = c->state;
    st->router = c->router;
    st->modules = c->modules;
    char bare[JID_FORMAT_BUF];
    if (jid_format(&c->from->jid, true, bare, sizeof(bare)) < 0)
        return;
    im_account_with(st, bare, im_job_new(fn, c->tree, c->from));
}

static module_result_t iq_roster_get(module_call_t *c, const xml_node_t *child)
{
    (void)child;
    with_own_account(c, job_roster_get);
    return MODULE_HANDLED;
}

/* RFC 6121 §2.1.5 / §2.3.3: a roster is its account's alone; a request
 * for another account's roster is refused. */
static module_result_t iq_roster_other(module_call_t *c,
                                       const xml_node_t *child)
{
    (void)child;
    module_reply_error(c, "auth", "forbidden");
    return MODULE_HANDLED;
}

static module_result_t iq_roster_set(module_call_t *c, const xml_node_t *child)
{
    (void)child;
    /* Only for the account itself (MODULE_TO_ACCOUNT); another account's
     * is iq_roster_other's. */
    with_own_account(c, job_roster_set);
    return MODULE_HANDLED;
}

/* --------------------------------------------------- subscription hook */

static bool is_subscription(const char *type)
{
    return is(type, "subscribe") || is(type, "subscribed") ||
           is(type, "unsubscribe") || is(type, "unsubscribed");
}

/* Presence to a bare or full JID of ours from a session: subscription
 * traffic is this module's; probes and directed presence are presence.c's. */
static module_result_t presence_to_jid(module_call_t *c)
{
    im_state_t *st = c->state;
    st->router = c->router;
    st->modules = c->modules;
    const char *type = xml_element_attr(c->tree->root, NULL, "type");
    if (is_subscription(type) && c->from->remote) {
        /* From a user of another server: the inbound half only, on the
         * contact's account, with both addresses bare (RFC 6121 §3.1.3:
         * the user's server stamped them; made sure of here). */
        char from[JID_FORMAT_BUF], to[JID_FORMAT_BUF];
        if (c->to == NULL ||
            jid_format(&c->from->jid, true, from, sizeof(from)) < 0 ||
            jid_format(c->to, true, to, sizeof(to)) < 0)
            return MODULE_HANDLED;
        im_job_t *j = im_job_new(
            job_inbound, sub_stanza(from, to, type, c->tree->root), NULL);
        j->owned = true;
        im_account_with(st, to, j);
        return MODULE_HANDLED;
    }
    if (is_subscription(type)) {
        /* §3.1.2: the server stamps the user's bare JID as 'from' and the
         * contact's bare JID as 'to' (done when the stanza is built). */
        with_own_account(c, job_outbound);
        return MODULE_HANDLED;
    }
    return im_presence_directed(c);
}

/* ------------------------------------------------------------- module */

static void *roster_init(const module_env_t *env, bool *ok)
{
    im_state_t *st = xcalloc(1, sizeof(*st));
    st->store = env->store;
    st->log = env->log;
    st->settings = env->settings;
    *ok = true;
    return st;
}

static void roster_fini(void *state)
{
    im_state_t *st = state;
    if (st == NULL)
        return;
    for (size_t i = 0; i < st->nbuckets; i++) {
        im_account_t *a = st->buckets[i];
        while (a != NULL) {
            im_account_t *next = a->next;
            while (a->jobs != NULL) {
                im_job_t *j = a->jobs;
                a->jobs = j->next;
                j->held = false; /* the sessions are gone */
                job_free(st, j);
            }
            account_free(a);
            a = next;
        }
    }
    free(st->buckets);
    free(st);
}

static const im_settings_t roster_defaults = {.max_items = 1000};

static const config_field_t roster_fields[] = {
    {"max_items", CONFIG_FIELD_UINT, offsetof(im_settings_t, max_items), 0,
     100000},
    {NULL, 0, 0, 0, 0},
};

static const module_iq_handler_t roster_iq[] = {
    {MODULE_IQ_GET, IM_NS_ROSTER, MODULE_TO_BIT(MODULE_TO_ACCOUNT),
     iq_roster_get},
    {MODULE_IQ_SET, IM_NS_ROSTER, MODULE_TO_BIT(MODULE_TO_ACCOUNT),
     iq_roster_set},
    {MODULE_IQ_GET, IM_NS_ROSTER,
     MODULE_TO_BIT(MODULE_TO_BARE) | MODULE_TO_BIT(MODULE_TO_FULL),
     iq_roster_other},
    {MODULE_IQ_SET, IM_NS_ROSTER,
     MODULE_TO_BIT(MODULE_TO_BARE) | MODULE_TO_BIT(MODULE_TO_FULL),
     iq_roster_other},
    {0, NULL, 0, NULL},
};

static const module_hook_t roster_hooks[] = {
    {MODULE_EV_PRESENCE_ACCOUNT, 10, im_presence_account},
    {MODULE_EV_PRESENCE_BARE, 10, presence_to_jid},
    {MODULE_EV_PRESENCE_FULL, 10, presence_to_jid},
    {MODULE_EV_PRESENCE_REMOTE, 10, presence_to_jid},
    {MODULE_EV_SESSION_BOUND, 10, im_session_bound},
    {MODULE_EV_SESSION_ENDED, 10, im_session_ended},
    {0, 0, NULL},
};

/* XEP-0237 §2 and RFC 6121 §3.4: advertised after authentication. */
static const stream_feature_t roster_stream_features[] = {
    {"urn:xmpp:features:rosterver", "ver", STREAM_FEAT_AFTER_AUTH, false, NULL,
     NULL, NULL},
    {"urn:xmpp:features:pre-approval", "sub", STREAM_FEAT_AFTER_AUTH, false,
     NULL, NULL, NULL},
    {NULL, NULL, 0, false, NULL, NULL, NULL},
};

static int roster_in_roster(void *state, const char *owner, const char *contact)
{
    im_account_t *a = im_account_find(state, owner);
    if (a == NULL || a->load != IM_READY)
        return -1;
    const im_item_t *it = im_item_find(a, contact);
    return it != NULL && it->in_roster;
}

const module_desc_t module_roster = {
    .name = "roster",
    .core = true,
    .default_on = true,
    .settings = roster_fields,
    .settings_size = sizeof(im_settings_t),
    .settings_default = &roster_defaults,
    .init = roster_init,
    .fini = roster_fini,
    .iq = roster_iq,
    .hooks = roster_hooks,
    .stream_features = roster_stream_features,
    .in_roster = roster_in_roster,
};
