/* XEP-0115 Entity Capabilities, the server's part:
 *  - its own caps in the stream features after authentication (§6.3):
 *    <c hash='sha-1' node='urn:starling:caps' ver=.../>, the ver computed
 *    once at start from the server's disco#info (disco.c answers the
 *    node#ver query);
 *  - the caps clients announce in their available presence — our own
 *    users' and other servers' users' presence to ours — kept per full
 *    JID; an unknown ver is asked for once with a disco#info query to the
 *    entity (from the server's domain, node#ver), and what comes back is
 *    kept by ver only when it hashes to that ver (§5.4), so that a lying
 *    client cannot poison what others' ver means. Other modules ask
 *    module_registry_entity_has() (PEP: "+notify").
 * Only sha-1 is understood (what every client sends); other hashes are
 * ignored, like entities without caps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/xalloc.h"
#include "modules/modules.h"

#define NS_CAPS       "http://jabber.org/protocol/caps"
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NBUCKETS      1024
/* Bounds: verified vers kept, queries in flight. */
#define MAX_VERS    4096
#define MAX_PENDING 256

/* A verified ver: its features, sorted. */
typedef struct ver_entry {
    struct ver_entry *next;
    char *ver;
    char **features;
    size_t n;
} ver_entry_t;

/* An entity (full JID) and the ver it announced. */
typedef struct entity {
    struct entity *next;
    char *jid;
    char *ver;
} entity_t;

/* A disco#info query in flight. */
typedef struct pending {
    struct pending *next;
    char id[32];
    char *ver;
    /* The session of ours that announced it (told once it is known), or
     * none (a remote entity): its JID and connection. */
    jid_t who;
    unsigned long conn;
    bool local;
} pending_t;

typedef struct caps_state {
    char ver[64]; /* the server's own */
    ver_entry_t *vers[NBUCKETS];
    size_t nvers;
    entity_t *entities[NBUCKETS];
    pending_t *pending;
    size_t npending;
    unsigned long next_id;
} caps_state_t;

static void pending_free(pending_t *p)
{
    jid_clear(&p->who);
    free(p->ver);
    free(p);
}

/* MODULE_EV_SESSION_CAPS for session t of ours. */
static void caps_known(module_call_t *c, route_target_t *t)
{
    if (!t->available)
        return;
    module_call_t e = {
        .router = c->router,
        .modules = c->modules,
        .log = c->log,
        .from = t,
        .addressee = MODULE_TO_ACCOUNT,
        .event = MODULE_EV_SESSION_CAPS,
    };
    module_dispatch(c->modules, MODULE_EV_SESSION_CAPS, &e);
}

static void *caps_init(const module_env_t *env, bool *ok)
{
    (void)env;
    *ok = true;
    return xcalloc(1, sizeof(caps_state_t));
}

static void caps_fini(void *state)
{
    caps_state_t *st = state;
    for (size_t i = 0; i < NBUCKETS; i++) {
        while (st->vers[i] != NULL) {
            ver_entry_t *v = st->vers[i];
            st->vers[i] = v->next;
            for (size_t k = 0; k < v->n; k++)
                free(v->features[k]);
            free(v->features);
            free(v->ver);
            free(v);
        }
        while (st->entities[i] != NULL) {
            entity_t *e = st->entities[i];
            st->entities[i] = e->next;
            free(e->jid);
            free(e->ver);
            free(e);
        }
    }
    while (st->pending != NULL) {
        pending_t *p = st->pending;
        st->pending = p->next;
        pending_free(p);
    }
    free(st);
}

/* The server's own ver, from its disco#info as disco.c answers it. */
static void caps_ready(void *state, const module_registry_t *reg)
{
    caps_state_t *st = state;
    xml_tree_t *t = xml_tree_new();
    xml_node_t *q =
        t != NULL ? xml_element_new(t, NULL, NS_DISCO_INFO, "query") : NULL;
    if (q == NULL || module_registry_server_info(reg, t, q) < 0 ||
        module_caps_ver(q, st->ver, sizeof(st->ver)) < 0)
        st->ver[0] = '\0';
    xml_tree_free(t);
}

static int caps_offer(stream_t *s, const stream_feature_t *f, buf_t *out)
{
    const caps_state_t *st = f->ud;
    (void)s;
    if (st->ver[0] == '\0')
        return 1;
    return buf_append_str(out, "<c xmlns='" NS_CAPS
                               "' hash='sha-1' node='" MODULE_CAPS_NODE
                               "' ver='") < 0 ||
                   buf_append_str(out, st->ver) < 0 ||
                   buf_append_str(out, "'/>") < 0
               ? -1
               : 0;
}

static ver_entry_t *ver_find(caps_state_t *st, const char *ver)
{
    ver_entry_t *v = st->vers[module_str_hash(ver) % NBUCKETS];
    while (v != NULL && strcmp(v->ver, ver) != 0)
        v = v->next;
    return v;
}

static entity_t **entity_find(caps_state_t *st, const char *jid)
{
    entity_t **pp = &st->entities[module_str_hash(jid) % NBUCKETS];
    while (*pp != NULL && strcmp((*pp)->jid, jid) != 0)
        pp = &(*pp)->next;
    return pp;
}

static void forget(caps_state_t *st, const char *jid)
{
    entity_t **pp = entity_find(st, jid);
    if (*pp == NULL)
        return;
    entity_t *e = *pp;
    *pp = e->next;
    free(e->jid);
    free(e->ver);
    free(e);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool caps_entity_has(void *state, const char *full, const char *feature)
{
    caps_state_t *st = state;
    entity_t *e = *entity_find(st, full);
    const ver_entry_t *v = e != NULL ? ver_find(st, e->ver) : NULL;
    return v != NULL && v->n > 0 &&
           bsearch(&feature, v->features, v->n, sizeof(*v->features),
                   cmp_str) != NULL;
}

/* Asks `jid` what `node#ver` means, from `domain` (ours). */
static void query(caps_state_t *st, module_call_t *c, const char *jid,
                  const char *domain, const char *node, const char *ver,
                  bool remote)
{
    for (pending_t *p = st->pending; p != NULL; p = p->next)
        if (strcmp(p->ver, ver) == 0)
            return; /* asked already */
    if (st->nvers >= MAX_VERS)
        return;
    /* A query never answered (the entity left) must not block the others
     * for ever: past the bound the oldest is given up. */
    if (st->npending >= MAX_PENDING) {
        pending_t **pp = &st->pending;
        while ((*pp)->next != NULL)
            pp = &(*pp)->next;
        pending_free(*pp);
        *pp = NULL;
        st->npending--;
    }
    pending_t *p = xcalloc(1, sizeof(*p));
    snprintf(p->id, sizeof(p->id), "caps-%lu", ++st->next_id);
    p->ver = xstrdup(ver);
    if (!remote) {
        if (jid_copy(&p->who, &c->from->jid) != JID_OK)
            xalloc_fail(sizeof(p->who));
        p->conn = c->from->conn;
        p->local = true;
    }
    p->next = st->pending;
    st->pending = p;
    st->npending++;
    buf_t nv = BUF_INIT;
    xml_tree_t *t = xml_tree_new();
    xml_node_t *iq =
        t != NULL ? xml_element_new(t, NULL, XML_NS_CLIENT, "iq") : NULL;
    xml_node_t *q =
        iq != NULL ? xml_element_new(t, iq, NS_DISCO_INFO, "query") : NULL;
    if (q == NULL || buf_append_str(&nv, node) < 0 ||
        buf_append_str(&nv, "#") < 0 || buf_append_str(&nv, ver) < 0 ||
        xml_element_set_attr(t, iq, NULL, "type", "get") < 0 ||
        xml_element_set_attr(t, iq, NULL, "id", p->id) < 0 ||
        xml_element_set_attr(t, iq, NULL, "from", domain) < 0 ||
        xml_element_set_attr(t, iq, NULL, "to", jid) < 0 ||
        xml_element_set_attr(t, q, NULL, "node", nv.data) < 0)
        xalloc_fail(256);
    buf_free(&nv);
    if (remote) {
        router_send_remote(c->router, t);
        return;
    }
    route_stanza_t rs = ROUTE_STANZA(iq, c->router);
    router_deliver(c->from, &rs);
    route_stanza_done(&rs);
    xml_tree_free(t);
}

/* An available presence with <c/> from c->from (a session of ours or a
 * remote entity), or an unavailable one. */
static module_result_t on_presence(module_call_t *c)
{
    caps_state_t *st = c->state;
    const xml_node_t *el = c->tree->root;
    const char *type = xml_element_attr(el, NULL, "type");
    if (c->from->jid.resource == NULL ||
        (!c->from->remote && c->from->account == NULL))
        return MODULE_PASS;
    char full[JID_FORMAT_BUF + JID_PART_BUF];
    if (jid_format(&c->from->jid, false, full, sizeof(full)) < 0)
        return MODULE_PASS;
    if (type != NULL) {
        if (strcmp(type, "unavailable") == 0)
            forget(st, full);
        return MODULE_PASS;
    }
    const xml_node_t *cap = xml_element_child(el, NS_CAPS, "c");
    const char *hash_ =
        cap != NULL ? xml_element_attr(cap, NULL, "hash") : NULL;
    const char *node = cap != NULL ? xml_element_attr(cap, NULL, "node") : NULL;
    const char *ver = cap != NULL ? xml_element_attr(cap, NULL, "ver") : NULL;
    if (hash_ == NULL || strcmp(hash_, "sha-1") != 0 || node == NULL ||
        ver == NULL || strlen(ver) > 64) {
        forget(st, full);
        return MODULE_PASS;
    }
    entity_t **pp = entity_find(st, full);
    if (*pp == NULL) {
        entity_t *e = xcalloc(1, sizeof(*e));
        e->jid = xstrdup(full);
        *pp = e;
    }
    bool changed = (*pp)->ver == NULL || strcmp((*pp)->ver, ver) != 0;
    if (changed) {
        free((*pp)->ver);
        (*pp)->ver = xstrdup(ver);
    }
    if (ver_find(st, ver) != NULL) {
        /* A session already available changed its caps: tell now; an
         * initial presence is told at SESSION_AVAILABLE, once the IM
         * rules have made it available. */
        if (changed && !c->from->remote)
            caps_known(c, c->from);
    } else {
        char domain[JID_FORMAT_BUF];
        const jid_t *ours = c->from->remote ? c->to : &c->from->jid;
        if (ours == NULL)
            return MODULE_PASS;
        snprintf(domain, sizeof(domain), "%.*s", (int)ours->domain_len,
                 ours->domain);
        query(st, c, full, domain, node, ver, c->from->remote);
    }
    return MODULE_PASS;
}

/* The initial presence has been handled: its caps, if known, count. */
static module_result_t on_available(module_call_t *c)
{
    caps_state_t *st = c->state;
    char full[JID_FORMAT_BUF + JID_PART_BUF];
    if (jid_format(&c->from->jid, false, full, sizeof(full)) < 0)
        return MODULE_PASS;
    entity_t *e = *entity_find(st, full);
    if (e != NULL && ver_find(st, e->ver) != NULL)
        caps_known(c, c->from);
    return MODULE_PASS;
}

static module_result_t on_ended(module_call_t *c)
{
    char full[JID_FORMAT_BUF + JID_PART_BUF];
    if (jid_format(&c->from->jid, false, full, sizeof(full)) >= 0)
        forget(c->state, full);
    return MODULE_PASS;
}

/* The answer to one of our queries: kept when it hashes to the ver. */
static module_result_t on_iq(module_call_t *c)
{
    caps_state_t *st = c->state;
    const xml_node_t *el = c->tree->root;
    const char *id = xml_element_attr(el, NULL, "id");
    const char *type = xml_element_attr(el, NULL, "type");
    if (id == NULL || strncmp(id, "caps-", 5) != 0 || type == NULL ||
        (strcmp(type, "result") != 0 && strcmp(type, "error") != 0))
        return MODULE_PASS;
    pending_t **pp = &st->pending;
    while (*pp != NULL && strcmp((*pp)->id, id) != 0)
        pp = &(*pp)->next;
    if (*pp == NULL)
        return MODULE_HANDLED; /* not ours any more: consumed */
    pending_t *p = *pp;
    *pp = p->next;
    st->npending--;
    const xml_node_t *q = xml_element_child(el, NS_DISCO_INFO, "query");
    char ver[64];
    if (strcmp(type, "result") == 0 && q != NULL &&
        module_caps_ver(q, ver, sizeof(ver)) == 0 && strcmp(ver, p->ver) == 0 &&
        ver_find(st, ver) == NULL && st->nvers < MAX_VERS) {
        ver_entry_t *v = xcalloc(1, sizeof(*v));
        v->ver = xstrdup(ver);
        for (const xml_node_t *f =
                 xml_element_child(q, NS_DISCO_INFO, "feature");
             f != NULL; f = xml_element_next(f, NS_DISCO_INFO, "feature")) {
            const char *var = xml_element_attr(f, NULL, "var");
            if (var == NULL)
                continue;
            v->features =
                xreallocarray(v->features, v->n + 1, sizeof(*v->features));
            v->features[v->n++] = xstrdup(var);
        }
        if (v->n > 1)
            qsort(v->features, v->n, sizeof(*v->features), cmp_str);
        size_t h = module_str_hash(ver) % NBUCKETS;
        v->next = st->vers[h];
        st->vers[h] = v;
        st->nvers++;
        LOG(c->log, LOG_DEBUG, c->from->conn, "caps %s: %zu features", ver,
            v->n);
        route_target_t *t =
            p->local ? router_find_conn(c->router, &p->who, p->conn) : NULL;
        if (t != NULL)
            caps_known(c, t);
    } else {
        LOG(c->log, LOG_DEBUG, c->from->conn,
            "caps %s: the answer does not match; not kept", p->ver);
    }
    pending_free(p);
    return MODULE_HANDLED;
}

static const stream_feature_t caps_features_stream[] = {
    {NS_CAPS, "c", STREAM_FEAT_AFTER_AUTH, false, caps_offer, NULL, NULL},
    {NULL, NULL, 0, false, NULL, NULL, NULL},
};

/* Before the IM rules deliver the presence (and the broadcast). */
#define CAPS_PRIORITY 20
static const module_hook_t caps_hooks[] = {
    {MODULE_EV_PRESENCE_ACCOUNT, CAPS_PRIORITY, on_presence},
    {MODULE_EV_PRESENCE_BARE, CAPS_PRIORITY, on_presence},
    {MODULE_EV_PRESENCE_FULL, CAPS_PRIORITY, on_presence},
    {MODULE_EV_SESSION_ENDED, CAPS_PRIORITY, on_ended},
    {MODULE_EV_SESSION_AVAILABLE, CAPS_PRIORITY, on_available},
    {MODULE_EV_IQ_SERVER, CAPS_PRIORITY, on_iq},
    {0, 0, NULL},
};

static const char *const caps_features[] = {NS_CAPS, NULL};

const module_desc_t module_caps = {
    .name = "caps",
    .default_on = true,
    .init = caps_init,
    .fini = caps_fini,
    .hooks = caps_hooks,
    .features = caps_features,
    .stream_features = caps_features_stream,
    .ready = caps_ready,
    .entity_has = caps_entity_has,
};
