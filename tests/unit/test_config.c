/* Unit tests for server/config: defaults, a full file, every kind of error
 * with its line number, relative paths, the example file against the
 * defaults, and config_check()'s problems. Each test works in its own
 * temporary directory and removes it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "modules/modules.h"
#include "net/tls.h"

#ifndef STARLING_EXAMPLE_CONF
#error "STARLING_EXAMPLE_CONF must name etc/starlingd.example.conf"
#endif

/* ------------------------------------------------------------- helpers */

typedef struct fixture {
    char dir[64];
    char real[PATH_MAX]; /* realpath of dir: what resolved paths start with */
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_config.XXXXXX");
    if (mkdtemp(f->dir) == NULL || realpath(f->dir, f->real) == NULL) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

/* Removes the directory and the files the test left in it (no
 * subdirectories are ever made, except "sub", handled here). */
static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[PATH_MAX];

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (unlink(p) < 0)
            remove_tree(p);
    }
    closedir(d);
    rmdir(dir);
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    remove_tree(f->dir);
    free(f);
    return 0;
}

/* Writes `text` to DIR/name and returns the path in a static buffer. */
static const char *write_file(const fixture_t *f, const char *name,
                              const char *text)
{
    static char path[PATH_MAX];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", f->dir, name);
    fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
    return path;
}

/* Loads `text` as DIR/starlingd.conf, expecting success. */
static void load_ok(const fixture_t *f, const char *text, server_config_t *c)
{
    const char *path = write_file(f, "starlingd.conf", text);
    char err[512];

    assert_int_equal(config_defaults(c), 0);
    if (config_load(path, c, err, sizeof(err)) != 0)
        fail_msg("config_load: %s", err);
}

static void assert_same_settings(const server_config_t *a,
                                 const server_config_t *b);

/* Loads `text` and expects an error message that starts with
 * "DIR/starlingd.conf:LINE: " and contains `what`. */
static void load_fails(const fixture_t *f, const char *text, int line,
                       const char *what)
{
    const char *path = write_file(f, "starlingd.conf", text);
    char err[512], want[PATH_MAX + 32];
    server_config_t c, d;

    assert_int_equal(config_defaults(&c), 0);
    if (config_load(path, &c, err, sizeof(err)) == 0) {
        config_free(&c);
        fail_msg("loaded, expected error '%s' at line %d", what, line);
    }
    if (line > 0)
        snprintf(want, sizeof(want), "%s:%d: ", path, line);
    else
        snprintf(want, sizeof(want), "%s: ", path);
    if (strncmp(err, want, strlen(want)) != 0 || strstr(err, what) == NULL)
        fail_msg("got '%s', want '%s...%s'", err, want, what);
    /* A failed load leaves the configuration as it was. */
    assert_int_equal(config_defaults(&d), 0);
    assert_same_settings(&c, &d);
    assert_null(c.path);
    assert_null(c.cert_file);
    assert_string_equal(c.storage_path, d.storage_path);
    config_free(&c);
    config_free(&d);
}

/* Compares every field but path, the lines and the file paths (which
 * callers compare themselves). Keep in step with server_config_t. */
static void assert_same_settings(const server_config_t *a,
                                 const server_config_t *b)
{
    assert_int_equal(a->host_count, b->host_count);
    for (size_t i = 0; i < a->host_count; i++)
        assert_string_equal(a->hosts[i], b->hosts[i]);
    assert_int_equal(a->c2s_count, b->c2s_count);
    for (size_t i = 0; i < a->c2s_count; i++) {
        assert_string_equal(a->c2s[i].address, b->c2s[i].address);
        assert_int_equal(a->c2s[i].port, b->c2s[i].port);
        assert_int_equal(a->c2s[i].direct_tls, b->c2s[i].direct_tls);
    }
    assert_int_equal(a->s2s_enabled, b->s2s_enabled);
    assert_int_equal(a->s2s_count, b->s2s_count);
    for (size_t i = 0; i < a->s2s_count; i++) {
        assert_string_equal(a->s2s[i].address, b->s2s[i].address);
        assert_int_equal(a->s2s[i].port, b->s2s[i].port);
        assert_int_equal(a->s2s[i].direct_tls, b->s2s[i].direct_tls);
    }
    assert_int_equal(a->s2s_route_count, b->s2s_route_count);
    for (size_t i = 0; i < a->s2s_route_count; i++) {
        assert_string_equal(a->s2s_routes[i].domain, b->s2s_routes[i].domain);
        assert_string_equal(a->s2s_routes[i].host, b->s2s_routes[i].host);
        assert_int_equal(a->s2s_routes[i].port, b->s2s_routes[i].port);
    }
    assert_int_equal(a->component_listen_count, b->component_listen_count);
    for (size_t i = 0; i < a->component_listen_count; i++) {
        assert_string_equal(a->component_listen[i].address,
                            b->component_listen[i].address);
        assert_int_equal(a->component_listen[i].port,
                         b->component_listen[i].port);
    }
    assert_int_equal(a->component_count, b->component_count);
    for (size_t i = 0; i < a->component_count; i++) {
        assert_string_equal(a->components[i].domain, b->components[i].domain);
        assert_string_equal(a->components[i].secret, b->components[i].secret);
        assert_true((a->components[i].name == NULL) ==
                    (b->components[i].name == NULL));
    }
    assert_int_equal(a->s2s_dialback, b->s2s_dialback);
    assert_int_equal(a->s2s_secure_auth, b->s2s_secure_auth);
    assert_int_equal(a->s2s_require_encryption, b->s2s_require_encryption);
    assert_true((a->s2s_dns == NULL) == (b->s2s_dns == NULL));
    assert_true(a->s2s_connect_timeout == b->s2s_connect_timeout);
    assert_true(a->s2s_idle_timeout == b->s2s_idle_timeout);
    assert_int_equal(a->s2s_queue_max, b->s2s_queue_max);
    assert_int_equal(a->legacy_ciphers, b->legacy_ciphers);
    assert_int_equal(a->ticket_lifetime, b->ticket_lifetime);
    assert_int_equal(a->require_encryption, b->require_encryption);
    assert_int_equal(a->allow_plain_loopback, b->allow_plain_loopback);
    assert_int_equal(a->resource_conflict, b->resource_conflict);
    assert_int_equal(a->max_resources, b->max_resources);
    assert_int_equal(a->sm_enabled, b->sm_enabled);
    assert_int_equal(a->sm_max_unacked, b->sm_max_unacked);
    assert_true(a->sm_resume_timeout == b->sm_resume_timeout);
    assert_int_equal(a->csi_enabled, b->csi_enabled);
    assert_int_equal(a->offer_plus, b->offer_plus);
    assert_int_equal(a->sasl_plain, b->sasl_plain);
    assert_int_equal(a->sasl_external, b->sasl_external);
    assert_int_equal(a->sasl_digest_md5, b->sasl_digest_md5);
    assert_int_equal(a->scram_iterations, b->scram_iterations);
    assert_int_equal(a->max_auth_failures, b->max_auth_failures);
    assert_true(a->auth_failure_delay == b->auth_failure_delay);
    assert_int_equal(a->max_stanza_size, b->max_stanza_size);
    assert_int_equal(a->max_stanza_size_preauth, b->max_stanza_size_preauth);
    assert_int_equal(a->max_depth, b->max_depth);
    assert_int_equal(a->max_attrs, b->max_attrs);
    assert_true(a->idle_timeout == b->idle_timeout);
    assert_true(a->ping_timeout == b->ping_timeout);
    assert_true(a->close_timeout == b->close_timeout);
    assert_true(a->handshake_timeout == b->handshake_timeout);
    assert_int_equal(a->rate_limit, b->rate_limit);
    assert_int_equal(a->rate_burst, b->rate_burst);
    assert_int_equal(a->max_connections_per_address,
                     b->max_connections_per_address);
    assert_int_equal(a->max_unauthenticated_per_address,
                     b->max_unauthenticated_per_address);
    assert_int_equal(a->log_level, b->log_level);
    assert_int_equal(a->module_count, b->module_count);
    for (size_t i = 0; i < a->module_count; i++) {
        size_t n;
        const module_desc_t *m = modules_all(&n)[i];

        assert_int_equal(a->module_on[i], b->module_on[i]);
        assert_true((a->module_settings[i] == NULL) ==
                    (b->module_settings[i] == NULL));
        if (a->module_settings[i] != NULL)
            assert_memory_equal(a->module_settings[i], b->module_settings[i],
                                m->settings_size);
    }
}

/* Whether module `name` is switched on in c. */
static bool module_on(const server_config_t *c, const char *name)
{
    size_t n;
    const module_desc_t *const *all = modules_all(&n);

    assert_int_equal(c->module_count, n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(all[i]->name, name) == 0)
            return c->module_on[i];
    fail_msg("no module %s", name);
    return false;
}

/* The first field of module `name`'s settings, read as a bool. */
static bool module_bool(const server_config_t *c, const char *name)
{
    size_t n;
    const module_desc_t *const *all = modules_all(&n);

    for (size_t i = 0; i < n; i++)
        if (strcmp(all[i]->name, name) == 0) {
            assert_non_null(c->module_settings[i]);
            assert_int_equal(all[i]->settings[0].kind, CONFIG_FIELD_BOOL);
            return *(const bool *)((const char *)c->module_settings[i] +
                                   all[i]->settings[0].offset);
        }
    fail_msg("no module %s", name);
    return false;
}

static void assert_same_or_null(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

/* --------------------------------------------------------------- tests */

static void test_defaults(void **state)
{
    server_config_t c;

    (void)state;
    assert_int_equal(config_defaults(&c), 0);
    assert_null(c.path);
    assert_int_equal(c.host_count, 1);
    assert_string_equal(c.hosts[0], "localhost");
    assert_int_equal(c.c2s_count, 2);
    assert_string_equal(c.c2s[0].address, "127.0.0.1");
    assert_int_equal(c.c2s[0].port, 5222);
    assert_false(c.c2s[0].direct_tls);
    assert_string_equal(c.c2s[1].address, "127.0.0.1");
    assert_int_equal(c.c2s[1].port, 5223);
    assert_true(c.c2s[1].direct_tls);
    assert_null(c.cert_file);
    assert_null(c.key_file);
    assert_null(c.client_ca_file);
    assert_false(c.legacy_ciphers);
    assert_true(c.require_encryption);
    assert_false(c.allow_plain_loopback);
    assert_true(c.offer_plus);
    assert_true(c.sasl_plain);
    assert_false(c.sasl_external);
    assert_false(c.sasl_digest_md5);
    assert_int_equal(c.scram_iterations, 4096);
    assert_int_equal(c.max_auth_failures, 3);
    assert_true(c.auth_failure_delay == 1.0);
    assert_int_equal(c.resource_conflict, CONFIG_CONFLICT_NEW_WINS);
    assert_int_equal(c.max_resources, 32);
    assert_int_equal(c.max_stanza_size, 262144);
    assert_int_equal(c.max_stanza_size_preauth, 16384);
    assert_int_equal(c.max_depth, 64);
    assert_int_equal(c.max_attrs, 64);
    assert_true(c.idle_timeout == 300.0);
    assert_true(c.ping_timeout == 60.0);
    assert_true(c.close_timeout == 10.0);
    assert_true(c.handshake_timeout == 60.0);
    assert_int_equal(c.rate_limit, 65536);
    assert_int_equal(c.rate_burst, 262144);
    assert_int_equal(c.max_connections_per_address, 200);
    assert_int_equal(c.max_unauthenticated_per_address, 30);
    assert_string_equal(c.storage_path, "starling.db");
    assert_int_equal(c.log_level, CONFIG_LOG_INFO);
    assert_string_equal(config_log_level_name(c.log_level), "info");
    assert_string_equal(config_conflict_name(c.resource_conflict), "new-wins");
    config_free(&c);
    config_free(&c); /* zeroed: harmless */
    config_free(NULL);
}

static void test_empty_file_is_defaults(void **state)
{
    fixture_t *f = *state;
    server_config_t c, d;
    char want[PATH_MAX + 16];

    load_ok(f, "# nothing\n", &c);
    assert_int_equal(config_defaults(&d), 0);
    assert_same_settings(&c, &d);
    assert_null(c.cert_file);
    /* The default storage path is relative to the file too. */
    snprintf(want, sizeof(want), "%s/starling.db", f->real);
    assert_string_equal(c.storage_path, want);
    assert_non_null(c.path);
    assert_int_equal(c.line.hosts, 0);
    config_free(&c);
    config_free(&d);
}

static void test_full_file(void **state)
{
    fixture_t *f = *state;
    server_config_t c;
    char want[PATH_MAX + 32];

    load_ok(f,
            "hosts = [ \"Example.ORG\", \"chat.example.org\", \"[::1]\" ];\n"
            "c2s = {\n"
            "  listen = ( { address = \"::\"; port = 15222; },\n"
            "             { address = \"0.0.0.0\"; port = 15223;\n"
            "               direct_tls = true; } );\n"
            "  require_encryption = false;\n"
            "  allow_plain_loopback = true;\n"
            "  resource_conflict = \"old-wins\";\n"
            "  max_resources = 5;\n"
            "};\n"
            "tls = { cert = \"certs/a.crt\"; key = \"/etc/x.key\";\n"
            "        client_ca = \"ca.pem\"; legacy_ciphers = true; };\n"
            "sasl = { plain = false; external = true; digest_md5 = true;\n"
            "         offer_plus = false; scram_iterations = 10000;\n"
            "         max_auth_failures = 5; auth_failure_delay = 2; };\n"
            "limits = { max_stanza_size = 100000;\n"
            "  max_stanza_size_preauth = 100000; max_depth = 8;\n"
            "  max_attrs = 1024; idle_timeout = 0.0; close_timeout = 0.5;\n"
            "  handshake_timeout = 30.5; rate_limit = 0; rate_burst = 1;\n"
            "  max_connections_per_address = 7;\n"
            "  max_unauthenticated_per_address = 3; };\n"
            "storage = { path = \"/var/lib/starling/s.db\"; };\n"
            "log = { level = \"debug\"; };\n",
            &c);
    assert_int_equal(c.host_count, 3);
    assert_string_equal(c.hosts[0], "example.org"); /* nameprep'd */
    assert_string_equal(c.hosts[1], "chat.example.org");
    assert_string_equal(c.hosts[2], "[::1]");
    assert_int_equal(c.line.hosts, 1);
    assert_int_equal(c.c2s_count, 2);
    assert_string_equal(c.c2s[0].address, "::");
    assert_int_equal(c.c2s[0].port, 15222);
    assert_false(c.c2s[0].direct_tls);
    assert_int_equal(c.c2s[0].line, 3);
    assert_string_equal(c.c2s[1].address, "0.0.0.0");
    assert_int_equal(c.c2s[1].port, 15223);
    assert_true(c.c2s[1].direct_tls);
    assert_int_equal(c.c2s[1].line, 4);
    assert_false(c.require_encryption);
    assert_int_equal(c.line.require_encryption, 6);
    assert_true(c.allow_plain_loopback);
    assert_int_equal(c.resource_conflict, CONFIG_CONFLICT_OLD_WINS);
    assert_int_equal(c.max_resources, 5);
    snprintf(want, sizeof(want), "%s/certs/a.crt", f->real);
    assert_string_equal(c.cert_file, want);
    assert_int_equal(c.line.cert, 11);
    assert_string_equal(c.key_file, "/etc/x.key");
    assert_int_equal(c.line.key, 11);
    snprintf(want, sizeof(want), "%s/ca.pem", f->real);
    assert_string_equal(c.client_ca_file, want);
    assert_int_equal(c.line.client_ca, 12);
    assert_true(c.legacy_ciphers);
    assert_false(c.sasl_plain);
    assert_true(c.sasl_external);
    assert_true(c.sasl_digest_md5);
    assert_false(c.offer_plus);
    assert_int_equal(c.scram_iterations, 10000);
    assert_int_equal(c.max_auth_failures, 5);
    assert_true(c.auth_failure_delay == 2.0);
    assert_int_equal(c.max_stanza_size, 100000);
    assert_int_equal(c.max_stanza_size_preauth, 100000);
    assert_int_equal(c.max_depth, 8);
    assert_int_equal(c.max_attrs, 1024);
    assert_true(c.idle_timeout == 0.0);
    assert_true(c.close_timeout == 0.5);
    assert_true(c.handshake_timeout == 30.5);
    assert_int_equal(c.rate_limit, 0);
    assert_int_equal(c.rate_burst, 1);
    assert_int_equal(c.max_connections_per_address, 7);
    assert_int_equal(c.max_unauthenticated_per_address, 3);
    assert_string_equal(c.storage_path, "/var/lib/starling/s.db");
    assert_int_equal(c.line.storage_path, 22);
    assert_int_equal(c.log_level, CONFIG_LOG_DEBUG);
    config_free(&c);
}

/* A second file changes only what it names, over the first; a refused file
 * changes nothing (what a reload relies on). */
static void test_load_over_load(void **state)
{
    fixture_t *f = *state;
    server_config_t c;
    char err[512], want[PATH_MAX + 32];
    const char *second;

    load_ok(f,
            "hosts = [ \"a.example\" ];\n"
            "limits = { max_depth = 10; };\n"
            "storage = { path = \"x.db\"; };\n",
            &c);
    second =
        write_file(f, "second.conf",
                   "\n\nlog = { level = \"warn\"; };\n"
                   "c2s = { listen = ();\n require_encryption = false; };\n");
    if (config_load(second, &c, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_string_equal(c.path, second);
    assert_string_equal(c.hosts[0], "a.example");
    assert_int_equal(c.max_depth, 10);
    assert_int_equal(c.log_level, CONFIG_LOG_WARN);
    assert_int_equal(c.c2s_count, 0);
    assert_false(c.require_encryption);
    snprintf(want, sizeof(want), "%s/x.db", f->real);
    assert_string_equal(c.storage_path, want);
    /* Lines are those of the last file. */
    assert_int_equal(c.line.hosts, 0);
    assert_int_equal(c.line.storage_path, 0);
    assert_int_equal(c.line.require_encryption, 5);

    second = write_file(f, "second.conf", "log = { level = \"loud\"; };\n");
    assert_int_equal(config_load(second, &c, err, sizeof(err)), -1);
    assert_int_equal(c.log_level, CONFIG_LOG_WARN);
    assert_int_equal(c.max_depth, 10);
    assert_int_equal(c.line.require_encryption, 5);
    config_free(&c);
}

static void test_empty_listen_turns_c2s_off(void **state)
{
    fixture_t *f = *state;
    server_config_t c;

    load_ok(f, "c2s = { listen = (); };\n", &c);
    assert_int_equal(c.c2s_count, 0);
    config_free(&c);
}

static void test_unknown_settings(void **state)
{
    fixture_t *f = *state;

    load_fails(f, "hosts = [\"localhost\"];\nhost = [\"x\"];\n", 2,
               "unknown setting 'host'");
    load_fails(f, "limits = {\n  max_depth = 10;\n  max_dpth = 10;\n};\n", 3,
               "unknown setting 'limits.max_dpth'");
    load_fails(f,
               "c2s = { listen = (\n"
               "  { address = \"127.0.0.1\"; port = 1; },\n"
               "  { address = \"127.0.0.1\"; port = 2;\n"
               "    tls = true; } ); };\n",
               4, "unknown setting 'c2s.listen[1].tls'");
    load_fails(f, "\n\nsasl = { scram = { x = 1; }; };\n", 3,
               "unknown setting 'sasl.scram'");
}

static void test_wrong_types(void **state)
{
    fixture_t *f = *state;

    load_fails(f, "limits = {\n  max_depth = \"64\";\n};\n", 2,
               "limits.max_depth: expected an integer, got a string");
    load_fails(f, "\nc2s = { require_encryption = 1; };\n", 2,
               "c2s.require_encryption: expected true or false, got an "
               "integer");
    load_fails(f, "tls = \"x.pem\";\n", 1,
               "tls: expected a group { ... }, got a string");
    load_fails(f, "hosts = \"localhost\";\n", 1,
               "hosts: expected an array of strings, got a string");
    load_fails(f, "hosts = [ 1, 2 ];\n", 1, "expected an array of strings");
    load_fails(f, "limits = { max_attrs = 10.0; };\n", 1,
               "limits.max_attrs: expected an integer, got a float");
    load_fails(f, "limits = { idle_timeout = true; };\n", 1,
               "limits.idle_timeout: expected a number, got a boolean");
    load_fails(f, "c2s = { listen = ( 5222 ); };\n", 1,
               "c2s.listen[0]: expected a group");
    load_fails(f, "c2s = { listen = { port = 5222; }; };\n", 1,
               "c2s.listen: expected a list of groups");
    load_fails(f, "log = { level = 3; };\n", 1,
               "log.level: expected a string, got an integer");
}

static void test_out_of_range(void **state)
{
    fixture_t *f = *state;

    load_fails(f,
               "c2s = { listen = (\n"
               "  { address = \"127.0.0.1\"; port = -1; } ); };\n",
               2, "c2s.listen[0].port: -1 is out of range (0..65535)");
    load_fails(f,
               "c2s = { listen = ( { address = \"127.0.0.1\";\n"
               "  port = 65536; } ); };\n",
               2, "out of range (0..65535)");
    load_fails(f, "sasl = {\n scram_iterations = 4095;\n};\n", 2,
               "sasl.scram_iterations: 4095 is out of range");
    load_fails(f, "sasl = { max_auth_failures = 1; };\n", 1,
               "sasl.max_auth_failures: 1 is out of range (2..5)");
    load_fails(f, "sasl = { max_auth_failures = 6; };\n", 1,
               "out of range (2..5)");
    load_fails(f, "sasl = { auth_failure_delay = -1.0; };\n", 1,
               "sasl.auth_failure_delay: -1 is out of range");
    load_fails(f, "limits = { max_stanza_size = 0; };\n", 1,
               "limits.max_stanza_size: 0 is out of range");
    /* With an L suffix libconfig keeps 64 bits, and the range speaks. */
    load_fails(f, "limits = { max_stanza_size = 9999999999L; };\n", 1,
               "limits.max_stanza_size: 9999999999 is out of range");
    load_fails(f, "c2s = { max_resources = -1; };\n", 1,
               "c2s.max_resources: -1 is out of range (1..1024)");
    load_fails(f,
               "limits = {\n  max_stanza_size = 20000;\n"
               "  max_stanza_size_preauth = 30000;\n};\n",
               3,
               "limits.max_stanza_size_preauth (30000) is larger than "
               "limits.max_stanza_size (20000)");
    /* Only max_stanza_size given: the error points at it. */
    load_fails(f, "limits = {\n  max_stanza_size = 10000;\n};\n", 2,
               "is larger than limits.max_stanza_size (10000)");
    load_fails(f, "limits = {\n rate_limit = 1000;\n rate_burst = 999; };\n", 3,
               "limits.rate_burst (999) is smaller than limits.rate_limit");
    load_fails(f, "limits = { max_connections_per_address = 0; };\n", 1,
               "limits.max_connections_per_address: 0 is out of range");
    load_fails(f, "limits = { max_unauthenticated_per_address = 0; };\n", 1,
               "limits.max_unauthenticated_per_address: 0 is out of range");
    load_fails(f, "log = {\n level = \"verbose\";\n};\n", 2,
               "log.level: 'verbose' is not one of error, warn, info, debug");
    load_fails(f, "c2s = { resource_conflict = \"both\"; };\n", 1,
               "'both' is not one of new-wins, old-wins");
}

/* libconfig 1.5 wraps an integer beyond 32 bits without an L suffix;
 * config_load() refuses such a literal rather than use the wrapped value. */
static void test_wrapped_integers(void **state)
{
    fixture_t *f = *state;
    server_config_t c;

    load_fails(f, "limits = {\n  max_stanza_size = 9999999999;\n};\n", 2,
               "9999999999 is too large (integers here are at most "
               "2147483647)");
    load_fails(f, "\nc2s = { max_resources = -4294967297; };\n", 2,
               "4294967297 is too large");
    load_fails(f, "c2s = { max_resources = 0x100000001; };\n", 1,
               "0x100000001 is too large");
    load_fails(f, "c2s = { max_resources = 2147483648; };\n", 1,
               "2147483648 is too large");
    load_fails(f, "c2s = { max_resources = -2147483648; };\n", 1,
               "c2s.max_resources: -2147483648 is out of range");
    /* Digits in strings, comments, names and floats are not integers. */
    load_ok(f,
            "# 99999999999\n"
            "hosts = [ \"h99999999999.example\" ]; // 99999999999\n"
            "/* 99999999999\n 99999999999 */\n"
            "limits = { idle_timeout = 1.0e3; close_timeout = 99.99999999999;"
            " };\n"
            "c2s = { max_resources = 0x20; };\n",
            &c);
    assert_string_equal(c.hosts[0], "h99999999999.example");
    assert_true(c.idle_timeout == 1000.0);
    assert_int_equal(c.max_resources, 32);
    config_free(&c);
}

static void test_include_refused(void **state)
{
    fixture_t *f = *state;

    write_file(f, "more.conf", "log = { level = \"debug\"; };\n");
    load_fails(f, "hosts = [ \"localhost\" ];\n@include \"more.conf\"\n", 2,
               "@include is not supported");
}

static void test_bad_hosts(void **state)
{
    fixture_t *f = *state;

    load_fails(f, "\nhosts = [ \"exa mple.org\" ];\n", 2,
               "hosts: 'exa mple.org' is not a valid domain");
    load_fails(f, "hosts = [ \"a..b\" ];\n", 1, "is not a valid domain");
    load_fails(f, "hosts = [ \"\" ];\n", 1, "is not a valid domain");
    load_fails(f,
               "hosts = [ \"localhost\",\n"
               "          \"LOCALHOST\" ];\n",
               2, "hosts: 'localhost' is listed twice");
    load_fails(f, "hosts = [ ];\n", 1, "hosts: at least one host is required");
}

static void test_listener_errors(void **state)
{
    fixture_t *f = *state;

    load_fails(f, "c2s = { listen = (\n  { address = \"127.0.0.1\"; } ); };\n",
               2, "c2s.listen[0]: port is required");
    load_fails(f, "c2s = { listen = (\n  { port = 5222; } ); };\n", 2,
               "c2s.listen[0]: address is required");
    load_fails(f,
               "c2s = { listen = (\n"
               "  { address = \"localhost\"; port = 5222; } ); };\n",
               2,
               "c2s.listen[0].address: 'localhost' is not a numeric IPv4 or "
               "IPv6 address");
}

static void test_tls_pairs_and_paths(void **state)
{
    fixture_t *f = *state;

    load_fails(f, "tls = {\n  cert = \"a.crt\";\n};\n", 2,
               "tls.cert is set but tls.key is not");
    load_fails(f, "tls = {\n\n  key = \"a.key\";\n};\n", 3,
               "tls.key is set but tls.cert is not");
    load_fails(f, "storage = { path = \"\"; };\n", 1,
               "storage.path: must not be empty");
    load_fails(f, "tls = { cert = 5; key = \"k\"; };\n", 1,
               "tls.cert: expected a string, got an integer");
}

static void test_syntax_errors(void **state)
{
    fixture_t *f = *state;

    /* libconfig's own message, behind our FILE:LINE. */
    load_fails(f, "hosts = [ \"localhost\" ];\nlimits = { max_depth = ; };\n",
               2, "syntax error");
    load_fails(f, "hosts = [ \"localhost\" ];\n};\n", 2, "syntax error");
    load_fails(f, "log = {\n level = \"info\";\n\n", 4, "syntax error");
    load_fails(f, "\n\nlog = { level = \"info\"; level = \"debug\"; };\n", 3,
               "duplicate setting name");
}

static void test_missing_file(void **state)
{
    fixture_t *f = *state;
    char path[PATH_MAX], err[512];
    server_config_t c;

    snprintf(path, sizeof(path), "%s/nope.conf", f->dir);
    assert_int_equal(config_defaults(&c), 0);
    assert_int_equal(config_load(path, &c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "nope.conf: cannot read: No such file"));
    assert_int_equal(config_load(f->dir, &c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot read: Is a directory"));
    config_free(&c);
}

static void test_relative_paths(void **state)
{
    fixture_t *f = *state;
    char sub[PATH_MAX], path[PATH_MAX + 16], err[512], want[PATH_MAX + 32];
    char cwd[PATH_MAX];
    server_config_t c;
    FILE *fp;

    /* The file sits in DIR/sub and is named relative to the working
     * directory (DIR): its paths must land in DIR/sub, absolute. */
    snprintf(sub, sizeof(sub), "%s/sub", f->dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(path, sizeof(path), "%s/s.conf", sub);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("tls = { cert = \"c.pem\"; key = \"../k.pem\"; };\n"
          "storage = { path = \"data/x.db\"; };\n",
          fp);
    fclose(fp);
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(f->dir), 0);
    assert_int_equal(config_defaults(&c), 0);
    if (config_load("sub/s.conf", &c, err, sizeof(err)) != 0) {
        assert_int_equal(chdir(cwd), 0);
        fail_msg("%s", err);
    }
    assert_int_equal(chdir(cwd), 0);
    assert_string_equal(c.path, "sub/s.conf");
    snprintf(want, sizeof(want), "%s/sub/c.pem", f->real);
    assert_string_equal(c.cert_file, want);
    snprintf(want, sizeof(want), "%s/sub/../k.pem", f->real);
    assert_string_equal(c.key_file, want);
    snprintf(want, sizeof(want), "%s/sub/data/x.db", f->real);
    assert_string_equal(c.storage_path, want);
    config_free(&c);
}

/* The example documents every setting at its default: loading it must give
 * exactly the defaults, except the storage path it spells out (which is
 * relative to the file, like the default when loading any file). */
static void test_example_is_defaults(void **state)
{
    server_config_t ex, d;
    char err[512], dir[PATH_MAX], want[PATH_MAX + 32];
    char *slash;

    (void)state;
    assert_int_equal(config_defaults(&ex), 0);
    if (config_load(STARLING_EXAMPLE_CONF, &ex, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(config_defaults(&d), 0);
    assert_same_settings(&ex, &d);
    assert_same_or_null(ex.cert_file, d.cert_file);
    assert_same_or_null(ex.key_file, d.key_file);
    assert_same_or_null(ex.client_ca_file, d.client_ca_file);
    assert_non_null(realpath(STARLING_EXAMPLE_CONF, dir));
    slash = strrchr(dir, '/');
    assert_non_null(slash);
    *slash = '\0';
    snprintf(want, sizeof(want), "%s/%s", dir, d.storage_path);
    assert_string_equal(ex.storage_path, want);
    /* Every setting is written out, so each has a line. */
    assert_true(ex.line.hosts > 0);
    assert_true(ex.line.cert > 0);
    assert_true(ex.line.key > 0);
    assert_true(ex.line.client_ca > 0);
    assert_true(ex.line.require_encryption > 0);
    assert_true(ex.line.storage_path > 0);
    assert_true(ex.line.modules > 0);
    config_free(&ex);
    config_free(&d);
}

/* ------------------------------------------------------------- modules */

static void test_modules_default(void **state)
{
    server_config_t c;

    (void)state;
    assert_int_equal(config_defaults(&c), 0);
    /* A modern server by default. */
    assert_true(module_on(&c, "ping"));
    assert_true(module_on(&c, "disco"));
    assert_true(module_on(&c, "version"));
    assert_true(module_on(&c, "time"));
    assert_true(module_on(&c, "im"));
    assert_false(module_bool(&c, "version"));
    config_free(&c);
}

static void test_modules_list(void **state)
{
    fixture_t *f = *state;
    server_config_t c;

    load_ok(f, "modules = [ \"ping\" ];\n", &c);
    assert_true(module_on(&c, "ping"));
    assert_false(module_on(&c, "disco"));
    assert_false(module_on(&c, "version"));
    assert_false(module_on(&c, "time"));
    assert_true(module_on(&c, "im")); /* core: always */
    assert_int_equal(c.line.modules, 1);
    config_free(&c);

    load_ok(f, "\nmodules = [];\n", &c);
    assert_false(module_on(&c, "ping"));
    assert_false(module_on(&c, "disco"));
    assert_true(module_on(&c, "im"));
    assert_int_equal(c.line.modules, 2);
    config_free(&c);

    load_ok(f, "modules = ( \"time\", \"im\" );\n", &c);
    assert_true(module_on(&c, "time"));
    assert_false(module_on(&c, "ping"));
    config_free(&c);
}

/* s2s: routes, listeners, and their errors. */
static void test_s2s(void **state)
{
    fixture_t *f = *state;
    server_config_t c;

    load_ok(f,
            "s2s = { enabled = true; dns = \"127.0.0.1:5353\";\n"
            "  listen = ( { address = \"127.0.0.1\"; port = 0; } );\n"
            "  routes = ( { domain = \"Example.NET\"; host = \"127.0.0.2\"; },"
            "\n    { domain = \"b.example\"; host = \"h\"; port = 5999; "
            "direct_tls = true; } );\n"
            "  secure_auth = true; dialback = false; queue_max = 5; };\n",
            &c);
    assert_true(c.s2s_enabled);
    assert_true(c.s2s_secure_auth);
    assert_false(c.s2s_dialback);
    assert_int_equal(c.s2s_queue_max, 5);
    assert_string_equal(c.s2s_dns, "127.0.0.1:5353");
    assert_int_equal(c.s2s_count, 1);
    assert_int_equal(c.s2s[0].port, 0);
    assert_int_equal(c.s2s_route_count, 2);
    assert_string_equal(c.s2s_routes[0].domain, "example.net");
    assert_string_equal(c.s2s_routes[0].host, "127.0.0.2");
    assert_int_equal(c.s2s_routes[0].port, 5269);
    assert_int_equal(c.s2s_routes[1].port, 5999);
    assert_true(c.s2s_routes[1].direct_tls);
    config_free(&c);

    load_fails(f, "s2s = {\n routes = ( { host = \"h\"; } ); };\n", 2,
               "domain is required");
    load_fails(f,
               "s2s = {\n routes = ( { domain = \"a\"; host = \"h\"; },\n"
               " { domain = \"A\"; host = \"i\"; } ); };\n",
               3, "has a route already");
    load_fails(f, "s2s = {\n queue_max = 0; };\n", 2, "out of range");
}

/* component: external components (XEP-0114), and their errors. */
static void test_components(void **state)
{
    fixture_t *f = *state;
    server_config_t c;

    load_ok(f,
            "hosts = [ \"example.org\" ];\n"
            "component = {\n"
            "  listen = ( { address = \"::1\"; port = 0; } );\n"
            "  domains = ( { domain = \"Bot.Example.ORG\"; secret = \"s\"; "
            "name = \"A bot\"; },\n"
            "    { domain = \"gw.example.org\"; secret = \"t\"; } ); };\n",
            &c);
    assert_int_equal(c.component_listen_count, 1);
    assert_string_equal(c.component_listen[0].address, "::1");
    assert_int_equal(c.component_count, 2);
    assert_string_equal(c.components[0].domain, "bot.example.org");
    assert_string_equal(c.components[0].secret, "s");
    assert_string_equal(c.components[0].name, "A bot");
    assert_int_equal(c.components[0].line, 4);
    assert_null(c.components[1].name);
    config_free(&c);

    load_fails(f, "component = {\n domains = ( { domain = \"a.b\"; } ); };\n",
               2, "secret is required");
    load_fails(f,
               "component = {\n domains = ( { domain = \"a.b\"; secret = "
               "\"\"; } ); };\n",
               2, "must not be empty");
    load_fails(f,
               "component = {\n domains = ( { domain = \"a.b\"; secret = "
               "\"x\"; },\n { domain = \"A.B\"; secret = \"y\"; } ); };\n",
               3, "listed twice");
    load_fails(f,
               "hosts = [ \"example.org\" ];\ncomponent = {\n domains = ( {"
               " domain = \"example.org\"; secret = \"x\"; } ); };\n",
               3, "a component needs a domain of its own");
    load_fails(f,
               "component = {\n listen = ( { address = \"127.0.0.1\"; "
               "port = 5347; direct_tls = true; } ); };\n",
               2, "component streams have no TLS");
}

static void test_modules_settings(void **state)
{
    fixture_t *f = *state;
    server_config_t c;

    load_ok(f, "version = { show_os = true; };\n", &c);
    assert_true(module_bool(&c, "version"));
    assert_true(module_on(&c, "version"));
    config_free(&c);
    /* Settings of a module that is off are kept (and checked). */
    load_ok(f, "modules = [ \"ping\" ];\nversion = { show_os = true; };\n", &c);
    assert_true(module_bool(&c, "version"));
    assert_false(module_on(&c, "version"));
    config_free(&c);
}

/* A CONFIG_FIELD_STRINGS setting: XEP-0157's contact_info lists. */
static void test_modules_strings(void **state)
{
    fixture_t *f = *state;
    server_config_t c;
    size_t n, m = 0;
    const module_desc_t *const *all = modules_all(&n);

    while (m < n && strcmp(all[m]->name, "contact_info") != 0)
        m++;
    assert_true(m < n);
    load_ok(f,
            "contact_info = { admin = [ \"xmpp:a@example.org\", "
            "\"mailto:a@example.org\" ];\n abuse = ( \"https://x\" ); };\n",
            &c);
    const config_field_t *fl = all[m]->settings;
    const config_strings_t *abuse =
        (const config_strings_t *)((const char *)c.module_settings[m] +
                                   fl[0].offset);
    const config_strings_t *admin =
        (const config_strings_t *)((const char *)c.module_settings[m] +
                                   fl[1].offset);
    assert_string_equal(fl[1].name, "admin");
    assert_int_equal(admin->n, 2);
    assert_string_equal(admin->v[0], "xmpp:a@example.org");
    assert_string_equal(admin->v[1], "mailto:a@example.org");
    assert_int_equal(abuse->n, 1);
    assert_string_equal(abuse->v[0], "https://x");
    config_free(&c);

    /* A CONFIG_FIELD_STRING: external_services.secret. */
    size_t e = 0;
    while (e < n && strcmp(all[e]->name, "external_services") != 0)
        e++;
    assert_true(e < n);
    const config_field_t *ef = all[e]->settings;
    while (ef->name != NULL && strcmp(ef->name, "secret") != 0)
        ef++;
    assert_int_equal(ef->kind, CONFIG_FIELD_STRING);
    load_ok(f, "external_services = { secret = \"s3cret\"; };\n", &c);
    assert_string_equal(
        *(char *const *)((const char *)c.module_settings[e] + ef->offset),
        "s3cret");
    config_free(&c);
    load_ok(f, "external_services = { secret = \"\"; };\n", &c);
    assert_null(
        *(char *const *)((const char *)c.module_settings[e] + ef->offset));
    config_free(&c);
    load_fails(f, "external_services = {\n secret = 5; };\n", 2,
               "external_services.secret: expected a string");

    load_fails(f, "contact_info = {\n admin = \"xmpp:a@b\"; };\n", 2,
               "contact_info.admin: expected a list of strings");
    load_fails(f, "contact_info = {\n admin = [ \"\" ]; };\n", 2,
               "each element must be a non-empty string");
    load_fails(f, "contact_info = {\n admin = ( \"a\", 3 ); };\n", 2,
               "each element must be a non-empty string");
}

static void test_modules_errors(void **state)
{
    fixture_t *f = *state;

    load_fails(f,
               "hosts = [\"localhost\"];\nmodules = [ \"ping\", \"pong\" ];\n",
               2, "modules: unknown module 'pong'");
    load_fails(f, "\n\nmodules = [ \"ping\",\n \"ping\" ];\n", 4,
               "modules: 'ping' is listed twice");
    load_fails(f, "modules = \"ping\";\n", 1,
               "modules: expected an array of strings");
    load_fails(f, "modules = [ 1 ];\n", 1,
               "modules: expected an array of strings");
    load_fails(f, "\nversion = {\n  show_os = true;\n  show_cpu = true;\n};\n",
               4, "unknown setting 'version.show_cpu'");
    load_fails(f, "version = { show_os = 1; };\n", 1,
               "version.show_os: expected true or false");
    load_fails(f, "version = 3;\n", 1, "version: expected a group");
    /* A module without settings has no group. */
    load_fails(f, "\nping = { };\n", 2, "unknown setting 'ping'");
}

/* --------------------------------------------------------------- check */

/* Asserts that `problems` has a line starting with `prefix` and holding
 * `what`. */
static void assert_problem(const char *problems, const char *prefix,
                           const char *what)
{
    const char *p = problems;

    while (*p != '\0') {
        const char *end = strchr(p, '\n');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        char line[1024];

        snprintf(line, sizeof(line), "%.*s", (int)n, p);
        if (strncmp(line, prefix, strlen(prefix)) == 0 &&
            strstr(line, what) != NULL)
            return;
        p += n;
        if (*p == '\n')
            p++;
    }
    fail_msg("no problem '%s...%s' in:\n%s", prefix, what, problems);
}

static void test_check_defaults(void **state)
{
    server_config_t c;
    char err[2048];

    (void)state;
    assert_int_equal(config_defaults(&c), 0);
    /* No certificate: both encryption and the direct TLS port need one. */
    assert_int_equal(config_check(&c, err, sizeof(err)), 2);
    assert_problem(err, "built-in defaults: ",
                   "c2s.require_encryption is on but tls.cert is not set");
    assert_problem(err, "built-in defaults: ",
                   "c2s.listen[1]: 127.0.0.1 port 5223 is direct TLS");
    /* A tiny buffer cuts the text but still counts every problem. */
    assert_int_equal(config_check(&c, err, 10), 2);
    assert_int_equal(strlen(err), 9);
    config_free(&c);
}

/* Makes DIR/NAME.crt and DIR/NAME.key for `host`. */
static void make_cert(const fixture_t *f, const char *name, const char *host)
{
    char crt[PATH_MAX], key[PATH_MAX], err[256];

    snprintf(crt, sizeof(crt), "%s/%s.crt", f->dir, name);
    snprintf(key, sizeof(key), "%s/%s.key", f->dir, name);
    if (tls_make_self_signed(host, 30, crt, key, err, sizeof(err)) != TLS_OK)
        fail_msg("tls_make_self_signed: %s", err);
}

static void test_check_ok(void **state)
{
    fixture_t *f = *state;
    server_config_t c;
    char err[2048];

    make_cert(f, "localhost", "localhost");
    load_ok(f,
            "tls = { cert = \"localhost.crt\"; key = \"localhost.key\"; };\n",
            &c);
    if (config_check(&c, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_string_equal(err, "");
    config_free(&c);
}

static void test_check_problems(void **state)
{
    fixture_t *f = *state;
    server_config_t c;
    char err[4096], prefix[PATH_MAX + 32];

    make_cert(f, "other", "other.example");
    make_cert(f, "localhost", "localhost");

    /* A missing file, with the line that names it. */
    load_ok(f,
            "tls = {\n  cert = \"missing.crt\";\n  key = \"localhost.key\";\n"
            "};\n",
            &c);
    assert_int_equal(config_check(&c, err, sizeof(err)), 1);
    snprintf(prefix, sizeof(prefix), "%s/starlingd.conf:2: ", f->dir);
    assert_problem(err, prefix, "tls.cert: cannot open");
    assert_problem(err, prefix, "missing.crt: No such file or directory");
    config_free(&c);

    /* A certificate that does not name the host. */
    load_ok(f,
            "hosts = [ \"localhost\" ];\n"
            "tls = { cert = \"other.crt\";\n key = \"other.key\"; };\n",
            &c);
    assert_int_equal(config_check(&c, err, sizeof(err)), 1);
    snprintf(prefix, sizeof(prefix), "%s/starlingd.conf:2: ", f->dir);
    assert_problem(err, prefix, "does not cover host 'localhost'");
    config_free(&c);

    /* A key that belongs to another certificate. */
    load_ok(f, "tls = { cert = \"localhost.crt\";\n key = \"other.key\"; };\n",
            &c);
    assert_int_equal(config_check(&c, err, sizeof(err)), 1);
    snprintf(prefix, sizeof(prefix), "%s/starlingd.conf:1: tls: ", f->dir);
    assert_problem(err, prefix, "");
    config_free(&c);

    /* Listeners on the same port, directly or through a wildcard; a missing
     * storage directory. */
    load_ok(f,
            "tls = { cert = \"localhost.crt\"; key = \"localhost.key\"; };\n"
            "c2s = { listen = (\n"
            "  { address = \"127.0.0.1\"; port = 5222; },\n"
            "  { address = \"::ffff:127.0.0.1\"; port = 5222; },\n"
            "  { address = \"0.0.0.0\"; port = 5223; },\n"
            "  { address = \"127.0.0.2\"; port = 5223; },\n"
            "  { address = \"::1\"; port = 5223; },\n"
            "  { address = \"::\"; port = 5224; },\n"
            "  { address = \"10.0.0.1\"; port = 5224; }\n"
            "); };\n"
            "storage = { path = \"no/such/dir/s.db\"; };\n",
            &c);
    assert_int_equal(config_check(&c, err, sizeof(err)), 4);
    snprintf(prefix, sizeof(prefix), "%s/starlingd.conf:4: ", f->dir);
    assert_problem(err, prefix,
                   "c2s.listen[1]: ::ffff:127.0.0.1 port 5222 collides with "
                   "c2s.listen[0]");
    snprintf(prefix, sizeof(prefix), "%s/starlingd.conf:6: ", f->dir);
    assert_problem(err, prefix, "c2s.listen[3]: 127.0.0.2 port 5223 collides");
    snprintf(prefix, sizeof(prefix), "%s/starlingd.conf:9: ", f->dir);
    assert_problem(err, prefix, "c2s.listen[6]: 10.0.0.1 port 5224 collides");
    snprintf(prefix, sizeof(prefix), "%s/starlingd.conf:11: ", f->dir);
    assert_problem(err, prefix, "storage.path: directory");
    assert_problem(err, prefix, "no/such/dir does not exist");
    config_free(&c);

    /* Encryption required without a certificate, said where it is set. */
    load_ok(f,
            "c2s = {\n  listen = ( { address = \"::1\"; port = 5222; } );\n"
            "  require_encryption = true;\n};\n",
            &c);
    assert_int_equal(config_check(&c, err, sizeof(err)), 1);
    snprintf(prefix, sizeof(prefix), "%s/starlingd.conf:3: ", f->dir);
    assert_problem(err, prefix,
                   "c2s.require_encryption is on but tls.cert is not set");
    config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test_setup_teardown(test_empty_file_is_defaults, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_full_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_over_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_listen_turns_c2s_off, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unknown_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrapped_integers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_include_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_hosts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listener_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_pairs_and_paths, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_syntax_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relative_paths, setup, teardown),
        cmocka_unit_test(test_example_is_defaults),
        cmocka_unit_test(test_modules_default),
        cmocka_unit_test_setup_teardown(test_modules_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_modules_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s2s, setup, teardown),
        cmocka_unit_test_setup_teardown(test_modules_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_components, setup, teardown),
        cmocka_unit_test_setup_teardown(test_modules_errors, setup, teardown),
        cmocka_unit_test(test_check_defaults),
        cmocka_unit_test_setup_teardown(test_check_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_problems, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
