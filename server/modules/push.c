/* XEP-0357 Push Notifications, the user's server side. A client registers
 * an app server (a JID and a node, usually given by its push service) with
 * <enable/>, optionally with publish-options (the app server's secret);
 * <disable/> removes one or all registrations of a JID. Registrations are
 * kept in the store (kind "push", key "JID NODE", value the serialized
 * publish-options form or nothing).
 *
 * When a message that matters (a body, or an encrypted payload) arrives for
 * an account none of whose sessions can take it now — no available session
 * that still has its connection: the message goes to offline storage, or
 * waits in a session kept for resumption (XEP-0198) — every registration of
 * the account gets a notification: an IQ set from the account's bare JID
 * publishing a urn:xmpp:push:summary form (§5: message-count — the
 * messages that woke the account since it last read them — and
 * last-message-sender; last-message-body only with `push.include_body`,
 * off: the body would pass through the push service), with the stored
 * publish-options. An app server that answers with an error loses the
 * registration (§8). The account's disco#info says urn:xmpp:push:0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/hash.h"
#include "base/xalloc.h"
#include "modules/modules.h"

#define NS_PUSH    "urn:xmpp:push:0"
#define NS_PUBSUB  "http://jabber.org/protocol/pubsub"
#define NS_DATA    "jabber:x:data"
#define NS_SUMMARY "urn:xmpp:push:summary"
#define NS_OMEMO   "eu.siacs.conversations.axolotl"
#define NS_OX      "urn:xmpp:openpgp:0"
#define NS_EME     "urn:xmpp:eme:0"

typedef struct push_settings {
    bool include_body;
} push_settings_t;

static const push_settings_t push_defaults = {.include_body = false};

static const config_field_t push_fields[] = {
    {"include_body", CONFIG_FIELD_BOOL, offsetof(push_settings_t, include_body),
     0, 0},
    {NULL, 0, 0, 0, 0},
};

/* A notification sent and not yet answered: which registration it was
 * for, so that an error removes it. */
enum { OUTSTANDING_MAX = 1024 };

typedef struct outstanding {
    unsigned long id;
    char owner[JID_FORMAT_BUF];
    char *key;
} outstanding_t;

/* §5 message-count: the messages that woke an account since it last read
 * them — since a message found one of its sessions reading its stream, or
 * one sent initial presence (offline messages are delivered then). Only
 * accounts with such messages have an entry. */
enum { UNREAD_BUCKETS = 256 };

typedef struct unread {
    struct unread *next;
    unsigned long count;
    char owner[]; /* bare JID */
} unread_t;

typedef struct push_state {
    store_t *store;
    const logger_t *log;
    unsigned long next_id;
    outstanding_t sent[OUTSTANDING_MAX]; /* ring by id */
    unread_t *unread[UNREAD_BUCKETS];
} push_state_t;

static unread_t **unread_slot(push_state_t *st, const char *owner)
{
    unread_t **pp = &st->unread[hash_str(owner) % UNREAD_BUCKETS];
    while (*pp != NULL && strcmp((*pp)->owner, owner) != 0)
        pp = &(*pp)->next;
    return pp;
}

/* One more for `owner`: the count now. */
static unsigned long unread_add(push_state_t *st, const char *owner)
{
    unread_t **pp = unread_slot(st, owner);
    if (*pp == NULL) {
        size_t n = strlen(owner) + 1;
        unread_t *u = xcalloc(1, sizeof(*u) + n);
        memcpy(u->owner, owner, n);
        *pp = u;
    }
    return ++(*pp)->count;
}

static void unread_clear(push_state_t *st, const char *owner)
{
    unread_t **pp = unread_slot(st, owner);
    if (*pp != NULL) {
        unread_t *u = *pp;
        *pp = u->next;
        free(u);
    }
}

static void *push_init(const module_env_t *env, bool *ok)
{
    push_state_t *st = xcalloc(1, sizeof(*st));
    st->store = env->store;
    st->log = env->log;
    *ok = true;
    return st;
}

static void push_fini(void *state)
{
    push_state_t *st = state;
    if (st == NULL)
        return;
    for (size_t i = 0; i < OUTSTANDING_MAX; i++)
        free(st->sent[i].key);
    for (size_t i = 0; i < UNREAD_BUCKETS; i++)
        while (st->unread[i] != NULL) {
            unread_t *u = st->unread[i];
            st->unread[i] = u->next;
            free(u);
        }
    free(st);
}

/* ------------------------------------------------------ enable, disable */

typedef struct disable_req {
    module_later_t *l;
    char *jid, *node; /* node NULL: every node of jid */
    push_state_t *st;
    unsigned pending;
    bool failed;
} disable_req_t;

static void disable_free(disable_req_t *r)
{
    free(r->jid);
    free(r->node);
    free(r);
}

static void on_disable_deleted(void *ud, int err)
{
    disable_req_t *r = ud;
    if (err != STORE_OK)
        r->failed = true;
    if (--r->pending > 0)
        return;
    module_later_stored(r->l, r->failed ? STORE_ERR_IO : STORE_OK);
    disable_free(r);
}

static void on_disable_list(void *ud, int err, const store_data_item_t *items,
                            size_t count)
{
    disable_req_t *r = ud;
    if (err != STORE_OK) {
        module_later_error(r->l, "wait", "internal-server-error");
        disable_free(r);
        return;
    }
    size_t jl = strlen(r->jid);
    r->pending = 1;
    for (size_t i = 0; i < count; i++) {
        const char *k = items[i].key;
        if (strncmp(k, r->jid, jl) != 0 || k[jl] != ' ' ||
            (r->node != NULL && strcmp(k + jl + 1, r->node) != 0))
            continue;
        r->pending++;
        store_data_delete(r->st->store, module_later_domain(r->l),
                          module_later_node(r->l), "push", k,
                          on_disable_deleted, r);
    }
    on_disable_deleted(r, STORE_OK);
}

static void on_enabled(void *ud, int err)
{
    module_later_stored(ud, err);
}

static module_result_t push_set(module_call_t *c, const xml_node_t *el)
{
    push_state_t *st = c->state;
    if (c->from->remote || c->from->account == NULL || st->store == NULL) {
        module_reply_error(c, "cancel", "not-allowed");
        return MODULE_HANDLED;
    }
    const char *jid_s = xml_element_attr(el, NULL, "jid");
    const char *node = xml_element_attr(el, NULL, "node");
    jid_t j;
    if (jid_s == NULL || jid_parse(jid_s, strlen(jid_s), 0, &j) != JID_OK) {
        module_reply_error(c, "modify", "bad-request");
        return MODULE_HANDLED;
    }
    char jid[JID_FORMAT_BUF + JID_PART_BUF];
    bool ok = jid_format(&j, false, jid, sizeof(jid)) >= 0;
    jid_clear(&j);
    bool enable = strcmp(el->name, "enable") == 0;
    if (!ok || (enable && (node == NULL || node[0] == '\0'))) {
        /* §5: enabling names the node the app server gave. */
        module_reply_error(c, "modify", "bad-request");
        return MODULE_HANDLED;
    }
    module_later_t *l = module_later_new(c);
    if (enable) {
        const xml_node_t *x = xml_element_child(el, NS_DATA, "x");
        buf_t b = BUF_INIT;
        if (x != NULL && xml_serialize(x, NULL, &b) < 0)
            xalloc_fail(b.cap);
        size_t klen = strlen(jid) + strlen(node) + 2;
        char *key = xmalloc(klen);
        snprintf(key, klen, "%s %s", jid, node);
        store_data_put(st->store, module_later_domain(l), module_later_node(l),
                       "push", key, b.data != NULL ? b.data : "", b.len,
                       on_enabled, l);
        free(key);
        buf_free(&b);
        return MODULE_HANDLED;
    }
    disable_req_t *r = xcalloc(1, sizeof(*r));
    r->l = l;
    r->st = st;
    r->jid = xstrdup(jid);
    r->node = node != NULL && node[0] != '\0' ? xstrdup(node) : NULL;
    store_data_get(st->store, module_later_domain(l), module_later_node(l),
                   "push", NULL, on_disable_list, r);
    return MODULE_HANDLED;
}

static module_result_t push_iq(module_call_t *c, const xml_node_t *el)
{
    (void)el;
    const xml_node_t *iq = c->tree->root;
    const xml_node_t *e = xml_element_child(iq, NS_PUSH, "enable");
    if (e == NULL)
        e = xml_element_child(iq, NS_PUSH, "disable");
    if (e == NULL) {
        module_reply_error(c, "cancel", "feature-not-implemented");
        return MODULE_HANDLED;
    }
    return push_set(c, e);
}

/* ------------------------------------------------------- notifications */

/* Whether a message is worth waking a phone for. */
static bool matters(const xml_node_t *el)
{
    const char *type = xml_element_attr(el, NULL, "type");
    if (type != NULL && strcmp(type, "chat") != 0 &&
        strcmp(type, "normal") != 0)
        return false; /* groupchat, headline, error */
    return xml_element_child(el, XML_NS_CLIENT, "body") != NULL ||
           xml_element_child(el, NS_OMEMO, "encrypted") != NULL ||
           xml_element_child(el, NS_OX, "openpgp") != NULL;
}

/* Whether one of the account's sessions takes messages now: available,
 * with its connection. */
static bool someone_listens(router_t *r, const char *bare)
{
    for (route_target_t *t = router_resources_bare(r, bare); t != NULL;
         t = t->next_resource)
        if (t->available && !t->detached)
            return true;
    return false;
}

typedef struct notify_job {
    push_state_t *st;
    router_t *router;
    char owner[JID_FORMAT_BUF];
    char sender[JID_FORMAT_BUF + JID_PART_BUF];
    char *body; /* NULL unless include_body */
    unsigned long count;
} notify_job_t;

static void add_field(xml_tree_t *t, xml_node_t *x, const char *var,
                      const char *value)
{
    xml_node_t *f = xml_element_new(t, x, NS_DATA, "field");
    xml_node_t *v = f != NULL ? xml_element_new(t, f, NS_DATA, "value") : NULL;
    if (v == NULL || xml_element_set_attr(t, f, NULL, "var", var) < 0 ||
        xml_element_add_text(t, v, value, strlen(value)) < 0)
        xalloc_fail(256);
}

/* §5, Example 7. */
static void send_notification(notify_job_t *j, const store_data_item_t *reg)
{
    push_state_t *st = j->st;
    const char *sp = strchr(reg->key, ' ');
    if (sp == NULL)
        return;
    char to[JID_FORMAT_BUF + JID_PART_BUF];
    snprintf(to, sizeof(to), "%.*s", (int)(sp - reg->key), reg->key);
    const char *node = sp + 1;
    outstanding_t *o = &st->sent[st->next_id % OUTSTANDING_MAX];
    free(o->key);
    o->id = ++st->next_id;
    snprintf(o->owner, sizeof(o->owner), "%s", j->owner);
    o->key = xstrdup(reg->key);
    char id[40];
    snprintf(id, sizeof(id), "push-%lu", o->id);

    xml_tree_t *t = xml_tree_new();
    xml_node_t *iq =
        t != NULL ? xml_element_new(t, NULL, XML_NS_CLIENT, "iq") : NULL;
    xml_node_t *ps =
        iq != NULL ? xml_element_new(t, iq, NS_PUBSUB, "pubsub") : NULL;
    xml_node_t *pub =
        ps != NULL ? xml_element_new(t, ps, NS_PUBSUB, "publish") : NULL;
    xml_node_t *item =
        pub != NULL ? xml_element_new(t, pub, NS_PUBSUB, "item") : NULL;
    xml_node_t *n =
        item != NULL ? xml_element_new(t, item, NS_PUSH, "notification") : NULL;
    xml_node_t *x = n != NULL ? xml_element_new(t, n, NS_DATA, "x") : NULL;
    if (x == NULL || xml_element_set_attr(t, iq, NULL, "type", "set") < 0 ||
        xml_element_set_attr(t, iq, NULL, "id", id) < 0 ||
        xml_element_set_attr(t, iq, NULL, "from", j->owner) < 0 ||
        xml_element_set_attr(t, iq, NULL, "to", to) < 0 ||
        xml_element_set_attr(t, pub, NULL, "node", node) < 0 ||
        xml_element_set_attr(t, x, NULL, "type", "form") < 0)
        xalloc_fail(256);
    add_field(t, x, "FORM_TYPE", NS_SUMMARY);
    char count[24];
    snprintf(count, sizeof(count), "%lu", j->count);
    add_field(t, x, "message-count", count);
    add_field(t, x, "last-message-sender", j->sender);
    if (j->body != NULL)
        add_field(t, x, "last-message-body", j->body);
    if (reg->len > 0) {
        xml_node_t *po = xml_element_new(t, ps, NS_PUBSUB, "publish-options");
        if (po == NULL || module_parse_into(t, po, reg->value, reg->len) < 0)
            xalloc_fail(256);
    }
    LOG(st->log, LOG_DEBUG, 0, "push: %s notifies %s (node %s)", j->owner, to,
        node);
    router_send_remote(j->router, t);
}

static void on_registrations(void *ud, int err, const store_data_item_t *items,
                             size_t count)
{
    notify_job_t *j = ud;
    for (size_t i = 0; err == STORE_OK && i < count; i++)
        send_notification(j, &items[i]);
    free(j->body);
    free(j);
}

static module_result_t on_message(module_call_t *c)
{
    push_state_t *st = c->state;
    const push_settings_t *s = c->settings;
    const xml_node_t *el = c->tree->root;
    if (st->store == NULL || c->to == NULL || c->to->node == NULL ||
        !matters(el))
        return MODULE_PASS;
    char owner[JID_FORMAT_BUF];
    if (jid_format(c->to, true, owner, sizeof(owner)) < 0)
        return MODULE_PASS;
    /* To a full JID: that session, if it exists (a message for a resource
     * that is gone is one for the account, RFC 6121 §8.5.3.2.1). */
    route_target_t *t =
        c->addressee == MODULE_TO_FULL ? router_find(c->router, c->to) : NULL;
    if (t != NULL ? !t->detached : someone_listens(c->router, owner)) {
        unread_clear(st, owner); /* the account reads again */
        return MODULE_PASS;
    }
    notify_job_t *j = xcalloc(1, sizeof(*j));
    j->count = unread_add(st, owner);
    j->st = st;
    j->router = c->router;
    snprintf(j->owner, sizeof(j->owner), "%s", owner);
    const char *from = xml_element_attr(el, NULL, "from");
    snprintf(j->sender, sizeof(j->sender), "%s", from != NULL ? from : "");
    const xml_node_t *body = xml_element_child(el, XML_NS_CLIENT, "body");
    const char *text = body != NULL ? xml_element_text(c->tree, body) : NULL;
    if (s->include_body && text != NULL)
        j->body = xstrdup(text);
    char node[JID_PART_BUF];
    snprintf(node, sizeof(node), "%.*s", (int)c->to->node_len, c->to->node);
    store_data_get(st->store, c->to->domain, node, "push", NULL,
                   on_registrations, j);
    return MODULE_PASS;
}

/* §8: the app server's answer to a notification; an error ends the
 * registration. */
static module_result_t on_answer(module_call_t *c)
{
    push_state_t *st = c->state;
    const xml_node_t *el = c->tree->root;
    const char *type = xml_element_attr(el, NULL, "type");
    const char *id = xml_element_attr(el, NULL, "id");
    unsigned long n;
    char rest;
    if (type == NULL || id == NULL ||
        (strcmp(type, "result") != 0 && strcmp(type, "error") != 0) ||
        sscanf(id, "push-%lu%c", &n, &rest) != 1)
        return MODULE_PASS;
    outstanding_t *o = &st->sent[(n - 1) % OUTSTANDING_MAX];
    if (o->id == n && o->key != NULL && strcmp(type, "error") == 0 &&
        st->store != NULL) {
        const char *at = strchr(o->owner, '@');
        if (at != NULL) {
            char node[JID_PART_BUF];
            snprintf(node, sizeof(node), "%.*s", (int)(at - o->owner),
                     o->owner);
            LOG(st->log, LOG_INFO, 0,
                "push: %s answered with an error: registration \"%s\" of %s "
                "removed",
                xml_element_attr(el, NULL, "from"), o->key, o->owner);
            store_data_delete(st->store, at + 1, node, "push", o->key, NULL,
                              NULL);
        }
    }
    if (o->id == n) {
        free(o->key);
        o->key = NULL;
    }
    return MODULE_HANDLED;
}

/* Initial presence: offline messages are delivered, the count starts
 * again. */
static module_result_t on_available(module_call_t *c)
{
    char owner[JID_FORMAT_BUF];
    if (jid_format(&c->from->jid, true, owner, sizeof(owner)) >= 0)
        unread_clear(c->state, owner);
    return MODULE_PASS;
}

static const module_iq_handler_t push_iqs[] = {
    {MODULE_IQ_SET, NS_PUSH, MODULE_TO_BIT(MODULE_TO_ACCOUNT), push_iq},
    {0, NULL, 0, NULL},
};

/* After blocking (a blocked sender wakes nobody), before the IM rules that
 * deliver or store the message (priority 0); it never handles one. */
#define PUSH_PRIORITY 5
static const module_hook_t push_hooks[] = {
    {MODULE_EV_MESSAGE_BARE, PUSH_PRIORITY, on_message},
    {MODULE_EV_MESSAGE_FULL, PUSH_PRIORITY, on_message},
    {MODULE_EV_IQ_BARE, 90, on_answer},
    {MODULE_EV_SESSION_AVAILABLE, PUSH_PRIORITY, on_available},
    {0, 0, NULL},
};

static const char *const push_account_features[] = {NS_PUSH, NULL};

const module_desc_t module_push = {
    .name = "push",
    .default_on = true,
    .settings = push_fields,
    .settings_size = sizeof(push_settings_t),
    .settings_default = &push_defaults,
    .init = push_init,
    .fini = push_fini,
    .iq = push_iqs,
    .hooks = push_hooks,
    .account_features = push_account_features,
};
