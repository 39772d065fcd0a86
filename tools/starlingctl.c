/* starlingctl: administration of a Starling server from the command line:
 * accounts, a configuration check, self-signed certificates.
 *
 * Every failure is one line on stderr, "starlingctl: what: why", and a
 * non-zero exit status (1; 2 for a command line that makes no sense), so
 * that scripts can rely on both. Passwords are never taken from the command
 * line, where `ps` and shell history would show them. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>
#include <uv.h>

#include "config/config.h"
#include "jid/jid.h"
#include "net/tls.h"
#include "sasl/scram.h"
#include "starling_config.h"
#include "store/store.h"

#define PROG              "starlingctl"
#define DEFAULT_CONFIG    "starlingd.conf"
#define PASSWORD_MAX      4096 /* bytes; a longer line is refused */
#define CERT_DAYS_DEFAULT 365
#define EXIT_USAGE        2

static const char usage_text[] =
    "Usage: starlingctl [--config FILE] COMMAND [ARGS]\n"
    "\n"
    "Administers a Starling XMPP server: accounts, configuration, "
    "certificates.\n"
    "\n"
    "Commands:\n"
    "  adduser JID       create an account; JID is user@domain and domain\n"
    "                    must be one of the configured hosts\n"
    "  passwd JID        give an account a new password\n"
    "  deluser JID       delete an account\n"
    "  users [DOMAIN]    list the accounts (of one domain), one JID a line\n"
    "  check             check the configuration: syntax, ranges, certificate\n"
    "                    and key, hosts covered, listeners, storage\n"
    "  cert HOST [--days N] [--out DIR] [--force]\n"
    "                    write a self-signed certificate DIR/HOST.crt and its\n"
    "                    key DIR/HOST.key (DIR default: the current "
    "directory,\n"
    "                    N default: 365); --force replaces existing files\n"
    "\n"
    "Options:\n"
    "  -c, --config FILE  the server's configuration file. Without it,\n"
    "                     ./starlingd.conf when that exists, otherwise the\n"
    "                     built-in defaults (hosts: localhost; accounts in\n"
    "                     ./starling.db)\n"
    "  -h, --help         show this help\n"
    "  -V, --version      show the version\n"
    "\n"
    "Passwords are read from standard input when it is not a terminal (its\n"
    "first line, without the line end), otherwise asked for twice without\n"
    "echo. They are never accepted on the command line.\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

/* ------------------------------------------------------------ messages */

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;

    fputs(PROG ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

static int usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs(PROG ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'starlingctl --help'.\n", stderr);
    return EXIT_USAGE;
}

/* ------------------------------------------------------------ passwords */

/* The terminal state to restore when a signal arrives while echo is off.
 * File-scope because a signal handler can reach nothing else; only this
 * short-lived tool has it, never the server. */
static struct termios saved_tty;
static volatile sig_atomic_t tty_echo_off;

static void restore_tty_and_die(int sig)
{
    if (tty_echo_off)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void wipe_free(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* Reads one line from stdin, without its "\n" or "\r\n". NULL (and a
 * message) at end of input, for a NUL byte, or a line too long. */
static char *read_line(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);

    if (n < 0) {
        free(line);
        fail("no password: standard input is empty");
        return NULL;
    }
    if (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    if (n > 0 && line[n - 1] == '\r')
        line[--n] = '\0';
    if ((size_t)n != strlen(line)) {
        explicit_bzero(line, cap);
        free(line);
        fail("password refused: it holds a NUL byte");
        return NULL;
    }
    if (n > PASSWORD_MAX) {
        wipe_free(line);
        fail("password refused: longer than %d bytes", PASSWORD_MAX);
        return NULL;
    }
    return line;
}

/* Prompts on the terminal with echo off; restores the terminal also when
 * interrupted. */
static char *prompt_password(const char *prompt)
{
    struct termios quiet;
    struct sigaction sa, old_int, old_term, old_hup, old_quit;
    char *line;

    if (tcgetattr(STDIN_FILENO, &saved_tty) < 0) {
        fail("cannot read the terminal: %s", strerror(errno));
        return NULL;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = restore_tty_and_die;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGHUP, &sa, &old_hup);
    sigaction(SIGQUIT, &sa, &old_quit);

    quiet = saved_tty;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
    /* Echo goes off before the prompt appears: TCSAFLUSH drops what was
     * typed before it, so nothing typed after the prompt may be lost. */
    tty_echo_off = 1;
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    fputs(prompt, stderr);
    fflush(stderr);
    line = read_line();
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
    tty_echo_off = 0;
    fputc('\n', stderr);

    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    sigaction(SIGQUIT, &old_quit, NULL);
    return line;
}

/* The new password, from a pipe or asked twice on the terminal; NULL after
 * printing why not. The caller releases it with wipe_free(). */
static char *get_new_password(void)
{
    char *pw, *again, *prepped;

    if (!isatty(STDIN_FILENO)) {
        pw = read_line();
    } else {
        pw = prompt_password("New password: ");
        if (pw != NULL && pw[0] != '\0') {
            again = prompt_password("Retype new password: ");
            if (again == NULL) {
                wipe_free(pw);
                return NULL;
            }
            if (strcmp(pw, again) != 0) {
                wipe_free(pw);
                wipe_free(again);
                fail("the passwords do not match");
                return NULL;
            }
            wipe_free(again);
        }
    }
    if (pw == NULL)
        return NULL;
    if (pw[0] == '\0') {
        wipe_free(pw);
        fail("empty password");
        return NULL;
    }
    /* Said here rather than as scram_make()'s bare -1: SaslPrep (RFC 4013)
     * refuses control characters and unassigned code points. */
    prepped = scram_saslprep(pw);
    if (prepped == NULL || prepped[0] == '\0') {
        wipe_free(prepped);
        wipe_free(pw);
        fail("password refused: SASLprep (RFC 4013) does not allow its "
             "characters");
        return NULL;
    }
    wipe_free(prepped);
    return pw;
}

/* ------------------------------------------------------------ the store */

typedef struct ctl {
    server_config_t cfg;
    uv_loop_t loop;
    bool loop_open;
    store_t *store;
} ctl_t;

/* One request's outcome, filled by its callback. */
typedef struct wait {
    bool done;
    int err;
} wait_t;

static void on_done(void *ud, int err)
{
    wait_t *w = ud;

    w->err = err;
    w->done = true;
}

static void on_account(void *ud, int err, const store_account_t *a)
{
    (void)a;
    on_done(ud, err);
}

static void on_list(void *ud, int err, const char *const *names, size_t count)
{
    for (size_t i = 0; err == STORE_OK && i < count; i++)
        printf("%s\n", names[i]);
    on_done(ud, err);
}

static void on_closed(void *ud)
{
    *(bool *)ud = true;
}

/* Runs the loop until the request's callback has run. */
static int wait_for(ctl_t *ctl, wait_t *w)
{
    if (!store_wait(&ctl->loop, &w->done))
        return fail("internal error: a storage request was lost");
    return 0;
}

static bool db_exists(const ctl_t *ctl)
{
    struct stat st;

    return stat(ctl->cfg.storage_path, &st) == 0;
}

static int open_store(ctl_t *ctl)
{
    char err[512];
    int rc;

    if (uv_loop_init(&ctl->loop) != 0)
        return fail("cannot start an event loop");
    ctl->loop_open = true;
    rc = store_open(&ctl->loop, ctl->cfg.storage_path, &ctl->store, err,
                    sizeof(err));
    if (rc != STORE_OK) {
        ctl->store = NULL;
        return fail("%s: %s", ctl->cfg.storage_path,
                    err[0] ? err : store_strerror(rc));
    }
    return 0;
}

static void close_store(ctl_t *ctl)
{
    bool closed = false;

    if (ctl->store != NULL) {
        store_close(ctl->store, on_closed, &closed);
        if (!store_wait(&ctl->loop, &closed))
            fail("internal error: the store did not close");
        ctl->store = NULL;
    }
    if (ctl->loop_open) {
        /* Runs the close callbacks of handles released just now. */
        uv_run(&ctl->loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&ctl->loop) != 0)
            fail("internal error: the event loop still has handles");
        ctl->loop_open = false;
    }
}

/* ------------------------------------------------------------ accounts */

/* Joins the hosts for messages: "localhost, example.org". */
static void hosts_list(const server_config_t *c, char *buf, size_t size)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < c->host_count && used < size; i++) {
        int n = snprintf(buf + used, size - used, "%s%s", i ? ", " : "",
                         c->hosts[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

static bool serves(const server_config_t *c, const char *domain)
{
    for (size_t i = 0; i < c->host_count; i++)
        if (strcmp(c->hosts[i], domain) == 0)
            return true;
    return false;
}

/* Parses an account JID with the stored-string rules (an account name is
 * created and kept: RFC 3454 §7) into j and its bare form into name. */
static int parse_account(const ctl_t *ctl, const char *arg, bool must_serve,
                         jid_t *j, char name[JID_FORMAT_BUF])
{
    int rc = jid_parse(arg, strlen(arg), JID_STORED, j);

    if (rc != JID_OK)
        return fail("%s: not a valid JID (%s)", arg, jid_strerror(rc));
    if (j->node == NULL) {
        jid_clear(j);
        return fail("%s: an account needs a user name: user@domain", arg);
    }
    if (j->resource != NULL) {
        jid_clear(j);
        return fail("%s: an account is a bare JID, without /resource", arg);
    }
    jid_format(j, true, name, JID_FORMAT_BUF);
    if (must_serve && !serves(&ctl->cfg, j->domain)) {
        char hosts[1024];

        hosts_list(&ctl->cfg, hosts, sizeof(hosts));
        fail("%s: %s is not served by this server (hosts: %s)", name, j->domain,
             hosts);
        jid_clear(j);
        return 1;
    }
    return 0;
}

/* STORE_OK, STORE_ERR_NOT_FOUND, or another error already reported. */
static int account_lookup(ctl_t *ctl, const jid_t *j, const char *name)
{
    wait_t w = {false, 0};

    store_account_get(ctl->store, j->domain, j->node, on_account, &w);
    if (wait_for(ctl, &w) != 0)
        return STORE_ERR_IO;
    if (w.err != STORE_OK && w.err != STORE_ERR_NOT_FOUND)
        fail("%s: %s", name, store_strerror(w.err));
    return w.err;
}

/* Fills the account's credentials from the password: SCRAM-SHA-1 and
 * SCRAM-SHA-256 always, the DIGEST-MD5 hash when that mechanism is on. */
static int make_credentials(const ctl_t *ctl, const jid_t *j, const char *pw,
                            store_account_t *a)
{
    memset(a, 0, sizeof(*a));
    a->domain = j->domain;
    a->node = j->node;
    if (scram_make(SCRAM_SHA1, pw, ctl->cfg.scram_iterations, &a->sha1) < 0 ||
        scram_make(SCRAM_SHA256, pw, ctl->cfg.scram_iterations, &a->sha256) < 0)
        return fail("cannot compute the SCRAM credentials");
    if (ctl->cfg.sasl_digest_md5) {
        if (scram_digest_md5_hash(j->node, j->domain, pw, a->digest_md5) < 0)
            return fail("cannot compute the DIGEST-MD5 hash (sasl.digest_md5 "
                        "is on, but this OpenSSL has no MD5)");
        a->has_digest_md5 = true;
    }
    return 0;
}

/* Asks for a new password and stores credentials made from it: a new
 * account (create) or new credentials for an existing one. The store is
 * open; returns 0 or 1 after saying what went wrong. */
static int store_new_password(ctl_t *ctl, const jid_t *j, const char *name,
                              bool create)
{
    store_account_t a;
    wait_t w = {false, 0};
    char *pw = get_new_password();
    if (pw == NULL)
        return 1;
    int rc = make_credentials(ctl, j, pw, &a);
    wipe_free(pw);
    if (rc == 0) {
        if (create)
            store_account_create(ctl->store, &a, on_done, &w);
        else
            store_account_update(ctl->store, &a, on_done, &w);
        rc = wait_for(ctl, &w) != 0;
    }
    explicit_bzero(&a, sizeof(a));
    if (rc != 0)
        return 1;
    if (w.err == STORE_ERR_EXISTS)
        return fail("%s: account exists", name);
    if (w.err == STORE_ERR_NOT_FOUND)
        return fail("%s: no such account", name);
    if (w.err != STORE_OK)
        return fail("%s: %s", name, store_strerror(w.err));
    return 0;
}

/* adduser (create) and passwd (!create): the account must be absent or
 * present, then a new password is asked for and stored. */
static int set_password(ctl_t *ctl, const char *arg, bool create)
{
    char name[JID_FORMAT_BUF];
    jid_t j;
    int rc = 1;

    if (parse_account(ctl, arg, true, &j, name) != 0)
        return 1;
    /* passwd: opening would create an empty database where there was
     * none. */
    if (!create && !db_exists(ctl)) {
        jid_clear(&j);
        return fail("%s: no such account (no database at %s)", name,
                    ctl->cfg.storage_path);
    }
    if (open_store(ctl) == 0) {
        /* Before asking for a password, so that nobody types one for
         * nothing; the store still catches a change made meanwhile. */
        int found = account_lookup(ctl, &j, name);
        if (found == STORE_OK && create)
            fail("%s: account exists", name);
        else if (found == STORE_ERR_NOT_FOUND && !create)
            fail("%s: no such account", name);
        else if (found == STORE_OK || found == STORE_ERR_NOT_FOUND)
            rc = store_new_password(ctl, &j, name, create);
    }
    close_store(ctl);
    jid_clear(&j);
    if (rc == 0)
        printf(create ? "created %s\n" : "changed the password of %s\n", name);
    return rc;
}

static int cmd_adduser(ctl_t *ctl, const char *arg)
{
    return set_password(ctl, arg, true);
}

static int cmd_passwd(ctl_t *ctl, const char *arg)
{
    return set_password(ctl, arg, false);
}

static int cmd_deluser(ctl_t *ctl, const char *arg)
{
    char name[JID_FORMAT_BUF];
    jid_t j;
    wait_t w = {false, 0};
    int rc = 1;

    /* Any domain: accounts of a host no longer served can be cleaned up. */
    if (parse_account(ctl, arg, false, &j, name) != 0)
        return 1;
    if (!db_exists(ctl)) {
        jid_clear(&j);
        return fail("%s: no such account (no database at %s)", name,
                    ctl->cfg.storage_path);
    }
    if (open_store(ctl) == 0) {
        store_account_delete(ctl->store, j.domain, j.node, on_done, &w);
        if (wait_for(ctl, &w) == 0) {
            if (w.err == STORE_OK)
                rc = 0;
            else if (w.err == STORE_ERR_NOT_FOUND)
                fail("%s: no such account", name);
            else
                fail("%s: %s", name, store_strerror(w.err));
        }
    }
    close_store(ctl);
    jid_clear(&j);
    if (rc == 0)
        printf("deleted %s\n", name);
    return rc;
}

static int cmd_users(ctl_t *ctl, const char *domain_arg)
{
    char domain[JID_PART_BUF];
    wait_t w = {false, 0};
    int rc = 1;

    if (domain_arg != NULL) {
        int jr =
            jid_prepare_domain(domain_arg, strlen(domain_arg), 0, domain, NULL);

        if (jr != JID_OK)
            return fail("%s: not a valid domain (%s)", domain_arg,
                        jid_strerror(jr));
    }
    if (!db_exists(ctl))
        return 0; /* no database: no accounts, and none created by asking */
    if (open_store(ctl) == 0) {
        store_account_list(ctl->store, domain_arg != NULL ? domain : NULL,
                           on_list, &w);
        if (wait_for(ctl, &w) == 0) {
            if (w.err == STORE_OK)
                rc = 0;
            else
                fail("%s: %s", ctl->cfg.storage_path, store_strerror(w.err));
        }
    }
    close_store(ctl);
    if (fflush(stdout) != 0)
        rc = fail("cannot write the list: %s", strerror(errno));
    return rc;
}

/* ------------------------------------------------------------ check, cert */

static void print_listener(const config_listener_t *l, bool first)
{
    bool v6 = strchr(l->address, ':') != NULL;

    printf("%s%s%s%s:%d%s", first ? "" : ", ", v6 ? "[" : "", l->address,
           v6 ? "]" : "", l->port, l->direct_tls ? " (direct TLS)" : "");
}

static int cmd_check(ctl_t *ctl)
{
    const server_config_t *c = &ctl->cfg;
    char problems[8192], hosts[1024];
    int n = config_check(c, problems, sizeof(problems));

    if (n > 0) {
        /* One problem a line, each with its file and line. */
        for (const char *p = problems; *p != '\0';) {
            const char *end = strchr(p, '\n');
            size_t len = end != NULL ? (size_t)(end - p) : strlen(p);

            fprintf(stderr, PROG ": %.*s\n", (int)len, p);
            p += len;
            if (*p == '\n')
                p++;
        }
        return fail("%d problem%s in %s", n, n == 1 ? "" : "s",
                    c->path != NULL ? c->path : "the built-in defaults");
    }
    hosts_list(c, hosts, sizeof(hosts));
    printf("ok: %s\n", c->path != NULL ? c->path : "built-in defaults");
    printf("hosts: %s\n", hosts);
    printf("c2s: ");
    for (size_t i = 0; i < c->c2s_count; i++)
        print_listener(&c->c2s[i], i == 0);
    printf("%s\n", c->c2s_count == 0 ? "off" : "");
    printf("tls: %s\n", c->cert_file != NULL ? c->cert_file : "none");
    printf("storage: %s\n", c->storage_path);
    return 0;
}

static bool file_exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

/* "DIR/NAME.EXT" in a new string. */
static char *join_path(const char *dir, const char *name, const char *ext)
{
    size_t n = strlen(dir) + 1 + strlen(name) + strlen(ext) + 1;
    char *p = malloc(n);

    if (p != NULL)
        snprintf(p, n, "%s/%s%s", dir, name, ext);
    return p;
}

static int cmd_cert(const char *host_arg, int days, const char *out_dir,
                    bool force)
{
    char host[JID_PART_BUF], err[512];
    char *ascii = NULL, *crt = NULL, *key = NULL;
    int rc = 1, jr;

    jr = jid_prepare_domain(host_arg, strlen(host_arg), JID_STORED, host, NULL);
    if (jr != JID_OK)
        return fail("%s: not a valid host name (%s)", host_arg,
                    jid_strerror(jr));
    if (jid_domain_is_ip(host))
        return fail("%s: an IP literal; certificates here are for host names",
                    host_arg);
    /* dNSName entries and file names use the ASCII form of an IDN
     * (RFC 6125 §6.4.2). */
    if (jid_domain_to_ascii(host, &ascii) != JID_OK)
        return fail("%s: has no ASCII (IDNA) form", host_arg);
    crt = join_path(out_dir, ascii, ".crt");
    key = join_path(out_dir, ascii, ".key");
    if (crt == NULL || key == NULL) {
        fail("out of memory");
        goto out;
    }
    if (!force && (file_exists(crt) || file_exists(key))) {
        fail("%s exists; use --force to replace it",
             file_exists(crt) ? crt : key);
        goto out;
    }
    if (tls_make_self_signed(ascii, days, crt, key, err, sizeof(err)) !=
        TLS_OK) {
        fail("%s", err[0] ? err : "cannot make the certificate");
        goto out;
    }
    printf("wrote %s and %s (self-signed for %s, valid %d days)\n", crt, key,
           ascii, days);
    printf("in the configuration: tls = { cert = \"%s\"; key = \"%s\"; };\n",
           crt, key);
    rc = 0;
out:
    free(ascii);
    free(crt);
    free(key);
    return rc;
}

/* ------------------------------------------------------------ main */

static int load_config(ctl_t *ctl, const char *path)
{
    char err[1024];

    if (config_defaults(&ctl->cfg) < 0)
        return fail("out of memory");
    if (path == NULL) {
        struct stat st;

        if (stat(DEFAULT_CONFIG, &st) != 0)
            return 0;
        path = DEFAULT_CONFIG;
    }
    if (config_load(path, &ctl->cfg, err, sizeof(err)) < 0)
        return fail("%s", err);
    return 0;
}

/* Parses a positive number of days. */
static bool parse_days(const char *s, int *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 1 || v > 36500)
        return false;
    *out = (int)v;
    return true;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL, *out_dir = ".";
    const char *args[4];
    size_t nargs = 0;
    int days = CERT_DAYS_DEFAULT;
    bool force = false, cert_opts = false;
    ctl_t ctl;
    const char *cmd;
    int rc;

    memset(&ctl, 0, sizeof(ctl));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("starlingctl %s\n", STARLING_VERSION_STRING);
            return 0;
        }
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (++i == argc)
                return usage_error("%s needs a file", a);
            config_path = argv[i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            config_path = a + 9;
        } else if (strcmp(a, "--days") == 0) {
            if (++i == argc || !parse_days(argv[i], &days))
                return usage_error("--days needs a number from 1 to 36500");
            cert_opts = true;
        } else if (strcmp(a, "--out") == 0) {
            if (++i == argc)
                return usage_error("--out needs a directory");
            out_dir = argv[i];
            cert_opts = true;
        } else if (strcmp(a, "--force") == 0) {
            force = true;
            cert_opts = true;
        } else if (a[0] == '-' && a[1] != '\0') {
            return usage_error("unknown option '%s'", a);
        } else if (nargs < sizeof(args) / sizeof(args[0])) {
            args[nargs++] = a;
        } else {
            return usage_error("too many arguments");
        }
    }
    if (nargs == 0)
        return usage_error("no command given");
    cmd = args[0];
    if (cert_opts && strcmp(cmd, "cert") != 0)
        return usage_error("--days, --out and --force go with cert only");

    if (strcmp(cmd, "cert") == 0) {
        if (nargs != 2)
            return usage_error("usage: starlingctl cert HOST [--days N] "
                               "[--out DIR] [--force]");
        /* Needs no configuration: a broken file must not stop making the
         * certificate it lacks. */
        return cmd_cert(args[1], days, out_dir, force);
    }

    if (strcmp(cmd, "adduser") == 0 || strcmp(cmd, "passwd") == 0 ||
        strcmp(cmd, "deluser") == 0) {
        if (nargs != 2)
            return usage_error(
                "usage: starlingctl %s JID (the password is read from "
                "standard input or asked for, never taken from the command "
                "line)",
                cmd);
    } else if (strcmp(cmd, "users") == 0) {
        if (nargs > 2)
            return usage_error("usage: starlingctl users [DOMAIN]");
    } else if (strcmp(cmd, "check") == 0) {
        if (nargs != 1)
            return usage_error("usage: starlingctl check");
    } else {
        return usage_error("unknown command '%s'", cmd);
    }

    if (load_config(&ctl, config_path) != 0) {
        config_free(&ctl.cfg);
        return 1;
    }
    if (strcmp(cmd, "adduser") == 0)
        rc = cmd_adduser(&ctl, args[1]);
    else if (strcmp(cmd, "passwd") == 0)
        rc = cmd_passwd(&ctl, args[1]);
    else if (strcmp(cmd, "deluser") == 0)
        rc = cmd_deluser(&ctl, args[1]);
    else if (strcmp(cmd, "users") == 0)
        rc = cmd_users(&ctl, nargs == 2 ? args[1] : NULL);
    else
        rc = cmd_check(&ctl);
    config_free(&ctl.cfg);
    return rc;
}
