/* XEP-0280 Message Carbons (urn:xmpp:carbons:2): a session that enables
 * them gets a copy of every eligible message its account sends from
 * another resource (<sent/>) or receives at another resource
 * (<received/>), so that a conversation reads the same on the phone and
 * on the laptop.
 *
 * Eligible (§6): type chat, and type normal (or none) with a body; never
 * groupchat, headline or error, never a message that carries
 * <private xmlns='urn:xmpp:carbons:2'/> or the XEP-0334 <no-copy/> hint,
 * and never a carbon itself. A received copy goes to each enabled,
 * available resource that the original does not reach by RFC 6121 §8.5
 * (im_message_reaches()); a sent copy to each enabled, available resource
 * of the sender's account other than the sender. The copies come from the
 * account's bare JID with the original, 'from' included, inside a
 * XEP-0297 <forwarded/>; a sent copy carries the sender's archive id
 * (XEP-0313 §3.2), never the recipient's. Hooks at priority 30: after
 * blocking (which may stop the message) and the archive (which stamps the
 * ids), before the IM rules deliver it. */
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "im/im.h"
#include "modules/modules.h"

#define NS_CARBONS "urn:xmpp:carbons:2"
#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_HINTS   "urn:xmpp:hints"
#define NS_SID     "urn:xmpp:sid:0"
#define NBUCKETS   1024

/* The enabled sessions, by connection id (a connection holds one session
 * at most, and its id is never reused). */
typedef struct enabled {
    struct enabled *next;
    unsigned long conn;
} enabled_t;

typedef struct carbons_state {
    enabled_t *buckets[NBUCKETS];
    size_t count;
} carbons_state_t;

static void *carbons_init(const module_env_t *env, bool *ok)
{
    (void)env;
    *ok = true;
    return xcalloc(1, sizeof(carbons_state_t));
}

static void carbons_fini(void *state)
{
    carbons_state_t *st = state;
    for (size_t i = 0; i < NBUCKETS; i++)
        while (st->buckets[i] != NULL) {
            enabled_t *e = st->buckets[i];
            st->buckets[i] = e->next;
            free(e);
        }
    free(st);
}

static enabled_t **find(carbons_state_t *st, unsigned long conn)
{
    enabled_t **pp = &st->buckets[conn % NBUCKETS];
    while (*pp != NULL && (*pp)->conn != conn)
        pp = &(*pp)->next;
    return pp;
}

static bool is_enabled(carbons_state_t *st, const route_target_t *t)
{
    return st->count > 0 && *find(st, t->conn) != NULL;
}

static void set_enabled(carbons_state_t *st, unsigned long conn, bool on)
{
    enabled_t **pp = find(st, conn);
    if (on && *pp == NULL) {
        enabled_t *e = xcalloc(1, sizeof(*e));
        e->conn = conn;
        *pp = e;
        st->count++;
    } else if (!on && *pp != NULL) {
        enabled_t *e = *pp;
        *pp = e->next;
        free(e);
        st->count--;
    }
}

static module_result_t carbons_set(module_call_t *c, const xml_node_t *v)
{
    carbons_state_t *st = c->state;
    bool on = strcmp(v->name, "enable") == 0;
    if (c->addressee != MODULE_TO_ACCOUNT || c->from->remote) {
        module_reply_error(c, "cancel", "forbidden");
        return MODULE_HANDLED;
    }
    if (!on && strcmp(v->name, "disable") != 0) {
        module_reply_error(c, "modify", "bad-request");
        return MODULE_HANDLED;
    }
    xml_tree_t *t;
    if (module_iq_result(c, &t) == NULL)
        return MODULE_PASS;
    set_enabled(st, c->from->conn, on);
    module_send(c, t);
    return MODULE_HANDLED;
}

static module_result_t on_ended(module_call_t *c)
{
    set_enabled(c->state, c->from->conn, false);
    return MODULE_PASS;
}

/* ------------------------------------------------------------ copies */

static bool eligible(const xml_node_t *el)
{
    const char *type = xml_element_attr(el, NULL, "type");
    if (type != NULL && strcmp(type, "chat") != 0 &&
        strcmp(type, "normal") != 0)
        return false;
    if ((type == NULL || strcmp(type, "normal") == 0) &&
        xml_element_child(el, XML_NS_CLIENT, "body") == NULL)
        return false;
    return xml_element_child(el, NS_CARBONS, "private") == NULL &&
           xml_element_child(el, NS_HINTS, "no-copy") == NULL &&
           xml_element_child(el, NS_CARBONS, "received") == NULL &&
           xml_element_child(el, NS_CARBONS, "sent") == NULL;
}

/* A sent copy carries the sender's archive id (`sid`, "" for none), never
 * one the recipient's archive gave (XEP-0313 §3.2). */
static void sent_sid(xml_tree_t *tr, xml_node_t *m, const char *by,
                     const char *sid)
{
    for (xml_node_t *ch = m->children, *next; ch != NULL; ch = next) {
        next = ch->next;
        if (ch->kind == XML_NODE_ELEMENT && ch->ns != NULL &&
            strcmp(ch->ns, NS_SID) == 0 && strcmp(ch->name, "stanza-id") == 0)
            xml_node_detach(ch);
    }
    xml_node_t *s =
        sid[0] != '\0' ? xml_element_new(tr, m, NS_SID, "stanza-id") : NULL;
    if (sid[0] != '\0' &&
        (s == NULL || xml_element_set_attr(tr, s, NULL, "by", by) < 0 ||
         xml_element_set_attr(tr, s, NULL, "id", sid) < 0))
        xalloc_fail(64);
}

/* <message from=bare to=full type=...><WRAP xmlns=carbons><forwarded>
 * original</forwarded></WRAP></message> to session t; `sid`: a sent
 * copy's archive id, or NULL for a received copy. */
static void send_copy(router_t *r, route_target_t *t, const xml_node_t *el,
                      const char *wrap, const char *sid)
{
    char bare[JID_FORMAT_BUF], full[JID_FORMAT_BUF + JID_PART_BUF];
    jid_format(&t->jid, true, bare, sizeof(bare));
    jid_format(&t->jid, false, full, sizeof(full));
    const char *type = xml_element_attr(el, NULL, "type");
    xml_tree_t *tr = xml_tree_new();
    xml_node_t *m =
        tr != NULL ? xml_element_new(tr, NULL, XML_NS_CLIENT, "message") : NULL;
    xml_node_t *w = m != NULL ? xml_element_new(tr, m, NS_CARBONS, wrap) : NULL;
    xml_node_t *f =
        w != NULL ? xml_element_new(tr, w, NS_FORWARD, "forwarded") : NULL;
    if (f == NULL || xml_element_set_attr(tr, m, NULL, "from", bare) < 0 ||
        xml_element_set_attr(tr, m, NULL, "to", full) < 0 ||
        (type != NULL && xml_element_set_attr(tr, m, NULL, "type", type) < 0))
        xalloc_fail(256);
    xml_node_t *orig = xml_node_copy(tr, f, el);
    if (orig == NULL)
        xalloc_fail(256);
    if (sid != NULL)
        sent_sid(tr, orig, bare, sid);
    route_stanza_t rs = ROUTE_STANZA(m, r);
    router_deliver(t, &rs);
    route_stanza_done(&rs);
    xml_tree_free(tr);
}

static module_result_t on_message(module_call_t *c)
{
    carbons_state_t *st = c->state;
    const xml_node_t *el = c->tree->root;
    if (st->count == 0 || !eligible(el))
        return MODULE_PASS;
    const char *type = xml_element_attr(el, NULL, "type");
    /* Received: the recipient's other enabled resources (a local
     * recipient; for a message with no 'to', the sender's own account). */
    const jid_t *to = c->to;
    jid_t own = {0};
    if (to == NULL && c->addressee == MODULE_TO_ACCOUNT &&
        jid_bare(&own, &c->from->jid) == JID_OK)
        to = &own;
    if (c->addressee != MODULE_TO_REMOTE && to != NULL)
        for (route_target_t *t = router_resources(c->router, to); t != NULL;
             t = t->next_resource)
            if (t != c->from && t->available && is_enabled(st, t) &&
                !im_message_reaches(c->router, to, t, type))
                send_copy(c->router, t, el, "received", NULL);
    /* Sent: the sender's other enabled resources, unless the recipient is
     * its own account (those have the received copy or the original). */
    bool to_self = to != NULL && jid_bare_equal(to, &c->from->jid);
    if (!c->from->remote && c->from->account != NULL && !to_self)
        for (route_target_t *t = router_resources(c->router, &c->from->jid);
             t != NULL; t = t->next_resource)
            if (t != c->from && t->available && is_enabled(st, t))
                send_copy(c->router, t, el, "sent", c->sender_sid);
    jid_clear(&own);
    return MODULE_PASS;
}

static const module_iq_handler_t carbons_iq[] = {
    {MODULE_IQ_SET, NS_CARBONS, MODULE_TO_BIT(MODULE_TO_ACCOUNT), carbons_set},
    {0, NULL, 0, NULL},
};

#define CARBONS_PRIORITY 30
static const module_hook_t carbons_hooks[] = {
    {MODULE_EV_MESSAGE_ACCOUNT, CARBONS_PRIORITY, on_message},
    {MODULE_EV_MESSAGE_BARE, CARBONS_PRIORITY, on_message},
    {MODULE_EV_MESSAGE_FULL, CARBONS_PRIORITY, on_message},
    {MODULE_EV_MESSAGE_REMOTE, CARBONS_PRIORITY, on_message},
    {MODULE_EV_SESSION_ENDED, CARBONS_PRIORITY, on_ended},
    {0, 0, NULL},
};

static const char *const carbons_features[] = {NS_CARBONS, NULL};

const module_desc_t module_carbons = {
    .name = "carbons",
    .default_on = true,
    .init = carbons_init,
    .fini = carbons_fini,
    .iq = carbons_iq,
    .hooks = carbons_hooks,
    .features = carbons_features,
};
