/* libFuzzer target: what clients send once bound, through the router and
 * the IM modules (server/im: message rules, rosters, the subscription state
 * machine, presence, offline storage's hooks) — the code that reads
 * roster items, presence and subscription stanzas from the network after
 * the XML layer has parsed them.
 *
 * Four sessions are bound: alice@localhost/a, alice@localhost/b,
 * bob@localhost/c, carol@example.org/d. The input is a sequence of
 * records separated by 0xFF bytes (never valid UTF-8). A record's first
 * byte picks the action: its low two bits the session, and
 *   bits 2-3 == 0  the rest is one stanza in jabber:client, sent by that
 *                  session ('from' stamped as c2s does);
 *   bits 2-3 == 1  the session ends (unbind) and binds again;
 *   bits 2-3 == 2  the session sends available presence then requests
 *                  its roster (what every client does at login);
 *   bits 2-3 == 3  the stanza is handed back to the router as if a
 *                  session that ended had never written it
 *                  (router_requeue).
 * There is no store: rosters live in memory for the run.
 *
 * Properties checked (abort() on violation): every stanza a session is
 * given parses as one jabber:client element (presence spliced with 'to'
 * included) and a presence's leading 'to' is the session's own full or
 * bare JID; no
 * session is left held after the input; nothing leaks or crashes (ASan,
 * with libFuzzer's leak detection). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jid/jid.h"
#include "modules/modules.h"
#include "router/router.h"
#include "xml/xml.h"

typedef struct sess {
    route_target_t t; /* first */
    const char *user;
    const char *resource;
} sess_t;

static void on_header(void *ud, xml_tree_t *header);
static void on_element(void *ud, xml_tree_t *el);
static void on_end(void *ud);
#define on_header_check  on_header
#define on_element_check on_element

static bool check_deliver(route_target_t *t, route_stanza_t *st)
{
    rcbuf_t *b = route_stanza_bytes(st);
    /* The bytes are one element of a jabber:client stream. */
    static const char head[] =
        "<stream:stream xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams'>";
    static const xml_parser_cbs_t cbs = {on_header_check, on_element_check,
                                         on_end};
    xml_tree_t *got = NULL;
    xml_parser_t *p = xml_parser_new(NULL, &cbs, &got);
    if (p == NULL)
        abort();
    if (xml_parser_feed(p, head, sizeof(head) - 1) != XML_OK ||
        xml_parser_feed(p, rcbuf_data(b), rcbuf_len(b)) != XML_OK ||
        got == NULL)
        abort();
    xml_parser_free(p);
    xml_tree_free(got);
    /* A presence's leading 'to' (spliced for a broadcast, or written by
     * the sender of directed presence to the bare JID) is the target's
     * own full or bare JID. */
    const char *d = rcbuf_data(b);
    if (strncmp(d, "<presence to='", 14) == 0) {
        char mine[JID_FORMAT_BUF + JID_PART_BUF];
        int n = jid_format(&t->jid, false, mine, sizeof(mine));
        if (n < 0)
            abort();
        const char *to = d + 14;
        const char *slash = memchr(mine, '/', (size_t)n);
        size_t bare = slash != NULL ? (size_t)(slash - mine) : (size_t)n;
        bool full_ok = strncmp(to, mine, (size_t)n) == 0 && to[n] == '\'';
        bool bare_ok = strncmp(to, mine, bare) == 0 && to[bare] == '\'';
        if (!full_ok && !bare_ok)
            abort();
    }
    return true;
}

static void kick(route_target_t *t, const char *condition)
{
    (void)t;
    (void)condition;
}

static const route_target_ops_t ops = {.deliver = check_deliver, .kick = kick};

static const char *const hosts[] = {"localhost", "example.org"};

static void bind_one(router_t *r, sess_t *s)
{
    jid_t user;
    if (jid_parse(s->user, strlen(s->user), 0, &user) != JID_OK)
        abort();
    if (router_bind(r, &s->t, &user, s->resource) != NULL)
        abort();
    jid_clear(&user);
}

static void on_header(void *ud, xml_tree_t *header)
{
    (void)ud;
    xml_tree_free(header);
}

static void on_element(void *ud, xml_tree_t *el)
{
    xml_tree_t **out = ud;
    if (*out == NULL)
        *out = el;
    else
        xml_tree_free(el);
}

static void on_end(void *ud)
{
    (void)ud;
}

/* The first stanza of data, parsed as c2s would (NULL: none). */
static xml_tree_t *parse_one(const uint8_t *data, size_t len)
{
    static const char head[] =
        "<stream:stream xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams'>";
    static const xml_parser_cbs_t cbs = {on_header, on_element, on_end};
    xml_tree_t *t = NULL;
    xml_parser_t *p = xml_parser_new(NULL, &cbs, &t);
    if (p == NULL)
        abort();
    if (xml_parser_feed(p, head, sizeof(head) - 1) != XML_OK)
        abort();
    (void)xml_parser_feed(p, (const char *)data, len);
    xml_parser_free(p);
    /* Only what c2s routes: message, presence, iq in jabber:client. */
    if (t != NULL &&
        (t->root->ns == NULL || strcmp(t->root->ns, XML_NS_CLIENT) != 0 ||
         (strcmp(t->root->name, "message") != 0 &&
          strcmp(t->root->name, "presence") != 0 &&
          strcmp(t->root->name, "iq") != 0))) {
        xml_tree_free(t);
        t = NULL;
    }
    return t;
}

static void send_text(router_t *r, sess_t *who, const char *xml)
{
    xml_tree_t *t = parse_one((const uint8_t *)xml, strlen(xml));
    if (t == NULL)
        abort();
    char from[JID_FORMAT_BUF + JID_PART_BUF];
    jid_format(&who->t.jid, false, from, sizeof(from));
    xml_element_set_attr(t, t->root, NULL, "from", from);
    router_route(r, &who->t, t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static logger_t log = {.level = LOG_ERROR + 1};
    size_t nmods;
    const module_desc_t *const *all = modules_all(&nmods);
    bool on[32] = {0};
    for (size_t i = 0; i < nmods && i < 32; i++)
        on[i] = true;
    char err[128];
    module_registry_t *mods = module_registry_new(all, nmods, on, NULL, NULL,
                                                  NULL, &log, err, sizeof(err));
    if (mods == NULL)
        abort();
    router_config_t cfg = {.hosts = hosts,
                           .host_count = 2,
                           .conflict = ROUTER_CONFLICT_NEW_WINS,
                           .max_resources = 8,
                           .modules = mods};
    router_t *r = router_new(&cfg, &log);
    if (r == NULL)
        abort();
    sess_t s[4] = {
        {.user = "alice@localhost", .resource = "a"},
        {.user = "alice@localhost", .resource = "b"},
        {.user = "bob@localhost", .resource = "c"},
        {.user = "carol@example.org", .resource = "d"},
    };
    for (int i = 0; i < 4; i++) {
        s[i].t.ops = &ops;
        s[i].t.conn = (unsigned long)i + 1;
        bind_one(r, &s[i]);
    }

    size_t pos = 0;
    while (pos < size) {
        size_t end = pos;
        while (end < size && data[end] != 0xFF)
            end++;
        if (end > pos) {
            uint8_t op = data[pos];
            sess_t *who = &s[op & 3];
            const uint8_t *body = data + pos + 1;
            size_t blen = end - pos - 1;
            switch ((op >> 2) & 3) {
            case 0:
            case 3: {
                xml_tree_t *t = parse_one(body, blen);
                if (t == NULL)
                    break;
                char from[JID_FORMAT_BUF + JID_PART_BUF];
                jid_format(&who->t.jid, false, from, sizeof(from));
                xml_element_set_attr(t, t->root, NULL, "from", from);
                if (((op >> 2) & 3) == 0)
                    router_route(r, &who->t, t);
                else
                    router_requeue(r, t);
                break;
            }
            case 1:
                router_unbind(r, &who->t);
                bind_one(r, who);
                break;
            case 2:
                send_text(r, who,
                          "<presence><priority>1</priority></presence>");
                send_text(r, who,
                          "<iq type='get' id='r'>"
                          "<query xmlns='jabber:iq:roster'/></iq>");
                break;
            }
        }
        pos = end + 1;
    }
    for (int i = 0; i < 4; i++) {
        if (s[i].t.holds != 0 || s[i].t.held_head != NULL)
            abort();
        router_unbind(r, &s[i].t);
        jid_clear(&s[i].t.jid);
    }
    router_free(r);
    module_registry_free(mods);
    return 0;
}
