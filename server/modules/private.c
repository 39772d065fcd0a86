/* XEP-0049 Private XML Storage: an account keeps XML documents on the
 * server for itself alone (bookmarks of old clients, XEP-0048; client
 * preferences), one per namespace. A set stores the query's children by
 * their namespace (several children of one namespace are kept together, in
 * order); a get names one namespace with an empty element and gets what is
 * stored, or that empty element back when nothing is. Only the account
 * itself: an IQ to another account gets forbidden (§2), a get without a
 * child bad-request (the XEP's "bad-format" is not an RFC 6120 condition),
 * a get of several namespaces at once bad-request, and a document over
 * `private.max_size` bytes policy-violation. Kept in the store (kind
 * "private", key the namespace). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/xalloc.h"
#include "modules/modules.h"

#define NS_PRIVATE   "jabber:iq:private"
#define NS_BOOKMARKS "storage:bookmarks"
#define NS_EVENT     "http://jabber.org/protocol/pubsub#event"

typedef struct private_settings {
    unsigned max_size;
} private_settings_t;

static const private_settings_t private_defaults = {.max_size = 64 * 1024};

static const config_field_t private_fields[] = {
    {"max_size", CONFIG_FIELD_UINT, offsetof(private_settings_t, max_size),
     1024, 16 << 20},
    {NULL, 0, 0, 0, 0},
};

/* The instance state is the store itself (NULL: none, unit tests). */
static void *private_init(const module_env_t *env, bool *ok)
{
    *ok = true;
    return env->store;
}

/* The element children of the query; the first in *first. */
static size_t children(const xml_node_t *q, const xml_node_t **first)
{
    size_t n = 0;
    *first = NULL;
    for (const xml_node_t *ch = q->children; ch != NULL; ch = ch->next) {
        if (ch->kind != XML_NODE_ELEMENT)
            continue;
        if (n++ == 0)
            *first = ch;
    }
    return n;
}

/* --- get --- */

static void on_get(void *ud, int err, const store_data_item_t *items,
                   size_t count)
{
    module_later_t *l = ud;
    if (err != STORE_OK) {
        module_later_error(l, "wait", "internal-server-error");
        return;
    }
    const xml_node_t *q =
        xml_element_child(module_later_stanza(l), NS_PRIVATE, "query");
    const xml_node_t *want;
    children(q, &want);
    xml_tree_t *t;
    xml_node_t *iq = module_later_result(l, &t);
    xml_node_t *rq =
        iq != NULL ? xml_element_new(t, iq, NS_PRIVATE, "query") : NULL;
    if (rq == NULL)
        xalloc_fail(256);
    /* Nothing stored: the empty element as asked (§2). */
    if (count == 0 ||
        module_parse_into(t, rq, items[0].value, items[0].len) < 0)
        if (xml_node_copy(t, rq, want) == NULL)
            xalloc_fail(256);
    module_later_send(l, t);
}

static module_result_t private_get(module_call_t *c, const xml_node_t *q)
{
    store_t *store = c->state;
    const xml_node_t *want;
    if (c->addressee != MODULE_TO_ACCOUNT) {
        module_reply_error(c, "cancel", "forbidden");
        return MODULE_HANDLED;
    }
    if (children(q, &want) != 1 || want->ns == NULL || want->ns[0] == '\0') {
        module_reply_error(c, "modify", "bad-request");
        return MODULE_HANDLED;
    }
    if (store == NULL) {
        module_reply_error(c, "cancel", "service-unavailable");
        return MODULE_HANDLED;
    }
    module_later_t *l = module_later_new(c);
    store_data_get(store, module_later_domain(l), module_later_node(l),
                   "private", want->ns, on_get, l);
    return MODULE_HANDLED;
}

/* --- set --- */

typedef struct set_req {
    module_later_t *l;
    unsigned pending;
    bool failed;
    /* XEP-0411: bookmarks written here are also the PEP node's item; its
     * notification goes out once stored. */
    router_t *router;
    const module_registry_t *reg;
    char owner[JID_FORMAT_BUF];
    char *bookmarks; /* the <storage/> as serialized, or NULL */
    size_t bookmarks_len;
} set_req_t;

/* The PEP notification of the converted bookmarks (XEP-0411 §3) to the
 * account's resources that want it: the node is the account's alone. */
static void notify_bookmarks(set_req_t *r)
{
    xml_tree_t *t = xml_tree_new();
    xml_node_t *m =
        t != NULL ? xml_element_new(t, NULL, XML_NS_CLIENT, "message") : NULL;
    xml_node_t *ev =
        m != NULL ? xml_element_new(t, m, NS_EVENT, "event") : NULL;
    xml_node_t *its =
        ev != NULL ? xml_element_new(t, ev, NS_EVENT, "items") : NULL;
    xml_node_t *it =
        its != NULL ? xml_element_new(t, its, NS_EVENT, "item") : NULL;
    if (it == NULL ||
        xml_element_set_attr(t, m, NULL, "type", "headline") < 0 ||
        xml_element_set_attr(t, m, NULL, "from", r->owner) < 0 ||
        xml_element_set_attr(t, its, NULL, "node", NS_BOOKMARKS) < 0 ||
        xml_element_set_attr(t, it, NULL, "id", "current") < 0 ||
        module_parse_into(t, it, r->bookmarks, r->bookmarks_len) < 0)
        xalloc_fail(256);
    for (route_target_t *res = router_resources_bare(r->router, r->owner);
         res != NULL; res = res->next_resource) {
        char full[JID_FORMAT_BUF + JID_PART_BUF];
        if (!res->available ||
            jid_format(&res->jid, false, full, sizeof(full)) < 0 ||
            !module_registry_entity_has(r->reg, full, NS_BOOKMARKS "+notify"))
            continue;
        if (xml_element_set_attr(t, m, NULL, "to", full) < 0)
            xalloc_fail(64);
        route_stanza_t rs = ROUTE_STANZA(m, r->router);
        router_deliver(res, &rs);
        route_stanza_done(&rs);
    }
    xml_tree_free(t);
}

static void on_put(void *ud, int err)
{
    set_req_t *r = ud;
    if (err != STORE_OK)
        r->failed = true;
    if (--r->pending > 0)
        return;
    if (module_later_stored(r->l, r->failed ? STORE_ERR_IO : STORE_OK) &&
        r->bookmarks != NULL)
        notify_bookmarks(r);
    free(r->bookmarks);
    free(r);
}

static module_result_t private_set(module_call_t *c, const xml_node_t *q)
{
    store_t *store = c->state;
    const private_settings_t *s = c->settings;
    const xml_node_t *first;
    if (c->addressee != MODULE_TO_ACCOUNT) {
        module_reply_error(c, "cancel", "forbidden");
        return MODULE_HANDLED;
    }
    if (children(q, &first) == 0) {
        module_reply_error(c, "modify", "not-acceptable");
        return MODULE_HANDLED;
    }
    /* Each namespace's children serialized together; a child without a
     * namespace of its own cannot be asked for again. */
    size_t n = 0;
    const char *nss[16];
    buf_t docs[16];
    bool bad = false;
    for (const xml_node_t *ch = q->children; ch != NULL && !bad;
         ch = ch->next) {
        if (ch->kind != XML_NODE_ELEMENT)
            continue;
        if (ch->ns == NULL || ch->ns[0] == '\0' ||
            strcmp(ch->ns, NS_PRIVATE) == 0) {
            bad = true;
            break;
        }
        size_t i = 0;
        while (i < n && strcmp(nss[i], ch->ns) != 0)
            i++;
        if (i == n) {
            if (n == sizeof(nss) / sizeof(nss[0])) {
                bad = true;
                break;
            }
            nss[n] = ch->ns;
            docs[n] = (buf_t)BUF_INIT;
            n++;
        }
        if (xml_serialize(ch, NULL, &docs[i]) != 0)
            xalloc_fail(256);
        if (docs[i].len > s->max_size) {
            for (size_t k = 0; k < n; k++)
                buf_free(&docs[k]);
            module_reply_error(c, "modify", "policy-violation");
            return MODULE_HANDLED;
        }
    }
    if (bad || store == NULL) {
        for (size_t k = 0; k < n; k++)
            buf_free(&docs[k]);
        if (bad)
            module_reply_error(c, "modify", "not-acceptable");
        else
            module_reply_error(c, "cancel", "service-unavailable");
        return MODULE_HANDLED;
    }
    set_req_t *r = xcalloc(1, sizeof(*r));
    r->l = module_later_new(c);
    r->router = c->router;
    r->reg = c->modules;
    snprintf(r->owner, sizeof(r->owner), "%s@%s", module_later_node(r->l),
             module_later_domain(r->l));
    r->pending = (unsigned)n;
    for (size_t i = 0; i < n; i++) {
        const char *domain = module_later_domain(r->l);
        const char *node = module_later_node(r->l);
        store_data_put(store, domain, node, "private", nss[i], docs[i].data,
                       docs[i].len, on_put, r);
        /* XEP-0411: the same bookmarks are the PEP node's one item, on a
         * node only the account may read. */
        if (strcmp(nss[i], NS_BOOKMARKS) == 0 &&
            module_registry_has(c->modules, "pep")) {
            static const char conf[] = "access=whitelist max_items=1 "
                                       "persist=1 notify_retract=1";
            r->pending += 2;
            store_data_put(store, domain, node, "pepnode", NS_BOOKMARKS, conf,
                           sizeof(conf) - 1, on_put, r);
            store_data_put(store, domain, node, "pep/" NS_BOOKMARKS, "current",
                           docs[i].data, docs[i].len, on_put, r);
            r->bookmarks = xmalloc(docs[i].len + 1);
            memcpy(r->bookmarks, docs[i].data, docs[i].len);
            r->bookmarks[docs[i].len] = '\0';
            r->bookmarks_len = docs[i].len;
        }
        buf_free(&docs[i]);
    }
    return MODULE_HANDLED;
}

static const module_iq_handler_t private_iq[] = {
    {MODULE_IQ_GET, NS_PRIVATE,
     MODULE_TO_BIT(MODULE_TO_ACCOUNT) | MODULE_TO_BIT(MODULE_TO_BARE),
     private_get},
    {MODULE_IQ_SET, NS_PRIVATE,
     MODULE_TO_BIT(MODULE_TO_ACCOUNT) | MODULE_TO_BIT(MODULE_TO_BARE),
     private_set},
    {0, NULL, 0, NULL},
};

static const char *const private_features[] = {NS_PRIVATE, NULL};

const module_desc_t module_private = {
    .name = "private",
    .default_on = true,
    .settings = private_fields,
    .settings_size = sizeof(private_settings_t),
    .settings_default = &private_defaults,
    .init = private_init,
    .iq = private_iq,
    .features = private_features,
};
