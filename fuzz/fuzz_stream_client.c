/* libFuzzer target: the client half of a c2s stream (lib/stream/
 * stream_client.c) with a fake owner; the input is what a server writes.
 *
 * Header bytes:
 *   byte 0  bits 0-1 chunking: whole write, 1 byte, random 1..8, two
 *           halves; bit 2 allow_plaintext; bit 3 the JID has a resource;
 *           bit 4 TLS reports tls-exporter data; bit 5 tls-unique data;
 *           bit 6 TLS handshakes fail; bit 7 TLS finishes after the feed
 *           returns (else from inside start_tls)
 *   byte 1  bit 0 the owner closes the stream from inside ready; bit 1 it
 *           aborts from inside failed; bit 2 it sends a stanza back from
 *           inside the stanza hook; bit 3 it closes after the third
 *           stanza; bit 4 direct TLS; bit 5 allow_plain off; bit 6 no
 *           password (EXTERNAL with a client certificate)
 * The rest: server writes separated by 0xFF bytes (never valid UTF-8).
 *
 * Properties checked (abort() on violation):
 *  - nothing is sent after our close tag, and no hook runs after close;
 *  - what we send is a well-formed XMPP stream (parsed back with our own
 *    parser, restarted at each of our headers);
 *  - failed runs at most once; ready at most once, only after our bind
 *    request, with a full JID, and before any stanza; stanzas only when
 *    READY;
 *  - start_tls only once and never on a TLS stream;
 *  - the state is CLOSED exactly when close ran (after sclient_abort).
 * Everything allocated is freed (LeakSanitizer runs at exit). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream/stream_client.h"
#include "xml/xml.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* FUZZ_STREAM_CLIENT_TRACE=1 prints the conversation (for checking
 * seeds). */
static bool trace;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    trace = getenv("FUZZ_STREAM_CLIENT_TRACE") != NULL;
    return 0;
}

#define CLOSE_TAG "</stream:stream>"

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_stream_client: %s\n", what);
    abort();
}

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            fail(#cond);                                                       \
    } while (0)

static const unsigned char EXPORTER[32] = {1, 2, 3, 4, 5, 6, 7, 8};
static const unsigned char UNIQUE[12] = {0xa0, 0xa1, 0xa2};

typedef struct fz {
    sclient_t *c;
    bool tls_fail, tls_async, exporter, unique, cert;
    bool close_in_ready, abort_in_failed, echo, close_after_three;

    bool closed, close_tag_sent, tls_started, tls_pending, bind_sent;
    int failed, ready;
    unsigned stanzas;

    xml_parser_t *chk;
    bool chk_header;
} fz_t;

/* ---------------------------------------------- our output, parsed */

static void chk_start(void *ud, xml_tree_t *t)
{
    fz_t *f = ud;
    CHECK(!f->chk_header);
    f->chk_header = true;
    const char *v = xml_element_attr(t->root, NULL, "version");
    CHECK(v != NULL && strcmp(v, "1.0") == 0);
    CHECK(xml_element_attr(t->root, NULL, "to") != NULL);
    xml_tree_free(t);
}

static void chk_element(void *ud, xml_tree_t *t)
{
    fz_t *f = ud;
    CHECK(f->chk_header);
    if (xml_element_is(t->root, XML_NS_CLIENT, "iq")) {
        const char *id = xml_element_attr(t->root, NULL, "id");
        if (id != NULL && strcmp(id, "bind_1") == 0)
            f->bind_sent = true;
    }
    xml_tree_free(t);
}

static void chk_end(void *ud)
{
    (void)ud;
}

static const xml_parser_cbs_t CHK_CBS = {chk_start, chk_element, chk_end};

/* ------------------------------------------------------------- hooks */

static void h_send(void *ud, const char *d, size_t n)
{
    fz_t *f = ud;
    CHECK(!f->closed);
    CHECK(!f->close_tag_sent);
    CHECK(n > 0);
    if (trace)
        fprintf(stderr, "C: %.*s\n", (int)n, d);
    if (n >= 5 && memcmp(d, "<?xml", 5) == 0) {
        /* Our new stream (first, after TLS, after SASL). */
        CHECK(xml_parser_reset(f->chk) == 0);
        f->chk_header = false;
    }
    if (n == sizeof(CLOSE_TAG) - 1 && memcmp(d, CLOSE_TAG, n) == 0)
        f->close_tag_sent = true;
    int rc = xml_parser_feed(f->chk, d, n);
    CHECK(rc == XML_OK);
}

static void tls_finish(fz_t *f)
{
    f->tls_pending = false;
    sclient_tls_info_t info = {0};
    if (f->exporter) {
        info.cb_exporter = EXPORTER;
        info.cb_exporter_len = sizeof(EXPORTER);
    }
    if (f->unique) {
        info.cb_unique = UNIQUE;
        info.cb_unique_len = sizeof(UNIQUE);
    }
    info.have_client_cert = f->cert;
    sclient_tls_done(f->c, !f->tls_fail, &info);
}

static void h_start_tls(void *ud)
{
    fz_t *f = ud;
    CHECK(!f->closed);
    CHECK(!f->tls_started);
    CHECK(sclient_state(f->c) == SCLIENT_TLS);
    f->tls_started = true;
    if (f->tls_async)
        f->tls_pending = true;
    else
        tls_finish(f);
}

static void h_close(void *ud)
{
    fz_t *f = ud;
    CHECK(!f->closed);
    f->closed = true;
}

static void h_ready(void *ud, const jid_t *jid)
{
    fz_t *f = ud;
    CHECK(!f->closed);
    CHECK(f->ready == 0 && f->failed == 0);
    CHECK(f->bind_sent);
    CHECK(f->stanzas == 0);
    CHECK(jid != NULL && jid->node != NULL && jid->domain != NULL &&
          jid->resource != NULL);
    CHECK(sclient_state(f->c) == SCLIENT_READY);
    CHECK(sclient_jid(f->c) == jid);
    CHECK(sclient_mechanism(f->c) != NULL);
    f->ready++;
    if (trace)
        fprintf(stderr, "-- ready\n");
    if (f->close_in_ready)
        sclient_close(f->c);
}

static void h_stanza(void *ud, xml_tree_t *t)
{
    fz_t *f = ud;
    CHECK(!f->closed);
    CHECK(f->ready == 1);
    CHECK(sclient_state(f->c) == SCLIENT_READY);
    f->stanzas++;
    if (f->echo)
        CHECK(sclient_send(f->c, t->root));
    xml_tree_free(t);
    if (f->close_after_three && f->stanzas == 3)
        sclient_close(f->c);
}

static void h_failed(void *ud, int err, const char *cond, const char *text,
                     const char *desc)
{
    fz_t *f = ud;
    (void)cond;
    (void)text;
    CHECK(!f->closed);
    CHECK(f->failed == 0);
    CHECK(err < 0 && err >= SCLIENT_ERR_CLOSED);
    CHECK(desc != NULL && desc[0] != '\0');
    f->failed++;
    if (trace)
        fprintf(stderr, "-- failed %d %s: %s\n", err, cond ? cond : "-", desc);
    if (f->abort_in_failed)
        sclient_abort(f->c);
}

static const sclient_hooks_t HOOKS = {
    .send = h_send,
    .start_tls = h_start_tls,
    .close = h_close,
    .ready = h_ready,
    .stanza = h_stanza,
    .failed = h_failed,
};

/* ---------------------------------------------------------- driver */

static uint32_t rnd(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 16;
}

static void check_state(const fz_t *f)
{
    sclient_state_t st = sclient_state(f->c);
    CHECK((st == SCLIENT_CLOSED) == f->closed);
    if (f->close_tag_sent)
        CHECK(st == SCLIENT_CLOSING || st == SCLIENT_CLOSED);
    if (st == SCLIENT_READY)
        CHECK(f->ready == 1 && sclient_jid(f->c) != NULL);
}

static void feed_write(fz_t *f, const char *w, size_t len, unsigned mode,
                       uint32_t *seed)
{
    size_t off = 0;
    while (off < len) {
        size_t left = len - off, n;
        switch (mode) {
        case 0:
            n = left;
            break;
        case 1:
            n = 1;
            break;
        case 2:
            n = 1 + rnd(seed) % 8;
            break;
        default:
            n = off == 0 ? (len + 1) / 2 : left;
            break;
        }
        if (n > left)
            n = left;
        if (trace)
            fprintf(stderr, "S: %.*s\n", (int)n, w + off);
        sclient_feed(f->c, w + off, n);
        off += n;
        check_state(f);
        if (f->tls_pending && !f->closed)
            tls_finish(f);
        check_state(f);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const unsigned b0 = data[0], b1 = data[1];
    fz_t f;
    memset(&f, 0, sizeof(f));
    f.tls_fail = (b0 & 0x40) != 0;
    f.tls_async = (b0 & 0x80) != 0;
    f.exporter = (b0 & 0x10) != 0;
    f.unique = (b0 & 0x20) != 0;
    f.close_in_ready = (b1 & 0x01) != 0;
    f.abort_in_failed = (b1 & 0x02) != 0;
    f.echo = (b1 & 0x04) != 0;
    f.close_after_three = (b1 & 0x08) != 0;
    bool direct = (b1 & 0x10) != 0;
    bool no_password = (b1 & 0x40) != 0;
    f.cert = no_password;

    sclient_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.jid = (b0 & 0x08) ? "juliet@localhost/balcony" : "juliet@localhost";
    cfg.password = no_password ? NULL : "r0m30";
    cfg.direct_tls = direct;
    cfg.allow_plaintext = (b0 & 0x04) != 0;
    cfg.allow_plain = (b1 & 0x20) == 0;
    xml_limits_default(&cfg.limits);
    cfg.limits.max_element_size = 16 * 1024;

    xml_parser_opts_t co;
    memset(&co, 0, sizeof(co));
    co.content_ns = XML_NS_CLIENT;
    xml_limits_default(&co.limits);
    f.chk = xml_parser_new(&co, &CHK_CBS, &f);
    CHECK(f.chk != NULL);

    f.c = sclient_new(&cfg, &HOOKS, &f);
    CHECK(f.c != NULL);
    CHECK(sclient_state(f.c) == SCLIENT_CONNECTING);
    if (direct) {
        /* Port 5223: the handshake is over before the first byte. */
        f.tls_started = true;
        tls_finish(&f);
    }
    sclient_start(f.c);
    check_state(&f);

    uint32_t seed = (uint32_t)size * 2654435761u;
    const uint8_t *p = data + 2, *end = data + size;
    while (p <= end) {
        const uint8_t *sep = memchr(p, 0xff, (size_t)(end - p));
        const uint8_t *wend = sep != NULL ? sep : end;
        if (wend > p)
            feed_write(&f, (const char *)p, (size_t)(wend - p), b0 & 3, &seed);
        if (sep == NULL)
            break;
        p = sep + 1;
    }

    /* The transport goes away. */
    sclient_abort(f.c);
    CHECK(f.closed);
    CHECK(sclient_state(f.c) == SCLIENT_CLOSED);
    /* A late handshake answer must be harmless. */
    if (f.tls_pending)
        tls_finish(&f);
    sclient_abort(f.c);
    sclient_free(f.c);
    xml_parser_free(f.chk);
    return 0;
}
