/* Unit tests for lib/sasl/scram: SCRAM credentials against the RFC 5802 and
 * RFC 7677 examples and against GNU SASL, SaslPrep, the PLAIN password
 * check, fake salts and the DIGEST-MD5 hash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <gsasl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "base/base64.h"
#include "sasl/scram.h"

static const EVP_MD *md_of(scram_hash_t h)
{
    return h == SCRAM_SHA1 ? EVP_sha1() : EVP_sha256();
}

static size_t b64dec(const char *in, unsigned char *out, size_t size)
{
    long n = base64_decode(in, strlen(in), out, size);
    assert_true(n > 0);
    return (size_t)n;
}

/* An RFC example exchange, checked the way a server checks it: the
 * ClientProof must recover a ClientKey whose hash is our StoredKey, and
 * our ServerKey must give the RFC's ServerSignature. */
struct rfc_example {
    scram_hash_t hash;
    const char *salt_b64;
    const char *client_first_bare;
    const char *server_first;
    const char *client_final_without_proof;
    const char *proof_b64;
    const char *server_signature_b64;
};

static void check_rfc_example(const struct rfc_example *ex)
{
    unsigned char salt[64], proof[64], sig[64];
    size_t salt_len = b64dec(ex->salt_b64, salt, sizeof(salt));
    size_t proof_len = b64dec(ex->proof_b64, proof, sizeof(proof));
    size_t sig_len = b64dec(ex->server_signature_b64, sig, sizeof(sig));
    size_t klen = scram_key_len(ex->hash);
    scram_cred_t c;

    assert_int_equal(proof_len, klen);
    assert_int_equal(sig_len, klen);
    assert_int_equal(scram_derive(ex->hash, "pencil", salt, salt_len, 4096, &c),
                     0);
    assert_int_equal(c.key_len, klen);
    assert_int_equal(c.iterations, 4096);
    assert_int_equal(c.salt_len, salt_len);
    assert_memory_equal(c.salt, salt, salt_len);

    /* RFC 5802 §3: AuthMessage := client-first-message-bare + "," +
     * server-first-message + "," + client-final-message-without-proof */
    char auth[512];
    int alen = snprintf(auth, sizeof(auth), "%s,%s,%s", ex->client_first_bare,
                        ex->server_first, ex->client_final_without_proof);
    assert_true(alen > 0 && (size_t)alen < sizeof(auth));

    unsigned char client_sig[EVP_MAX_MD_SIZE], server_sig[EVP_MAX_MD_SIZE];
    unsigned char client_key[EVP_MAX_MD_SIZE], h[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    assert_non_null(HMAC(md_of(ex->hash), c.stored_key, (int)klen,
                         (const unsigned char *)auth, (size_t)alen, client_sig,
                         &n));
    for (size_t i = 0; i < klen; i++)
        client_key[i] = proof[i] ^ client_sig[i];
    assert_int_equal(EVP_Digest(client_key, klen, h, &n, md_of(ex->hash), NULL),
                     1);
    assert_memory_equal(h, c.stored_key, klen);

    assert_non_null(HMAC(md_of(ex->hash), c.server_key, (int)klen,
                         (const unsigned char *)auth, (size_t)alen, server_sig,
                         &n));
    assert_memory_equal(server_sig, sig, klen);
}

/* RFC 5802 §5. */
static void test_rfc5802_example(void **state)
{
    (void)state;
    static const struct rfc_example ex = {
        SCRAM_SHA1,
        "QSXCR+Q6sek8bf92",
        "n=user,r=fyko+d2lbbFgONRv9qkxdawL",
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,"
        "i=4096",
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j",
        "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        "rmF9pqV8S7suAoZWja4dJRkFsKQ=",
    };
    check_rfc_example(&ex);
}

/* RFC 7677 §3. */
static void test_rfc7677_example(void **state)
{
    (void)state;
    static const struct rfc_example ex = {
        SCRAM_SHA256,
        "W22ZaJ0SNY7soEsUEjb6gQ==",
        "n=user,r=rOprNGfwEbeRWgbNEkqO",
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    };
    check_rfc_example(&ex);
}

/* Our credentials from scram_make() (random salt) must equal GNU SASL's for
 * the same password, salt and count; the password includes characters that
 * SaslPrep maps (U+00A0 no-break space to space, U+00AD soft hyphen to
 * nothing) so that both sides' normalisation is compared too. */
static void check_against_gsasl(scram_hash_t h, const char *password,
                                unsigned iterations)
{
    scram_cred_t c;
    char salted[GSASL_HASH_MAX_SIZE], client_key[GSASL_HASH_MAX_SIZE];
    char server_key[GSASL_HASH_MAX_SIZE], stored_key[GSASL_HASH_MAX_SIZE];

    assert_int_equal(scram_make(h, password, iterations, &c), 0);
    assert_int_equal(c.salt_len, SCRAM_SALT_LEN);
    assert_int_equal(c.iterations, iterations);
    assert_int_equal(c.key_len, scram_key_len(h));
    int rc = gsasl_scram_secrets_from_password(
        h == SCRAM_SHA1 ? GSASL_HASH_SHA1 : GSASL_HASH_SHA256, password,
        iterations, (const char *)c.salt, c.salt_len, salted, client_key,
        server_key, stored_key);
    assert_int_equal(rc, GSASL_OK);
    assert_memory_equal(c.stored_key, stored_key, c.key_len);
    assert_memory_equal(c.server_key, server_key, c.key_len);
}

static void test_matches_gsasl(void **state)
{
    (void)state;
    check_against_gsasl(SCRAM_SHA256, "pencil", 4096);
    check_against_gsasl(SCRAM_SHA1, "pencil", 4096);
    check_against_gsasl(SCRAM_SHA256, "p\xc2\xa0s\xc2\xadw\xc3\xa9rd", 1000);
    check_against_gsasl(SCRAM_SHA1, "p\xc2\xa0s\xc2\xadw\xc3\xa9rd", 1000);
}

static void test_salts_are_fresh(void **state)
{
    (void)state;
    scram_cred_t a, b;
    assert_int_equal(scram_make(SCRAM_SHA256, "pencil", 4096, &a), 0);
    assert_int_equal(scram_make(SCRAM_SHA256, "pencil", 4096, &b), 0);
    assert_memory_not_equal(a.salt, b.salt, SCRAM_SALT_LEN);
    assert_memory_not_equal(a.stored_key, b.stored_key, a.key_len);
}

/* RFC 4013 §3's examples, plus the mappings and refusals we rely on. */
static void test_saslprep(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out; /* out NULL: refused */
    } cases[] = {
        {"I\xc2\xadX", "IX"},   /* soft hyphen mapped to nothing */
        {"user", "user"},       /* no transformation */
        {"USER", "USER"},       /* case preserved */
        {"\xc2\xaa", "a"},      /* NFKC: ordinal indicator */
        {"\xe2\x85\xa8", "IX"}, /* NFKC: Roman numeral nine */
        {"\x07", NULL},         /* prohibited: control character */
        {"\xd8\xa7\x31", NULL}, /* bidi: RandALCat not last */
        {"a\xc2\xa0"
         "b",
         "a b"},                    /* no-break space to space */
        {"\xf3\xa0\x80\x81", NULL}, /* prohibited: language tag U+E0001 */
        {"\xc8\xb7", NULL},         /* U+0237, unassigned in Unicode 3.2 */
        {"\xff", NULL},             /* not UTF-8 */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = scram_saslprep(cases[i].in);
        if (cases[i].out == NULL) {
            if (out != NULL)
                fail_msg("case %zu: expected refusal, got \"%s\"", i, out);
        } else {
            if (out == NULL)
                fail_msg("case %zu: refused", i);
            assert_string_equal(out, cases[i].out);
        }
        free(out);
    }
    assert_null(scram_saslprep(NULL));
}

static void test_derive_refuses(void **state)
{
    (void)state;
    scram_cred_t c;
    unsigned char salt[SCRAM_SALT_MAX + 1] = {1};

    assert_int_equal(scram_derive(SCRAM_SHA1, "", salt, 16, 4096, &c), -1);
    /* Maps to the empty string. */
    assert_int_equal(scram_derive(SCRAM_SHA1, "\xc2\xad", salt, 16, 4096, &c),
                     -1);
    assert_int_equal(scram_derive(SCRAM_SHA1, "\x07", salt, 16, 4096, &c), -1);
    assert_int_equal(scram_derive(SCRAM_SHA1, "pw", salt, 0, 4096, &c), -1);
    assert_int_equal(
        scram_derive(SCRAM_SHA1, "pw", salt, SCRAM_SALT_MAX + 1, 4096, &c), -1);
    assert_int_equal(scram_derive(SCRAM_SHA1, "pw", salt, 16, 0, &c), -1);
    assert_int_equal(scram_derive(SCRAM_SHA1, "pw", salt, 16, 1u << 31, &c),
                     -1);
    assert_int_equal(c.key_len, 0); /* cleared on failure */
    assert_int_equal(scram_make(SCRAM_SHA256, "", 4096, &c), -1);
    assert_int_equal(scram_key_len(SCRAM_SHA1), 20);
    assert_int_equal(scram_key_len(SCRAM_SHA256), 32);
}

static void test_check_password(void **state)
{
    (void)state;
    scram_cred_t c1, c256;

    assert_int_equal(scram_make(SCRAM_SHA1, "correct horse", 4096, &c1), 0);
    assert_int_equal(scram_make(SCRAM_SHA256, "correct horse", 4096, &c256), 0);
    assert_true(scram_check_password(SCRAM_SHA1, &c1, "correct horse"));
    assert_true(scram_check_password(SCRAM_SHA256, &c256, "correct horse"));
    /* SaslPrep makes these the same password. */
    assert_true(
        scram_check_password(SCRAM_SHA256, &c256, "correct\xc2\xa0horse"));
    assert_true(scram_check_password(SCRAM_SHA256, &c256,
                                     "corr\xc2\xad"
                                     "ect horse"));

    assert_false(scram_check_password(SCRAM_SHA1, &c1, "correct horsE"));
    assert_false(scram_check_password(SCRAM_SHA256, &c256, "correct hors"));
    assert_false(scram_check_password(SCRAM_SHA256, &c256, ""));
    assert_false(scram_check_password(SCRAM_SHA256, &c256, "\x07"));
    /* Credentials of the other hash never match. */
    assert_false(scram_check_password(SCRAM_SHA256, &c1, "correct horse"));
    assert_false(scram_check_password(SCRAM_SHA1, &c256, "correct horse"));
    assert_false(scram_check_password(SCRAM_SHA1, NULL, "correct horse"));
}

static void test_fake_salt(void **state)
{
    (void)state;
    static const unsigned char secret[] = "0123456789abcdef0123456789abcdef";
    static const unsigned char other[] = "fedcba9876543210fedcba9876543210";
    unsigned char a[SCRAM_SALT_LEN], b[SCRAM_SALT_LEN];
    unsigned char c[SCRAM_SALT_LEN], d[SCRAM_SALT_LEN];

    assert_int_equal(scram_fake_salt(secret, 32, "example.org", "ghost", a), 0);
    assert_int_equal(scram_fake_salt(secret, 32, "example.org", "ghost", b), 0);
    assert_memory_equal(a, b, SCRAM_SALT_LEN); /* deterministic */

    assert_int_equal(scram_fake_salt(secret, 32, "example.org", "spook", c), 0);
    assert_memory_not_equal(a, c, SCRAM_SALT_LEN); /* per user */
    assert_int_equal(scram_fake_salt(other, 32, "example.org", "ghost", d), 0);
    assert_memory_not_equal(a, d, SCRAM_SALT_LEN); /* per server secret */

    /* The separator keeps the split between domain and node. */
    assert_int_equal(scram_fake_salt(secret, 32, "ab", "c", c), 0);
    assert_int_equal(scram_fake_salt(secret, 32, "a", "bc", d), 0);
    assert_memory_not_equal(c, d, SCRAM_SALT_LEN);

    /* It is HMAC-SHA-256(secret, domain "\0" node), truncated. */
    unsigned char mac[32];
    unsigned n = 0;
    static const char msg[] = "example.org\0ghost";
    assert_non_null(HMAC(EVP_sha256(), secret, 32, (const unsigned char *)msg,
                         sizeof(msg) - 1, mac, &n));
    assert_memory_equal(a, mac, SCRAM_SALT_LEN);
}

static void test_digest_md5_hash(void **state)
{
    (void)state;
    unsigned char out[16];
    /* md5sum of "chris:elwood.innosoft.com:secret" (the RFC 2831 §4
     * example's user, realm and password). */
    static const unsigned char expected[16] = {
        0xeb, 0x5a, 0x75, 0x00, 0x53, 0xe4, 0xd2, 0xc3,
        0x4a, 0xa8, 0x4b, 0xbc, 0x9b, 0x0b, 0x6e, 0xe7,
    };
    assert_int_equal(
        scram_digest_md5_hash("chris", "elwood.innosoft.com", "secret", out),
        0);
    assert_memory_equal(out, expected, 16);

    unsigned char ref[16];
    unsigned n = 0;
    static const char in[] = "alice:example.org:p\xc3\xa4ss";
    assert_int_equal(EVP_Digest(in, sizeof(in) - 1, ref, &n, EVP_md5(), NULL),
                     1);
    assert_int_equal(
        scram_digest_md5_hash("alice", "example.org", "p\xc3\xa4ss", out), 0);
    assert_memory_equal(out, ref, 16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc5802_example),
        cmocka_unit_test(test_rfc7677_example),
        cmocka_unit_test(test_matches_gsasl),
        cmocka_unit_test(test_salts_are_fresh),
        cmocka_unit_test(test_saslprep),
        cmocka_unit_test(test_derive_refuses),
        cmocka_unit_test(test_check_password),
        cmocka_unit_test(test_fake_salt),
        cmocka_unit_test(test_digest_md5_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
