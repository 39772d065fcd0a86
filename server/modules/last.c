/* XEP-0012 Last Activity, the server's part:
 *  - to the server's domain: seconds since starlingd started (§5);
 *  - to an account's bare JID (§3, answered by the server): seconds='0'
 *    while the account has an available resource; otherwise the seconds
 *    since it last went unavailable, with the status of that unavailable
 *    presence as text — only for the account itself and for contacts the
 *    account's roster says may see its presence (subscription from or
 *    both), everyone else gets forbidden; an account that does not exist
 *    gets service-unavailable (RFC 6121 §8.5.1), one that never went
 *    offline item-not-found.
 * IQs to a full JID reach the client (its idle time, §4). What went
 * offline when is kept in the store (kind "last", key ""), written when
 * an account's last available resource sends unavailable presence or its
 * connection ends. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/xalloc.h"
#include "modules/modules.h"

#define NS_LAST "jabber:iq:last"

typedef struct last_state {
    store_t *store;
    time_t started;
} last_state_t;

static void *last_init(const module_env_t *env, bool *ok)
{
    last_state_t *st = xcalloc(1, sizeof(*st));
    st->store = env->store;
    st->started = time(NULL);
    *ok = true;
    return st;
}

static void last_fini(void *state)
{
    free(state);
}

/* <query xmlns='jabber:iq:last' seconds='n'>text</query> in a result. */
static void add_query(xml_tree_t *t, xml_node_t *iq, long long seconds,
                      const char *text, size_t len)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", seconds < 0 ? 0 : seconds);
    xml_node_t *q = xml_element_new(t, iq, NS_LAST, "query");
    if (q == NULL || xml_element_set_attr(t, q, NULL, "seconds", buf) < 0 ||
        (len > 0 && xml_element_add_text(t, q, text, len) < 0))
        xalloc_fail(256);
}

static module_result_t last_server(module_call_t *c, const xml_node_t *q)
{
    last_state_t *st = c->state;
    (void)q;
    xml_tree_t *t;
    xml_node_t *iq = module_iq_result(c, &t);
    if (iq == NULL)
        return MODULE_PASS;
    add_query(t, iq, (long long)(time(NULL) - st->started), NULL, 0);
    module_send(c, t);
    return MODULE_HANDLED;
}

/* --- an account's last activity --- */

typedef struct last_req {
    module_later_t *l;
    last_state_t *st;
    router_t *router;
    char *requester; /* bare JID of the sender */
} last_req_t;

static void req_free(last_req_t *r)
{
    free(r->requester);
    free(r);
}

static void on_last(void *ud, int err, const store_data_item_t *items,
                    size_t count)
{
    last_req_t *r = ud;
    if (err != STORE_OK) {
        module_later_error(r->l, "wait", "internal-server-error");
    } else if (count == 0) {
        module_later_error(r->l, "cancel", "item-not-found");
    } else {
        xml_tree_t *t;
        xml_node_t *iq = module_later_result(r->l, &t);
        if (iq == NULL)
            xalloc_fail(256);
        add_query(t, iq, (long long)(time(NULL) - items[0].updated),
                  items[0].value, items[0].len);
        module_later_send(r->l, t);
    }
    req_free(r);
}

/* Authorized: online now, or what the store says. */
static void answer(last_req_t *r)
{
    char bare[JID_FORMAT_BUF];
    snprintf(bare, sizeof(bare), "%s@%s", module_later_node(r->l),
             module_later_domain(r->l));
    for (route_target_t *t = router_resources_bare(r->router, bare); t != NULL;
         t = t->next_resource) {
        if (!t->available)
            continue;
        xml_tree_t *res;
        xml_node_t *iq = module_later_result(r->l, &res);
        if (iq == NULL)
            xalloc_fail(256);
        add_query(res, iq, 0, NULL, 0);
        module_later_send(r->l, res);
        req_free(r);
        return;
    }
    store_data_get(r->st->store, module_later_domain(r->l),
                   module_later_node(r->l), "last", "", on_last, r);
}

static void on_roster(void *ud, int err, const store_roster_t *ros)
{
    last_req_t *r = ud;
    if (err != STORE_OK) {
        module_later_error(r->l, "cancel",
                           err == STORE_ERR_NOT_FOUND
                               ? "service-unavailable"
                               : "internal-server-error");
        req_free(r);
        return;
    }
    for (size_t i = 0; i < ros->count; i++)
        if (strcmp(ros->items[i].contact, r->requester) == 0 &&
            (ros->items[i].subscription & STORE_SUB_FROM) != 0) {
            answer(r);
            return;
        }
    module_later_error(r->l, "auth", "forbidden");
    req_free(r);
}

static module_result_t last_account(module_call_t *c, const xml_node_t *q)
{
    last_state_t *st = c->state;
    (void)q;
    if (st->store == NULL) {
        module_reply_error(c, "cancel", "service-unavailable");
        return MODULE_HANDLED;
    }
    char bare[JID_FORMAT_BUF];
    if (jid_format(&c->from->jid, true, bare, sizeof(bare)) < 0) {
        module_reply_error(c, "modify", "bad-request");
        return MODULE_HANDLED;
    }
    last_req_t *r = xcalloc(1, sizeof(*r));
    r->st = st;
    r->router = c->router;
    r->requester = xstrdup(bare);
    r->l = module_later_new(c);
    if (c->addressee == MODULE_TO_ACCOUNT)
        answer(r);
    else
        store_roster_get(st->store, module_later_domain(r->l),
                         module_later_node(r->l), on_roster, r);
    return MODULE_HANDLED;
}

/* --- recording --- */

/* Whether another resource of t's account is available. */
static bool others_available(router_t *r, const route_target_t *t)
{
    for (route_target_t *o = router_resources(r, &t->jid); o != NULL;
         o = o->next_resource)
        if (o != t && o->available)
            return true;
    return false;
}

static void record(last_state_t *st, const route_target_t *t,
                   const char *status, size_t len)
{
    char node[JID_FORMAT_BUF], domain[JID_FORMAT_BUF];
    snprintf(node, sizeof(node), "%.*s", (int)t->jid.node_len, t->jid.node);
    snprintf(domain, sizeof(domain), "%.*s", (int)t->jid.domain_len,
             t->jid.domain);
    store_data_put(st->store, domain, node, "last", "", status, len, NULL,
                   NULL);
}

/* The session's own unavailable presence (before the IM rules handle it,
 * which marks it unavailable). */
static module_result_t on_presence(module_call_t *c)
{
    last_state_t *st = c->state;
    const char *type = xml_element_attr(c->tree->root, NULL, "type");
    if (st->store == NULL || c->from->remote || c->from->account == NULL ||
        type == NULL || strcmp(type, "unavailable") != 0 ||
        !c->from->available || others_available(c->router, c->from))
        return MODULE_PASS;
    const xml_node_t *s =
        xml_element_child(c->tree->root, XML_NS_CLIENT, "status");
    const char *text = s != NULL ? xml_element_text(c->tree, s) : NULL;
    record(st, c->from, text != NULL ? text : "",
           text != NULL ? strlen(text) : 0);
    return MODULE_PASS;
}

/* A connection that ended while available (no unavailable presence). */
static module_result_t on_ended(module_call_t *c)
{
    last_state_t *st = c->state;
    if (st->store != NULL && c->from->available &&
        !others_available(c->router, c->from))
        record(st, c->from, "", 0);
    return MODULE_PASS;
}

static const module_iq_handler_t last_iq[] = {
    {MODULE_IQ_GET, NS_LAST, MODULE_TO_BIT(MODULE_TO_SERVER), last_server},
    {MODULE_IQ_GET, NS_LAST,
     MODULE_TO_BIT(MODULE_TO_ACCOUNT) | MODULE_TO_BIT(MODULE_TO_BARE),
     last_account},
    {0, NULL, 0, NULL},
};

static const module_hook_t last_hooks[] = {
    {MODULE_EV_PRESENCE_ACCOUNT, 20, on_presence},
    {MODULE_EV_SESSION_ENDED, 20, on_ended},
    {0, 0, NULL},
};

static const char *const last_features[] = {NS_LAST, NULL};

const module_desc_t module_last = {
    .name = "last",
    .default_on = true,
    .init = last_init,
    .fini = last_fini,
    .iq = last_iq,
    .hooks = last_hooks,
    .features = last_features,
};
