/* Unit tests for lib/sasl: the server side of SCRAM (driven by GNU SASL's
 * client, and by a small hand-written client where we need messages GNU
 * SASL will not send), PLAIN, EXTERNAL and DIGEST-MD5, and the XEP-0474
 * downgrade-protection hash against the XEP's own example. */
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
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "base/base64.h"
#include "base/buf.h"
#include "sasl/sasl.h"
#include "sasl/sasl_internal.h"
#include "sasl/scram.h"

#define DOMAIN     "example.org"
#define USER       "juliet"
#define PASSWORD   "pencil"
#define ITERATIONS 4096

#define BIT(m) (1u << (m))
#define ALL_SCRAM                                                              \
    (BIT(SASL_MECH_SCRAM_SHA1) | BIT(SASL_MECH_SCRAM_SHA256) |                 \
     BIT(SASL_MECH_SCRAM_SHA1_PLUS) | BIT(SASL_MECH_SCRAM_SHA256_PLUS))
#define NO_PLUS (BIT(SASL_MECH_SCRAM_SHA1) | BIT(SASL_MECH_SCRAM_SHA256))
#define ALL_MECHS                                                              \
    (ALL_SCRAM | BIT(SASL_MECH_PLAIN) | BIT(SASL_MECH_EXTERNAL) |              \
     BIT(SASL_MECH_DIGEST_MD5))

static const unsigned char exporter[32] = "exporter-binding-data-0123456789";
static const unsigned char unique[12] = "tls-unique!!";
static const unsigned char secret[32] = "server secret for fake salts!!!";

/* The one account the tests know: juliet@example.org, password "pencil",
 * made once for the whole run (PBKDF2 is slow under the sanitizers). */
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

/* Connection parameters of a TLS stream that offers everything. */
static sasl_server_params_t params_all(void)
{
    sasl_server_params_t p = {
        .domain = DOMAIN,
        .advertised_mechs = ALL_MECHS,
        .advertised_cb = SASL_CB_TLS_EXPORTER | SASL_CB_TLS_UNIQUE,
        .cb_exporter = exporter,
        .cb_exporter_len = sizeof(exporter),
        .cb_unique = unique,
        .cb_unique_len = sizeof(unique),
        .tls = true,
        .server_secret = secret,
        .server_secret_len = sizeof(secret),
        .scram_iterations = ITERATIONS,
    };
    return p;
}

/* What the account lookup of a server would answer. */
static void answer(sasl_server_t *s, const account_t *a)
{
    const char *who = sasl_server_authcid(s);
    assert_non_null(who);
    if (strcmp(who, USER) == 0)
        sasl_server_set_credentials(s, &a->sha1, &a->sha256);
    else
        sasl_server_set_unknown_user(s);
}

static int step_str(sasl_server_t *s, const char *msg, buf_t *out)
{
    return sasl_server_step(s, (const unsigned char *)msg,
                            msg != NULL ? strlen(msg) : 0, out);
}

static char *b64(const void *data, size_t n)
{
    size_t cap = base64_encoded_size(n);
    char *o = malloc(cap);
    assert_non_null(o);
    assert_true(base64_encode(data, n, BASE64_STD, o, cap) >= 0);
    return o;
}

/* ------------------------------------------------------ mechanism table */

static void test_names(void **state)
{
    (void)state;
    for (int i = 0; i < SASL_MECH_COUNT; i++) {
        const char *n = sasl_mech_name((sasl_mech_t)i);
        assert_non_null(n);
        assert_int_equal(sasl_mech_from_name(n), i);
    }
    assert_string_equal(sasl_mech_name(SASL_MECH_SCRAM_SHA256_PLUS),
                        "SCRAM-SHA-256-PLUS");
    assert_int_equal(sasl_mech_from_name("scram-sha-1"), -1);
    assert_int_equal(sasl_mech_from_name("CRAM-MD5"), -1);
    assert_int_equal(sasl_mech_from_name(""), -1);
    assert_null(sasl_mech_name(SASL_MECH_COUNT));

    static const struct {
        int rc;
        const char *cond;
    } conds[] = {
        {SASL_F_ABORTED, "aborted"},
        {SASL_F_ACCOUNT_DISABLED, "account-disabled"},
        {SASL_F_CREDENTIALS_EXPIRED, "credentials-expired"},
        {SASL_F_ENCRYPTION_REQUIRED, "encryption-required"},
        {SASL_F_INCORRECT_ENCODING, "incorrect-encoding"},
        {SASL_F_INVALID_AUTHZID, "invalid-authzid"},
        {SASL_F_INVALID_MECHANISM, "invalid-mechanism"},
        {SASL_F_MALFORMED_REQUEST, "malformed-request"},
        {SASL_F_MECHANISM_TOO_WEAK, "mechanism-too-weak"},
        {SASL_F_NOT_AUTHORIZED, "not-authorized"},
        {SASL_F_TEMPORARY_AUTH_FAILURE, "temporary-auth-failure"},
    };
    for (size_t i = 0; i < sizeof(conds) / sizeof(conds[0]); i++)
        assert_string_equal(sasl_condition(conds[i].rc), conds[i].cond);
    assert_null(sasl_condition(SASL_SUCCESS));
    assert_null(sasl_condition(SASL_CHALLENGE));
    assert_null(sasl_condition(SASL_NEED_CREDENTIALS));
    assert_null(sasl_condition(-100));
}

/* ------------------------------------------------------------- XEP-0474 */

static void test_downgrade_hash_vector(void **state)
{
    (void)state;
    /* XEP-0474 §Full Example: SHA-1 of 'SCRAM-SHA-1\x1eSCRAM-SHA-1-PLUS
     * \x1ftls-exporter\x1etls-server-end-point'. Given unsorted, to check
     * that the function sorts. */
    const char *mechs[] = {"SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"};
    const char *cbs[] = {"tls-server-end-point", "tls-exporter"};
    char out[64];
    int n = sasl_downgrade_hash(SCRAM_SHA1, mechs, 2, cbs, 2, out, sizeof(out));
    assert_int_equal(n, 28);
    assert_string_equal(out, "G6k/rBLDqgOhRRaCuuatSDFkJ08=");

    /* Without XEP-0440 there is no %x1F and no types. */
    const char *one[] = {"SCRAM-SHA-256", "PLAIN"};
    unsigned char d[32];
    unsigned dl = 0;
    const char s[] = "PLAIN\x1eSCRAM-SHA-256";
    assert_int_equal(EVP_Digest(s, strlen(s), d, &dl, EVP_sha256(), NULL), 1);
    char *want = b64(d, dl);
    n = sasl_downgrade_hash(SCRAM_SHA256, one, 2, NULL, 0, out, sizeof(out));
    assert_int_equal(n, 44);
    assert_string_equal(out, want);
    free(want);

    /* Too small a buffer is an error, not a truncation. */
    assert_int_equal(sasl_downgrade_hash(SCRAM_SHA1, mechs, 2, cbs, 2, out, 10),
                     -1);
}

/* ------------------------------------------------- SCRAM with GNU SASL */

static void own_final(scram_hash_t h, const char *password,
                      const char *client_first_bare, const char *server_first,
                      const void *cbind, size_t cbind_len, const char *nonce,
                      const char *ext, char *out, size_t size);

/* A GNU SASL client exchange against our server. */
typedef struct scram_run {
    const char *mech;
    const char *user;
    const char *password;
    const char *authzid;
    const unsigned char *exporter; /* the client's binding data */
    size_t exporter_len;
    const unsigned char *unique;
    size_t unique_len;
    /* Results. */
    int first_rc;  /* server's answer to client-first */
    int final_rc;  /* server's answer to client-final */
    int client_rc; /* GNU SASL's verdict on server-final */
    char client_first[1024];
    char server_first[1024];
    char username[JID_PART_BUF];
} scram_run_t;

static void gsasl_scram(const account_t *a, const sasl_server_params_t *p,
                        scram_run_t *r)
{
    Gsasl *ctx;
    Gsasl_session *c;
    char *o = NULL;
    size_t olen = 0;
    buf_t out = BUF_INIT;

    r->first_rc = r->final_rc = r->client_rc = 1000;
    r->username[0] = '\0';
    assert_int_equal(gsasl_init(&ctx), GSASL_OK);
    assert_int_equal(gsasl_client_start(ctx, r->mech, &c), GSASL_OK);
    gsasl_property_set(c, GSASL_AUTHID, r->user);
    gsasl_property_set(c, GSASL_PASSWORD, r->password);
    if (r->authzid != NULL)
        gsasl_property_set(c, GSASL_AUTHZID, r->authzid);
    if (r->exporter != NULL) {
        char *e = b64(r->exporter, r->exporter_len);
        gsasl_property_set(c, GSASL_CB_TLS_EXPORTER, e);
        free(e);
    }
    if (r->unique != NULL) {
        char *u = b64(r->unique, r->unique_len);
        gsasl_property_set(c, GSASL_CB_TLS_UNIQUE, u);
        free(u);
    }

    assert_int_equal(gsasl_step(c, "", 0, &o, &olen), GSASL_NEEDS_MORE);
    snprintf(r->client_first, sizeof(r->client_first), "%.*s", (int)olen, o);
    sasl_server_t *s =
        sasl_server_new((sasl_mech_t)sasl_mech_from_name(r->mech), p);
    assert_non_null(s);
    r->first_rc = sasl_server_step(s, (unsigned char *)o, olen, &out);
    gsasl_free(o);
    o = NULL;
    if (r->first_rc != SASL_NEED_CREDENTIALS)
        goto done;
    answer(s, a);
    assert_int_equal(sasl_server_step(s, NULL, 0, &out), SASL_CHALLENGE);
    snprintf(r->server_first, sizeof(r->server_first), "%.*s", (int)out.len,
             out.data);

    assert_int_equal(gsasl_step(c, out.data, out.len, &o, &olen),
                     GSASL_NEEDS_MORE);
    buf_reset(&out);
    r->final_rc = sasl_server_step(s, (unsigned char *)o, olen, &out);
    gsasl_free(o);
    o = NULL;
    if (r->final_rc == SASL_SUCCESS) {
        snprintf(r->username, sizeof(r->username), "%s",
                 sasl_server_username(s));
        /* GNU SASL checks the ServerSignature in v=. */
        r->client_rc = gsasl_step(c, out.data, out.len, &o, &olen);
        gsasl_free(o);
        /* Nothing more may follow a success. */
        buf_reset(&out);
        assert_int_equal(step_str(s, "x", &out), SASL_F_MALFORMED_REQUEST);
    } else {
        assert_null(sasl_server_username(s));
    }
done:
    sasl_server_free(s);
    buf_free(&out);
    gsasl_finish(c);
    gsasl_done(ctx);
}

static void expect_scram_ok(const account_t *a, const char *mech,
                            const unsigned char *exp, size_t exp_len,
                            const unsigned char *uni, size_t uni_len,
                            const char *gs2)
{
    sasl_server_params_t p = params_all();
    scram_run_t r = {.mech = mech,
                     .user = USER,
                     .password = PASSWORD,
                     .exporter = exp,
                     .exporter_len = exp_len,
                     .unique = uni,
                     .unique_len = uni_len};
    gsasl_scram(a, &p, &r);
    if (strncmp(r.client_first, gs2, strlen(gs2)) != 0)
        fail_msg("%s: client-first %s, expected to start %s", mech,
                 r.client_first, gs2);
    assert_int_equal(r.first_rc, SASL_NEED_CREDENTIALS);
    assert_int_equal(r.final_rc, SASL_SUCCESS);
    assert_int_equal(r.client_rc, GSASL_OK);
    assert_string_equal(r.username, USER);
    /* The XEP-0474 attribute is there, and GNU SASL ignored it. */
    assert_non_null(strstr(r.server_first, ",h="));
}

static void test_scram_sha1(void **state)
{
    expect_scram_ok(*state, "SCRAM-SHA-1", NULL, 0, NULL, 0, "n,,");
}

static void test_scram_sha256(void **state)
{
    expect_scram_ok(*state, "SCRAM-SHA-256", NULL, 0, NULL, 0, "n,,");
}

static void test_scram_plus_exporter(void **state)
{
    expect_scram_ok(*state, "SCRAM-SHA-1-PLUS", exporter, sizeof(exporter),
                    NULL, 0, "p=tls-exporter,,");
    expect_scram_ok(*state, "SCRAM-SHA-256-PLUS", exporter, sizeof(exporter),
                    NULL, 0, "p=tls-exporter,,");
    /* GNU SASL 2.2 prefers tls-exporter when it has both. */
    expect_scram_ok(*state, "SCRAM-SHA-256-PLUS", exporter, sizeof(exporter),
                    unique, sizeof(unique), "p=tls-exporter,,");
}

static void test_scram_plus_unique(void **state)
{
    expect_scram_ok(*state, "SCRAM-SHA-1-PLUS", NULL, 0, unique, sizeof(unique),
                    "p=tls-unique,,");
    expect_scram_ok(*state, "SCRAM-SHA-256-PLUS", NULL, 0, unique,
                    sizeof(unique), "p=tls-unique,,");
}

/* The h= attribute is the hash of what this connection advertised. */
static void test_scram_h_attribute(void **state)
{
    sasl_server_params_t p = params_all();
    p.advertised_mechs = BIT(SASL_MECH_SCRAM_SHA1) |
                         BIT(SASL_MECH_SCRAM_SHA1_PLUS) | BIT(SASL_MECH_PLAIN);
    p.advertised_cb = SASL_CB_TLS_EXPORTER;
    scram_run_t r = {.mech = "SCRAM-SHA-1", .user = USER, .password = PASSWORD};
    gsasl_scram(*state, &p, &r);
    assert_int_equal(r.final_rc, SASL_SUCCESS);

    const char *mechs[] = {"SCRAM-SHA-1", "SCRAM-SHA-1-PLUS", "PLAIN"};
    const char *cbs[] = {"tls-exporter"};
    char h[64];
    assert_true(
        sasl_downgrade_hash(SCRAM_SHA1, mechs, 3, cbs, 1, h, sizeof(h)) > 0);
    const char *got = strstr(r.server_first, ",h=");
    assert_non_null(got);
    assert_string_equal(got + 3, h);

    /* No XEP-0440: no channel-binding part. */
    p.advertised_cb = 0;
    scram_run_t r2 = {
        .mech = "SCRAM-SHA-1", .user = USER, .password = PASSWORD};
    gsasl_scram(*state, &p, &r2);
    assert_int_equal(r2.final_rc, SASL_SUCCESS);
    assert_true(
        sasl_downgrade_hash(SCRAM_SHA1, mechs, 3, NULL, 0, h, sizeof(h)) > 0);
    got = strstr(r2.server_first, ",h=");
    assert_non_null(got);
    assert_string_equal(got + 3, h);
}

static void test_scram_wrong_password(void **state)
{
    sasl_server_params_t p = params_all();
    const char *mechs[] = {"SCRAM-SHA-1", "SCRAM-SHA-256"};
    for (int i = 0; i < 2; i++) {
        scram_run_t r = {.mech = mechs[i], .user = USER, .password = "wrong"};
        gsasl_scram(*state, &p, &r);
        assert_int_equal(r.first_rc, SASL_NEED_CREDENTIALS);
        assert_int_equal(r.final_rc, SASL_F_NOT_AUTHORIZED);
    }
}

/* Pulls s= and i= out of a server-first-message. */
static void server_first_parts(const char *sf, char *salt, size_t n,
                               unsigned *iter)
{
    const char *s = strstr(sf, ",s=");
    const char *i = strstr(sf, ",i=");
    assert_non_null(s);
    assert_non_null(i);
    assert_true(i > s);
    snprintf(salt, n, "%.*s", (int)(i - s - 3), s + 3);
    *iter = (unsigned)strtoul(i + 3, NULL, 10);
}

static void test_scram_unknown_user(void **state)
{
    const account_t *a = *state;
    sasl_server_params_t p = params_all();
    char salt1[64], salt2[64], salt3[64], real[64];
    unsigned it1, it2, it3, itr;

    scram_run_t r1 = {
        .mech = "SCRAM-SHA-256", .user = "romeo", .password = PASSWORD};
    gsasl_scram(a, &p, &r1);
    assert_int_equal(r1.first_rc, SASL_NEED_CREDENTIALS);
    /* The exchange goes all the way and fails only at the end. */
    assert_int_equal(r1.final_rc, SASL_F_NOT_AUTHORIZED);
    server_first_parts(r1.server_first, salt1, sizeof(salt1), &it1);

    scram_run_t r2 = {
        .mech = "SCRAM-SHA-256", .user = "romeo", .password = "other"};
    gsasl_scram(a, &p, &r2);
    assert_int_equal(r2.final_rc, SASL_F_NOT_AUTHORIZED);
    server_first_parts(r2.server_first, salt2, sizeof(salt2), &it2);

    scram_run_t r3 = {
        .mech = "SCRAM-SHA-256", .user = "benvolio", .password = PASSWORD};
    gsasl_scram(a, &p, &r3);
    assert_int_equal(r3.final_rc, SASL_F_NOT_AUTHORIZED);
    server_first_parts(r3.server_first, salt3, sizeof(salt3), &it3);

    scram_run_t rk = {
        .mech = "SCRAM-SHA-256", .user = USER, .password = PASSWORD};
    gsasl_scram(a, &p, &rk);
    server_first_parts(rk.server_first, real, sizeof(real), &itr);

    /* Same name, same salt (as a real account's would be); another name,
     * another salt; and the shape of a real one. */
    assert_string_equal(salt1, salt2);
    assert_string_not_equal(salt1, salt3);
    assert_int_equal(strlen(salt1), strlen(real));
    assert_int_equal(it1, itr);
    assert_int_equal(it2, itr);
    assert_int_equal(it3, itr);
}

/* An account that has credentials, but not for this hash, fails like an
 * unknown one. */
static void test_scram_missing_hash(void **state)
{
    const account_t *a = *state;
    sasl_server_params_t p = params_all();
    buf_t out = BUF_INIT;
    char sf[512], cf[1024];
    sasl_server_t *s = sasl_server_new(SASL_MECH_SCRAM_SHA1, &p);
    assert_int_equal(step_str(s, "n,,n=juliet,r=abcdef", &out),
                     SASL_NEED_CREDENTIALS);
    sasl_server_set_credentials(s, NULL, &a->sha256);
    assert_int_equal(sasl_server_step(s, NULL, 0, &out), SASL_CHALLENGE);
    snprintf(sf, sizeof(sf), "%.*s", (int)out.len, out.data);
    buf_reset(&out);
    /* The right password cannot help: there is nothing to check it with. */
    own_final(SCRAM_SHA1, PASSWORD, "n=juliet,r=abcdef", sf, "n,,", 3, NULL,
              NULL, cf, sizeof(cf));
    assert_int_equal(step_str(s, cf, &out), SASL_F_NOT_AUTHORIZED);
    sasl_server_free(s);
    buf_free(&out);
}

static void test_scram_cb_mismatch(void **state)
{
    sasl_server_params_t p = params_all();
    unsigned char other[32];
    memcpy(other, exporter, sizeof(other));
    other[31] ^= 1;
    scram_run_t r = {.mech = "SCRAM-SHA-256-PLUS",
                     .user = USER,
                     .password = PASSWORD,
                     .exporter = other,
                     .exporter_len = sizeof(other)};
    gsasl_scram(*state, &p, &r);
    assert_int_equal(r.first_rc, SASL_NEED_CREDENTIALS);
    assert_int_equal(r.final_rc, SASL_F_NOT_AUTHORIZED);

    /* Binding data of another length. */
    scram_run_t r2 = {.mech = "SCRAM-SHA-1-PLUS",
                      .user = USER,
                      .password = PASSWORD,
                      .unique = unique,
                      .unique_len = sizeof(unique) - 1};
    gsasl_scram(*state, &p, &r2);
    assert_int_equal(r2.final_rc, SASL_F_NOT_AUTHORIZED);
}

static void test_scram_cb_unavailable(void **state)
{
    /* tls-unique asked for, but the connection has none (TLS 1.3). */
    sasl_server_params_t p = params_all();
    p.cb_unique = NULL;
    p.cb_unique_len = 0;
    p.advertised_cb = SASL_CB_TLS_EXPORTER;
    scram_run_t r = {.mech = "SCRAM-SHA-256-PLUS",
                     .user = USER,
                     .password = PASSWORD,
                     .unique = unique,
                     .unique_len = sizeof(unique)};
    gsasl_scram(*state, &p, &r);
    assert_int_equal(r.first_rc, SASL_F_NOT_AUTHORIZED);

    /* Available, but not among the types XEP-0440 advertised. */
    p = params_all();
    p.advertised_cb = SASL_CB_TLS_EXPORTER;
    gsasl_scram(*state, &p, &r);
    assert_int_equal(r.first_rc, SASL_F_NOT_AUTHORIZED);

    /* Without XEP-0440 any type we have is fine. */
    p.advertised_cb = 0;
    gsasl_scram(*state, &p, &r);
    assert_int_equal(r.first_rc, SASL_NEED_CREDENTIALS);
    assert_int_equal(r.final_rc, SASL_SUCCESS);

    /* A type we do not know at all. */
    buf_t out = BUF_INIT;
    p = params_all();
    sasl_server_t *s = sasl_server_new(SASL_MECH_SCRAM_SHA256_PLUS, &p);
    assert_int_equal(
        step_str(s, "p=tls-server-end-point,,n=juliet,r=abcdef", &out),
        SASL_F_NOT_AUTHORIZED);
    sasl_server_free(s);
    buf_free(&out);
}

static void test_scram_authzid(void **state)
{
    sasl_server_params_t p = params_all();
    static const struct {
        const char *authzid;
        int first_rc;
    } cases[] = {
        {"juliet@example.org", SASL_NEED_CREDENTIALS},
        {"Juliet@EXAMPLE.org", SASL_NEED_CREDENTIALS}, /* prepared */
        {"romeo@example.org", SASL_F_INVALID_AUTHZID},
        {"juliet@example.net", SASL_F_INVALID_AUTHZID},
        {"juliet@example.org/balcony", SASL_F_INVALID_AUTHZID},
        {"example.org", SASL_F_INVALID_AUTHZID},
        {"@@@", SASL_F_INVALID_AUTHZID},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        scram_run_t r = {.mech = "SCRAM-SHA-256",
                         .user = USER,
                         .password = PASSWORD,
                         .authzid = cases[i].authzid};
        gsasl_scram(*state, &p, &r);
        if (r.first_rc != cases[i].first_rc)
            fail_msg("authzid %s: %d, want %d", cases[i].authzid, r.first_rc,
                     cases[i].first_rc);
        if (r.first_rc == SASL_NEED_CREDENTIALS) {
            assert_int_equal(r.final_rc, SASL_SUCCESS);
            assert_int_equal(r.client_rc, GSASL_OK);
        }
    }
}

/* ------------------------------------------------- a hand-made client */

/* Computes client-final-message for server_first and `password`:
 * c=b64(cbind),r=nonce[,ext],p=proof. nonce NULL takes the server's. */
static void own_final(scram_hash_t h, const char *password,
                      const char *client_first_bare, const char *server_first,
                      const void *cbind, size_t cbind_len, const char *nonce,
                      const char *ext, char *out, size_t size)
{
    const EVP_MD *md = h == SCRAM_SHA1 ? EVP_sha1() : EVP_sha256();
    size_t klen = h == SCRAM_SHA1 ? 20 : 32;
    char snonce[256], salt_b64[128];
    unsigned char salt[96], salted[32], ckey[32], stored[32], sig[32];
    unsigned iter, l;

    const char *r = strstr(server_first, "r=");
    assert_non_null(r);
    const char *comma = strchr(r, ',');
    snprintf(snonce, sizeof(snonce), "%.*s", (int)(comma - r - 2), r + 2);
    server_first_parts(server_first, salt_b64, sizeof(salt_b64), &iter);
    long sl = base64_decode(salt_b64, strlen(salt_b64), salt, sizeof(salt));
    assert_true(sl > 0);
    assert_int_equal(PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt,
                                       (int)sl, (int)iter, md, (int)klen,
                                       salted),
                     1);
    HMAC(md, salted, (int)klen, (const unsigned char *)"Client Key", 10, ckey,
         &l);
    EVP_Digest(ckey, klen, stored, &l, md, NULL);

    char *c = b64(cbind, cbind_len);
    char without[1024];
    snprintf(without, sizeof(without), "c=%s,r=%s%s", c,
             nonce != NULL ? nonce : snonce, ext != NULL ? ext : "");
    free(c);
    char am[2048];
    snprintf(am, sizeof(am), "%s,%s,%s", client_first_bare, server_first,
             without);
    HMAC(md, stored, (int)klen, (unsigned char *)am, strlen(am), sig, &l);
    for (size_t i = 0; i < klen; i++)
        ckey[i] ^= sig[i];
    char *proof = b64(ckey, klen);
    int n = snprintf(out, size, "%s,p=%s", without, proof);
    assert_true(n > 0 && (size_t)n < size);
    free(proof);
}

/* Runs client-first `first` through to the server-first; returns the
 * server or NULL when the first step did not ask for credentials (then
 * *rc holds its answer). */
static sasl_server_t *own_start(const account_t *a, sasl_mech_t m,
                                const sasl_server_params_t *p,
                                const char *first, char *server_first, size_t n,
                                int *rc)
{
    buf_t out = BUF_INIT;
    sasl_server_t *s = sasl_server_new(m, p);
    assert_non_null(s);
    *rc = step_str(s, first, &out);
    if (*rc != SASL_NEED_CREDENTIALS) {
        assert_int_equal(out.len, 0);
        sasl_server_free(s);
        buf_free(&out);
        return NULL;
    }
    answer(s, a);
    assert_int_equal(sasl_server_step(s, NULL, 0, &out), SASL_CHALLENGE);
    snprintf(server_first, n, "%.*s", (int)out.len, out.data);
    buf_free(&out);
    return s;
}

static void test_scram_y_flag(void **state)
{
    const account_t *a = *state;
    char sf[512], cf[1024];
    int rc;
    buf_t out = BUF_INIT;

    /* -PLUS offered: "y" means someone took it out of the list. */
    sasl_server_params_t p = params_all();
    assert_null(own_start(a, SASL_MECH_SCRAM_SHA256, &p,
                          "y,,n=juliet,r=abcdefgh", sf, sizeof(sf), &rc));
    assert_int_equal(rc, SASL_F_NOT_AUTHORIZED);

    /* -PLUS not offered (configured off): "y" is honest, and the whole
     * exchange succeeds with c=b64("y,,"). */
    p.advertised_mechs = NO_PLUS;
    sasl_server_t *s = own_start(a, SASL_MECH_SCRAM_SHA256, &p,
                                 "y,,n=juliet,r=abcdefgh", sf, sizeof(sf), &rc);
    assert_non_null(s);
    own_final(SCRAM_SHA256, PASSWORD, "n=juliet,r=abcdefgh", sf, "y,,", 3, NULL,
              NULL, cf, sizeof(cf));
    assert_int_equal(step_str(s, cf, &out), SASL_SUCCESS);
    assert_memory_equal(out.data, "v=", 2);
    assert_string_equal(sasl_server_username(s), USER);
    sasl_server_free(s);

    /* The gs2 header in c= must be the one sent first ("n,," is not
     * "y,,"): a stripped "y" cannot be replayed as "n". */
    buf_reset(&out);
    s = own_start(a, SASL_MECH_SCRAM_SHA256, &p, "y,,n=juliet,r=abcdefgh", sf,
                  sizeof(sf), &rc);
    own_final(SCRAM_SHA256, PASSWORD, "n=juliet,r=abcdefgh", sf, "n,,", 3, NULL,
              NULL, cf, sizeof(cf));
    assert_int_equal(step_str(s, cf, &out), SASL_F_NOT_AUTHORIZED);
    assert_int_equal(out.len, 0);
    sasl_server_free(s);
    buf_free(&out);
}

static void test_scram_cb_flags_vs_mech(void **state)
{
    const account_t *a = *state;
    sasl_server_params_t p = params_all();
    char sf[512];
    int rc;

    /* p= on a mechanism without channel binding. */
    assert_null(own_start(a, SASL_MECH_SCRAM_SHA1, &p,
                          "p=tls-exporter,,n=juliet,r=abcdefgh", sf, sizeof(sf),
                          &rc));
    assert_int_equal(rc, SASL_F_MALFORMED_REQUEST);
    /* -PLUS without binding. */
    assert_null(own_start(a, SASL_MECH_SCRAM_SHA1_PLUS, &p,
                          "n,,n=juliet,r=abcdefgh", sf, sizeof(sf), &rc));
    assert_int_equal(rc, SASL_F_MALFORMED_REQUEST);
    assert_null(own_start(a, SASL_MECH_SCRAM_SHA256_PLUS, &p,
                          "y,,n=juliet,r=abcdefgh", sf, sizeof(sf), &rc));
    assert_int_equal(rc, SASL_F_MALFORMED_REQUEST);
}

static void test_scram_plus_own_client(void **state)
{
    const account_t *a = *state;
    sasl_server_params_t p = params_all();
    char sf[512], cf[1024];
    unsigned char cbind[128];
    int rc;
    buf_t out = BUF_INIT;

    /* An authzid in the gs2 header, an extension in client-first and in
     * client-final, and tls-exporter binding. */
    const char *gs2 = "p=tls-exporter,a=juliet@example.org,";
    char first[256];
    snprintf(first, sizeof(first), "%sn=juliet,r=abc+/=defgh,x=ext", gs2);
    sasl_server_t *s =
        own_start(a, SASL_MECH_SCRAM_SHA1_PLUS, &p, first, sf, sizeof(sf), &rc);
    assert_non_null(s);
    memcpy(cbind, gs2, strlen(gs2));
    memcpy(cbind + strlen(gs2), exporter, sizeof(exporter));
    own_final(SCRAM_SHA1, PASSWORD, "n=juliet,r=abc+/=defgh,x=ext", sf, cbind,
              strlen(gs2) + sizeof(exporter), NULL, ",y=other", cf, sizeof(cf));
    assert_int_equal(step_str(s, cf, &out), SASL_SUCCESS);
    sasl_server_free(s);
    buf_free(&out);
}

static void test_scram_malformed_first(void **state)
{
    const account_t *a = *state;
    sasl_server_params_t p = params_all();
    static const char *const bad[] = {
        "",
        "garbage",
        "n,,r=abcdef",              /* no n= */
        "n,,n=juliet",              /* no r= */
        "n,,n=ju=2Xliet,r=abcdef",  /* bad escape */
        "n,,n=juliet=,r=abcdef",    /* truncated escape */
        "n,,n=ju=2cliet,r=abcdef",  /* escapes are upper case */
        "n,,n=,r=abcdef",           /* empty name */
        "n,,n=juliet,r=",           /* empty nonce */
        "n,,n=juliet,r=ab cd",      /* nonce not printable */
        "n,,n=juliet,r=abc,",       /* empty extension */
        "n,,n=juliet,r=abc,1=x",    /* extension name not a letter */
        "n,,m=x,n=juliet,r=abcdef", /* RFC 5802 §5.1: m= must fail */
        "x,,n=juliet,r=abcdef",     /* unknown flag */
        "n,n=juliet,r=abcdef",      /* gs2 header lacks a comma */
        "n,a=,n=juliet,r=abcdef",   /* empty authzid */
        "n,a=ju=2Xliet@example.org,n=juliet,r=abcdef",
        "n,x=1,n=juliet,r=abcdef", /* not an authzid */
        "n",
        ",,n=juliet,r=abcdef",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char sf[512];
        int rc;
        assert_null(own_start(a, SASL_MECH_SCRAM_SHA256, &p, bad[i], sf,
                              sizeof(sf), &rc));
        if (rc != SASL_F_MALFORMED_REQUEST)
            fail_msg("\"%s\": %d", bad[i], rc);
    }

    /* A NUL inside, and a message over the limit. */
    buf_t out = BUF_INIT;
    sasl_server_t *s = sasl_server_new(SASL_MECH_SCRAM_SHA256, &p);
    assert_int_equal(
        sasl_server_step(s, (const unsigned char *)"n,,n=jul\0iet,r=abcdef", 21,
                         &out),
        SASL_F_MALFORMED_REQUEST);
    sasl_server_free(s);
    /* At the limit the message is parsed, and the name refused for being
     * longer than any account name; one byte more is not even parsed. */
    char *m = malloc(SASL_MSG_MAX + 2);
    assert_non_null(m);
    memset(m, 'a', SASL_MSG_MAX + 1);
    memcpy(m, "n,,n=", 5);
    memcpy(m + SASL_MSG_MAX - 10, ",r=abcdefg", 10);
    m[SASL_MSG_MAX] = '\0';
    s = sasl_server_new(SASL_MECH_SCRAM_SHA256, &p);
    assert_int_equal(step_str(s, m, &out), SASL_F_NOT_AUTHORIZED);
    sasl_server_free(s);
    memcpy(m + SASL_MSG_MAX - 10, "a,r=abcdefg", 11);
    m[SASL_MSG_MAX + 1] = '\0';
    s = sasl_server_new(SASL_MECH_SCRAM_SHA256, &p);
    assert_int_equal(step_str(s, m, &out), SASL_F_MALFORMED_REQUEST);
    sasl_server_free(s);
    free(m);
    buf_free(&out);
}

static void test_scram_names(void **state)
{
    const account_t *a = *state;
    sasl_server_params_t p = params_all();
    char sf[512];
    int rc;

    /* Escapes decode, and the name is Nodeprep'd for the lookup. */
    sasl_server_t *s =
        own_start(a, SASL_MECH_SCRAM_SHA256, &p, "n,,n=Mon=2Ctague=3D,r=abcdef",
                  sf, sizeof(sf), &rc);
    assert_int_equal(rc, SASL_NEED_CREDENTIALS);
    assert_string_equal(sasl_server_authcid(s), "mon,tague=");
    sasl_server_free(s);
    s = own_start(a, SASL_MECH_SCRAM_SHA256, &p, "n,,n=JULIET,r=abcdef", sf,
                  sizeof(sf), &rc);
    assert_string_equal(sasl_server_authcid(s), USER);
    sasl_server_free(s);

    /* Names Nodeprep refuses are no account: not-authorized, at once. */
    static const char *const refused[] = {
        "n,,n=jul@iet,r=abcdef",
        "n,,n=jul iet,r=abcdef",
        "n,,n=jul/iet,r=abcdef",
        "n,,n=\xff\xfe,r=abcdef",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        assert_null(own_start(a, SASL_MECH_SCRAM_SHA256, &p, refused[i], sf,
                              sizeof(sf), &rc));
        assert_int_equal(rc, SASL_F_NOT_AUTHORIZED);
    }
}

static void test_scram_tampered_final(void **state)
{
    const account_t *a = *state;
    sasl_server_params_t p = params_all();
    const char *bare = "n=juliet,r=abcdefgh";
    char sf[512], cf[1024];
    int rc;
    buf_t out = BUF_INIT;

    /* The right proof for a nonce the server did not send: a changed
     * server part, and the client's nonce alone. */
    const char *nonces[] = {"abcdefghZZZZ", "abcdefgh"};
    for (int i = 0; i < 2; i++) {
        sasl_server_t *s =
            own_start(a, SASL_MECH_SCRAM_SHA256, &p, "n,,n=juliet,r=abcdefgh",
                      sf, sizeof(sf), &rc);
        own_final(SCRAM_SHA256, PASSWORD, bare, sf, "n,,", 3, nonces[i], NULL,
                  cf, sizeof(cf));
        assert_int_equal(step_str(s, cf, &out), SASL_F_NOT_AUTHORIZED);
        sasl_server_free(s);
    }

    /* A proof flipped by one bit. */
    sasl_server_t *s = own_start(a, SASL_MECH_SCRAM_SHA256, &p,
                                 "n,,n=juliet,r=abcdefgh", sf, sizeof(sf), &rc);
    own_final(SCRAM_SHA256, PASSWORD, bare, sf, "n,,", 3, NULL, NULL, cf,
              sizeof(cf));
    char *pp = strstr(cf, ",p=") + 3;
    pp[0] = pp[0] == 'A' ? 'B' : 'A';
    assert_int_equal(step_str(s, cf, &out), SASL_F_NOT_AUTHORIZED);
    sasl_server_free(s);

    /* Structure errors are malformed-request. */
    static const char *const bad_final[] = {
        "",
        "garbage",
        "c=biws",
        "c=biws,r=abc",            /* no proof */
        "r=abc,c=biws,p=AAAA",     /* order */
        "c=biws,r=abc,p=AAAA",     /* proof of the wrong length */
        "c=b!ws,r=abc,p=AAAA",     /* not base64 */
        "c=biws,r=abc,p=",         /* empty proof */
        "c=biws,r=abc,p=AAAA,x=1", /* proof not last */
        "c=biws,r=abc,=x,p=AAAA",  /* bad extension */
    };
    for (size_t i = 0; i < sizeof(bad_final) / sizeof(bad_final[0]); i++) {
        s = own_start(a, SASL_MECH_SCRAM_SHA256, &p, "n,,n=juliet,r=abcdefgh",
                      sf, sizeof(sf), &rc);
        int got = step_str(s, bad_final[i], &out);
        if (got != SASL_F_MALFORMED_REQUEST)
            fail_msg("\"%s\": %d", bad_final[i], got);
        /* Failed is failed: the next message is refused too. */
        assert_int_equal(step_str(s, cf, &out), SASL_F_MALFORMED_REQUEST);
        sasl_server_free(s);
    }
    assert_int_equal(out.len, 0);
    buf_free(&out);
}

static void test_scram_out_of_order(void **state)
{
    const account_t *a = *state;
    sasl_server_params_t p = params_all();
    buf_t out = BUF_INIT;

    /* A client message while the account is looked up. */
    sasl_server_t *s = sasl_server_new(SASL_MECH_SCRAM_SHA256, &p);
    assert_int_equal(step_str(s, "n,,n=juliet,r=abcdef", &out),
                     SASL_NEED_CREDENTIALS);
    assert_int_equal(step_str(s, "c=biws,r=abcdef,p=AAAA", &out),
                     SASL_F_MALFORMED_REQUEST);
    sasl_server_free(s);

    /* Data where the caller should continue with none. */
    s = sasl_server_new(SASL_MECH_SCRAM_SHA256, &p);
    assert_int_equal(step_str(s, "n,,n=juliet,r=abcdef", &out),
                     SASL_NEED_CREDENTIALS);
    answer(s, a);
    assert_int_equal(step_str(s, "n,,n=juliet,r=abcdef", &out),
                     SASL_F_MALFORMED_REQUEST);
    sasl_server_free(s);

    /* Credentials given when nobody asked are ignored. */
    s = sasl_server_new(SASL_MECH_SCRAM_SHA256, &p);
    sasl_server_set_credentials(s, &a->sha1, &a->sha256);
    sasl_server_set_unknown_user(s);
    assert_null(sasl_server_authcid(s));
    assert_null(sasl_server_username(s));
    assert_int_equal(sasl_server_step(s, NULL, 0, &out),
                     SASL_F_MALFORMED_REQUEST);
    sasl_server_free(s);
    assert_int_equal(out.len, 0);
    buf_free(&out);
}

static void test_not_advertised(void **state)
{
    (void)state;
    sasl_server_params_t p = params_all();
    buf_t out = BUF_INIT;
    p.advertised_mechs = NO_PLUS;
    sasl_server_t *s = sasl_server_new(SASL_MECH_SCRAM_SHA256_PLUS, &p);
    assert_int_equal(step_str(s, "p=tls-exporter,,n=juliet,r=abcdef", &out),
                     SASL_F_INVALID_MECHANISM);
    sasl_server_free(s);
    p.advertised_mechs = ALL_SCRAM;
    s = sasl_server_new(SASL_MECH_DIGEST_MD5, &p);
    assert_int_equal(sasl_server_step(s, NULL, 0, &out),
                     SASL_F_INVALID_MECHANISM);
    sasl_server_free(s);
    s = sasl_server_new(SASL_MECH_COUNT, &p);
    assert_int_equal(sasl_server_step(s, NULL, 0, &out),
                     SASL_F_INVALID_MECHANISM);
    sasl_server_free(s);
    buf_free(&out);
}

/* The server copies its parameters. */
static void test_params_copied(void **state)
{
    const account_t *a = *state;
    char domain[] = DOMAIN;
    unsigned char exp[32];
    char cert[] = "juliet@example.org";
    const char *certs[] = {cert};
    memcpy(exp, exporter, sizeof(exp));
    sasl_server_params_t p = params_all();
    p.domain = domain;
    p.cb_exporter = exp;
    p.cert_names = certs;
    p.cert_name_count = 1;
    sasl_server_t *s = sasl_server_new(SASL_MECH_EXTERNAL, &p);
    sasl_server_t *s2 = sasl_server_new(SASL_MECH_SCRAM_SHA256_PLUS, &p);
    memset(domain, 'x', sizeof(domain) - 1);
    memset(exp, 0, sizeof(exp));
    memset(cert, 'y', sizeof(cert) - 1);

    buf_t out = BUF_INIT;
    assert_int_equal(sasl_server_step(s, NULL, 0, &out), SASL_NEED_CREDENTIALS);
    answer(s, a);
    assert_int_equal(sasl_server_step(s, NULL, 0, &out), SASL_SUCCESS);
    sasl_server_free(s);

    char sf[512], cf[1024];
    unsigned char cbind[64];
    const char *gs2 = "p=tls-exporter,,";
    assert_int_equal(step_str(s2, "p=tls-exporter,,n=juliet,r=abcdef", &out),
                     SASL_NEED_CREDENTIALS);
    answer(s2, a);
    assert_int_equal(sasl_server_step(s2, NULL, 0, &out), SASL_CHALLENGE);
    snprintf(sf, sizeof(sf), "%.*s", (int)out.len, out.data);
    buf_reset(&out);
    memcpy(cbind, gs2, strlen(gs2));
    memcpy(cbind + strlen(gs2), exporter, sizeof(exporter));
    own_final(SCRAM_SHA256, PASSWORD, "n=juliet,r=abcdef", sf, cbind,
              strlen(gs2) + sizeof(exporter), NULL, NULL, cf, sizeof(cf));
    assert_int_equal(step_str(s2, cf, &out), SASL_SUCCESS);
    sasl_server_free(s2);
    buf_free(&out);
}

/* ---------------------------------------------------------------- PLAIN */

/* Runs a PLAIN message through; returns the final result. */
static int plain_run(const account_t *a, const sasl_server_params_t *p,
                     const char *msg, size_t len, bool *checked)
{
    buf_t out = BUF_INIT;
    sasl_server_t *s = sasl_server_new(SASL_MECH_PLAIN, p);
    assert_non_null(s);
    int rc = sasl_server_step(s, (const unsigned char *)msg, len, &out);
    if (checked != NULL)
        *checked = false;
    if (rc == SASL_NEED_CREDENTIALS) {
        answer(s, a);
        /* Still waiting for the check: the client may not go on. */
        rc = sasl_server_step(s, NULL, 0, &out);
        assert_int_equal(rc, SASL_NEED_PASSWORD_CHECK);
        assert_int_equal(sasl_server_step(s, NULL, 0, &out),
                         SASL_F_MALFORMED_REQUEST);
        sasl_server_free(s);

        s = sasl_server_new(SASL_MECH_PLAIN, p);
        assert_int_equal(
            sasl_server_step(s, (const unsigned char *)msg, len, &out),
            SASL_NEED_CREDENTIALS);
        answer(s, a);
        assert_int_equal(sasl_server_step(s, NULL, 0, &out),
                         SASL_NEED_PASSWORD_CHECK);
        bool ok = sasl_server_check_password(s);
        if (checked != NULL)
            *checked = ok;
        sasl_server_password_checked(s, ok);
        rc = sasl_server_step(s, NULL, 0, &out);
        if (rc == SASL_SUCCESS)
            assert_string_equal(sasl_server_username(s), USER);
        else
            assert_null(sasl_server_username(s));
    }
    assert_int_equal(out.len, 0);
    sasl_server_free(s);
    buf_free(&out);
    return rc;
}

#define PLAIN(a, p, lit, checked)                                              \
    plain_run((a), (p), (lit), sizeof(lit) - 1, (checked))

static void test_plain(void **state)
{
    const account_t *a = *state;
    sasl_server_params_t p = params_all();
    bool checked;

    assert_int_equal(PLAIN(a, &p, "\0juliet\0pencil", &checked), SASL_SUCCESS);
    assert_true(checked);
    assert_int_equal(PLAIN(a, &p, "juliet@example.org\0juliet\0pencil", NULL),
                     SASL_SUCCESS);
    assert_int_equal(PLAIN(a, &p, "\0JULIET\0pencil", NULL), SASL_SUCCESS);
    assert_int_equal(PLAIN(a, &p, "\0juliet\0Pencil", &checked),
                     SASL_F_NOT_AUTHORIZED);
    assert_false(checked);
    assert_int_equal(PLAIN(a, &p, "\0romeo\0pencil", &checked),
                     SASL_F_NOT_AUTHORIZED);
    assert_false(checked);
    assert_int_equal(PLAIN(a, &p, "romeo@example.org\0juliet\0pencil", NULL),
                     SASL_F_INVALID_AUTHZID);
    assert_int_equal(PLAIN(a, &p, "\0jul@iet\0pencil", NULL),
                     SASL_F_NOT_AUTHORIZED);

    /* Only SHA-1 stored: checked against that. */
    buf_t out = BUF_INIT;
    sasl_server_t *s = sasl_server_new(SASL_MECH_PLAIN, &p);
    assert_int_equal(sasl_server_step(s,
                                      (const unsigned char *)"\0juliet\0pencil",
                                      14, &out),
                     SASL_NEED_CREDENTIALS);
    sasl_server_set_credentials(s, &a->sha1, NULL);
    assert_int_equal(sasl_server_step(s, NULL, 0, &out),
                     SASL_NEED_PASSWORD_CHECK);
    assert_true(sasl_server_check_password(s));
    sasl_server_password_checked(s, true);
    assert_int_equal(sasl_server_step(s, NULL, 0, &out), SASL_SUCCESS);
    sasl_server_free(s);

    /* An account without SCRAM credentials at all. */
    s = sasl_server_new(SASL_MECH_PLAIN, &p);
    assert_int_equal(sasl_server_step(s,
                                      (const unsigned char *)"\0juliet\0pencil",
                                      14, &out),
                     SASL_NEED_CREDENTIALS);
    sasl_server_set_credentials(s, NULL, NULL);
    assert_int_equal(sasl_server_step(s, NULL, 0, &out),
                     SASL_NEED_PASSWORD_CHECK);
    assert_false(sasl_server_check_password(s));
    /* Even a caller that says yes cannot make it succeed. */
    sasl_server_password_checked(s, true);
    assert_int_equal(sasl_server_step(s, NULL, 0, &out), SASL_F_NOT_AUTHORIZED);
    sasl_server_free(s);
    buf_free(&out);
}

static void test_plain_unknown_user_says_no(void **state)
{
    (void)state;
    sasl_server_params_t p = params_all();
    buf_t out = BUF_INIT;
    sasl_server_t *s = sasl_server_new(SASL_MECH_PLAIN, &p);
    assert_int_equal(
        sasl_server_step(s, (const unsigned char *)"\0romeo\0pencil", 13, &out),
        SASL_NEED_CREDENTIALS);
    sasl_server_set_unknown_user(s);
    assert_int_equal(sasl_server_step(s, NULL, 0, &out),
                     SASL_NEED_PASSWORD_CHECK);
    /* The check runs PBKDF2-SHA-256 with the usual count, as for a real
     * account, on a salt that is the name's fake one. */
    assert_int_equal(s->fake.key_len, 32);
    assert_int_equal(s->fake.iterations, ITERATIONS);
    unsigned char salt[SCRAM_SALT_LEN];
    assert_int_equal(
        scram_fake_salt(secret, sizeof(secret), DOMAIN, "romeo", salt), 0);
    assert_memory_equal(s->fake.salt, salt, SCRAM_SALT_LEN);
    assert_false(sasl_server_check_password(s));
    /* A wrong "true" from the caller cannot log in an unknown name. */
    sasl_server_password_checked(s, true);
    assert_int_equal(sasl_server_step(s, NULL, 0, &out), SASL_F_NOT_AUTHORIZED);
    sasl_server_free(s);
    buf_free(&out);
}

static void test_plain_encryption_required(void **state)
{
    const account_t *a = *state;
    sasl_server_params_t p = params_all();
    p.tls = false;
    assert_int_equal(PLAIN(a, &p, "\0juliet\0pencil", NULL),
                     SASL_F_ENCRYPTION_REQUIRED);
    p.advertised_mechs &= ~BIT(SASL_MECH_PLAIN);
    assert_int_equal(PLAIN(a, &p, "\0juliet\0pencil", NULL),
                     SASL_F_ENCRYPTION_REQUIRED);
    /* Over TLS but not offered. */
    p.tls = true;
    assert_int_equal(PLAIN(a, &p, "\0juliet\0pencil", NULL),
                     SASL_F_INVALID_MECHANISM);
}

static void test_plain_malformed(void **state)
{
    const account_t *a = *state;
    sasl_server_params_t p = params_all();

    assert_int_equal(PLAIN(a, &p, "", NULL), SASL_F_MALFORMED_REQUEST);
    assert_int_equal(PLAIN(a, &p, "julietpencil", NULL),
                     SASL_F_MALFORMED_REQUEST);
    assert_int_equal(PLAIN(a, &p, "juliet\0pencil", NULL),
                     SASL_F_MALFORMED_REQUEST);
    assert_int_equal(PLAIN(a, &p, "\0juliet\0pen\0cil", NULL),
                     SASL_F_MALFORMED_REQUEST);
    assert_int_equal(PLAIN(a, &p, "\0\0pencil", NULL),
                     SASL_F_MALFORMED_REQUEST);
    assert_int_equal(PLAIN(a, &p, "\0juliet\0", NULL),
                     SASL_F_MALFORMED_REQUEST);

    /* Length limits: authcid 1023, password 1024. */
    char *m = malloc(2100);
    m[0] = '\0';
    memset(m + 1, 'a', 1024);
    m[1025] = '\0';
    memcpy(m + 1026, "pencil", 6);
    assert_int_equal(plain_run(a, &p, m, 1032, NULL), SASL_F_MALFORMED_REQUEST);
    /* 1023 'a's: a valid length, no such account. */
    m[1024] = '\0';
    memcpy(m + 1025, "pencil", 6);
    assert_int_equal(plain_run(a, &p, m, 1031, NULL), SASL_F_NOT_AUTHORIZED);

    memcpy(m, "\0juliet\0", 8);
    memset(m + 8, 'p', 1025);
    assert_int_equal(plain_run(a, &p, m, 8 + 1025, NULL),
                     SASL_F_MALFORMED_REQUEST);
    assert_int_equal(plain_run(a, &p, m, 8 + 1024, NULL),
                     SASL_F_NOT_AUTHORIZED);
    free(m);
}

/* ------------------------------------------------------------- EXTERNAL */

static int external_run(const account_t *a, const char *const *certs, size_t n,
                        const char *authzid, char *user, size_t user_size)
{
    sasl_server_params_t p = params_all();
    p.cert_names = certs;
    p.cert_name_count = n;
    buf_t out = BUF_INIT;
    sasl_server_t *s = sasl_server_new(SASL_MECH_EXTERNAL, &p);
    int rc = step_str(s, authzid, &out);
    if (rc == SASL_NEED_CREDENTIALS) {
        answer(s, a);
        rc = sasl_server_step(s, NULL, 0, &out);
    }
    if (user != NULL)
        snprintf(user, user_size, "%s",
                 rc == SASL_SUCCESS ? sasl_server_username(s) : "");
    assert_int_equal(out.len, 0);
    sasl_server_free(s);
    buf_free(&out);
    return rc;
}

static void test_external(void **state)
{
    const account_t *a = *state;
    char user[JID_PART_BUF];
    const char *one[] = {"juliet@example.org"};
    const char *one_caps[] = {"Juliet@Example.ORG"};
    const char *two[] = {"juliet@example.org", "romeo@example.org"};
    const char *two_ours[] = {"juliet@example.net", "juliet@example.org"};
    const char *dup[] = {"juliet@example.org", "juliet@example.org/phone"};
    const char *foreign[] = {"juliet@example.net", "example.org", "@bad"};
    const char *unknown[] = {"romeo@example.org"};

    /* One name, no authzid ("=" decodes to an empty response). */
    assert_int_equal(external_run(a, one, 1, "", user, sizeof(user)),
                     SASL_SUCCESS);
    assert_string_equal(user, USER);
    assert_int_equal(external_run(a, one, 1, NULL, user, sizeof(user)),
                     SASL_SUCCESS);
    assert_int_equal(external_run(a, one_caps, 1, "", user, sizeof(user)),
                     SASL_SUCCESS);
    assert_string_equal(user, USER);
    /* With the authzid the certificate names. */
    assert_int_equal(
        external_run(a, one, 1, "juliet@example.org", user, sizeof(user)),
        SASL_SUCCESS);
    assert_int_equal(
        external_run(a, one, 1, "JULIET@example.org", user, sizeof(user)),
        SASL_SUCCESS);
    /* Another one is not ours to take. */
    assert_int_equal(external_run(a, one, 1, "romeo@example.org", NULL, 0),
                     SASL_F_INVALID_AUTHZID);
    assert_int_equal(external_run(a, one, 1, "juliet@example.org/r", NULL, 0),
                     SASL_F_INVALID_AUTHZID);
    assert_int_equal(external_run(a, one, 1, "juliet@example.net", NULL, 0),
                     SASL_F_INVALID_AUTHZID);
    assert_int_equal(external_run(a, one, 1, "a@b@c", NULL, 0),
                     SASL_F_INVALID_AUTHZID);

    /* Two names: the authzid chooses; without one, XEP-0178 says
     * invalid-authzid. */
    assert_int_equal(external_run(a, two, 2, "", NULL, 0),
                     SASL_F_INVALID_AUTHZID);
    assert_int_equal(
        external_run(a, two, 2, "juliet@example.org", user, sizeof(user)),
        SASL_SUCCESS);
    assert_string_equal(user, USER);
    /* romeo is named by the certificate but has no account. */
    assert_int_equal(external_run(a, two, 2, "romeo@example.org", NULL, 0),
                     SASL_F_NOT_AUTHORIZED);
    /* Only names in our domain count; the same account twice is one. */
    assert_int_equal(external_run(a, two_ours, 2, "", user, sizeof(user)),
                     SASL_SUCCESS);
    assert_int_equal(external_run(a, dup, 2, "", user, sizeof(user)),
                     SASL_SUCCESS);

    /* No usable name. */
    assert_int_equal(external_run(a, NULL, 0, "", NULL, 0),
                     SASL_F_NOT_AUTHORIZED);
    assert_int_equal(external_run(a, NULL, 0, "juliet@example.org", NULL, 0),
                     SASL_F_NOT_AUTHORIZED);
    assert_int_equal(external_run(a, foreign, 3, "", NULL, 0),
                     SASL_F_NOT_AUTHORIZED);
    assert_int_equal(external_run(a, unknown, 1, "", NULL, 0),
                     SASL_F_NOT_AUTHORIZED);
}

/* ----------------------------------------------------------- DIGEST-MD5 */

typedef struct digest_run {
    const char *user;
    const char *password;
    const char *service;
    const char *authzid;
    int response_rc; /* server's answer to the digest-response */
    int verify_rc;   /* after the account answer */
    int final_rc;    /* after the empty response */
    /* How the account is answered: 0 the MD5 hash; 1 SCRAM credentials
     * then the hash; 2 the hash then SCRAM credentials; 3 only SCRAM. */
    int combined;
} digest_run_t;

static void gsasl_digest(const account_t *a, digest_run_t *r)
{
    sasl_server_params_t p = params_all();
    Gsasl *ctx;
    Gsasl_session *c;
    char *o = NULL;
    size_t olen = 0;
    buf_t out = BUF_INIT;

    r->response_rc = r->verify_rc = r->final_rc = 1000;
    assert_int_equal(gsasl_init(&ctx), GSASL_OK);
    assert_int_equal(gsasl_client_start(ctx, "DIGEST-MD5", &c), GSASL_OK);
    gsasl_property_set(c, GSASL_AUTHID, r->user);
    gsasl_property_set(c, GSASL_PASSWORD, r->password);
    gsasl_property_set(c, GSASL_SERVICE, r->service);
    gsasl_property_set(c, GSASL_HOSTNAME, DOMAIN);
    if (r->authzid != NULL)
        gsasl_property_set(c, GSASL_AUTHZID, r->authzid);

    sasl_server_t *s = sasl_server_new(SASL_MECH_DIGEST_MD5, &p);
    assert_int_equal(sasl_server_step(s, NULL, 0, &out), SASL_CHALLENGE);
    assert_int_equal(gsasl_step(c, out.data, out.len, &o, &olen),
                     GSASL_NEEDS_MORE);
    buf_reset(&out);
    r->response_rc = sasl_server_step(s, (unsigned char *)o, olen, &out);
    gsasl_free(o);
    o = NULL;
    if (r->response_rc != SASL_NEED_CREDENTIALS)
        goto done;
    if (strcmp(sasl_server_authcid(s), USER) != 0) {
        sasl_server_set_unknown_user(s);
    } else if (r->combined == 0) {
        sasl_server_set_digest_md5(s, a->md5);
    } else if (r->combined == 1) {
        sasl_server_set_credentials(s, &a->sha1, &a->sha256);
        sasl_server_set_digest_md5(s, a->md5);
    } else if (r->combined == 2) {
        sasl_server_set_digest_md5(s, a->md5);
        sasl_server_set_credentials(s, &a->sha1, &a->sha256);
    } else {
        sasl_server_set_credentials(s, &a->sha1, &a->sha256);
    }
    r->verify_rc = sasl_server_step(s, NULL, 0, &out);
    if (r->verify_rc != SASL_CHALLENGE)
        goto done;
    /* GNU SASL checks rspauth and has nothing more to say. */
    assert_int_equal(gsasl_step(c, out.data, out.len, &o, &olen), GSASL_OK);
    assert_int_equal(olen, 0);
    gsasl_free(o);
    buf_reset(&out);
    r->final_rc = sasl_server_step(s, NULL, 0, &out);
    if (r->final_rc == SASL_SUCCESS)
        assert_string_equal(sasl_server_username(s), USER);
done:
    sasl_server_free(s);
    buf_free(&out);
    gsasl_finish(c);
    gsasl_done(ctx);
}

static void test_digest_md5(void **state)
{
    const account_t *a = *state;
    digest_run_t ok = {.user = USER, .password = PASSWORD, .service = "xmpp"};
    gsasl_digest(a, &ok);
    assert_int_equal(ok.response_rc, SASL_NEED_CREDENTIALS);
    assert_int_equal(ok.verify_rc, SASL_CHALLENGE);
    assert_int_equal(ok.final_rc, SASL_SUCCESS);

    digest_run_t az = {.user = USER,
                       .password = PASSWORD,
                       .service = "xmpp",
                       .authzid = "juliet@example.org"};
    gsasl_digest(a, &az);
    assert_int_equal(az.final_rc, SASL_SUCCESS);

    digest_run_t other = {.user = USER,
                          .password = PASSWORD,
                          .service = "xmpp",
                          .authzid = "romeo@example.org"};
    gsasl_digest(a, &other);
    assert_int_equal(other.response_rc, SASL_F_INVALID_AUTHZID);

    digest_run_t wrong = {.user = USER, .password = "x", .service = "xmpp"};
    gsasl_digest(a, &wrong);
    assert_int_equal(wrong.response_rc, SASL_NEED_CREDENTIALS);
    assert_int_equal(wrong.verify_rc, SASL_F_NOT_AUTHORIZED);

    digest_run_t unknown = {
        .user = "romeo", .password = PASSWORD, .service = "xmpp"};
    gsasl_digest(a, &unknown);
    assert_int_equal(unknown.response_rc, SASL_NEED_CREDENTIALS);
    assert_int_equal(unknown.verify_rc, SASL_F_NOT_AUTHORIZED);

    /* A response computed for another service. */
    digest_run_t imap = {.user = USER, .password = PASSWORD, .service = "imap"};
    gsasl_digest(a, &imap);
    assert_int_equal(imap.response_rc, SASL_F_NOT_AUTHORIZED);
}

/* The stream answers with everything the store has, in one go. */
static void test_combined_answer(void **state)
{
    const account_t *a = *state;
    sasl_server_params_t p = params_all();
    buf_t out = BUF_INIT;
    char sf[512], cf[1024];

    /* DIGEST-MD5 given SCRAM credentials too, in both orders. */
    for (int order = 0; order < 2; order++) {
        digest_run_t r = {
            .user = USER, .password = PASSWORD, .service = "xmpp"};
        r.combined = order + 1;
        gsasl_digest(a, &r);
        assert_int_equal(r.final_rc, SASL_SUCCESS);
    }
    /* DIGEST-MD5 for an account without an MD5 hash. */
    digest_run_t none = {.user = USER, .password = PASSWORD, .service = "xmpp"};
    none.combined = 3;
    gsasl_digest(a, &none);
    assert_int_equal(none.verify_rc, SASL_F_NOT_AUTHORIZED);

    /* SCRAM given an MD5 hash too. */
    sasl_server_t *s = sasl_server_new(SASL_MECH_SCRAM_SHA256, &p);
    assert_int_equal(step_str(s, "n,,n=juliet,r=abcdef", &out),
                     SASL_NEED_CREDENTIALS);
    sasl_server_set_credentials(s, &a->sha1, &a->sha256);
    sasl_server_set_digest_md5(s, a->md5);
    /* Too late to change one's mind. */
    sasl_server_set_unknown_user(s);
    assert_int_equal(sasl_server_step(s, NULL, 0, &out), SASL_CHALLENGE);
    snprintf(sf, sizeof(sf), "%.*s", (int)out.len, out.data);
    buf_reset(&out);
    own_final(SCRAM_SHA256, PASSWORD, "n=juliet,r=abcdef", sf, "n,,", 3, NULL,
              NULL, cf, sizeof(cf));
    assert_int_equal(step_str(s, cf, &out), SASL_SUCCESS);
    sasl_server_free(s);

    /* An account with only an MD5 hash cannot use SCRAM (or PLAIN). */
    s = sasl_server_new(SASL_MECH_SCRAM_SHA256, &p);
    assert_int_equal(step_str(s, "n,,n=juliet,r=abcdef", &out),
                     SASL_NEED_CREDENTIALS);
    sasl_server_set_digest_md5(s, a->md5);
    assert_int_equal(sasl_server_step(s, NULL, 0, &out), SASL_CHALLENGE);
    snprintf(sf, sizeof(sf), "%.*s", (int)out.len, out.data);
    buf_reset(&out);
    own_final(SCRAM_SHA256, PASSWORD, "n=juliet,r=abcdef", sf, "n,,", 3, NULL,
              NULL, cf, sizeof(cf));
    assert_int_equal(step_str(s, cf, &out), SASL_F_NOT_AUTHORIZED);
    sasl_server_free(s);
    buf_free(&out);
}

static void test_digest_md5_malformed(void **state)
{
    const account_t *a = *state;
    sasl_server_params_t p = params_all();
    static const char *const bad[] = {
        "",
        "garbage",
        "username=\"juliet",               /* unterminated */
        "digest-uri=\"xmpp/example.org\"", /* no username */
        "username=\"juliet\"",             /* no digest-uri */
        "username=\"a\",username=\"b\",digest-uri=\"xmpp/example.org\"",
        "username=\"juliet\",digest-uri=\"xmpp/example.org\",charset=latin1",
        "username=\"juliet\" x,digest-uri=\"xmpp/example.org\"",
    };
    buf_t out = BUF_INIT;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sasl_server_t *s = sasl_server_new(SASL_MECH_DIGEST_MD5, &p);
        assert_int_equal(sasl_server_step(s, NULL, 0, &out), SASL_CHALLENGE);
        int rc = step_str(s, bad[i], &out);
        if (rc != SASL_F_MALFORMED_REQUEST)
            fail_msg("\"%s\": %d", bad[i], rc);
        sasl_server_free(s);
    }

    /* Our parse passes, GNU SASL's does not (no nonce etc.). */
    sasl_server_t *s = sasl_server_new(SASL_MECH_DIGEST_MD5, &p);
    assert_int_equal(sasl_server_step(s, NULL, 0, &out), SASL_CHALLENGE);
    assert_int_equal(
        step_str(s, "username=\"juliet\",digest-uri=\"xmpp/example.org\"",
                 &out),
        SASL_NEED_CREDENTIALS);
    sasl_server_set_digest_md5(s, a->md5);
    assert_int_equal(sasl_server_step(s, NULL, 0, &out),
                     SASL_F_MALFORMED_REQUEST);
    sasl_server_free(s);

    /* An initial response is not allowed (no subsequent authentication);
     * wrong host in digest-uri; a non-ASCII name without charset. */
    s = sasl_server_new(SASL_MECH_DIGEST_MD5, &p);
    assert_int_equal(step_str(s, "username=\"juliet\"", &out),
                     SASL_F_MALFORMED_REQUEST);
    sasl_server_free(s);
    static const char *const refused[] = {
        "username=\"juliet\",digest-uri=\"xmpp/example.net\"",
        "username=\"juliet\",digest-uri=\"xmpp/example.org/other\"",
        "username=\"j\xe9\",digest-uri=\"xmpp/example.org\"",
        "username=\"jul@iet\",digest-uri=\"xmpp/example.org\"",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        s = sasl_server_new(SASL_MECH_DIGEST_MD5, &p);
        assert_int_equal(sasl_server_step(s, NULL, 0, &out), SASL_CHALLENGE);
        int rc = step_str(s, refused[i], &out);
        if (rc != SASL_F_NOT_AUTHORIZED)
            fail_msg("\"%s\": %d", refused[i], rc);
        sasl_server_free(s);
    }
    /* Quoted-pairs unquote; the case of the host does not matter. */
    s = sasl_server_new(SASL_MECH_DIGEST_MD5, &p);
    assert_int_equal(sasl_server_step(s, NULL, 0, &out), SASL_CHALLENGE);
    assert_int_equal(step_str(s,
                              " username = \"ju\\liet\" , , "
                              "digest-uri=\"xmpp/Example.ORG/example.org\"",
                              &out),
                     SASL_NEED_CREDENTIALS);
    assert_string_equal(sasl_server_authcid(s), USER);
    sasl_server_free(s);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_downgrade_hash_vector),
        cmocka_unit_test(test_scram_sha1),
        cmocka_unit_test(test_scram_sha256),
        cmocka_unit_test(test_scram_plus_exporter),
        cmocka_unit_test(test_scram_plus_unique),
        cmocka_unit_test(test_scram_h_attribute),
        cmocka_unit_test(test_scram_wrong_password),
        cmocka_unit_test(test_scram_unknown_user),
        cmocka_unit_test(test_scram_missing_hash),
        cmocka_unit_test(test_scram_cb_mismatch),
        cmocka_unit_test(test_scram_cb_unavailable),
        cmocka_unit_test(test_scram_authzid),
        cmocka_unit_test(test_scram_y_flag),
        cmocka_unit_test(test_scram_cb_flags_vs_mech),
        cmocka_unit_test(test_scram_plus_own_client),
        cmocka_unit_test(test_scram_malformed_first),
        cmocka_unit_test(test_scram_names),
        cmocka_unit_test(test_scram_tampered_final),
        cmocka_unit_test(test_scram_out_of_order),
        cmocka_unit_test(test_not_advertised),
        cmocka_unit_test(test_params_copied),
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_plain_unknown_user_says_no),
        cmocka_unit_test(test_plain_encryption_required),
        cmocka_unit_test(test_plain_malformed),
        cmocka_unit_test(test_external),
        cmocka_unit_test(test_digest_md5),
        cmocka_unit_test(test_digest_md5_malformed),
        cmocka_unit_test(test_combined_answer),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
