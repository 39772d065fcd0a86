/* offline: XEP-0160 offline messages. A normal or chat message for an
 * account with no available resource (server/im fires
 * MODULE_EV_MESSAGE_OFFLINE) is stored with a XEP-0203 <delay/> saying
 * when the server got it, and delivered when a session of the account next
 * sends available presence with a non-negative priority, oldest first,
 * then deleted.
 *
 * Durability: the sender's session is held (router_hold) until the store
 * has committed the message, so that once the sender sees the answer to
 * any later stanza (a ping), the message is on disk and a crash of the
 * server cannot lose it. Over the per-account limit (`offline.max_messages`)
 * or for an account that does not exist, the sender gets
 * service-unavailable (RFC 6121 §8.5.2.2.1).
 *
 * Messages that carry nothing but a chat state (XEP-0085) are not kept:
 * "typing..." from yesterday is noise. A delivered message that the
 * connection never wrote comes back through the router (router_requeue)
 * and is stored again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/xalloc.h"
#include "modules/modules.h"

#define NS_DELAY      "urn:xmpp:delay"
#define NS_CHATSTATES "http://jabber.org/protocol/chatstates"
#define NS_HINTS      "urn:xmpp:hints"

typedef struct offline_settings {
    unsigned max_messages;
} offline_settings_t;

typedef struct offline_state {
    store_t *store;
    const logger_t *log;
    const offline_settings_t *settings;
    router_t *router;
} offline_state_t;

/* Who waits for a store answer: a session found again by JID and
 * connection id, or the router's own sender (requeued stanzas), which
 * lives as long as the router. */
typedef struct waiter {
    offline_state_t *st;
    route_target_t *server; /* the router's own sender, or NULL */
    jid_t jid;
    unsigned long conn;
} waiter_t;

static void waiter_init(waiter_t *w, offline_state_t *st, route_target_t *t)
{
    w->st = st;
    w->server = t->account == NULL ? t : NULL;
    w->conn = t->conn;
    if (w->server == NULL && jid_copy(&w->jid, &t->jid) != JID_OK)
        xalloc_fail(sizeof(w->jid));
}

static route_target_t *waiter_target(waiter_t *w)
{
    if (w->server != NULL)
        return w->server;
    return router_find_conn(w->st->router, &w->jid, w->conn);
}

static void waiter_clear(waiter_t *w)
{
    if (w->server == NULL)
        jid_clear(&w->jid);
}

/* Only a chat state (and hints), nothing a person wrote — unless the
 * sender asked for it to be kept (XEP-0334 <store/>). */
static bool chat_state_only(const xml_node_t *el)
{
    bool state = false;
    for (const xml_node_t *ch = el->children; ch != NULL; ch = ch->next) {
        if (ch->kind != XML_NODE_ELEMENT)
            continue;
        if (ch->ns != NULL && strcmp(ch->ns, NS_CHATSTATES) == 0)
            state = true;
        else if (ch->ns == NULL || strcmp(ch->ns, NS_HINTS) != 0 ||
                 strcmp(ch->name, "store") == 0)
            return false;
    }
    return state;
}

typedef struct put_req {
    waiter_t w;
    xml_tree_t *tree; /* the message as sent, for an error reply */
    bool held;        /* its sender is held until the answer */
} put_req_t;

static void on_put(void *ud, int err)
{
    put_req_t *p = ud;
    offline_state_t *st = p->w.st;
    route_target_t *t = waiter_target(&p->w);
    if (err != STORE_OK) {
        if (err != STORE_ERR_NOT_FOUND && err != STORE_ERR_FULL)
            LOG(st->log, LOG_WARN, 0, "offline message not stored: %s",
                store_strerror(err));
        if (p->w.server != NULL)
            router_requeue_error(st->router, p->tree->root, "cancel",
                                 "service-unavailable");
        else if (t != NULL)
            router_reply_error(t, p->tree->root, "cancel",
                               "service-unavailable");
    }
    if (t != NULL && p->held)
        router_release(st->router, t);
    waiter_clear(&p->w);
    xml_tree_free(p->tree);
    free(p);
}

/* XEP-0082 DateTime of now, UTC, with milliseconds. */
static void utc_stamp(char *buf, size_t len)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    module_datetime_format((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
                           buf, len);
}

static module_result_t offline_message(module_call_t *c)
{
    offline_state_t *st = c->state;
    st->router = c->router;
    const xml_node_t *el = c->tree->root;
    const char *type = xml_element_attr(el, NULL, "type");
    if (type != NULL && strcmp(type, "normal") != 0 &&
        strcmp(type, "chat") != 0)
        return MODULE_PASS;
    if (chat_state_only(el))
        return MODULE_HANDLED; /* dropped, as for an absent resource */
    if (xml_element_child(el, NS_HINTS, "no-store") != NULL)
        return MODULE_PASS; /* XEP-0334: the sender asked not to */
    if (st->store == NULL)
        return MODULE_PASS;

    /* What is stored: the message with its 'to' (the account's bare JID
     * when it had none) and the delay stamp (XEP-0203 §3: 'from' the
     * server that stored it). */
    xml_tree_t *copy = xml_tree_new();
    xml_node_t *m = copy != NULL ? xml_node_copy(copy, NULL, el) : NULL;
    char to[JID_FORMAT_BUF], stamp[40];
    if (m == NULL || jid_format(c->to, true, to, sizeof(to)) < 0)
        xalloc_fail(64);
    if (xml_element_attr(m, NULL, "to") == NULL &&
        xml_element_set_attr(copy, m, NULL, "to", to) < 0)
        xalloc_fail(64);
    utc_stamp(stamp, sizeof(stamp));
    xml_node_t *d = xml_element_new(copy, m, NS_DELAY, "delay");
    if (d == NULL ||
        xml_element_set_attr(copy, d, NULL, "from", c->to->domain) < 0 ||
        xml_element_set_attr(copy, d, NULL, "stamp", stamp) < 0)
        xalloc_fail(64);
    route_stanza_t rs = ROUTE_STANZA(m, c->router);
    rcbuf_t *bytes = route_stanza_bytes(&rs);

    put_req_t *p = xcalloc(1, sizeof(*p));
    waiter_init(&p->w, st, c->from);
    p->tree = xml_tree_new();
    if (p->tree == NULL || xml_node_copy(p->tree, NULL, el) == NULL)
        xalloc_fail(64);
    /* A client waits until it is stored; the server's own requeue (a
     * session's unsent backlog) has nobody waiting and must not be
     * serialized one commit at a time. */
    p->held = c->from->account != NULL;
    if (p->held)
        router_hold(c->router, c->from);
    store_offline_put(st->store, c->to->domain, c->to->node, rcbuf_data(bytes),
                      rcbuf_len(bytes), st->settings->max_messages, on_put, p);
    route_stanza_done(&rs);
    xml_tree_free(copy);
    return MODULE_HANDLED;
}

/* ------------------------------------------------------------ delivery */

typedef struct get_req {
    waiter_t w;
    char *domain, *node;
} get_req_t;

static void on_deleted(void *ud, int err)
{
    offline_state_t *st = ud;
    if (err != STORE_OK)
        LOG(st->log, LOG_WARN, 0, "delivered offline messages not deleted: %s",
            store_strerror(err));
}

static void on_get(void *ud, int err, const store_offline_msg_t *msgs,
                   size_t count)
{
    get_req_t *g = ud;
    offline_state_t *st = g->w.st;
    route_target_t *t = waiter_target(&g->w);
    if (err != STORE_OK)
        LOG(st->log, LOG_WARN, 0, "offline messages not read: %s",
            store_strerror(err));
    /* Only to a session still there and available; otherwise they stay
     * for the next one. */
    if (err == STORE_OK && count > 0 && t != NULL && t->available) {
        static const xml_node_t message = {
            .kind = XML_NODE_ELEMENT, .ns = XML_NS_CLIENT, .name = "message"};
        for (size_t i = 0; i < count; i++) {
            route_stanza_t rs = ROUTE_STANZA(&message, st->router);
            rs.bytes = rcbuf_new(msgs[i].stanza, msgs[i].len);
            if (rs.bytes == NULL)
                xalloc_fail(msgs[i].len);
            router_deliver(t, &rs);
            route_stanza_done(&rs);
        }
        LOG(st->log, LOG_DEBUG, t->conn, "%zu offline messages delivered",
            count);
        store_offline_delete(st->store, g->domain, g->node, msgs[count - 1].id,
                             on_deleted, st);
    }
    if (t != NULL)
        router_release(st->router, t);
    waiter_clear(&g->w);
    free(g->domain);
    free(g);
}

/* XEP-0160 §4: when the session next sends available presence with a
 * non-negative priority (initial, or raised from a negative one). */
static module_result_t offline_available(module_call_t *c)
{
    offline_state_t *st = c->state;
    st->router = c->router;
    if (st->store == NULL || c->from->account == NULL)
        return MODULE_PASS;
    get_req_t *g = xcalloc(1, sizeof(*g));
    waiter_init(&g->w, st, c->from);
    size_t dl = strlen(c->from->jid.domain) + 1;
    g->domain = xmalloc(dl + strlen(c->from->jid.node) + 1);
    memcpy(g->domain, c->from->jid.domain, dl);
    g->node = g->domain + dl;
    memcpy(g->node, c->from->jid.node, strlen(c->from->jid.node) + 1);
    /* The session's next stanzas wait for its messages: a client sees
     * them before the answer to anything it sends after its presence. */
    router_hold(c->router, c->from);
    store_offline_get(st->store, g->domain, g->node, on_get, g);
    return MODULE_PASS;
}

static void *offline_init(const module_env_t *env, bool *ok)
{
    offline_state_t *st = xcalloc(1, sizeof(*st));
    st->store = env->store;
    st->log = env->log;
    st->settings = env->settings;
    *ok = true;
    return st;
}

static void offline_fini(void *state)
{
    free(state);
}

static const offline_settings_t offline_defaults = {.max_messages = 1000};

static const config_field_t offline_fields[] = {
    {"max_messages", CONFIG_FIELD_UINT,
     offsetof(offline_settings_t, max_messages), 1, 1000000},
    {NULL, 0, 0, 0, 0},
};

static const module_hook_t offline_hooks[] = {
    {MODULE_EV_MESSAGE_OFFLINE, 0, offline_message},
    {MODULE_EV_SESSION_REACHABLE, 0, offline_available},
    {0, 0, NULL},
};

static const char *const offline_features[] = {"msgoffline", NULL};

const module_desc_t module_offline = {
    .name = "offline",
    .default_on = true,
    .settings = offline_fields,
    .settings_size = sizeof(offline_settings_t),
    .settings_default = &offline_defaults,
    .init = offline_init,
    .fini = offline_fini,
    .hooks = offline_hooks,
    .features = offline_features,
};
