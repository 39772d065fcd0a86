/* XEP-0313 Message Archive Management (urn:xmpp:mam:2) for accounts, with
 * XEP-0359 stanza ids and XEP-0059 paging.
 *
 * Archiving: every 1:1 message with a body (chat or normal) that a local
 * account sends or receives goes into its archive (store group "archive")
 * — both archives when both parties are ours — unless it carries a
 * XEP-0334 no-store or no-permanent-store hint or the account's preference
 * says never. The copy the recipient gets carries <stanza-id by='its bare
 * JID' id='...'/> (XEP-0359; one a sender forged with that 'by' is
 * removed). A local sender is held until the archive has the message, so
 * that an answer or a XEP-0198 ack it gets afterwards means it is stored.
 *
 * Queries (§4): an IQ set to the account with optional filters in a data
 * form (with, start, end, before-id, after-id) and RSM (max, after,
 * before; an empty before is the last page). The results go to the asking
 * session as <result/> messages wrapping the stored message in a XEP-0297
 * <forwarded/> with its XEP-0203 delay, then the IQ result's <fin/> with
 * the first and last ids and complete='true' when the page reached the end
 * of what matches. Unknown ids: item-not-found. The form is answered to a
 * get. Preferences (§5): default always, never or roster (roster archives
 * as always does: the always/never lists are not kept — see README).
 * Retention: `mam.retention_days` (0: forever), applied at start and every
 * 1000 archived messages. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/rand.h"
#include "base/xalloc.h"
#include "modules/modules.h"

#define NS_MAM     "urn:xmpp:mam:2"
#define NS_SID     "urn:xmpp:sid:0"
#define NS_RSM     "http://jabber.org/protocol/rsm"
#define NS_DATA    "jabber:x:data"
#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_DELAY   "urn:xmpp:delay"
#define NS_HINTS   "urn:xmpp:hints"

enum { PAGE_DEFAULT = 50, PAGE_MAX = 250, EXPIRE_EVERY = 1000 };

typedef struct mam_settings {
    unsigned retention_days;
} mam_settings_t;

static const mam_settings_t mam_defaults = {.retention_days = 0};

static const config_field_t mam_fields[] = {
    {"retention_days", CONFIG_FIELD_UINT,
     offsetof(mam_settings_t, retention_days), 0, 36500},
    {NULL, 0, 0, 0, 0},
};

/* Accounts whose default is "never", loaded at start (few). */
typedef struct mam_state {
    store_t *store;
    const logger_t *log;
    unsigned retention_days;
    unsigned long archived;
    char **never;
    size_t nnever;
} mam_state_t;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void expire(mam_state_t *st)
{
    if (st->retention_days > 0 && st->store != NULL)
        store_archive_expire(st->store,
                             now_ms() - (int64_t)st->retention_days * 86400000,
                             NULL, NULL);
}

static bool never_has(const mam_state_t *st, const char *bare)
{
    for (size_t i = 0; i < st->nnever; i++)
        if (strcmp(st->never[i], bare) == 0)
            return true;
    return false;
}

static void never_set(mam_state_t *st, const char *bare, bool on)
{
    for (size_t i = 0; i < st->nnever; i++)
        if (strcmp(st->never[i], bare) == 0) {
            if (!on) {
                free(st->never[i]);
                st->never[i] = st->never[--st->nnever];
            }
            return;
        }
    if (on) {
        st->never =
            xreallocarray(st->never, st->nnever + 1, sizeof(*st->never));
        st->never[st->nnever++] = xstrdup(bare);
    }
}

static void on_prefs_loaded(void *ud, int err, const store_data_item_t *items,
                            size_t count)
{
    mam_state_t *st = ud;
    for (size_t i = 0; err == STORE_OK && i < count; i++)
        if (strcmp(items[i].value, "never") == 0) {
            char bare[JID_FORMAT_BUF];
            snprintf(bare, sizeof(bare), "%s@%s", items[i].node,
                     items[i].domain);
            never_set(st, bare, true);
        }
}

static void *mam_init(const module_env_t *env, bool *ok)
{
    const mam_settings_t *s = env->settings;
    mam_state_t *st = xcalloc(1, sizeof(*st));
    st->store = env->store;
    st->log = env->log;
    st->retention_days = s != NULL ? s->retention_days : 0;
    if (st->store != NULL) {
        store_data_all(st->store, "mam-prefs", on_prefs_loaded, st);
        expire(st);
    }
    *ok = true;
    return st;
}

static void mam_fini(void *state)
{
    mam_state_t *st = state;
    if (st == NULL)
        return;
    for (size_t i = 0; i < st->nnever; i++)
        free(st->never[i]);
    free(st->never);
    free(st);
}

/* ------------------------------------------------------------ archiving */

static bool archivable(const xml_node_t *el)
{
    const char *type = xml_element_attr(el, NULL, "type");
    if (type != NULL && strcmp(type, "chat") != 0 &&
        strcmp(type, "normal") != 0)
        return false;
    if (xml_element_child(el, NS_HINTS, "no-store") != NULL ||
        xml_element_child(el, NS_HINTS, "no-permanent-store") != NULL)
        return false;
    return xml_element_child(el, XML_NS_CLIENT, "body") != NULL;
}

typedef struct archive_job {
    router_t *router;
    /* The local sender, held until stored: found again by its full JID
     * and connection (it may have ended meanwhile; its holds went with
     * it). */
    bool held;
    jid_t sender;
    unsigned long conn;
    unsigned pending;
} archive_job_t;

static void on_archived(void *ud, int err)
{
    archive_job_t *j = ud;
    (void)err; /* a failed write is logged by the store */
    if (--j->pending > 0)
        return;
    if (j->held) {
        route_target_t *t = router_find_conn(j->router, &j->sender, j->conn);
        if (t != NULL)
            router_release(j->router, t);
        jid_clear(&j->sender);
    }
    free(j);
}

/* Writes el into the archive of `owner` (bare). */
static void archive_one(mam_state_t *st, archive_job_t *j, const char *owner,
                        const jid_t *peer, bool outgoing, const char *sid,
                        const xml_node_t *el)
{
    char peer_bare[JID_FORMAT_BUF];
    if (jid_format(peer, true, peer_bare, sizeof(peer_bare)) < 0)
        return;
    buf_t b = BUF_INIT;
    if (xml_serialize(el, NULL, &b) < 0)
        xalloc_fail(b.cap);
    const char *at = strchr(owner, '@');
    char node[JID_PART_BUF];
    snprintf(node, sizeof(node), "%.*s", (int)(at - owner), owner);
    char res[JID_PART_BUF];
    snprintf(res, sizeof(res), "%.*s", (int)peer->resource_len,
             peer->resource != NULL ? peer->resource : "");
    store_archive_item_t it = {.sid = sid,
                               .ts = now_ms(),
                               .peer = peer_bare,
                               .peer_res = res,
                               .outgoing = outgoing,
                               .stanza = b.data != NULL ? b.data : "",
                               .len = b.len};
    j->pending++;
    store_archive_put(st->store, at + 1, node, &it, on_archived, j);
    buf_free(&b);
    if (++st->archived % EXPIRE_EVERY == 0)
        expire(st);
}

/* XEP-0359 §4: ours, and no other claiming to be by this archive. */
static void stamp(xml_tree_t *t, const char *owner, const char *sid)
{
    xml_node_t *el = t->root;
    for (xml_node_t *c = el->children, *next; c != NULL; c = next) {
        next = c->next;
        if (c->kind == XML_NODE_ELEMENT && c->ns != NULL &&
            strcmp(c->ns, NS_SID) == 0 && strcmp(c->name, "stanza-id") == 0) {
            const char *by = xml_element_attr(c, NULL, "by");
            if (by != NULL && strcmp(by, owner) == 0)
                xml_node_detach(c);
        }
    }
    xml_node_t *s = xml_element_new(t, el, NS_SID, "stanza-id");
    if (s == NULL || xml_element_set_attr(t, s, NULL, "by", owner) < 0 ||
        xml_element_set_attr(t, s, NULL, "id", sid) < 0)
        xalloc_fail(64);
}

static module_result_t on_message(module_call_t *c)
{
    mam_state_t *st = c->state;
    const xml_node_t *el = c->tree->root;
    if (st->store == NULL || c->to == NULL || !archivable(el))
        return MODULE_PASS;
    const char *from_s = xml_element_attr(el, NULL, "from");
    jid_t from;
    if (from_s == NULL || jid_parse(from_s, strlen(from_s), 0, &from) != JID_OK)
        return MODULE_PASS;
    archive_job_t *j = xcalloc(1, sizeof(*j));
    j->router = c->router;
    j->pending = 1;
    char owner[JID_FORMAT_BUF];
    /* The sender's archive (a local account). */
    if (!c->from->remote && c->from->account != NULL &&
        jid_format(&from, true, owner, sizeof(owner)) >= 0 &&
        !never_has(st, owner) && !jid_bare_equal(&from, c->to)) {
        char sid[24];
        if (rand_id(sid, sizeof(sid), 96) == 0)
            archive_one(st, j, owner, c->to, true, sid, el);
    }
    /* The recipient's (a local account), with the id stamped on its copy. */
    if ((c->addressee == MODULE_TO_BARE || c->addressee == MODULE_TO_FULL) &&
        c->to->node != NULL &&
        jid_format(c->to, true, owner, sizeof(owner)) >= 0 &&
        !never_has(st, owner)) {
        char sid[24];
        if (rand_id(sid, sizeof(sid), 96) == 0) {
            stamp(c->tree, owner, sid);
            archive_one(st, j, owner, &from, false, sid, c->tree->root);
        }
    }
    jid_clear(&from);
    char full[JID_FORMAT_BUF + JID_PART_BUF];
    if (j->pending > 1 && !c->from->remote && c->from->account != NULL &&
        jid_format(&c->from->jid, false, full, sizeof(full)) >= 0 &&
        jid_parse(full, strlen(full), 0, &j->sender) == JID_OK) {
        j->held = true;
        j->conn = c->from->conn;
        router_hold(c->router, c->from);
    }
    on_archived(j, STORE_OK); /* drops the job's own count */
    return MODULE_PASS;
}

/* ------------------------------------------------------------- queries */

/* XEP-0082 DateTime: YYYY-MM-DDThh:mm:ss[.sss](Z|±hh:mm) → ms. */
static bool parse_time(const char *s, int64_t *out)
{
    struct tm tm = {0};
    int frac_ms = 0, used = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon,
               &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &used) != 6 ||
        used != 19)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    const char *p = s + used;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 3)
                frac_ms = frac_ms * 10 + (*p - '0');
        for (; digits < 3; digits++)
            frac_ms *= 10;
    }
    long offset = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int hh, mm;
        if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2)
            return false;
        offset = (hh * 60 + mm) * 60 * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return false;
    }
    if (*p != '\0')
        return false;
    *out = ((int64_t)timegm(&tm) - offset) * 1000 + frac_ms;
    return true;
}

static void format_time(int64_t ms, char *out, size_t len)
{
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, len - n, ".%03dZ", (int)(ms % 1000));
}

typedef struct query {
    mam_state_t *st;
    module_later_t *l;
    char *queryid;
    char owner[JID_FORMAT_BUF];
    bool backward;
} query_t;

static void on_page(void *ud, int err, const store_archive_item_t *items,
                    size_t count, bool complete)
{
    query_t *q = ud;
    if (err == STORE_ERR_NOT_FOUND) {
        module_later_error(q->l, "cancel", "item-not-found");
    } else if (err != STORE_OK) {
        module_later_error(q->l, "wait", "internal-server-error");
    } else {
        const char *to = module_later_sender(q->l);
        for (size_t i = 0; i < count; i++) {
            xml_tree_t *t = xml_tree_new();
            xml_node_t *m =
                t != NULL ? xml_element_new(t, NULL, XML_NS_CLIENT, "message")
                          : NULL;
            xml_node_t *res =
                m != NULL ? xml_element_new(t, m, NS_MAM, "result") : NULL;
            xml_node_t *fw =
                res != NULL ? xml_element_new(t, res, NS_FORWARD, "forwarded")
                            : NULL;
            xml_node_t *d =
                fw != NULL ? xml_element_new(t, fw, NS_DELAY, "delay") : NULL;
            char stampbuf[40];
            format_time(items[i].ts, stampbuf, sizeof(stampbuf));
            if (d == NULL || xml_element_set_attr(t, m, NULL, "to", to) < 0 ||
                xml_element_set_attr(t, m, NULL, "from", q->owner) < 0 ||
                xml_element_set_attr(t, res, NULL, "id", items[i].sid) < 0 ||
                (q->queryid != NULL &&
                 xml_element_set_attr(t, res, NULL, "queryid", q->queryid) <
                     0) ||
                xml_element_set_attr(t, d, NULL, "stamp", stampbuf) < 0)
                xalloc_fail(256);
            if (module_parse_into(t, fw, items[i].stanza, items[i].len) < 0)
                LOG(q->st->log, LOG_WARN, 0,
                    "mam: item %s of %s does not parse", items[i].sid,
                    q->owner);
            module_later_deliver(q->l, m);
            xml_tree_free(t);
        }
        xml_tree_t *t;
        xml_node_t *iq = module_later_result(q->l, &t);
        xml_node_t *fin =
            iq != NULL ? xml_element_new(t, iq, NS_MAM, "fin") : NULL;
        xml_node_t *set =
            fin != NULL ? xml_element_new(t, fin, NS_RSM, "set") : NULL;
        if (set == NULL ||
            (complete &&
             xml_element_set_attr(t, fin, NULL, "complete", "true") < 0))
            xalloc_fail(256);
        if (count > 0) {
            xml_node_t *first = xml_element_new(t, set, NS_RSM, "first");
            xml_node_t *last = xml_element_new(t, set, NS_RSM, "last");
            const char *a = items[0].sid, *b = items[count - 1].sid;
            if (first == NULL || last == NULL ||
                xml_element_add_text(t, first, a, strlen(a)) < 0 ||
                xml_element_add_text(t, last, b, strlen(b)) < 0)
                xalloc_fail(256);
        }
        module_later_send(q->l, t);
    }
    free(q->queryid);
    free(q);
}

/* The text of the form field `var`, or NULL. */
static const char *field(xml_tree_t *t, const xml_node_t *x, const char *var)
{
    for (const xml_node_t *f = x != NULL ? x->children : NULL; f != NULL;
         f = f->next) {
        const char *v = f->kind == XML_NODE_ELEMENT
                            ? xml_element_attr(f, NULL, "var")
                            : NULL;
        if (v != NULL && strcmp(v, var) == 0) {
            const xml_node_t *val = xml_element_child(f, NS_DATA, "value");
            return val != NULL ? xml_element_text(t, val) : "";
        }
    }
    return NULL;
}

static module_result_t mam_query(module_call_t *c, const xml_node_t *qel)
{
    mam_state_t *st = c->state;
    xml_tree_t *t = c->tree;
    if (c->from->remote || c->from->account == NULL || st->store == NULL) {
        module_reply_error(c, "cancel", "forbidden");
        return MODULE_HANDLED;
    }
    const xml_node_t *x = xml_element_child(qel, NS_DATA, "x");
    const xml_node_t *set = xml_element_child(qel, NS_RSM, "set");
    store_archive_query_t sq = {.max = PAGE_DEFAULT};
    const char *with = field(t, x, "with");
    const char *start = field(t, x, "start");
    const char *end = field(t, x, "end");
    const char *ftype = field(t, x, "FORM_TYPE");
    bool bad = x != NULL && (ftype == NULL || strcmp(ftype, NS_MAM) != 0);
    if (field(t, x, "ids") != NULL) {
        module_reply_error(c, "cancel", "feature-not-implemented");
        return MODULE_HANDLED;
    }
    jid_t wj = {0};
    char peer[JID_FORMAT_BUF], res[JID_PART_BUF];
    if (with != NULL) {
        if (jid_parse(with, strlen(with), 0, &wj) != JID_OK ||
            jid_format(&wj, true, peer, sizeof(peer)) < 0) {
            bad = true;
        } else {
            sq.peer = peer;
            if (wj.resource != NULL) {
                snprintf(res, sizeof(res), "%.*s", (int)wj.resource_len,
                         wj.resource);
                sq.peer_res = res;
            }
        }
        jid_clear(&wj);
    }
    if ((start != NULL && !parse_time(start, &sq.start)) ||
        (end != NULL && !parse_time(end, &sq.end)))
        bad = true;
    sq.after = field(t, x, "after-id");
    sq.before = field(t, x, "before-id");
    if (set != NULL) {
        const xml_node_t *m = xml_element_child(set, NS_RSM, "max");
        const xml_node_t *a = xml_element_child(set, NS_RSM, "after");
        const xml_node_t *b = xml_element_child(set, NS_RSM, "before");
        const char *mt = m != NULL ? xml_element_text(t, m) : NULL;
        if (mt != NULL) {
            char *endp;
            long v = strtol(mt, &endp, 10);
            if (*endp != '\0' || v < 0)
                bad = true;
            sq.max = v == 0 ? 1 : (size_t)(v > PAGE_MAX ? PAGE_MAX : v);
        }
        if (a != NULL)
            sq.after = xml_element_text(t, a);
        if (b != NULL)
            sq.before = xml_element_text(t, b);
        if (xml_element_child(set, NS_RSM, "index") != NULL)
            bad = true; /* RSM §2.4 index: not offered */
    }
    if (bad) {
        module_reply_error(c, "modify", "bad-request");
        return MODULE_HANDLED;
    }
    query_t *q = xcalloc(1, sizeof(*q));
    q->st = st;
    const char *qid = xml_element_attr(qel, NULL, "queryid");
    q->queryid = qid != NULL ? xstrdup(qid) : NULL;
    q->l = module_later_new(c);
    snprintf(q->owner, sizeof(q->owner), "%s@%s", module_later_node(q->l),
             module_later_domain(q->l));
    store_archive_query(st->store, module_later_domain(q->l),
                        module_later_node(q->l), &sq, on_page, q);
    return MODULE_HANDLED;
}

/* §4.1.4: the form's fields. */
static module_result_t mam_form(module_call_t *c, const xml_node_t *qel)
{
    (void)qel;
    xml_tree_t *t;
    xml_node_t *iq = module_iq_result(c, &t);
    xml_node_t *q = iq != NULL ? xml_element_new(t, iq, NS_MAM, "query") : NULL;
    xml_node_t *x = q != NULL ? xml_element_new(t, q, NS_DATA, "x") : NULL;
    if (x == NULL || xml_element_set_attr(t, x, NULL, "type", "form") < 0)
        xalloc_fail(256);
    static const char *const vars[][2] = {
        {"FORM_TYPE", "hidden"},      {"with", "jid-single"},
        {"start", "text-single"},     {"end", "text-single"},
        {"before-id", "text-single"}, {"after-id", "text-single"},
    };
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        xml_node_t *f = xml_element_new(t, x, NS_DATA, "field");
        if (f == NULL ||
            xml_element_set_attr(t, f, NULL, "var", vars[i][0]) < 0 ||
            xml_element_set_attr(t, f, NULL, "type", vars[i][1]) < 0)
            xalloc_fail(256);
        if (i == 0) {
            xml_node_t *v = xml_element_new(t, f, NS_DATA, "value");
            if (v == NULL ||
                xml_element_add_text(t, v, NS_MAM, strlen(NS_MAM)) < 0)
                xalloc_fail(256);
        }
    }
    module_send(c, t);
    return MODULE_HANDLED;
}

/* ------------------------------------------------------------ preferences */

static void send_prefs(module_call_t *c, module_later_t *l, const char *def)
{
    xml_tree_t *t;
    xml_node_t *iq =
        l != NULL ? module_later_result(l, &t) : module_iq_result(c, &t);
    xml_node_t *p = iq != NULL ? xml_element_new(t, iq, NS_MAM, "prefs") : NULL;
    if (p == NULL || xml_element_set_attr(t, p, NULL, "default", def) < 0 ||
        xml_element_new(t, p, NS_MAM, "always") == NULL ||
        xml_element_new(t, p, NS_MAM, "never") == NULL)
        xalloc_fail(256);
    if (l != NULL)
        module_later_send(l, t);
    else
        module_send(c, t);
}

typedef struct prefs_req {
    module_later_t *l;
    char def[8];
} prefs_req_t;

static void on_prefs_get(void *ud, int err, const store_data_item_t *items,
                         size_t count)
{
    prefs_req_t *r = ud;
    if (err != STORE_OK)
        module_later_error(r->l, "wait", "internal-server-error");
    else
        send_prefs(NULL, r->l, count > 0 ? items[0].value : "always");
    free(r);
}

static void on_prefs_put(void *ud, int err)
{
    prefs_req_t *r = ud;
    if (err != STORE_OK)
        module_later_error(r->l, "wait", "internal-server-error");
    else
        send_prefs(NULL, r->l, r->def);
    free(r);
}

static module_result_t mam_prefs(module_call_t *c, const xml_node_t *p)
{
    mam_state_t *st = c->state;
    if (c->from->remote || c->from->account == NULL || st->store == NULL) {
        module_reply_error(c, "cancel", "forbidden");
        return MODULE_HANDLED;
    }
    const char *type = xml_element_attr(c->tree->root, NULL, "type");
    prefs_req_t *r = xcalloc(1, sizeof(*r));
    if (strcmp(type, "set") == 0) {
        const char *def = xml_element_attr(p, NULL, "default");
        if (def == NULL ||
            (strcmp(def, "always") != 0 && strcmp(def, "never") != 0 &&
             strcmp(def, "roster") != 0)) {
            free(r);
            module_reply_error(c, "modify", "bad-request");
            return MODULE_HANDLED;
        }
        snprintf(r->def, sizeof(r->def), "%s", def);
        r->l = module_later_new(c);
        char bare[JID_FORMAT_BUF];
        snprintf(bare, sizeof(bare), "%s@%s", module_later_node(r->l),
                 module_later_domain(r->l));
        never_set(st, bare, strcmp(def, "never") == 0);
        store_data_put(st->store, module_later_domain(r->l),
                       module_later_node(r->l), "mam-prefs", "", def,
                       strlen(def), on_prefs_put, r);
        return MODULE_HANDLED;
    }
    r->l = module_later_new(c);
    store_data_get(st->store, module_later_domain(r->l),
                   module_later_node(r->l), "mam-prefs", "", on_prefs_get, r);
    return MODULE_HANDLED;
}

static module_result_t mam_iq(module_call_t *c, const xml_node_t *child)
{
    const char *type = xml_element_attr(c->tree->root, NULL, "type");
    if (strcmp(child->name, "prefs") == 0)
        return mam_prefs(c, child);
    if (strcmp(child->name, "query") == 0)
        return strcmp(type, "set") == 0 ? mam_query(c, child)
                                        : mam_form(c, child);
    module_reply_error(c, "cancel", "feature-not-implemented");
    return MODULE_HANDLED;
}

static const module_iq_handler_t mam_iq_table[] = {
    {MODULE_IQ_SET, NS_MAM, MODULE_TO_BIT(MODULE_TO_ACCOUNT), mam_iq},
    {MODULE_IQ_GET, NS_MAM, MODULE_TO_BIT(MODULE_TO_ACCOUNT), mam_iq},
    {0, NULL, 0, NULL},
};

/* After blocking, carbons and push, before the IM rules deliver. */
#define MAM_PRIORITY 4
static const module_hook_t mam_hooks[] = {
    {MODULE_EV_MESSAGE_BARE, MAM_PRIORITY, on_message},
    {MODULE_EV_MESSAGE_FULL, MAM_PRIORITY, on_message},
    {MODULE_EV_MESSAGE_REMOTE, MAM_PRIORITY, on_message},
    {0, 0, NULL},
};

static const char *const mam_account_features[] = {NS_MAM, NS_SID, NULL};

const module_desc_t module_mam = {
    .name = "mam",
    .default_on = true,
    .settings = mam_fields,
    .settings_size = sizeof(mam_settings_t),
    .settings_default = &mam_defaults,
    .init = mam_init,
    .fini = mam_fini,
    .iq = mam_iq_table,
    .hooks = mam_hooks,
    .account_features = mam_account_features,
};
