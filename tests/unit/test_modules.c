/* Module dispatch (server/modules/module.c) through the router, with fake
 * modules whose hooks write into a trace, and fake targets
 * (tests/unit/fake_target.c): priorities, handled/pass, IQ handlers by
 * type, namespace and addressee, service-unavailable for what nobody
 * handles, replies to the account without 'from', session events, the
 * registry's life cycle, and the real ping/disco modules. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_target.h"
#include "modules/modules.h"

/* What the fake modules did, in order: one letter per call. */
typedef struct trace {
    char calls[64];
    int inits, finis;
    char fini_order[16];
} trace_t;

static void trace_add(trace_t *t, char c)
{
    size_t n = strlen(t->calls);
    assert_true(n + 1 < sizeof(t->calls));
    t->calls[n] = c;
    t->calls[n + 1] = '\0';
}

/* A fake module's settings: where to trace, its letter, and what its
 * hooks answer. */
typedef struct fake_settings {
    trace_t *trace;
    char letter;
    module_result_t answer;
    bool refuse_init;
} fake_settings_t;

typedef struct fake_state {
    const fake_settings_t *s;
    int calls;
} fake_state_t;

static void *fake_mod_init(const module_env_t *env, bool *ok)
{
    const fake_settings_t *s = env->settings;
    s->trace->inits++;
    if (s->refuse_init) {
        *ok = false;
        return NULL;
    }
    fake_state_t *st = calloc(1, sizeof(*st));
    assert_non_null(st);
    st->s = s;
    return st;
}

static void fake_mod_fini(void *state)
{
    fake_state_t *st = state;
    trace_t *t = st->s->trace;
    size_t n = strlen(t->fini_order);
    t->fini_order[n] = st->s->letter;
    t->fini_order[n + 1] = '\0';
    t->finis++;
    free(st);
}

static module_result_t fake_hook(module_call_t *c)
{
    fake_state_t *st = c->state;
    assert_ptr_equal(c->settings, st->s); /* its own instance */
    st->calls++;
    trace_add(st->s->trace, st->s->letter);
    return st->s->answer;
}

/* Answers an IQ with a result holding <ok xmlns='urn:test'/>. */
static module_result_t fake_iq(module_call_t *c, const xml_node_t *child)
{
    fake_state_t *st = c->state;
    assert_string_equal(child->ns, "urn:test");
    trace_add(st->s->trace, st->s->letter);
    if (st->s->answer == MODULE_PASS)
        return MODULE_PASS;
    xml_tree_t *t;
    xml_node_t *iq = module_iq_result(c, &t);
    assert_non_null(iq);
    assert_non_null(xml_element_new(t, iq, "urn:test", "ok"));
    module_send(c, t);
    return MODULE_HANDLED;
}

static module_result_t fake_session(module_call_t *c)
{
    fake_state_t *st = c->state;
    assert_null(c->tree);
    static const char letters[] = {
        [MODULE_EV_SESSION_BOUND] = 'B',
        [MODULE_EV_SESSION_AVAILABLE] = 'A',
        [MODULE_EV_SESSION_UNAVAILABLE] = 'U',
        [MODULE_EV_SESSION_ENDED] = 'E',
    };
    trace_add(st->s->trace, letters[c->event]);
    return MODULE_PASS;
}

/* Hooks on messages to a full JID at a priority of `p`. */
#define FAKE_MODULE(id, p)                                                     \
    static const module_hook_t id##_hooks[] = {                                \
        {MODULE_EV_MESSAGE_FULL, p, fake_hook},                                \
        {0, 0, NULL},                                                          \
    };                                                                         \
    static const char *const id##_features[] = {"urn:feature:" #id, NULL};     \
    static const module_desc_t id = {                                          \
        .name = #id,                                                           \
        .init = fake_mod_init,                                                 \
        .fini = fake_mod_fini,                                                 \
        .hooks = id##_hooks,                                                   \
        .features = id##_features,                                             \
    }

FAKE_MODULE(low, -10);
FAKE_MODULE(mid, 5);
FAKE_MODULE(mid2, 5);
FAKE_MODULE(high, 100);

static const module_iq_handler_t iq_server_get[] = {
    {MODULE_IQ_GET, "urn:test", MODULE_TO_BIT(MODULE_TO_SERVER), fake_iq},
    {0, NULL, 0, NULL},
};
static const module_desc_t iq_server = {
    .name = "iq_server",
    .init = fake_mod_init,
    .fini = fake_mod_fini,
    .iq = iq_server_get,
};

static const module_iq_handler_t iq_account_any[] = {
    {MODULE_IQ_GET, "urn:test",
     MODULE_TO_BIT(MODULE_TO_ACCOUNT) | MODULE_TO_BIT(MODULE_TO_SERVER),
     fake_iq},
    {MODULE_IQ_SET, "urn:test", MODULE_TO_BIT(MODULE_TO_ACCOUNT), fake_iq},
    {0, NULL, 0, NULL},
};
static const module_desc_t iq_account = {
    .name = "iq_account",
    .init = fake_mod_init,
    .fini = fake_mod_fini,
    .iq = iq_account_any,
};

static const module_hook_t session_hooks[] = {
    {MODULE_EV_SESSION_BOUND, 0, fake_session},
    {MODULE_EV_SESSION_AVAILABLE, 0, fake_session},
    {MODULE_EV_SESSION_UNAVAILABLE, 0, fake_session},
    {MODULE_EV_SESSION_ENDED, 0, fake_session},
    {0, 0, NULL},
};
static const module_desc_t sessions = {
    .name = "sessions",
    .init = fake_mod_init,
    .fini = fake_mod_fini,
    .hooks = session_hooks,
};

static void fake_feature_handle(stream_t *s, void *owner_ud,
                                const stream_feature_t *f, xml_tree_t *t)
{
    (void)s;
    (void)owner_ud;
    (void)f;
    xml_tree_free(t);
}

/* Two modules with stream features (as stream management and CSI will
 * have). */
static const stream_feature_t sf_one_rows[] = {
    {.ns = "urn:test:sm",
     .name = "sm",
     .when = STREAM_FEAT_AFTER_AUTH,
     .handle = fake_feature_handle},
    {.ns = "urn:test:csi", .name = "csi", .when = STREAM_FEAT_AFTER_AUTH},
    {.ns = NULL},
};
static const module_desc_t sf_one = {
    .name = "sf_one",
    .init = fake_mod_init,
    .fini = fake_mod_fini,
    .stream_features = sf_one_rows,
};
static const stream_feature_t sf_two_rows[] = {
    {.ns = "urn:test:two", .name = "two", .when = STREAM_FEAT_AFTER_AUTH},
    {.ns = NULL},
};
static const module_desc_t sf_two = {
    .name = "sf_two",
    .init = fake_mod_init,
    .fini = fake_mod_fini,
    .stream_features = sf_two_rows,
};

/* ---------------------------------------------------------- fixture */

enum { MAXMODS = 8 };

typedef struct env {
    const char *hosts[1];
    logger_t log;
    trace_t trace;
    fake_settings_t settings[MAXMODS];
    const module_desc_t *descs[MAXMODS];
    bool on[MAXMODS];
    const void *sets[MAXMODS];
    size_t n;
    module_registry_t *mods;
    router_config_t cfg;
    router_t *r;
    fake_target_t a, b;
} env_t;

static int setup(void **state)
{
    env_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -1;
    e->log.level = LOG_ERROR;
    e->hosts[0] = "localhost";
    /* The IM rules are always there, as in the server. */
    e->descs[e->n++] = &module_im;
    fake_init(&e->a, 1);
    fake_init(&e->b, 2);
    *state = e;
    return 0;
}

/* Adds a module; `answer` is what its hooks and IQ handlers return. */
static void add(env_t *e, const module_desc_t *d, char letter,
                module_result_t answer)
{
    assert_true(e->n < MAXMODS);
    e->settings[e->n] = (fake_settings_t){&e->trace, letter, answer, false};
    e->sets[e->n] = &e->settings[e->n];
    e->on[e->n] = true;
    e->descs[e->n++] = d;
}

/* Builds the registry and the router, and binds alice/a and bob/b. */
static void start(env_t *e)
{
    char err[128];
    e->mods = module_registry_new(e->descs, e->n, e->on, e->sets, NULL, NULL,
                                  &e->log, err, sizeof(err));
    if (e->mods == NULL)
        fail_msg("registry: %s", err);
    e->cfg = (router_config_t){.hosts = e->hosts,
                               .host_count = 1,
                               .conflict = ROUTER_CONFLICT_NEW_WINS,
                               .max_resources = 8,
                               .modules = e->mods};
    e->r = router_new(&e->cfg, &e->log);
    assert_non_null(e->r);
    fake_bind(e->r, &e->a, "alice@localhost", "a");
    fake_bind(e->r, &e->b, "bob@localhost", "b");
}

static int teardown(void **state)
{
    env_t *e = *state;
    if (e->r != NULL) {
        router_unbind(e->r, &e->a.t);
        router_unbind(e->r, &e->b.t);
        router_free(e->r);
    }
    module_registry_free(e->mods);
    /* Every instance that started was finished. */
    assert_int_equal(e->trace.inits, e->trace.finis);
    fake_clear(&e->a);
    fake_clear(&e->b);
    jid_clear(&e->a.t.jid);
    jid_clear(&e->b.t.jid);
    free(e);
    return 0;
}

/* ------------------------------------------------------------- tests */

static void test_priorities_all_pass(void **state)
{
    env_t *e = *state;
    add(e, &low, 'l', MODULE_PASS);
    add(e, &mid, 'm', MODULE_PASS);
    add(e, &high, 'h', MODULE_PASS);
    add(e, &mid2, 'n', MODULE_PASS);
    start(e);
    fake_send(e->r, &e->a,
              "<message to='bob@localhost/b'><body>x</body></message>");
    /* Highest first; equal priorities in list order; then the IM rules
     * (priority 0, before 'low') and the router's delivery. */
    assert_string_equal(e->trace.calls, "hmnl");
    assert_int_equal(e->b.ngot, 1);
}

static void test_handled_stops(void **state)
{
    env_t *e = *state;
    add(e, &low, 'l', MODULE_PASS);
    add(e, &mid, 'm', MODULE_HANDLED);
    add(e, &high, 'h', MODULE_PASS);
    start(e);
    fake_send(e->r, &e->a,
              "<message to='bob@localhost/b'><body>x</body></message>");
    /* 'mid' took it: nothing after it runs, and the router delivers
     * nothing (the module owns what happens to it). */
    assert_string_equal(e->trace.calls, "hm");
    assert_int_equal(e->b.ngot, 0);
    assert_int_equal(e->a.ngot, 0);
    /* Other events do not reach these hooks. */
    fake_send(e->r, &e->a,
              "<message to='bob@localhost'><body>x</body></message>");
    assert_string_equal(e->trace.calls, "hm");
}

static void test_im_before_low_priority(void **state)
{
    env_t *e = *state;
    add(e, &low, 'l', MODULE_PASS);
    start(e);
    /* To an absent resource the IM rules (priority 0) handle the message
     * (bare-JID rules: service-unavailable), so priority -10 never sees
     * it. */
    fake_send(e->r, &e->a,
              "<message to='bob@localhost/gone'><body>x</body></message>");
    assert_string_equal(e->trace.calls, "");
    assert_int_equal(e->a.ngot, 1);
    assert_string_equal(fake_error(fake_got(&e->a, 0)), "service-unavailable");
}

static void test_iq_dispatch(void **state)
{
    env_t *e = *state;
    add(e, &iq_server, 's', MODULE_HANDLED);
    start(e);
    fake_send(
        e->r, &e->a,
        "<iq type='get' id='1' to='localhost'><q xmlns='urn:test'/></iq>");
    assert_string_equal(e->trace.calls, "s");
    const xml_node_t *res = fake_got(&e->a, 0);
    assert_string_equal(fake_attr(res, "type"), "result");
    assert_string_equal(fake_attr(res, "id"), "1");
    assert_string_equal(fake_attr(res, "from"), "localhost");
    assert_string_equal(fake_attr(res, "to"), "alice@localhost/a");
    assert_non_null(xml_element_child(res, "urn:test", "ok"));
    /* Wrong type, wrong addressee, unknown namespace: nobody handles it,
     * service-unavailable with the original child. */
    fake_send(
        e->r, &e->a,
        "<iq type='set' id='2' to='localhost'><q xmlns='urn:test'/></iq>");
    fake_send(e->r, &e->a, "<iq type='get' id='3'><q xmlns='urn:test'/></iq>");
    fake_send(e->r, &e->a,
              "<iq type='get' id='4' to='localhost'><q "
              "xmlns='urn:other'><i/></q></iq>");
    assert_string_equal(e->trace.calls, "s");
    assert_int_equal(e->a.ngot, 4);
    for (size_t i = 1; i < 4; i++) {
        const xml_node_t *err = fake_got(&e->a, i);
        assert_string_equal(fake_error(err), "service-unavailable");
        assert_non_null(xml_element_child(err, NULL, "q"));
    }
    const xml_node_t *q =
        xml_element_child(fake_got(&e->a, 3), "urn:other", "q");
    assert_non_null(q);
    assert_non_null(xml_element_child(q, "urn:other", "i"));
}

static void test_iq_pass_then_next(void **state)
{
    env_t *e = *state;
    add(e, &iq_server, 's', MODULE_PASS);
    add(e, &iq_account, 't', MODULE_HANDLED);
    start(e);
    /* The first handler passes; the next one for the same key answers. */
    fake_send(
        e->r, &e->a,
        "<iq type='get' id='1' to='localhost'><q xmlns='urn:test'/></iq>");
    assert_string_equal(e->trace.calls, "st");
    assert_string_equal(fake_attr(fake_got(&e->a, 0), "type"), "result");
}

static void test_iq_all_pass_unavailable(void **state)
{
    env_t *e = *state;
    add(e, &iq_server, 's', MODULE_PASS);
    start(e);
    fake_send(
        e->r, &e->a,
        "<iq type='get' id='1' to='localhost'><q xmlns='urn:test'/></iq>");
    assert_string_equal(e->trace.calls, "s");
    assert_string_equal(fake_error(fake_got(&e->a, 0)), "service-unavailable");
    assert_non_null(xml_element_child(fake_got(&e->a, 0), "urn:test", "q"));
}

static void test_iq_account_replies(void **state)
{
    env_t *e = *state;
    add(e, &iq_account, 't', MODULE_HANDLED);
    start(e);
    /* No 'to': RFC 6120 §8.1.2.1, the result has no 'from'. */
    fake_send(e->r, &e->a, "<iq type='set' id='1'><q xmlns='urn:test'/></iq>");
    const xml_node_t *res = fake_got(&e->a, 0);
    assert_string_equal(fake_attr(res, "type"), "result");
    assert_null(xml_element_attr(res, NULL, "from"));
    assert_string_equal(fake_attr(res, "to"), "alice@localhost/a");
    /* 'to' the own bare JID: from the bare JID. */
    fake_send(e->r, &e->a,
              "<iq type='set' id='2' to='alice@localhost'><q "
              "xmlns='urn:test'/></iq>");
    res = fake_got(&e->a, 1);
    assert_string_equal(fake_attr(res, "type"), "result");
    assert_string_equal(fake_attr(res, "from"), "alice@localhost");
    /* Another account's bare JID is not the account's: unhandled. */
    fake_send(
        e->r, &e->a,
        "<iq type='set' id='3' to='bob@localhost'><q xmlns='urn:test'/></iq>");
    res = fake_got(&e->a, 2);
    assert_string_equal(fake_error(res), "service-unavailable");
    assert_string_equal(fake_attr(res, "from"), "bob@localhost");
    /* An error to the account has no 'from' either. */
    fake_send(e->r, &e->a, "<iq type='set' id='4'><q xmlns='urn:none'/></iq>");
    res = fake_got(&e->a, 3);
    assert_string_equal(fake_error(res), "service-unavailable");
    assert_null(xml_element_attr(res, NULL, "from"));
    assert_string_equal(e->trace.calls, "tt");
}

static void test_session_events(void **state)
{
    env_t *e = *state;
    /* Presence (availability) is the roster module's, core in the
     * server; its own settings are the defaults. */
    e->descs[e->n++] = &module_roster;
    add(e, &sessions, 'x', MODULE_PASS);
    start(e);
    /* start() bound two sessions. */
    assert_string_equal(e->trace.calls, "BB");
    fake_available(e->r, &e->a, 1);
    fake_send(e->r, &e->a, "<presence type='unavailable'/>");
    assert_string_equal(e->trace.calls, "BBAU");
    router_unbind(e->r, &e->a.t);
    assert_string_equal(e->trace.calls, "BBAUE");
    /* Unbinding what is not bound fires nothing. */
    router_unbind(e->r, &e->a.t);
    assert_string_equal(e->trace.calls, "BBAUE");
}

static void test_registry(void **state)
{
    env_t *e = *state;
    add(e, &low, 'l', MODULE_PASS);
    add(e, &mid, 'm', MODULE_PASS);
    add(e, &high, 'h', MODULE_PASS);
    e->on[2] = false; /* 'mid' off */
    e->on[0] = false; /* im is core: on all the same */
    start(e);
    assert_int_equal(module_registry_count(e->mods), 3);
    assert_true(module_registry_has(e->mods, "im"));
    assert_true(module_registry_has(e->mods, "low"));
    assert_false(module_registry_has(e->mods, "mid"));
    assert_string_equal(module_registry_desc(e->mods, 2)->name, "high");
    assert_null(module_registry_desc(e->mods, 3));
    assert_int_equal(e->trace.inits, 2);
    fake_send(e->r, &e->a, "<message to='bob@localhost/b'/>");
    assert_string_equal(e->trace.calls, "hl");
    router_unbind(e->r, &e->a.t);
    router_unbind(e->r, &e->b.t);
    router_free(e->r);
    e->r = NULL;
    module_registry_free(e->mods);
    e->mods = NULL;
    /* fini in reverse order. */
    assert_string_equal(e->trace.fini_order, "hl");
}

static void test_init_refused(void **state)
{
    env_t *e = *state;
    add(e, &low, 'l', MODULE_PASS);
    add(e, &mid, 'm', MODULE_PASS);
    add(e, &high, 'h', MODULE_PASS);
    e->settings[2].refuse_init = true;
    char err[128];
    assert_null(module_registry_new(e->descs, e->n, e->on, e->sets, NULL, NULL,
                                    &e->log, err, sizeof(err)));
    assert_string_equal(err, "module mid: could not start");
    /* 'low' started and was finished; 'high' never started. */
    assert_int_equal(e->trace.inits, 2);
    assert_int_equal(e->trace.finis, 1);
    e->trace.inits = e->trace.finis;
}

/* A module's stream features reach the registry's table, in list order,
 * each carrying its module's state; a module switched off adds none. */
static void test_stream_features(void **state)
{
    env_t *e = *state;
    add(e, &sf_one, 'a', MODULE_PASS);
    add(e, &low, 'l', MODULE_PASS);
    add(e, &sf_two, 'b', MODULE_PASS);
    start(e);
    size_t n = 0;
    const stream_feature_t *f = module_registry_stream_features(e->mods, &n);
    assert_int_equal(n, 3);
    assert_string_equal(f[0].ns, "urn:test:sm");
    assert_ptr_equal(f[0].handle, fake_feature_handle);
    assert_string_equal(f[1].ns, "urn:test:csi");
    assert_string_equal(f[2].ns, "urn:test:two");
    assert_non_null(f[0].ud);
    assert_ptr_equal(f[0].ud, f[1].ud);
    assert_ptr_not_equal(f[0].ud, f[2].ud);
    assert_ptr_equal(((fake_state_t *)f[0].ud)->s, &e->settings[1]);
    assert_ptr_equal(((fake_state_t *)f[2].ud)->s, &e->settings[3]);

    /* sf_two off: only sf_one's rows. */
    char err[128];
    const module_desc_t *d[] = {&sf_one, &sf_two};
    bool on[] = {false, false};
    module_registry_t *r2 = module_registry_new(d, 2, on, NULL, NULL, NULL,
                                                &e->log, err, sizeof(err));
    assert_non_null(r2);
    assert_null(module_registry_stream_features(r2, &n));
    assert_int_equal(n, 0);
    module_registry_free(r2);
}

/* The real modules of modules.c, as the server builds them. */
static void test_real_ping_and_disco(void **state)
{
    env_t *e = *state;
    server_config_t cfg;
    char err[128];
    assert_int_equal(config_defaults(&cfg), 0);
    e->mods = modules_start(&cfg, NULL, &e->log, err, sizeof(err));
    assert_non_null(e->mods);
    e->cfg = (router_config_t){.hosts = e->hosts,
                               .host_count = 1,
                               .conflict = ROUTER_CONFLICT_NEW_WINS,
                               .max_resources = 8,
                               .modules = e->mods};
    e->r = router_new(&e->cfg, &e->log);
    fake_bind(e->r, &e->a, "alice@localhost", "a");
    fake_send(e->r, &e->a,
              "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>");
    const xml_node_t *res = fake_got(&e->a, 0);
    assert_string_equal(fake_attr(res, "type"), "result");
    assert_null(xml_element_attr(res, NULL, "from"));
    assert_int_equal(xml_element_count_children(res), 0);
    fake_send(e->r, &e->a,
              "<iq type='get' id='d' to='localhost'>"
              "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    res = fake_got(&e->a, 1);
    const char *ns = "http://jabber.org/protocol/disco#info";
    const xml_node_t *q = xml_element_child(res, ns, "query");
    assert_non_null(q);
    /* Every feature of every enabled module, once. */
    size_t want = 0, n;
    const module_desc_t *const *all = modules_all(&n);
    for (size_t i = 0; i < n; i++) {
        for (const char *const *f = all[i]->features; f && *f; f++) {
            size_t seen = 0;
            for (const xml_node_t *x = xml_element_child(q, ns, "feature");
                 x != NULL; x = xml_element_next(x, ns, "feature"))
                seen += strcmp(fake_attr(x, "var"), *f) == 0;
            assert_int_equal(seen, 1);
            want++;
        }
    }
    size_t got = 0;
    for (const xml_node_t *x = xml_element_child(q, ns, "feature"); x != NULL;
         x = xml_element_next(x, ns, "feature"))
        got++;
    assert_int_equal(got, want);
    const xml_node_t *id = xml_element_child(q, ns, "identity");
    assert_non_null(id);
    assert_string_equal(fake_attr(id, "category"), "server");
    assert_string_equal(fake_attr(id, "type"), "im");
    config_free(&cfg);
}

/* XEP-0115 §5.2 and §5.3: the examples' verification strings. */
static void test_caps_ver(void **state)
{
    (void)state;
    char ver[64];
    xml_tree_t *t =
        fake_parse("<query xmlns='http://jabber.org/protocol/disco#info'>"
                   "<identity category='client' name='Exodus 0.9.1' type='pc'/>"
                   "<feature var='http://jabber.org/protocol/caps'/>"
                   "<feature var='http://jabber.org/protocol/disco#info'/>"
                   "<feature var='http://jabber.org/protocol/disco#items'/>"
                   "<feature var='http://jabber.org/protocol/muc'/></query>");
    assert_int_equal(module_caps_ver(t->root, ver, sizeof(ver)), 0);
    assert_string_equal(ver, "QgayPKawpkPSDYmwT/WM94uAlu0=");
    xml_tree_free(t);
    t = fake_parse(
        "<query xmlns='http://jabber.org/protocol/disco#info'>"
        "<identity xml:lang='en' category='client' name='Psi 0.11' "
        "type='pc'/>"
        "<identity xml:lang='el' category='client' name='&#x3A8; 0.11' "
        "type='pc'/>"
        "<feature var='http://jabber.org/protocol/caps'/>"
        "<feature var='http://jabber.org/protocol/disco#info'/>"
        "<feature var='http://jabber.org/protocol/disco#items'/>"
        "<feature var='http://jabber.org/protocol/muc'/>"
        "<x xmlns='jabber:x:data' type='result'>"
        "<field var='FORM_TYPE' type='hidden'>"
        "<value>urn:xmpp:dataforms:softwareinfo</value></field>"
        "<field var='ip_version'><value>ipv4</value><value>ipv6</value></field>"
        "<field var='os'><value>Mac</value></field>"
        "<field var='os_version'><value>10.5.1</value></field>"
        "<field var='software'><value>Psi</value></field>"
        "<field var='software_version'><value>0.11</value></field>"
        "</x></query>");
    assert_int_equal(module_caps_ver(t->root, ver, sizeof(ver)), 0);
    assert_string_equal(ver, "q07IKJEyjvHSyhy//CH0CxmKi8w=");
    xml_tree_free(t);
    /* §5.4: a feature twice is not a valid answer. */
    t = fake_parse("<query xmlns='http://jabber.org/protocol/disco#info'>"
                   "<feature var='a'/><feature var='a'/></query>");
    assert_int_equal(module_caps_ver(t->root, ver, sizeof(ver)), -1);
    xml_tree_free(t);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_priorities_all_pass),
        T(test_handled_stops),
        T(test_im_before_low_priority),
        T(test_iq_dispatch),
        T(test_iq_pass_then_next),
        T(test_iq_all_pass_unavailable),
        T(test_iq_account_replies),
        T(test_session_events),
        T(test_registry),
        T(test_init_refused),
        T(test_stream_features),
        T(test_real_ping_and_disco),
        T(test_caps_ver),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
