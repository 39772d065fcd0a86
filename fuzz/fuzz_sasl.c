/* libFuzzer target: the server side of SASL (lib/sasl) driven directly.
 *
 * Input layout: byte 0 picks the mechanism (mod SASL_MECH_COUNT), bytes 1
 * and 2 are flags, the rest are client messages separated by 0xFF bytes,
 * fed one per step. The fake store knows one account, juliet (password
 * r0m30), whose SCRAM credentials are computed once with one PBKDF2
 * iteration so that PLAIN's password check stays cheap.
 *
 * Byte 1:
 *   0-1  the account answer: 0 real credentials (both hashes), 1 unknown
 *        user whatever the name, 2 credentials with random keys, 3 only one
 *        hash (bit 2 picks SHA-256, else SHA-1)
 *   2    see above
 *   3    TLS
 *   4    tls-exporter data present;  5  tls-unique data present
 *   6    the channel-binding types present are advertised (XEP-0440)
 *   7    helper: the harness plays an honest client for the message after
 *        a SCRAM server-first or a DIGEST-MD5 challenge; the first byte of
 *        the fuzzer's message (mod 4) then picks a tampering: 0 none, 1 a
 *        wrong proof (SCRAM) or password (DIGEST-MD5), 2 wrong channel
 *        binding data, 3 the server's nonce cut short
 * Byte 2:
 *   0    advertise no -PLUS mechanism;  1  do not advertise this mechanism
 *   2    two certificate names (juliet, romeo) instead of juliet alone
 *   3    answer the account with its DIGEST-MD5 hash as well
 *   4    after NEED_CREDENTIALS, step with the next fuzz message instead of
 *        no input (out of order unless it is empty)
 *   5-6  iterations of the fake credentials of unknown users (1..4)
 *
 * Properties checked (abort() on violation):
 *  - results are in range; sasl_condition() names exactly the failures;
 *  - NEED_CREDENTIALS comes with a Nodeprep-stable account name;
 *  - nothing is appended to `out` by a failure or a NEED_* result;
 *  - the username is answered only after SUCCESS, and then it is juliet,
 *    the only account: never for an unknown user, never with random keys
 *    (SCRAM, PLAIN), never with the wrong hash, never for DIGEST-MD5
 *    without the real MD5 hash, never for EXTERNAL without a certificate
 *    name for it;
 *  - PLAIN's password check says yes exactly when the account is known
 *    with real credentials and the SaslPrep'd password is r0m30;
 *  - SCRAM's server-first starts with the client nonce, carries the
 *    account's salt and iteration count (or the deterministic fake salt of
 *    an unknown user) and the XEP-0474 hash recomputed here; with the
 *    helper, an honest client-final succeeds exactly when the credentials
 *    are real, with the right server signature, and a tampered one fails;
 *  - DIGEST-MD5 with the helper: GNU SASL's client succeeds exactly when
 *    the real hash was given, and accepts the rspauth;
 *  - after SUCCESS or a failure every step fails and no username is given.
 * Everything allocated is freed (LeakSanitizer runs at exit). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsasl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "base/base64.h"
#include "base/buf.h"
#include "base/rand.h"
#include "jid/jid.h"
#include "sasl/sasl.h"
#include "sasl/scram.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define USER     "juliet"
#define PASSWORD "r0m30"
#define DOMAIN   "localhost"
#define MAX_MSGS 16

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_sasl: %s\n", what);
    abort();
}

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            fail(#cond);                                                       \
    } while (0)

/* ------------------------------------------------------- fixed account */

static const unsigned char SALT[SCRAM_SALT_LEN] = "fuzz-salt-012345";
static const unsigned char SECRET[32] = "fuzz server secret, fixed value";
static const unsigned char CB_EXPORTER[32] = {
    1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const unsigned char CB_UNIQUE[12] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5,
                                            0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab};

typedef struct keys {
    scram_cred_t real;   /* from scram_derive(), one iteration */
    scram_cred_t random; /* same salt, random keys */
    unsigned char client_key[SCRAM_KEY_MAX];
} keys_t;

static keys_t K[2]; /* indexed by scram_hash_t */
static unsigned char MD5_REAL[16];

static const EVP_MD *md_of(scram_hash_t h)
{
    return h == SCRAM_SHA1 ? EVP_sha1() : EVP_sha256();
}

static void hmac_(scram_hash_t h, const unsigned char *key, size_t klen,
                  const void *data, size_t len, unsigned char *out)
{
    unsigned n = 0;
    CHECK(HMAC(md_of(h), key, (int)klen, data, len, out, &n) != NULL);
    CHECK(n == scram_key_len(h));
}

/* The client side of RFC 5802 §3, computed here independently of
 * lib/sasl/scram.c, and checked against scram_derive(). */
static void init_keys(scram_hash_t h)
{
    keys_t *k = &K[h];
    size_t klen = scram_key_len(h);
    unsigned char salted[SCRAM_KEY_MAX], stored[SCRAM_KEY_MAX];
    unsigned char server[SCRAM_KEY_MAX];
    unsigned n = 0;

    CHECK(scram_derive(h, PASSWORD, SALT, sizeof(SALT), 1, &k->real) == 0);
    CHECK(PKCS5_PBKDF2_HMAC(PASSWORD, (int)strlen(PASSWORD), SALT,
                            (int)sizeof(SALT), 1, md_of(h), (int)klen,
                            salted) == 1);
    hmac_(h, salted, klen, "Client Key", 10, k->client_key);
    CHECK(EVP_Digest(k->client_key, klen, stored, &n, md_of(h), NULL) == 1);
    hmac_(h, salted, klen, "Server Key", 10, server);
    CHECK(k->real.key_len == klen && k->real.iterations == 1);
    CHECK(memcmp(k->real.stored_key, stored, klen) == 0);
    CHECK(memcmp(k->real.server_key, server, klen) == 0);

    k->random = k->real;
    CHECK(rand_bytes(k->random.stored_key, klen) == 0);
    CHECK(rand_bytes(k->random.server_key, klen) == 0);
}

/* FUZZ_SASL_TRACE=1 prints each step's result (for checking seeds). */
static bool trace;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    trace = getenv("FUZZ_SASL_TRACE") != NULL;
    init_keys(SCRAM_SHA1);
    init_keys(SCRAM_SHA256);
    CHECK(scram_digest_md5_hash(USER, DOMAIN, PASSWORD, MD5_REAL) == 0);
    return 0;
}

/* ------------------------------------------------------------- helpers */

static bool is_scram(sasl_mech_t m)
{
    return m <= SASL_MECH_SCRAM_SHA1;
}

static bool is_plus(sasl_mech_t m)
{
    return m == SASL_MECH_SCRAM_SHA256_PLUS || m == SASL_MECH_SCRAM_SHA1_PLUS;
}

static scram_hash_t hash_of(sasl_mech_t m)
{
    return m == SASL_MECH_SCRAM_SHA1 || m == SASL_MECH_SCRAM_SHA1_PLUS
               ? SCRAM_SHA1
               : SCRAM_SHA256;
}

static const unsigned char *find_mem(const unsigned char *p, size_t len,
                                     const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(p + i, needle, n) == 0)
            return p + i;
    return NULL;
}

/* One fuzz run. */
typedef struct run {
    sasl_mech_t mech;
    sasl_server_params_t params;
    const char *cert_names[2];
    unsigned acct;     /* byte 1 bits 0-1 */
    bool only_sha256;  /* acct 3 */
    bool give_md5;     /* byte 2 bit 3 */
    bool helper;       /* byte 1 bit 7 */
    bool raw_continue; /* byte 2 bit 4 */

    /* What the account answer was. */
    bool answered;
    bool known;
    bool have_sha1, have_sha256; /* real or random, as given */

    /* The message that named the account (SCRAM's client-first, PLAIN's
     * message), and SCRAM's server-first. */
    unsigned char *first;
    size_t first_len;
    char *server_first;

    /* PLAIN: what the password check said. */
    bool checked;
    bool check_ok;

    /* DIGEST-MD5 helper client. */
    Gsasl *gctx;
    Gsasl_session *gcli;
    bool digest_honest; /* the helper answered with the right password */
} run_t;

/* Whether the account answer gave real credentials for hash h. */
static bool real_for(const run_t *r, scram_hash_t h)
{
    if (!r->known)
        return false;
    switch (r->acct) {
    case 0:
        return true;
    case 3:
        return r->only_sha256 == (h == SCRAM_SHA256);
    default:
        return false;
    }
}

/* The fake store: juliet exists unless told otherwise. */
static void answer_account(run_t *r, sasl_server_t *s)
{
    const char *authcid = sasl_server_authcid(s);
    CHECK(authcid != NULL && authcid[0] != '\0');
    /* The name handed to the store is already prepared. */
    char again[JID_PART_BUF];
    size_t n = 0;
    CHECK(jid_prepare_node(authcid, strlen(authcid), 0, again, &n) == JID_OK);
    CHECK(strcmp(again, authcid) == 0);

    r->answered = true;
    r->known = r->acct != 1 && strcmp(authcid, USER) == 0;
    if (!r->known) {
        sasl_server_set_unknown_user(s);
        return;
    }
    const scram_cred_t *sha1 = NULL, *sha256 = NULL;
    switch (r->acct) {
    case 0:
        sha1 = &K[SCRAM_SHA1].real;
        sha256 = &K[SCRAM_SHA256].real;
        break;
    case 2:
        sha1 = &K[SCRAM_SHA1].random;
        sha256 = &K[SCRAM_SHA256].random;
        break;
    default:
        if (r->only_sha256)
            sha256 = &K[SCRAM_SHA256].real;
        else
            sha1 = &K[SCRAM_SHA1].real;
        break;
    }
    r->have_sha1 = sha1 != NULL;
    r->have_sha256 = sha256 != NULL;
    if (r->give_md5 && (r->acct & 1) == 0) {
        /* Real hash with real credentials, a random one with random keys. */
        static unsigned char md5_random[16];
        rand_bytes(md5_random, sizeof(md5_random));
        sasl_server_set_digest_md5(s, r->acct == 0 ? MD5_REAL : md5_random);
    }
    /* EXTERNAL needs only existence; without SCRAM credentials the digest
     * hash (or nothing) makes the account exist. */
    sasl_server_set_credentials(s, sha1, sha256);
}

/* PLAIN: the password of the message the exchange started with. */
static bool plain_expect_ok(const run_t *r, const unsigned char *m, size_t len)
{
    const unsigned char *n1 = memchr(m, 0, len);
    if (n1 == NULL)
        return false;
    const unsigned char *n2 = memchr(n1 + 1, 0, len - (size_t)(n1 + 1 - m));
    if (n2 == NULL)
        return false;
    size_t pwlen = len - (size_t)(n2 + 1 - m);
    char *pw = malloc(pwlen + 1);
    CHECK(pw != NULL);
    memcpy(pw, n2 + 1, pwlen);
    pw[pwlen] = '\0';
    char *prep = scram_saslprep(pw);
    bool ok = prep != NULL && strcmp(prep, PASSWORD) == 0;
    free(prep);
    free(pw);
    bool real = real_for(r, SCRAM_SHA256) || real_for(r, SCRAM_SHA1);
    return ok && real;
}

/* ------------------------------------------------------ SCRAM checking */

/* XEP-0474: the hash of the sorted advertised names, recomputed here. */
static void expected_downgrade(const run_t *r, char *out, size_t size)
{
    const char *names[SASL_MECH_COUNT];
    size_t n = 0;
    for (int i = 0; i < SASL_MECH_COUNT; i++)
        if (r->params.advertised_mechs & 1u << i)
            names[n++] = sasl_mech_name((sasl_mech_t)i);
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            const char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    buf_t s = BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            buf_append(&s, "\x1e", 1);
        buf_append_str(&s, names[i]);
    }
    /* "tls-exporter" < "tls-unique" already. */
    unsigned cb = r->params.advertised_cb;
    if (cb != 0) {
        buf_append(&s, "\x1f", 1);
        if (cb & SASL_CB_TLS_EXPORTER)
            buf_append_str(&s, "tls-exporter");
        if ((cb & SASL_CB_TLS_EXPORTER) && (cb & SASL_CB_TLS_UNIQUE))
            buf_append(&s, "\x1e", 1);
        if (cb & SASL_CB_TLS_UNIQUE)
            buf_append_str(&s, "tls-unique");
    }
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned dlen = 0;
    CHECK(EVP_Digest(s.data != NULL ? s.data : "", s.len, d, &dlen,
                     md_of(hash_of(r->mech)), NULL) == 1);
    CHECK(base64_encode(d, dlen, BASE64_STD, out, size) > 0);
    buf_free(&s);
}

/* The value of attribute `name` ("r=" etc.) in a SCRAM message, up to the
 * next ','. */
static bool attr(const char *msg, const char *name, const char **v,
                 size_t *vlen)
{
    size_t nl = strlen(name);
    const char *p = msg;
    for (;;) {
        if (strncmp(p, name, nl) == 0) {
            *v = p + nl;
            const char *c = strchr(*v, ',');
            *vlen = c != NULL ? (size_t)(c - *v) : strlen(*v);
            return true;
        }
        p = strchr(p, ',');
        if (p == NULL)
            return false;
        p++;
    }
}

/* The client-first split as RFC 5802 §7 has it: the gs2-header is up to
 * and including the second top-level ','. */
static size_t gs2_len_of(const unsigned char *m, size_t len)
{
    const unsigned char *c1 = memchr(m, ',', len);
    CHECK(c1 != NULL);
    const unsigned char *c2 = memchr(c1 + 1, ',', len - (size_t)(c1 + 1 - m));
    CHECK(c2 != NULL);
    return (size_t)(c2 + 1 - m);
}

static void check_server_first(run_t *r, sasl_server_t *s, const buf_t *out)
{
    CHECK(out->len > 0 && memchr(out->data, 0, out->len) == NULL);
    free(r->server_first);
    r->server_first = strndup(out->data, out->len);
    CHECK(r->server_first != NULL);
    const char *sf = r->server_first;
    CHECK(strncmp(sf, "r=", 2) == 0);
    /* RFC 5802 §6: binding data exactly on -PLUS, and the data exists. */
    CHECK(is_plus(r->mech) == (r->first[0] == 'p'));
    if (is_plus(r->mech))
        CHECK(find_mem(r->first, r->first_len, "p=tls-unique,") == r->first
                  ? r->params.cb_unique != NULL
                  : r->params.cb_exporter != NULL);

    /* The client nonce is a prefix of the combined one. */
    size_t gs2 = gs2_len_of(r->first, r->first_len);
    char *bare = strndup((const char *)r->first + gs2, r->first_len - gs2);
    CHECK(bare != NULL);
    const char *cn, *sn;
    size_t cnl, snl;
    CHECK(attr(bare, "r=", &cn, &cnl));
    CHECK(attr(sf, "r=", &sn, &snl));
    CHECK(snl > cnl && memcmp(sn, cn, cnl) == 0);
    free(bare);

    /* Salt and iterations: the account's, or the fake ones. */
    scram_hash_t h = hash_of(r->mech);
    const char *sv, *iv, *hv;
    size_t svl, ivl, hvl;
    CHECK(attr(sf, "s=", &sv, &svl));
    CHECK(attr(sf, "i=", &iv, &ivl));
    CHECK(attr(sf, "h=", &hv, &hvl));
    unsigned char salt[SCRAM_SALT_MAX + 3];
    long sl = base64_decode(sv, svl, salt, sizeof(salt));
    char iter[16];
    bool given = r->known && (h == SCRAM_SHA1 ? r->have_sha1 : r->have_sha256);
    if (given) {
        CHECK(sl == (long)sizeof(SALT) &&
              memcmp(salt, SALT, sizeof(SALT)) == 0);
        snprintf(iter, sizeof(iter), "1");
    } else {
        unsigned char fake[SCRAM_SALT_LEN];
        CHECK(scram_fake_salt(SECRET, sizeof(SECRET), DOMAIN,
                              sasl_server_authcid(s), fake) == 0);
        CHECK(sl == SCRAM_SALT_LEN && memcmp(salt, fake, sizeof(fake)) == 0);
        snprintf(iter, sizeof(iter), "%u", r->params.scram_iterations);
    }
    CHECK(ivl == strlen(iter) && memcmp(iv, iter, ivl) == 0);
    char want_h[128];
    expected_downgrade(r, want_h, sizeof(want_h));
    CHECK(hvl == strlen(want_h) && memcmp(hv, want_h, hvl) == 0);
}

/* An honest client-final for the exchange so far, tampered with as
 * `tamper` says (0: not at all). Fills *expect_sig with the server
 * signature a success must carry. */
static char *honest_final(const run_t *r, unsigned tamper,
                          unsigned char *expect_sig)
{
    scram_hash_t h = hash_of(r->mech);
    size_t klen = scram_key_len(h);
    size_t gs2 = gs2_len_of(r->first, r->first_len);

    /* c= base64(gs2-header [cb-data]) */
    buf_t cb = BUF_INIT;
    buf_append(&cb, r->first, gs2);
    if (r->first[0] == 'p') {
        if (find_mem(r->first, gs2, "p=tls-unique,") == r->first)
            buf_append(&cb, CB_UNIQUE, sizeof(CB_UNIQUE));
        else
            buf_append(&cb, CB_EXPORTER, sizeof(CB_EXPORTER));
    }
    if (tamper == 2)
        cb.data[cb.len - 1] ^= 1;
    size_t cap = base64_encoded_size(cb.len);
    char *cb64 = malloc(cap);
    CHECK(cb64 != NULL);
    CHECK(base64_encode(cb.data, cb.len, BASE64_STD, cb64, cap) >= 0);
    buf_free(&cb);

    const char *nv;
    size_t nvl;
    CHECK(attr(r->server_first, "r=", &nv, &nvl));
    if (tamper == 3)
        nvl--; /* the server's nonce, cut short */

    buf_t fwp = BUF_INIT; /* client-final-message-without-proof */
    buf_append_str(&fwp, "c=");
    buf_append_str(&fwp, cb64);
    buf_append_str(&fwp, ",r=");
    buf_append(&fwp, nv, nvl);
    free(cb64);

    buf_t am = BUF_INIT;
    buf_append(&am, r->first + gs2, r->first_len - gs2);
    buf_append_str(&am, ",");
    buf_append_str(&am, r->server_first);
    buf_append_str(&am, ",");
    buf_append(&am, fwp.data, fwp.len);

    const keys_t *k = &K[h];
    unsigned char sig[SCRAM_KEY_MAX], proof[SCRAM_KEY_MAX];
    hmac_(h, k->real.stored_key, klen, am.data, am.len, sig);
    for (size_t i = 0; i < klen; i++)
        proof[i] = k->client_key[i] ^ sig[i];
    if (tamper == 1)
        proof[0] ^= 0x80;
    hmac_(h, k->real.server_key, klen, am.data, am.len, expect_sig);
    buf_free(&am);

    char p64[SCRAM_KEY_MAX * 2];
    CHECK(base64_encode(proof, klen, BASE64_STD, p64, sizeof(p64)) > 0);
    buf_append_str(&fwp, ",p=");
    buf_append_str(&fwp, p64);
    return fwp.data; /* NUL-terminated, caller frees */
}

/* ------------------------------------------------- DIGEST-MD5 helper */

static char *digest_response(run_t *r, const buf_t *challenge, bool honest,
                             size_t *len)
{
    char *o = NULL;
    size_t olen = 0;
    if (r->gcli == NULL) {
        CHECK(gsasl_init(&r->gctx) == GSASL_OK);
        CHECK(gsasl_client_start(r->gctx, "DIGEST-MD5", &r->gcli) == GSASL_OK);
        gsasl_property_set(r->gcli, GSASL_AUTHID, USER);
        gsasl_property_set(r->gcli, GSASL_PASSWORD,
                           honest ? PASSWORD : "r0m31");
        gsasl_property_set(r->gcli, GSASL_SERVICE, "xmpp");
        gsasl_property_set(r->gcli, GSASL_HOSTNAME, DOMAIN);
    }
    int rc = gsasl_step(r->gcli, challenge->data, challenge->len, &o, &olen);
    if (rc != GSASL_NEEDS_MORE) {
        gsasl_free(o);
        return NULL;
    }
    r->digest_honest = honest;
    *len = olen;
    return o;
}

/* ----------------------------------------------------------- the driver */

static bool valid_rc(int rc)
{
    return (rc >= SASL_SUCCESS && rc <= SASL_NEED_PASSWORD_CHECK) ||
           (rc <= SASL_F_ABORTED && rc >= SASL_F_TEMPORARY_AUTH_FAILURE);
}

static void check_success(const run_t *r, sasl_server_t *s, const buf_t *out)
{
    const char *u = sasl_server_username(s);
    CHECK(u != NULL && strcmp(u, USER) == 0);
    CHECK(r->answered && r->known);
    CHECK(sasl_server_authcid(s) != NULL &&
          strcmp(sasl_server_authcid(s), USER) == 0);
    if (is_scram(r->mech)) {
        CHECK(real_for(r, hash_of(r->mech)));
        CHECK(out->len > 2 && memcmp(out->data, "v=", 2) == 0);
    } else {
        CHECK(out->len == 0);
    }
    switch (r->mech) {
    case SASL_MECH_PLAIN:
        CHECK(r->checked && r->check_ok);
        CHECK(real_for(r, SCRAM_SHA256) || real_for(r, SCRAM_SHA1));
        CHECK(r->params.tls);
        break;
    case SASL_MECH_EXTERNAL:
        CHECK(r->params.cert_name_count > 0);
        break;
    case SASL_MECH_DIGEST_MD5:
        CHECK(r->give_md5 && r->acct == 0);
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    run_t r;
    memset(&r, 0, sizeof(r));
    r.mech = (sasl_mech_t)(data[0] % SASL_MECH_COUNT);
    const unsigned f1 = data[1], f2 = data[2];
    r.acct = f1 & 3;
    r.only_sha256 = (f1 & 4) != 0;
    r.helper = (f1 & 0x80) != 0;
    r.give_md5 = (f2 & 8) != 0;
    r.raw_continue = (f2 & 0x10) != 0;

    sasl_server_params_t *p = &r.params;
    p->domain = DOMAIN;
    p->advertised_mechs = (1u << SASL_MECH_COUNT) - 1;
    if (f2 & 1)
        p->advertised_mechs &= ~(1u << SASL_MECH_SCRAM_SHA1_PLUS |
                                 1u << SASL_MECH_SCRAM_SHA256_PLUS);
    if (f2 & 2)
        p->advertised_mechs &= ~(1u << r.mech);
    p->tls = (f1 & 8) != 0;
    if (f1 & 0x10) {
        p->cb_exporter = CB_EXPORTER;
        p->cb_exporter_len = sizeof(CB_EXPORTER);
    }
    if (f1 & 0x20) {
        p->cb_unique = CB_UNIQUE;
        p->cb_unique_len = sizeof(CB_UNIQUE);
    }
    if (f1 & 0x40)
        p->advertised_cb = (p->cb_exporter ? SASL_CB_TLS_EXPORTER : 0) |
                           (p->cb_unique ? SASL_CB_TLS_UNIQUE : 0);
    r.cert_names[0] = USER "@" DOMAIN;
    r.cert_names[1] = "romeo@" DOMAIN;
    p->cert_names = r.cert_names;
    p->cert_name_count = (f2 & 4) ? 2 : 1;
    p->server_secret = SECRET;
    p->server_secret_len = sizeof(SECRET);
    p->scram_iterations = 1 + ((f2 >> 5) & 3);

    /* The messages. */
    const uint8_t *msg[MAX_MSGS];
    size_t mlen[MAX_MSGS];
    size_t nmsg = 0;
    const uint8_t *q = data + 3, *end = data + size;
    while (nmsg < MAX_MSGS) {
        const uint8_t *sep = memchr(q, 0xff, (size_t)(end - q));
        msg[nmsg] = q;
        mlen[nmsg] = sep != NULL ? (size_t)(sep - q) : (size_t)(end - q);
        nmsg++;
        if (sep == NULL)
            break;
        q = sep + 1;
    }

    sasl_server_t *s = sasl_server_new(r.mech, p);
    CHECK(s != NULL);
    CHECK(sasl_server_authcid(s) == NULL && sasl_server_username(s) == NULL);

    /* `out` holds what the last step produced (a challenge stays there
     * until the next client message). */
    buf_t out = BUF_INIT;
    bool done = false;
    bool cred_pending = false; /* NEED_CREDENTIALS answered, not stepped */
    int last = -100;
    bool expect_set = false; /* the helper knows the outcome */
    bool expect_success = false;
    unsigned char expect_sig[SCRAM_KEY_MAX];
    bool scram_final_sent = false;

    for (size_t i = 0; i < nmsg && !done; i++) {
        const unsigned char *m = msg[i];
        size_t len = mlen[i];
        char *subst = NULL;
        bool subst_gsasl = false;

        if (r.helper && last == SASL_CHALLENGE) {
            unsigned tamper = len > 0 ? m[0] % 4 : 0;
            size_t subst_len = 0;
            if (is_scram(r.mech) && !scram_final_sent) {
                subst = honest_final(&r, tamper, expect_sig);
                subst_len = strlen(subst);
                expect_set = true;
                expect_success = tamper == 0 && real_for(&r, hash_of(r.mech));
                scram_final_sent = true;
            } else if (r.mech == SASL_MECH_DIGEST_MD5 && r.gcli == NULL) {
                subst = digest_response(&r, &out, tamper != 1, &subst_len);
                subst_gsasl = true;
                expect_set = subst != NULL;
                expect_success = tamper != 1 && r.give_md5 && r.acct == 0;
            }
            if (subst != NULL) {
                m = (const unsigned char *)subst;
                len = subst_len;
            }
        }
        buf_reset(&out);

        /* A step with data while the account answer waits for a step with
         * none is out of order. */
        bool expect_malformed = cred_pending && len > 0;
        int rc = sasl_server_step(s, m, len, &out);
        cred_pending = false;
        if (expect_malformed)
            CHECK(rc == SASL_F_MALFORMED_REQUEST);

        for (;;) {
            CHECK(valid_rc(rc));
            CHECK((rc < 0) == (sasl_condition(rc) != NULL));
            if (rc != SASL_SUCCESS)
                CHECK(sasl_server_username(s) == NULL);
            if (rc < 0 || rc == SASL_NEED_CREDENTIALS ||
                rc == SASL_NEED_PASSWORD_CHECK)
                CHECK(out.len == 0);
            if (rc == SASL_NEED_CREDENTIALS) {
                /* The message that named the account: SCRAM's
                 * client-first, PLAIN's only message. */
                free(r.first);
                r.first = malloc(len + 1);
                CHECK(r.first != NULL);
                memcpy(r.first, m, len);
                r.first_len = len;
                answer_account(&r, s);
                if (r.raw_continue && i + 1 < nmsg) {
                    cred_pending = true;
                    break;
                }
                rc = sasl_server_step(s, NULL, 0, &out);
                continue;
            }
            if (rc == SASL_NEED_PASSWORD_CHECK) {
                CHECK(r.mech == SASL_MECH_PLAIN && r.answered);
                r.checked = true;
                r.check_ok = sasl_server_check_password(s);
                CHECK(r.check_ok == plain_expect_ok(&r, r.first, r.first_len));
                sasl_server_password_checked(s, r.check_ok);
                rc = sasl_server_step(s, NULL, 0, &out);
                continue;
            }
            break;
        }
        last = rc;
        if (trace)
            fprintf(stderr,
                    "fuzz_sasl: %s message %zu%s: %d %s, out \"%.*s\"\n",
                    sasl_mech_name(r.mech), i, subst != NULL ? " (helper)" : "",
                    rc, rc < 0 ? sasl_condition(rc) : "", (int)out.len,
                    out.data != NULL ? out.data : "");
        if (rc == SASL_CHALLENGE) {
            CHECK(out.len > 0 || !is_scram(r.mech));
            if (is_scram(r.mech)) {
                CHECK(!scram_final_sent && r.first != NULL);
                check_server_first(&r, s, &out);
            }
            if (r.mech == SASL_MECH_DIGEST_MD5 && subst != NULL) {
                /* rspauth: GNU SASL checks it and has nothing to add. */
                char *o = NULL;
                size_t olen = 0;
                CHECK(r.digest_honest);
                CHECK(gsasl_step(r.gcli, out.data, out.len, &o, &olen) ==
                      GSASL_OK);
                CHECK(olen == 0);
                gsasl_free(o);
            }
        }
        if (rc == SASL_SUCCESS) {
            check_success(&r, s, &out);
            if (is_scram(r.mech) && expect_set) {
                char v[2 + SCRAM_KEY_MAX * 2] = "v=";
                size_t klen = scram_key_len(hash_of(r.mech));
                CHECK(base64_encode(expect_sig, klen, BASE64_STD, v + 2,
                                    sizeof(v) - 2) > 0);
                CHECK(out.len == strlen(v) &&
                      memcmp(out.data, v, out.len) == 0);
            }
            done = true;
        }
        if (rc < 0)
            done = true;

        /* The helper's outcome: an honest SCRAM final succeeds exactly
         * with real credentials; an honest DIGEST-MD5 response gets its
         * rspauth exactly with the real hash. */
        if (subst != NULL && !cred_pending) {
            if (is_scram(r.mech))
                CHECK((rc == SASL_SUCCESS) == expect_success);
            else
                CHECK((rc == SASL_CHALLENGE) == expect_success);
        }
        if (subst_gsasl)
            gsasl_free(subst);
        else
            free(subst);
    }

    if (done) {
        /* The outcome sticks. */
        size_t before = out.len;
        CHECK(sasl_server_step(s, (const unsigned char *)"x", 1, &out) ==
              SASL_F_MALFORMED_REQUEST);
        CHECK(sasl_server_step(s, NULL, 0, &out) == SASL_F_MALFORMED_REQUEST);
        CHECK(out.len == before);
        CHECK(sasl_server_username(s) == NULL);
    }

    sasl_server_free(s);
    buf_free(&out);
    free(r.first);
    free(r.server_first);
    if (r.gcli != NULL)
        gsasl_finish(r.gcli);
    if (r.gctx != NULL)
        gsasl_done(r.gctx);
    return 0;
}
