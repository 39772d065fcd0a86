/* XEP-0077 In-Band Registration, the part for accounts that exist: a
 * logged-in user changes its password (§3.3) with an IQ set to the
 * server (or for its account) naming its own username and the new
 * password; a get says it is registered (§3.2).
 *
 * The new SCRAM-SHA-1 and SCRAM-SHA-256 credentials (and the DIGEST-MD5
 * hash when `sasl.digest_md5` is on) are computed on libuv's thread pool
 * — a password hash must not stall the loop — then stored; the answer
 * comes once the store has committed. Sessions already open stay open.
 * Errors (§3.3): no username, or another account's, or no password:
 * bad-request; a password SASLprep refuses: not-acceptable; `register.
 * allow_password_change = false`: not-allowed. Error replies leave the
 * request out, so the password is not echoed.
 *
 * Creating accounts (§3.1), before authentication, when
 * `register.allow_registration` is on (off by default): a get gives the
 * fields (username, password), a set creates the account — hashed on the
 * thread pool like a password change — then the client authenticates on
 * the same stream. Errors: a missing or unusable username or password:
 * not-acceptable; the account exists: conflict; another account from the
 * same address within `register.registration_interval` seconds:
 * policy-violation (wait); `<remove/>`: not-allowed; registration off:
 * service-unavailable. With `register.invite_only`, the client first
 * presents an invitation (XEP-0445: <preauth xmlns='urn:xmpp:pars:0'
 * token='...'/>, made by `starlingctl invite`); the token is checked then
 * (item-not-found when unknown, used or expired) and taken in the
 * transaction that creates the account; without one the set gets
 * forbidden. The stream features say which: <register
 * xmlns='http://jabber.org/features/iq-register'/> and <register
 * xmlns='urn:xmpp:ibr-token:0'/>. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "base/xalloc.h"
#include "modules/modules.h"
#include "sasl/scram.h"

#define NS_REGISTER      "jabber:iq:register"
#define NS_FEAT_REGISTER "http://jabber.org/features/iq-register"
#define NS_PARS          "urn:xmpp:pars:0"
#define NS_IBR_TOKEN     "urn:xmpp:ibr-token:0"

typedef struct register_settings {
    bool allow_password_change;
    bool allow_registration;
    bool invite_only;
    double registration_interval;
} register_settings_t;

static const register_settings_t register_defaults = {
    .allow_password_change = true,
    .allow_registration = false,
    .invite_only = false,
    .registration_interval = 600.0,
};

static const config_field_t register_fields[] = {
    {"allow_password_change", CONFIG_FIELD_BOOL,
     offsetof(register_settings_t, allow_password_change), 0, 0},
    {"allow_registration", CONFIG_FIELD_BOOL,
     offsetof(register_settings_t, allow_registration), 0, 0},
    {"invite_only", CONFIG_FIELD_BOOL,
     offsetof(register_settings_t, invite_only), 0, 0},
    {"registration_interval", CONFIG_FIELD_DOUBLE,
     offsetof(register_settings_t, registration_interval), 0, 86400},
    {NULL, 0, 0, 0, 0},
};

/* Recent registrations by address (the rate limit), in a small table of
 * slots: an address that shares a slot with a more recent one is let
 * through, never one that registered within the interval. */
enum { ADDR_SLOTS = 1024, MAX_TOKENS = 256 };

typedef struct addr_slot {
    char addr[48];
    uint64_t at_ms;
} addr_slot_t;

/* An invitation a connection presented and the server accepted
 * (XEP-0445): used when that connection registers. */
typedef struct conn_token {
    unsigned long conn;
    char *domain, *token;
    uint64_t at_ms;
} conn_token_t;

typedef struct register_state {
    store_t *store;
    unsigned iterations;
    bool digest_md5;
    const register_settings_t *settings;
    const logger_t *log;
    addr_slot_t *slots;
    conn_token_t tokens[MAX_TOKENS];
    size_t ntokens;
} register_state_t;

static void *register_init(const module_env_t *env, bool *ok)
{
    register_state_t *st = xcalloc(1, sizeof(*st));
    st->store = env->store;
    st->iterations = env->cfg != NULL ? env->cfg->scram_iterations : 4096;
    st->digest_md5 = env->cfg != NULL && env->cfg->sasl_digest_md5;
    st->settings = env->settings != NULL ? env->settings : &register_defaults;
    st->log = env->log;
    st->slots = xcalloc(ADDR_SLOTS, sizeof(*st->slots));
    *ok = true;
    return st;
}

static void token_drop(register_state_t *st, size_t i)
{
    free(st->tokens[i].domain);
    free(st->tokens[i].token);
    st->tokens[i] = st->tokens[--st->ntokens];
}

static void register_fini(void *state)
{
    register_state_t *st = state;
    if (st == NULL)
        return;
    while (st->ntokens > 0)
        token_drop(st, 0);
    free(st->slots);
    free(st);
}

/* <iq type='error'> without the request's children (§3.3: the password
 * is not echoed), from the entity addressed. */
static void reply_error_bare(module_later_t *l, const char *type,
                             const char *cond)
{
    const xml_node_t *iq = module_later_stanza(l);
    xml_tree_t *t = xml_tree_new();
    xml_node_t *e =
        t != NULL ? xml_element_new(t, NULL, XML_NS_CLIENT, "iq") : NULL;
    xml_node_t *err =
        e != NULL ? xml_element_new(t, e, XML_NS_CLIENT, "error") : NULL;
    xml_node_t *c =
        err != NULL ? xml_element_new(
                          t, err, "urn:ietf:params:xml:ns:xmpp-stanzas", cond)
                    : NULL;
    const char *id = xml_element_attr(iq, NULL, "id");
    const char *to = xml_element_attr(iq, NULL, "to");
    const char *from = xml_element_attr(iq, NULL, "from");
    if (c == NULL || xml_element_set_attr(t, e, NULL, "type", "error") < 0 ||
        (id != NULL && xml_element_set_attr(t, e, NULL, "id", id) < 0) ||
        (to != NULL && xml_element_set_attr(t, e, NULL, "from", to) < 0) ||
        (from != NULL && xml_element_set_attr(t, e, NULL, "to", from) < 0) ||
        xml_element_set_attr(t, err, NULL, "type", type) < 0)
        xalloc_fail(256);
    module_later_send(l, t);
}

typedef struct change {
    uv_work_t req;
    register_state_t *st;
    module_later_t *l;
    char *password;
    char node[JID_FORMAT_BUF], domain[JID_FORMAT_BUF];
    store_account_t account;
    bool ok;
} change_t;

/* Frees a copy of a password, wiped first. */
static void password_free(char *password)
{
    if (password != NULL) {
        memset(password, 0, strlen(password));
        free(password);
    }
}

static void change_free(change_t *ch)
{
    password_free(ch->password);
    free(ch);
}

/* Thread pool: the credentials of a (its node and domain set) for
 * `password` — SCRAM-SHA-1, SCRAM-SHA-256, and the DIGEST-MD5 hash when
 * that mechanism is on. False when SASLprep refuses the password. */
static bool make_credentials(const register_state_t *st, const char *password,
                             store_account_t *a)
{
    bool ok =
        scram_make(SCRAM_SHA1, password, st->iterations, &a->sha1) == 0 &&
        scram_make(SCRAM_SHA256, password, st->iterations, &a->sha256) == 0;
    if (ok && st->digest_md5)
        a->has_digest_md5 = scram_digest_md5_hash(a->node, a->domain, password,
                                                  a->digest_md5) == 0;
    return ok;
}

static void hash_work(uv_work_t *req)
{
    change_t *ch = req->data;
    ch->ok = make_credentials(ch->st, ch->password, &ch->account);
}

static void on_updated(void *ud, int err)
{
    change_t *ch = ud;
    if (err != STORE_OK) {
        reply_error_bare(ch->l, "wait", "internal-server-error");
    } else {
        xml_tree_t *t;
        if (module_later_result(ch->l, &t) == NULL)
            xalloc_fail(256);
        module_later_send(ch->l, t);
    }
    change_free(ch);
}

static void hash_done(uv_work_t *req, int status)
{
    change_t *ch = req->data;
    if (status != 0 || !ch->ok) {
        reply_error_bare(ch->l, "modify", "not-acceptable");
        change_free(ch);
        return;
    }
    store_account_update(ch->st->store, &ch->account, on_updated, ch);
}

static module_result_t register_set(module_call_t *c, const xml_node_t *q)
{
    register_state_t *st = c->state;
    const register_settings_t *s = c->settings;
    /* Only our own users, at their own domain. */
    bool own_domain =
        c->addressee != MODULE_TO_SERVER ||
        (c->to->domain_len == c->from->jid.domain_len &&
         memcmp(c->to->domain, c->from->jid.domain, c->to->domain_len) == 0);
    if (c->from->remote || c->from->account == NULL || st->store == NULL ||
        !own_domain) {
        module_reply_error(c, "cancel", "not-allowed");
        return MODULE_HANDLED;
    }
    module_later_t *l = module_later_new(c);
    if (!s->allow_password_change) {
        reply_error_bare(l, "cancel", "not-allowed");
        return MODULE_HANDLED;
    }
    if (xml_element_child(q, NS_REGISTER, "remove") != NULL) {
        /* Account removal in-band (§3.2) is not offered. */
        reply_error_bare(l, "cancel", "not-allowed");
        return MODULE_HANDLED;
    }
    const xml_node_t *u = xml_element_child(q, NS_REGISTER, "username");
    const xml_node_t *p = xml_element_child(q, NS_REGISTER, "password");
    const char *user = u != NULL ? xml_element_text(c->tree, u) : NULL;
    const char *pw = p != NULL ? xml_element_text(c->tree, p) : NULL;
    jid_t uj = {0};
    char as_jid[JID_FORMAT_BUF];
    snprintf(as_jid, sizeof(as_jid), "%s@%.*s", user != NULL ? user : "",
             (int)c->from->jid.domain_len, c->from->jid.domain);
    bool same = user != NULL && user[0] != '\0' &&
                jid_parse(as_jid, strlen(as_jid), 0, &uj) == JID_OK &&
                jid_bare_equal(&uj, &c->from->jid);
    jid_clear(&uj);
    if (!same || pw == NULL || pw[0] == '\0') {
        reply_error_bare(l, "modify", "bad-request");
        return MODULE_HANDLED;
    }
    change_t *ch = xcalloc(1, sizeof(*ch));
    ch->st = st;
    ch->l = l;
    ch->password = xstrdup(pw);
    /* The sender's account (an IQ to the server names no account). */
    snprintf(ch->node, sizeof(ch->node), "%.*s", (int)c->from->jid.node_len,
             c->from->jid.node);
    snprintf(ch->domain, sizeof(ch->domain), "%.*s",
             (int)c->from->jid.domain_len, c->from->jid.domain);
    ch->account.domain = ch->domain;
    ch->account.node = ch->node;
    ch->req.data = ch;
    if (uv_queue_work(store_loop(st->store), &ch->req, hash_work, hash_done) <
        0) {
        reply_error_bare(l, "wait", "internal-server-error");
        change_free(ch);
    }
    return MODULE_HANDLED;
}

static module_result_t register_get(module_call_t *c, const xml_node_t *q)
{
    (void)q;
    if (c->from->remote || c->from->account == NULL) {
        module_reply_error(c, "cancel", "not-allowed");
        return MODULE_HANDLED;
    }
    xml_tree_t *t;
    xml_node_t *iq = module_iq_result(c, &t);
    xml_node_t *r =
        iq != NULL ? xml_element_new(t, iq, NS_REGISTER, "query") : NULL;
    xml_node_t *u =
        r != NULL ? xml_element_new(t, r, NS_REGISTER, "username") : NULL;
    if (u == NULL || xml_element_new(t, r, NS_REGISTER, "registered") == NULL ||
        xml_element_add_text(t, u, c->from->jid.node, c->from->jid.node_len) <
            0 ||
        xml_element_new(t, r, NS_REGISTER, "password") == NULL)
        xalloc_fail(256);
    module_send(c, t);
    return MODULE_HANDLED;
}

/* ------------------------------------------- before authentication */

static uint64_t now_ms(const register_state_t *st)
{
    return uv_now(store_loop(st->store));
}

static addr_slot_t *slot_of(register_state_t *st, const char *addr)
{
    return &st->slots[module_str_hash(addr) % ADDR_SLOTS];
}

/* Whether `addr` registered an account within the interval. */
static bool too_soon(register_state_t *st, const char *addr)
{
    double interval = st->settings->registration_interval;
    addr_slot_t *slot = slot_of(st, addr);
    return interval > 0 && slot->at_ms != 0 && strcmp(slot->addr, addr) == 0 &&
           now_ms(st) - slot->at_ms < (uint64_t)(interval * 1000.0);
}

static conn_token_t *token_of(register_state_t *st, unsigned long conn,
                              const char *domain)
{
    for (size_t i = 0; i < st->ntokens; i++)
        if (st->tokens[i].conn == conn &&
            strcmp(st->tokens[i].domain, domain) == 0)
            return &st->tokens[i];
    return NULL;
}

/* Remembers that connection `conn` presented `token` for `domain`. Tokens
 * of connections that never registered go after an hour (a connection
 * must authenticate within limits.handshake_timeout anyway), the oldest
 * first when the table is full. */
static void token_keep(register_state_t *st, unsigned long conn,
                       const char *domain, const char *token)
{
    uint64_t now = now_ms(st);
    for (size_t i = st->ntokens; i-- > 0;)
        if (now - st->tokens[i].at_ms > 3600 * 1000 ||
            st->tokens[i].conn == conn)
            token_drop(st, i);
    if (st->ntokens == MAX_TOKENS) {
        size_t oldest = 0;
        for (size_t i = 1; i < st->ntokens; i++)
            if (st->tokens[i].at_ms < st->tokens[oldest].at_ms)
                oldest = i;
        token_drop(st, oldest);
    }
    st->tokens[st->ntokens++] =
        (conn_token_t){conn, xstrdup(domain), xstrdup(token), now};
}

typedef struct preauth_check {
    register_state_t *st;
    module_preauth_t *p;
    char *token;
} preauth_check_t;

static void on_token_checked(void *ud, int err)
{
    preauth_check_t *pc = ud;
    if (err == STORE_OK) {
        token_keep(pc->st, pc->p->conn, pc->p->domain, pc->token);
        module_preauth_result(pc->p);
    } else if (err == STORE_ERR_NOT_FOUND) {
        module_preauth_error(pc->p, "cancel", "item-not-found",
                             "The provided token is invalid or expired");
    } else {
        module_preauth_error(pc->p, "wait", "internal-server-error", NULL);
    }
    free(pc->token);
    free(pc);
}

/* XEP-0445: <preauth xmlns='urn:xmpp:pars:0' token='...'/>. */
static void preauth_token(register_state_t *st, module_preauth_t *p,
                          const xml_node_t *el)
{
    const char *token = xml_element_attr(el, NULL, "token");
    if (token == NULL || token[0] == '\0' || strlen(token) > 256) {
        module_preauth_error(p, "modify", "bad-request", NULL);
        return;
    }
    preauth_check_t *pc = xcalloc(1, sizeof(*pc));
    pc->st = st;
    pc->p = p;
    pc->token = xstrdup(token);
    store_invite_check(st->store, p->domain, token, on_token_checked, pc);
}

/* §3.1: what registering needs. */
static void preauth_form(register_state_t *st, module_preauth_t *p)
{
    xml_tree_t *t = xml_tree_new();
    xml_node_t *iq =
        t != NULL ? xml_element_new(t, NULL, XML_NS_CLIENT, "iq") : NULL;
    xml_node_t *q =
        iq != NULL ? xml_element_new(t, iq, NS_REGISTER, "query") : NULL;
    xml_node_t *ins =
        q != NULL ? xml_element_new(t, q, NS_REGISTER, "instructions") : NULL;
    const char *id = xml_element_attr(p->iq->root, NULL, "id");
    const char *text =
        st->settings->invite_only
            ? "Choose a user name and a password. This server creates "
              "accounts for holders of an invitation only."
            : "Choose a user name and a password.";
    if (ins == NULL ||
        xml_element_set_attr(t, iq, NULL, "type", "result") < 0 ||
        (id != NULL && xml_element_set_attr(t, iq, NULL, "id", id) < 0) ||
        xml_element_set_attr(t, iq, NULL, "from", p->domain) < 0 ||
        xml_element_add_text(t, ins, text, strlen(text)) < 0 ||
        xml_element_new(t, q, NS_REGISTER, "username") == NULL ||
        xml_element_new(t, q, NS_REGISTER, "password") == NULL)
        xalloc_fail(256);
    module_preauth_answer(p, iq);
    xml_tree_free(t);
}

typedef struct creation {
    uv_work_t req;
    register_state_t *st;
    module_preauth_t *p;
    char *password, *token;
    char node[JID_PART_BUF], domain[JID_PART_BUF], addr[48];
    store_account_t account;
    bool ok;
} creation_t;

static void creation_free(creation_t *cr)
{
    password_free(cr->password);
    free(cr->token);
    free(cr);
}

static void create_hash_work(uv_work_t *req)
{
    creation_t *cr = req->data;
    cr->ok = make_credentials(cr->st, cr->password, &cr->account);
}

static void on_created(void *ud, int err)
{
    creation_t *cr = ud;
    register_state_t *st = cr->st;
    if (err == STORE_OK) {
        addr_slot_t *slot = slot_of(st, cr->addr);
        snprintf(slot->addr, sizeof(slot->addr), "%s", cr->addr);
        slot->at_ms = now_ms(st);
        if (cr->token != NULL)
            for (size_t i = 0; i < st->ntokens; i++)
                if (st->tokens[i].conn == cr->p->conn) {
                    token_drop(st, i);
                    break;
                }
        LOG(st->log, LOG_INFO, cr->p->conn, "registered %s@%s (from %s%s)",
            cr->node, cr->domain, cr->addr,
            cr->token != NULL ? ", with an invitation" : "");
        module_preauth_result(cr->p);
    } else if (err == STORE_ERR_EXISTS) {
        module_preauth_error(cr->p, "cancel", "conflict",
                             "That user name is taken");
    } else if (err == STORE_ERR_NOT_FOUND) {
        module_preauth_error(cr->p, "auth", "forbidden",
                             "The invitation has been used");
    } else {
        module_preauth_error(cr->p, "wait", "internal-server-error", NULL);
    }
    creation_free(cr);
}

static void create_hash_done(uv_work_t *req, int status)
{
    creation_t *cr = req->data;
    if (status != 0 || !cr->ok) {
        module_preauth_error(cr->p, "modify", "not-acceptable",
                             "That password cannot be used");
        creation_free(cr);
        return;
    }
    if (cr->token != NULL)
        store_invite_redeem(cr->st->store, cr->token, &cr->account, on_created,
                            cr);
    else
        store_account_create(cr->st->store, &cr->account, on_created, cr);
}

/* §3.1: <query><username/><password/></query> creates the account. */
static void preauth_register(register_state_t *st, module_preauth_t *p,
                             const xml_node_t *q)
{
    const register_settings_t *s = st->settings;
    xml_tree_t *t = p->iq;
    if (xml_element_child(q, NS_REGISTER, "remove") != NULL) {
        module_preauth_error(p, "cancel", "not-allowed", NULL);
        return;
    }
    const xml_node_t *u = xml_element_child(q, NS_REGISTER, "username");
    const xml_node_t *pw = xml_element_child(q, NS_REGISTER, "password");
    const char *user = u != NULL ? xml_element_text(t, u) : NULL;
    const char *pass = pw != NULL ? xml_element_text(t, pw) : NULL;
    creation_t *cr = xcalloc(1, sizeof(*cr));
    if (user == NULL || user[0] == '\0' ||
        jid_prepare_node(user, strlen(user), JID_STORED, cr->node, NULL) !=
            JID_OK) {
        creation_free(cr);
        module_preauth_error(p, "modify", "not-acceptable",
                             "That user name cannot be used");
        return;
    }
    if (pass == NULL || pass[0] == '\0') {
        creation_free(cr);
        module_preauth_error(p, "modify", "not-acceptable",
                             "A password is needed");
        return;
    }
    const conn_token_t *tok = token_of(st, p->conn, p->domain);
    if (s->invite_only && tok == NULL) {
        creation_free(cr);
        module_preauth_error(p, "auth", "forbidden",
                             "This server creates accounts for holders of an "
                             "invitation only");
        return;
    }
    if (tok == NULL && too_soon(st, p->address)) {
        creation_free(cr);
        module_preauth_error(p, "wait", "policy-violation",
                             "Wait a while before registering another "
                             "account");
        return;
    }
    cr->st = st;
    cr->p = p;
    cr->password = xstrdup(pass);
    cr->token = tok != NULL ? xstrdup(tok->token) : NULL;
    snprintf(cr->domain, sizeof(cr->domain), "%s", p->domain);
    snprintf(cr->addr, sizeof(cr->addr), "%s", p->address);
    cr->account.domain = cr->domain;
    cr->account.node = cr->node;
    cr->req.data = cr;
    if (uv_queue_work(store_loop(st->store), &cr->req, create_hash_work,
                      create_hash_done) < 0) {
        creation_free(cr);
        module_preauth_error(p, "wait", "internal-server-error", NULL);
    }
}

static bool register_preauth(void *state, const void *settings,
                             module_preauth_t *p)
{
    register_state_t *st = state;
    const register_settings_t *s = settings;
    const xml_node_t *iq = p->iq->root;
    const char *type = xml_element_attr(iq, NULL, "type");
    const xml_node_t *q = xml_element_child(iq, NS_REGISTER, "query");
    const xml_node_t *pre = xml_element_child(iq, NS_PARS, "preauth");
    if ((q == NULL && pre == NULL) || type == NULL || st->store == NULL)
        return false;
    bool get = strcmp(type, "get") == 0, set = strcmp(type, "set") == 0;
    if (!get && !set)
        return false; /* a result or an error: nobody asked */
    if (!s->allow_registration)
        module_preauth_error(p, "cancel", "service-unavailable", NULL);
    else if (pre != NULL && set)
        preauth_token(st, p, pre);
    else if (q != NULL && get)
        preauth_form(st, p);
    else if (q != NULL && set)
        preauth_register(st, p, q);
    else
        module_preauth_error(p, "cancel", "bad-request", NULL);
    return true;
}

/* The stream features before authentication: registration (XEP-0077
 * §4), and invitations (XEP-0445 §3). */
static int offer_register(stream_t *s, const stream_feature_t *f, buf_t *out)
{
    (void)s;
    const register_state_t *st = f->ud;
    if (st == NULL || !st->settings->allow_registration)
        return 1;
    /* Invitations only where they are needed: a second <register/> (in
     * its own namespace) makes clients such as slixmpp 1.8 skip the
     * first. */
    if (strcmp(f->ns, NS_IBR_TOKEN) == 0 && !st->settings->invite_only)
        return 1;
    return buf_append_str(out, "<register xmlns='") < 0 ||
                   buf_append_str(out, f->ns) < 0 ||
                   buf_append_str(out, "'/>") < 0
               ? -1
               : 0;
}

static const stream_feature_t register_stream_features[] = {
    {NS_FEAT_REGISTER, "register", STREAM_FEAT_BEFORE_AUTH, false,
     offer_register, NULL, NULL},
    {NS_IBR_TOKEN, "register", STREAM_FEAT_BEFORE_AUTH, false, offer_register,
     NULL, NULL},
    {NULL, NULL, 0, false, NULL, NULL, NULL},
};

#define TO_SELF                                                                \
    (MODULE_TO_BIT(MODULE_TO_SERVER) | MODULE_TO_BIT(MODULE_TO_ACCOUNT))

static const module_iq_handler_t register_iq[] = {
    {MODULE_IQ_GET, NS_REGISTER, TO_SELF, register_get},
    {MODULE_IQ_SET, NS_REGISTER, TO_SELF, register_set},
    {0, NULL, 0, NULL},
};

static const char *const register_features[] = {NS_REGISTER, NULL};

const module_desc_t module_register = {
    .name = "register",
    .default_on = true,
    .settings = register_fields,
    .settings_size = sizeof(register_settings_t),
    .settings_default = &register_defaults,
    .init = register_init,
    .fini = register_fini,
    .iq = register_iq,
    .features = register_features,
    .stream_features = register_stream_features,
    .preauth_iq = register_preauth,
};
