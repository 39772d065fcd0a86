/* starlingctl: administration of a Starling server from the command line:
 * accounts, rosters, a configuration check, self-signed certificates.
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
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "base/rand.h"
#include "base/xalloc.h"
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
    "Administers a Starling XMPP server: accounts, rosters, configuration,\n"
    "certificates.\n"
    "\n"
    "Commands:\n"
    "  adduser JID       create an account; JID is user@domain and domain\n"
    "                    must be one of the configured hosts\n"
    "  passwd JID        give an account a new password\n"
    "  deluser JID       delete an account\n"
    "  users [DOMAIN]    list the accounts (of one domain), one JID a line\n"
    "  roster JID        list the account's roster: a line 'version N', one\n"
    "                    line per item ('item CONTACT subscription=S "
    "ask=yes|no\n"
    "                    approved=yes|no name=\"NAME\"|- groups=\"G\",...|-',\n"
    "                    texts quoted with \\ escapes), then 'pending "
    "CONTACT'\n"
    "                    for each subscription request not yet answered\n"
    "  roster JID add CONTACT [--name NAME] [--group GROUP]... [--both]\n"
    "                    add CONTACT to the roster, or update its item: NAME\n"
    "                    and the GROUPs replace the item's; a new item has\n"
    "                    subscription none, an existing one keeps its own.\n"
    "                    --both makes it 'both' and, when CONTACT is an\n"
    "                    account of this server, JID's item in CONTACT's\n"
    "                    roster too\n"
    "  roster JID remove CONTACT\n"
    "                    remove CONTACT from the roster; when CONTACT is an\n"
    "                    account here, JID's item in its roster loses its\n"
    "                    subscription (as after an unsubscribe both ways)\n"
    "  invite DOMAIN [--days N]\n"
    "                    make an invitation to create one account on DOMAIN\n"
    "                    in-band (XEP-0077 with register.invite_only): prints\n"
    "                    'token TOKEN', 'uri xmpp:DOMAIN?register;preauth=\n"
    "                    TOKEN' (XEP-0401, for the new user's client) and\n"
    "                    'expires TIME'; valid N days (default 7), used once\n"
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
    "Each roster change gives the roster its next version. starlingd keeps\n"
    "the rosters of online users in memory: a change made while it runs\n"
    "reaches a user who is online at their next login.\n"
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

static int cmd_invite(ctl_t *ctl, const char *domain_arg, int days)
{
    char domain[JID_PART_BUF], token[32], when[32];
    wait_t w = {false, 0};
    int rc = 1;
    int jr = jid_prepare_domain(domain_arg, strlen(domain_arg), JID_STORED,
                                domain, NULL);

    if (jr != JID_OK)
        return fail("%s: not a valid domain (%s)", domain_arg,
                    jid_strerror(jr));
    if (!serves(&ctl->cfg, domain)) {
        char hosts[1024];

        hosts_list(&ctl->cfg, hosts, sizeof(hosts));
        return fail("%s is not served by this server (hosts: %s)", domain,
                    hosts);
    }
    if (rand_id(token, sizeof(token), 128) < 0)
        return fail("no randomness from the kernel");
    time_t expires = time(NULL) + (time_t)days * 86400;
    struct tm tm;
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&expires, &tm));
    if (open_store(ctl) == 0) {
        store_invite_create(ctl->store, domain, token, (int64_t)expires,
                            on_done, &w);
        if (wait_for(ctl, &w) == 0) {
            if (w.err == STORE_OK)
                rc = 0;
            else
                fail("%s: %s", ctl->cfg.storage_path, store_strerror(w.err));
        }
    }
    close_store(ctl);
    if (rc == 0)
        printf("token %s\nuri xmpp:%s?register;preauth=%s\nexpires %s\n", token,
               domain, token, when);
    return rc;
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

/* ------------------------------------------------------------ rosters */

/* A roster change from the command line: roster JID add/remove. */
typedef struct roster_opts {
    const char *name;    /* --name, or NULL */
    const char **groups; /* --group, in order */
    size_t group_count;
    bool both; /* --both */
} roster_opts_t;

/* One item of a roster copy: `item` is the view, its strings the fields
 * after it. */
typedef struct roster_entry {
    store_roster_item_t item;
    char *contact, *name;
    char **groups;
} roster_entry_t;

/* A copy of one roster, made in the store's callback (whose values live
 * only during the callback). */
typedef struct roster_copy {
    wait_t w;
    int64_t version;
    roster_entry_t *items;
    size_t count;
    char **pending; /* contacts */
    size_t pending_count;
} roster_copy_t;

static char **copy_strings(const char *const *v, size_t n)
{
    char **out = xcalloc(n + 1, sizeof(*out));
    for (size_t i = 0; i < n; i++)
        out[i] = xstrdup(v[i]);
    return out;
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++)
        free(v[i]);
    free(v);
}

static void roster_copy_free(roster_copy_t *rc)
{
    for (size_t i = 0; i < rc->count; i++) {
        roster_entry_t *e = &rc->items[i];
        free(e->contact);
        free(e->name);
        free_strings(e->groups, e->item.group_count);
    }
    free(rc->items);
    free_strings(rc->pending, rc->pending_count);
    memset(rc, 0, sizeof(*rc));
}

static void on_roster(void *ud, int err, const store_roster_t *r)
{
    roster_copy_t *rc = ud;

    if (r != NULL) {
        rc->version = r->version;
        rc->count = r->count;
        rc->items = xcalloc(r->count + 1, sizeof(*rc->items));
        for (size_t i = 0; i < r->count; i++) {
            const store_roster_item_t *in = &r->items[i];
            roster_entry_t *e = &rc->items[i];
            e->contact = xstrdup(in->contact);
            e->name = in->name != NULL ? xstrdup(in->name) : NULL;
            e->groups = copy_strings(in->groups, in->group_count);
            e->item = *in;
            e->item.contact = e->contact;
            e->item.name = e->name;
            e->item.groups = (const char *const *)e->groups;
        }
        rc->pending_count = r->pending_count;
        rc->pending = xcalloc(r->pending_count + 1, sizeof(*rc->pending));
        for (size_t i = 0; i < r->pending_count; i++)
            rc->pending[i] = xstrdup(r->pending[i].contact);
    }
    on_done(&rc->w, err);
}

/* Reads the roster of j into rc: STORE_OK, STORE_ERR_NOT_FOUND, or another
 * error already reported. */
static int roster_read(ctl_t *ctl, const jid_t *j, const char *name,
                       roster_copy_t *rc)
{
    memset(rc, 0, sizeof(*rc));
    store_roster_get(ctl->store, j->domain, j->node, on_roster, rc);
    if (wait_for(ctl, &rc->w) != 0)
        return STORE_ERR_IO;
    if (rc->w.err != STORE_OK && rc->w.err != STORE_ERR_NOT_FOUND)
        fail("%s: %s", name, store_strerror(rc->w.err));
    return rc->w.err;
}

static const store_roster_item_t *roster_find(const roster_copy_t *rc,
                                              const char *contact)
{
    for (size_t i = 0; i < rc->count; i++)
        if (strcmp(rc->items[i].contact, contact) == 0)
            return &rc->items[i].item;
    return NULL;
}

static bool roster_has_pending(const roster_copy_t *rc, const char *contact)
{
    for (size_t i = 0; i < rc->pending_count; i++)
        if (strcmp(rc->pending[i], contact) == 0)
            return true;
    return false;
}

/* One change of one roster: the item (NULL removes it), the pending
 * request, the version (0: not a roster change). 0, or 1 after saying
 * what went wrong. */
static int roster_write(ctl_t *ctl, const jid_t *j, const char *name,
                        const char *contact, const store_roster_item_t *it,
                        store_pending_op_t pending, int64_t version)
{
    store_roster_change_t ch = {
        .contact = contact, .item = it, .pending = pending, .version = version};
    wait_t w = {false, 0};

    store_roster_update(ctl->store, j->domain, j->node, &ch, on_done, &w);
    if (wait_for(ctl, &w) != 0)
        return 1;
    if (w.err == STORE_ERR_NOT_FOUND)
        return fail("%s: no such account", name);
    if (w.err != STORE_OK)
        return fail("%s: %s", name, store_strerror(w.err));
    return 0;
}

static const char *const sub_names[] = {"none", "to", "from", "both"};

/* Writes s in double quotes, with \ " and control characters escaped, so
 * that every item stays on its line whatever its name or groups hold. */
static void print_quoted(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", stdout);
        else if (*p == '\t')
            fputs("\\t", stdout);
        else if (*p == '\r')
            fputs("\\r", stdout);
        else if (*p < 0x20 || *p == 0x7f)
            printf("\\x%02x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static void print_roster(const roster_copy_t *rc)
{
    printf("version %lld\n", (long long)rc->version);
    for (size_t i = 0; i < rc->count; i++) {
        const store_roster_item_t *it = &rc->items[i].item;

        printf("item %s subscription=%s ask=%s approved=%s name=", it->contact,
               it->subscription <= STORE_SUB_BOTH ? sub_names[it->subscription]
                                                  : "?",
               it->ask ? "yes" : "no", it->approved ? "yes" : "no");
        if (it->name != NULL)
            print_quoted(it->name);
        else
            putchar('-');
        fputs(" groups=", stdout);
        for (size_t g = 0; g < it->group_count; g++) {
            if (g > 0)
                putchar(',');
            print_quoted(it->groups[g]);
        }
        if (it->group_count == 0)
            putchar('-');
        putchar('\n');
    }
    for (size_t i = 0; i < rc->pending_count; i++)
        printf("pending %s\n", rc->pending[i]);
}

/* Text that XML can carry (XML 1.0 §2.2 Char) in UTF-8: a name or a group
 * goes into roster pushes as character data. */
static bool xml_text_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p != '\0') {
        unsigned c = *p;
        size_t n;

        if (c < 0x80) {
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
                return false;
            p++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            c &= 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            c &= 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            c &= 0x07;
        } else {
            return false;
        }
        for (size_t i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            c = (c << 6) | (p[i] & 0x3f);
        }
        /* Overlong forms, surrogates, beyond Unicode, U+FFFE and U+FFFF. */
        if ((n == 2 && c < 0x800) || (n == 3 && c < 0x10000) ||
            (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff || c == 0xfffe ||
            c == 0xffff)
            return false;
        p += n + 1;
    }
    return true;
}

/* RFC 6121 §2.3.3: a server refuses an empty group, the same group twice,
 * and text XML cannot carry; so does starlingctl, before touching
 * anything. */
static int check_roster_opts(const roster_opts_t *o)
{
    if (o->name != NULL && !xml_text_ok(o->name))
        return fail("--name: not UTF-8 text that XML can carry");
    for (size_t i = 0; i < o->group_count; i++) {
        const char *g = o->groups[i];

        if (g[0] == '\0')
            return fail("--group: a group name cannot be empty");
        if (!xml_text_ok(g))
            return fail("--group %s: not UTF-8 text that XML can carry", g);
        for (size_t k = 0; k < i; k++)
            if (strcmp(o->groups[k], g) == 0)
                return fail("--group %s: given twice", g);
    }
    return 0;
}

/* Parses a roster contact: any bare JID (query rules: it may be anyone's
 * address), into j and its string form into name. */
static int parse_contact(const char *arg, jid_t *j, char name[JID_FORMAT_BUF])
{
    int rc = jid_parse(arg, strlen(arg), 0, j);

    if (rc != JID_OK)
        return fail("%s: not a valid JID (%s)", arg, jid_strerror(rc));
    if (j->resource != NULL) {
        jid_clear(j);
        return fail("%s: a roster item is a bare JID, without /resource", arg);
    }
    jid_format(j, true, name, JID_FORMAT_BUF);
    return 0;
}

typedef struct list_count {
    wait_t w;
    size_t count;
} list_count_t;

static void on_list_count(void *ud, int err, const char *const *names,
                          size_t count)
{
    list_count_t *lc = ud;
    (void)names;
    lc->count = count;
    on_done(&lc->w, err);
}

/* Whether accounts of `domain` are kept here: a configured host, or a
 * domain with accounts in the database. -1 after a store error. */
static int domain_is_local(ctl_t *ctl, const char *domain)
{
    list_count_t lc = {{false, 0}, 0};

    if (serves(&ctl->cfg, domain))
        return 1;
    store_account_list(ctl->store, domain, on_list_count, &lc);
    if (wait_for(ctl, &lc.w) != 0)
        return -1;
    if (lc.w.err != STORE_OK) {
        fail("%s: %s", ctl->cfg.storage_path, store_strerror(lc.w.err));
        return -1;
    }
    return lc.count > 0;
}

/* roster JID: the items, then the pending requests. */
static int roster_list(ctl_t *ctl, const jid_t *j, const char *name)
{
    roster_copy_t rc;
    int found = roster_read(ctl, j, name, &rc);

    if (found == STORE_ERR_NOT_FOUND)
        fail("%s: no such account", name);
    else if (found == STORE_OK)
        print_roster(&rc);
    roster_copy_free(&rc);
    return found == STORE_OK ? 0 : 1;
}

/* roster JID add CONTACT: the item gets NAME and GROUPs (replacing what it
 * had) and keeps its subscription state, none for a new item; --both makes
 * it "both", and so the contact's item for the user when the contact is an
 * account here. Everything is checked before the first write. */
static int roster_add(ctl_t *ctl, const jid_t *j, const char *name,
                      const jid_t *cj, const char *contact,
                      const roster_opts_t *o)
{
    roster_copy_t mine, theirs;
    int rc = 1;
    bool mirror = false;

    memset(&theirs, 0, sizeof(theirs));
    int found = roster_read(ctl, j, name, &mine);
    if (found == STORE_ERR_NOT_FOUND)
        fail("%s: no such account", name);
    if (found != STORE_OK)
        goto out;
    /* Your own JID in your roster is one item: no second side. */
    if (o->both && cj->node != NULL && strcmp(contact, name) != 0) {
        found = roster_read(ctl, cj, contact, &theirs);
        if (found == STORE_OK) {
            mirror = true;
        } else if (found == STORE_ERR_NOT_FOUND) {
            int local = domain_is_local(ctl, cj->domain);
            if (local < 0)
                goto out;
            if (local) {
                fail("%s: no such account, and %s is a domain of this "
                     "server: --both needs the contact's account",
                     contact, cj->domain);
                goto out;
            }
        } else {
            goto out;
        }
    }

    const store_roster_item_t *old = roster_find(&mine, contact);
    store_roster_item_t it = {
        .contact = contact,
        .name = o->name,
        .groups = o->groups,
        .group_count = o->group_count,
        .subscription = old != NULL ? old->subscription : STORE_SUB_NONE,
        .ask = old != NULL && old->ask,
        .approved = old != NULL && old->approved,
    };
    /* Both ways: nothing left to ask for or to pre-approve, and a request
     * from the contact is answered. */
    if (o->both) {
        it.subscription = STORE_SUB_BOTH;
        it.ask = it.approved = false;
    }
    if (roster_write(ctl, j, name, contact, &it,
                     o->both ? STORE_PENDING_CLEAR : STORE_PENDING_KEEP,
                     mine.version + 1) != 0)
        goto out;
    printf("%s %s %s the roster of %s: subscription %s (version %lld)\n",
           old != NULL ? "updated" : "added", contact,
           old != NULL ? "in" : "to", name, sub_names[it.subscription],
           (long long)(mine.version + 1));
    rc = 0;
    if (mirror) {
        /* The contact's item keeps its name and groups. */
        const store_roster_item_t *back = roster_find(&theirs, name);
        store_roster_item_t mit = {.contact = name,
                                   .subscription = STORE_SUB_BOTH};
        if (back != NULL) {
            mit.name = back->name;
            mit.groups = back->groups;
            mit.group_count = back->group_count;
        }
        rc = roster_write(ctl, cj, contact, name, &mit, STORE_PENDING_CLEAR,
                          theirs.version + 1);
        if (rc == 0)
            printf("%s %s %s the roster of %s: subscription both "
                   "(version %lld)\n",
                   back != NULL ? "updated" : "added", name,
                   back != NULL ? "in" : "to", contact,
                   (long long)(theirs.version + 1));
    } else if (o->both && cj->node != NULL && strcmp(contact, name) != 0) {
        printf("%s is not an account here: only %s's side was changed\n",
               contact, name);
    }
out:
    roster_copy_free(&mine);
    roster_copy_free(&theirs);
    return rc;
}

/* roster JID remove CONTACT: the item goes; when the contact is an account
 * here, its item for the user loses its subscription both ways and its
 * request from the user is dropped, as store_account_delete() does for
 * a deleted account (RFC 6121 §2.5.2: the server unsubscribes both ways). */
static int roster_remove(ctl_t *ctl, const jid_t *j, const char *name,
                         const jid_t *cj, const char *contact)
{
    roster_copy_t mine, theirs;
    int rc = 1;

    memset(&theirs, 0, sizeof(theirs));
    int found = roster_read(ctl, j, name, &mine);
    if (found == STORE_ERR_NOT_FOUND)
        fail("%s: no such account", name);
    if (found != STORE_OK)
        goto out;
    if (roster_find(&mine, contact) == NULL) {
        fail("%s: %s is not in the roster", name, contact);
        goto out;
    }
    bool other = cj->node != NULL && strcmp(contact, name) != 0;
    if (other) {
        found = roster_read(ctl, cj, contact, &theirs);
        if (found != STORE_OK && found != STORE_ERR_NOT_FOUND)
            goto out;
        other = found == STORE_OK;
    }
    if (roster_write(ctl, j, name, contact, NULL, STORE_PENDING_KEEP,
                     mine.version + 1) != 0)
        goto out;
    printf("removed %s from the roster of %s (version %lld)\n", contact, name,
           (long long)(mine.version + 1));
    rc = 0;
    if (!other)
        goto out;
    const store_roster_item_t *back = roster_find(&theirs, name);
    bool changed = back != NULL && (back->subscription != STORE_SUB_NONE ||
                                    back->ask || back->approved);
    bool asked = roster_has_pending(&theirs, name);
    if (!changed && !asked)
        goto out;
    store_roster_item_t mit = {.contact = name};
    if (back != NULL) {
        mit = *back;
        mit.subscription = STORE_SUB_NONE;
        mit.ask = mit.approved = false;
    }
    /* A request alone is not a roster change: version 0 then. */
    int64_t v = changed ? theirs.version + 1 : 0;
    rc = roster_write(ctl, cj, contact, name, back != NULL ? &mit : NULL,
                      STORE_PENDING_CLEAR, v);
    if (rc == 0 && changed)
        printf("%s lost its subscription in the roster of %s (version "
               "%lld)\n",
               name, contact, (long long)v);
out:
    roster_copy_free(&mine);
    roster_copy_free(&theirs);
    return rc;
}

/* roster JID [add CONTACT | remove CONTACT]. Any domain for the account,
 * like deluser: rosters of a host no longer served can be looked at. */
static int cmd_roster(ctl_t *ctl, const char *account_arg, const char *sub,
                      const char *contact_arg, const roster_opts_t *o)
{
    char name[JID_FORMAT_BUF], contact[JID_FORMAT_BUF];
    jid_t j, cj;
    int rc = 1;

    memset(&cj, 0, sizeof(cj));
    if (parse_account(ctl, account_arg, false, &j, name) != 0)
        return 1;
    if (sub != NULL && (parse_contact(contact_arg, &cj, contact) != 0 ||
                        check_roster_opts(o) != 0)) {
        jid_clear(&j);
        jid_clear(&cj);
        return 1;
    }
    if (!db_exists(ctl)) {
        fail("%s: no such account (no database at %s)", name,
             ctl->cfg.storage_path);
    } else if (open_store(ctl) == 0) {
        if (sub == NULL)
            rc = roster_list(ctl, &j, name);
        else if (strcmp(sub, "add") == 0)
            rc = roster_add(ctl, &j, name, &cj, contact, o);
        else
            rc = roster_remove(ctl, &j, name, &cj, contact);
    }
    close_store(ctl);
    jid_clear(&j);
    jid_clear(&cj);
    if (fflush(stdout) != 0)
        rc = fail("cannot write the output: %s", strerror(errno));
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

/* The command line, with room for argc groups (one per --group at most). */
static int run(int argc, char **argv, const char **groups)
{
    const char *config_path = NULL, *out_dir = ".";
    const char *args[4];
    size_t nargs = 0;
    int days = CERT_DAYS_DEFAULT;
    bool force = false, cert_opts = false, roster_set = false;
    bool days_given = false;
    roster_opts_t ro = {NULL, NULL, 0, false};
    ctl_t ctl;
    const char *cmd;
    int rc;

    memset(&ctl, 0, sizeof(ctl));
    ro.groups = groups;
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
            days_given = true;
        } else if (strcmp(a, "--out") == 0) {
            if (++i == argc)
                return usage_error("--out needs a directory");
            out_dir = argv[i];
            cert_opts = true;
        } else if (strcmp(a, "--force") == 0) {
            force = true;
            cert_opts = true;
        } else if (strcmp(a, "--name") == 0 || strncmp(a, "--name=", 7) == 0) {
            if (ro.name != NULL)
                return usage_error("--name given twice");
            if (a[6] == '=')
                ro.name = a + 7;
            else if (++i == argc)
                return usage_error("--name needs a name");
            else
                ro.name = argv[i];
            roster_set = true;
        } else if (strcmp(a, "--group") == 0 ||
                   strncmp(a, "--group=", 8) == 0) {
            if (a[7] == '=')
                groups[ro.group_count++] = a + 8;
            else if (++i == argc)
                return usage_error("--group needs a group name");
            else
                groups[ro.group_count++] = argv[i];
            roster_set = true;
        } else if (strcmp(a, "--both") == 0) {
            ro.both = true;
            roster_set = true;
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
        return usage_error("--out and --force go with cert only");
    if (days_given && strcmp(cmd, "cert") != 0 && strcmp(cmd, "invite") != 0)
        return usage_error("--days goes with cert and invite only");
    if (roster_set && strcmp(cmd, "roster") != 0)
        return usage_error(
            "--name, --group and --both go with roster JID add only");

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
    } else if (strcmp(cmd, "roster") == 0) {
        bool change = nargs == 4 && (strcmp(args[2], "add") == 0 ||
                                     strcmp(args[2], "remove") == 0);
        if (nargs != 2 && !change)
            return usage_error(
                "usage: starlingctl roster JID [add CONTACT [--name NAME] "
                "[--group GROUP]... [--both] | remove CONTACT]");
        if (roster_set && (nargs != 4 || strcmp(args[2], "add") != 0))
            return usage_error(
                "--name, --group and --both go with roster JID add only");
    } else if (strcmp(cmd, "invite") == 0) {
        if (nargs != 2)
            return usage_error("usage: starlingctl invite DOMAIN [--days N]");
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
    else if (strcmp(cmd, "invite") == 0)
        rc = cmd_invite(&ctl, args[1], days_given ? days : 7);
    else if (strcmp(cmd, "roster") == 0)
        rc = cmd_roster(&ctl, args[1], nargs == 4 ? args[2] : NULL,
                        nargs == 4 ? args[3] : NULL, &ro);
    else
        rc = cmd_check(&ctl);
    config_free(&ctl.cfg);
    return rc;
}

int main(int argc, char **argv)
{
    const char **groups = xcalloc((size_t)argc, sizeof(*groups));
    int rc = run(argc, argv, groups);

    free(groups);
    return rc;
}
