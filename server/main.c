/* starlingd: the Starling XMPP server.
 *
 *   starlingd [--config PATH]   serve with that configuration
 *   starlingd --dev             what `make run` does: dev/starlingd.conf,
 *                               a self-signed certificate and the database,
 *                               all created under dev/ on first start
 *
 * SIGTERM and SIGINT end every stream with system-shutdown and exit once
 * the clients have answered (or close_timeout passed); SIGHUP reloads the
 * certificate and the log level. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/rand.h"
#include "base/xalloc.h"
#include "c2s/c2s.h"
#include "component/component.h"
#include "s2s/s2s.h"
#include "modules/modules.h"
#include "server.h"
#include "starling_config.h"
#include "worker.h"

#define DEV_DIR      "dev"
#define DEV_CONF     DEV_DIR "/starlingd.conf"
#define EXAMPLE_CONF "etc/starlingd.example.conf"

/* The process: the shared server and its one worker (the main thread's
 * loop); the signal handlers and the shutdown poll live on that loop. */
typedef struct daemon_state {
    server_t srv;
    worker_t worker;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t shutdown_poll;
    char *config_path;
} daemon_state_t;

static log_level_t to_log_level(config_log_level_t l)
{
    switch (l) {
    case CONFIG_LOG_ERROR:
        return LOG_ERROR;
    case CONFIG_LOG_WARN:
        return LOG_WARN;
    case CONFIG_LOG_DEBUG:
        return LOG_DEBUG;
    case CONFIG_LOG_INFO:
    default:
        return LOG_INFO;
    }
}

static bool file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* make run: everything the server creates lives under dev/ (ignored by
 * git). The config is the documented example with the certificate that we
 * generate next to it. */
static int dev_setup(void)
{
    if (mkdir(DEV_DIR, 0700) < 0 && errno != EEXIST) {
        fprintf(stderr, "starlingd: cannot create %s/: %s\n", DEV_DIR,
                strerror(errno));
        return -1;
    }
    if (!file_exists(DEV_CONF)) {
        FILE *in = fopen(EXAMPLE_CONF, "r");
        if (in == NULL) {
            fprintf(stderr,
                    "starlingd: --dev runs from the source tree: "
                    "%s not found\n",
                    EXAMPLE_CONF);
            return -1;
        }
        FILE *out = fopen(DEV_CONF, "w");
        if (out == NULL) {
            fclose(in);
            fprintf(stderr, "starlingd: cannot write %s: %s\n", DEV_CONF,
                    strerror(errno));
            return -1;
        }
        /* The example serves localhost without a certificate; the
         * development server uses the one generated below. */
        char line[1024];
        while (fgets(line, sizeof(line), in) != NULL) {
            const char *p = line + strspn(line, " ");
            if (strcmp(p, "cert = \"\";\n") == 0)
                fputs("    cert = \"localhost.crt\";  # starlingd --dev\n",
                      out);
            else if (strcmp(p, "key = \"\";\n") == 0)
                fputs("    key = \"localhost.key\";   # starlingd --dev\n",
                      out);
            else
                fputs(line, out);
        }
        fclose(in);
        fclose(out);
        fprintf(stderr, "starlingd: wrote %s from %s\n", DEV_CONF,
                EXAMPLE_CONF);
    }
    if (!file_exists(DEV_DIR "/localhost.crt")) {
        char err[256];
        if (tls_make_self_signed("localhost", 365, DEV_DIR "/localhost.crt",
                                 DEV_DIR "/localhost.key", err,
                                 sizeof(err)) != TLS_OK) {
            fprintf(stderr, "starlingd: %s\n", err);
            return -1;
        }
        fprintf(stderr,
                "starlingd: generated a self-signed certificate for "
                "localhost in %s/\n",
                DEV_DIR);
    }
    return 0;
}

static void build_stream_configs(server_t *srv)
{
    const server_config_t *c = srv->cfg;
    stream_config_t *sc = &srv->stream_cfg;
    memset(sc, 0, sizeof(*sc));
    sc->hosts = (const char *const *)c->hosts;
    sc->host_count = c->host_count;
    sc->tls_available = srv->tls != NULL;
    sc->tls_required = c->require_encryption;
    sc->mechs = 1u << SASL_MECH_SCRAM_SHA256_PLUS |
                1u << SASL_MECH_SCRAM_SHA256 | 1u << SASL_MECH_SCRAM_SHA1_PLUS |
                1u << SASL_MECH_SCRAM_SHA1;
    if (c->sasl_plain)
        sc->mechs |= 1u << SASL_MECH_PLAIN;
    if (c->sasl_external)
        sc->mechs |= 1u << SASL_MECH_EXTERNAL;
    if (c->sasl_digest_md5)
        sc->mechs |= 1u << SASL_MECH_DIGEST_MD5;
    sc->offer_plus = c->offer_plus;
    sc->max_auth_failures = c->max_auth_failures;
    xml_limits_default(&sc->limits);
    sc->limits.max_element_size = c->max_stanza_size;
    sc->limits.max_depth = c->max_depth;
    sc->limits.max_attrs = c->max_attrs;
    sc->limits_preauth = sc->limits;
    sc->limits_preauth.max_element_size = c->max_stanza_size_preauth;
    sc->server_secret = srv->secret;
    sc->server_secret_len = sizeof(srv->secret);
    sc->scram_iterations = c->scram_iterations;
    /* The modules' stream features (their handlers get the session), and
     * c2s's own: stream management. */
    size_t n;
    const stream_feature_t *mf =
        module_registry_stream_features(srv->modules, &n);
    srv->features = xcalloc(n + 2, sizeof(*srv->features));
    if (n > 0)
        memcpy(srv->features, mf, n * sizeof(*mf));
    if (c->sm_enabled)
        srv->features[n++] = c2s_sm_feature;
    if (c->csi_enabled)
        srv->features[n++] = c2s_csi_feature;
    sc->features = srv->features;
    sc->feature_count = n;

    srv->stream_cfg_loopback = *sc;
    srv->stream_cfg_loopback.tls_required = false;
    srv->stream_cfg_direct = *sc;
    srv->stream_cfg_direct.tls_direct = true;
    srv->stream_cfg_direct.tls_available = false; /* no STARTTLS inside TLS */
}

static int make_tls(server_t *srv)
{
    const server_config_t *c = srv->cfg;
    if (c->cert_file == NULL || c->cert_file[0] == '\0')
        return 0;
    char err[512];
    tls_ctx_opts_t o = {
        .cert_file = c->cert_file,
        .key_file = c->key_file,
        .ca_file = c->sasl_external ? c->client_ca_file : NULL,
        .legacy_ciphers = c->legacy_ciphers,
        .ticket_lifetime = c->ticket_lifetime,
    };
    srv->tls = tls_ctx_new_server(&o, err, sizeof(err));
    if (srv->tls == NULL) {
        LOG(&srv->log, LOG_ERROR, 0, "TLS: %s", err);
        return -1;
    }
    /* XEP-0368: direct TLS connections negotiate ALPN xmpp-client. */
    o.alpn = "xmpp-client";
    srv->tls_direct = tls_ctx_new_server(&o, err, sizeof(err));
    if (srv->tls_direct == NULL) {
        LOG(&srv->log, LOG_ERROR, 0, "TLS: %s", err);
        return -1;
    }
    return 0;
}

static void on_shutdown_poll(uv_timer_t *t)
{
    daemon_state_t *d = t->data;
    if (d->worker.session_count > 0 || d->worker.s2s_count > 0 ||
        d->worker.component_conns > 0)
        return;
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, NULL);
    s2s_free(&d->worker); /* its resolver's handles close with the loop */
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sighup, NULL);
    store_close(d->srv.store, NULL, NULL);
    d->srv.store = NULL;
    LOG(&d->srv.log, LOG_INFO, 0, "all streams closed; exiting");
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
    daemon_state_t *d = h->data;
    if (d->worker.shutting_down)
        return;
    LOG(&d->srv.log, LOG_INFO, 0,
        "%s: closing %zu stream(s) with system-shutdown",
        signum == SIGTERM ? "SIGTERM" : "SIGINT", d->worker.session_count);
    uv_signal_stop(&d->sigterm);
    uv_signal_stop(&d->sigint);
    uv_signal_stop(&d->sighup);
    c2s_shutdown(&d->worker, "system-shutdown");
    s2s_shutdown(&d->worker, "system-shutdown");
    component_shutdown(&d->worker, "system-shutdown");
    uv_timer_init(d->worker.loop, &d->shutdown_poll);
    d->shutdown_poll.data = d;
    uv_timer_start(&d->shutdown_poll, on_shutdown_poll, 0, 20);
}

/* SIGHUP: what can change without restarting — the certificate and key
 * (new connections use them) and the log level. */
/* One line naming the enabled modules, so that a log shows what the
 * server offered. */
static void log_modules(const server_t *srv)
{
    char names[256] = "";
    for (size_t i = 0; i < module_registry_count(srv->modules); i++) {
        const char *n = module_registry_desc(srv->modules, i)->name;
        if (names[0] != '\0')
            strncat(names, ", ", sizeof(names) - strlen(names) - 1);
        strncat(names, n, sizeof(names) - strlen(names) - 1);
    }
    LOG(&srv->log, LOG_INFO, 0, "modules: %s", names);
}

static void on_sighup(uv_signal_t *h, int signum)
{
    daemon_state_t *d = h->data;
    server_t *srv = &d->srv;
    (void)signum;
    if (d->config_path == NULL) {
        LOG(&srv->log, LOG_INFO, 0, "SIGHUP: no config file to reload");
        return;
    }
    server_config_t fresh;
    char err[512];
    if (config_defaults(&fresh) < 0 ||
        config_load(d->config_path, &fresh, err, sizeof(err)) < 0) {
        LOG(&srv->log, LOG_ERROR, 0,
            "SIGHUP: %s; keeping the running configuration", err);
        config_free(&fresh);
        return;
    }
    log_set_level(&srv->log, to_log_level(fresh.log_level));
    LOG(&srv->log, LOG_INFO, 0, "SIGHUP: log level %s",
        config_log_level_name(fresh.log_level));
    if (srv->tls != NULL && fresh.cert_file != NULL &&
        fresh.cert_file[0] != '\0') {
        tls_ctx_opts_t o = {
            .cert_file = fresh.cert_file,
            .key_file = fresh.key_file,
            .ca_file = fresh.sasl_external ? fresh.client_ca_file : NULL,
            .legacy_ciphers = srv->cfg->legacy_ciphers,
            .ticket_lifetime = srv->cfg->ticket_lifetime};
        if (tls_ctx_reload(srv->tls, &o, err, sizeof(err)) != TLS_OK ||
            (o.alpn = "xmpp-client",
             tls_ctx_reload(srv->tls_direct, &o, err, sizeof(err))) != TLS_OK)
            LOG(&srv->log, LOG_ERROR, 0, "SIGHUP: certificate not reloaded: %s",
                err);
        else
            LOG(&srv->log, LOG_INFO, 0, "SIGHUP: certificate %s reloaded",
                fresh.cert_file);
    }
    LOG(&srv->log, LOG_INFO, 0,
        "SIGHUP: other settings (hosts, listeners, limits, modules) need a "
        "restart");
    config_free(&fresh);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: starlingd [--config PATH] | --dev | --version\n"
            "  --config PATH  configuration file (libconfig); every setting\n"
            "                 has a default, see etc/starlingd.example.conf\n"
            "  --dev          development mode, as `make run`: everything\n"
            "                 under ./dev/, created on first start\n");
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    bool dev = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0) {
            printf("starlingd %s\n", STARLING_VERSION_STRING);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config_path = argv[++i];
        } else if (strcmp(argv[i], "--dev") == 0) {
            dev = true;
        } else {
            fprintf(stderr, "starlingd: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (dev) {
        if (dev_setup() < 0)
            return 1;
        if (config_path == NULL)
            config_path = DEV_CONF;
    }

    signal(SIGPIPE, SIG_IGN);
    static daemon_state_t d; /* lives for the whole process */
    server_t *srv = &d.srv;
    worker_t *w = &d.worker;
    srv->log.level = LOG_INFO;
    w->srv = srv;
    w->loop = uv_default_loop();
    conn_flusher_init(w->loop, &w->flusher);
    server_config_t *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL || config_defaults(cfg) < 0) {
        fprintf(stderr, "starlingd: out of memory\n");
        return 1;
    }
    char err[512];
    if (config_path != NULL &&
        config_load(config_path, cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "starlingd: %s\n", err);
        return 1;
    }
    d.config_path = config_path != NULL ? strdup(config_path) : NULL;
    srv->cfg = cfg;
    srv->log.level = to_log_level(cfg->log_level);
    LOG(&srv->log, LOG_INFO, 0, "starlingd %s starting (%s)",
        STARLING_VERSION_STRING,
        config_path != NULL ? config_path : "built-in defaults");

    if (rand_bytes(srv->secret, sizeof(srv->secret)) < 0) {
        LOG(&srv->log, LOG_ERROR, 0, "no randomness from the kernel");
        return 1;
    }
    if (make_tls(srv) < 0)
        return 1;
    if (srv->tls == NULL && cfg->require_encryption &&
        !cfg->allow_plain_loopback)
        LOG(&srv->log, LOG_WARN, 0,
            "no certificate configured and encryption "
            "is required: no client can log in");
    if (store_open(w->loop, cfg->storage_path, &srv->store, err, sizeof(err)) !=
        STORE_OK) {
        LOG(&srv->log, LOG_ERROR, 0, "storage: %s", err);
        return 1;
    }
    store_set_logger(srv->store, &srv->log);
    srv->modules = modules_start(cfg, srv->store, &srv->log, err, sizeof(err));
    if (srv->modules == NULL) {
        LOG(&srv->log, LOG_ERROR, 0, "modules: %s", err);
        return 1;
    }
    log_modules(srv);
    srv->router_cfg = (router_config_t){
        .hosts = (const char *const *)cfg->hosts,
        .host_count = cfg->host_count,
        .conflict = cfg->resource_conflict == CONFIG_CONFLICT_OLD_WINS
                        ? ROUTER_CONFLICT_OLD_WINS
                        : ROUTER_CONFLICT_NEW_WINS,
        .max_resources = cfg->max_resources,
        .modules = srv->modules,
    };
    srv->component_domains =
        xcalloc(cfg->component_count + 1, sizeof(*srv->component_domains));
    srv->component_names =
        xcalloc(cfg->component_count + 1, sizeof(*srv->component_names));
    for (size_t i = 0; i < cfg->component_count; i++) {
        srv->component_domains[i] = cfg->components[i].domain;
        srv->component_names[i] = cfg->components[i].name;
    }
    srv->router_cfg.components = srv->component_domains;
    srv->router_cfg.component_names = srv->component_names;
    srv->router_cfg.component_count = cfg->component_count;
    build_stream_configs(srv);
    /* Start-up is over: from here on srv is only read (server.h). */
    w->router = router_new(&srv->router_cfg, &srv->log);
    if (w->router == NULL || c2s_start(w) < 0 || s2s_start(w) < 0 ||
        component_start(w) < 0)
        return 1;

    uv_signal_init(w->loop, &d.sigterm);
    uv_signal_init(w->loop, &d.sigint);
    uv_signal_init(w->loop, &d.sighup);
    d.sigterm.data = d.sigint.data = d.sighup.data = &d;
    uv_signal_start(&d.sigterm, on_stop_signal, SIGTERM);
    uv_signal_start(&d.sigint, on_stop_signal, SIGINT);
    uv_signal_start(&d.sighup, on_sighup, SIGHUP);

    if (dev) {
        fprintf(stderr,
                "\nStarling is serving localhost on 127.0.0.1:5222 (STARTTLS) "
                "and 5223 (direct TLS).\n"
                "Add a user in another terminal:\n"
                "  echo secret | build/bin/starlingctl --config %s adduser "
                "alice@localhost\n"
                "Then log in as alice@localhost with any XMPP client (the "
                "certificate is self-signed: %s/localhost.crt).\n"
                "Ctrl-C stops the server.\n\n",
                DEV_CONF, DEV_DIR);
    }
    LOG(&srv->log, LOG_INFO, 0, "ready");
    uv_run(w->loop, UV_RUN_DEFAULT);

    c2s_free(w);
    s2s_free(w);
    component_free(w);
    conn_flusher_close(&w->flusher);
    uv_run(w->loop, UV_RUN_DEFAULT); /* the close callbacks */
    router_free(w->router);
    module_registry_free(srv->modules);
    tls_ctx_free(srv->tls);
    tls_ctx_free(srv->tls_direct);
    free(srv->features);
    free(srv->component_domains);
    free(srv->component_names);
    config_free(cfg);
    free(cfg);
    free(d.config_path);
    uv_loop_close(w->loop);
    return 0;
}
