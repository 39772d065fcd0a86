/* config: starlingd's settings, read from a libconfig file.
 *
 * Every setting has a default (config_defaults()); a file only names what it
 * changes. etc/starlingd.example.conf documents every setting with its
 * default and range. Errors name the file and line:
 * "starlingd.conf:12: limits.max_depth: must be between 8 and 1024".
 *
 * libconfig stays inside config.c: its own type is also called `config_t`
 * and its functions share our `config_` prefix, so this header names the
 * settings `server_config_t` and never includes <libconfig.h>. (Functions
 * added here must not take a libconfig name: config_init, config_destroy,
 * config_read*, config_write*, config_lookup*, config_setting_*,
 * config_set_* and config_get_* are all taken.) */
#ifndef STARLING_CONFIG_CONFIG_H
#define STARLING_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum config_conflict {
    CONFIG_CONFLICT_NEW_WINS, /* default: the old session gets <conflict/> */
    CONFIG_CONFLICT_OLD_WINS, /* the new bind fails with conflict */
} config_conflict_t;

/* Same order and meaning as log_level_t (lib/base/log.h). */
typedef enum config_log_level {
    CONFIG_LOG_ERROR,
    CONFIG_LOG_WARN,
    CONFIG_LOG_INFO,
    CONFIG_LOG_DEBUG,
} config_log_level_t;

typedef struct config_listener {
    char *address;   /* numeric IPv4 or IPv6 address: "127.0.0.1", "::" */
    int port;        /* 0..65535; 0: the system picks (tests) */
    bool direct_tls; /* XEP-0368: TLS from the first byte */
    int line;        /* where the file set it; 0 for a built-in default */
} config_listener_t;

/* A static s2s route (s2s.routes): where to connect for a domain,
 * skipping DNS — for private federations and tests on loopback. */
typedef struct config_route {
    char *domain;    /* nameprep'd */
    char *host;      /* a host name or a numeric address */
    int port;        /* 1..65535; default 5269 (5270 with direct_tls) */
    bool direct_tls; /* XEP-0368: TLS from the first byte */
    int line;
} config_route_t;

/* An external component (XEP-0114, component.domains): a service on its
 * own domain — a bot, a gateway — that connects with a shared secret. */
typedef struct config_component {
    char *domain; /* nameprep'd; not one of `hosts` */
    char *secret; /* the shared secret, non-empty */
    char *name;   /* shown in service discovery, or NULL */
    int line;
} config_component_t;

/* A module's setting (modules/module.h): read from the group named after
 * the module into the module's own settings struct. (Not config_setting_*:
 * libconfig has those names.) */
typedef enum config_field_kind {
    CONFIG_FIELD_BOOL,   /* bool */
    CONFIG_FIELD_UINT,   /* unsigned, min..max */
    CONFIG_FIELD_DOUBLE, /* double, min..max; integers accepted */
    /* config_strings_t: a list or array of strings, ["a", "b"]; min..max
     * is the number of them; each non-empty. */
    CONFIG_FIELD_STRINGS,
    /* char *: one string, NULL when unset or ""; the configuration owns
     * it like the lists. */
    CONFIG_FIELD_STRING,
} config_field_kind_t;

/* A module setting of kind CONFIG_FIELD_STRINGS. The configuration owns
 * the strings (config_free, and the copy config_load makes); a module reads
 * them. */
typedef struct config_strings {
    char **v;
    size_t n;
} config_strings_t;

typedef struct config_field {
    const char *name; /* NULL ends a table */
    config_field_kind_t kind;
    size_t offset; /* of the field in the module's settings struct */
    double min, max;
} config_field_t;

/* The line of the file each setting came from, for config_check()'s
 * problems; 0 when the setting kept its default. */
typedef struct config_lines {
    int hosts;
    int cert;
    int key;
    int client_ca;
    int require_encryption;
    int storage_path;
    int modules;
} config_lines_t;

/* Owned by whoever filled it; release with config_free(). Strings and arrays
 * are malloc'd. */
typedef struct server_config {
    char *path; /* the file read, as given; NULL for built-in defaults */

    char **hosts; /* nameprep'd domains served, distinct, at least one;
                     default {"localhost"} */
    size_t host_count;

    config_listener_t *c2s; /* default 127.0.0.1:5222 and :5223 direct */
    size_t c2s_count;

    /* tls. Paths are absolute once loaded from a file (see config_load). */
    char *cert_file;      /* PEM chain, or NULL (default): no certificate */
    char *key_file;       /* PEM private key; set exactly when cert_file is */
    char *client_ca_file; /* CA for EXTERNAL client certificates, or NULL */
    bool legacy_ciphers;  /* default false */
    unsigned ticket_lifetime; /* seconds each TLS session ticket key serves,
                                 default 43200, 0..604800; 0: no tickets */

    /* c2s */
    bool require_encryption;   /* default true */
    bool allow_plain_loopback; /* default false: when true, plaintext is
                                  allowed on loopback only (tests,
                                  benchmarks) */
    config_conflict_t resource_conflict; /* default new-wins */
    unsigned max_resources;              /* per account, default 32, 1..1024 */
    bool sm_enabled;                     /* XEP-0198 offered, default true */
    unsigned sm_max_unacked;  /* stanzas a client may leave unacknowledged,
                                 default 1000, 10..1000000 */
    double sm_resume_timeout; /* seconds a lost session waits to be resumed,
                                 default 300, 0..3600; 0: no resumption */
    bool csi_enabled;         /* XEP-0352 offered, default true */

    /* sasl */
    bool offer_plus;            /* default true: SCRAM-*-PLUS offered */
    bool sasl_plain;            /* default true (over TLS only) */
    bool sasl_external;         /* default false */
    bool sasl_digest_md5;       /* default false (RFC 6331) */
    unsigned scram_iterations;  /* default 4096, 4096..10000000 */
    unsigned max_auth_failures; /* default 3, range 2..5 */
    double auth_failure_delay;  /* seconds added per recent failure from one
                                   address, default 1.0, 0..60 */

    /* limits */
    size_t max_stanza_size;         /* default 256 KiB, 10000..64 MiB */
    size_t max_stanza_size_preauth; /* default 16 KiB, 1024..max_stanza_size */
    unsigned max_depth;             /* default 64, 8..1024 */
    unsigned max_attrs;             /* default 64, 8..1024 */
    double idle_timeout;      /* seconds, default 300, 0..86400; 0 = never */
    double ping_timeout;      /* seconds a pinged idle client has to send
                                 anything, default 60, 0..3600; 0: no ping,
                                 closed at idle_timeout (XEP-0199 §4.2) */
    double close_timeout;     /* seconds to wait for the peer's close tag,
                                 default 10, 0.1..600 */
    double handshake_timeout; /* seconds from accept to bound, default 60,
                                 1..3600 */
    size_t rate_limit;        /* bytes per second per connection, default
                                 64 KiB; 0 = none */
    size_t rate_burst;        /* bytes, default 256 KiB; >= rate_limit */
    unsigned max_connections_per_address;     /* open c2s connections from one
                                                 address, default 200,
                                                 1..1000000 */
    unsigned max_unauthenticated_per_address; /* of those, not yet
                                                 authenticated, default 30,
                                                 1..1000000 */

    /* s2s: federation (RFC 6120 server-to-server streams) */
    bool s2s_enabled;       /* default false */
    config_listener_t *s2s; /* default 0.0.0.0:5269 (when enabled) */
    size_t s2s_count;
    config_route_t *s2s_routes; /* default none: DNS SRV for all */
    size_t s2s_route_count;
    bool s2s_dialback;           /* default true (XEP-0220) */
    bool s2s_secure_auth;        /* default false: true requires a peer
                                    certificate valid for its domain */
    bool s2s_require_encryption; /* default true */
    char *s2s_ca_file;           /* extra trust anchors, or NULL */
    char *s2s_dns;               /* "host:port,..." DNS servers, or NULL:
                                    the system's resolv.conf */
    char *s2s_dialback_secret;   /* NULL (default): random at start */
    double s2s_connect_timeout;  /* seconds, default 10, 1..600 */
    double s2s_idle_timeout;     /* seconds, default 600, 0..86400 */
    unsigned s2s_queue_max;      /* stanzas waiting per domain, default
                                    1000, 1..1000000 */

    /* component: external components (XEP-0114) */
    config_listener_t *component_listen; /* default 127.0.0.1:5347; used
                                            only with components */
    size_t component_listen_count;
    config_component_t *components; /* default none */
    size_t component_count;

    /* storage */
    char *storage_path; /* SQLite file, default "starling.db" */

    config_log_level_t log_level; /* default info */

    /* modules: one entry per module of modules_all() (modules/modules.h),
     * in its order. module_on[i]: switched on (`modules = [...]` names
     * those on; default: each module's default_on; core modules always).
     * module_settings[i]: the module's settings struct (malloc'd, filled
     * from its defaults and the group named after it), or NULL when the
     * module has no settings. */
    bool *module_on;
    void **module_settings;
    size_t module_count;

    config_lines_t line;
} server_config_t;

/* Fills c with the built-in defaults. Returns 0 or -1 when out of memory
 * (c is then empty, and config_free() is still allowed). */
int config_defaults(server_config_t *c);

/* Reads `path` over the settings in c, which must hold a configuration
 * (from config_defaults(), or an earlier load): what the file names
 * replaces what c had, the rest stays. On failure c is unchanged, so a
 * reload can keep the running settings; either way the caller still owns c
 * and releases it with config_free().
 *
 * Relative paths (tls.cert, tls.key, tls.client_ca, storage.path, and a
 * relative storage path the file leaves alone, such as the default) are
 * taken relative to the directory of the file, and stored absolute.
 * Unknown settings and wrong types are errors: a typo must not silently
 * become a default. So are @include (problems found later carry a line but
 * no file name) and integer literals beyond 32 bits without an L suffix
 * (libconfig 1.5 would wrap them silently). Returns 0, or -1 with
 * "FILE:LINE: what" in err ("FILE: what" when the file cannot be read). */
int config_load(const char *path, server_config_t *c, char *err, size_t errlen);

/* Checks what loading cannot: the certificate and key files exist, load,
 * match each other, have not expired and cover every host; listeners do not
 * collide; TLS is available when encryption is required or a listener is
 * direct TLS; the storage directory exists. Writes one problem per line
 * ("FILE:LINE: what", the line of the setting concerned when the file set
 * it) into err (at most errlen bytes, always NUL-terminated; problems that
 * do not fit are counted but cut) and returns the number of problems. */
int config_check(const server_config_t *c, char *err, size_t errlen);

/* Releases everything c owns and zeroes it. NULL and zeroed configs are
 * allowed. */
void config_free(server_config_t *c);

/* "error", "warn", "info", "debug": the spelling the file uses. */
const char *config_log_level_name(config_log_level_t l);
/* "new-wins", "old-wins". */
const char *config_conflict_name(config_conflict_t c);

#endif
