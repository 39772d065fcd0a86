#include "sasl/scram.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <stringprep.h>

#include "base/rand.h"

size_t scram_key_len(scram_hash_t h)
{
    return h == SCRAM_SHA1 ? 20 : 32;
}

static const EVP_MD *scram_md(scram_hash_t h)
{
    return h == SCRAM_SHA1 ? EVP_sha1() : EVP_sha256();
}

char *scram_saslprep(const char *password)
{
    char *out = NULL;

    if (password == NULL)
        return NULL;
    /* RFC 5802 §2.2: the password is treated as a stored string, so
     * unassigned code points are refused, also when checking one. */
    if (stringprep_profile(password, &out, "SASLprep",
                           STRINGPREP_NO_UNASSIGNED) != STRINGPREP_OK) {
        free(out);
        return NULL;
    }
    return out;
}

/* HMAC(key, data) into out (the hash's length). */
static int scram_hmac(scram_hash_t h, const unsigned char *key, size_t keylen,
                      const void *data, size_t len, unsigned char *out)
{
    unsigned outlen = 0;

    if (HMAC(scram_md(h), key, (int)keylen, data, len, out, &outlen) == NULL)
        return -1;
    return outlen == scram_key_len(h) ? 0 : -1;
}

int scram_derive(scram_hash_t h, const char *password,
                 const unsigned char *salt, size_t salt_len,
                 unsigned iterations, scram_cred_t *out)
{
    size_t klen = scram_key_len(h);
    unsigned char salted[SCRAM_KEY_MAX];
    unsigned char client_key[SCRAM_KEY_MAX];
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (salt == NULL || salt_len == 0 || salt_len > SCRAM_SALT_MAX ||
        iterations == 0 || iterations > INT_MAX)
        return -1;
    char *prep = scram_saslprep(password);
    if (prep == NULL)
        return -1;
    size_t plen = strlen(prep);
    /* A password that SaslPrep maps to nothing (e.g. only soft hyphens)
     * would be a credential anyone can guess; RFC 4616 also requires a
     * non-empty password for PLAIN. */
    if (plen == 0)
        goto out;

    /* RFC 5802 §3: SaltedPassword := Hi(Normalize(password), salt, i), and
     * Hi is PBKDF2 with HMAC as the PRF and one block of output. */
    if (PKCS5_PBKDF2_HMAC(prep, (int)plen, salt, (int)salt_len, (int)iterations,
                          scram_md(h), (int)klen, salted) != 1)
        goto out;
    /* ClientKey := HMAC(SaltedPassword, "Client Key");
     * StoredKey := H(ClientKey);
     * ServerKey := HMAC(SaltedPassword, "Server Key"). */
    if (scram_hmac(h, salted, klen, "Client Key", 10, client_key) < 0)
        goto out;
    unsigned mdlen = 0;
    if (EVP_Digest(client_key, klen, out->stored_key, &mdlen, scram_md(h),
                   NULL) != 1 ||
        mdlen != klen)
        goto out;
    if (scram_hmac(h, salted, klen, "Server Key", 10, out->server_key) < 0)
        goto out;

    memcpy(out->salt, salt, salt_len);
    out->salt_len = salt_len;
    out->iterations = iterations;
    out->key_len = klen;
    rc = 0;
out:
    OPENSSL_cleanse(salted, sizeof(salted));
    OPENSSL_cleanse(client_key, sizeof(client_key));
    OPENSSL_cleanse(prep, plen);
    free(prep);
    if (rc < 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

int scram_make(scram_hash_t h, const char *password, unsigned iterations,
               scram_cred_t *out)
{
    unsigned char salt[SCRAM_SALT_LEN];

    memset(out, 0, sizeof(*out));
    if (rand_bytes(salt, sizeof(salt)) < 0)
        return -1;
    return scram_derive(h, password, salt, sizeof(salt), iterations, out);
}

bool scram_check_password(scram_hash_t h, const scram_cred_t *cred,
                          const char *password)
{
    scram_cred_t got;

    if (cred == NULL || cred->key_len != scram_key_len(h))
        return false;
    if (scram_derive(h, password, cred->salt, cred->salt_len, cred->iterations,
                     &got) < 0)
        return false;
    /* StoredKey is what the SCRAM exchange itself proves knowledge of;
     * comparing it alone is the same check. CRYPTO_memcmp so that the time
     * taken does not tell how many leading bytes matched. */
    bool ok =
        CRYPTO_memcmp(got.stored_key, cred->stored_key, cred->key_len) == 0;
    OPENSSL_cleanse(&got, sizeof(got));
    return ok;
}

int scram_fake_salt(const unsigned char *server_secret, size_t secret_len,
                    const char *domain, const char *node,
                    unsigned char out[SCRAM_SALT_LEN])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t maclen = 0;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    int rc = -1;

    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = hmac != NULL ? EVP_MAC_CTX_new(hmac) : NULL;
    /* The NUL between the parts keeps ("ab", "c") and ("a", "bc") apart. */
    if (ctx != NULL &&
        EVP_MAC_init(ctx, server_secret, secret_len, params) == 1 &&
        EVP_MAC_update(ctx, (const unsigned char *)domain,
                       strlen(domain) + 1) == 1 &&
        EVP_MAC_update(ctx, (const unsigned char *)node, strlen(node)) == 1 &&
        EVP_MAC_final(ctx, mac, &maclen, sizeof(mac)) == 1 &&
        maclen >= SCRAM_SALT_LEN) {
        memcpy(out, mac, SCRAM_SALT_LEN);
        rc = 0;
    } else {
        /* Never hand out a recognisable salt by accident: the caller must
         * fail the exchange instead. */
        memset(out, 0, SCRAM_SALT_LEN);
    }
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(hmac);
    return rc;
}

int scram_digest_md5_hash(const char *node, const char *realm,
                          const char *password, unsigned char out[16])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned outlen = 0;
    int rc = -1;

    /* MD5 can be missing (a FIPS-only provider configuration); DIGEST-MD5
     * is then simply unavailable. */
    if (ctx != NULL && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
        EVP_DigestUpdate(ctx, node, strlen(node)) == 1 &&
        EVP_DigestUpdate(ctx, ":", 1) == 1 &&
        EVP_DigestUpdate(ctx, realm, strlen(realm)) == 1 &&
        EVP_DigestUpdate(ctx, ":", 1) == 1 &&
        EVP_DigestUpdate(ctx, password, strlen(password)) == 1 &&
        EVP_DigestFinal_ex(ctx, out, &outlen) == 1 && outlen == 16)
        rc = 0;
    else
        memset(out, 0, 16);
    EVP_MD_CTX_free(ctx);
    return rc;
}
