/* presence: RFC 6121 §4 on the roster module's state — a session's own
 * presence (initial, updates, unavailable; the availability and priority
 * that bare-JID delivery uses), its broadcast to the contacts with a
 * subscription from the user and to the user's own available resources,
 * probes of the contacts the user is subscribed to, directed presence
 * (§4.6) and unavailable presence when a session ends, however it ends.
 *
 * Fan-out: a presence is serialized once, without 'to'; each recipient
 * gets that block with its own full JID spliced in as 'to' (one copy of
 * a few hundred bytes, not a serialization per recipient).
 *
 * Probes of local contacts are answered here at once, from the probing
 * user's roster: both sides' states are this server's, kept in step by
 * roster.c, so the user's To is the contact's From. Contacts with no
 * available resource get no answer: RFC 6121 §4.3.2 allows the last
 * unavailable presence or nothing, and nothing is invented. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/xalloc.h"
#include "im/im.h"
#include "im/im_internal.h"
#include "modules/module.h"

/* Directed presence remembered per session (beyond: not remembered, and
 * logged). */
enum { DIRECTED_MAX = 1000 };

static bool is(const char *a, const char *b)
{
    return a != NULL && strcmp(a, b) == 0;
}

im_session_t *im_session_of(route_target_t *t)
{
    if (t->im == NULL)
        t->im = xcalloc(1, sizeof(*t->im));
    return t->im;
}

static void session_presence_clear(im_session_t *s)
{
    rcbuf_unref(s->presence);
    s->presence = NULL;
    xml_tree_free(s->presence_tree);
    s->presence_tree = NULL;
    s->presence_el = NULL;
}

static void directed_clear(im_session_t *s)
{
    for (size_t i = 0; i < s->directed_count; i++)
        free(s->directed[i]);
    free(s->directed);
    s->directed = NULL;
    s->directed_count = 0;
}

/* "<presence" + " to='...'" + the rest: the template with `to` in it. */
static rcbuf_t *splice_to(const rcbuf_t *tmpl, const jid_t *to)
{
    static const char head[] = "<presence";
    const size_t hl = sizeof(head) - 1;
    const char *d = rcbuf_data(tmpl);
    size_t len = rcbuf_len(tmpl);
    char jid[JID_FORMAT_BUF + JID_PART_BUF];
    int n = jid_format(to, to->resource == NULL, jid, sizeof(jid));
    buf_t b = BUF_INIT;
    if (n < 0 || len < hl || memcmp(d, head, hl) != 0 ||
        buf_append(&b, d, hl) < 0 || buf_append(&b, " to='", 5) < 0 ||
        xml_escape_attr(jid, (size_t)n, &b) < 0 || buf_append(&b, "'", 1) < 0 ||
        buf_append(&b, d + hl, len - hl) < 0)
        xalloc_fail(len + 64);
    rcbuf_t *r = rcbuf_new(b.data, b.len);
    if (r == NULL)
        xalloc_fail(b.len);
    buf_free(&b);
    return r;
}

/* Gives t the template with t's full JID as 'to'. */
/* XEP-0191 (a module): what the server sends on an account's behalf does
 * not reach a JID that blocks it or that it blocks. */
static bool blocked(im_state_t *st, const xml_node_t *el, const jid_t *to)
{
    return module_registry_blocked(st->modules,
                                   xml_element_attr(el, NULL, "from"), to);
}

static void deliver_spliced(im_state_t *st, route_target_t *t,
                            const xml_node_t *el, const rcbuf_t *tmpl)
{
    if (blocked(st, el, &t->jid))
        return;
    route_stanza_t rs = ROUTE_STANZA(el, st->router);
    rs.bytes = splice_to(tmpl, &t->jid);
    router_deliver(t, &rs);
    route_stanza_done(&rs);
}

static rcbuf_t *serialize(im_state_t *st, const xml_node_t *el)
{
    route_stanza_t rs = ROUTE_STANZA(el, st->router);
    return route_stanza_bytes(&rs); /* the reference is the caller's */
}

static bool domain_is_local(im_state_t *st, const char *bare);

/* A copy of the presence `el` with 'to' set to `to` (and 'from' to `from`
 * when not NULL), for a JID on another server (server/s2s). */
static void send_remote(im_state_t *st, const xml_node_t *el, const char *to,
                        const char *from)
{
    if (!router_federates(st->router))
        return;
    jid_t to_j;
    if (jid_parse(to, strlen(to), 0, &to_j) != JID_OK)
        return;
    bool no = module_registry_blocked(
        st->modules, from != NULL ? from : xml_element_attr(el, NULL, "from"),
        &to_j);
    jid_clear(&to_j);
    if (no)
        return;
    xml_tree_t *t = xml_tree_new();
    xml_node_t *c = t != NULL ? xml_node_copy(t, NULL, el) : NULL;
    if (c == NULL || xml_element_set_attr(t, c, NULL, "to", to) < 0 ||
        (from != NULL && xml_element_set_attr(t, c, NULL, "from", from) < 0))
        xalloc_fail(64);
    router_send_remote(st->router, t);
}

/* <presence type='TYPE' from='FROM' to='TO'/> to another server. */
static void send_remote_type(im_state_t *st, const char *type, const char *from,
                             const char *to)
{
    xml_node_t el = {
        .kind = XML_NODE_ELEMENT, .ns = XML_NS_CLIENT, .name = "presence"};
    xml_tree_t *t = xml_tree_new();
    xml_node_t *c = t != NULL ? xml_node_copy(t, NULL, &el) : NULL;
    if (c == NULL || xml_element_set_attr(t, c, NULL, "type", type) < 0)
        xalloc_fail(64);
    send_remote(st, c, to, from);
    xml_tree_free(t);
}

void im_deliver_available(im_state_t *st, const char *bare,
                          const xml_node_t *el)
{
    if (st->router == NULL)
        return;
    route_target_t *first = router_resources_bare(st->router, bare);
    size_t n = 0;
    for (route_target_t *t = first; t != NULL; t = t->next_resource)
        n += t->available;
    if (n == 0)
        return;
    route_stanza_t rs = ROUTE_STANZA(el, st->router);
    rs.shared = n > 1;
    for (route_target_t *t = first; t != NULL; t = t->next_resource)
        if (t->available && !blocked(st, el, &t->jid))
            router_deliver(t, &rs);
    route_stanza_done(&rs);
}

/* <presence type='unavailable' from='full'/> of session t, in a new tree. */
static xml_tree_t *unavailable_of(const jid_t *full)
{
    char from[JID_FORMAT_BUF + JID_PART_BUF];
    jid_format(full, false, from, sizeof(from));
    xml_tree_t *t = xml_tree_new();
    xml_node_t *p =
        t != NULL ? xml_element_new(t, NULL, XML_NS_CLIENT, "presence") : NULL;
    if (p == NULL || xml_element_set_attr(t, p, NULL, "from", from) < 0 ||
        xml_element_set_attr(t, p, NULL, "type", "unavailable") < 0)
        xalloc_fail(64);
    return t;
}

static bool domain_is_local(im_state_t *st, const char *bare)
{
    const char *at = strchr(bare, '@');
    return st->router != NULL &&
           router_serves(st->router, at != NULL ? at + 1 : bare);
}

void im_presence_to_contact(im_state_t *st, const char *from_bare,
                            const char *to_bare, bool available)
{
    if (st->router == NULL)
        return;
    if (!domain_is_local(st, to_bare)) {
        /* Each available resource's presence, or its unavailable, to the
         * contact's server. */
        for (route_target_t *r = router_resources_bare(st->router, from_bare);
             r != NULL; r = r->next_resource) {
            if (!r->available || r->im == NULL || r->im->presence == NULL)
                continue;
            if (available) {
                send_remote(st, r->im->presence_el, to_bare, NULL);
            } else {
                xml_tree_t *u = unavailable_of(&r->jid);
                send_remote(st, u->root, to_bare, NULL);
                xml_tree_free(u);
            }
        }
        return;
    }
    route_target_t *to_first = router_resources_bare(st->router, to_bare);
    for (route_target_t *r = router_resources_bare(st->router, from_bare);
         r != NULL; r = r->next_resource) {
        if (!r->available || r->im == NULL || r->im->presence == NULL)
            continue;
        if (available) {
            for (route_target_t *t = to_first; t != NULL; t = t->next_resource)
                if (t->available)
                    deliver_spliced(st, t, r->im->presence_el, r->im->presence);
        } else {
            xml_tree_t *u = unavailable_of(&r->jid);
            rcbuf_t *b = serialize(st, u->root);
            for (route_target_t *t = to_first; t != NULL; t = t->next_resource)
                if (t->available)
                    deliver_spliced(st, t, u->root, b);
            rcbuf_unref(b);
            xml_tree_free(u);
        }
    }
}

void im_broadcast(im_state_t *st, im_account_t *a, route_target_t *from,
                  const xml_node_t *el, bool available)
{
    rcbuf_t *b = serialize(st, el);
    bool remote = router_federates(st->router);
    /* RFC 6121 §4.2.2 / §4.4.2 / §4.5.2: every contact with a
     * subscription from the user, at each available resource (a remote
     * contact's server does that part, RFC 6121 §4.2.3). */
    for (size_t i = 0; i < a->nbuckets; i++) {
        for (const im_item_t *it = a->buckets[i]; it != NULL; it = it->next) {
            if (!it->in_roster || !(it->sub & STORE_SUB_FROM))
                continue;
            if (remote && !domain_is_local(st, it->contact)) {
                send_remote(st, el, it->contact, NULL);
                continue;
            }
            for (route_target_t *t =
                     router_resources_bare(st->router, it->contact);
                 t != NULL; t = t->next_resource)
                if (t->available)
                    deliver_spliced(st, t, el, b);
        }
    }
    /* And the user's own available resources, the sender included while
     * it is connected (§4.2.2). */
    for (route_target_t *t = router_resources_bare(st->router, a->bare);
         t != NULL; t = t->next_resource)
        if (t->available || (t == from && !available))
            deliver_spliced(st, t, el, b);
    rcbuf_unref(b);
    (void)available;
}

/* The directed presence targets of a session going unavailable get its
 * unavailable presence (§4.6.3), except contacts the broadcast reached. */
static void directed_undo(im_state_t *st, im_account_t *a, im_session_t *s,
                          const xml_node_t *el)
{
    if (s == NULL || s->directed_count == 0)
        return;
    rcbuf_t *b = serialize(st, el);
    for (size_t i = 0; i < s->directed_count; i++) {
        jid_t to;
        const char *d = s->directed[i];
        if (jid_parse(d, strlen(d), 0, &to) != JID_OK)
            continue;
        char bare[JID_FORMAT_BUF];
        jid_format(&to, true, bare, sizeof(bare));
        const im_item_t *it = a != NULL ? im_item_find(a, bare) : NULL;
        bool reached = it != NULL && it->in_roster &&
                       (it->sub & STORE_SUB_FROM) && to.resource == NULL;
        if (!reached && !domain_is_local(st, bare)) {
            send_remote(st, el, d, NULL);
        } else if (!reached) {
            if (to.resource != NULL) {
                route_target_t *t = router_find(st->router, &to);
                if (t != NULL)
                    deliver_spliced(st, t, el, b);
            } else {
                for (route_target_t *t =
                         router_resources_bare(st->router, bare);
                     t != NULL; t = t->next_resource)
                    if (t->available)
                        deliver_spliced(st, t, el, b);
            }
        }
        jid_clear(&to);
    }
    rcbuf_unref(b);
    directed_clear(s);
}

void im_pending_deliver(im_state_t *st, im_account_t *a, route_target_t *t)
{
    /* The stored bytes are what goes out; the element only says what
     * kind of stanza it is. */
    static const xml_node_t presence = {
        .kind = XML_NODE_ELEMENT, .ns = XML_NS_CLIENT, .name = "presence"};
    for (size_t i = 0; i < a->nbuckets; i++) {
        for (const im_item_t *it = a->buckets[i]; it != NULL; it = it->next) {
            if (it->pending == NULL)
                continue;
            /* Stored as delivered: from the requester's bare JID to the
             * account's. */
            route_stanza_t rs = ROUTE_STANZA(&presence, st->router);
            rs.bytes = rcbuf_ref(it->pending);
            router_deliver(t, &rs);
            route_stanza_done(&rs);
        }
    }
}

/* The current presence of each available resource of the contacts the
 * user is subscribed to, for the session that just became available
 * (the answer to its probes, RFC 6121 §4.2.2 and §4.3.2). */
static void probe_contacts(im_state_t *st, im_account_t *a, route_target_t *t)
{
    for (size_t i = 0; i < a->nbuckets; i++) {
        for (const im_item_t *it = a->buckets[i]; it != NULL; it = it->next) {
            if (!it->in_roster || !(it->sub & STORE_SUB_TO))
                continue;
            if (!domain_is_local(st, it->contact)) {
                /* RFC 6121 §4.2.2 and §4.3.1: a probe, from the user's
                 * bare JID; the contact's server answers. */
                send_remote_type(st, "probe", a->bare, it->contact);
                continue;
            }
            for (route_target_t *r =
                     router_resources_bare(st->router, it->contact);
                 r != NULL; r = r->next_resource)
                if (r->available && r->im != NULL && r->im->presence != NULL)
                    deliver_spliced(st, t, r->im->presence_el, r->im->presence);
        }
    }
}

static void session_event(im_state_t *st, route_target_t *t, module_event_t ev)
{
    module_call_t c = {
        .router = st->router,
        .modules = st->modules,
        .log = st->log,
        .from = t,
        .addressee = MODULE_TO_ACCOUNT,
    };
    module_dispatch(st->modules, ev, &c);
}

static int parse_priority(xml_tree_t *tree, const xml_node_t *el)
{
    const xml_node_t *p = xml_element_child(el, el->ns, "priority");
    if (p == NULL)
        return 0;
    const char *txt = xml_element_text(tree, p);
    char *end = NULL;
    long v = txt != NULL ? strtol(txt, &end, 10) : 0;
    /* RFC 6121 §4.7.2.3: an integer from -128 to +127. */
    if (txt != NULL && end != txt && *end == '\0' && v >= -128 && v <= 127)
        return (int)v;
    return 0;
}

static route_target_t *job_session(im_state_t *st, const im_job_t *j)
{
    return j->has_origin && st->router != NULL
               ? router_find_conn(st->router, &j->origin, j->origin_conn)
               : NULL;
}

/* Available presence with no 'to' (RFC 6121 §4.2 initial, §4.4 update). */
static void job_available(im_state_t *st, im_account_t *a, im_job_t *j)
{
    route_target_t *t = job_session(st, j);
    if (t == NULL)
        return;
    im_session_t *s = im_session_of(t);
    bool initial = !t->available;
    bool was_reachable = t->available && t->priority >= 0;
    t->available = true;
    t->priority = parse_priority(j->tree, j->tree->root);

    /* The template: the stanza as sent, 'from' the full JID, no 'to'. */
    session_presence_clear(s);
    s->presence_tree = xml_tree_new();
    xml_node_t *el = s->presence_tree != NULL
                         ? xml_node_copy(s->presence_tree, NULL, j->tree->root)
                         : NULL;
    if (el == NULL)
        xalloc_fail(64);
    xml_element_remove_attr(el, NULL, "to");
    s->presence_el = el;
    s->presence = serialize(st, el);

    if (a->load == IM_READY)
        im_broadcast(st, a, t, el, true);
    else
        deliver_spliced(st, t, el, s->presence); /* §4.2.2: itself */
    if (initial) {
        if (a->load == IM_READY) {
            probe_contacts(st, a, t);
            /* §3.1.3: requests waiting for an answer, again. */
            im_pending_deliver(st, a, t);
        }
        session_event(st, t, MODULE_EV_SESSION_AVAILABLE);
    }
    if (!was_reachable && t->priority >= 0)
        session_event(st, t, MODULE_EV_SESSION_REACHABLE);
}

/* Unavailable presence with no 'to' (RFC 6121 §4.5) from a connected
 * session. */
static void job_unavailable(im_state_t *st, im_account_t *a, im_job_t *j)
{
    route_target_t *t = job_session(st, j);
    if (t == NULL)
        return;
    xml_node_t *el = j->tree->root;
    im_session_t *s = im_session_of(t);
    bool was = t->available;
    t->available = false;
    session_presence_clear(s);
    if (was && a->load == IM_READY) {
        im_broadcast(st, a, t, el, false);
    } else {
        /* Not available (never was, or already not): nobody had its
         * presence; the client still hears back its own. */
        rcbuf_t *b = serialize(st, el);
        deliver_spliced(st, t, el, b);
        rcbuf_unref(b);
    }
    directed_undo(st, a->load == IM_READY ? a : NULL, s, el);
    if (was)
        session_event(st, t, MODULE_EV_SESSION_UNAVAILABLE);
}

static void job_ended(im_state_t *st, im_account_t *a, im_job_t *j)
{
    if (a->load == IM_READY)
        im_broadcast(st, a, NULL, j->tree->root, false);
}

static im_state_t *state_of(module_call_t *c)
{
    im_state_t *st = c->state;
    st->router = c->router;
    st->modules = c->modules;
    return st;
}

static void own_bare(const route_target_t *t, char *buf, size_t len)
{
    jid_format(&t->jid, true, buf, len);
}

module_result_t im_presence_account(module_call_t *c)
{
    im_state_t *st = state_of(c);
    const char *type = xml_element_attr(c->tree->root, NULL, "type");
    im_job_fn fn;
    if (type == NULL)
        fn = job_available;
    else if (is(type, "unavailable"))
        fn = job_unavailable;
    else
        return MODULE_HANDLED; /* subscription types need a 'to' */
    char bare[JID_FORMAT_BUF];
    own_bare(c->from, bare, sizeof(bare));
    im_account_with(st, bare, im_job_new(fn, c->tree, c->from));
    return MODULE_HANDLED;
}

/* A probe from a client (RFC 6121 §4.3: clients should not, but may): the
 * current presence of the contact's available resources when the user is
 * subscribed to it. */
static void job_probe(im_state_t *st, im_account_t *a, im_job_t *j)
{
    route_target_t *t = job_session(st, j);
    const char *to = xml_element_attr(j->tree->root, NULL, "to");
    jid_t contact;
    if (t == NULL || a->load != IM_READY || to == NULL ||
        jid_parse(to, strlen(to), 0, &contact) != JID_OK)
        return;
    char bare[JID_FORMAT_BUF];
    jid_format(&contact, true, bare, sizeof(bare));
    jid_clear(&contact);
    const im_item_t *it = im_item_find(a, bare);
    if (it == NULL || !it->in_roster || !(it->sub & STORE_SUB_TO))
        return;
    for (route_target_t *r = router_resources_bare(st->router, bare); r != NULL;
         r = r->next_resource)
        if (r->available && r->im != NULL && r->im->presence != NULL)
            deliver_spliced(st, t, r->im->presence_el, r->im->presence);
}

/* A probe from another server (RFC 6121 §4.3.2) of the account `a`: the
 * presence of each of its available resources when the prober has a
 * subscription from it; `unsubscribed` when it has none (or there is no
 * such account); nothing when it has no available resource (the last
 * unavailable presence is not kept). */
static void job_remote_probe(im_state_t *st, im_account_t *a, im_job_t *j)
{
    const char *from = xml_element_attr(j->tree->root, NULL, "from");
    jid_t prober;
    if (from == NULL || jid_parse(from, strlen(from), 0, &prober) != JID_OK)
        return;
    char bare[JID_FORMAT_BUF];
    int n = jid_format(&prober, true, bare, sizeof(bare));
    jid_clear(&prober);
    if (n < 0)
        return;
    const im_item_t *it = a->load == IM_READY ? im_item_find(a, bare) : NULL;
    if (it == NULL || !it->in_roster || !(it->sub & STORE_SUB_FROM)) {
        send_remote_type(st, "unsubscribed", a->bare, bare);
        return;
    }
    for (route_target_t *r = router_resources_bare(st->router, a->bare);
         r != NULL; r = r->next_resource)
        if (r->available && r->im != NULL && r->im->presence != NULL)
            send_remote(st, r->im->presence_el, from, NULL);
}

module_result_t im_presence_directed(module_call_t *c)
{
    im_state_t *st = state_of(c);
    const xml_node_t *el = c->tree->root;
    const char *type = xml_element_attr(el, NULL, "type");
    if (c->from->remote) {
        /* From another server: a probe is answered for the account; other
         * presence is delivered (server/im, the router). */
        if (!is(type, "probe"))
            return MODULE_PASS;
        char bare[JID_FORMAT_BUF];
        if (c->to != NULL && jid_format(c->to, true, bare, sizeof(bare)) >= 0)
            im_account_with(st, bare,
                            im_job_new(job_remote_probe, c->tree, NULL));
        return MODULE_HANDLED;
    }
    if (is(type, "probe") && c->addressee == MODULE_TO_REMOTE)
        return MODULE_PASS; /* the contact's server answers */
    if (is(type, "probe")) {
        char bare[JID_FORMAT_BUF];
        own_bare(c->from, bare, sizeof(bare));
        im_account_with(st, bare, im_job_new(job_probe, c->tree, c->from));
        return MODULE_HANDLED;
    }
    if (type != NULL && !is(type, "unavailable"))
        return MODULE_PASS;
    char to[JID_FORMAT_BUF + JID_PART_BUF];
    if (c->to == NULL ||
        jid_format(c->to, c->to->resource == NULL, to, sizeof(to)) < 0)
        return MODULE_PASS;
    im_session_t *s = im_session_of(c->from);
    size_t i = 0;
    while (i < s->directed_count && strcmp(s->directed[i], to) != 0)
        i++;
    if (type == NULL && i == s->directed_count) {
        /* §4.6.2: remembered, so that the target learns when the user
         * goes away. */
        if (s->directed_count < DIRECTED_MAX) {
            s->directed = xreallocarray(s->directed, s->directed_count + 1,
                                        sizeof(*s->directed));
            s->directed[s->directed_count++] = xstrdup(to);
        } else {
            LOG(st->log, LOG_INFO, c->from->conn,
                "directed presence to %s not remembered: over %d targets", to,
                DIRECTED_MAX);
        }
    } else if (type != NULL && i < s->directed_count) {
        /* §4.6.3: directed unavailable ends it. */
        free(s->directed[i]);
        s->directed[i] = s->directed[--s->directed_count];
    }
    return MODULE_PASS; /* delivered by server/im and the router */
}

static void job_noop(im_state_t *st, im_account_t *a, im_job_t *j)
{
    (void)st;
    (void)a;
    (void)j;
}

module_result_t im_session_bound(module_call_t *c)
{
    im_state_t *st = state_of(c);
    im_session_of(c->from);
    /* Load the roster now, so that it is there for the session's first
     * stanzas. */
    char bare[JID_FORMAT_BUF];
    own_bare(c->from, bare, sizeof(bare));
    im_account_with(st, bare, im_job_new(job_noop, NULL, NULL));
    return MODULE_PASS;
}

/* RFC 6121 §4.5.2 and §4.6.3: a session that ends — by unavailable
 * presence and a closed stream, a stream error, a lost connection — is
 * unavailable to everyone who had its presence. */
module_result_t im_session_ended(module_call_t *c)
{
    im_state_t *st = state_of(c);
    route_target_t *t = c->from;
    im_session_t *s = t->im;
    char bare[JID_FORMAT_BUF];
    own_bare(t, bare, sizeof(bare));
    im_account_t *a = im_account_find(st, bare);
    xml_tree_t *u = unavailable_of(&t->jid);
    if (s != NULL)
        directed_undo(st, a != NULL && a->load == IM_READY ? a : NULL, s,
                      u->root);
    if (t->available) {
        t->available = false;
        im_job_t *j = im_job_new(job_ended, u, NULL);
        j->owned = true;
        u = NULL;
        im_account_with(st, bare, j);
    }
    xml_tree_free(u);
    if (s != NULL) {
        session_presence_clear(s);
        directed_clear(s);
        free(s);
        t->im = NULL;
    }
    /* The account stays cached only for its other sessions. */
    im_account_idle_except(st, im_account_find(st, bare), t);
    return MODULE_PASS;
}

const xml_node_t *im_session_presence(const route_target_t *t)
{
    return t->im != NULL && t->available ? t->im->presence_el : NULL;
}
