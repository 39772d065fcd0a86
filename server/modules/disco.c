/* XEP-0030 Service Discovery on the server's domain: disco#info lists the
 * identities and features of every enabled module (§3.1), disco#items an
 * empty list until there are components or rooms to list (§4.1). Nodes
 * are not supported: a query naming one gets item-not-found (§3.1, §7). */
#include <string.h>

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
    if (has_node(c, query))
        return MODULE_HANDLED;
    xml_tree_t *t;
    xml_node_t *q = start_query(c, NS_DISCO_INFO, &t);
    if (q == NULL)
        return MODULE_PASS;
    int rc = 0;
    for (size_t i = 0; i < module_registry_count(c->modules); i++) {
        const module_desc_t *d = module_registry_desc(c->modules, i);
        for (const module_identity_t *id = d->identities;
             id != NULL && id->category != NULL; id++) {
            xml_node_t *e = xml_element_new(t, q, NS_DISCO_INFO, "identity");
            if (e == NULL) {
                rc = -1;
                break;
            }
            rc |= xml_element_set_attr(t, e, NULL, "category", id->category);
            rc |= xml_element_set_attr(t, e, NULL, "type", id->type);
            if (id->name != NULL)
                rc |= xml_element_set_attr(t, e, NULL, "name", id->name);
        }
    }
    for (size_t i = 0; i < module_registry_count(c->modules); i++) {
        const module_desc_t *d = module_registry_desc(c->modules, i);
        for (const char *const *f = d->features; f != NULL && *f != NULL; f++) {
            xml_node_t *e = xml_element_new(t, q, NS_DISCO_INFO, "feature");
            if (e == NULL) {
                rc = -1;
                break;
            }
            rc |= xml_element_set_attr(t, e, NULL, "var", *f);
        }
    }
    if (rc != 0) {
        xml_tree_free(t);
        return MODULE_PASS;
    }
    module_send(c, t);
    return MODULE_HANDLED;
}

static module_result_t disco_items(module_call_t *c, const xml_node_t *query)
{
    if (has_node(c, query))
        return MODULE_HANDLED;
    xml_tree_t *t;
    if (start_query(c, NS_DISCO_ITEMS, &t) == NULL)
        return MODULE_PASS;
    module_send(c, t);
    return MODULE_HANDLED;
}

static const module_iq_handler_t disco_iq[] = {
    {MODULE_IQ_GET, NS_DISCO_INFO, MODULE_TO_BIT(MODULE_TO_SERVER), disco_info},
    {MODULE_IQ_GET, NS_DISCO_ITEMS, MODULE_TO_BIT(MODULE_TO_SERVER),
     disco_items},
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
    .iq = disco_iq,
    .identities = disco_identities,
    .features = disco_features,
};
