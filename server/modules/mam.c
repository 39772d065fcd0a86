/* XEP-0313 Message Archive Management (urn:xmpp:mam:2 and #extended) for
 * accounts, with XEP-0359 stanza ids, XEP-0059 paging and XEP-0441
 * preferences.
 *
 * Archiving: every 1:1 message with a body (chat or normal) — or any but
 * an error carrying the XEP-0334 <store/> hint — that a local account
 * sends or receives goes into its archive (store group "archive")
 * — both archives when both parties are ours — unless it carries a
 * XEP-0334 no-store or no-permanent-store hint or the account's
 * preferences say no: the never list, then the always list, then the
 * default (always, never, or roster: the roster module answers from
 * memory while the account has a session, else the roster is read from
 * the store first). The copy the recipient gets carries <stanza-id
 * by='its bare JID' id='...'/> (XEP-0359; one a sender forged with that
 * 'by' is removed) — not when the decision waited for the roster store,
 * since an id must name an item —, and carbons of what was sent carry
 * the sender's (module_call_t.sender_sid). A local sender's next messages
 * go on at once, but anything else it sends (an IQ, presence) and its
 * XEP-0198 acks wait until the archive has the message
 * (router_write_begin), so that an answer or an ack it gets afterwards
 * means it is stored — without a store round trip per message. Hooks at
 * priority 40: after blocking (a refused message is not archived), before
 * carbons.
 *
 * Queries (§4): an IQ set to the account with optional filters in a data
 * form (with, start, end, before-id, after-id, ids — any other field is
 * feature-not-implemented) and RSM (max, after, before; an empty before
 * is the last page; max 0 asks for the count alone; index is not
 * offered). The results go to the asking session as <result/> messages
 * wrapping the stored message in a XEP-0297 <forwarded/> with its
 * XEP-0203 delay — newest first with <flip-page/> —, then the IQ
 * result's <fin/> with the first and last ids, complete='true' when the
 * page reached the end of what matches, and the count when it is free (a
 * complete page from the start of the set). Unknown ids: item-not-found.
 * The form is answered to a get; <metadata/> (§5) gives the first and
 * last items. Preferences: kept in memory for the accounts that set them
 * (loaded at start), written through to the store. Retention:
 * `mam.retention_days` (0: forever), applied at start and every 1000
 * archived messages. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/hash.h"
#include "base/rand.h"
#include "base/xalloc.h"
#include "modules/modules.h"

#define NS_MAM      "urn:xmpp:mam:2"
#define NS_SID      "urn:xmpp:sid:0"
#define NS_RSM      "http://jabber.org/protocol/rsm"
#define NS_DATA     "jabber:x:data"
#define NS_FORWARD  "urn:xmpp:forward:0"
#define NS_DELAY    "urn:xmpp:delay"
#define NS_HINTS    "urn:xmpp:hints"
#define NS_VALIDATE "http://jabber.org/protocol/xdata-validate"
#define NS_MAM_EXT  "urn:xmpp:mam:2#extended"

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

/* Preferences (XEP-0441, urn:xmpp:mam:2 prefs): kept in memory for the
 * accounts whose preferences are not the default (always, no lists),
 * loaded at start — few accounts set them — and written through to the
 * store as text: the default on the first line, then "+JID" (always) and
 * "-JID" (never) lines. */
typedef enum pref_default { PREF_ALWAYS, PREF_NEVER, PREF_ROSTER } pref_def_t;

static const char *const pref_names[] = {"always", "never", "roster"};

typedef struct prefs {
    struct prefs *next; /* hash chain */
    char *bare;
    pref_def_t def;
    char **jids[2]; /* [0] always, [1] never: bare JIDs */
    size_t njids[2];
} prefs_t;

enum { PREFS_BUCKETS = 1024, PREFS_MAX_JIDS = 1000 };

typedef struct mam_state {
    store_t *store;
    const logger_t *log;
    unsigned retention_days;
    unsigned long archived;
    prefs_t *prefs[PREFS_BUCKETS];
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

static prefs_t **prefs_slot(mam_state_t *st, const char *bare)
{
    prefs_t **pp = &st->prefs[hash_str(bare) % PREFS_BUCKETS];
    while (*pp != NULL && strcmp((*pp)->bare, bare) != 0)
        pp = &(*pp)->next;
    return pp;
}

static void prefs_free(prefs_t *p)
{
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < p->njids[k]; i++)
            free(p->jids[k][i]);
        free(p->jids[k]);
    }
    free(p->bare);
    free(p);
}

/* Replaces the preferences of `bare` with p (NULL: the default). */
static void prefs_set(mam_state_t *st, const char *bare, prefs_t *p)
{
    prefs_t **pp = prefs_slot(st, bare);
    if (*pp != NULL) {
        prefs_t *old = *pp;
        *pp = old->next;
        prefs_free(old);
    }
    if (p != NULL && (p->def != PREF_ALWAYS || p->njids[0] + p->njids[1] > 0)) {
        p->bare = xstrdup(bare);
        p->next = st->prefs[hash_str(bare) % PREFS_BUCKETS];
        st->prefs[hash_str(bare) % PREFS_BUCKETS] = p;
    } else if (p != NULL) {
        prefs_free(p);
    }
}

static bool prefs_has(const prefs_t *p, int k, const char *jid)
{
    for (size_t i = 0; i < p->njids[k]; i++)
        if (strcmp(p->jids[k][i], jid) == 0)
            return true;
    return false;
}

static void prefs_add(prefs_t *p, int k, const char *jid)
{
    if (prefs_has(p, k, jid))
        return;
    p->jids[k] = xreallocarray(p->jids[k], p->njids[k] + 1, sizeof(char *));
    p->jids[k][p->njids[k]++] = xstrdup(jid);
}

/* The stored text → preferences; NULL when it does not parse. */
static prefs_t *prefs_parse(const char *text, size_t len)
{
    prefs_t *p = xcalloc(1, sizeof(*p));
    p->bare = NULL;
    bool first = true, ok = false;
    for (size_t at = 0; at < len;) {
        const char *nl = memchr(text + at, '\n', len - at);
        size_t n = nl != NULL ? (size_t)(nl - (text + at)) : len - at;
        char line[JID_FORMAT_BUF + 2];
        if (n >= sizeof(line))
            break;
        memcpy(line, text + at, n);
        line[n] = '\0';
        at += n + 1;
        if (first) {
            first = false;
            for (int d = 0; d < 3; d++)
                if (strcmp(line, pref_names[d]) == 0) {
                    p->def = (pref_def_t)d;
                    ok = true;
                }
            if (!ok)
                break;
        } else if ((line[0] == '+' || line[0] == '-') && line[1] != '\0') {
            prefs_add(p, line[0] == '-', line + 1);
        }
    }
    if (!ok) {
        prefs_free(p);
        return NULL;
    }
    return p;
}

static void prefs_format(const prefs_t *p, buf_t *b)
{
    if (buf_append_str(b, pref_names[p->def]) < 0)
        xalloc_fail(16);
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < p->njids[k]; i++)
            if (buf_append_str(b, k == 0 ? "\n+" : "\n-") < 0 ||
                buf_append_str(b, p->jids[k][i]) < 0)
                xalloc_fail(b->len);
}

typedef enum decision { KEEP, SKIP, ASK_ROSTER } decision_t;

/* Whether the archive of `owner` keeps a message with `peer` (bare): the
 * roster default asks the roster module, which knows when the account has
 * a session (else the store is read: ASK_ROSTER). */
static decision_t decide(mam_state_t *st, const module_call_t *c,
                         const char *owner, const char *peer)
{
    const prefs_t *p = *prefs_slot(st, owner);
    if (p == NULL)
        return KEEP;
    if (prefs_has(p, 1, peer))
        return SKIP;
    if (prefs_has(p, 0, peer))
        return KEEP;
    if (p->def != PREF_ROSTER)
        return p->def == PREF_ALWAYS ? KEEP : SKIP;
    int in = module_registry_in_roster(c->modules, owner, peer);
    return in < 0 ? ASK_ROSTER : in ? KEEP : SKIP;
}

static void on_prefs_loaded(void *ud, int err, const store_data_item_t *items,
                            size_t count)
{
    mam_state_t *st = ud;
    for (size_t i = 0; err == STORE_OK && i < count; i++) {
        char bare[JID_FORMAT_BUF];
        snprintf(bare, sizeof(bare), "%s@%s", items[i].node, items[i].domain);
        prefs_t *p = prefs_parse(items[i].value, items[i].len);
        if (p == NULL)
            LOG(st->log, LOG_WARN, 0,
                "mam: the preferences of %s do not parse; default used", bare);
        prefs_set(st, bare, p);
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
    for (size_t i = 0; i < PREFS_BUCKETS; i++)
        while (st->prefs[i] != NULL) {
            prefs_t *p = st->prefs[i];
            st->prefs[i] = p->next;
            prefs_free(p);
        }
    free(st);
}

/* ------------------------------------------------------------ archiving */

/* chat and normal messages with a body; with the XEP-0334 <store/> hint
 * any but an error or groupchat (§4.4: "SHOULD be stored"); never with
 * no-store or no-permanent-store. */
static bool archivable(const xml_node_t *el)
{
    const char *type = xml_element_attr(el, NULL, "type");
    if (xml_element_child(el, NS_HINTS, "no-store") != NULL ||
        xml_element_child(el, NS_HINTS, "no-permanent-store") != NULL)
        return false;
    if (xml_element_child(el, NS_HINTS, "store") != NULL)
        return type == NULL ||
               (strcmp(type, "error") != 0 && strcmp(type, "groupchat") != 0);
    if (type != NULL && strcmp(type, "chat") != 0 &&
        strcmp(type, "normal") != 0)
        return false;
    return xml_element_child(el, XML_NS_CLIENT, "body") != NULL;
}

typedef struct archive_job {
    router_t *router;
    /* The local sender, whose answers and acks wait until this is stored
     * (router_write_begin): found again by its full JID and connection (it
     * may have ended meanwhile; its writes went with it). */
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
            router_write_end(j->router, t);
        jid_clear(&j->sender);
    }
    free(j);
}

/* One archive write that waits for the owner's roster (default "roster"):
 * the item with copies of its strings. */
typedef struct roster_check {
    mam_state_t *st;
    archive_job_t *j;
    char domain[JID_PART_BUF], node[JID_PART_BUF];
    store_archive_item_t it;
    char sid[24], peer[JID_FORMAT_BUF], res[JID_PART_BUF];
    buf_t stanza;
} roster_check_t;

static void on_roster(void *ud, int err, const store_roster_t *ros)
{
    roster_check_t *rc = ud;
    bool in = false;
    for (size_t i = 0; err == STORE_OK && i < ros->count && !in; i++)
        in = strcmp(ros->items[i].contact, rc->peer) == 0;
    if (in) {
        rc->j->pending++;
        store_archive_put(rc->st->store, rc->domain, rc->node, &rc->it,
                          on_archived, rc->j);
    }
    on_archived(rc->j, STORE_OK); /* drops the check's own count */
    buf_free(&rc->stanza);
    free(rc);
}

/* Writes el into the archive of `owner` (bare) — after a look at the
 * owner's roster when `roster` says so. */
static void archive_one(mam_state_t *st, archive_job_t *j, const char *owner,
                        const char *peer_bare, const jid_t *peer, bool outgoing,
                        const char *sid, const xml_node_t *el, bool roster)
{
    /* Kept past the call only when it waits for the roster. */
    roster_check_t now = {0};
    roster_check_t *rc = roster ? xcalloc(1, sizeof(*rc)) : &now;
    if (xml_serialize(el, NULL, &rc->stanza) < 0)
        xalloc_fail(rc->stanza.cap);
    const char *at = strchr(owner, '@');
    snprintf(rc->node, sizeof(rc->node), "%.*s", (int)(at - owner), owner);
    snprintf(rc->domain, sizeof(rc->domain), "%s", at + 1);
    snprintf(rc->res, sizeof(rc->res), "%.*s", (int)peer->resource_len,
             peer->resource != NULL ? peer->resource : "");
    snprintf(rc->peer, sizeof(rc->peer), "%s", peer_bare);
    snprintf(rc->sid, sizeof(rc->sid), "%s", sid);
    rc->it = (store_archive_item_t){
        .sid = rc->sid,
        .ts = now_ms(),
        .peer = rc->peer,
        .peer_res = rc->res,
        .outgoing = outgoing,
        .stanza = rc->stanza.data != NULL ? rc->stanza.data : "",
        .len = rc->stanza.len};
    rc->st = st;
    rc->j = j;
    j->pending++;
    if (roster) {
        store_roster_get(st->store, rc->domain, rc->node, on_roster, rc);
    } else {
        store_archive_put(st->store, rc->domain, rc->node, &rc->it, on_archived,
                          j);
        buf_free(&rc->stanza); /* the store copied the item */
    }
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
    char owner[JID_FORMAT_BUF], peer[JID_FORMAT_BUF];
    /* The sender's archive (a local account); its id is told to the
     * carbons of what it sent (XEP-0313 §3.2 "as a child of the forwarded
     * message"). */
    if (!c->from->remote && c->from->account != NULL &&
        jid_format(&from, true, owner, sizeof(owner)) >= 0 &&
        jid_format(c->to, true, peer, sizeof(peer)) >= 0 &&
        !jid_bare_equal(&from, c->to)) {
        decision_t d = decide(st, c, owner, peer);
        char sid[24];
        if (d != SKIP && rand_id(sid, sizeof(sid), 96) == 0) {
            archive_one(st, j, owner, peer, c->to, true, sid, el,
                        d == ASK_ROSTER);
            if (d == KEEP)
                snprintf(c->sender_sid, sizeof(c->sender_sid), "%s", sid);
        }
    }
    /* The recipient's (a local account), with the id stamped on its copy
     * — unless the decision waits for its roster (then the copy goes
     * without one: an id must name an item that exists). */
    if ((c->addressee == MODULE_TO_BARE || c->addressee == MODULE_TO_FULL) &&
        c->to->node != NULL &&
        jid_format(c->to, true, owner, sizeof(owner)) >= 0 &&
        jid_format(&from, true, peer, sizeof(peer)) >= 0) {
        decision_t d = decide(st, c, owner, peer);
        char sid[24];
        if (d != SKIP && rand_id(sid, sizeof(sid), 96) == 0) {
            if (d == KEEP)
                stamp(c->tree, owner, sid);
            archive_one(st, j, owner, peer, &from, false, sid, c->tree->root,
                        d == ASK_ROSTER);
        }
    }
    jid_clear(&from);
    char full[JID_FORMAT_BUF + JID_PART_BUF];
    if (j->pending > 1 && !c->from->remote && c->from->account != NULL &&
        jid_format(&c->from->jid, false, full, sizeof(full)) >= 0 &&
        jid_parse(full, strlen(full), 0, &j->sender) == JID_OK) {
        j->held = true;
        j->conn = c->from->conn;
        router_write_begin(c->router, c->from);
    }
    on_archived(j, STORE_OK); /* drops the job's own count */
    return MODULE_PASS;
}

/* ------------------------------------------------------------- queries */

typedef struct query {
    mam_state_t *st;
    module_later_t *l;
    char *queryid;
    char owner[JID_FORMAT_BUF];
    bool flip;  /* §4.3.4 flipped page: sent newest first */
    bool whole; /* no positions: a complete page is the whole set */
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
        if (items == NULL) /* the count alone: complete only if empty */
            complete = count == 0;
        for (size_t k = 0; items != NULL && k < count; k++) {
            size_t i = q->flip ? count - 1 - k : k;
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
            module_datetime_format(items[i].ts, stampbuf, sizeof(stampbuf));
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
        if (items == NULL || (complete && q->whole)) {
            /* The count alone (RSM §2.6), or a page that is the whole set
             * (the first item's index is then 0). */
            char n[24];
            snprintf(n, sizeof(n), "%zu", count);
            xml_node_t *cnt = xml_element_new(t, set, NS_RSM, "count");
            if (cnt == NULL || xml_element_add_text(t, cnt, n, strlen(n)) < 0)
                xalloc_fail(256);
        }
        if (items != NULL && count > 0) {
            xml_node_t *first = xml_element_new(t, set, NS_RSM, "first");
            xml_node_t *last = xml_element_new(t, set, NS_RSM, "last");
            const char *a = items[0].sid, *b = items[count - 1].sid;
            if (first == NULL || last == NULL ||
                (complete && q->whole &&
                 xml_element_set_attr(t, first, NULL, "index", "0") < 0) ||
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

/* The values of the multi-value field `var` into out[0..max): how many;
 * more than max: max + 1. */
static size_t field_values(xml_tree_t *t, const xml_node_t *x, const char *var,
                           const char **out, size_t max)
{
    size_t n = 0;
    for (const xml_node_t *f = x != NULL ? x->children : NULL; f != NULL;
         f = f->next) {
        const char *v = f->kind == XML_NODE_ELEMENT
                            ? xml_element_attr(f, NULL, "var")
                            : NULL;
        if (v == NULL || strcmp(v, var) != 0)
            continue;
        for (const xml_node_t *val = f->children; val != NULL; val = val->next)
            if (val->kind == XML_NODE_ELEMENT && val->ns != NULL &&
                strcmp(val->ns, NS_DATA) == 0 &&
                strcmp(val->name, "value") == 0) {
                if (n == max)
                    return max + 1;
                out[n++] = xml_element_text(t, val);
            }
    }
    return n;
}

/* The fields a query may carry (§4.1.1; others: feature-not-implemented). */
static const char *const query_vars[] = {
    "FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids", NULL,
};

static bool fields_known(const xml_node_t *x)
{
    for (const xml_node_t *f = x != NULL ? x->children : NULL; f != NULL;
         f = f->next) {
        if (f->kind != XML_NODE_ELEMENT || strcmp(f->name, "field") != 0)
            continue;
        const char *v = xml_element_attr(f, NULL, "var");
        bool known = false;
        for (size_t i = 0; v != NULL && query_vars[i] != NULL && !known; i++)
            known = strcmp(v, query_vars[i]) == 0;
        if (!known)
            return false;
    }
    return true;
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
    if (!fields_known(x)) {
        module_reply_error(c, "cancel", "feature-not-implemented");
        return MODULE_HANDLED;
    }
    const char *ids[PAGE_MAX];
    sq.nids = field_values(t, x, "ids", ids, PAGE_MAX);
    sq.ids = ids;
    if (sq.nids > PAGE_MAX) {
        module_reply_error(c, "modify", "policy-violation");
        return MODULE_HANDLED;
    }
    for (size_t i = 0; i < sq.nids; i++)
        if (ids[i][0] == '\0')
            bad = true;
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
    if ((start != NULL && !module_datetime_parse(start, &sq.start)) ||
        (end != NULL && !module_datetime_parse(end, &sq.end)))
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
            sq.count_only = v == 0; /* RSM §2.6: the count alone */
        }
        if (a != NULL)
            sq.after = xml_element_text(t, a);
        if (b != NULL)
            sq.before = xml_element_text(t, b);
        if (xml_element_child(set, NS_RSM, "index") != NULL) {
            /* RSM §2.5: pages by index are not offered (our <count/>
             * comes only when asked for or when it is the page's). */
            module_reply_error(c, "cancel", "feature-not-implemented");
            return MODULE_HANDLED;
        }
    }
    if (bad) {
        module_reply_error(c, "modify", "bad-request");
        return MODULE_HANDLED;
    }
    query_t *q = xcalloc(1, sizeof(*q));
    q->st = st;
    const char *qid = xml_element_attr(qel, NULL, "queryid");
    q->queryid = qid != NULL ? xstrdup(qid) : NULL;
    q->flip = xml_element_child(qel, NS_MAM, "flip-page") != NULL;
    /* A complete page from the start of the set is the whole set: its
     * count costs nothing (RSM §2.1). */
    q->whole = sq.after == NULL && sq.before == NULL && sq.nids == 0;
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
        {"ids", "list-multi"},
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
        if (strcmp(vars[i][0], "ids") == 0) {
            /* §4.1.4: no list of values, an open one (XEP-0122). */
            xml_node_t *v = xml_element_new(t, f, NS_VALIDATE, "validate");
            if (v == NULL ||
                xml_element_set_attr(t, v, NULL, "datatype", "xs:string") < 0 ||
                xml_element_new(t, v, NS_VALIDATE, "open") == NULL)
                xalloc_fail(256);
        }
    }
    module_send(c, t);
    return MODULE_HANDLED;
}

/* ------------------------------------------------------------- metadata */

/* §5: the first and last items of the archive — two one-item pages. */
typedef struct meta_req {
    mam_state_t *st;
    module_later_t *l;
    bool have_start;
    char start_id[64], start_ts[40];
} meta_req_t;

static void on_meta(void *ud, int err, const store_archive_item_t *items,
                    size_t count, bool complete);

static void meta_query(mam_state_t *st, meta_req_t *m, bool last)
{
    store_archive_query_t q = {.max = 1, .before = last ? "" : NULL};
    store_archive_query(st->store, module_later_domain(m->l),
                        module_later_node(m->l), &q, on_meta, m);
}

static void on_meta(void *ud, int err, const store_archive_item_t *items,
                    size_t count, bool complete)
{
    meta_req_t *m = ud;
    (void)complete;
    if (err != STORE_OK) {
        module_later_error(m->l, "wait", "internal-server-error");
        free(m);
        return;
    }
    if (!m->have_start && count > 0) {
        /* The first item; now the last. */
        m->have_start = true;
        snprintf(m->start_id, sizeof(m->start_id), "%s", items[0].sid);
        module_datetime_format(items[0].ts, m->start_ts, sizeof(m->start_ts));
        meta_query(m->st, m, true);
        return;
    }
    xml_tree_t *t;
    xml_node_t *iq = module_later_result(m->l, &t);
    xml_node_t *md =
        iq != NULL ? xml_element_new(t, iq, NS_MAM, "metadata") : NULL;
    if (md == NULL)
        xalloc_fail(256);
    if (m->have_start && count > 0) {
        char end_ts[40];
        module_datetime_format(items[0].ts, end_ts, sizeof(end_ts));
        xml_node_t *a = xml_element_new(t, md, NS_MAM, "start");
        xml_node_t *b = xml_element_new(t, md, NS_MAM, "end");
        if (a == NULL || b == NULL ||
            xml_element_set_attr(t, a, NULL, "id", m->start_id) < 0 ||
            xml_element_set_attr(t, a, NULL, "timestamp", m->start_ts) < 0 ||
            xml_element_set_attr(t, b, NULL, "id", items[0].sid) < 0 ||
            xml_element_set_attr(t, b, NULL, "timestamp", end_ts) < 0)
            xalloc_fail(256);
    }
    module_later_send(m->l, t);
    free(m);
}

static module_result_t mam_metadata(module_call_t *c)
{
    mam_state_t *st = c->state;
    if (c->from->remote || c->from->account == NULL || st->store == NULL) {
        module_reply_error(c, "cancel", "forbidden");
        return MODULE_HANDLED;
    }
    meta_req_t *m = xcalloc(1, sizeof(*m));
    m->st = st;
    m->l = module_later_new(c);
    meta_query(st, m, false);
    return MODULE_HANDLED;
}

/* ------------------------------------------------------------ preferences */

static void send_prefs(module_call_t *c, module_later_t *l, const prefs_t *p)
{
    xml_tree_t *t;
    xml_node_t *iq =
        l != NULL ? module_later_result(l, &t) : module_iq_result(c, &t);
    xml_node_t *el =
        iq != NULL ? xml_element_new(t, iq, NS_MAM, "prefs") : NULL;
    pref_def_t def = p != NULL ? p->def : PREF_ALWAYS;
    if (el == NULL ||
        xml_element_set_attr(t, el, NULL, "default", pref_names[def]) < 0)
        xalloc_fail(256);
    for (int k = 0; k < 2; k++) {
        xml_node_t *list =
            xml_element_new(t, el, NS_MAM, k == 0 ? "always" : "never");
        if (list == NULL)
            xalloc_fail(256);
        for (size_t i = 0; p != NULL && i < p->njids[k]; i++) {
            xml_node_t *j = xml_element_new(t, list, NS_MAM, "jid");
            if (j == NULL || xml_element_add_text(t, j, p->jids[k][i],
                                                  strlen(p->jids[k][i])) < 0)
                xalloc_fail(256);
        }
    }
    if (l != NULL)
        module_later_send(l, t);
    else
        module_send(c, t);
}

typedef struct prefs_req {
    mam_state_t *st;
    module_later_t *l;
} prefs_req_t;

static void on_prefs_put(void *ud, int err)
{
    prefs_req_t *r = ud;
    if (err != STORE_OK) {
        module_later_error(r->l, "wait", "internal-server-error");
    } else {
        char bare[JID_FORMAT_BUF];
        snprintf(bare, sizeof(bare), "%s@%s", module_later_node(r->l),
                 module_later_domain(r->l));
        send_prefs(NULL, r->l, *prefs_slot(r->st, bare));
    }
    free(r);
}

/* The <jid/>s of an <always/> or <never/> list into p (bare JIDs, as
 * prepared); false on a bad one or too many. */
static bool prefs_list(xml_tree_t *t, const xml_node_t *list, prefs_t *p, int k)
{
    for (const xml_node_t *j = list != NULL ? list->children : NULL; j != NULL;
         j = j->next) {
        if (j->kind != XML_NODE_ELEMENT || strcmp(j->name, "jid") != 0)
            continue;
        const char *text = xml_element_text(t, j);
        jid_t jid;
        char bare[JID_FORMAT_BUF];
        if (text == NULL || jid_parse(text, strlen(text), 0, &jid) != JID_OK)
            return false;
        bool ok = jid_format(&jid, true, bare, sizeof(bare)) >= 0;
        jid_clear(&jid);
        if (!ok || p->njids[0] + p->njids[1] >= PREFS_MAX_JIDS)
            return false;
        prefs_add(p, k, bare);
    }
    return true;
}

static module_result_t mam_prefs(module_call_t *c, const xml_node_t *el)
{
    mam_state_t *st = c->state;
    if (c->from->remote || c->from->account == NULL || st->store == NULL) {
        module_reply_error(c, "cancel", "forbidden");
        return MODULE_HANDLED;
    }
    char bare[JID_FORMAT_BUF];
    if (jid_format(&c->from->jid, true, bare, sizeof(bare)) < 0)
        return MODULE_PASS;
    const char *type = xml_element_attr(c->tree->root, NULL, "type");
    if (strcmp(type, "set") != 0) {
        send_prefs(c, NULL, *prefs_slot(st, bare));
        return MODULE_HANDLED;
    }
    const char *def = xml_element_attr(el, NULL, "default");
    prefs_t *p = xcalloc(1, sizeof(*p));
    bool ok = false;
    for (int d = 0; def != NULL && d < 3; d++)
        if (strcmp(def, pref_names[d]) == 0) {
            p->def = (pref_def_t)d;
            ok = true;
        }
    ok = ok &&
         prefs_list(c->tree, xml_element_child(el, NS_MAM, "always"), p, 0) &&
         prefs_list(c->tree, xml_element_child(el, NS_MAM, "never"), p, 1);
    if (!ok) {
        prefs_free(p);
        module_reply_error(c, "modify", "bad-request");
        return MODULE_HANDLED;
    }
    buf_t b = BUF_INIT;
    prefs_format(p, &b);
    prefs_set(st, bare, p);
    prefs_req_t *r = xcalloc(1, sizeof(*r));
    r->st = st;
    r->l = module_later_new(c);
    store_data_put(st->store, module_later_domain(r->l),
                   module_later_node(r->l), "mam-prefs", "", b.data, b.len,
                   on_prefs_put, r);
    buf_free(&b);
    return MODULE_HANDLED;
}

static module_result_t mam_iq(module_call_t *c, const xml_node_t *child)
{
    const char *type = xml_element_attr(c->tree->root, NULL, "type");
    if (strcmp(child->name, "prefs") == 0)
        return mam_prefs(c, child);
    if (strcmp(child->name, "metadata") == 0 && strcmp(type, "get") == 0)
        return mam_metadata(c);
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

/* After blocking (which may refuse the message: not archived, §6.1), before
 * carbons (whose copies carry the stanza ids) and the IM rules. */
#define MAM_PRIORITY 40
static const module_hook_t mam_hooks[] = {
    {MODULE_EV_MESSAGE_BARE, MAM_PRIORITY, on_message},
    {MODULE_EV_MESSAGE_FULL, MAM_PRIORITY, on_message},
    {MODULE_EV_MESSAGE_REMOTE, MAM_PRIORITY, on_message},
    {0, 0, NULL},
};

static const char *const mam_account_features[] = {NS_MAM, NS_MAM_EXT, NS_SID,
                                                   NULL};

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
