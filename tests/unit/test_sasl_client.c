/* Unit tests for lib/sasl/sasl_client: our client against our server in
 * memory for every mechanism, against GNU SASL's server (code we did not
 * write), the checks a client makes on the server's messages (nonce,
 * XEP-0474 hash, server signature), and the mechanism choice. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsasl.h>

#include "base/base64.h"
#include "base/buf.h"
#include "sasl/sasl.h"
#include "sasl/sasl_client.h"
#include "sasl/sasl_internal.h"
#include "sasl/scram.h"

#define DOMAIN     "example.org"
#define USER       "juliet"
#define PASSWORD   "pencil"
#define ITERATIONS 4096

#define BIT(m)    (1u << (m))
#define ALL_MECHS ((1u << SASL_MECH_COUNT) - 1)
#define PLUS_BITS                                                              \
    (BIT(SASL_MECH_SCRAM_SHA1_PLUS) | BIT(SASL_MECH_SCRAM_SHA256_PLUS))

static const unsigned char exporter[32] = "exporter-binding-data-0123456789";
static const unsigned char unique[12] = "tls-unique!!";
static const unsigned char secret[32] = "server secret for fake salts!!!";

static const char *const all_names[] = {
    "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-1",        "PLAIN",         "EXTERNAL",
    "DIGEST-MD5",
};
static const char *const both_cb[] = {"tls-exporter", "tls-unique"};

/* The account, made once (PBKDF2 is slow under the sanitizers). */
typedef struct account {
    scram_cred_t sha1;
    scram_cred_t sha256;
    unsigned char md5[16];
} account_t;

static int group_setup(void **state)
{
    account_t *a = calloc(1, sizeof(*a));
    assert_non_null(a);
    assert_int_equal(scram_make(SCRAM_SHA1, PASSWORD, ITERATIONS, &a->sha1), 0);
    assert_int_equal(scram_make(SCRAM_SHA256, PASSWORD, ITERATIONS, &a->sha256),
                     0);
    assert_int_equal(scram_digest_md5_hash(USER, DOMAIN, PASSWORD, a->md5), 0);
    *state = a;
    return 0;
}

static int group_teardown(void **state)
{
    free(*state);
    return 0;
}

/* A TLS stream on which the server offers everything, both bindings. */
static sasl_server_params_t server_params(void)
{
    static const char *const certs[] = {"juliet@example.org"};
    sasl_server_params_t p = {
        .domain = DOMAIN,
        .advertised_mechs = ALL_MECHS,
        .advertised_cb = SASL_CB_TLS_EXPORTER | SASL_CB_TLS_UNIQUE,
        .cb_exporter = exporter,
        .cb_exporter_len = sizeof(exporter),
        .cb_unique = unique,
        .cb_unique_len = sizeof(unique),
        .tls = true,
        .cert_names = certs,
        .cert_name_count = 1,
        .server_secret = secret,
        .server_secret_len = sizeof(secret),
        .scram_iterations = ITERATIONS,
    };
    return p;
}

/* What the client sees on that stream. */
static sasl_client_params_t client_params(void)
{
    sasl_client_params_t p = {
        .authcid = USER,
        .password = PASSWORD,
        .domain = DOMAIN,
        .tls = true,
        .cb_exporter = exporter,
        .cb_exporter_len = sizeof(exporter),
        .cb_unique = unique,
        .cb_unique_len = sizeof(unique),
        .server_mechs = all_names,
        .server_mech_count = 7,
        .server_cb = both_cb,
        .server_cb_count = 2,
        .allow_plain = true,
        .allow_digest_md5 = true,
    };
    return p;
}

/* The names of the mechanisms in `bits`, as the client's list. */
typedef struct mech_list {
    const char *names[SASL_MECH_COUNT];
    size_t n;
} mech_list_t;

static void mechs_of(unsigned bits, mech_list_t *l, sasl_client_params_t *cp)
{
    l->n = 0;
    for (size_t i = 0; i < 7; i++)
        if (bits & BIT(sasl_mech_from_name(all_names[i])))
            l->names[l->n++] = all_names[i];
    cp->server_mechs = l->names;
    cp->server_mech_count = l->n;
}

/* The server offers `bits`, and the client sees just that. */
static void advertise(unsigned bits, sasl_server_params_t *sp,
                      sasl_client_params_t *cp, mech_list_t *l)
{
    sp->advertised_mechs = bits;
    mechs_of(bits, l, cp);
}

/* ------------------------------------------------- client against server */

/* Changes a server message on the way to the client (the man in the
 * middle); `final` is true for the data of <success/>. */
typedef void tamper_fn(buf_t *msg, bool final);

typedef struct run {
    int server_rc;    /* the server's last answer (or 1000: not reached) */
    int client_rc;    /* the client's last answer */
    sasl_mech_t mech; /* what the client chose */
    char first[1024]; /* the client's initial response */
    bool has_data;
    int rounds; /* challenges the client answered */
} run_t;

static void run_exchange(const account_t *a, const sasl_client_params_t *cp,
                         const sasl_server_params_t *sp, tamper_fn *tamper,
                         run_t *r)
{
    const char *why = NULL;
    buf_t c2s = BUF_INIT, s2c = BUF_INIT;

    r->server_rc = r->client_rc = 1000;
    r->rounds = 0;
    sasl_client_t *c = sasl_client_choose(cp, &why);
    if (c == NULL)
        fail_msg("no mechanism: %s", why != NULL ? why : "(null)");
    r->mech = sasl_client_mech(c);
    r->client_rc = sasl_client_start(c, &c2s, &r->has_data);
    assert_int_equal(r->client_rc, 0);
    snprintf(r->first, sizeof(r->first), "%.*s", (int)c2s.len,
             c2s.data != NULL ? c2s.data : "");

    sasl_server_t *s = sasl_server_new(r->mech, sp);
    assert_non_null(s);
    for (int guard = 0; guard < 10; guard++) {
        buf_reset(&s2c);
        int rc = sasl_server_step(s, (unsigned char *)c2s.data, c2s.len, &s2c);
        while (rc == SASL_NEED_CREDENTIALS || rc == SASL_NEED_PASSWORD_CHECK) {
            if (rc == SASL_NEED_CREDENTIALS) {
                if (strcmp(sasl_server_authcid(s), USER) == 0) {
                    sasl_server_set_credentials(s, &a->sha1, &a->sha256);
                    sasl_server_set_digest_md5(s, a->md5);
                } else {
                    sasl_server_set_unknown_user(s);
                }
            } else {
                sasl_server_password_checked(s, sasl_server_check_password(s));
            }
            rc = sasl_server_step(s, NULL, 0, &s2c);
        }
        r->server_rc = rc;
        buf_reset(&c2s);
        if (rc < 0)
            break;
        if (tamper != NULL)
            tamper(&s2c, rc == SASL_SUCCESS);
        if (rc == SASL_SUCCESS) {
            r->client_rc =
                sasl_client_finish(c, (unsigned char *)s2c.data, s2c.len);
            if (r->client_rc == SASL_SUCCESS)
                assert_string_equal(sasl_server_username(s), USER);
            break;
        }
        assert_int_equal(rc, SASL_CHALLENGE);
        r->client_rc =
            sasl_client_step(c, (unsigned char *)s2c.data, s2c.len, &c2s);
        r->rounds++;
        if (r->client_rc < 0)
            break;
        assert_int_equal(r->client_rc, SASL_CHALLENGE);
    }
    sasl_server_free(s);
    sasl_client_free(c);
    buf_free(&c2s);
    buf_free(&s2c);
}

static void expect_ok(const account_t *a, const sasl_client_params_t *cp,
                      const sasl_server_params_t *sp, sasl_mech_t mech,
                      const char *prefix)
{
    run_t r;
    run_exchange(a, cp, sp, NULL, &r);
    assert_int_equal(r.mech, mech);
    assert_int_equal(r.server_rc, SASL_SUCCESS);
    assert_int_equal(r.client_rc, SASL_SUCCESS);
    if (prefix != NULL && strncmp(r.first, prefix, strlen(prefix)) != 0)
        fail_msg("%s: initial response %s, expected to start %s",
                 sasl_mech_name(mech), r.first, prefix);
}

static void test_scram_plus(void **state)
{
    sasl_client_params_t cp = client_params();
    sasl_server_params_t sp = server_params();
    expect_ok(*state, &cp, &sp, SASL_MECH_SCRAM_SHA256_PLUS,
              "p=tls-exporter,,n=juliet,r=");

    /* The server lists only tls-unique: the client follows it. */
    static const char *const uni_only[] = {"tls-unique"};
    cp.server_cb = uni_only;
    cp.server_cb_count = 1;
    sp.advertised_cb = SASL_CB_TLS_UNIQUE;
    expect_ok(*state, &cp, &sp, SASL_MECH_SCRAM_SHA256_PLUS,
              "p=tls-unique,,n=juliet,r=");

    /* No XEP-0440 at all: RFC 9266's default, tls-unique on TLS 1.2 (the
     * connection has tls-unique data) and tls-exporter on TLS 1.3 (it has
     * only exporter data). */
    cp.server_cb = NULL;
    cp.server_cb_count = 0;
    sp.advertised_cb = 0;
    expect_ok(*state, &cp, &sp, SASL_MECH_SCRAM_SHA256_PLUS, "p=tls-unique,,");
    const unsigned char *uni = cp.cb_unique;
    size_t uni_len = cp.cb_unique_len;
    cp.cb_unique = NULL;
    cp.cb_unique_len = 0;
    expect_ok(*state, &cp, &sp, SASL_MECH_SCRAM_SHA256_PLUS,
              "p=tls-exporter,,");
    cp.cb_unique = uni;
    cp.cb_unique_len = uni_len;
    cp.cb_exporter = NULL;
    cp.cb_exporter_len = 0;
    expect_ok(*state, &cp, &sp, SASL_MECH_SCRAM_SHA256_PLUS, "p=tls-unique,,");

    /* SHA-1 when that is the only -PLUS offered, with either binding. */
    cp = client_params();
    sp = server_params();
    mech_list_t l;
    advertise(ALL_MECHS & ~BIT(SASL_MECH_SCRAM_SHA256_PLUS), &sp, &cp, &l);
    expect_ok(*state, &cp, &sp, SASL_MECH_SCRAM_SHA1_PLUS, "p=tls-exporter,,");
    cp.cb_exporter = NULL;
    cp.cb_exporter_len = 0;
    expect_ok(*state, &cp, &sp, SASL_MECH_SCRAM_SHA1_PLUS, "p=tls-unique,,");
}

static void test_scram_no_plus(void **state)
{
    sasl_client_params_t cp = client_params();
    sasl_server_params_t sp = server_params();
    mech_list_t l;

    /* No binding data on our side: "n", even though the server could. */
    cp.cb_exporter = cp.cb_unique = NULL;
    cp.cb_exporter_len = cp.cb_unique_len = 0;
    expect_ok(*state, &cp, &sp, SASL_MECH_SCRAM_SHA256, "n,,n=juliet,r=");

    /* We could bind, the server offers no -PLUS: "y" (RFC 5802 §6), which
     * our server accepts because it did not offer -PLUS. */
    cp = client_params();
    advertise(ALL_MECHS & ~PLUS_BITS, &sp, &cp, &l);
    expect_ok(*state, &cp, &sp, SASL_MECH_SCRAM_SHA256, "y,,n=juliet,r=");

    /* SCRAM-SHA-1 alone. */
    advertise(BIT(SASL_MECH_SCRAM_SHA1) | BIT(SASL_MECH_PLAIN), &sp, &cp, &l);
    expect_ok(*state, &cp, &sp, SASL_MECH_SCRAM_SHA1, "y,,");

    /* Without TLS (no binding, no PLAIN) and without XEP-0440. */
    sp = server_params();
    sp.tls = false;
    sp.advertised_cb = 0;
    sp.cb_exporter = sp.cb_unique = NULL;
    cp = client_params();
    cp.tls = false;
    advertise(BIT(SASL_MECH_SCRAM_SHA1) | BIT(SASL_MECH_SCRAM_SHA256) |
                  BIT(SASL_MECH_PLAIN),
              &sp, &cp, &l);
    cp.server_cb = NULL;
    cp.server_cb_count = 0;
    expect_ok(*state, &cp, &sp, SASL_MECH_SCRAM_SHA256, "n,,");
}

static void test_scram_authzid_and_escaping(void **state)
{
    sasl_client_params_t cp = client_params();
    sasl_server_params_t sp = server_params();
    cp.authzid = "juliet@example.org";
    expect_ok(*state, &cp, &sp, SASL_MECH_SCRAM_SHA256_PLUS,
              "p=tls-exporter,a=juliet@example.org,n=juliet,r=");

    /* ',' and '=' in the name are escaped; the server decodes them and
     * finds no such account (nodeprep allows both characters). */
    cp = client_params();
    cp.authcid = "a,b=c";
    run_t r;
    run_exchange(*state, &cp, &sp, NULL, &r);
    assert_non_null(strstr(r.first, ",n=a=2Cb=3Dc,r="));
    assert_int_equal(r.server_rc, SASL_F_NOT_AUTHORIZED);
}

static void test_scram_wrong_password(void **state)
{
    sasl_client_params_t cp = client_params();
    sasl_server_params_t sp = server_params();
    run_t r;
    cp.password = "pencil!";
    run_exchange(*state, &cp, &sp, NULL, &r);
    assert_int_equal(r.rounds, 1);
    assert_int_equal(r.server_rc, SASL_F_NOT_AUTHORIZED);

    cp.cb_exporter = cp.cb_unique = NULL;
    run_exchange(*state, &cp, &sp, NULL, &r);
    assert_int_equal(r.mech, SASL_MECH_SCRAM_SHA256);
    assert_int_equal(r.server_rc, SASL_F_NOT_AUTHORIZED);

    /* Unknown account: the same place, the same answer. */
    cp = client_params();
    cp.authcid = "romeo";
    run_exchange(*state, &cp, &sp, NULL, &r);
    assert_int_equal(r.rounds, 1);
    assert_int_equal(r.server_rc, SASL_F_NOT_AUTHORIZED);
}

/* The server-final message with one character of v= changed. */
static void tamper_v(buf_t *msg, bool final)
{
    if (!final)
        return;
    assert_true(msg->len > 4);
    assert_memory_equal(msg->data, "v=", 2);
    msg->data[2] = msg->data[2] == 'A' ? 'B' : 'A';
}

static void tamper_e(buf_t *msg, bool final)
{
    if (!final)
        return;
    buf_reset(msg);
    assert_int_equal(buf_append_str(msg, "e=invalid-proof"), 0);
}

static void tamper_empty(buf_t *msg, bool final)
{
    if (final)
        buf_reset(msg);
}

static void test_scram_server_final_checked(void **state)
{
    sasl_client_params_t cp = client_params();
    sasl_server_params_t sp = server_params();
    run_t r;

    run_exchange(*state, &cp, &sp, tamper_v, &r);
    assert_int_equal(r.server_rc, SASL_SUCCESS);
    assert_int_equal(r.client_rc, SASL_F_NOT_AUTHORIZED);
    run_exchange(*state, &cp, &sp, tamper_e, &r);
    assert_int_equal(r.client_rc, SASL_F_NOT_AUTHORIZED);
    /* A server that does not prove anything. */
    run_exchange(*state, &cp, &sp, tamper_empty, &r);
    assert_int_equal(r.client_rc, SASL_F_NOT_AUTHORIZED);

    cp.cb_exporter = cp.cb_unique = NULL;
    run_exchange(*state, &cp, &sp, tamper_v, &r);
    assert_int_equal(r.mech, SASL_MECH_SCRAM_SHA256);
    assert_int_equal(r.client_rc, SASL_F_NOT_AUTHORIZED);
}

/* The server-final as a challenge and an empty success, as some servers
 * send it; and the client's messages out of order. */
static void test_scram_final_as_challenge(void **state)
{
    const account_t *a = *state;
    sasl_client_params_t cp = client_params();
    sasl_server_params_t sp = server_params();
    buf_t c2s = BUF_INIT, s2c = BUF_INIT;
    bool has;

    for (int bad = 0; bad < 2; bad++) {
        sasl_client_t *c = sasl_client_choose(&cp, NULL);
        sasl_server_t *s = sasl_server_new(sasl_client_mech(c), &sp);
        assert_int_equal(sasl_client_start(c, &c2s, &has), 0);
        assert_int_equal(
            sasl_server_step(s, (unsigned char *)c2s.data, c2s.len, &s2c),
            SASL_NEED_CREDENTIALS);
        sasl_server_set_credentials(s, &a->sha1, &a->sha256);
        assert_int_equal(sasl_server_step(s, NULL, 0, &s2c), SASL_CHALLENGE);
        buf_reset(&c2s);
        assert_int_equal(
            sasl_client_step(c, (unsigned char *)s2c.data, s2c.len, &c2s),
            SASL_CHALLENGE);
        buf_reset(&s2c);
        assert_int_equal(
            sasl_server_step(s, (unsigned char *)c2s.data, c2s.len, &s2c),
            SASL_SUCCESS);
        buf_reset(&c2s);
        assert_int_equal(
            sasl_client_step(c, (unsigned char *)s2c.data, s2c.len, &c2s),
            SASL_CHALLENGE);
        assert_int_equal(c2s.len, 0);
        if (bad)
            assert_int_equal(
                sasl_client_finish(c, (unsigned char *)s2c.data, s2c.len),
                SASL_F_NOT_AUTHORIZED);
        else
            assert_int_equal(sasl_client_finish(c, NULL, 0), SASL_SUCCESS);
        /* Nothing after the end. */
        assert_int_equal(sasl_client_step(c, NULL, 0, &c2s),
                         SASL_F_MALFORMED_REQUEST);
        assert_int_equal(sasl_client_finish(c, NULL, 0), SASL_F_NOT_AUTHORIZED);
        sasl_server_free(s);
        sasl_client_free(c);
        buf_reset(&c2s);
        buf_reset(&s2c);
    }
    buf_free(&c2s);
    buf_free(&s2c);

    /* A success before the server-first proves nothing; starting twice is
     * out of order. */
    sasl_client_t *c = sasl_client_choose(&cp, NULL);
    assert_int_equal(sasl_client_start(c, &c2s, &has), 0);
    sasl_client_t *twice = sasl_client_choose(&cp, NULL);
    assert_int_equal(sasl_client_start(twice, &c2s, &has), 0);
    assert_int_equal(sasl_client_start(twice, &c2s, &has),
                     SASL_F_MALFORMED_REQUEST);
    sasl_client_free(twice);
    assert_int_equal(sasl_client_finish(c, NULL, 0), SASL_F_NOT_AUTHORIZED);
    sasl_client_free(c);
    buf_free(&c2s);
}

/* XEP-0474: the client saw a list without -PLUS (stripped by someone in
 * the middle) while the server hashed its real one. The client has no
 * binding data, so it says "n" and the server cannot notice: only h can. */
static void test_downgrade_detected(void **state)
{
    sasl_client_params_t cp = client_params();
    sasl_server_params_t sp = server_params();
    mech_list_t l;
    run_t r;

    cp.cb_exporter = cp.cb_unique = NULL;
    cp.cb_exporter_len = cp.cb_unique_len = 0;
    mechs_of(ALL_MECHS & ~PLUS_BITS, &l, &cp); /* the server's list stays */
    run_exchange(*state, &cp, &sp, NULL, &r);
    assert_int_equal(r.mech, SASL_MECH_SCRAM_SHA256);
    assert_int_equal(r.rounds, 1);
    assert_int_equal(r.server_rc, SASL_CHALLENGE);
    assert_int_equal(r.client_rc, SASL_F_NOT_AUTHORIZED);

    /* The XEP-0440 list removed. */
    cp = client_params();
    cp.cb_exporter = cp.cb_unique = NULL;
    cp.server_cb = NULL;
    cp.server_cb_count = 0;
    run_exchange(*state, &cp, &sp, NULL, &r);
    assert_int_equal(r.client_rc, SASL_F_NOT_AUTHORIZED);

    /* One binding type removed from it. */
    static const char *const exp_only[] = {"tls-exporter"};
    cp.server_cb = exp_only;
    cp.server_cb_count = 1;
    run_exchange(*state, &cp, &sp, NULL, &r);
    assert_int_equal(r.client_rc, SASL_F_NOT_AUTHORIZED);

    /* The same list in another order is the same list. */
    static const char *const reordered[] = {
        "DIGEST-MD5",        "EXTERNAL",         "PLAIN",
        "SCRAM-SHA-1",       "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256",
        "SCRAM-SHA-256-PLUS"};
    static const char *const cb_reordered[] = {"tls-unique", "tls-exporter"};
    cp = client_params();
    cp.server_mechs = reordered;
    cp.server_cb = cb_reordered;
    expect_ok(*state, &cp, &sp, SASL_MECH_SCRAM_SHA256_PLUS, NULL);
}

/* Hand-made server-first messages against a started SCRAM client. */
static int server_first(const char *fmt, scram_hash_t hash, const char *h_over)
{
    sasl_client_params_t cp = client_params();
    static const char *const one256[] = {"SCRAM-SHA-256"};
    static const char *const one1[] = {"SCRAM-SHA-1"};
    cp.server_mechs = hash == SCRAM_SHA1 ? one1 : one256;
    cp.server_mech_count = 1;
    cp.server_cb = NULL;
    cp.server_cb_count = 0;
    cp.cb_exporter = cp.cb_unique = NULL; /* gs2-header "n,," */
    buf_t out = BUF_INIT;
    bool has;
    sasl_client_t *c = sasl_client_choose(&cp, NULL);
    assert_non_null(c);
    assert_int_equal(sasl_client_start(c, &out, &has), 0);
    const char *r = strstr(out.data, ",r=");
    assert_non_null(r);
    char nonce[64];
    snprintf(nonce, sizeof(nonce), "%s", r + 3);

    char h[64] = "";
    if (h_over != NULL) {
        const char *names[] = {h_over};
        assert_true(sasl_downgrade_hash(hash, names, 1, NULL, 0, h, sizeof(h)) >
                    0);
    }
    /* {N} in fmt stands for the client nonce, {H} for the h value. */
    buf_t msg = BUF_INIT;
    for (const char *p = fmt; *p != '\0';) {
        if (strncmp(p, "{N}", 3) == 0 || strncmp(p, "{H}", 3) == 0) {
            assert_int_equal(buf_append_str(&msg, p[1] == 'N' ? nonce : h), 0);
            p += 3;
        } else {
            assert_int_equal(buf_append(&msg, p++, 1), 0);
        }
    }
    buf_reset(&out);
    int rc = sasl_client_step(c, (unsigned char *)msg.data, msg.len, &out);
    buf_free(&msg);
    if (rc == SASL_CHALLENGE) {
        assert_true(strncmp(out.data, "c=biws,r=", 9) == 0);
        assert_non_null(strstr(out.data, ",p="));
    } else {
        assert_int_equal(out.len, 0);
    }
    sasl_client_free(c);
    buf_free(&out);
    return rc;
}

static void test_server_first_checks(void **state)
{
    (void)state;
    const scram_hash_t S1 = SCRAM_SHA1, S256 = SCRAM_SHA256;
#define OK256(fmt)                                                             \
    assert_int_equal(server_first(fmt, S256, NULL), SASL_CHALLENGE)
    OK256("r={N}xyz,s=QSXCR+Q6sek8bf92,i=4096{H}");
    OK256("r={N}xyz,s=QSXCR+Q6sek8bf92,i=1{H}");
    OK256("r={N}xyz,s=QSXCR+Q6sek8bf92,i=4096,x=ext{H}");
    assert_int_equal(server_first("r={N}xyz,s=QSXCR+Q6sek8bf92,i=4096,h={H}",
                                  S256, "SCRAM-SHA-256"),
                     SASL_CHALLENGE);
    assert_int_equal(server_first("r={N}xyz,s=QSXCR+Q6sek8bf92,i=4096,h={H}",
                                  S1, "SCRAM-SHA-1"),
                     SASL_CHALLENGE);
    /* h over another list, or with the other hash. */
    assert_int_equal(server_first("r={N}xyz,s=QSXCR+Q6sek8bf92,i=4096,h={H}",
                                  S256, "SCRAM-SHA-256-PLUS"),
                     SASL_F_NOT_AUTHORIZED);
    assert_int_equal(server_first("r={N}xyz,s=QSXCR+Q6sek8bf92,i=4096,h={H}",
                                  S256, "SCRAM-SHA-1"),
                     SASL_F_NOT_AUTHORIZED);
    assert_int_equal(
        server_first("r={N}xyz,s=QSXCR+Q6sek8bf92,i=4096,h=x{H}", S256, NULL),
        SASL_F_NOT_AUTHORIZED);

    static const struct {
        const char *fmt;
        int rc;
    } bad[] = {
        /* The nonce must extend ours. */
        {"r={N},s=QSXCR+Q6sek8bf92,i=4096{H}", SASL_F_NOT_AUTHORIZED},
        {"r=x{N},s=QSXCR+Q6sek8bf92,i=4096{H}", SASL_F_NOT_AUTHORIZED},
        {"r=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA,s=QSXC,i=4096{H}",
         SASL_F_NOT_AUTHORIZED},
        /* Iterations. */
        {"r={N}x,s=QSXCR+Q6sek8bf92,i=0{H}", SASL_F_NOT_AUTHORIZED},
        {"r={N}x,s=QSXCR+Q6sek8bf92,i=04096{H}", SASL_F_NOT_AUTHORIZED},
        {"r={N}x,s=QSXCR+Q6sek8bf92,i=10000001{H}", SASL_F_NOT_AUTHORIZED},
        {"r={N}x,s=QSXCR+Q6sek8bf92,i=99999999999999999999{H}",
         SASL_F_NOT_AUTHORIZED},
        {"r={N}x,s=QSXCR+Q6sek8bf92,i=-1{H}", SASL_F_NOT_AUTHORIZED},
        {"r={N}x,s=QSXCR+Q6sek8bf92,i={H}", SASL_F_NOT_AUTHORIZED},
        /* A mandatory extension. */
        {"m=foo,r={N}x,s=QSXCR+Q6sek8bf92,i=4096{H}", SASL_F_NOT_AUTHORIZED},
        /* Syntax. */
        {"r={N}x,i=4096,s=QSXCR+Q6sek8bf92{H}", SASL_F_MALFORMED_REQUEST},
        {"r={N}x,s=,i=4096{H}", SASL_F_MALFORMED_REQUEST},
        {"r={N}x,s=!!!!,i=4096{H}", SASL_F_MALFORMED_REQUEST},
        {"r={N}x,s=QSXCR+Q6sek8bf92{H}", SASL_F_MALFORMED_REQUEST},
        {"r={N}x,s=QSXCR+Q6sek8bf92,i=4096,{H}", SASL_F_MALFORMED_REQUEST},
        {"r={N}x,s=QSXCR+Q6sek8bf92,i=4096,1=x{H}", SASL_F_MALFORMED_REQUEST},
        {"r={N} x,s=QSXCR+Q6sek8bf92,i=4096{H}", SASL_F_MALFORMED_REQUEST},
        {"e=other-error{H}", SASL_F_MALFORMED_REQUEST},
        {"{H}", SASL_F_MALFORMED_REQUEST},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = server_first(bad[i].fmt, S256, NULL);
        if (rc != bad[i].rc)
            fail_msg("{N}: %d, expected %d", bad[i].fmt, rc, bad[i].rc);
    }
#undef OK256

    /* Over 8 KiB, and a NUL inside. */
    sasl_client_params_t cp = client_params();
    buf_t out = BUF_INIT;
    bool has;
    sasl_client_t *c = sasl_client_choose(&cp, NULL);
    assert_int_equal(sasl_client_start(c, &out, &has), 0);
    unsigned char *big = calloc(1, SASL_MSG_MAX + 1);
    assert_non_null(big);
    memset(big, 'a', SASL_MSG_MAX + 1);
    assert_int_equal(sasl_client_step(c, big, SASL_MSG_MAX + 1, &out),
                     SASL_F_MALFORMED_REQUEST);
    assert_int_equal(sasl_client_finish(c, big, SASL_MSG_MAX + 1),
                     SASL_F_MALFORMED_REQUEST);
    free(big);
    sasl_client_free(c);
    c = sasl_client_choose(&cp, NULL);
    buf_reset(&out);
    assert_int_equal(sasl_client_start(c, &out, &has), 0);
    assert_int_equal(
        sasl_client_step(c, (const unsigned char *)"r=\0x", 4, &out),
        SASL_F_MALFORMED_REQUEST);
    sasl_client_free(c);
    buf_free(&out);
}

/* ------------------------------------------------------ PLAIN, EXTERNAL */

static void test_plain(void **state)
{
    sasl_client_params_t cp = client_params();
    sasl_server_params_t sp = server_params();
    mech_list_t l;
    run_t r;

    advertise(BIT(SASL_MECH_PLAIN) | BIT(SASL_MECH_DIGEST_MD5), &sp, &cp, &l);
    run_exchange(*state, &cp, &sp, NULL, &r);
    assert_int_equal(r.mech, SASL_MECH_PLAIN);
    assert_int_equal(r.client_rc, SASL_SUCCESS);
    assert_true(r.has_data);
    assert_memory_equal(r.first, "", 1); /* no authzid: starts with NUL */

    cp.authzid = "juliet@example.org";
    expect_ok(*state, &cp, &sp, SASL_MECH_PLAIN, "juliet@example.org");

    cp.authzid = NULL;
    cp.password = "wrong";
    run_exchange(*state, &cp, &sp, NULL, &r);
    assert_int_equal(r.mech, SASL_MECH_PLAIN);
    assert_int_equal(r.server_rc, SASL_F_NOT_AUTHORIZED);

    /* The exact bytes: [authzid] NUL authcid NUL password. */
    cp = client_params();
    cp.server_mechs = l.names;
    cp.server_mech_count = l.n;
    cp.authzid = "a@b";
    sasl_client_t *c = sasl_client_choose(&cp, NULL);
    buf_t out = BUF_INIT;
    bool has = false;
    assert_int_equal(sasl_client_start(c, &out, &has), 0);
    assert_int_equal(out.len, 3 + 1 + 6 + 1 + 6);
    assert_memory_equal(out.data, "a@b\0juliet\0pencil", out.len);
    /* PLAIN has no challenges. */
    assert_int_equal(sasl_client_step(c, NULL, 0, &out),
                     SASL_F_MALFORMED_REQUEST);
    sasl_client_free(c);
    buf_free(&out);
}

static void test_external(void **state)
{
    sasl_client_params_t cp = client_params();
    sasl_server_params_t sp = server_params();
    run_t r;

    /* A certificate and no password: EXTERNAL, whatever else is there. */
    cp.have_client_cert = true;
    cp.password = NULL;
    run_exchange(*state, &cp, &sp, NULL, &r);
    assert_int_equal(r.mech, SASL_MECH_EXTERNAL);
    assert_true(r.has_data);
    assert_string_equal(r.first, ""); /* "=" on the wire */
    assert_int_equal(r.server_rc, SASL_SUCCESS);
    assert_int_equal(r.client_rc, SASL_SUCCESS);

    cp.authzid = "juliet@example.org";
    expect_ok(*state, &cp, &sp, SASL_MECH_EXTERNAL, "juliet@example.org");

    /* The certificate names another account. */
    static const char *const romeo[] = {"romeo@example.org"};
    sp.cert_names = romeo;
    cp.authzid = NULL;
    run_exchange(*state, &cp, &sp, NULL, &r);
    assert_int_equal(r.server_rc, SASL_F_NOT_AUTHORIZED);

    /* With a password too, SCRAM comes first. */
    cp = client_params();
    cp.have_client_cert = true;
    sp = server_params();
    expect_ok(*state, &cp, &sp, SASL_MECH_SCRAM_SHA256_PLUS, NULL);
}

/* ----------------------------------------------------------- DIGEST-MD5 */

static void test_digest_md5(void **state)
{
    sasl_client_params_t cp = client_params();
    sasl_server_params_t sp = server_params();
    mech_list_t l;
    run_t r;

    advertise(BIT(SASL_MECH_DIGEST_MD5), &sp, &cp, &l);
    run_exchange(*state, &cp, &sp, NULL, &r);
    assert_int_equal(r.mech, SASL_MECH_DIGEST_MD5);
    assert_false(r.has_data);
    assert_int_equal(r.rounds, 2); /* digest-challenge, rspauth */
    assert_int_equal(r.server_rc, SASL_SUCCESS);
    assert_int_equal(r.client_rc, SASL_SUCCESS);

    cp.authzid = "juliet@example.org";
    run_exchange(*state, &cp, &sp, NULL, &r);
    assert_int_equal(r.client_rc, SASL_SUCCESS);

    cp.authzid = NULL;
    cp.password = "wrong";
    run_exchange(*state, &cp, &sp, NULL, &r);
    assert_int_equal(r.rounds, 1);
    assert_int_equal(r.server_rc, SASL_F_NOT_AUTHORIZED);

    /* Without TLS too (it is the only thing that works there besides
     * SCRAM). */
    cp = client_params();
    cp.server_mechs = l.names;
    cp.server_mech_count = l.n;
    cp.tls = false;
    sp.tls = false;
    expect_ok(*state, &cp, &sp, SASL_MECH_DIGEST_MD5, NULL);

    /* A success without rspauth proves nothing; a forged rspauth fails. */
    sasl_client_t *c = sasl_client_choose(&cp, NULL);
    sasl_server_t *s = sasl_server_new(SASL_MECH_DIGEST_MD5, &sp);
    buf_t c2s = BUF_INIT, s2c = BUF_INIT;
    bool has;
    assert_int_equal(sasl_client_start(c, &c2s, &has), 0);
    assert_int_equal(sasl_server_step(s, NULL, 0, &s2c), SASL_CHALLENGE);
    assert_int_equal(
        sasl_client_step(c, (unsigned char *)s2c.data, s2c.len, &c2s),
        SASL_CHALLENGE);
    assert_non_null(strstr(c2s.data, "digest-uri=\"xmpp/example.org\""));
    sasl_client_t *c2 = sasl_client_choose(&cp, NULL);
    buf_t c2out = BUF_INIT;
    assert_int_equal(sasl_client_start(c2, &c2out, &has), 0);
    assert_int_equal(
        sasl_client_step(c2, (unsigned char *)s2c.data, s2c.len, &c2out),
        SASL_CHALLENGE);
    assert_int_equal(sasl_client_finish(c2, NULL, 0), SASL_F_NOT_AUTHORIZED);
    sasl_client_free(c2);
    buf_free(&c2out);
    const char forged[] = "rspauth=00000000000000000000000000000000";
    assert_int_equal(
        sasl_client_finish(c, (const unsigned char *)forged, strlen(forged)),
        SASL_F_NOT_AUTHORIZED);
    sasl_client_free(c);
    sasl_server_free(s);
    buf_free(&c2s);
    buf_free(&s2c);
}

/* -------------------------------------------------- GNU SASL's server */

static int gsasl_cb(Gsasl *ctx, Gsasl_session *sctx, Gsasl_property prop)
{
    (void)ctx;
    if (prop == GSASL_PASSWORD) {
        const char *who = gsasl_property_fast(sctx, GSASL_AUTHID);
        if (who != NULL && strcmp(who, USER) == 0)
            return gsasl_property_set(sctx, GSASL_PASSWORD, PASSWORD);
    }
    return GSASL_NO_CALLBACK;
}

/* Our client against GNU SASL's server for `mech`. Returns GNU SASL's last
 * result; *client_rc gets ours. */
static int gsasl_run(const char *mech, const char *password, bool tamper,
                     int *client_rc)
{
    sasl_client_params_t cp = client_params();
    const char *names[] = {mech};
    cp.server_mechs = names;
    cp.server_mech_count = 1;
    cp.server_cb = NULL;
    cp.server_cb_count = 0;
    cp.cb_exporter = cp.cb_unique = NULL;
    cp.password = password;

    Gsasl *ctx;
    Gsasl_session *s;
    assert_int_equal(gsasl_init(&ctx), GSASL_OK);
    gsasl_callback_set(ctx, gsasl_cb);
    assert_int_equal(gsasl_server_start(ctx, mech, &s), GSASL_OK);

    sasl_client_t *c = sasl_client_choose(&cp, NULL);
    assert_non_null(c);
    assert_string_equal(sasl_mech_name(sasl_client_mech(c)), mech);
    buf_t out = BUF_INIT;
    bool has;
    *client_rc = sasl_client_start(c, &out, &has);
    assert_int_equal(*client_rc, 0);
    int grc;
    for (;;) {
        char *o = NULL;
        size_t olen = 0;
        grc =
            gsasl_step(s, out.data != NULL ? out.data : "", out.len, &o, &olen);
        buf_reset(&out);
        if (grc == GSASL_OK) {
            if (tamper && olen > 2)
                o[2] ^= 1;
            *client_rc = sasl_client_finish(c, (unsigned char *)o, olen);
        } else if (grc == GSASL_NEEDS_MORE) {
            *client_rc = sasl_client_step(c, (unsigned char *)o, olen, &out);
        }
        gsasl_free(o);
        if (grc != GSASL_NEEDS_MORE || *client_rc < 0)
            break;
    }
    buf_free(&out);
    sasl_client_free(c);
    gsasl_finish(s);
    gsasl_done(ctx);
    return grc;
}

static void test_gsasl_server(void **state)
{
    (void)state;
    int crc;
    assert_int_equal(gsasl_run("SCRAM-SHA-256", PASSWORD, false, &crc),
                     GSASL_OK);
    assert_int_equal(crc, SASL_SUCCESS);
    assert_int_equal(gsasl_run("SCRAM-SHA-1", PASSWORD, false, &crc), GSASL_OK);
    assert_int_equal(crc, SASL_SUCCESS);
    assert_int_equal(gsasl_run("PLAIN", PASSWORD, false, &crc), GSASL_OK);
    assert_int_equal(crc, SASL_SUCCESS);
    assert_int_equal(gsasl_run("DIGEST-MD5", PASSWORD, false, &crc), GSASL_OK);
    assert_int_equal(crc, SASL_SUCCESS);

    assert_int_equal(gsasl_run("SCRAM-SHA-256", "wrong", false, &crc),
                     GSASL_AUTHENTICATION_ERROR);
    assert_int_equal(gsasl_run("PLAIN", "wrong", false, &crc),
                     GSASL_AUTHENTICATION_ERROR);
    /* GNU SASL's server-final, one bit changed. */
    assert_int_equal(gsasl_run("SCRAM-SHA-256", PASSWORD, true, &crc),
                     GSASL_OK);
    assert_int_equal(crc, SASL_F_NOT_AUTHORIZED);
}

/* ------------------------------------------------------------- choice */

typedef struct choice {
    const char *mechs; /* space-separated, as advertised */
    const char *cbs;   /* XEP-0440 types; NULL: not sent */
    bool tls, exp, uni, cert, password, plain, digest;
    int want;        /* sasl_mech_t, or -1 */
    const char *gs2; /* SCRAM: expected start of the initial response */
    const char *why; /* -1: a substring of the reason */
} choice_t;

#define S256P "SCRAM-SHA-256-PLUS "
#define S1P   "SCRAM-SHA-1-PLUS "
#define S256  "SCRAM-SHA-256 "
#define S1    "SCRAM-SHA-1 "

static const choice_t choices[] = {
    /* Everything: the strongest. */
    {S256P S1P S256 S1 "PLAIN EXTERNAL DIGEST-MD5", "tls-exporter tls-unique",
     true, true, true, false, true, true, true, SASL_MECH_SCRAM_SHA256_PLUS,
     "p=tls-exporter,", NULL},
    /* XEP-0440 with only tls-unique, and we have both. */
    {S256P S256, "tls-unique", true, true, true, false, true, true, true,
     SASL_MECH_SCRAM_SHA256_PLUS, "p=tls-unique,", NULL},
    /* XEP-0440 with only a type we cannot do: no -PLUS, and "n" (the
     * server does offer binding). */
    {S256P S256, "tls-server-end-point", true, true, true, false, true, true,
     true, SASL_MECH_SCRAM_SHA256, "n,", NULL},
    /* No XEP-0440: tls-unique on TLS 1.2 (its data exists), tls-exporter
     * on TLS 1.3 (RFC 9266). */
    {S1P S1, NULL, true, true, true, false, true, true, true,
     SASL_MECH_SCRAM_SHA1_PLUS, "p=tls-unique,", NULL},
    {S1P S1, NULL, true, true, false, false, true, true, true,
     SASL_MECH_SCRAM_SHA1_PLUS, "p=tls-exporter,", NULL},
    {S1P S1, NULL, true, false, true, false, true, true, true,
     SASL_MECH_SCRAM_SHA1_PLUS, "p=tls-unique,", NULL},
    /* TLS without binding data: plain SCRAM, "n". */
    {S256P S256 "PLAIN", "tls-exporter", true, false, false, false, true, true,
     true, SASL_MECH_SCRAM_SHA256, "n,", NULL},
    /* Binding data, no -PLUS offered: "y". */
    {S256 S1 "PLAIN", NULL, true, true, false, false, true, true, true,
     SASL_MECH_SCRAM_SHA256, "y,", NULL},
    /* No TLS: no -PLUS (even with data), no PLAIN. */
    {S256P S256 "PLAIN", NULL, false, true, true, false, true, true, true,
     SASL_MECH_SCRAM_SHA256, "n,", NULL},
    {"PLAIN", NULL, false, false, false, false, true, true, true, -1, NULL,
     "not encrypted"},
    {S256P "PLAIN", "tls-exporter", false, true, false, false, true, true, true,
     -1, NULL, "channel binding"},
    /* -PLUS only, no usable binding. */
    {S256P S1P, "tls-exporter", true, false, true, false, true, true, true, -1,
     NULL, "channel binding"},
    /* SHA-1 only, and SCRAM over PLAIN. */
    {"PLAIN " S1, NULL, true, false, false, false, true, true, true,
     SASL_MECH_SCRAM_SHA1, "n,", NULL},
    /* PLAIN over TLS, unless refused. */
    {"PLAIN DIGEST-MD5", NULL, true, false, false, false, true, true, true,
     SASL_MECH_PLAIN, NULL, NULL},
    {"PLAIN DIGEST-MD5", NULL, true, false, false, false, true, false, true,
     SASL_MECH_DIGEST_MD5, NULL, NULL},
    {"PLAIN", NULL, true, false, false, false, true, false, true, -1, NULL,
     "not allowed"},
    /* DIGEST-MD5 only when nothing better. */
    {"DIGEST-MD5", NULL, true, false, false, false, true, true, true,
     SASL_MECH_DIGEST_MD5, NULL, NULL},
    {"DIGEST-MD5", NULL, false, false, false, false, true, true, true,
     SASL_MECH_DIGEST_MD5, NULL, NULL},
    {"DIGEST-MD5 " S1, NULL, false, false, false, false, true, true, true,
     SASL_MECH_SCRAM_SHA1, NULL, NULL},
    {"DIGEST-MD5", NULL, true, false, false, false, true, true, false, -1, NULL,
     "DIGEST-MD5"},
    /* EXTERNAL: certificate and no password. */
    {S256P S256 "PLAIN EXTERNAL", "tls-exporter", true, true, false, true,
     false, true, true, SASL_MECH_EXTERNAL, NULL, NULL},
    /* With a password, SCRAM first, then EXTERNAL before PLAIN. */
    {S256 "PLAIN EXTERNAL", NULL, true, false, false, true, true, true, true,
     SASL_MECH_SCRAM_SHA256, NULL, NULL},
    {"PLAIN EXTERNAL", NULL, true, false, false, true, true, true, true,
     SASL_MECH_EXTERNAL, NULL, NULL},
    /* EXTERNAL needs TLS and a certificate. */
    {"EXTERNAL", NULL, false, false, false, true, false, true, true, -1, NULL,
     "certificate"},
    {"EXTERNAL PLAIN", NULL, true, false, false, false, true, true, true,
     SASL_MECH_PLAIN, NULL, NULL},
    /* No password, no certificate. */
    {S256 "PLAIN", NULL, true, false, false, false, false, true, true, -1, NULL,
     "password"},
    /* Nothing we know. */
    {"X-OAUTH2 CRAM-MD5", NULL, true, true, true, true, true, true, true, -1,
     NULL, "no SASL mechanism we support"},
    {"", NULL, true, true, true, true, true, true, true, -1, NULL,
     "no SASL mechanism"},
};

/* Splits `s` into at most n words in buf. */
static size_t split(const char *s, char *buf, size_t size, const char **v,
                    size_t n)
{
    size_t k = 0;
    snprintf(buf, size, "%s", s);
    for (char *save = NULL, *w = strtok_r(buf, " ", &save); w != NULL && k < n;
         w = strtok_r(NULL, " ", &save))
        v[k++] = w;
    return k;
}

static void test_choice(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(choices) / sizeof(choices[0]); i++) {
        const choice_t *t = &choices[i];
        char mbuf[256], cbuf[128];
        const char *mv[16], *cv[8];
        sasl_client_params_t p = {
            .authcid = USER,
            .password = t->password ? PASSWORD : NULL,
            .domain = DOMAIN,
            .tls = t->tls,
            .have_client_cert = t->cert,
            .cb_exporter = t->exp ? exporter : NULL,
            .cb_exporter_len = t->exp ? sizeof(exporter) : 0,
            .cb_unique = t->uni ? unique : NULL,
            .cb_unique_len = t->uni ? sizeof(unique) : 0,
            .server_mechs = mv,
            .server_mech_count = split(t->mechs, mbuf, sizeof(mbuf), mv, 16),
            .server_cb = t->cbs != NULL ? cv : NULL,
            .server_cb_count =
                t->cbs != NULL ? split(t->cbs, cbuf, sizeof(cbuf), cv, 8) : 0,
            .allow_plain = t->plain,
            .allow_digest_md5 = t->digest,
        };
        const char *why = "unset";
        sasl_client_t *c = sasl_client_choose(&p, &why);
        if (t->want < 0) {
            if (c != NULL)
                fail_msg("row %zu: chose %s, expected none", i,
                         sasl_mech_name(sasl_client_mech(c)));
            assert_non_null(why);
            if (strstr(why, t->why) == NULL)
                fail_msg("row %zu: why \"%s\", expected \"%s\"", i, why,
                         t->why);
            continue;
        }
        if (c == NULL)
            fail_msg("row %zu: none (%s), expected %s", i, why,
                     sasl_mech_name((sasl_mech_t)t->want));
        if (sasl_client_mech(c) != (sasl_mech_t)t->want)
            fail_msg("row %zu: chose %s, expected %s", i,
                     sasl_mech_name(sasl_client_mech(c)),
                     sasl_mech_name((sasl_mech_t)t->want));
        assert_null(why);
        if (t->gs2 != NULL) {
            buf_t out = BUF_INIT;
            bool has;
            assert_int_equal(sasl_client_start(c, &out, &has), 0);
            if (strncmp(out.data, t->gs2, strlen(t->gs2)) != 0)
                fail_msg("row %zu: %s, expected to start %s", i, out.data,
                         t->gs2);
            buf_free(&out);
        }
        sasl_client_free(c);
    }

    /* why may be NULL; free(NULL) is fine. */
    sasl_client_params_t p = {.authcid = USER};
    assert_null(sasl_client_choose(&p, NULL));
    sasl_client_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_choice),
        cmocka_unit_test(test_scram_plus),
        cmocka_unit_test(test_scram_no_plus),
        cmocka_unit_test(test_scram_authzid_and_escaping),
        cmocka_unit_test(test_scram_wrong_password),
        cmocka_unit_test(test_scram_server_final_checked),
        cmocka_unit_test(test_scram_final_as_challenge),
        cmocka_unit_test(test_downgrade_detected),
        cmocka_unit_test(test_server_first_checks),
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_external),
        cmocka_unit_test(test_digest_md5),
        cmocka_unit_test(test_gsasl_server),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
