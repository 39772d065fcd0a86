/* XEP-0030 Service Discovery on the server's domain: disco#info lists the
 * identities and features of every enabled module (§3.1) and their
 * XEP-0128 extensions (contact addresses); disco#items the XEP-0114
 * components (§4.1): those on a subdomain of the domain asked, and those
 * on no subdomain of any of ours under every domain. On an account's bare JID
 * (answered by the server, RFC 6121 §8.5.2.1.3): the identity
 * account/registered and the account features of the enabled modules; an
 * account that does not exist gets service-unavailable (RFC 6121 §8.5.1).
 * Nodes are not supported: a query naming one gets item-not-found (§3.1,
 * §7). */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "base/xalloc.h"
#include "modules/modules.h"

#define NS_DISCO_INFO  "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"

/* Starts the result with an empty <query xmlns=ns/>; NULL when out of
 * memory. */
static xml_node_t *start_query(module_call_t *c, const char *ns, xml_tree_t **t)
{
    xml_node_t *iq = module_iq_result(c, t);
    xml_node_t *q = iq != NULL ? xml_element_new(*t, iq, ns, "query") : NULL;
    if (iq != NULL && q == NULL)
        xml_tree_free(*t);
    return q;
}

static bool has_node(module_call_t *c, const xml_node_t *query)
{
    if (xml_element_attr(query, NULL, "node") == NULL)
        return false;
    module_reply_error(c, "cancel", "item-not-found");
    return true;
}

static module_result_t disco_info(module_call_t *c, const xml_node_t *query)
{
    /* XEP-0115 §6.2: the caps node of the server's own ver is the
     * server's info; any other node is unknown. */
    const char *node = xml_element_attr(query, NULL, "node");
    xml_tree_t *t;
    xml_node_t *q = start_query(c, NS_DISCO_INFO, &t);
    if (q == NULL)
        return MODULE_PASS;
    if (module_registry_server_info(c->modules, t, q) != 0) {
        xml_tree_free(t);
        return MODULE_PASS;
    }
    if (node != NULL) {
        char ver[64], want[sizeof(MODULE_CAPS_NODE) + 64];
        if (module_caps_ver(q, ver, sizeof(ver)) < 0)
            ver[0] = '\0';
        snprintf(want, sizeof(want), "%s#%s", MODULE_CAPS_NODE, ver);
        if (strcmp(node, want) != 0) {
            xml_tree_free(t);
            module_reply_error(c, "cancel", "item-not-found");
            return MODULE_HANDLED;
        }
        if (xml_element_set_attr(t, q, NULL, "node", node) < 0)
            xalloc_fail(64);
    }
    module_send(c, t);
    return MODULE_HANDLED;
}

/* Whether `domain` is a subdomain of `host` ("bot.example.org" of
 * "example.org"). */
static bool is_subdomain(const char *domain, const char *host)
{
    size_t d = strlen(domain), h = strlen(host);
    return d > h + 1 && domain[d - h - 1] == '.' &&
           strcmp(domain + d - h, host) == 0;
}

static bool listed_under(const router_t *r, const char *component,
                         const char *host)
{
    if (is_subdomain(component, host))
        return true;
    size_t n;
    const char *const *hosts = router_hosts(r, &n);
    for (size_t i = 0; i < n; i++)
        if (is_subdomain(component, hosts[i]))
            return false;
    return true;
}

static module_result_t disco_items(module_call_t *c, const xml_node_t *query)
{
    if (has_node(c, query))
        return MODULE_HANDLED;
    xml_tree_t *t;
    xml_node_t *q = start_query(c, NS_DISCO_ITEMS, &t);
    if (q == NULL)
        return MODULE_PASS;
    const char *host = c->to != NULL ? c->to->domain : c->from->jid.domain;
    for (size_t i = 0; i < router_component_count(c->router); i++) {
        const char *name;
        const char *domain = router_component(c->router, i, &name);
        if (!listed_under(c->router, domain, host))
            continue;
        xml_node_t *item = xml_element_new(t, q, NS_DISCO_ITEMS, "item");
        if (item == NULL ||
            xml_element_set_attr(t, item, NULL, "jid", domain) < 0 ||
            (name != NULL &&
             xml_element_set_attr(t, item, NULL, "name", name) < 0))
            xalloc_fail(256);
    }
    module_send(c, t);
    return MODULE_HANDLED;
}

/* --- an account's bare JID --- */

static int add_feature(xml_tree_t *t, xml_node_t *q, const char *var)
{
    xml_node_t *e = xml_element_new(t, q, NS_DISCO_INFO, "feature");
    return e != NULL ? xml_element_set_attr(t, e, NULL, "var", var) : -1;
}

/* The answer for an account that exists. */
static xml_tree_t *account_info(const module_registry_t *reg, xml_node_t *iq,
                                xml_tree_t *t)
{
    xml_node_t *q = xml_element_new(t, iq, NS_DISCO_INFO, "query");
    xml_node_t *id =
        q != NULL ? xml_element_new(t, q, NS_DISCO_INFO, "identity") : NULL;
    int rc = id != NULL ? 0 : -1;
    if (rc == 0) {
        rc |= xml_element_set_attr(t, id, NULL, "category", "account");
        rc |= xml_element_set_attr(t, id, NULL, "type", "registered");
        rc |= add_feature(t, q, NS_DISCO_INFO);
        rc |= add_feature(t, q, NS_DISCO_ITEMS);
    }
    for (size_t i = 0; rc == 0 && i < module_registry_count(reg); i++) {
        const module_desc_t *d = module_registry_desc(reg, i);
        for (const module_identity_t *mi = d->account_identities;
             rc == 0 && mi != NULL && mi->category != NULL; mi++) {
            xml_node_t *e = xml_element_new(t, q, NS_DISCO_INFO, "identity");
            rc |= e != NULL ? 0 : -1;
            if (e != NULL) {
                rc |=
                    xml_element_set_attr(t, e, NULL, "category", mi->category);
                rc |= xml_element_set_attr(t, e, NULL, "type", mi->type);
            }
        }
        for (const char *const *f = d->account_features;
             rc == 0 && f != NULL && *f != NULL; f++)
            rc |= add_feature(t, q, *f);
    }
    if (rc != 0)
        xalloc_fail(256);
    return t;
}

typedef struct account_req {
    module_later_t *l;
    const module_registry_t *reg;
    bool items;
} account_req_t;

static void answer_account(module_later_t *l, const module_registry_t *reg,
                           bool items)
{
    xml_tree_t *t;
    xml_node_t *iq = module_later_result(l, &t);
    if (iq == NULL)
        xalloc_fail(256);
    if (items) {
        if (xml_element_new(t, iq, NS_DISCO_ITEMS, "query") == NULL)
            xalloc_fail(256);
    } else {
        account_info(reg, iq, t);
    }
    module_later_send(l, t);
}

static void on_account(void *ud, int err, const store_account_t *a)
{
    account_req_t *r = ud;
    (void)a;
    if (err == STORE_OK)
        answer_account(r->l, r->reg, r->items);
    else
        module_later_error(r->l, "cancel",
                           err == STORE_ERR_NOT_FOUND
                               ? "service-unavailable"
                               : "internal-server-error");
    free(r);
}

static module_result_t disco_account(module_call_t *c, const xml_node_t *query,
                                     bool items)
{
    store_t *store = c->state;
    if (has_node(c, query))
        return MODULE_HANDLED;
    module_later_t *l = module_later_new(c);
    if (c->addressee == MODULE_TO_ACCOUNT || store == NULL) {
        answer_account(l, c->modules, items);
        return MODULE_HANDLED;
    }
    account_req_t *r = xcalloc(1, sizeof(*r));
    r->l = l;
    r->reg = c->modules;
    r->items = items;
    store_account_get(store, module_later_domain(l), module_later_node(l),
                      on_account, r);
    return MODULE_HANDLED;
}

static module_result_t disco_account_info(module_call_t *c,
                                          const xml_node_t *query)
{
    return disco_account(c, query, false);
}

static module_result_t disco_account_items(module_call_t *c,
                                           const xml_node_t *query)
{
    /* An account's items are its PEP nodes: the pep module lists them
     * (its handler runs next). */
    if (module_registry_has(c->modules, "pep") &&
        xml_element_attr(query, NULL, "node") == NULL)
        return MODULE_PASS;
    return disco_account(c, query, true);
}

/* The store is the instance state (NULL in unit tests: accounts are then
 * taken to exist). */
static void *disco_init(const module_env_t *env, bool *ok)
{
    *ok = true;
    return env->store;
}

#define TO_ACCOUNTS                                                            \
    (MODULE_TO_BIT(MODULE_TO_ACCOUNT) | MODULE_TO_BIT(MODULE_TO_BARE))

static const module_iq_handler_t disco_iq[] = {
    {MODULE_IQ_GET, NS_DISCO_INFO, MODULE_TO_BIT(MODULE_TO_SERVER), disco_info},
    {MODULE_IQ_GET, NS_DISCO_ITEMS, MODULE_TO_BIT(MODULE_TO_SERVER),
     disco_items},
    {MODULE_IQ_GET, NS_DISCO_INFO, TO_ACCOUNTS, disco_account_info},
    {MODULE_IQ_GET, NS_DISCO_ITEMS, TO_ACCOUNTS, disco_account_items},
    {0, NULL, 0, NULL},
};

/* XEP-0030 §3.1: a server's identity; "im" for an instant-messaging
 * server (the XMPP Registrar's category list). */
static const module_identity_t disco_identities[] = {
    {"server", "im", "Starling"},
    {NULL, NULL, NULL},
};

static const char *const disco_features[] = {NS_DISCO_INFO, NS_DISCO_ITEMS,
                                             NULL};

const module_desc_t module_disco = {
    .name = "disco",
    .default_on = true,
    .init = disco_init,
    .iq = disco_iq,
    .identities = disco_identities,
    .features = disco_features,
};
