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
 * Creating accounts in-band (off by default in the issue) is not here
 * yet: it needs IQs before authentication on the client stream. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "base/xalloc.h"
#include "modules/modules.h"
#include "sasl/scram.h"

#define NS_REGISTER "jabber:iq:register"

typedef struct register_settings {
    bool allow_password_change;
} register_settings_t;

static const register_settings_t register_defaults = {.allow_password_change =
                                                          true};

static const config_field_t register_fields[] = {
    {"allow_password_change", CONFIG_FIELD_BOOL,
     offsetof(register_settings_t, allow_password_change), 0, 0},
    {NULL, 0, 0, 0, 0},
};

typedef struct register_state {
    store_t *store;
    unsigned iterations;
    bool digest_md5;
} register_state_t;

static void *register_init(const module_env_t *env, bool *ok)
{
    register_state_t *st = xcalloc(1, sizeof(*st));
    st->store = env->store;
    st->iterations = env->cfg != NULL ? env->cfg->scram_iterations : 4096;
    st->digest_md5 = env->cfg != NULL && env->cfg->sasl_digest_md5;
    *ok = true;
    return st;
}

static void register_fini(void *state)
{
    free(state);
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

static void change_free(change_t *ch)
{
    if (ch->password != NULL) {
        memset(ch->password, 0, strlen(ch->password));
        free(ch->password);
    }
    free(ch);
}

/* Thread pool: the hashes. */
static void hash_work(uv_work_t *req)
{
    change_t *ch = req->data;
    store_account_t *a = &ch->account;
    ch->ok = scram_make(SCRAM_SHA1, ch->password, ch->st->iterations,
                        &a->sha1) == 0 &&
             scram_make(SCRAM_SHA256, ch->password, ch->st->iterations,
                        &a->sha256) == 0;
    if (ch->ok && ch->st->digest_md5)
        a->has_digest_md5 =
            scram_digest_md5_hash(a->node, a->domain, ch->password,
                                  a->digest_md5) == 0;
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
};
