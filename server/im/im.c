/* im: the instant-messaging rules of RFC 6121 that decide where a message
 * or presence goes once the router has found its addressee: messages to a
 * bare JID (§8.5.2), stanzas to a full JID with no session (§8.5.3.2).
 * The availability and priority these rules use are set by the roster
 * module's presence handling (presence.c); a message for an account with
 * no available resource is offered to offline storage
 * (MODULE_EV_MESSAGE_OFFLINE, offline.c).
 *
 * A core module (always on): its hooks run at priority 0, so that a module
 * that wants to see a stanza before delivery (carbons, archiving, privacy
 * lists, the roster module's subscription handling at 10) hooks the same
 * event at a higher priority. */
#include <stdlib.h>
#include <string.h>

#include "im/im.h"
#include "modules/module.h"
#include "modules/modules.h"

static bool is_type(const char *type, const char *want)
{
    return type != NULL && strcmp(type, want) == 0;
}

/* The priority a message of `type` to the bare JID goes to: the highest
 * non-negative one of an available resource, or -1 when none is. */
static int best_priority(route_target_t *first)
{
    int best = -129;
    for (route_target_t *t = first; t != NULL; t = t->next_resource)
        if (t->available && t->priority >= 0 && t->priority > best)
            best = t->priority;
    return best < 0 ? -1 : best;
}

bool im_message_reaches(router_t *r, const jid_t *to, const route_target_t *t,
                        const char *type)
{
    if (to->resource != NULL) {
        const route_target_t *bound = router_find(r, to);
        if (bound != NULL)
            return bound == t;
    }
    if (type == NULL)
        type = "normal";
    if (strcmp(type, "error") == 0 || strcmp(type, "groupchat") == 0)
        return false;
    int best = best_priority(router_resources(r, to));
    if (best < 0 || !t->available || t->priority < 0)
        return false;
    return strcmp(type, "headline") == 0 || t->priority == best;
}

/* Message to the local bare JID `to` (RFC 6121 §8.5.2). */
static void message_to_bare(module_call_t *c, const jid_t *to)
{
    router_t *router = c->router;
    route_target_t *from = c->from;
    const xml_node_t *el = c->tree->root;
    route_target_t *first = router_resources(router, to);
    const char *type = xml_element_attr(el, NULL, "type");
    if (type == NULL)
        type = "normal";
    if (strcmp(type, "error") == 0)
        return; /* §8.5.2.1.4 / §8.5.2.2.4: silently ignored */
    if (strcmp(type, "groupchat") == 0) {
        /* §8.5.2.1.2: a groupchat message to a user is an error. */
        router_reply_error(from, el, "cancel", "service-unavailable");
        return;
    }
    int best = best_priority(first);
    if (best < 0) {
        /* §8.5.2.2: no available resource with a non-negative priority.
         * Headlines are dropped (§8.5.2.2.3); normal and chat go to
         * offline storage when a module keeps them (XEP-0160), or the
         * sender learns they were not delivered. */
        if (strcmp(type, "headline") == 0)
            return;
        module_call_t off = *c;
        off.to = to;
        off.addressee = MODULE_TO_BARE;
        off.event = MODULE_EV_MESSAGE_OFFLINE;
        if (module_dispatch(c->modules, MODULE_EV_MESSAGE_OFFLINE, &off) !=
            MODULE_HANDLED)
            router_reply_error(from, el, "cancel", "service-unavailable");
        return;
    }
    /* §8.5.2.1.1: normal and chat go to the resources of the highest
     * non-negative priority (all of them when several share it);
     * headline to every non-negative one. */
    bool all = strcmp(type, "headline") == 0;
    route_stanza_t st = ROUTE_STANZA(el, router);
    size_t n = 0;
    for (route_target_t *t = first; t != NULL; t = t->next_resource)
        if (t->available && t->priority >= 0 && (all || t->priority == best))
            n++;
    st.shared = n > 1;
    for (route_target_t *t = first; t != NULL; t = t->next_resource)
        if (t->available && t->priority >= 0 && (all || t->priority == best))
            router_deliver(t, &st);
    route_stanza_done(&st);
}

/* RFC 6120 §10.3.1: a message with no 'to' is handled as if sent to the
 * sender's bare JID. */
static module_result_t message_account(module_call_t *c)
{
    jid_t bare;
    if (jid_bare(&bare, &c->from->jid) != JID_OK)
        return MODULE_PASS;
    message_to_bare(c, &bare);
    jid_clear(&bare);
    return MODULE_HANDLED;
}

static module_result_t message_bare(module_call_t *c)
{
    message_to_bare(c, c->to);
    return MODULE_HANDLED;
}

/* §8.5.3.2.1: a message to a full JID with no session. A bound one is the
 * router's to deliver. */
static module_result_t message_full(module_call_t *c)
{
    if (router_find(c->router, c->to) != NULL)
        return MODULE_PASS;
    const xml_node_t *el = c->tree->root;
    if (is_type(xml_element_attr(el, NULL, "type"), "groupchat")) {
        router_reply_error(c->from, el, "cancel", "service-unavailable");
        return MODULE_HANDLED;
    }
    jid_t bare;
    if (jid_bare(&bare, c->to) != JID_OK)
        return MODULE_PASS;
    message_to_bare(c, &bare);
    jid_clear(&bare);
    return MODULE_HANDLED;
}

/* §8.5.2.1.1 for presence to a bare JID that the roster module left
 * (available and unavailable, directed): every available resource. */
static module_result_t presence_bare(module_call_t *c)
{
    const xml_node_t *el = c->tree->root;
    const char *type = xml_element_attr(el, NULL, "type");
    if (type == NULL || strcmp(type, "unavailable") == 0) {
        /* Presence that never reaches a resource is not handed back
         * (RFC 6121 §8.5.3.2.3), so `shared` does not matter here. */
        route_stanza_t st = ROUTE_STANZA(el, c->router);
        for (route_target_t *t = router_resources(c->router, c->to); t != NULL;
             t = t->next_resource)
            if (t->available)
                router_deliver(t, &st);
        route_stanza_done(&st);
    }
    return MODULE_HANDLED;
}

/* §8.5.3.2.3: presence to an unknown resource is ignored. */
static module_result_t presence_full(module_call_t *c)
{
    return router_find(c->router, c->to) != NULL ? MODULE_PASS : MODULE_HANDLED;
}

static const module_hook_t im_hooks[] = {
    {MODULE_EV_MESSAGE_ACCOUNT, 0, message_account},
    {MODULE_EV_MESSAGE_BARE, 0, message_bare},
    {MODULE_EV_MESSAGE_FULL, 0, message_full},
    {MODULE_EV_PRESENCE_BARE, 0, presence_bare},
    {MODULE_EV_PRESENCE_FULL, 0, presence_full},
    {0, 0, NULL},
};

const module_desc_t module_im = {
    .name = "im",
    .core = true,
    .default_on = true,
    .hooks = im_hooks,
};
