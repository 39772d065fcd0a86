/* libFuzzer target: the whole c2s stream (lib/stream) with a fake owner.
 *
 * The input is what a client writes: header bytes, then the client's writes
 * separated by 0xFF bytes (never valid in UTF-8, so never part of the XML).
 * Each write is fed with stream_feed() in pieces chosen by the chunking
 * mode; a write's pieces are never merged with the next write, so a
 * transcript can send <starttls/> and the next header as separate reads,
 * as a real client does.
 *
 * Header bytes:
 *   byte 0  bits 0-2 chunking: whole write, 1 byte, fixed (param+1), random
 *           1..param+1, random 1..4, random 1..64, 7 bytes, two halves;
 *           bit 3 tls_required; bit 4 account lookups answered after the
 *           feed (else from inside the hook), and SASL failures held back
 *           by auth_failed until then; bit 5 password checks after
 *           the feed; bit 6 binds after the feed; bit 7 TLS handshakes
 *           finish after the feed
 *   byte 1  bit 0 TLS handshakes fail; bit 1 the client certificate names
 *           juliet@localhost (EXTERNAL); bit 2 tls-unique data as well as
 *           tls-exporter; bit 3 account lookups fail (storage error);
 *           bit 4 binds fail (conflict, or resource-constraint with bit 5);
 *           bit 5 see bit 4; bit 6 each bound stanza is sent back to the
 *           client from inside the stanza hook (iq with stream_send_raw,
 *           others with stream_send_element), and the third one ends the
 *           stream from inside it (a message with a conflict stream
 *           error, others with stream_close); bit 7 two served
 *           hosts (localhost, example.org)
 *   byte 2  chunking parameter
 *   byte 3  bit 0 failed binds carry no condition; bit 1 binds answer a
 *           resource that is not valid; bit 2 the account has no SCRAM
 *           credentials (only the DIGEST-MD5 hash); bit 3 it has SHA-1
 *           credentials only; bit 4 direct TLS (port 5223: TLS is done
 *           before the first byte); bit 5 the certificate names romeo
 *           as well; bit 6 the owner ends the stream (system-shutdown)
 *           from inside the account lookup hook; bit 7 the default
 *           server configuration (no DIGEST-MD5, no -PLUS)
 *
 * Helper writes, starting with \x01 (never valid XML), stand for what a
 * fuzzer cannot compute: "\x01A" + m writes an honest SCRAM <auth/> for
 * juliet (m & 3 picks the mechanism: SCRAM-SHA-256-PLUS, -256, SHA-1-PLUS,
 * SHA-1), "\x01F" the honest client-final <response/> for the last
 * server-first the stream sent. The rest of such a write follows as is.
 *
 * The fake account: juliet@localhost, password r0m30, SCRAM credentials
 * made once with one PBKDF2 iteration, so that PLAIN stays cheap.
 *
 * Properties checked (abort() on violation):
 *  - everything the stream sends, fed to a client-side parser of our own
 *    XML layer, is a well-formed XMPP stream: headers (restarted after
 *    <proceed/> and <success/>), elements, close tag; headers carry id,
 *    version 1.0 and from = a served host;
 *  - nothing is sent after our close tag, or after <proceed/> until the
 *    TLS layer reports back, or while a SASL <failure/> is held back
 *    (auth_failed's delay) except a stream error; no hook runs after
 *    hooks->close; close runs at most once, and always after
 *    stream_abort();
 *  - a stream error is followed at once by our close tag, names an RFC
 *    6120 §4.9.3 condition, and is what stream_error_sent() reports;
 *  - features: STARTTLS exactly when neither TLS nor SASL has happened;
 *    with TLS required only STARTTLS before TLS; PLAIN never offered
 *    without TLS; EXTERNAL only with a certificate; -PLUS only with
 *    channel-binding data; bind once authenticated;
 *  - start_tls only after <proceed/>, never on a TLS stream;
 *  - account lookups ask for a served domain and a Nodeprep-stable name;
 *    bind is asked only when authenticated and not bound, for juliet, with
 *    a Resourceprep-stable resource;
 *  - stanzas reach the owner only when bound (and over TLS when it is
 *    required), are message/presence/iq in jabber:client, carry a 'from'
 *    that is the session's bare or full JID, and serialize to XML that
 *    parses back to an equal tree;
 *  - bound implies authenticated; stream_jid() is juliet@localhost/...
 *    exactly when bound; with TLS required nothing authenticates without
 *    TLS; the state is CLOSED exactly when hooks->close ran.
 * Everything allocated is freed (LeakSanitizer runs at exit). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "base/base64.h"
#include "base/buf.h"
#include "jid/jid.h"
#include "sasl/sasl.h"
#include "sasl/scram.h"
#include "stream/stream.h"
#include "xml/xml.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define USER           "juliet"
#define PASSWORD       "r0m30"
#define DOMAIN         "localhost"
#define CLOSE_TAG      "</stream:stream>"
#define PROCEED        "<proceed xmlns='" STREAM_NS_TLS "'/>"
#define SASL_OPEN(tag) "<" tag " xmlns='" STREAM_NS_SASL "'"

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_stream: %s\n", what);
    abort();
}

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            fail(#cond);                                                       \
    } while (0)

/* ------------------------------------------------------ fixed account */

static const unsigned char SALT[SCRAM_SALT_LEN] = "stream-fuzz-salt";
static const unsigned char SECRET[32] = "fuzz_stream server secret 12345";
static const unsigned char EXPORTER[32] = {
    9, 8, 7, 6,  5,  4,  3,  2,  1,  0,  1,  2,  3,  4,  5,  6,
    7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22};
static const unsigned char UNIQUE[12] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5,
                                         0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab};
static const char *const CERT_NAMES[] = {USER "@" DOMAIN, "romeo@" DOMAIN};
static const char *const HOSTS[] = {DOMAIN, "example.org"};

static scram_cred_t CRED[2];                       /* by scram_hash_t */
static unsigned char CLIENT_KEY[2][SCRAM_KEY_MAX]; /* for the helper */
static unsigned char MD5_HASH[16];
/* FUZZ_STREAM_TRACE=1 prints the conversation (for checking seeds). */
static bool trace;

static const EVP_MD *md_of(scram_hash_t h)
{
    return h == SCRAM_SHA1 ? EVP_sha1() : EVP_sha256();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    trace = getenv("FUZZ_STREAM_TRACE") != NULL;
    /* One iteration: RFC 7677 wants 4096 for stored accounts, but PLAIN's
     * check runs PBKDF2 at the stored count, and a fuzzer needs speed. */
    for (int h = SCRAM_SHA1; h <= SCRAM_SHA256; h++) {
        size_t klen = scram_key_len((scram_hash_t)h);
        unsigned char salted[SCRAM_KEY_MAX];
        unsigned n = 0;
        CHECK(scram_derive((scram_hash_t)h, PASSWORD, SALT, sizeof(SALT), 1,
                           &CRED[h]) == 0);
        CHECK(PKCS5_PBKDF2_HMAC(PASSWORD, (int)strlen(PASSWORD), SALT,
                                (int)sizeof(SALT), 1, md_of((scram_hash_t)h),
                                (int)klen, salted) == 1);
        CHECK(HMAC(md_of((scram_hash_t)h), salted, (int)klen,
                   (const unsigned char *)"Client Key", 10, CLIENT_KEY[h],
                   &n) != NULL &&
              n == klen);
    }
    CHECK(scram_digest_md5_hash(USER, DOMAIN, PASSWORD, MD5_HASH) == 0);

    return 0;
}

/* A feature of the owner's (as stream management will be): offered after
 * authentication; its top-level elements are answered once bound and end
 * the stream before that. */
#define FUZZ_FEATURE_NS "urn:fuzz:feature"

static void fuzz_feature_handle(stream_t *s, void *owner_ud,
                                const stream_feature_t *f, xml_tree_t *t)
{
    (void)owner_ud;
    (void)f;
    xml_tree_free(t);
    if (!stream_is_bound(s)) {
        stream_error(s, "not-authorized", NULL);
        return;
    }
    static const char ans[] = "<r xmlns='" FUZZ_FEATURE_NS "'/>";
    stream_send_nonza(s, ans, sizeof(ans) - 1);
}

static const stream_feature_t FUZZ_FEATURES[] = {{
    .ns = FUZZ_FEATURE_NS,
    .name = "f",
    .when = STREAM_FEAT_AFTER_AUTH,
    .handle = fuzz_feature_handle,
}};

/* The stream's configuration for one run. */
static void make_config(stream_config_t *c, bool tls_required, bool two_hosts,
                        bool tls_direct, bool defaults)
{
    memset(c, 0, sizeof(*c));
    c->hosts = HOSTS;
    c->host_count = two_hosts ? 2 : 1;
    c->tls_available = true;
    c->tls_required = tls_required;
    c->tls_direct = tls_direct;
    c->mechs = (1u << SASL_MECH_COUNT) - 1;
    if (defaults)
        c->mechs &= ~(1u << SASL_MECH_DIGEST_MD5);
    c->offer_plus = !defaults;
    c->max_auth_failures = 3;
    xml_limits_default(&c->limits_preauth);
    c->limits_preauth.max_element_size = 4 * 1024;
    xml_limits_default(&c->limits);
    c->limits.max_element_size = 16 * 1024;
    c->server_secret = SECRET;
    c->server_secret_len = sizeof(SECRET);
    /* Only unknown users' fake credentials use this count (PLAIN does the
     * PBKDF2 work on them): kept low for speed. */
    c->scram_iterations = 1;
    c->features = FUZZ_FEATURES;
    c->feature_count = 1;
}

/* ---------------------------------------------------------- the owner */

typedef struct fz {
    stream_t *s;
    const stream_config_t *cfg;

    /* Options from the header bytes. */
    bool async_lookup, async_password, async_bind, async_tls;
    bool tls_fail, cert, unique, lookup_fail, bind_fail, bind_wait;
    bool echo;
    bool bind_null_cond, bind_bad_res, md5_only, sha1_only, two_certs;
    bool shutdown_in_lookup;

    /* Hook bookkeeping. */
    bool closed;         /* hooks->close ran */
    bool close_tag_sent; /* our </stream:stream> went out */
    bool awaiting_tls;   /* <proceed/> sent; the TLS layer has not answered */
    bool in_echo;        /* inside our stream_send_element() */
    unsigned stanzas;

    /* Pending asynchronous answers. */
    bool pend_tls, pend_lookup, pend_password, pend_bind, pend_delay;
    xml_tree_t *pend_preauth; /* an IQ before authentication, unanswered */
    bool lookup_found;
    sasl_server_t *pw_sess;
    char bind_res[JID_PART_BUF];
    bool bind_res_null;

    /* The client-side parser checking what the stream sends. */
    xml_parser_t *chk;
    bool chk_reset;  /* reset before the next send: a new stream follows */
    bool chk_header; /* a header has been seen in this stream */
    bool chk_ended;

    /* The SCRAM helper. */
    int helper_mech; /* -1: no honest auth written */
    char *client_first_bare;
    char gs2[32];
    char *server_first;
} fz_t;

static const char *const STREAM_CONDITIONS[] = {
    "bad-format",
    "bad-namespace-prefix",
    "conflict",
    "connection-timeout",
    "host-gone",
    "host-unknown",
    "improper-addressing",
    "internal-server-error",
    "invalid-from",
    "invalid-namespace",
    "invalid-xml",
    "not-authorized",
    "not-well-formed",
    "policy-violation",
    "remote-connection-failed",
    "reset",
    "resource-constraint",
    "restricted-xml",
    "see-other-host",
    "system-shutdown",
    "undefined-condition",
    "unsupported-encoding",
    "unsupported-feature",
    "unsupported-stanza-type",
    "unsupported-version",
};

static bool is_stream_condition(const char *n)
{
    for (size_t i = 0;
         i < sizeof(STREAM_CONDITIONS) / sizeof(*STREAM_CONDITIONS); i++)
        if (strcmp(n, STREAM_CONDITIONS[i]) == 0)
            return true;
    return false;
}

static bool served(const fz_t *f, const char *domain)
{
    for (size_t i = 0; i < f->cfg->host_count; i++)
        if (strcmp(domain, f->cfg->hosts[i]) == 0)
            return true;
    return false;
}

static bool has_mech(const xml_node_t *mechs, const char *name, bool prefix)
{
    for (const xml_node_t *m =
             xml_element_child(mechs, STREAM_NS_SASL, "mechanism");
         m != NULL; m = xml_element_next(m, STREAM_NS_SASL, "mechanism")) {
        const xml_node_t *t = m->children;
        if (t == NULL || t->kind != XML_NODE_TEXT)
            continue;
        if (prefix ? strstr(t->text, name) != NULL : strcmp(t->text, name) == 0)
            return true;
    }
    return false;
}

/* --------------------------------- what the stream sends, parsed back */

static void chk_start(void *ud, xml_tree_t *t)
{
    fz_t *f = ud;
    const xml_node_t *h = t->root;
    CHECK(!f->chk_header);
    f->chk_header = true;
    const char *id = xml_element_attr(h, NULL, "id");
    const char *version = xml_element_attr(h, NULL, "version");
    const char *from = xml_element_attr(h, NULL, "from");
    CHECK(id != NULL && id[0] != '\0');
    CHECK(version != NULL && strcmp(version, "1.0") == 0);
    CHECK(strcmp(id, stream_id(f->s)) == 0);
    /* 'from' is left out only when no served host was named (RFC 6120
     * §4.9.1.3: host-unknown with several hosts). */
    CHECK(from == NULL || served(f, from));
    xml_tree_free(t);
}

static void chk_element(void *ud, xml_tree_t *t)
{
    fz_t *f = ud;
    const xml_node_t *el = t->root;
    CHECK(f->chk_header && !f->chk_ended);
    if (xml_element_is(el, XML_NS_STREAMS, "error")) {
        const xml_node_t *c =
            xml_element_child(el, STREAM_NS_STREAMS_ERR, NULL);
        CHECK(c != NULL && strcmp(c->name, "text") != 0);
        CHECK(is_stream_condition(c->name));
        const char *sent = stream_error_sent(f->s);
        CHECK(sent != NULL && strcmp(sent, c->name) == 0);
    } else if (xml_element_is(el, XML_NS_STREAMS, "features")) {
        bool tls = stream_is_tls(f->s);
        const xml_node_t *st = xml_element_child(el, STREAM_NS_TLS, "starttls");
        const xml_node_t *mechs =
            xml_element_child(el, STREAM_NS_SASL, "mechanisms");
        /* STARTTLS is offered exactly when it would be accepted: not on
         * TLS, and not after SASL (RFC 6120 §5.3.1: TLS comes first, and
         * the stream refuses <starttls/> once authenticated). */
        CHECK((st != NULL) == (!tls && !stream_is_authenticated(f->s)));
        if (!tls && f->cfg->tls_required)
            CHECK(xml_element_count_children(el) == 1);
        if (mechs != NULL) {
            CHECK(!stream_is_authenticated(f->s));
            CHECK(tls || !has_mech(mechs, "PLAIN", false));
            CHECK((tls && f->cert) || !has_mech(mechs, "EXTERNAL", false));
            /* Channel binding data exists only after our fake handshake. */
            CHECK(tls || !has_mech(mechs, "-PLUS", true));
        }
        if (stream_is_authenticated(f->s)) {
            CHECK(xml_element_child(el, STREAM_NS_BIND, "bind") != NULL);
            CHECK(xml_element_child(el, FUZZ_FEATURE_NS, "f") != NULL);
        } else {
            CHECK(xml_element_child(el, FUZZ_FEATURE_NS, NULL) == NULL);
        }
    } else if (xml_element_is(el, FUZZ_FEATURE_NS, "r")) {
        CHECK(stream_is_bound(f->s));
    } else if (xml_element_is(el, STREAM_NS_TLS, "proceed") ||
               xml_element_is(el, STREAM_NS_SASL, "success")) {
        /* A new stream follows (RFC 6120 §5.4.3.3, §6.4.6). */
        f->chk_reset = true;
        xml_parser_stop(f->chk);
    }
    xml_tree_free(t);
}

static void chk_end(void *ud)
{
    fz_t *f = ud;
    CHECK(f->chk_header && !f->chk_ended);
    f->chk_ended = true;
}

static const xml_parser_cbs_t CHK_CBS = {chk_start, chk_element, chk_end};

/* Copies the server-first out of a <challenge/> for the SCRAM helper. */
static void capture_challenge(fz_t *f, const char *d, size_t n)
{
    static const char open[] = SASL_OPEN("challenge") ">";
    if (n <= sizeof(open) - 1 || memcmp(d, open, sizeof(open) - 1) != 0)
        return;
    const char *b = d + sizeof(open) - 1;
    const char *e = memchr(b, '<', n - (size_t)(b - d));
    if (e == NULL)
        return;
    size_t len = (size_t)(e - b);
    char *dec = malloc(len / 4 * 3 + 1);
    CHECK(dec != NULL);
    long r = base64_decode(b, len, dec, len / 4 * 3 + 1);
    if (r > 2 && memcmp(dec, "r=", 2) == 0) {
        dec[r] = '\0';
        free(f->server_first);
        f->server_first = dec;
        return;
    }
    free(dec);
}

static bool contains(const char *d, size_t n, const char *needle, size_t *where)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(d + i, needle, k) == 0) {
            if (where != NULL)
                *where = i;
            return true;
        }
    return false;
}

static bool ends_with(const char *d, size_t n, const char *tail)
{
    size_t k = strlen(tail);
    return n >= k && memcmp(d + n - k, tail, k) == 0;
}

static void o_send(void *ud, const char *d, size_t n)
{
    fz_t *f = ud;
    CHECK(!f->closed);
    CHECK(!f->close_tag_sent);
    CHECK(!f->awaiting_tls);
    CHECK(d != NULL && n > 0);
    if (trace)
        fprintf(stderr, "S: %.*s\n", (int)n, d);
    /* While a <failure/> is held back the stream answers nothing; only an
     * error that ends the stream (bad XML) may still go out. */
    if (f->pend_delay)
        CHECK(n > 14 && memcmp(d, "<stream:error>", 14) == 0);

    /* A stanza the client sent may hold anything in its payload (even a
     * <proceed/> or a stream element of its own), so these textual checks
     * are for the stream's own writes. */
    size_t at;
    if (f->in_echo) {
        /* not checked */
    } else if (contains(d, n, CLOSE_TAG, &at)) {
        /* Our close tag ends the last write of the stream. */
        CHECK(at + strlen(CLOSE_TAG) == n);
        f->close_tag_sent = true;
    }
    if (!f->in_echo && contains(d, n, "<stream:error>", NULL))
        CHECK(ends_with(d, n, "</stream:error>" CLOSE_TAG));
    if (!f->in_echo && contains(d, n, "<proceed", NULL)) {
        /* RFC 6120 §5.4.2.3: nothing else with <proceed/>. */
        CHECK(n == strlen(PROCEED) && memcmp(d, PROCEED, n) == 0);
        f->awaiting_tls = true;
    }
    if (!f->in_echo && contains(d, n, SASL_OPEN("success"), &at)) {
        CHECK(at == 0);
        CHECK(ends_with(d, n, "/>") || ends_with(d, n, "</success>"));
    }
    capture_challenge(f, d, n);

    if (f->chk_reset) {
        CHECK(xml_parser_reset(f->chk) == XML_OK);
        f->chk_reset = false;
        f->chk_header = false;
        f->chk_ended = false;
    }
    int rc = xml_parser_feed(f->chk, d, n);
    if (rc != XML_OK && rc != XML_STOPPED) {
        fprintf(stderr, "fuzz_stream: the stream sent bad XML (%s): %.*s\n",
                xml_parser_error_text(f->chk), (int)n, d);
        abort();
    }
    /* A stop comes only from <proceed/> or <success/>, which end the write
     * (checked above), so nothing was discarded. */
}

static void tls_done(fz_t *f)
{
    stream_tls_info_t info;
    memset(&info, 0, sizeof(info));
    info.cb_exporter = EXPORTER;
    info.cb_exporter_len = sizeof(EXPORTER);
    if (f->unique) {
        info.cb_unique = UNIQUE;
        info.cb_unique_len = sizeof(UNIQUE);
    }
    if (f->cert) {
        info.cert_names = CERT_NAMES;
        info.cert_name_count = f->two_certs ? 2 : 1;
    }
    f->awaiting_tls = false;
    stream_tls_done(f->s, !f->tls_fail, &info);
    if (f->tls_fail)
        CHECK(f->closed);
}

static void o_start_tls(void *ud)
{
    fz_t *f = ud;
    CHECK(!f->closed);
    CHECK(f->awaiting_tls);
    CHECK(!stream_is_tls(f->s));
    CHECK(stream_state(f->s) == STREAM_TLS);
    if (f->async_tls)
        f->pend_tls = true;
    else
        tls_done(f); /* from inside the hook, as a test owner may */
}

static void o_close(void *ud)
{
    fz_t *f = ud;
    CHECK(!f->closed);
    f->closed = true;
}

static void answer_lookup(fz_t *f)
{
    if (f->lookup_fail)
        stream_sasl_lookup_failed(f->s);
    else if (f->lookup_found && f->md5_only)
        stream_sasl_account(f->s, true, NULL, NULL, MD5_HASH);
    else if (f->lookup_found && f->sha1_only)
        stream_sasl_account(f->s, true, &CRED[SCRAM_SHA1], NULL, NULL);
    else if (f->lookup_found)
        stream_sasl_account(f->s, true, &CRED[SCRAM_SHA1], &CRED[SCRAM_SHA256],
                            MD5_HASH);
    else
        stream_sasl_account(f->s, false, NULL, NULL, NULL);
}

static void o_lookup(void *ud, const char *domain, const char *node)
{
    fz_t *f = ud;
    CHECK(!f->closed);
    CHECK(!f->pend_lookup && !f->pend_password && !f->pend_bind);
    CHECK(domain != NULL && served(f, domain));
    CHECK(node != NULL && node[0] != '\0');
    char again[JID_PART_BUF];
    size_t n = 0;
    CHECK(jid_prepare_node(node, strlen(node), 0, again, &n) == JID_OK);
    CHECK(strcmp(again, node) == 0);
    f->lookup_found = strcmp(node, USER) == 0 && strcmp(domain, DOMAIN) == 0;
    if (f->shutdown_in_lookup) {
        /* The server shuts down while the store works; the answer still
         * comes (and must be harmless). */
        stream_error(f->s, "system-shutdown", NULL);
    }
    if (f->async_lookup)
        f->pend_lookup = true;
    else
        answer_lookup(f);
}

static void o_check_password(void *ud, sasl_server_t *sess)
{
    fz_t *f = ud;
    CHECK(!f->closed);
    CHECK(!f->pend_lookup && !f->pend_password && !f->pend_bind);
    CHECK(sess != NULL);
    if (f->async_password) {
        f->pend_password = true;
        f->pw_sess = sess;
        return;
    }
    stream_sasl_password_checked(f->s, sasl_server_check_password(sess));
}

static unsigned o_auth_failed(void *ud)
{
    fz_t *f = ud;
    CHECK(!f->closed);
    CHECK(!stream_is_authenticated(f->s));
    /* With asynchronous lookups, failures are held back too (the c2s
     * owner's slowdown) and released by resolve_pending(). */
    if (!f->async_lookup)
        return 0;
    f->pend_delay = true;
    return 1;
}

static void answer_bind(fz_t *f)
{
    if (f->bind_fail)
        stream_bind_done(f->s, NULL,
                         f->bind_null_cond ? NULL
                         : f->bind_wait    ? "resource-constraint"
                                           : "conflict");
    else if (f->bind_bad_res)
        stream_bind_done(f->s, "bad\x07resource", NULL);
    else
        stream_bind_done(f->s, f->bind_res_null ? "gen" : f->bind_res, NULL);
}

static void o_bind(void *ud, const jid_t *user, const char *resource)
{
    fz_t *f = ud;
    CHECK(!f->closed);
    CHECK(!f->pend_lookup && !f->pend_password && !f->pend_bind);
    CHECK(stream_is_authenticated(f->s) && !stream_is_bound(f->s));
    CHECK(user != NULL && user->node != NULL && strcmp(user->node, USER) == 0);
    CHECK(strcmp(user->domain, DOMAIN) == 0 && user->resource == NULL);
    f->bind_res_null = resource == NULL;
    if (resource != NULL) {
        char again[JID_PART_BUF];
        size_t n = 0;
        CHECK(resource[0] != '\0');
        CHECK(jid_prepare_resource(resource, strlen(resource), 0, again, &n) ==
              JID_OK);
        CHECK(strcmp(again, resource) == 0);
        snprintf(f->bind_res, sizeof(f->bind_res), "%s", resource);
    }
    if (f->async_bind)
        f->pend_bind = true;
    else
        answer_bind(f);
}

/* An IQ before authentication (XEP-0077): registration IQs are taken
 * and answered with an empty result (after the feed when binds are), any
 * other is refused. */
static void answer_preauth(fz_t *f)
{
    xml_tree_t *t = f->pend_preauth;
    f->pend_preauth = NULL;
    xml_tree_t *r = xml_tree_new();
    xml_node_t *iq =
        r != NULL ? xml_element_new(r, NULL, XML_NS_CLIENT, "iq") : NULL;
    const char *id = xml_element_attr(t->root, NULL, "id");
    if (iq != NULL &&
        xml_element_set_attr(r, iq, NULL, "type", "result") == 0 &&
        (id == NULL || xml_element_set_attr(r, iq, NULL, "id", id) == 0))
        stream_preauth_done(f->s, iq);
    else
        stream_preauth_done(f->s, NULL);
    xml_tree_free(r);
    xml_tree_free(t);
}

static bool o_preauth_iq(void *ud, const char *domain, xml_tree_t *iq)
{
    fz_t *f = ud;
    CHECK(!f->closed && f->pend_preauth == NULL);
    CHECK(!stream_is_authenticated(f->s));
    CHECK(domain != NULL);
    CHECK(strcmp(iq->root->name, "iq") == 0);
    const xml_node_t *c = iq->root->children;
    while (c != NULL && c->kind != XML_NODE_ELEMENT)
        c = c->next;
    if (c == NULL || c->ns == NULL || strcmp(c->ns, "jabber:iq:register") != 0)
        return false;
    f->pend_preauth = iq;
    if (!f->async_bind)
        answer_preauth(f);
    return true;
}

/* A stanza serialized as the router would, parsed back in a fresh stream,
 * is the same tree. */
typedef struct reparse {
    xml_tree_t *el;
    unsigned n;
} reparse_t;

static void rp_start(void *ud, xml_tree_t *t)
{
    (void)ud;
    xml_tree_free(t);
}

static void rp_element(void *ud, xml_tree_t *t)
{
    reparse_t *r = ud;
    r->n++;
    if (r->el == NULL)
        r->el = t;
    else
        xml_tree_free(t);
}

static void rp_end(void *ud)
{
    (void)ud;
}

static const xml_parser_cbs_t RP_CBS = {rp_start, rp_element, rp_end};

static void check_reparse(const xml_node_t *el)
{
    static const char hdr[] =
        "<stream:stream xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
    char *s = xml_to_string(el, XML_NS_CLIENT);
    CHECK(s != NULL);
    xml_parser_opts_t o;
    memset(&o, 0, sizeof(o));
    o.content_ns = XML_NS_CLIENT;
    xml_limits_default(&o.limits);
    o.limits.max_element_size = 2 * strlen(s) + 1024;
    o.limits.max_attrs = 2 * o.limits.max_attrs;
    reparse_t r = {NULL, 0};
    xml_parser_t *p = xml_parser_new(&o, &RP_CBS, &r);
    CHECK(p != NULL);
    CHECK(xml_parser_feed(p, hdr, sizeof(hdr) - 1) == XML_OK);
    CHECK(xml_parser_feed(p, s, strlen(s)) == XML_OK);
    CHECK(r.n == 1 && r.el != NULL);
    CHECK(xml_node_equal(el, r.el->root));
    xml_tree_free(r.el);
    xml_parser_free(p);
    free(s);
}

static void o_stanza(void *ud, xml_tree_t *t)
{
    fz_t *f = ud;
    CHECK(!f->closed);
    CHECK(t != NULL && t->root != NULL);
    CHECK(stream_is_bound(f->s) && stream_is_authenticated(f->s));
    CHECK(stream_state(f->s) == STREAM_OPEN);
    if (f->cfg->tls_required)
        CHECK(stream_is_tls(f->s));
    const xml_node_t *el = t->root;
    CHECK(el->ns != NULL && strcmp(el->ns, XML_NS_CLIENT) == 0);
    CHECK(strcmp(el->name, "message") == 0 ||
          strcmp(el->name, "presence") == 0 || strcmp(el->name, "iq") == 0);

    /* RFC 6120 §8.1.2.1: 'from' is the session's full or bare JID. */
    const char *from = xml_element_attr(el, NULL, "from");
    CHECK(from != NULL);
    jid_t j;
    CHECK(jid_parse(from, strlen(from), 0, &j) == JID_OK);
    const jid_t *me = stream_jid(f->s);
    CHECK(me != NULL);
    CHECK(jid_equal(&j, me) || (jid_is_bare(&j) && jid_bare_equal(&j, me)));
    jid_clear(&j);

    check_reparse(el);
    f->stanzas++;
    if (f->echo) {
        /* The router delivering to this very session, from inside the
         * hook (a message to oneself). */
        f->in_echo = true;
        if (strcmp(el->name, "iq") == 0) {
            /* Fan-out sends blocks serialized once (stream_send_raw). */
            char *raw = xml_to_string(el, XML_NS_CLIENT);
            CHECK(raw != NULL);
            CHECK(stream_send_raw(f->s, raw, strlen(raw)));
            free(raw);
        } else {
            CHECK(stream_send_element(f->s, el));
        }
        f->in_echo = false;
        /* The owner ends the stream from inside the hook: a conflict (a
         * new session took the resource) or a plain close (shutdown). */
        if (f->stanzas == 3 && strcmp(el->name, "message") == 0)
            stream_error(f->s, "conflict", "replaced by a new session");
        else if (f->stanzas == 3)
            stream_close(f->s);
        if (f->stanzas >= 3) {
            CHECK(f->close_tag_sent);
            CHECK(!stream_send_element(f->s, el));
        }
    }
    xml_tree_free(t);
}

static const stream_hooks_t HOOKS = {
    .send = o_send,
    .start_tls = o_start_tls,
    .close = o_close,
    .lookup_account = o_lookup,
    .check_password = o_check_password,
    .auth_failed = o_auth_failed,
    .bind = o_bind,
    .stanza = o_stanza,
    .preauth_iq = o_preauth_iq,
};

/* Answers whatever waits, in the order a loop would see completions. Each
 * answer may start the next request, so this runs until nothing is left. */
static void resolve_pending(fz_t *f)
{
    for (int round = 0; round < 64; round++) {
        if (f->pend_tls) {
            f->pend_tls = false;
            tls_done(f);
        } else if (f->pend_lookup) {
            f->pend_lookup = false;
            answer_lookup(f);
        } else if (f->pend_password) {
            f->pend_password = false;
            bool ok = sasl_server_check_password(f->pw_sess);
            f->pw_sess = NULL;
            stream_sasl_password_checked(f->s, ok);
        } else if (f->pend_bind) {
            f->pend_bind = false;
            answer_bind(f);
        } else if (f->pend_delay) {
            f->pend_delay = false;
            stream_auth_delay_done(f->s);
        } else if (f->pend_preauth != NULL) {
            answer_preauth(f);
        } else {
            return;
        }
    }
    fail("pending answers do not settle");
}

static void check_state(const fz_t *f)
{
    stream_t *s = f->s;
    stream_state_t st = stream_state(s);
    CHECK(f->closed == (st == STREAM_CLOSED));
    if (stream_is_bound(s))
        CHECK(stream_is_authenticated(s));
    const jid_t *j = stream_jid(s);
    CHECK((j != NULL) == stream_is_bound(s));
    if (j != NULL) {
        CHECK(j->node != NULL && strcmp(j->node, USER) == 0);
        CHECK(strcmp(j->domain, DOMAIN) == 0 && j->resource != NULL);
    }
    if (f->cfg->tls_required && stream_is_authenticated(s))
        CHECK(stream_is_tls(s));
    if (stream_error_sent(s) != NULL)
        CHECK(f->close_tag_sent || f->closed);
    if (f->close_tag_sent)
        CHECK(st == STREAM_CLOSING || st == STREAM_CLOSED);
    if (f->awaiting_tls)
        CHECK(st == STREAM_TLS || f->pend_tls);
    const char *lang = stream_lang(s);
    CHECK(lang != NULL && lang[0] != '\0');
}

/* ---------------------------------------------------------- the helper */

static void b64_into(buf_t *b, const void *data, size_t n)
{
    size_t cap = base64_encoded_size(n);
    char *e = malloc(cap);
    CHECK(e != NULL);
    CHECK(base64_encode(data, n, BASE64_STD, e, cap) >= 0);
    buf_append_str(b, e);
    free(e);
}

/* "\x01A" m: an honest SCRAM client-first for juliet. */
static void helper_auth(fz_t *f, unsigned m, buf_t *out)
{
    static const char *const names[] = {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256",
                                        "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"};
    m &= 3;
    bool plus = (m & 1) == 0;
    snprintf(f->gs2, sizeof(f->gs2), "%s", plus ? "p=tls-exporter,," : "n,,");
    free(f->client_first_bare);
    f->client_first_bare = strdup("n=" USER ",r=fuzzclientnonce");
    CHECK(f->client_first_bare != NULL);
    f->helper_mech = (int)m;
    free(f->server_first);
    f->server_first = NULL;

    buf_t msg = BUF_INIT;
    buf_append_str(&msg, f->gs2);
    buf_append_str(&msg, f->client_first_bare);
    buf_append_str(out, SASL_OPEN("auth") " mechanism='");
    buf_append_str(out, names[m]);
    buf_append_str(out, "'>");
    b64_into(out, msg.data, msg.len);
    buf_append_str(out, "</auth>");
    buf_free(&msg);
}

/* "\x01F": the honest client-final for the last server-first. */
static void helper_final(fz_t *f, buf_t *out)
{
    if (f->helper_mech < 0 || f->server_first == NULL) {
        buf_append_str(out, SASL_OPEN("response") ">=</response>");
        return;
    }
    scram_hash_t h = f->helper_mech >= 2 ? SCRAM_SHA1 : SCRAM_SHA256;
    bool plus = (f->helper_mech & 1) == 0;
    size_t klen = scram_key_len(h);

    buf_t cb = BUF_INIT;
    buf_append_str(&cb, f->gs2);
    if (plus)
        buf_append(&cb, EXPORTER, sizeof(EXPORTER));
    buf_t fwp = BUF_INIT;
    buf_append_str(&fwp, "c=");
    b64_into(&fwp, cb.data, cb.len);
    buf_free(&cb);
    const char *r = f->server_first + 2;
    const char *comma = strchr(r, ',');
    size_t rlen = comma != NULL ? (size_t)(comma - r) : strlen(r);
    buf_append_str(&fwp, ",r=");
    buf_append(&fwp, r, rlen);

    buf_t am = BUF_INIT;
    buf_append_str(&am, f->client_first_bare);
    buf_append_str(&am, ",");
    buf_append_str(&am, f->server_first);
    buf_append_str(&am, ",");
    buf_append(&am, fwp.data, fwp.len);
    unsigned char sig[SCRAM_KEY_MAX], proof[SCRAM_KEY_MAX];
    unsigned n = 0;
    CHECK(HMAC(md_of(h), CRED[h].stored_key, (int)klen,
               (unsigned char *)am.data, am.len, sig, &n) != NULL &&
          n == klen);
    buf_free(&am);
    for (size_t i = 0; i < klen; i++)
        proof[i] = CLIENT_KEY[h][i] ^ sig[i];
    buf_append_str(&fwp, ",p=");
    b64_into(&fwp, proof, klen);

    buf_append_str(out, SASL_OPEN("response") ">");
    b64_into(out, fwp.data, fwp.len);
    buf_append_str(out, "</response>");
    buf_free(&fwp);
}

/* ---------------------------------------------------------- the driver */

static uint32_t rnd(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 16;
}

static size_t next_chunk(unsigned mode, unsigned param, uint32_t *seed,
                         size_t off, size_t total)
{
    size_t left = total - off, n;
    switch (mode) {
    case 0:
        n = left;
        break;
    case 1:
        n = 1;
        break;
    case 2:
        n = (size_t)param + 1;
        break;
    case 3:
        n = 1 + rnd(seed) % ((size_t)param + 1);
        break;
    case 4:
        n = 1 + rnd(seed) % 4;
        break;
    case 5:
        n = 1 + rnd(seed) % 64;
        break;
    case 6:
        n = 7;
        break;
    default:
        n = off == 0 ? (total + 1) / 2 : left;
        break;
    }
    if (n == 0)
        n = 1;
    return n < left ? n : left;
}

static void feed_write(fz_t *f, const char *w, size_t len, unsigned mode,
                       unsigned param, uint32_t *seed)
{
    size_t off = 0;
    while (off < len) {
        size_t n = next_chunk(mode, param, seed, off, len);
        if (trace)
            fprintf(stderr, "C: %.*s\n", (int)n, w + off);
        stream_feed(f->s, w + off, n);
        off += n;
        check_state(f);
        resolve_pending(f);
        check_state(f);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    const unsigned b0 = data[0], b1 = data[1], param = data[2], b3 = data[3];
    fz_t f;
    memset(&f, 0, sizeof(f));
    stream_config_t cfg;
    make_config(&cfg, (b0 & 0x08) != 0, (b1 & 0x80) != 0, (b3 & 0x10) != 0,
                (b3 & 0x80) != 0);
    f.cfg = &cfg;
    f.async_lookup = (b0 & 0x10) != 0;
    f.async_password = (b0 & 0x20) != 0;
    f.async_bind = (b0 & 0x40) != 0;
    f.async_tls = (b0 & 0x80) != 0;
    f.tls_fail = (b1 & 0x01) != 0;
    f.cert = (b1 & 0x02) != 0;
    f.unique = (b1 & 0x04) != 0;
    f.lookup_fail = (b1 & 0x08) != 0;
    f.bind_fail = (b1 & 0x10) != 0;
    f.bind_wait = (b1 & 0x20) != 0;
    f.echo = (b1 & 0x40) != 0;
    f.bind_null_cond = (b3 & 0x01) != 0;
    f.bind_bad_res = (b3 & 0x02) != 0;
    f.md5_only = (b3 & 0x04) != 0;
    f.sha1_only = (b3 & 0x08) != 0;
    f.two_certs = (b3 & 0x20) != 0;
    f.shutdown_in_lookup = (b3 & 0x40) != 0;
    f.helper_mech = -1;

    xml_parser_opts_t co;
    memset(&co, 0, sizeof(co));
    co.content_ns = XML_NS_CLIENT;
    xml_limits_default(&co.limits);
    co.limits.max_element_size = 1024 * 1024;
    f.chk = xml_parser_new(&co, &CHK_CBS, &f);
    CHECK(f.chk != NULL);

    f.s = stream_new_c2s(f.cfg, &HOOKS, &f);
    CHECK(f.s != NULL);
    CHECK(stream_state(f.s) == STREAM_WAIT_HEADER);
    if (cfg.tls_direct) {
        /* Port 5223: the handshake is over before the first byte. */
        f.tls_fail = false;
        tls_done(&f);
        CHECK(stream_is_tls(f.s) && stream_state(f.s) == STREAM_WAIT_HEADER);
    }
    check_state(&f);

    uint32_t seed = param * 2654435761u + (uint32_t)size;
    const uint8_t *p = data + 4, *end = data + size;
    while (p <= end) {
        const uint8_t *sep = memchr(p, 0xff, (size_t)(end - p));
        const uint8_t *wend = sep != NULL ? sep : end;
        size_t wlen = (size_t)(wend - p);
        if (wlen >= 2 && p[0] == 0x01 && (p[1] == 'A' || p[1] == 'F')) {
            buf_t w = BUF_INIT;
            size_t used = 2;
            if (p[1] == 'A') {
                helper_auth(&f, wlen > 2 ? p[2] : 0, &w);
                used = wlen > 2 ? 3 : 2;
            } else {
                helper_final(&f, &w);
            }
            buf_append(&w, p + used, wlen - used);
            feed_write(&f, w.data, w.len, b0 & 7, param, &seed);
            buf_free(&w);
        } else if (wlen > 0) {
            feed_write(&f, (const char *)p, wlen, b0 & 7, param, &seed);
        }
        if (sep == NULL)
            break;
        p = sep + 1;
    }

    /* The transport goes away. */
    bool was_closed = f.closed;
    stream_abort(f.s);
    CHECK(f.closed);
    CHECK(stream_state(f.s) == STREAM_CLOSED);
    (void)was_closed;
    /* Late answers (the store, the thread pool) must be harmless. */
    resolve_pending(&f);
    stream_abort(f.s);
    xml_tree_free(f.pend_preauth);
    stream_free(f.s);

    xml_parser_free(f.chk);
    free(f.client_first_bare);
    free(f.server_first);
    return 0;
}
