/* XEP-0215 External Service Discovery (urn:xmpp:extdisco:2): the STUN and
 * TURN servers clients use for calls (Conversations, Dino, Gajim), with
 * time-limited TURN credentials made from a secret shared with the TURN
 * server the way coturn's `use-auth-secret` expects them (the "TURN REST
 * API"): username "EXPIRY:USER" (Unix seconds), password
 * base64(HMAC-SHA1(secret, username)).
 *
 * Settings (`external_services`):
 *   services = [ "stun:turn.example.org:3478",
 *                "turn:turn.example.org:3478?transport=udp",
 *                "turns:turn.example.org:5349?transport=tcp" ];
 *   secret = "...";  (TURN credentials; without it none are given)
 *   ttl = 86400;     (seconds the credentials hold)
 * A service URI is TYPE:HOST[:PORT][?transport=udp|tcp], TYPE one of stun,
 * stuns, turn, turns; one that does not parse stops the server at start.
 *
 * Only for the server's own users (an IQ to the server's domain from an
 * account of ours); a `type` attribute filters (§3.1); <credentials/>
 * names one service by type and host (§3.3), item-not-found when none
 * matches. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base64.h"
#include "base/xalloc.h"
#include "modules/modules.h"

#define NS_EXTDISCO "urn:xmpp:extdisco:2"

typedef struct extdisco_settings {
    config_strings_t services;
    char *secret;
    unsigned ttl;
} extdisco_settings_t;

static const extdisco_settings_t extdisco_defaults = {.ttl = 86400};

static const config_field_t extdisco_fields[] = {
    {"services", CONFIG_FIELD_STRINGS, offsetof(extdisco_settings_t, services),
     0, 64},
    {"secret", CONFIG_FIELD_STRING, offsetof(extdisco_settings_t, secret), 0,
     0},
    {"ttl", CONFIG_FIELD_UINT, offsetof(extdisco_settings_t, ttl), 60,
     30 * 86400},
    {NULL, 0, 0, 0, 0},
};

typedef struct service {
    char type[8];
    char host[256];
    unsigned port;
    char transport[4]; /* "" when not given */
} service_t;

typedef struct extdisco_state {
    service_t *services;
    size_t count;
} extdisco_state_t;

/* TYPE:HOST[:PORT][?transport=udp|tcp]; 0 or -1. */
static int parse_service(const char *uri, service_t *out)
{
    memset(out, 0, sizeof(*out));
    const char *colon = strchr(uri, ':');
    if (colon == NULL || (size_t)(colon - uri) >= sizeof(out->type))
        return -1;
    memcpy(out->type, uri, (size_t)(colon - uri));
    if (strcmp(out->type, "stun") != 0 && strcmp(out->type, "stuns") != 0 &&
        strcmp(out->type, "turn") != 0 && strcmp(out->type, "turns") != 0)
        return -1;
    const char *host = colon + 1;
    const char *query = strchr(host, '?');
    const char *end = query != NULL ? query : host + strlen(host);
    const char *pc = memchr(host, ':', (size_t)(end - host));
    const char *hend = pc != NULL ? pc : end;
    if (hend == host || (size_t)(hend - host) >= sizeof(out->host))
        return -1;
    memcpy(out->host, host, (size_t)(hend - host));
    bool tls = out->type[strlen(out->type) - 1] == 's';
    out->port = tls ? 5349 : 3478;
    if (pc != NULL) {
        char *e;
        unsigned long p = strtoul(pc + 1, &e, 10);
        if (e != end || p == 0 || p > 65535)
            return -1;
        out->port = (unsigned)p;
    }
    if (query != NULL) {
        if (strcmp(query, "?transport=udp") == 0)
            strcpy(out->transport, "udp");
        else if (strcmp(query, "?transport=tcp") == 0)
            strcpy(out->transport, "tcp");
        else
            return -1;
    }
    return 0;
}

static void *extdisco_init(const module_env_t *env, bool *ok)
{
    const extdisco_settings_t *s = env->settings;
    extdisco_state_t *st = xcalloc(1, sizeof(*st));
    *ok = true;
    if (s == NULL || s->services.n == 0)
        return st;
    st->services = xcalloc(s->services.n, sizeof(*st->services));
    for (size_t i = 0; i < s->services.n; i++) {
        if (parse_service(s->services.v[i], &st->services[i]) < 0) {
            LOG(env->log, LOG_ERROR, 0,
                "external_services.services: '%s' is not "
                "TYPE:HOST[:PORT][?transport=udp|tcp] with TYPE stun, stuns, "
                "turn or turns",
                s->services.v[i]);
            *ok = false;
        }
        st->count++;
    }
    if (!*ok) {
        free(st->services);
        free(st);
        return NULL;
    }
    return st;
}

static void extdisco_fini(void *state)
{
    extdisco_state_t *st = state;
    if (st != NULL)
        free(st->services);
    free(st);
}

/* Adds <service/> for sv under parent, with credentials for user when it
 * is a TURN service and a secret is set. */
static int add_service(xml_tree_t *t, xml_node_t *parent, const service_t *sv,
                       const extdisco_settings_t *s, const char *user)
{
    char port[8];
    snprintf(port, sizeof(port), "%u", sv->port);
    xml_node_t *e = xml_element_new(t, parent, NS_EXTDISCO, "service");
    int rc = e != NULL ? 0 : -1;
    if (rc == 0) {
        rc |= xml_element_set_attr(t, e, NULL, "type", sv->type);
        rc |= xml_element_set_attr(t, e, NULL, "host", sv->host);
        rc |= xml_element_set_attr(t, e, NULL, "port", port);
        if (sv->transport[0] != '\0')
            rc |= xml_element_set_attr(t, e, NULL, "transport", sv->transport);
    }
    if (rc != 0 || strncmp(sv->type, "turn", 4) != 0 || s->secret == NULL)
        return rc;
    time_t exp = time(NULL) + (time_t)s->ttl;
    char username[JID_FORMAT_BUF + 32], expires[32];
    snprintf(username, sizeof(username), "%lld:%s", (long long)exp, user);
    struct tm tm;
    gmtime_r(&exp, &tm);
    strftime(expires, sizeof(expires), "%Y-%m-%dT%H:%M:%SZ", &tm);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    char password[64];
    if (HMAC(EVP_sha1(), s->secret, (int)strlen(s->secret),
             (const unsigned char *)username, strlen(username), mac,
             &maclen) == NULL ||
        base64_encode(mac, maclen, BASE64_STD, password, sizeof(password)) < 0)
        return -1;
    rc |= xml_element_set_attr(t, e, NULL, "username", username);
    rc |= xml_element_set_attr(t, e, NULL, "password", password);
    rc |= xml_element_set_attr(t, e, NULL, "expires", expires);
    rc |= xml_element_set_attr(t, e, NULL, "restricted", "1");
    return rc;
}

static module_result_t extdisco_get(module_call_t *c, const xml_node_t *q)
{
    extdisco_state_t *st = c->state;
    const extdisco_settings_t *s = c->settings;
    /* Our own users only: the credentials are theirs. */
    if (c->from->remote || c->from->account == NULL) {
        module_reply_error(c, "auth", "forbidden");
        return MODULE_HANDLED;
    }
    char user[JID_FORMAT_BUF];
    jid_format(&c->from->jid, true, user, sizeof(user));
    bool creds = strcmp(q->name, "credentials") == 0;
    if (!creds && strcmp(q->name, "services") != 0) {
        module_reply_error(c, "modify", "bad-request");
        return MODULE_HANDLED;
    }
    /* services: an optional type filter; credentials: one <service/>
     * naming type and host. */
    const char *type = NULL, *host = NULL;
    if (creds) {
        const xml_node_t *want = xml_element_child(q, NS_EXTDISCO, "service");
        type = want != NULL ? xml_element_attr(want, NULL, "type") : NULL;
        host = want != NULL ? xml_element_attr(want, NULL, "host") : NULL;
        if (type == NULL || host == NULL) {
            module_reply_error(c, "modify", "bad-request");
            return MODULE_HANDLED;
        }
    } else {
        type = xml_element_attr(q, NULL, "type");
    }
    xml_tree_t *t;
    xml_node_t *iq = module_iq_result(c, &t);
    xml_node_t *r =
        iq != NULL ? xml_element_new(t, iq, NS_EXTDISCO, q->name) : NULL;
    if (r == NULL)
        xalloc_fail(256);
    size_t n = 0;
    for (size_t i = 0; i < st->count; i++) {
        const service_t *sv = &st->services[i];
        if ((type != NULL && strcmp(type, sv->type) != 0) ||
            (host != NULL && strcmp(host, sv->host) != 0))
            continue;
        if (add_service(t, r, sv, s, user) < 0)
            xalloc_fail(256);
        n++;
    }
    if (creds && n == 0) {
        xml_tree_free(t);
        module_reply_error(c, "cancel", "item-not-found");
        return MODULE_HANDLED;
    }
    module_send(c, t);
    return MODULE_HANDLED;
}

static const module_iq_handler_t extdisco_iq[] = {
    {MODULE_IQ_GET, NS_EXTDISCO, MODULE_TO_BIT(MODULE_TO_SERVER), extdisco_get},
    {0, NULL, 0, NULL},
};

static const char *const extdisco_features[] = {NS_EXTDISCO, NULL};

const module_desc_t module_external_services = {
    .name = "external_services",
    .default_on = true,
    .settings = extdisco_fields,
    .settings_size = sizeof(extdisco_settings_t),
    .settings_default = &extdisco_defaults,
    .init = extdisco_init,
    .fini = extdisco_fini,
    .iq = extdisco_iq,
    .features = extdisco_features,
};
