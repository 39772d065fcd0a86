/* XEP-0199 XMPP Ping: the server answers a ping to its domain, and one to
 * the account (no 'to', or the sender's bare JID), with an empty result
 * (§4.2, §4.3). A ping to another user's JID is that user's to answer. */
#include "modules/modules.h"

#define NS_PING "urn:xmpp:ping"

static module_result_t ping(module_call_t *c, const xml_node_t *child)
{
    (void)child;
    xml_tree_t *t;
    if (module_iq_result(c, &t) == NULL)
        return MODULE_PASS; /* out of memory: service-unavailable */
    module_send(c, t);
    return MODULE_HANDLED;
}

static const module_iq_handler_t ping_iq[] = {
    {MODULE_IQ_GET, NS_PING,
     MODULE_TO_BIT(MODULE_TO_SERVER) | MODULE_TO_BIT(MODULE_TO_ACCOUNT), ping},
    {0, NULL, 0, NULL},
};

static const char *const ping_features[] = {NS_PING, NULL};

const module_desc_t module_ping = {
    .name = "ping",
    .default_on = true,
    .iq = ping_iq,
    .features = ping_features,
};
