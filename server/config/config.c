/* config: reading starlingd's settings with libconfig, and checking them.
 *
 * The schema is a table of descriptors (one per setting: name, kind, where it
 * goes, its range), walked together with libconfig's tree. Walking the file
 * rather than looking settings up is what lets every unknown name be
 * reported: a misspelt setting silently keeping its default is the classic
 * configuration bug. */
#include "config/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "jid/jid.h"
#include "modules/modules.h"
#include "net/tls.h"

/* ------------------------------------------------------------ defaults */

#define DEFAULT_STORAGE "starling.db"

static const char *const conflict_names[] = {"new-wins", "old-wins", NULL};
static const char *const log_level_names[] = {"error", "warn", "info", "debug",
                                              NULL};

const char *config_log_level_name(config_log_level_t l)
{
    if ((unsigned)l > CONFIG_LOG_DEBUG)
        return "?";
    return log_level_names[l];
}

const char *config_conflict_name(config_conflict_t c)
{
    if ((unsigned)c > CONFIG_CONFLICT_OLD_WINS)
        return "?";
    return conflict_names[c];
}

/* The CONFIG_FIELD_STRINGS and _STRING settings of module m's settings
 * struct `set`,
 * each in turn: freed (and emptied) when `copy` is false, else replaced by
 * a deep copy (false when out of memory, with what was not copied
 * emptied). */
static bool module_strings(size_t m, void *set, bool copy)
{
    size_t count;
    bool ok = true;
    const module_desc_t *mod = modules_all(&count)[m];
    for (const config_field_t *f = mod->settings; f != NULL && f->name != NULL;
         f++) {
        if (f->kind == CONFIG_FIELD_STRING) {
            char **str = (char **)(void *)((char *)set + f->offset);
            char *src = *str;
            *str = NULL;
            if (!copy)
                free(src);
            else if (ok && src != NULL)
                ok = (*str = strdup(src)) != NULL;
            continue;
        }
        if (f->kind != CONFIG_FIELD_STRINGS)
            continue;
        config_strings_t *v = (config_strings_t *)((char *)set + f->offset);
        char **src = v->v;
        size_t n = v->n;
        v->v = NULL;
        v->n = 0;
        if (!copy) {
            for (size_t i = 0; i < n; i++)
                free(src[i]);
            free(src);
            continue;
        }
        if (!ok || n == 0)
            continue;
        v->v = calloc(n, sizeof(*v->v));
        ok = v->v != NULL;
        for (; ok && v->n < n; v->n++)
            ok = (v->v[v->n] = strdup(src[v->n])) != NULL;
    }
    return ok;
}

static void free_components(config_component_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].domain);
        free(v[i].secret);
        free(v[i].name);
    }
    free(v);
}

void config_free(server_config_t *c)
{
    if (c == NULL)
        return;
    free(c->path);
    for (size_t i = 0; i < c->host_count; i++)
        free(c->hosts[i]);
    free(c->hosts);
    for (size_t i = 0; i < c->c2s_count; i++)
        free(c->c2s[i].address);
    free(c->c2s);
    for (size_t i = 0; i < c->s2s_count; i++)
        free(c->s2s[i].address);
    free(c->s2s);
    for (size_t i = 0; i < c->s2s_route_count; i++) {
        free(c->s2s_routes[i].domain);
        free(c->s2s_routes[i].host);
    }
    free(c->s2s_routes);
    for (size_t i = 0; i < c->component_listen_count; i++)
        free(c->component_listen[i].address);
    free(c->component_listen);
    free_components(c->components, c->component_count);
    free(c->s2s_ca_file);
    free(c->s2s_dns);
    free(c->s2s_dialback_secret);
    free(c->cert_file);
    free(c->key_file);
    free(c->client_ca_file);
    free(c->storage_path);
    for (size_t i = 0; c->module_settings != NULL && i < c->module_count; i++)
        if (c->module_settings[i] != NULL) {
            module_strings(i, c->module_settings[i], false);
            free(c->module_settings[i]);
        }
    free(c->module_settings);
    free(c->module_on);
    memset(c, 0, sizeof(*c));
}

/* Allocates the module arrays of c for the list of modules.c, each module
 * on by its default and with its default settings. */
static int modules_defaults(server_config_t *c)
{
    size_t n;
    const module_desc_t *const *mods = modules_all(&n);

    c->module_on = calloc(n + 1, sizeof(*c->module_on));
    c->module_settings = calloc(n + 1, sizeof(*c->module_settings));
    if (c->module_on == NULL || c->module_settings == NULL)
        return -1;
    c->module_count = n;
    for (size_t i = 0; i < n; i++) {
        c->module_on[i] = mods[i]->core || mods[i]->default_on;
        if (mods[i]->settings_size == 0)
            continue;
        c->module_settings[i] = malloc(mods[i]->settings_size);
        if (c->module_settings[i] == NULL)
            return -1;
        memcpy(c->module_settings[i], mods[i]->settings_default,
               mods[i]->settings_size);
    }
    return 0;
}

int config_defaults(server_config_t *c)
{
    memset(c, 0, sizeof(*c));

    c->hosts = calloc(1, sizeof(*c->hosts));
    c->c2s = calloc(2, sizeof(*c->c2s));
    if (c->hosts == NULL || c->c2s == NULL)
        goto nomem;
    c->hosts[0] = strdup("localhost");
    if (c->hosts[0] == NULL)
        goto nomem;
    c->host_count = 1;
    c->c2s[0] = (config_listener_t){strdup("127.0.0.1"), 5222, false, 0};
    c->c2s[1] = (config_listener_t){strdup("127.0.0.1"), 5223, true, 0};
    c->c2s_count = 2;
    if (c->c2s[0].address == NULL || c->c2s[1].address == NULL)
        goto nomem;

    c->s2s = calloc(1, sizeof(*c->s2s));
    if (c->s2s == NULL)
        goto nomem;
    c->s2s[0] = (config_listener_t){strdup("0.0.0.0"), 5269, false, 0};
    c->s2s_count = 1;
    if (c->s2s[0].address == NULL)
        goto nomem;
    c->component_listen = calloc(1, sizeof(*c->component_listen));
    if (c->component_listen == NULL)
        goto nomem;
    c->component_listen[0] =
        (config_listener_t){strdup("127.0.0.1"), 5347, false, 0};
    c->component_listen_count = 1;
    if (c->component_listen[0].address == NULL)
        goto nomem;

    c->s2s_enabled = false;
    c->s2s_dialback = true;
    c->s2s_secure_auth = false;
    c->s2s_require_encryption = true;
    c->s2s_connect_timeout = 10.0;
    c->s2s_idle_timeout = 600.0;
    c->s2s_queue_max = 1000;

    c->legacy_ciphers = false;
    c->ticket_lifetime = 43200;

    c->require_encryption = true;
    c->allow_plain_loopback = false;
    c->resource_conflict = CONFIG_CONFLICT_NEW_WINS;
    c->max_resources = 32;
    c->sm_enabled = true;
    c->sm_max_unacked = 1000;
    c->sm_resume_timeout = 300.0;
    c->csi_enabled = true;

    c->offer_plus = true;
    c->sasl_plain = true;
    c->sasl_external = false;
    c->sasl_digest_md5 = false;
    c->scram_iterations = 4096;
    c->max_auth_failures = 3;
    c->auth_failure_delay = 1.0;

    c->max_stanza_size = 256 * 1024;
    c->max_stanza_size_preauth = 16 * 1024;
    c->max_depth = 64;
    c->max_attrs = 64;
    c->idle_timeout = 300.0;
    c->ping_timeout = 60.0;
    c->close_timeout = 10.0;
    c->handshake_timeout = 60.0;
    c->rate_limit = 64 * 1024;
    c->rate_burst = 256 * 1024;
    c->max_connections_per_address = 200;
    c->max_unauthenticated_per_address = 30;

    c->storage_path = strdup(DEFAULT_STORAGE);
    if (c->storage_path == NULL)
        goto nomem;
    c->log_level = CONFIG_LOG_INFO;
    if (modules_defaults(c) < 0)
        goto nomem;
    return 0;

nomem:
    config_free(c);
    return -1;
}

/* -------------------------------------------------------------- schema */

typedef enum kind {
    K_GROUP,
    K_BOOL,
    K_UINT,      /* unsigned */
    K_INT,       /* int */
    K_SIZE,      /* size_t */
    K_DOUBLE,    /* double; integers are accepted too ("idle_timeout = 300") */
    K_PATH,      /* char *, required, resolved against the file's directory */
    K_PATH_OPT,  /* as K_PATH; "" means none (NULL) */
    K_ADDRESS,   /* char *, a numeric IPv4 or IPv6 address */
    K_CONFLICT,  /* config_conflict_t */
    K_LOG_LEVEL, /* config_log_level_t */
    K_HOSTS,     /* the hosts array, on the server_config_t */
    K_LISTENERS, /* a list of listener groups, on the server_config_t */
    K_MODULES,   /* the list of module names, on the server_config_t */
    K_S2S_LISTENERS,       /* s2s.listen, on the server_config_t */
    K_ROUTES,              /* s2s.routes, on the server_config_t */
    K_STRING_OPT,          /* char *; "" means none (NULL) */
    K_COMPONENT_LISTENERS, /* component.listen, on the server_config_t */
    K_COMPONENTS,          /* component.domains, on the server_config_t */
} kind_t;

typedef struct desc {
    const char *name;
    kind_t kind;
    size_t offset; /* of the field in the struct being filled */
    double min, max;
    const struct desc *members; /* K_GROUP: its settings, name NULL ends */
    bool required;              /* inside a listener: must be given */
} desc_t;

#define F(field) offsetof(server_config_t, field)
#define L(field) offsetof(config_listener_t, field)

/* Settings of one listener entry. */
static const desc_t listener_desc[] = {
    {"address", K_ADDRESS, L(address), 0, 0, NULL, true},
    {"port", K_INT, L(port), 0, 65535, NULL, true},
    {"direct_tls", K_BOOL, L(direct_tls), 0, 0, NULL, false},
    {NULL, 0, 0, 0, 0, NULL, false},
};

static const desc_t c2s_desc[] = {
    {"listen", K_LISTENERS, F(c2s), 0, 0, NULL, false},
    {"require_encryption", K_BOOL, F(require_encryption), 0, 0, NULL, false},
    {"allow_plain_loopback", K_BOOL, F(allow_plain_loopback), 0, 0, NULL,
     false},
    {"resource_conflict", K_CONFLICT, F(resource_conflict), 0, 0, NULL, false},
    {"max_resources", K_UINT, F(max_resources), 1, 1024, NULL, false},
    {"stream_management", K_BOOL, F(sm_enabled), 0, 0, NULL, false},
    {"max_unacked", K_UINT, F(sm_max_unacked), 10, 1000000, NULL, false},
    {"resume_timeout", K_DOUBLE, F(sm_resume_timeout), 0, 3600, NULL, false},
    {"client_state_indication", K_BOOL, F(csi_enabled), 0, 0, NULL, false},
    {NULL, 0, 0, 0, 0, NULL, false},
};

static const desc_t s2s_desc[] = {
    {"enabled", K_BOOL, F(s2s_enabled), 0, 0, NULL, false},
    {"listen", K_S2S_LISTENERS, F(s2s), 0, 0, NULL, false},
    {"routes", K_ROUTES, F(s2s_routes), 0, 0, NULL, false},
    {"dialback", K_BOOL, F(s2s_dialback), 0, 0, NULL, false},
    {"secure_auth", K_BOOL, F(s2s_secure_auth), 0, 0, NULL, false},
    {"require_encryption", K_BOOL, F(s2s_require_encryption), 0, 0, NULL,
     false},
    {"ca_file", K_PATH_OPT, F(s2s_ca_file), 0, 0, NULL, false},
    {"dns", K_STRING_OPT, F(s2s_dns), 0, 0, NULL, false},
    {"dialback_secret", K_STRING_OPT, F(s2s_dialback_secret), 0, 0, NULL,
     false},
    {"connect_timeout", K_DOUBLE, F(s2s_connect_timeout), 1, 600, NULL, false},
    {"idle_timeout", K_DOUBLE, F(s2s_idle_timeout), 0, 86400, NULL, false},
    {"queue_max", K_UINT, F(s2s_queue_max), 1, 1000000, NULL, false},
    {NULL, 0, 0, 0, 0, NULL, false},
};

static const desc_t component_desc[] = {
    {"listen", K_COMPONENT_LISTENERS, F(component_listen), 0, 0, NULL, false},
    {"domains", K_COMPONENTS, F(components), 0, 0, NULL, false},
    {NULL, 0, 0, 0, 0, NULL, false},
};

#define CO(field) offsetof(config_component_t, field)

/* Settings of one component.domains entry. */
static const desc_t component_entry_desc[] = {
    {"domain", K_STRING_OPT, CO(domain), 0, 0, NULL, true},
    {"secret", K_STRING_OPT, CO(secret), 0, 0, NULL, true},
    {"name", K_STRING_OPT, CO(name), 0, 0, NULL, false},
    {NULL, 0, 0, 0, 0, NULL, false},
};

#define R(field) offsetof(config_route_t, field)

/* Settings of one s2s.routes entry. */
static const desc_t route_desc[] = {
    {"domain", K_STRING_OPT, R(domain), 0, 0, NULL, true},
    {"host", K_STRING_OPT, R(host), 0, 0, NULL, true},
    {"port", K_INT, R(port), 1, 65535, NULL, false},
    {"direct_tls", K_BOOL, R(direct_tls), 0, 0, NULL, false},
    {NULL, 0, 0, 0, 0, NULL, false},
};

static const desc_t tls_desc[] = {
    {"cert", K_PATH_OPT, F(cert_file), 0, 0, NULL, false},
    {"key", K_PATH_OPT, F(key_file), 0, 0, NULL, false},
    {"client_ca", K_PATH_OPT, F(client_ca_file), 0, 0, NULL, false},
    {"legacy_ciphers", K_BOOL, F(legacy_ciphers), 0, 0, NULL, false},
    {"ticket_lifetime", K_UINT, F(ticket_lifetime), 0, 604800, NULL, false},
    {NULL, 0, 0, 0, 0, NULL, false},
};

static const desc_t sasl_desc[] = {
    {"plain", K_BOOL, F(sasl_plain), 0, 0, NULL, false},
    {"external", K_BOOL, F(sasl_external), 0, 0, NULL, false},
    {"digest_md5", K_BOOL, F(sasl_digest_md5), 0, 0, NULL, false},
    {"offer_plus", K_BOOL, F(offer_plus), 0, 0, NULL, false},
    /* RFC 7677 §4: at least 4096; the ceiling keeps one login from costing
     * the server seconds of CPU. */
    {"scram_iterations", K_UINT, F(scram_iterations), 4096, 10000000, NULL,
     false},
    {"max_auth_failures", K_UINT, F(max_auth_failures), 2, 5, NULL, false},
    {"auth_failure_delay", K_DOUBLE, F(auth_failure_delay), 0, 60, NULL, false},
    {NULL, 0, 0, 0, 0, NULL, false},
};

static const desc_t limits_desc[] = {
    /* RFC 6120 §13.12: a server must accept stanzas of at least 10000
     * bytes. */
    {"max_stanza_size", K_SIZE, F(max_stanza_size), 10000, 64 << 20, NULL,
     false},
    {"max_stanza_size_preauth", K_SIZE, F(max_stanza_size_preauth), 1024,
     64 << 20, NULL, false},
    {"max_depth", K_UINT, F(max_depth), 8, 1024, NULL, false},
    {"max_attrs", K_UINT, F(max_attrs), 8, 1024, NULL, false},
    {"idle_timeout", K_DOUBLE, F(idle_timeout), 0, 86400, NULL, false},
    {"ping_timeout", K_DOUBLE, F(ping_timeout), 0, 3600, NULL, false},
    {"close_timeout", K_DOUBLE, F(close_timeout), 0.1, 600, NULL, false},
    {"handshake_timeout", K_DOUBLE, F(handshake_timeout), 1, 3600, NULL, false},
    {"rate_limit", K_SIZE, F(rate_limit), 0, 1 << 30, NULL, false},
    {"rate_burst", K_SIZE, F(rate_burst), 1, 1 << 30, NULL, false},
    {"max_connections_per_address", K_UINT, F(max_connections_per_address), 1,
     1000000, NULL, false},
    {"max_unauthenticated_per_address", K_UINT,
     F(max_unauthenticated_per_address), 1, 1000000, NULL, false},
    {NULL, 0, 0, 0, 0, NULL, false},
};

static const desc_t storage_desc[] = {
    {"path", K_PATH, F(storage_path), 0, 0, NULL, false},
    {NULL, 0, 0, 0, 0, NULL, false},
};

static const desc_t log_desc[] = {
    {"level", K_LOG_LEVEL, F(log_level), 0, 0, NULL, false},
    {NULL, 0, 0, 0, 0, NULL, false},
};

/* Besides these, the root holds a group per module that has settings,
 * named after it (modules_all(), apply_group()). */
static const desc_t root_desc[] = {
    {"hosts", K_HOSTS, 0, 0, 0, NULL, false},
    {"modules", K_MODULES, 0, 0, 0, NULL, false},
    {"c2s", K_GROUP, 0, 0, 0, c2s_desc, false},
    {"s2s", K_GROUP, 0, 0, 0, s2s_desc, false},
    {"component", K_GROUP, 0, 0, 0, component_desc, false},
    {"tls", K_GROUP, 0, 0, 0, tls_desc, false},
    {"sasl", K_GROUP, 0, 0, 0, sasl_desc, false},
    {"limits", K_GROUP, 0, 0, 0, limits_desc, false},
    {"storage", K_GROUP, 0, 0, 0, storage_desc, false},
    {"log", K_GROUP, 0, 0, 0, log_desc, false},
    {NULL, 0, 0, 0, 0, NULL, false},
};

/* -------------------------------------------------------------- loading */

typedef struct loader {
    const char *path; /* as the caller gave it, for messages */
    char *dir;        /* absolute directory of the file */
    server_config_t *c;
    char *err;
    size_t errlen;
} loader_t;

/* Writes "FILE:LINE: " (or "FILE: " for line 0) and the message into the
 * loader's err. */
static void vfail_at(loader_t *l, const char *file, unsigned line,
                     const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
static void vfail_at(loader_t *l, const char *file, unsigned line,
                     const char *fmt, va_list ap)
{
    int n;

    if (l->errlen == 0)
        return;
    if (line > 0)
        n = snprintf(l->err, l->errlen, "%s:%u: ", file, line);
    else
        n = snprintf(l->err, l->errlen, "%s: ", file);
    if (n < 0 || (size_t)n >= l->errlen)
        return;
    vsnprintf(l->err + n, l->errlen - (size_t)n, fmt, ap);
}

/* An error about setting s (NULL: about the file); returns -1 so that
 * callers can `return fail(...)`. */
static int fail(loader_t *l, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(loader_t *l, const config_setting_t *s, const char *fmt, ...)
{
    const char *file = l->path;
    unsigned line = 0;
    va_list ap;

    if (s != NULL) {
        /* A setting from an @include'd file names that file. */
        if (config_setting_source_file(s) != NULL)
            file = config_setting_source_file(s);
        line = config_setting_source_line(s);
    }
    va_start(ap, fmt);
    vfail_at(l, file, line, fmt, ap);
    va_end(ap);
    return -1;
}

/* An error at a line of the main file. */
static int fail_line(loader_t *l, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_line(loader_t *l, unsigned line, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vfail_at(l, l->path, line, fmt, ap);
    va_end(ap);
    return -1;
}

static const char *type_name(int type)
{
    switch (type) {
    case CONFIG_TYPE_GROUP:
        return "a group";
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        return "an integer";
    case CONFIG_TYPE_FLOAT:
        return "a float";
    case CONFIG_TYPE_STRING:
        return "a string";
    case CONFIG_TYPE_BOOL:
        return "a boolean";
    case CONFIG_TYPE_ARRAY:
        return "an array";
    case CONFIG_TYPE_LIST:
        return "a list";
    default:
        return "nothing";
    }
}

static int wrong_type(loader_t *l, const config_setting_t *s, const char *name,
                      const char *expected)
{
    return fail(l, s, "%s: expected %s, got %s", name, expected,
                type_name(config_setting_type(s)));
}

static int nomem(loader_t *l)
{
    return fail(l, NULL, "out of memory");
}

/* Joins a relative path to the file's directory; absolute paths stay. */
static char *resolve(const loader_t *l, const char *p)
{
    char *out;
    size_t n;

    if (p[0] == '/')
        return strdup(p);
    n = strlen(l->dir) + 1 + strlen(p) + 1;
    out = malloc(n);
    if (out != NULL)
        snprintf(out, n, "%s/%s", l->dir, p);
    return out;
}

static bool is_integer(const config_setting_t *s)
{
    return config_setting_type(s) == CONFIG_TYPE_INT ||
           config_setting_type(s) == CONFIG_TYPE_INT64;
}

/* Picks one of a NULL-terminated list of names. */
static int pick_name(loader_t *l, const config_setting_t *s, const char *name,
                     const char *const *names, int *out)
{
    const char *v = config_setting_get_string(s);
    char choices[128] = "";

    for (int i = 0; names[i] != NULL; i++) {
        if (strcmp(v, names[i]) == 0) {
            *out = i;
            return 0;
        }
        if (i > 0)
            strncat(choices, ", ", sizeof(choices) - strlen(choices) - 1);
        strncat(choices, names[i], sizeof(choices) - strlen(choices) - 1);
    }
    return fail(l, s, "%s: '%s' is not one of %s", name, v, choices);
}

static int apply_group(loader_t *l, const config_setting_t *group,
                       const desc_t *table, void *base, const char *prefix);
static int apply_one(loader_t *l, const config_setting_t *s, const desc_t *d,
                     void *base, const char *name);

static int apply_hosts(loader_t *l, const config_setting_t *s, const char *name)
{
    server_config_t *c = l->c;
    int n;
    char **hosts;

    if (!config_setting_is_array(s) && !config_setting_is_list(s))
        return wrong_type(l, s, name, "an array of strings");
    n = config_setting_length(s);
    if (n == 0)
        return fail(l, s, "%s: at least one host is required", name);
    hosts = calloc((size_t)n, sizeof(*hosts));
    if (hosts == NULL)
        return nomem(l);
    for (size_t i = 0; i < c->host_count; i++)
        free(c->hosts[i]);
    free(c->hosts);
    c->hosts = hosts;
    c->host_count = 0;

    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const config_setting_t *at = config_setting_source_line(e) ? e : s;
        char prepared[JID_PART_BUF];
        const char *v;
        int rc;

        if (config_setting_type(e) != CONFIG_TYPE_STRING)
            return wrong_type(l, at, name, "an array of strings");
        v = config_setting_get_string(e);
        /* Stored-string rules: a served domain is an identifier we keep and
         * hand out, so unassigned code points have no place in it. */
        rc = jid_prepare_domain(v, strlen(v), JID_STORED, prepared, NULL);
        if (rc != JID_OK)
            return fail(l, at, "%s: '%s' is not a valid domain (%s)", name, v,
                        jid_strerror(rc));
        for (size_t j = 0; j < c->host_count; j++)
            if (strcmp(c->hosts[j], prepared) == 0)
                return fail(l, at, "%s: '%s' is listed twice", name, prepared);
        c->hosts[c->host_count] = strdup(prepared);
        if (c->hosts[c->host_count] == NULL)
            return nomem(l);
        c->host_count++;
    }
    return 0;
}

static int apply_listeners(loader_t *l, const config_setting_t *s,
                           const char *name, config_listener_t **list,
                           size_t *count)
{
    config_listener_t *ls;
    int n;

    /* An array cannot hold groups in libconfig, so only a list can be
     * right; an empty list turns the listeners off. */
    if (!config_setting_is_list(s) &&
        !(config_setting_is_array(s) && config_setting_length(s) == 0))
        return wrong_type(l, s, name, "a list of groups ( { ... }, ... )");
    n = config_setting_length(s);
    ls = calloc(n > 0 ? (size_t)n : 1, sizeof(*ls));
    if (ls == NULL)
        return nomem(l);
    for (size_t i = 0; i < *count; i++)
        free((*list)[i].address);
    free(*list);
    *list = ls;
    *count = 0;

    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        char prefix[64];

        /* Names in messages are cut rather than overflow; a cut name still
         * comes with its line. */
        if (snprintf(prefix, sizeof(prefix), "%s[%d]", name, i) < 0)
            prefix[0] = '\0';
        if (!config_setting_is_group(e))
            return wrong_type(l, e, prefix, "a group { address; port; }");
        /* Counted before filling, so config_free() releases a half-filled
         * entry when a later setting fails. */
        (*count)++;
        ls[i].line = config_setting_source_line(e);
        if (apply_group(l, e, listener_desc, &ls[i], prefix) < 0)
            return -1;
    }
    return 0;
}

/* A list of groups `( { domain = "..."; ... }, ... )` whose entries each
 * name a domain (s2s.routes, component.domains): the entries go through
 * `desc` into a new zeroed array of `size`-byte structs (*out; *count
 * counts them as they are filled, so that the caller's free releases a
 * half-filled one; the caller has freed the old array). Each entry's
 * `line` (an int at line_off) is set; its domain (a char * at domain_off)
 * and a second required string (at other_off, `other` in messages) must
 * not be empty; the domain is nameprep'd and must be unique (else `dup`). */
typedef struct domain_list {
    const desc_t *desc;
    size_t size, line_off, domain_off, other_off;
    const char *shape, *other, *dup;
} domain_list_t;

#define FIELD(base, off, type) (*(type *)(void *)((char *)(base) + (off)))

static int apply_domain_list(loader_t *l, const config_setting_t *s,
                             const char *name, const domain_list_t *dl,
                             void **out, size_t *count)
{
    if (!config_setting_is_list(s) &&
        !(config_setting_is_array(s) && config_setting_length(s) == 0))
        return wrong_type(l, s, name, "a list of groups ( { ... }, ... )");
    int n = config_setting_length(s);
    char *v = calloc(n > 0 ? (size_t)n : 1, dl->size);
    if (v == NULL)
        return nomem(l);
    *out = v;
    *count = 0;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        void *entry = v + (size_t)i * dl->size;
        char prefix[64];
        if (snprintf(prefix, sizeof(prefix), "%s[%d]", name, i) < 0)
            prefix[0] = '\0';
        if (!config_setting_is_group(e))
            return wrong_type(l, e, prefix, dl->shape);
        (*count)++;
        FIELD(entry, dl->line_off, int) = config_setting_source_line(e);
        if (apply_group(l, e, dl->desc, entry, prefix) < 0)
            return -1;
        char **domain = &FIELD(entry, dl->domain_off, char *);
        if (*domain == NULL || FIELD(entry, dl->other_off, char *) == NULL)
            return fail(l, e, "%s: domain and %s must not be empty", prefix,
                        dl->other);
        char prepared[JID_PART_BUF];
        int rc = jid_prepare_domain(*domain, strlen(*domain), JID_STORED,
                                    prepared, NULL);
        if (rc != JID_OK)
            return fail(l, e, "%s: domain '%s' is not a valid domain (%s)",
                        prefix, *domain, jid_strerror(rc));
        for (int j = 0; j < i; j++)
            if (strcmp(FIELD(v + (size_t)j * dl->size, dl->domain_off, char *),
                       prepared) == 0)
                return fail(l, e, "%s: '%s' %s", prefix, prepared, dl->dup);
        char *d = strdup(prepared);
        if (d == NULL)
            return nomem(l);
        free(*domain);
        *domain = d;
    }
    return 0;
}

/* s2s.routes = ( { domain = "example.net"; host = "10.0.0.2"; port = 5269;
 * }, ... ): each domain once, nameprep'd. */
static int apply_routes(loader_t *l, const config_setting_t *s,
                        const char *name)
{
    static const domain_list_t dl = {
        route_desc,
        sizeof(config_route_t),
        offsetof(config_route_t, line),
        offsetof(config_route_t, domain),
        offsetof(config_route_t, host),
        "a group { domain; host; port; }",
        "host",
        "has a route already",
    };
    server_config_t *c = l->c;
    for (size_t i = 0; i < c->s2s_route_count; i++) {
        free(c->s2s_routes[i].domain);
        free(c->s2s_routes[i].host);
    }
    free(c->s2s_routes);
    c->s2s_routes = NULL;
    c->s2s_route_count = 0;
    void *v = NULL;
    int rc = apply_domain_list(l, s, name, &dl, &v, &c->s2s_route_count);
    c->s2s_routes = v;
    for (size_t i = 0; rc == 0 && i < c->s2s_route_count; i++)
        if (c->s2s_routes[i].port == 0)
            c->s2s_routes[i].port = c->s2s_routes[i].direct_tls ? 5270 : 5269;
    return rc;
}

/* component.domains = ( { domain = "bot.example.org"; secret = "...";
 * name = "Bot"; }, ... ): each domain once, nameprep'd, with a secret. */
static int apply_components(loader_t *l, const config_setting_t *s,
                            const char *name)
{
    static const domain_list_t dl = {
        component_entry_desc,
        sizeof(config_component_t),
        offsetof(config_component_t, line),
        offsetof(config_component_t, domain),
        offsetof(config_component_t, secret),
        "a group { domain; secret; }",
        "secret",
        "is listed twice",
    };
    server_config_t *c = l->c;
    free_components(c->components, c->component_count);
    c->components = NULL;
    c->component_count = 0;
    void *v = NULL;
    int rc = apply_domain_list(l, s, name, &dl, &v, &c->component_count);
    c->components = v;
    return rc;
}

/* `modules = [ "ping", ... ]`: exactly the modules named are on (and the
 * core ones, which need not be named). */
static int apply_modules(loader_t *l, const config_setting_t *s,
                         const char *name)
{
    server_config_t *c = l->c;
    size_t count;
    const module_desc_t *const *mods = modules_all(&count);
    bool *on;
    int n;

    if (!config_setting_is_array(s) && !config_setting_is_list(s))
        return wrong_type(l, s, name, "an array of strings");
    if (c->module_count != count)
        return fail(l, s, "%s: internal error: no module defaults", name);
    on = calloc(count + 1, sizeof(*on));
    if (on == NULL)
        return nomem(l);
    n = config_setting_length(s);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const config_setting_t *at = config_setting_source_line(e) ? e : s;
        const char *v;
        size_t m;

        if (config_setting_type(e) != CONFIG_TYPE_STRING) {
            free(on);
            return wrong_type(l, at, name, "an array of strings");
        }
        v = config_setting_get_string(e);
        for (m = 0; m < count && strcmp(mods[m]->name, v) != 0; m++)
            ;
        if (m == count) {
            char known[256] = "";

            for (size_t k = 0; k < count; k++) {
                if (mods[k]->core)
                    continue;
                if (known[0] != '\0')
                    strncat(known, ", ", sizeof(known) - strlen(known) - 1);
                strncat(known, mods[k]->name,
                        sizeof(known) - strlen(known) - 1);
            }
            free(on);
            return fail(l, at, "%s: unknown module '%s' (known: %s)", name, v,
                        known);
        }
        if (on[m]) {
            free(on);
            return fail(l, at, "%s: '%s' is listed twice", name, v);
        }
        on[m] = true;
    }
    for (size_t m = 0; m < count; m++)
        c->module_on[m] = on[m] || mods[m]->core;
    free(on);
    return 0;
}

/* A CONFIG_FIELD_STRINGS setting: a list or array of non-empty strings,
 * f->min..f->max of them; replaces what *v held. */
static int apply_strings(loader_t *l, const config_setting_t *s,
                         const config_field_t *f, config_strings_t *v,
                         const char *name)
{
    if (!config_setting_is_list(s) && !config_setting_is_array(s))
        return wrong_type(l, s, name, "a list of strings [ \"...\", ... ]");
    int n = config_setting_length(s);
    if ((double)n < f->min || (double)n > f->max)
        return fail(l, s, "%s: %d strings, not %g..%g", name, n, f->min,
                    f->max);
    char **out = calloc((size_t)n + 1, sizeof(*out));
    if (out == NULL)
        return nomem(l);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const char *str = config_setting_type(e) == CONFIG_TYPE_STRING
                              ? config_setting_get_string(e)
                              : NULL;
        if (str == NULL || str[0] == '\0' || (out[i] = strdup(str)) == NULL) {
            for (int k = 0; k < i; k++)
                free(out[k]);
            free(out);
            if (str == NULL || str[0] == '\0')
                return fail(l, e, "%s: each element must be a non-empty string",
                            name);
            return nomem(l);
        }
    }
    for (size_t i = 0; i < v->n; i++)
        free(v->v[i]);
    free(v->v);
    v->v = out;
    v->n = (size_t)n;
    return 0;
}

/* The group of module m's settings, through its config_field_t table. */
static int apply_module_group(loader_t *l, const config_setting_t *group,
                              size_t m, const char *prefix)
{
    size_t count;
    const module_desc_t *mod = modules_all(&count)[m];
    int n;

    if (!config_setting_is_group(group))
        return wrong_type(l, group, prefix, "a group { ... }");
    if (l->c->module_count != count || l->c->module_settings[m] == NULL)
        return fail(l, group, "%s: internal error: no module defaults", prefix);
    n = config_setting_length(group);
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
        const char *sname = config_setting_name(s);
        const config_field_t *f = mod->settings;
        desc_t d = {0};
        char name[128];

        if (snprintf(name, sizeof(name), "%s.%s", prefix, sname) < 0)
            name[0] = '\0';
        while (f != NULL && f->name != NULL && strcmp(f->name, sname) != 0)
            f++;
        if (f == NULL || f->name == NULL)
            return fail(l, s, "unknown setting '%s'", name);
        if (f->kind == CONFIG_FIELD_STRINGS) {
            if (apply_strings(l, s, f,
                              (config_strings_t
                                   *)(void *)((char *)l->c->module_settings[m] +
                                              f->offset),
                              name) < 0)
                return -1;
            continue;
        }
        d.name = f->name;
        d.kind = f->kind == CONFIG_FIELD_BOOL     ? K_BOOL
                 : f->kind == CONFIG_FIELD_UINT   ? K_UINT
                 : f->kind == CONFIG_FIELD_STRING ? K_STRING_OPT
                                                  : K_DOUBLE;
        d.offset = f->offset;
        d.min = f->min;
        d.max = f->max;
        if (apply_one(l, s, &d, l->c->module_settings[m], name) < 0)
            return -1;
    }
    return 0;
}

static int apply_path(loader_t *l, const config_setting_t *s, const desc_t *d,
                      char **field, const char *name)
{
    const char *v;
    char *p = NULL;

    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return wrong_type(l, s, name, "a string");
    v = config_setting_get_string(s);
    if (v[0] == '\0') {
        if (d->kind == K_PATH)
            return fail(l, s, "%s: must not be empty", name);
    } else {
        p = resolve(l, v);
        if (p == NULL)
            return nomem(l);
    }
    free(*field);
    *field = p;
    return 0;
}

/* Reads an integer setting into a long long after the range check. */
static int get_integer(loader_t *l, const config_setting_t *s, const desc_t *d,
                       const char *name, long long *out)
{
    long long v;

    if (!is_integer(s))
        return wrong_type(l, s, name, "an integer");
    v = config_setting_get_int64(s);
    if ((double)v < d->min || (double)v > d->max)
        return fail(l, s, "%s: %lld is out of range (%lld..%lld)", name, v,
                    (long long)d->min, (long long)d->max);
    *out = v;
    return 0;
}

static int apply_one(loader_t *l, const config_setting_t *s, const desc_t *d,
                     void *base, const char *name)
{
    char *field = (char *)base + d->offset;
    long long iv;
    int idx;

    switch (d->kind) {
    case K_GROUP:
        if (!config_setting_is_group(s))
            return wrong_type(l, s, name, "a group { ... }");
        return apply_group(l, s, d->members, base, name);
    case K_BOOL:
        if (config_setting_type(s) != CONFIG_TYPE_BOOL)
            return wrong_type(l, s, name, "true or false");
        *(bool *)(void *)field = config_setting_get_bool(s) != 0;
        return 0;
    case K_UINT:
        if (get_integer(l, s, d, name, &iv) < 0)
            return -1;
        *(unsigned *)(void *)field = (unsigned)iv;
        return 0;
    case K_INT:
        if (get_integer(l, s, d, name, &iv) < 0)
            return -1;
        *(int *)(void *)field = (int)iv;
        return 0;
    case K_SIZE:
        if (get_integer(l, s, d, name, &iv) < 0)
            return -1;
        *(size_t *)(void *)field = (size_t)iv;
        return 0;
    case K_DOUBLE: {
        double v;

        if (is_integer(s))
            v = (double)config_setting_get_int64(s);
        else if (config_setting_type(s) == CONFIG_TYPE_FLOAT)
            v = config_setting_get_float(s);
        else
            return wrong_type(l, s, name, "a number");
        /* `!(in range)` also refuses NaN. */
        if (!(v >= d->min && v <= d->max))
            return fail(l, s, "%s: %g is out of range (%g..%g)", name, v,
                        d->min, d->max);
        *(double *)(void *)field = v;
        return 0;
    }
    case K_PATH:
    case K_PATH_OPT:
        return apply_path(l, s, d, (char **)(void *)field, name);
    case K_ADDRESS: {
        const char *v;
        unsigned char bytes[16];
        char *copy;

        if (config_setting_type(s) != CONFIG_TYPE_STRING)
            return wrong_type(l, s, name, "a string");
        v = config_setting_get_string(s);
        /* Numeric only: a name would need a DNS lookup at start-up, and
         * could resolve to an address other than the one meant. */
        if (inet_pton(AF_INET, v, bytes) != 1 &&
            inet_pton(AF_INET6, v, bytes) != 1)
            return fail(l, s, "%s: '%s' is not a numeric IPv4 or IPv6 address",
                        name, v);
        copy = strdup(v);
        if (copy == NULL)
            return nomem(l);
        free(*(char **)(void *)field);
        *(char **)(void *)field = copy;
        return 0;
    }
    case K_CONFLICT:
        if (config_setting_type(s) != CONFIG_TYPE_STRING)
            return wrong_type(l, s, name, "a string");
        if (pick_name(l, s, name, conflict_names, &idx) < 0)
            return -1;
        *(config_conflict_t *)(void *)field = (config_conflict_t)idx;
        return 0;
    case K_LOG_LEVEL:
        if (config_setting_type(s) != CONFIG_TYPE_STRING)
            return wrong_type(l, s, name, "a string");
        if (pick_name(l, s, name, log_level_names, &idx) < 0)
            return -1;
        *(config_log_level_t *)(void *)field = (config_log_level_t)idx;
        return 0;
    case K_HOSTS:
        return apply_hosts(l, s, name);
    case K_LISTENERS:
        return apply_listeners(l, s, name, &l->c->c2s, &l->c->c2s_count);
    case K_S2S_LISTENERS:
        return apply_listeners(l, s, name, &l->c->s2s, &l->c->s2s_count);
    case K_ROUTES:
        return apply_routes(l, s, name);
    case K_COMPONENT_LISTENERS:
        return apply_listeners(l, s, name, &l->c->component_listen,
                               &l->c->component_listen_count);
    case K_COMPONENTS:
        return apply_components(l, s, name);
    case K_STRING_OPT: {
        if (config_setting_type(s) != CONFIG_TYPE_STRING)
            return wrong_type(l, s, name, "a string");
        const char *v = config_setting_get_string(s);
        char *copy = v[0] != '\0' ? strdup(v) : NULL;
        if (v[0] != '\0' && copy == NULL)
            return nomem(l);
        free(*(char **)(void *)field);
        *(char **)(void *)field = copy;
        return 0;
    }
    case K_MODULES:
        return apply_modules(l, s, name);
    }
    return fail(l, s, "%s: internal error: unknown kind", name);
}

/* Applies every member of `group` through `table`; a member the table does
 * not know is an error, and so is a required one that is absent. */
static int apply_group(loader_t *l, const config_setting_t *group,
                       const desc_t *table, void *base, const char *prefix)
{
    int n = config_setting_length(group);

    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
        const char *sname = config_setting_name(s);
        const desc_t *d = table;
        char name[128];
        int len;

        if (prefix[0] != '\0')
            len = snprintf(name, sizeof(name), "%s.%s", prefix, sname);
        else
            len = snprintf(name, sizeof(name), "%s", sname);
        if (len < 0)
            name[0] = '\0';
        while (d->name != NULL && strcmp(d->name, sname) != 0)
            d++;
        if (d->name == NULL && table == root_desc) {
            /* A module's group: `version = { show_os = true; };`. */
            size_t count, m;
            const module_desc_t *const *mods = modules_all(&count);

            for (m = 0; m < count; m++)
                if (mods[m]->settings != NULL &&
                    strcmp(mods[m]->name, sname) == 0)
                    break;
            if (m < count) {
                if (apply_module_group(l, s, m, name) < 0)
                    return -1;
                continue;
            }
        }
        if (d->name == NULL)
            return fail(l, s, "unknown setting '%s'", name);
        if (apply_one(l, s, d, base, name) < 0)
            return -1;
    }
    for (const desc_t *d = table; d->name != NULL; d++)
        if (d->required && config_setting_get_member(group, d->name) == NULL)
            return fail(l, group, "%s: %s is required", prefix, d->name);
    return 0;
}

/* The line of a setting by its libconfig path ("tls.cert"), 0 if absent. */
static int line_of(const config_t *lc, const char *path)
{
    const config_setting_t *s = config_lookup(lc, path);

    return s != NULL ? config_setting_source_line(s) : 0;
}

/* Rules between settings, checked once all are read. */
static int check_relations(loader_t *l, const config_t *lc)
{
    server_config_t *c = l->c;

    if ((c->cert_file == NULL) != (c->key_file == NULL)) {
        const char *set = c->cert_file != NULL ? "tls.cert" : "tls.key";
        const char *unset = c->cert_file != NULL ? "tls.key" : "tls.cert";

        return fail(l, config_lookup(lc, set), "%s is set but %s is not", set,
                    unset);
    }
    /* A component's domain is its own: not one the server serves. */
    for (size_t i = 0; i < c->component_count; i++)
        for (size_t j = 0; j < c->host_count; j++)
            if (strcmp(c->components[i].domain, c->hosts[j]) == 0)
                return fail_line(l, c->components[i].line,
                                 "component.domains[%zu]: '%s' is one of "
                                 "`hosts`; a component needs a domain of its "
                                 "own (e.g. bot.%s)",
                                 i, c->hosts[j], c->hosts[j]);
    for (size_t i = 0; i < c->component_listen_count; i++)
        if (c->component_listen[i].direct_tls)
            return fail_line(l, c->component_listen[i].line,
                             "component.listen[%zu]: component streams have "
                             "no TLS (XEP-0114); listen on loopback instead",
                             i);
    if (c->max_stanza_size_preauth > c->max_stanza_size) {
        const config_setting_t *s =
            config_lookup(lc, "limits.max_stanza_size_preauth");

        if (s == NULL)
            s = config_lookup(lc, "limits.max_stanza_size");
        return fail(l, s,
                    "limits.max_stanza_size_preauth (%zu) is larger than "
                    "limits.max_stanza_size (%zu)",
                    c->max_stanza_size_preauth, c->max_stanza_size);
    }
    /* A bucket smaller than one second of refill would cap the rate below
     * what rate_limit promises. */
    if (c->rate_limit > 0 && c->rate_burst < c->rate_limit) {
        const config_setting_t *s = config_lookup(lc, "limits.rate_burst");

        if (s == NULL)
            s = config_lookup(lc, "limits.rate_limit");
        return fail(l, s,
                    "limits.rate_burst (%zu) is smaller than limits.rate_limit "
                    "(%zu)",
                    c->rate_burst, c->rate_limit);
    }
    return 0;
}

/* Two things libconfig does that we refuse, found by scanning the file's
 * text.
 *
 * @include: problems found later (config_check) carry a line but not a
 * file, and relative paths would be ambiguous; one file keeps both plain.
 *
 * libconfig 1.5 reads a decimal or hex integer that does not fit in 32 bits
 * and has no L suffix by wrapping it silently: "max_stanza_size =
 * 9999999999;" would arrive as 1410065407 and pass the range check. So the
 * file's text is scanned first (skipping strings, comments and names), and
 * such a literal is an error with its line. No setting takes a value that
 * large; with an L suffix libconfig keeps 64 bits and the range check
 * speaks. */
static int refuse_unsupported(loader_t *l, const char *t, size_t len)
{
    unsigned line = 1;
    size_t i = 0;

    while (i < len) {
        char ch = t[i];

        if (ch == '\n') {
            line++;
            i++;
        } else if (ch == '#' || (ch == '/' && i + 1 < len && t[i + 1] == '/')) {
            while (i < len && t[i] != '\n')
                i++;
        } else if (ch == '/' && i + 1 < len && t[i + 1] == '*') {
            for (i += 2;
                 i < len && !(t[i] == '*' && i + 1 < len && t[i + 1] == '/');
                 i++)
                if (t[i] == '\n')
                    line++;
            i += 2;
        } else if (ch == '"') {
            for (i++; i < len && t[i] != '"'; i++) {
                if (t[i] == '\\' && i + 1 < len)
                    i++;
                if (t[i] == '\n')
                    line++;
            }
            i++;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   ch == '_' || ch == '*' || ch == '@') {
            /* A name (which may hold digits), true/false, @include. */
            if (ch == '@')
                return fail_line(l, line,
                                 "@include is not supported: keep the "
                                 "configuration in one file");
            while (i < len && ((t[i] >= 'a' && t[i] <= 'z') ||
                               (t[i] >= 'A' && t[i] <= 'Z') ||
                               (t[i] >= '0' && t[i] <= '9') || t[i] == '_' ||
                               t[i] == '*' || t[i] == '-' || t[i] == '@'))
                i++;
        } else if (ch >= '0' && ch <= '9') {
            size_t start = i;
            bool hex = ch == '0' && i + 1 < len &&
                       (t[i + 1] == 'x' || t[i + 1] == 'X');
            unsigned long long v = 0;
            bool big = false;

            if (hex)
                i += 2;
            for (; i < len; i++) {
                unsigned d;

                if (t[i] >= '0' && t[i] <= '9')
                    d = (unsigned)(t[i] - '0');
                else if (hex && t[i] >= 'a' && t[i] <= 'f')
                    d = (unsigned)(t[i] - 'a' + 10);
                else if (hex && t[i] >= 'A' && t[i] <= 'F')
                    d = (unsigned)(t[i] - 'A' + 10);
                else
                    break;
                v = v * (hex ? 16 : 10) + d;
                if (v > (unsigned long long)INT_MAX + 1)
                    big = true;
            }
            if (!hex && i < len &&
                (t[i] == '.' || t[i] == 'e' || t[i] == 'E')) {
                /* A float: libconfig reads those as doubles. */
                while (i < len && ((t[i] >= '0' && t[i] <= '9') ||
                                   t[i] == '.' || t[i] == 'e' || t[i] == 'E' ||
                                   t[i] == '+' || t[i] == '-'))
                    i++;
                continue;
            }
            if (i < len && t[i] == 'L')
                continue;
            /* INT_MIN itself is fine after a minus sign. */
            if (v == (unsigned long long)INT_MAX + 1 &&
                !(start > 0 && t[start - 1] == '-'))
                big = true;
            if (big)
                return fail_line(l, line,
                                 "%.*s is too large (integers here are at "
                                 "most %d)",
                                 (int)(i - start > 40 ? 40 : i - start),
                                 t + start, INT_MAX);
        } else {
            i++;
        }
    }
    return 0;
}

/* Reads the whole file (NUL-terminated) for refuse_unsupported(). */
static char *slurp(FILE *f, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap), *bigger;

    while (buf != NULL) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1)
            break;
        cap *= 2;
        bigger = realloc(buf, cap);
        if (bigger == NULL)
            free(buf);
        buf = bigger;
    }
    if (buf == NULL)
        return NULL;
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* The absolute directory holding `path`. */
static char *file_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir, *abs;

    if (slash == NULL)
        dir = strdup(".");
    else if (slash == path)
        dir = strdup("/");
    else
        dir = strndup(path, (size_t)(slash - path));
    if (dir == NULL)
        return NULL;
    abs = realpath(dir, NULL);
    free(dir);
    return abs;
}

/* strdup() that keeps NULL; false when out of memory. */
static bool dup_or_null(char **dst, const char *src)
{
    *dst = src != NULL ? strdup(src) : NULL;
    return src == NULL || *dst != NULL;
}

/* A deep copy of src into dst; -1 (dst empty) when out of memory. */
static int copy_config(server_config_t *dst, const server_config_t *src)
{
    bool ok = true;

    *dst = *src;
    dst->hosts = NULL;
    dst->host_count = 0;
    dst->c2s = NULL;
    dst->c2s_count = 0;
    dst->s2s = NULL;
    dst->s2s_count = 0;
    dst->s2s_routes = NULL;
    dst->s2s_route_count = 0;
    dst->component_listen = NULL;
    dst->component_listen_count = 0;
    dst->components = NULL;
    dst->component_count = 0;
    dst->module_on = NULL;
    dst->module_settings = NULL;
    dst->module_count = 0;
    ok = dup_or_null(&dst->path, src->path) && ok;
    ok = dup_or_null(&dst->cert_file, src->cert_file) && ok;
    ok = dup_or_null(&dst->key_file, src->key_file) && ok;
    ok = dup_or_null(&dst->client_ca_file, src->client_ca_file) && ok;
    ok = dup_or_null(&dst->storage_path, src->storage_path) && ok;
    ok = dup_or_null(&dst->s2s_ca_file, src->s2s_ca_file) && ok;
    ok = dup_or_null(&dst->s2s_dns, src->s2s_dns) && ok;
    ok = dup_or_null(&dst->s2s_dialback_secret, src->s2s_dialback_secret) && ok;
    dst->hosts = calloc(src->host_count + 1, sizeof(*dst->hosts));
    dst->c2s = calloc(src->c2s_count + 1, sizeof(*dst->c2s));
    if (!ok || dst->hosts == NULL || dst->c2s == NULL)
        goto nomem;
    for (; dst->host_count < src->host_count; dst->host_count++)
        if (!dup_or_null(&dst->hosts[dst->host_count],
                         src->hosts[dst->host_count]))
            goto nomem;
    for (; dst->c2s_count < src->c2s_count; dst->c2s_count++) {
        config_listener_t *d = &dst->c2s[dst->c2s_count];

        *d = src->c2s[dst->c2s_count];
        if (!dup_or_null(&d->address, d->address))
            goto nomem;
    }
    dst->s2s = calloc(src->s2s_count + 1, sizeof(*dst->s2s));
    dst->s2s_routes =
        calloc(src->s2s_route_count + 1, sizeof(*dst->s2s_routes));
    if (dst->s2s == NULL || dst->s2s_routes == NULL)
        goto nomem;
    for (; dst->s2s_count < src->s2s_count; dst->s2s_count++) {
        config_listener_t *d = &dst->s2s[dst->s2s_count];

        *d = src->s2s[dst->s2s_count];
        if (!dup_or_null(&d->address, d->address))
            goto nomem;
    }
    for (; dst->s2s_route_count < src->s2s_route_count;
         dst->s2s_route_count++) {
        config_route_t *d = &dst->s2s_routes[dst->s2s_route_count];

        *d = src->s2s_routes[dst->s2s_route_count];
        d->host = NULL;
        if (!dup_or_null(&d->domain, d->domain) ||
            !dup_or_null(&d->host, src->s2s_routes[dst->s2s_route_count].host))
            goto nomem;
    }
    dst->component_listen =
        calloc(src->component_listen_count + 1, sizeof(*dst->component_listen));
    dst->components =
        calloc(src->component_count + 1, sizeof(*dst->components));
    if (dst->component_listen == NULL || dst->components == NULL)
        goto nomem;
    for (; dst->component_listen_count < src->component_listen_count;
         dst->component_listen_count++) {
        config_listener_t *d =
            &dst->component_listen[dst->component_listen_count];

        *d = src->component_listen[dst->component_listen_count];
        if (!dup_or_null(&d->address, d->address))
            goto nomem;
    }
    for (; dst->component_count < src->component_count;
         dst->component_count++) {
        config_component_t *d = &dst->components[dst->component_count];
        const config_component_t *o = &src->components[dst->component_count];

        *d = (config_component_t){.line = o->line};
        if (!dup_or_null(&d->domain, o->domain) ||
            !dup_or_null(&d->secret, o->secret) ||
            !dup_or_null(&d->name, o->name))
            goto nomem;
    }
    dst->module_on = calloc(src->module_count + 1, sizeof(*dst->module_on));
    dst->module_settings =
        calloc(src->module_count + 1, sizeof(*dst->module_settings));
    if (dst->module_on == NULL || dst->module_settings == NULL)
        goto nomem;
    dst->module_count = src->module_count;
    if (src->module_count > 0)
        memcpy(dst->module_on, src->module_on,
               src->module_count * sizeof(*dst->module_on));
    for (size_t i = 0; i < src->module_count; i++) {
        size_t count;
        size_t size = modules_all(&count)[i]->settings_size;

        if (src->module_settings[i] == NULL)
            continue;
        dst->module_settings[i] = malloc(size);
        if (dst->module_settings[i] == NULL)
            goto nomem;
        memcpy(dst->module_settings[i], src->module_settings[i], size);
        if (!module_strings(i, dst->module_settings[i], true))
            goto nomem;
    }
    return 0;

nomem:
    config_free(dst);
    return -1;
}

int config_load(const char *path, server_config_t *c, char *err, size_t errlen)
{
    server_config_t t;
    loader_t l = {path, NULL, &t, err, errlen};
    config_t lc;
    struct stat st;
    FILE *f;
    char *text = NULL, *storage;
    size_t text_len = 0;
    int rc = -1;

    if (errlen > 0)
        err[0] = '\0';
    /* The file is applied to a copy, so that c stays as it was when the
     * file is refused (a reload keeps the running settings). */
    if (copy_config(&t, c) < 0)
        return nomem(&l);
    config_init(&lc);
    /* Lines refer to the file being read; what it does not set has none. */
    memset(&t.line, 0, sizeof(t.line));
    for (size_t i = 0; i < t.c2s_count; i++)
        t.c2s[i].line = 0;
    for (size_t i = 0; i < t.s2s_count; i++)
        t.s2s[i].line = 0;
    for (size_t i = 0; i < t.s2s_route_count; i++)
        t.s2s_routes[i].line = 0;
    for (size_t i = 0; i < t.component_listen_count; i++)
        t.component_listen[i].line = 0;
    for (size_t i = 0; i < t.component_count; i++)
        t.components[i].line = 0;
    /* libconfig reports an unreadable file only as "file I/O error"; ask
     * the system first so that the message says why. */
    f = fopen(path, "r");
    if (f == NULL || fstat(fileno(f), &st) < 0 || S_ISDIR(st.st_mode)) {
        fail(&l, NULL, "cannot read: %s",
             f == NULL ? strerror(errno) : strerror(EISDIR));
        if (f != NULL)
            fclose(f);
        goto out;
    }
    text = slurp(f, &text_len);
    fclose(f);
    if (text == NULL) {
        nomem(&l);
        goto out;
    }
    l.dir = file_dir(path);
    if (l.dir == NULL) {
        fail(&l, NULL, "cannot resolve its directory: %s", strerror(errno));
        goto out;
    }
    /* A relative storage path that the file does not replace (the default
     * "starling.db") is relative to the file like any other, so that
     * writing the default out explicitly changes nothing. */
    storage = t.storage_path[0] == '/' ? strdup(t.storage_path)
                                       : resolve(&l, t.storage_path);
    free(t.storage_path);
    t.storage_path = storage;
    free(t.path);
    t.path = strdup(path);
    if (t.storage_path == NULL || t.path == NULL) {
        nomem(&l);
        goto out;
    }

    /* So that an @include names a file beside this one and gets as far as
     * our "not supported". */
    config_set_include_dir(&lc, l.dir);
    if (config_read_file(&lc, path) != CONFIG_TRUE) {
        const char *efile = config_error_file(&lc);

        if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
            snprintf(err, errlen, "%s: cannot read: %s", path,
                     config_error_text(&lc));
        else
            snprintf(err, errlen, "%s:%d: %s", efile != NULL ? efile : path,
                     config_error_line(&lc), config_error_text(&lc));
        goto out;
    }
    /* After libconfig's own check, so that a syntax error is reported as
     * such rather than as what follows from it. */
    if (refuse_unsupported(&l, text, text_len) < 0)
        goto out;
    if (apply_group(&l, config_root_setting(&lc), root_desc, &t, "") < 0)
        goto out;
    if (check_relations(&l, &lc) < 0)
        goto out;
    t.line.hosts = line_of(&lc, "hosts");
    t.line.cert = line_of(&lc, "tls.cert");
    t.line.key = line_of(&lc, "tls.key");
    t.line.client_ca = line_of(&lc, "tls.client_ca");
    t.line.require_encryption = line_of(&lc, "c2s.require_encryption");
    t.line.storage_path = line_of(&lc, "storage.path");
    t.line.modules = line_of(&lc, "modules");
    rc = 0;

out:
    config_destroy(&lc);
    free(text);
    free(l.dir);
    if (rc == 0) {
        config_free(c);
        *c = t;
    } else {
        config_free(&t);
    }
    return rc;
}

/* -------------------------------------------------------------- checking */

typedef struct problems {
    const server_config_t *c;
    char *buf;
    size_t size;
    size_t used;
    int count;
} problems_t;

static void problem(problems_t *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void problem(problems_t *p, int line, const char *fmt, ...)
{
    char msg[1024];
    int n;
    va_list ap;

    p->count++;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (p->size == 0 || p->used >= p->size - 1)
        return;
    if (p->c->path == NULL)
        n = snprintf(p->buf + p->used, p->size - p->used,
                     "built-in defaults: %s\n", msg);
    else if (line > 0)
        n = snprintf(p->buf + p->used, p->size - p->used, "%s:%d: %s\n",
                     p->c->path, line, msg);
    else
        n = snprintf(p->buf + p->used, p->size - p->used, "%s: %s\n",
                     p->c->path, msg);
    if (n < 0)
        return;
    p->used += (size_t)n;
    if (p->used >= p->size)
        p->used = p->size - 1; /* cut; snprintf left it terminated */
}

/* True when the file can be opened for reading; otherwise a problem. */
static bool readable(problems_t *p, int line, const char *what,
                     const char *file)
{
    FILE *f = fopen(file, "r");

    if (f == NULL) {
        problem(p, line, "%s: cannot open %s: %s", what, file, strerror(errno));
        return false;
    }
    fclose(f);
    return true;
}

/* Validity dates and host coverage of the first (leaf) certificate. */
static void check_leaf(problems_t *p)
{
    const server_config_t *c = p->c;
    FILE *f = fopen(c->cert_file, "r");
    X509 *x;

    if (f == NULL)
        return;
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (x == NULL) {
        problem(p, c->line.cert, "tls.cert: %s holds no PEM certificate",
                c->cert_file);
        return;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0)
        problem(p, c->line.cert, "tls.cert: %s has expired", c->cert_file);
    if (X509_cmp_current_time(X509_get0_notBefore(x)) >= 0)
        problem(p, c->line.cert, "tls.cert: %s is not valid yet", c->cert_file);
    for (size_t i = 0; i < c->host_count; i++) {
        const char *host = c->hosts[i];
        char *ascii = NULL;
        int ok;

        /* Certificates name IDNs in their ASCII form (RFC 6125 §6.4.2). */
        if (jid_domain_is_ip(host)) {
            char ip[JID_PART_BUF];
            size_t n = strlen(host);

            /* X509_check_ip_asc() wants IPv6 without the brackets. */
            if (host[0] == '[' && n >= 2) {
                memcpy(ip, host + 1, n - 2);
                ip[n - 2] = '\0';
            } else {
                snprintf(ip, sizeof(ip), "%s", host);
            }
            ok = X509_check_ip_asc(x, ip, 0);
        } else if (jid_domain_to_ascii(host, &ascii) == JID_OK) {
            ok = X509_check_host(x, ascii, 0, 0, NULL);
        } else {
            ok = 0;
        }
        free(ascii);
        if (ok != 1)
            problem(p, c->line.cert, "tls.cert: %s does not cover host '%s'",
                    c->cert_file, host);
    }
    X509_free(x);
}

static void check_tls(problems_t *p)
{
    const server_config_t *c = p->c;
    bool ok;
    tls_ctx_opts_t o = {0};
    tls_ctx_t *ctx;
    char why[512] = "";

    if (c->cert_file == NULL) {
        if (c->require_encryption)
            problem(p, c->line.require_encryption,
                    "c2s.require_encryption is on but tls.cert is not set "
                    "(starlingctl cert HOST makes a self-signed pair)");
        for (size_t i = 0; i < c->c2s_count; i++)
            if (c->c2s[i].direct_tls)
                problem(p, c->c2s[i].line,
                        "c2s.listen[%zu]: %s port %d is direct TLS but "
                        "tls.cert is not set",
                        i, c->c2s[i].address, c->c2s[i].port);
        if (c->client_ca_file != NULL)
            problem(p, c->line.client_ca,
                    "tls.client_ca is set but tls.cert is not");
        return;
    }

    ok = readable(p, c->line.cert, "tls.cert", c->cert_file);
    ok = readable(p, c->line.key, "tls.key", c->key_file) && ok;
    if (c->client_ca_file != NULL)
        ok = readable(p, c->line.client_ca, "tls.client_ca",
                      c->client_ca_file) &&
             ok;
    if (!ok)
        return;

    /* Load them the way the server will, so that "check: ok" means the
     * server starts. */
    o.cert_file = c->cert_file;
    o.key_file = c->key_file;
    o.ca_file = c->client_ca_file;
    o.legacy_ciphers = c->legacy_ciphers;
    ctx = tls_ctx_new_server(&o, why, sizeof(why));
    if (ctx == NULL) {
        problem(p, c->line.cert, "tls: %s", why[0] ? why : "unusable");
        return;
    }
    tls_ctx_free(ctx);
    check_leaf(p);
}

/* An address as bytes: IPv4 is kept as an IPv4-mapped IPv6 address so that
 * "::ffff:127.0.0.1" and "127.0.0.1" compare equal. */
static bool address_bytes(const char *a, unsigned char out[16], bool *v4)
{
    unsigned char b4[4];

    if (inet_pton(AF_INET, a, b4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, b4, 4);
        *v4 = true;
        return true;
    }
    if (inet_pton(AF_INET6, a, out) != 1)
        return false;
    *v4 = IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)(void *)out);
    return true;
}

/* Whether two listeners would fight over one port: the same address, or a
 * wildcard that includes the other. "::" binds dual-stack (libuv leaves
 * IPV6_V6ONLY off), so it covers every IPv4 address too. */
static bool listeners_collide(const config_listener_t *a,
                              const config_listener_t *b)
{
    static const unsigned char any6[16] = {0};
    static const unsigned char any4[16] = {0, 0, 0,    0,    0, 0, 0, 0,
                                           0, 0, 0xff, 0xff, 0, 0, 0, 0};
    unsigned char x[16], y[16];
    bool x4, y4;

    /* Port 0 asks the system for a free port each: never a collision. */
    if (a->port != b->port || a->port == 0)
        return false;
    if (!address_bytes(a->address, x, &x4) ||
        !address_bytes(b->address, y, &y4))
        return false;
    if (memcmp(x, y, 16) == 0)
        return true;
    if (memcmp(x, any6, 16) == 0 || memcmp(y, any6, 16) == 0)
        return true;
    if ((memcmp(x, any4, 16) == 0 && y4) || (memcmp(y, any4, 16) == 0 && x4))
        return true;
    return false;
}

static void check_listeners(problems_t *p)
{
    const server_config_t *c = p->c;

    for (size_t i = 0; i < c->c2s_count; i++)
        for (size_t j = 0; j < i; j++)
            if (listeners_collide(&c->c2s[i], &c->c2s[j])) {
                problem(p, c->c2s[i].line,
                        "c2s.listen[%zu]: %s port %d collides with "
                        "c2s.listen[%zu] (%s port %d)",
                        i, c->c2s[i].address, c->c2s[i].port, j,
                        c->c2s[j].address, c->c2s[j].port);
                break;
            }
}

static void check_storage(problems_t *p)
{
    const server_config_t *c = p->c;
    const char *slash = strrchr(c->storage_path, '/');
    struct stat st;
    char *dir;

    if (stat(c->storage_path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            problem(p, c->line.storage_path, "storage.path: %s is a directory",
                    c->storage_path);
        return;
    }
    if (slash == NULL)
        return; /* in the working directory, which exists */
    dir = slash == c->storage_path
              ? strdup("/")
              : strndup(c->storage_path, (size_t)(slash - c->storage_path));
    if (dir == NULL)
        return;
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
        problem(p, c->line.storage_path,
                "storage.path: directory %s does not exist", dir);
    free(dir);
}

int config_check(const server_config_t *c, char *err, size_t errlen)
{
    problems_t p = {c, err, errlen, 0, 0};

    if (errlen > 0)
        err[0] = '\0';
    check_tls(&p);
    check_listeners(&p);
    check_storage(&p);
    return p.count;
}
