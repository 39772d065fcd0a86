/* starling: a command-line XMPP client on libstarling.
 *
 *   starling [OPTIONS] send JID TEXT
 *   starling [OPTIONS] listen [--json]
 *   starling [OPTIONS] roster [list | add JID [NAME] | remove JID]
 *   starling [OPTIONS] subscribe|approve|deny|unsubscribe JID
 *   starling [OPTIONS] presence [SHOW [STATUS]]
 *   starling [OPTIONS] raw XML
 *   starling [OPTIONS] shell
 *
 * Credentials: --jid (or STARLING_JID) and the password from the
 * environment (STARLING_PASSWORD) or a config file (--config FILE with
 * lines `jid = ...`, `password = ...`, `server = ...`, `ca-file = ...`,
 * `pin = ...`), never from the command line. */
#include <errno.h>
#include <histedit.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "starling/client.h"

typedef struct app {
    uv_loop_t *loop;
    starling_client_t *c;
    const char *cmd;
    char **args;
    int nargs;
    bool json;
    bool raw;     /* `raw`: print replies until the timeout */
    bool verbose; /* say how the connection was made */
    double timeout;
    int exit_code;
    bool done;
    /* send: the message then a server round trip decide the exit status */
    char *domain;
    uv_timer_t timer;
    uv_signal_t sigint;
    /* shell */
    EditLine *el;
    History *hist;
    uv_poll_t stdin_poll;
    bool shell_started;
} app_t;

static void usage(FILE *f)
{
    fputs(
        "Usage: starling [OPTIONS] COMMAND [ARGS]\n"
        "\n"
        "Commands:\n"
        "  send JID TEXT            send a chat message; exit 0 once the "
        "server\n"
        "                           has taken it without an error\n"
        "  listen [--json]          print incoming messages, presence and\n"
        "                           roster items, one line each (JSON\n"
        "                           objects with --json)\n"
        "  roster [list]            print the roster\n"
        "  roster add JID [NAME]    add or update a contact\n"
        "  roster remove JID        remove a contact\n"
        "  subscribe JID            ask to see JID's presence\n"
        "  approve JID              let JID see ours (answer a request)\n"
        "  deny JID                 refuse JID's request\n"
        "  unsubscribe JID          stop seeing JID's presence\n"
        "  presence [SHOW [STATUS]] send presence (SHOW: online, away, chat,\n"
        "                           dnd, xa, offline)\n"
        "  raw XML                  send one stanza, print what comes back\n"
        "  shell                    interactive session (/help inside)\n"
        "\n"
        "Options:\n"
        "  --jid JID           the account (or STARLING_JID)\n"
        "  --config FILE       lines `key = value`: jid, password, server,\n"
        "                      ca-file, pin\n"
        "  --server HOST[:PORT]  connect there instead of looking up DNS\n"
        "  --direct-tls        with --server: TLS from the first byte\n"
        "  --ca-file FILE      trust this CA (PEM) for the server certificate\n"
        "  --pin BASE64        accept only this server key (SHA-256 of its\n"
        "                      SubjectPublicKeyInfo, base64, as HPKP pins)\n"
        "  --insecure-tls      accept any certificate (never the default)\n"
        "  --dns HOST:PORT     DNS server to ask (tests)\n"
        "  --timeout SECONDS   how long send/raw/roster wait (default 10)\n"
        "  -v, --verbose       say which JID and SASL mechanism were used\n"
        "\n"
        "The password comes from STARLING_PASSWORD or the config file, never\n"
        "from the command line.\n",
        f);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "starling: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void finish(app_t *a, int code)
{
    if (a->done)
        return;
    a->done = true;
    a->exit_code = code;
    starling_client_disconnect(a->c);
}

/* One line saying what went wrong and what to do. */
static void report_error(const app_t *a, const char *what,
                         const starling_error_t *e)
{
    const char *hint = "";
    if (e->kind == STARLING_ERR_AUTH && e->condition != NULL &&
        strcmp(e->condition, "not-authorized") == 0)
        hint = " (wrong JID or password?)";
    else if (e->kind == STARLING_ERR_CERTIFICATE)
        hint = "";
    else if (e->kind == STARLING_ERR_DNS || e->kind == STARLING_ERR_NETWORK)
        hint = " (check the domain, or give --server HOST[:PORT])";
    const char *desc =
        e->description ? e->description : starling_error_kind_name(e->kind);
    /* The condition in brackets, unless the description already names it. */
    bool cond = e->condition != NULL && strstr(desc, e->condition) == NULL;
    fprintf(stderr, "starling: %s: %s%s%s%s%s\n", what, desc, cond ? " [" : "",
            cond ? e->condition : "", cond ? "]" : "", hint);
    (void)a;
}

static void json_str(FILE *f, const char *s)
{
    if (s == NULL) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static const char *msg_type_name(starling_msg_type_t t)
{
    static const char *const n[] = {"normal", "chat", "groupchat", "headline",
                                    "error"};
    return n[t];
}

static const char *pres_type_name(starling_presence_type_t t)
{
    static const char *const n[] = {"available",  "unavailable", "subscribe",
                                    "subscribed", "unsubscribe", "unsubscribed",
                                    "probe",      "error"};
    return n[t];
}

static void ev_message(starling_client_t *c, const starling_message_t *m,
                       void *ud)
{
    app_t *a = ud;
    (void)c;
    if (strcmp(a->cmd, "send") == 0 && m->type == STARLING_MSG_ERROR) {
        char *xml = starling_stanza_to_string(m->stanza);
        fprintf(stderr, "starling: the message was refused: %s\n",
                xml ? xml : "");
        free(xml);
        finish(a, 1);
        return;
    }
    if (m->body == NULL && m->type != STARLING_MSG_ERROR)
        return;
    if (a->json) {
        printf("{\"kind\":\"message\",\"from\":");
        json_str(stdout, m->from);
        printf(",\"type\":\"%s\",\"body\":", msg_type_name(m->type));
        json_str(stdout, m->body);
        printf(",\"subject\":");
        json_str(stdout, m->subject);
        printf(",\"thread\":");
        json_str(stdout, m->thread);
        printf("}\n");
    } else {
        printf("message %s %s: %s\n", msg_type_name(m->type),
               m->from ? m->from : "?", m->body ? m->body : "(no body)");
    }
    fflush(stdout);
}

static void ev_presence(starling_client_t *c, const starling_presence_t *p,
                        void *ud)
{
    app_t *a = ud;
    (void)c;
    if (a->json) {
        printf("{\"kind\":\"presence\",\"from\":");
        json_str(stdout, p->from);
        printf(",\"type\":\"%s\",\"show\":", pres_type_name(p->type));
        json_str(stdout, p->show);
        printf(",\"status\":");
        json_str(stdout, p->status);
        printf(",\"priority\":%d}\n", p->priority);
    } else {
        printf("presence %s %s%s%s%s%s\n", pres_type_name(p->type),
               p->from ? p->from : "?", p->show ? " " : "",
               p->show ? p->show : "", p->status ? ": " : "",
               p->status ? p->status : "");
    }
    fflush(stdout);
}

/* A roster item as `listen` prints it: one line, a JSON object with
 * --json (every line of `listen --json` is one). */
static void print_roster_item(const app_t *a, const starling_roster_item_t *it)
{
    if (a->json) {
        printf("{\"kind\":\"roster\",\"jid\":");
        json_str(stdout, it->jid);
        printf(",\"name\":");
        json_str(stdout, it->name);
        printf(",\"subscription\":");
        json_str(stdout, it->subscription ? it->subscription : "none");
        printf(",\"ask\":%s,\"groups\":[",
               it->ask_subscribe ? "true" : "false");
        for (size_t g = 0; g < it->group_count; g++) {
            if (g > 0)
                putchar(',');
            json_str(stdout, it->groups[g]);
        }
        printf("]}\n");
    } else {
        printf("roster %s %s%s\n", it->jid,
               it->subscription ? it->subscription : "",
               it->ask_subscribe ? " (asked)" : "");
    }
    fflush(stdout);
}

static void ev_roster_push(starling_client_t *c,
                           const starling_roster_item_t *it, void *ud)
{
    app_t *a = ud;
    (void)c;
    if (strcmp(a->cmd, "listen") == 0 || strcmp(a->cmd, "shell") == 0)
        print_roster_item(a, it);
}

static void print_roster(starling_client_t *c,
                         const starling_roster_item_t *items, size_t n,
                         const char *ver, const starling_error_t *err, void *ud)
{
    app_t *a = ud;
    (void)c;
    (void)ver;
    if (err != NULL) {
        /* listen asks for the roster before its initial presence (RFC 6121
         * §2.2, feature set 11-2); a server without rosters is no error
         * worth a line there. */
        if (strcmp(a->cmd, "roster") == 0) {
            report_error(a, "roster", err);
            finish(a, 1);
        }
        return;
    }
    /* listen prints the roster it starts with like the pushes after it */
    if (strcmp(a->cmd, "listen") == 0) {
        for (size_t i = 0; i < n; i++)
            print_roster_item(a, &items[i]);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        printf("%s\t%s\t%s%s", items[i].jid,
               items[i].subscription ? items[i].subscription : "none",
               items[i].name ? items[i].name : "",
               items[i].ask_subscribe ? "\t(asked)" : "");
        for (size_t g = 0; g < items[i].group_count; g++)
            printf("%s%s", g == 0 ? "\t[" : ",", items[i].groups[g]);
        printf("%s\n", items[i].group_count ? "]" : "");
    }
    fflush(stdout);
    if (strcmp(a->cmd, "roster") == 0)
        finish(a, 0);
}

static void iq_done(starling_client_t *c, const starling_stanza_t *result,
                    const starling_error_t *err, void *ud)
{
    app_t *a = ud;
    (void)c;
    (void)result;
    if (a->done)
        return; /* already decided (e.g. the message was refused) */
    if (err != NULL && err->kind != STARLING_ERR_STANZA) {
        report_error(a, a->cmd, err);
        finish(a, 1);
        return;
    }
    /* For `send`, any answer to our round trip means the server has
     * handled the message before it (stanzas are processed in order); an
     * error reply to the round trip itself is expected (the server does
     * not have to answer pings). */
    if (strcmp(a->cmd, "send") == 0) {
        finish(a, 0);
        return;
    }
    if (err != NULL) {
        report_error(a, a->cmd, err);
        finish(a, 1);
        return;
    }
    finish(a, 0);
}

static starling_presence_type_t parse_show(const char *s, const char **show)
{
    *show = NULL;
    if (s == NULL || strcmp(s, "online") == 0)
        return STARLING_PRES_AVAILABLE;
    if (strcmp(s, "offline") == 0)
        return STARLING_PRES_UNAVAILABLE;
    *show = s;
    return STARLING_PRES_AVAILABLE;
}

static int run_line(app_t *a, char *line);
static void on_stdin(uv_poll_t *p, int status, int events);

static void ev_connected(starling_client_t *c, const char *jid, void *ud)
{
    app_t *a = ud;
    const char *cmd = a->cmd;
    int rc = 0;
    if (a->verbose)
        fprintf(stderr, "starling: connected as %s with %s\n", jid,
                starling_client_mechanism(c) ? starling_client_mechanism(c)
                                             : "?");
    if (strcmp(cmd, "send") == 0) {
        rc = starling_send_message(c, a->args[0], STARLING_MSG_CHAT, a->args[1],
                                   NULL, NULL);
        if (rc == 0)
            rc = starling_iq_send(c, a->domain, false,
                                  "<ping xmlns='urn:xmpp:ping'/>", 0, iq_done,
                                  a);
    } else if (strcmp(cmd, "listen") == 0) {
        /* RFC 6121 §2.2 (feature set 11-2): the roster before the initial
         * presence; a server without rosters answers with an error, which
         * listen ignores. */
        starling_roster_get(c, NULL, print_roster, a);
        starling_send_presence(c, NULL, STARLING_PRES_AVAILABLE, NULL, NULL, 0);
        fprintf(stderr, "starling: listening as %s (Ctrl-C stops)\n", jid);
    } else if (strcmp(cmd, "roster") == 0) {
        const char *sub = a->nargs > 0 ? a->args[0] : "list";
        if (strcmp(sub, "list") == 0)
            rc = starling_roster_get(c, NULL, print_roster, a);
        else if (strcmp(sub, "add") == 0 && a->nargs >= 2)
            rc = starling_roster_set(c, a->args[1],
                                     a->nargs > 2 ? a->args[2] : NULL, NULL, 0,
                                     iq_done, a);
        else if (strcmp(sub, "remove") == 0 && a->nargs >= 2)
            rc = starling_roster_remove(c, a->args[1], iq_done, a);
        else
            rc = -1;
    } else if (strcmp(cmd, "subscribe") == 0 || strcmp(cmd, "approve") == 0 ||
               strcmp(cmd, "deny") == 0 || strcmp(cmd, "unsubscribe") == 0) {
        starling_presence_type_t t =
            strcmp(cmd, "subscribe") == 0 ? STARLING_PRES_SUBSCRIBE
            : strcmp(cmd, "approve") == 0 ? STARLING_PRES_SUBSCRIBED
            : strcmp(cmd, "deny") == 0    ? STARLING_PRES_UNSUBSCRIBED
                                          : STARLING_PRES_UNSUBSCRIBE;
        rc = starling_send_presence(c, a->args[0], t, NULL, NULL, 0);
        if (rc == 0)
            rc = starling_iq_send(c, a->domain, false,
                                  "<ping xmlns='urn:xmpp:ping'/>", 0, iq_done,
                                  a);
        if (rc == 0)
            a->cmd = "send"; /* same completion rule */
    } else if (strcmp(cmd, "presence") == 0) {
        const char *show;
        starling_presence_type_t t =
            parse_show(a->nargs > 0 ? a->args[0] : NULL, &show);
        rc = starling_send_presence(c, NULL, t, show,
                                    a->nargs > 1 ? a->args[1] : NULL, 0);
        if (rc == 0)
            rc = starling_iq_send(c, a->domain, false,
                                  "<ping xmlns='urn:xmpp:ping'/>", 0, iq_done,
                                  a);
        if (rc == 0)
            a->cmd = "send";
    } else if (strcmp(cmd, "raw") == 0) {
        rc = starling_send_raw(c, a->args[0]);
        a->raw = true;
        a->cmd = "listen"; /* print what comes back */
    } else if (strcmp(cmd, "shell") == 0) {
        printf("connected as %s; /help for commands\n", jid);
        fflush(stdout);
        starling_send_presence(c, NULL, STARLING_PRES_AVAILABLE, NULL, NULL, 0);
        if (!a->shell_started) {
            a->shell_started = true;
            uv_poll_start(&a->stdin_poll, UV_READABLE, on_stdin);
        }
    }
    if (rc < 0) {
        fprintf(stderr, "starling: %s: invalid arguments (see --help)\n", cmd);
        finish(a, 2);
    }
}

static void ev_disconnected(starling_client_t *c, const starling_error_t *err,
                            void *ud)
{
    app_t *a = ud;
    (void)c;
    if (err != NULL && !a->done) {
        report_error(a, "connection", err);
        a->exit_code = 1;
    }
    a->done = true;
    uv_stop(a->loop);
}

static bool ev_iq(starling_client_t *c, const starling_stanza_t *iq, void *ud)
{
    (void)ud;
    /* XEP-0199: answer pings; the library answers anything else with
     * service-unavailable. */
    if (starling_stanza_child_text(iq, "urn:xmpp:ping", "ping") != NULL) {
        starling_iq_reply(c, iq, NULL, NULL, NULL);
        return true;
    }
    return false;
}

static void on_timeout(uv_timer_t *t)
{
    app_t *a = t->data;
    if (a->done)
        return;
    if (a->raw) {
        finish(a, 0); /* raw prints what came back until the timeout */
        return;
    }
    fprintf(stderr, "starling: %s: no answer within %.0f s\n", a->cmd,
            a->timeout);
    finish(a, 1);
}

static void on_sigint(uv_signal_t *s, int sig)
{
    app_t *a = s->data;
    (void)sig;
    finish(a, a->exit_code);
}

/* ------------------------------------------------------------- shell */

static const char *prompt(EditLine *e)
{
    (void)e;
    return "starling> ";
}

static int run_line(app_t *a, char *line)
{
    char *cmd = strtok(line, " \t\n");
    if (cmd == NULL)
        return 0;
    starling_client_t *c = a->c;
    if (strcmp(cmd, "/quit") == 0) {
        finish(a, 0);
        return 0;
    }
    if (strcmp(cmd, "/help") == 0) {
        puts("/send JID TEXT, /presence [SHOW [STATUS]], /roster, "
             "/subscribe JID, /approve JID, /deny JID, /unsubscribe JID, "
             "/raw XML, /quit");
        return 0;
    }
    char *rest = strtok(NULL, "\n");
    char *arg1 = rest != NULL ? strtok(rest, " \t") : NULL;
    char *arg2 = arg1 != NULL ? strtok(NULL, "\n") : NULL;
    int rc = -1;
    if (strcmp(cmd, "/send") == 0 && arg1 && arg2)
        rc =
            starling_send_message(c, arg1, STARLING_MSG_CHAT, arg2, NULL, NULL);
    else if (strcmp(cmd, "/roster") == 0)
        rc = starling_roster_get(c, NULL, print_roster, a);
    else if (strcmp(cmd, "/presence") == 0) {
        const char *show;
        starling_presence_type_t t = parse_show(arg1, &show);
        rc = starling_send_presence(c, NULL, t, show, arg2, 0);
    } else if (strcmp(cmd, "/raw") == 0 && arg1) {
        char buf[8192];
        snprintf(buf, sizeof(buf), "%s%s%s", arg1, arg2 ? " " : "",
                 arg2 ? arg2 : "");
        rc = starling_send_raw(c, buf);
    } else if (arg1 &&
               (strcmp(cmd, "/subscribe") == 0 ||
                strcmp(cmd, "/approve") == 0 || strcmp(cmd, "/deny") == 0 ||
                strcmp(cmd, "/unsubscribe") == 0)) {
        starling_presence_type_t t =
            strcmp(cmd, "/subscribe") == 0 ? STARLING_PRES_SUBSCRIBE
            : strcmp(cmd, "/approve") == 0 ? STARLING_PRES_SUBSCRIBED
            : strcmp(cmd, "/deny") == 0    ? STARLING_PRES_UNSUBSCRIBED
                                           : STARLING_PRES_UNSUBSCRIBE;
        rc = starling_send_presence(c, arg1, t, NULL, NULL, 0);
    }
    if (rc < 0)
        printf("? %s: not sent (see /help)\n", cmd);
    fflush(stdout);
    return 0;
}

static void on_stdin(uv_poll_t *p, int status, int events)
{
    app_t *a = p->data;
    (void)events;
    if (status < 0)
        return;
    int n = 0;
    const char *line = el_gets(a->el, &n);
    if (line == NULL) { /* EOF */
        uv_poll_stop(p);
        finish(a, 0);
        return;
    }
    if (n > 1) {
        HistEvent ev;
        history(a->hist, &ev, H_ENTER, line);
    }
    char *copy = strdup(line);
    if (copy != NULL) {
        run_line(a, copy);
        free(copy);
    }
}

/* ---------------------------------------------------------- options */

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' ||
                     s[n - 1] == '\r'))
        s[--n] = '\0';
    if (n >= 2 && ((s[0] == '"' && s[n - 1] == '"') ||
                   (s[0] == '\'' && s[n - 1] == '\''))) {
        s[n - 1] = '\0';
        s++;
    }
    return s;
}

/* Values read from --config; freed at exit. */
typedef struct conf_vals {
    char *v[5];
    int n;
} conf_vals_t;

static void read_config(const char *path, starling_client_opts_t *o,
                        conf_vals_t *keep)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        die("%s: %s", path, strerror(errno));
    char line[1024];
    int no = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        no++;
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            die("%s:%d: expected `key = value`", path, no);
        }
        *eq = '\0';
        char *k = trim(s), *v = strdup(trim(eq + 1));
        if (v == NULL || keep->n == 5)
            die("%s:%d: too many settings", path, no);
        keep->v[keep->n++] = v;
        if (strcmp(k, "jid") == 0 && o->jid == NULL)
            o->jid = v;
        else if (strcmp(k, "password") == 0)
            o->password = v;
        else if (strcmp(k, "server") == 0 && o->server == NULL)
            o->server = v;
        else if (strcmp(k, "ca-file") == 0 && o->ca_file == NULL)
            o->ca_file = v;
        else if (strcmp(k, "pin") == 0 && o->pin_sha256 == NULL)
            o->pin_sha256 = v;
        else
            die("%s:%d: unknown setting '%s'", path, no, k);
    }
    fclose(f);
}

int main(int argc, char **argv)
{
    starling_client_opts_t o;
    memset(&o, 0, sizeof(o));
    app_t a;
    memset(&a, 0, sizeof(a));
    a.timeout = 10;
    const char *config = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *opt = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(opt, "--version") == 0) {
            printf("starling %s\n", STARLING_VERSION);
            return 0;
        } else if (strcmp(opt, "--direct-tls") == 0) {
            o.direct_tls = true;
        } else if (strcmp(opt, "--insecure-tls") == 0) {
            o.insecure_tls = true;
        } else if (strcmp(opt, "--json") == 0) {
            a.json = true;
        } else if (strcmp(opt, "--verbose") == 0 || strcmp(opt, "-v") == 0) {
            a.verbose = true;
        } else if (strcmp(opt, "--password") == 0) {
            fprintf(stderr,
                    "starling: passwords are not taken from the command "
                    "line: use STARLING_PASSWORD or --config\n");
            return 2;
        } else if (val == NULL) {
            fprintf(stderr, "starling: %s needs a value\n", opt);
            return 2;
        } else {
            i++;
            if (strcmp(opt, "--jid") == 0)
                o.jid = val;
            else if (strcmp(opt, "--config") == 0)
                config = val;
            else if (strcmp(opt, "--server") == 0)
                o.server = val;
            else if (strcmp(opt, "--ca-file") == 0)
                o.ca_file = val;
            else if (strcmp(opt, "--pin") == 0)
                o.pin_sha256 = val;
            else if (strcmp(opt, "--dns") == 0)
                o.dns_servers = val;
            else if (strcmp(opt, "--timeout") == 0)
                a.timeout = atof(val);
            else {
                fprintf(stderr, "starling: unknown option %s (see --help)\n",
                        opt);
                return 2;
            }
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    a.cmd = argv[i++];
    a.args = argv + i;
    a.nargs = argc - i;
    /* `listen --json` after the command is accepted too. */
    if (strcmp(a.cmd, "listen") == 0 && a.nargs > 0 &&
        strcmp(a.args[0], "--json") == 0) {
        a.json = true;
        a.nargs = 0;
    }
    static const struct {
        const char *name;
        int min, max;
    } cmds[] = {{"send", 2, 2},        {"listen", 0, 0},   {"roster", 0, 3},
                {"subscribe", 1, 1},   {"approve", 1, 1},  {"deny", 1, 1},
                {"unsubscribe", 1, 1}, {"presence", 0, 2}, {"raw", 1, 1},
                {"shell", 0, 0}};
    bool known = false;
    for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++) {
        if (strcmp(a.cmd, cmds[k].name) != 0)
            continue;
        known = true;
        if (a.nargs < cmds[k].min || a.nargs > cmds[k].max) {
            fprintf(stderr,
                    "starling: %s: wrong number of arguments "
                    "(see --help)\n",
                    a.cmd);
            return 2;
        }
    }
    if (!known) {
        fprintf(stderr, "starling: unknown command '%s' (see --help)\n", a.cmd);
        return 2;
    }
    conf_vals_t keep = {.n = 0};
    if (config != NULL)
        read_config(config, &o, &keep);
    if (o.jid == NULL)
        o.jid = getenv("STARLING_JID");
    if (getenv("STARLING_PASSWORD") != NULL)
        o.password = getenv("STARLING_PASSWORD");
    if (o.jid == NULL) {
        fprintf(stderr,
                "starling: no account: give --jid JID (or STARLING_JID)\n");
        return 2;
    }
    if (o.password == NULL) {
        fprintf(stderr, "starling: no password: set STARLING_PASSWORD or put "
                        "`password = ...` in a --config file\n");
        return 2;
    }
    const char *at = strchr(o.jid, '@');
    a.domain = strdup(at != NULL ? at + 1 : o.jid);
    char *slash = a.domain != NULL ? strchr(a.domain, '/') : NULL;
    if (slash != NULL)
        *slash = '\0';

    signal(SIGPIPE, SIG_IGN);
    a.loop = uv_default_loop();
    starling_client_events_t ev = {.connected = ev_connected,
                                   .disconnected = ev_disconnected,
                                   .message = ev_message,
                                   .presence = ev_presence,
                                   .roster_push = ev_roster_push,
                                   .iq = ev_iq};
    starling_error_t err;
    a.c = starling_client_new(a.loop, &o, &ev, &a, &err);
    if (a.c == NULL) {
        fprintf(stderr, "starling: %s\n", err.description);
        return 1;
    }
    uv_signal_init(a.loop, &a.sigint);
    a.sigint.data = &a;
    uv_signal_start(&a.sigint, on_sigint, SIGINT);
    uv_timer_init(a.loop, &a.timer);
    a.timer.data = &a;
    /* listen and shell run until Ctrl-C (or /quit); the rest are bounded. */
    if (strcmp(a.cmd, "listen") != 0 && strcmp(a.cmd, "shell") != 0)
        uv_timer_start(&a.timer, on_timeout, (uint64_t)(a.timeout * 1000), 0);
    if (strcmp(a.cmd, "shell") == 0) {
        a.el = el_init("starling", stdin, stdout, stderr);
        a.hist = history_init();
        HistEvent hev;
        history(a.hist, &hev, H_SETSIZE, 500);
        el_set(a.el, EL_PROMPT, prompt);
        el_set(a.el, EL_EDITOR, "emacs");
        el_set(a.el, EL_HIST, history, a.hist);
        /* Commands are read once connected (ev_connected). */
        uv_poll_init(a.loop, &a.stdin_poll, STDIN_FILENO);
        a.stdin_poll.data = &a;
    }
    if (starling_client_connect(a.c) < 0) {
        fprintf(stderr, "starling: bad --server address\n");
        return 2;
    }
    uv_run(a.loop, UV_RUN_DEFAULT);
    /* Close our handles and let the client release its own. */
    uv_close((uv_handle_t *)&a.timer, NULL);
    uv_close((uv_handle_t *)&a.sigint, NULL);
    if (a.el != NULL) {
        uv_close((uv_handle_t *)&a.stdin_poll, NULL);
        history_end(a.hist);
        el_end(a.el);
    }
    starling_client_free(a.c);
    uv_run(a.loop, UV_RUN_DEFAULT);
    uv_loop_close(a.loop);
    free(a.domain);
    for (int k = 0; k < keep.n; k++)
        free(keep.v[k]);
    return a.exit_code;
}
