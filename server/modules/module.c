/* The module registry and dispatch (see module.h). */
#include "modules/module.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "base/base64.h"
#include "base/buf.h"
#include "base/xalloc.h"
#include "stream/stanza.h"

/* One enabled module. */
typedef struct module_instance {
    const module_desc_t *desc;
    const void *settings;
    void *state;
    bool started; /* init ran and accepted */
} module_instance_t;

typedef struct hook_entry {
    const module_hook_t *hook;
    module_instance_t *inst;
} hook_entry_t;

typedef struct iq_entry {
    const module_iq_handler_t *iq;
    module_instance_t *inst;
} iq_entry_t;

struct module_registry {
    module_instance_t *mods;
    size_t count;
    hook_entry_t *hooks[MODULE_EV_COUNT]; /* by priority, highest first */
    size_t hook_count[MODULE_EV_COUNT];
    iq_entry_t *iqs;
    size_t iq_count;
    stream_feature_t *features; /* ud = the owning module's state */
    size_t feature_count;
    /* The modules with a `blocked` callback. */
    const module_instance_t *blockers[8];
    size_t blocker_count;
};

void module_registry_free(module_registry_t *reg)
{
    if (reg == NULL)
        return;
    for (size_t i = reg->count; i-- > 0;) {
        module_instance_t *m = &reg->mods[i];
        if (m->started && m->desc->fini != NULL)
            m->desc->fini(m->state);
    }
    for (size_t e = 0; e < MODULE_EV_COUNT; e++)
        free(reg->hooks[e]);
    free(reg->iqs);
    free(reg->features);
    free(reg->mods);
    free(reg);
}

static int add_hooks(module_registry_t *reg, module_instance_t *m)
{
    for (const module_hook_t *h = m->desc->hooks; h != NULL && h->run != NULL;
         h++) {
        if ((unsigned)h->event >= MODULE_EV_COUNT)
            return -1;
        size_t n = reg->hook_count[h->event];
        hook_entry_t *v = realloc(reg->hooks[h->event], (n + 1) * sizeof(*v));
        if (v == NULL)
            return -1;
        /* Stable insertion: after every entry of the same or a higher
         * priority, so that equal priorities keep the list order. */
        size_t at = n;
        while (at > 0 && v[at - 1].hook->priority < h->priority) {
            v[at] = v[at - 1];
            at--;
        }
        v[at] = (hook_entry_t){h, m};
        reg->hooks[h->event] = v;
        reg->hook_count[h->event] = n + 1;
    }
    for (const module_iq_handler_t *q = m->desc->iq;
         q != NULL && q->handle != NULL; q++) {
        iq_entry_t *v = realloc(reg->iqs, (reg->iq_count + 1) * sizeof(*v));
        if (v == NULL)
            return -1;
        v[reg->iq_count++] = (iq_entry_t){q, m};
        reg->iqs = v;
    }
    return 0;
}

/* After init: the rows carry the instance state as their ud. */
static int add_stream_features(module_registry_t *reg, module_instance_t *m)
{
    const stream_feature_t *f = m->desc->stream_features;
    size_t n = 0;
    while (f != NULL && f[n].ns != NULL)
        n++;
    if (n == 0)
        return 0;
    stream_feature_t *v =
        realloc(reg->features, (reg->feature_count + n) * sizeof(*v));
    if (v == NULL)
        return -1;
    reg->features = v;
    for (size_t i = 0; i < n; i++) {
        v[reg->feature_count] = f[i];
        v[reg->feature_count].ud = m->state;
        reg->feature_count++;
    }
    return 0;
}

module_registry_t *module_registry_new(const module_desc_t *const *descs,
                                       size_t count, const bool *enabled,
                                       const void *const *settings,
                                       const server_config_t *cfg,
                                       store_t *store, const logger_t *log,
                                       char *err, size_t errlen)
{
    module_registry_t *reg = calloc(1, sizeof(*reg));
    if (reg == NULL ||
        (reg->mods = calloc(count + 1, sizeof(*reg->mods))) == NULL) {
        free(reg);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < count; i++) {
        const module_desc_t *d = descs[i];
        if (!d->core && (enabled == NULL || !enabled[i]))
            continue;
        module_instance_t *m = &reg->mods[reg->count++];
        m->desc = d;
        m->settings = settings != NULL && settings[i] != NULL
                          ? settings[i]
                          : d->settings_default;
        if (add_hooks(reg, m) < 0) {
            snprintf(err, errlen, "module %s: out of memory", d->name);
            goto fail;
        }
        bool ok = true;
        if (d->init != NULL) {
            module_env_t env = {cfg, log, m->settings, store};
            m->state = d->init(&env, &ok);
        }
        if (!ok) {
            snprintf(err, errlen, "module %s: could not start", d->name);
            goto fail;
        }
        m->started = true;
        if (add_stream_features(reg, m) < 0) {
            snprintf(err, errlen, "module %s: out of memory", d->name);
            goto fail;
        }
    }
    for (size_t i = 0; i < reg->count; i++) {
        const module_instance_t *m = &reg->mods[i];
        if (m->desc->blocked != NULL) {
            if (reg->blocker_count ==
                sizeof(reg->blockers) / sizeof(reg->blockers[0])) {
                snprintf(err, errlen, "more than %zu blocking modules",
                         reg->blocker_count);
                goto fail;
            }
            reg->blockers[reg->blocker_count++] = m;
        }
        if (m->desc->ready != NULL)
            m->desc->ready(m->state, reg);
    }
    return reg;

fail:
    module_registry_free(reg);
    return NULL;
}

size_t module_registry_count(const module_registry_t *reg)
{
    return reg != NULL ? reg->count : 0;
}

const module_desc_t *module_registry_desc(const module_registry_t *reg,
                                          size_t i)
{
    return reg != NULL && i < reg->count ? reg->mods[i].desc : NULL;
}

bool module_registry_has(const module_registry_t *reg, const char *name)
{
    for (size_t i = 0; i < module_registry_count(reg); i++)
        if (strcmp(reg->mods[i].desc->name, name) == 0)
            return true;
    return false;
}

const stream_feature_t *
module_registry_stream_features(const module_registry_t *reg, size_t *count)
{
    *count = reg != NULL ? reg->feature_count : 0;
    return reg != NULL ? reg->features : NULL;
}

module_result_t module_dispatch(const module_registry_t *reg, module_event_t ev,
                                module_call_t *c)
{
    if (reg == NULL || (unsigned)ev >= MODULE_EV_COUNT)
        return MODULE_PASS;
    c->modules = reg;
    c->event = ev;
    for (size_t i = 0; i < reg->hook_count[ev]; i++) {
        const hook_entry_t *h = &reg->hooks[ev][i];
        c->state = h->inst->state;
        c->settings = h->inst->settings;
        if (h->hook->run(c) == MODULE_HANDLED)
            return MODULE_HANDLED;
    }
    return MODULE_PASS;
}

module_result_t module_dispatch_iq(const module_registry_t *reg,
                                   module_call_t *c)
{
    if (reg == NULL || c->tree == NULL)
        return MODULE_PASS;
    const xml_node_t *iq = c->tree->root;
    const char *type = xml_element_attr(iq, NULL, "type");
    module_iq_type_t t;
    if (type != NULL && strcmp(type, "get") == 0)
        t = MODULE_IQ_GET;
    else if (type != NULL && strcmp(type, "set") == 0)
        t = MODULE_IQ_SET;
    else
        return MODULE_PASS;
    const xml_node_t *child = xml_element_child(iq, NULL, NULL);
    if (child == NULL || child->ns == NULL)
        return MODULE_PASS;
    c->modules = reg;
    for (size_t i = 0; i < reg->iq_count; i++) {
        const iq_entry_t *e = &reg->iqs[i];
        if (e->iq->type != t || strcmp(e->iq->ns, child->ns) != 0 ||
            (e->iq->to & MODULE_TO_BIT(c->addressee)) == 0)
            continue;
        c->state = e->inst->state;
        c->settings = e->inst->settings;
        if (e->iq->handle(c, child) == MODULE_HANDLED)
            return MODULE_HANDLED;
    }
    return MODULE_PASS;
}

int module_registry_disco_extend(const module_registry_t *reg, xml_tree_t *t,
                                 xml_node_t *query)
{
    for (size_t i = 0; reg != NULL && i < reg->count; i++) {
        const module_instance_t *m = &reg->mods[i];
        if (m->desc->disco_extend != NULL &&
            m->desc->disco_extend(m->state, m->settings, t, query) < 0)
            return -1;
    }
    return 0;
}

bool module_registry_entity_has(const module_registry_t *reg, const char *full,
                                const char *feature)
{
    for (size_t i = 0; reg != NULL && full != NULL && i < reg->count; i++) {
        const module_instance_t *m = &reg->mods[i];
        if (m->desc->entity_has != NULL &&
            m->desc->entity_has(m->state, full, feature))
            return true;
    }
    return false;
}

int module_registry_in_roster(const module_registry_t *reg, const char *owner,
                              const char *contact)
{
    for (size_t i = 0; reg != NULL && i < reg->count; i++) {
        const module_instance_t *m = &reg->mods[i];
        if (m->desc->in_roster != NULL)
            return m->desc->in_roster(m->state, owner, contact);
    }
    return -1;
}

bool module_registry_preauth_iq(const module_registry_t *reg,
                                module_preauth_t *p)
{
    for (size_t i = 0; reg != NULL && i < reg->count; i++) {
        const module_instance_t *m = &reg->mods[i];
        if (m->desc->preauth_iq != NULL &&
            m->desc->preauth_iq(m->state, m->settings, p))
            return true;
    }
    return false;
}

bool module_registry_has_preauth(const module_registry_t *reg)
{
    for (size_t i = 0; reg != NULL && i < reg->count; i++)
        if (reg->mods[i].desc->preauth_iq != NULL)
            return true;
    return false;
}

void module_preauth_answer(module_preauth_t *p, const xml_node_t *answer)
{
    p->answer(p, answer);
}

/* <iq type='result|error' id=...> answering p's request, from its domain. */
static xml_node_t *preauth_reply(module_preauth_t *p, xml_tree_t *t,
                                 const char *type)
{
    const char *id = xml_element_attr(p->iq->root, NULL, "id");
    xml_node_t *iq = xml_element_new(t, NULL, XML_NS_CLIENT, "iq");
    if (iq == NULL || xml_element_set_attr(t, iq, NULL, "type", type) < 0 ||
        (id != NULL && xml_element_set_attr(t, iq, NULL, "id", id) < 0) ||
        xml_element_set_attr(t, iq, NULL, "from", p->domain) < 0)
        xalloc_fail(256);
    return iq;
}

void module_preauth_result(module_preauth_t *p)
{
    xml_tree_t *t = xml_tree_new();
    if (t == NULL)
        xalloc_fail(256);
    xml_node_t *iq = preauth_reply(p, t, "result");
    module_preauth_answer(p, iq);
    xml_tree_free(t);
}

void module_preauth_error(module_preauth_t *p, const char *type,
                          const char *condition, const char *text)
{
    xml_tree_t *t = xml_tree_new();
    if (t == NULL)
        xalloc_fail(256);
    xml_node_t *iq = preauth_reply(p, t, "error");
    xml_node_t *err = xml_element_new(t, iq, XML_NS_CLIENT, "error");
    if (err == NULL || xml_element_set_attr(t, err, NULL, "type", type) < 0 ||
        xml_element_new(t, err, STREAM_NS_STANZAS, condition) == NULL)
        xalloc_fail(256);
    if (text != NULL) {
        xml_node_t *tx = xml_element_new(t, err, STREAM_NS_STANZAS, "text");
        if (tx == NULL || xml_element_add_text(t, tx, text, strlen(text)) < 0)
            xalloc_fail(256);
    }
    module_preauth_answer(p, iq);
    xml_tree_free(t);
}

int module_registry_server_info(const module_registry_t *reg, xml_tree_t *t,
                                xml_node_t *q)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < module_registry_count(reg); i++) {
        const module_desc_t *d = module_registry_desc(reg, i);
        for (const module_identity_t *id = d->identities;
             rc == 0 && id != NULL && id->category != NULL; id++) {
            xml_node_t *e = xml_element_new(t, q, q->ns, "identity");
            if (e == NULL)
                return -1;
            rc |= xml_element_set_attr(t, e, NULL, "category", id->category);
            rc |= xml_element_set_attr(t, e, NULL, "type", id->type);
            if (id->name != NULL)
                rc |= xml_element_set_attr(t, e, NULL, "name", id->name);
        }
    }
    for (size_t i = 0; rc == 0 && i < module_registry_count(reg); i++) {
        const module_desc_t *d = module_registry_desc(reg, i);
        for (const char *const *f = d->features;
             rc == 0 && f != NULL && *f != NULL; f++) {
            xml_node_t *e = xml_element_new(t, q, q->ns, "feature");
            if (e == NULL)
                return -1;
            rc |= xml_element_set_attr(t, e, NULL, "var", *f);
        }
    }
    if (rc == 0)
        rc = module_registry_disco_extend(reg, t, q);
    return rc;
}

bool module_registry_blocked(const module_registry_t *reg, const char *from,
                             const jid_t *to)
{
    /* Asked for every presence a broadcast delivers: only the modules
     * that can block are looked at (usually one). */
    for (size_t i = 0; reg != NULL && from != NULL && i < reg->blocker_count;
         i++) {
        const module_instance_t *m = reg->blockers[i];
        if (m->desc->blocked(m->state, from, to))
            return true;
    }
    return false;
}

module_event_t module_event_for(const char *name, module_addressee_t a)
{
    module_event_t base = MODULE_EV_IQ_ACCOUNT;
    if (strcmp(name, "message") == 0)
        base = MODULE_EV_MESSAGE_ACCOUNT;
    else if (strcmp(name, "presence") == 0)
        base = MODULE_EV_PRESENCE_ACCOUNT;
    return (module_event_t)(base + (int)a);
}

/* ------------------------------------------------------------ replies */

xml_node_t *module_iq_result(const module_call_t *c, xml_tree_t **out)
{
    const xml_node_t *iq = c->tree->root;
    xml_tree_t *t = xml_tree_new();
    xml_node_t *e = t != NULL ? xml_element_new(t, NULL, iq->ns, "iq") : NULL;
    if (e == NULL) {
        xml_tree_free(t);
        return NULL;
    }
    const char *id = xml_element_attr(iq, NULL, "id");
    const char *to = xml_element_attr(iq, NULL, "to");
    const char *from = xml_element_attr(iq, NULL, "from");
    int rc = xml_element_set_attr(t, e, NULL, "type", "result");
    if (id != NULL)
        rc |= xml_element_set_attr(t, e, NULL, "id", id);
    /* RFC 6120 §8.1.2.1: the reply comes from the entity addressed; an IQ
     * with no 'to' was addressed to the account, and its reply carries no
     * 'from' (the client knows its own account). */
    if (to != NULL)
        rc |= xml_element_set_attr(t, e, NULL, "from", to);
    if (from != NULL)
        rc |= xml_element_set_attr(t, e, NULL, "to", from);
    if (rc != 0) {
        xml_tree_free(t);
        return NULL;
    }
    *out = t;
    return e;
}

void module_send(const module_call_t *c, xml_tree_t *t)
{
    if (t == NULL)
        return;
    route_stanza_t st = ROUTE_STANZA(t->root, c->router);
    router_deliver(c->from, &st);
    route_stanza_done(&st);
    xml_tree_free(t);
}

void module_reply_error(const module_call_t *c, const char *type,
                        const char *condition)
{
    router_reply_error(c->from, c->tree->root, type, condition);
}

/* ------------------------------------------------------- later replies */

struct module_later {
    router_t *router;
    xml_tree_t *tree; /* a copy of the stanza */
    bool remote;      /* from another server */
    bool held;
    bool for_account; /* addressed to the sender's own account */
    jid_t sender;     /* local: the session, found again with conn */
    unsigned long conn;
    char *node, *domain, *sender_s;
};

static char *dup_or_empty(const char *s, size_t len)
{
    char *d = xmalloc(len + 1);
    if (len > 0)
        memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

module_later_t *module_later_new(const module_call_t *c)
{
    module_later_t *l = xcalloc(1, sizeof(*l));
    l->router = c->router;
    l->tree = xml_tree_new();
    if (l->tree == NULL || xml_node_copy(l->tree, NULL, c->tree->root) == NULL)
        xalloc_fail(256);
    l->remote = c->from->remote;
    l->for_account = c->addressee == MODULE_TO_ACCOUNT;
    const jid_t *acct = c->to != NULL && c->to->node != NULL ? c->to
                        : c->addressee == MODULE_TO_ACCOUNT  ? &c->from->jid
                                                             : NULL;
    l->node = acct != NULL ? dup_or_empty(acct->node, acct->node_len)
                           : dup_or_empty("", 0);
    l->domain = acct != NULL ? dup_or_empty(acct->domain, acct->domain_len)
                             : dup_or_empty("", 0);
    char full[JID_FORMAT_BUF];
    full[0] = '\0';
    if (c->from->jid.domain != NULL)
        jid_format(&c->from->jid, false, full, sizeof(full));
    l->sender_s = dup_or_empty(full, strlen(full));
    /* A local session (not the router's own sender, which has no
     * account and is never unbound) is held and found again later. */
    if (!l->remote && c->from->account != NULL) {
        if (jid_copy(&l->sender, &c->from->jid) != JID_OK)
            xalloc_fail(sizeof(l->sender));
        l->conn = c->from->conn;
        router_hold(c->router, c->from);
        l->held = true;
    }
    return l;
}

const xml_node_t *module_later_stanza(const module_later_t *l)
{
    return l->tree->root;
}

const char *module_later_node(const module_later_t *l)
{
    return l->node;
}

const char *module_later_domain(const module_later_t *l)
{
    return l->domain;
}

bool module_later_for_account(const module_later_t *l)
{
    return l->for_account;
}

const char *module_later_sender(const module_later_t *l)
{
    return l->sender_s;
}

xml_node_t *module_later_result(module_later_t *l, xml_tree_t **out)
{
    module_call_t c = {.tree = l->tree};
    return module_iq_result(&c, out);
}

static void later_free(module_later_t *l)
{
    if (l->held) {
        route_target_t *t = router_find_conn(l->router, &l->sender, l->conn);
        if (t != NULL)
            router_release(l->router, t);
    }
    jid_clear(&l->sender);
    xml_tree_free(l->tree);
    free(l->node);
    free(l->domain);
    free(l->sender_s);
    free(l);
}

void module_later_deliver(module_later_t *l, const xml_node_t *el)
{
    route_target_t *to = l->held && !l->remote
                             ? router_find_conn(l->router, &l->sender, l->conn)
                             : NULL;
    if (to == NULL)
        return;
    route_stanza_t st = ROUTE_STANZA(el, l->router);
    router_deliver(to, &st);
    route_stanza_done(&st);
}

void module_later_send(module_later_t *l, xml_tree_t *t)
{
    if (t != NULL && l->remote) {
        /* Over s2s both addresses are required (RFC 6120 §8.1.1.1). */
        if (xml_element_attr(t->root, NULL, "from") == NULL &&
            xml_element_set_attr(t, t->root, NULL, "from", l->domain) < 0)
            xalloc_fail(256);
        router_send_remote(l->router, t);
    } else if (t != NULL) {
        route_target_t *to =
            l->held ? router_find_conn(l->router, &l->sender, l->conn) : NULL;
        if (to != NULL) {
            route_stanza_t st = ROUTE_STANZA(t->root, l->router);
            router_deliver(to, &st);
            route_stanza_done(&st);
        }
        xml_tree_free(t);
    }
    later_free(l);
}

void module_later_error(module_later_t *l, const char *type,
                        const char *condition)
{
    if (l->remote) {
        router_reply_error_remote(l->router, l->tree->root, type, condition);
    } else if (l->held) {
        route_target_t *to = router_find_conn(l->router, &l->sender, l->conn);
        if (to != NULL)
            router_reply_error(to, l->tree->root, type, condition);
    }
    later_free(l);
}

/* ------------------------------------------------------- stored XML */

typedef struct parse_into {
    xml_tree_t *t;
    xml_node_t *parent;
} parse_into_t;

static void parse_header(void *ud, xml_tree_t *header)
{
    (void)ud;
    xml_tree_free(header);
}

static void parse_element(void *ud, xml_tree_t *el)
{
    parse_into_t *p = ud;
    if (xml_node_copy(p->t, p->parent, el->root) == NULL)
        xalloc_fail(256);
    xml_tree_free(el);
}

static void parse_end(void *ud)
{
    (void)ud;
}

int module_parse_into(xml_tree_t *t, xml_node_t *parent, const char *data,
                      size_t len)
{
    static const xml_parser_cbs_t cbs = {parse_header, parse_element,
                                         parse_end};
    static const char header[] =
        "<stream:stream xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
    parse_into_t p = {t, parent};
    /* What was stored came through the stanza limits in force then. */
    xml_parser_opts_t o = {.content_ns = NULL};
    xml_limits_default(&o.limits);
    o.limits.max_element_size = len + sizeof(header) + 1024;
    o.limits.max_depth = 1024;
    o.limits.max_attrs = 1024;
    xml_parser_t *ps = xml_parser_new(&o, &cbs, &p);
    if (ps == NULL)
        xalloc_fail(sizeof(header));
    int rc = xml_parser_feed(ps, header, sizeof(header) - 1) == XML_OK &&
                     xml_parser_feed(ps, data, len) == XML_OK
                 ? 0
                 : -1;
    xml_parser_free(ps);
    return rc;
}

/* ------------------------------------------------------- XEP-0115 ver */

#define NS_DATA "jabber:x:data"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* By the part before the first "<" (a field's var, a form's FORM_TYPE),
 * then by the rest. */
static int cmp_key(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    size_t nx = strcspn(x, "<"), ny = strcspn(y, "<");
    int c = strncmp(x, y, nx < ny ? nx : ny);
    if (c != 0 || nx == ny)
        return c != 0 ? c : strcmp(x + nx, y + ny);
    return nx < ny ? -1 : 1;
}

/* Sorts v[0..n) and appends each to b, followed by "<" unless the
 * strings end with theirs already (`ended`); -1 on a duplicate when
 * `unique`. */
static int append_sorted(buf_t *b, char **v, size_t n, bool unique, bool ended)
{
    if (n > 1)
        qsort(v, n, sizeof(*v), ended ? cmp_key : cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (unique && i > 0 && strcmp(v[i - 1], v[i]) == 0)
            return -1;
        if (buf_append_str(b, v[i]) < 0 ||
            (!ended && buf_append_str(b, "<") < 0))
            xalloc_fail(64);
    }
    return 0;
}

/* A growable list of strings, freed with list_free. */
typedef struct strlist {
    char **v;
    size_t n, cap;
} strlist_t;

static void list_push(strlist_t *l, char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap != 0 ? l->cap * 2 : 8;
        l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
    }
    l->v[l->n++] = s;
}

static void list_free(strlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static char *joined(const char *a, const char *b, const char *c, const char *d)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + strlen(d) + 4;
    char *s = xmalloc(n);
    snprintf(s, n, "%s/%s/%s/%s", a, b, c, d);
    return s;
}

/* The FORM_TYPE of a form, or NULL (§5.4: a form without a hidden
 * FORM_TYPE is left out). */
static const char *form_type(const xml_node_t *x)
{
    for (const xml_node_t *f = xml_element_child(x, NS_DATA, "field");
         f != NULL; f = xml_element_next(f, NS_DATA, "field")) {
        const char *var = xml_element_attr(f, NULL, "var");
        const char *type = xml_element_attr(f, NULL, "type");
        if (var == NULL || strcmp(var, "FORM_TYPE") != 0)
            continue;
        if (type == NULL || strcmp(type, "hidden") != 0)
            return NULL;
        const xml_node_t *v = xml_element_child(f, NS_DATA, "value");
        return v != NULL && v->children != NULL &&
                       v->children->kind == XML_NODE_TEXT
                   ? v->children->text
                   : NULL;
    }
    return NULL;
}

/* The text of a <value/> (its first text child; "" when empty). */
static const char *value_text(const xml_node_t *v)
{
    return v->children != NULL && v->children->kind == XML_NODE_TEXT
               ? v->children->text
               : "";
}

int module_caps_ver(const xml_node_t *query, char *out, size_t size)
{
    buf_t b = BUF_INIT;
    strlist_t ids = {0}, feats = {0}, forms = {0};
    int rc = 0;
    const char *ns = query->ns;
    for (const xml_node_t *e = xml_element_child(query, ns, "identity");
         e != NULL; e = xml_element_next(e, ns, "identity")) {
        const char *cat = xml_element_attr(e, NULL, "category");
        const char *type = xml_element_attr(e, NULL, "type");
        const char *lang = xml_element_attr(e, XML_NS_XML, "lang");
        const char *name = xml_element_attr(e, NULL, "name");
        list_push(&ids,
                  joined(cat != NULL ? cat : "", type != NULL ? type : "",
                         lang != NULL ? lang : "", name != NULL ? name : ""));
    }
    for (const xml_node_t *e = xml_element_child(query, ns, "feature");
         e != NULL; e = xml_element_next(e, ns, "feature")) {
        const char *var = xml_element_attr(e, NULL, "var");
        list_push(&feats, xstrdup(var != NULL ? var : ""));
    }
    rc |= append_sorted(&b, ids.v, ids.n, true, false);
    rc |= append_sorted(&b, feats.v, feats.n, true, false);
    /* Forms by FORM_TYPE; each: FORM_TYPE<, then its fields by var, each
     * var< and its values sorted, value<. */
    for (const xml_node_t *x = xml_element_child(query, NS_DATA, "x");
         x != NULL; x = xml_element_next(x, NS_DATA, "x")) {
        const char *ft = form_type(x);
        if (ft == NULL)
            continue;
        buf_t fb = BUF_INIT;
        strlist_t fields = {0};
        if (buf_append_str(&fb, ft) < 0 || buf_append_str(&fb, "<") < 0)
            xalloc_fail(64);
        for (const xml_node_t *f = xml_element_child(x, NS_DATA, "field");
             f != NULL; f = xml_element_next(f, NS_DATA, "field")) {
            const char *var = xml_element_attr(f, NULL, "var");
            if (var == NULL || strcmp(var, "FORM_TYPE") == 0)
                continue;
            buf_t vb = BUF_INIT;
            strlist_t vals = {0};
            if (buf_append_str(&vb, var) < 0 || buf_append_str(&vb, "<") < 0)
                xalloc_fail(64);
            for (const xml_node_t *v = xml_element_child(f, NS_DATA, "value");
                 v != NULL; v = xml_element_next(v, NS_DATA, "value"))
                list_push(&vals, xstrdup(value_text(v)));
            append_sorted(&vb, vals.v, vals.n, false, false);
            list_free(&vals);
            list_push(&fields, vb.data != NULL ? vb.data : xstrdup(""));
        }
        append_sorted(&fb, fields.v, fields.n, false, true);
        list_free(&fields);
        list_push(&forms, fb.data);
    }
    /* Two forms of one FORM_TYPE make the answer invalid (§5.4); sorted,
     * they are neighbours sharing the "FORM_TYPE<" prefix. */
    if (forms.n > 1)
        qsort(forms.v, forms.n, sizeof(*forms.v), cmp_key);
    for (size_t i = 1; i < forms.n; i++) {
        size_t k = strcspn(forms.v[i], "<");
        if (strncmp(forms.v[i - 1], forms.v[i], k + 1) == 0)
            rc = -1;
    }
    for (size_t i = 0; i < forms.n; i++)
        if (buf_append_str(&b, forms.v[i]) < 0)
            xalloc_fail(64);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (rc == 0 && (EVP_Digest(b.data != NULL ? b.data : "", b.len, md, &mdlen,
                               EVP_sha1(), NULL) != 1 ||
                    base64_encode(md, mdlen, BASE64_STD, out, size) < 0))
        rc = -1;
    list_free(&ids);
    list_free(&feats);
    list_free(&forms);
    buf_free(&b);
    return rc;
}

void module_later_error_app(module_later_t *l, const char *type,
                            const char *condition, const char *app_ns,
                            const char *app_name)
{
    xml_tree_t *t = stanza_error_reply(l->tree->root, type, condition, NULL);
    xml_node_t *err =
        t != NULL ? xml_element_child(t->root, l->tree->root->ns, "error")
                  : NULL;
    if (t != NULL &&
        (err == NULL || xml_element_new(t, err, app_ns, app_name) == NULL))
        xalloc_fail(256);
    module_later_send(l, t);
}

size_t module_str_hash(const char *s)
{
    size_t h = 5381;
    for (; *s != '\0'; s++)
        h = h * 33 + (unsigned char)*s;
    return h;
}

bool module_split_bare(const char *bare, char *node, size_t size,
                       const char **domain)
{
    const char *at = strchr(bare, '@');
    if (at == NULL)
        return false;
    snprintf(node, size, "%.*s", (int)(at - bare), bare);
    *domain = at + 1;
    return true;
}

bool module_later_stored(module_later_t *l, int err)
{
    if (err != STORE_OK) {
        module_later_error(l, "wait", "internal-server-error");
        return false;
    }
    xml_tree_t *t;
    if (module_later_result(l, &t) == NULL)
        xalloc_fail(256);
    module_later_send(l, t);
    return true;
}

xml_tree_t *module_parse_doc(const char *data, size_t len)
{
    xml_tree_t *t = xml_tree_new();
    xml_node_t *holder = t != NULL ? xml_element_new(t, NULL, NULL, "x") : NULL;
    if (holder == NULL)
        xalloc_fail(64);
    xml_tree_t *doc = NULL;
    /* module_parse_into adds elements only. */
    if (module_parse_into(t, holder, data, len) == 0 &&
        holder->children != NULL) {
        doc = xml_tree_new();
        if (doc == NULL || xml_node_copy(doc, NULL, holder->children) == NULL)
            xalloc_fail(64);
    }
    xml_tree_free(t);
    return doc;
}

/* ------------------------------------------------------------ datetime */

/* n decimal digits at p, or -1. */
static int dt_digits(const char *p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

bool module_datetime_parse(const char *s, int64_t *ms)
{
    /* Every character is looked at in order, so a short string stops at
     * its NUL, which matches no pattern character. */
    static const char pattern[] = "dddd-dd-ddTdd:dd:dd";
    for (size_t i = 0; i < sizeof(pattern) - 1; i++)
        if (pattern[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != pattern[i])
            return false;
    int year = dt_digits(s, 4), mon = dt_digits(s + 5, 2),
        day = dt_digits(s + 8, 2), hour = dt_digits(s + 11, 2),
        min = dt_digits(s + 14, 2), sec = dt_digits(s + 17, 2);
    if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 ||
        sec > 60)
        return false;
    const char *p = s + 19;
    int frac = 0;
    if (*p == '.') {
        int n = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, n++)
            if (n < 3)
                frac = frac * 10 + (*p - '0');
        if (n == 0)
            return false;
        for (; n < 3; n++)
            frac *= 10;
    }
    long offset = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh = dt_digits(p + 1, 2);
        int om = oh >= 0 && p[3] == ':' ? dt_digits(p + 4, 2) : -1;
        if (oh < 0 || om < 0 || oh > 23 || om > 59)
            return false;
        offset = (oh * 60L + om) * 60 * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return false;
    }
    if (*p != '\0')
        return false;
    struct tm tm = {.tm_year = year - 1900,
                    .tm_mon = mon - 1,
                    .tm_mday = day,
                    .tm_hour = hour,
                    .tm_min = min,
                    .tm_sec = sec};
    *ms = ((int64_t)timegm(&tm) - offset) * 1000 + frac;
    return true;
}

void module_datetime_format(int64_t ms, char *out, size_t len)
{
    int64_t sec = ms / 1000, rem = ms % 1000;
    if (rem < 0) {
        rem += 1000;
        sec--;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL) {
        snprintf(out, len, "1970-01-01T00:00:00.000Z");
        return;
    }
    snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)rem);
}
