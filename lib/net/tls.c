/* tls: OpenSSL 3 behind memory BIOs (see tls.h).
 *
 * Each tls_conn_t owns one SSL with two memory BIOs: ciphertext from the
 * peer is written into the read BIO by tls_conn_feed(), ciphertext for the
 * peer accumulates in the write BIO until tls_conn_take_output(). Neither
 * BIO keeps its buffer once it is empty, and SSL_MODE_RELEASE_BUFFERS makes
 * OpenSSL drop its record buffers between records, so an idle connection
 * holds no I/O buffer at all (docs/architecture.md, memory budget). */
#include "net/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/core_names.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* RFC 7590 defers to RFC 7525, whose recommended TLS 1.2 suites are
 * ephemeral ECDH with AEAD ciphers; that is all we offer by default, in the
 * server's order of preference (AES-GCM first: hardware support is the
 * norm). TLS 1.3 suites are OpenSSL's defaults, all of them AEAD. */
static const char tls_ciphers_modern[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/* For old peers only (legacy_ciphers): the TLS 1.2 CBC suites, with forward
 * secrecy first and RSA key transport last (TLS_RSA_WITH_AES_128_CBC_SHA is
 * the one RFC 5246 makes mandatory). 3DES, RC4, NULL and EXPORT are never
 * listed: RFC 7525 §4.1 forbids NULL, RC4 and EXPORT and advises against
 * anything under 128 bits, and RFC 7590 supersedes RFC 6120's old 3DES
 * requirement. */
static const char tls_ciphers_legacy[] =
    ":ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:"
    "ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES256-SHA384:"
    "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:"
    "ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA:"
    "AES128-SHA256:AES256-SHA256:AES128-SHA:AES256-SHA";

/* RFC 9266 §2: the tls-exporter label, 32 bytes of output. */
static const char tls_exporter_label[] = "EXPORTER-Channel-Binding";
enum { TLS_EXPORTER_LEN = 32 };

/* Plaintext is taken out of OpenSSL in pieces of one maximal record. */
enum { TLS_READ_CHUNK = 16384 };

struct tls_ctx {
    SSL_CTX *ssl; /* replaced by tls_ctx_reload; SSLs hold a reference */
    char *alpn;   /* NULL: no ALPN; immutable, the ALPN callback reads it */
    bool server;
    bool soft; /* verify_soft: the name is checked by the caller */
    /* Session tickets (server, tls_ctx_opts_t.ticket_lifetime > 0): the
     * current key and the one before it; they outlive tls_ctx_reload, so
     * that a new certificate does not void the tickets clients hold. */
    struct tls_ticket_key {
        unsigned char name[16], aes[32], hmac[32];
        time_t created;
        bool set;
    } ticket[2];
    unsigned ticket_lifetime; /* seconds a key encrypts new tickets */
    unsigned long tickets_issued, tickets_accepted;
};

static int tls_ticket_cb(SSL *s, unsigned char key_name[16], unsigned char *iv,
                         EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc);

/* Owned by whoever created it (a session); holds its SSL and, only while
 * bytes are in flight, the two buffers below. */
struct tls_conn {
    SSL *ssl;
    const tls_ctx_t *ctx;
    buf_t pending; /* plaintext written before the handshake finished */
    buf_t plain;   /* plaintext decrypted by feed, not yet read */
    char *errtext; /* malloc'd one-line reason of the last failure */
    int failed;    /* sticky tls_error_t, 0 while healthy */
    bool server;
    bool handshake_done;
    bool closed;          /* close_notify received */
    bool shut;            /* close_notify sent */
    bool peer_unverified; /* the peer's certificate failed verification */
};

const char *tls_strerror(int err)
{
    switch (err) {
    case TLS_OK:
        return "success";
    case TLS_ERR_NOMEM:
        return "out of memory";
    case TLS_ERR_CONFIG:
        return "unusable TLS configuration";
    case TLS_ERR_HANDSHAKE:
        return "TLS handshake failed";
    case TLS_ERR_VERIFY:
        return "peer certificate did not verify";
    case TLS_ERR_PROTOCOL:
        return "TLS protocol error";
    case TLS_ERR_CLOSED:
        return "peer closed the TLS session";
    }
    return "unknown TLS error";
}

/* ---- error text ---------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static int
tls_cfg_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    ERR_clear_error();
    return TLS_ERR_CONFIG;
}

/* The reason of the oldest error on OpenSSL's queue (the cause; later
 * entries tend to be "called from here"), or a fallback. */
static const char *tls_ossl_reason(unsigned long e, char *tmp, size_t len)
{
    if (e == 0)
        return "unknown error";
    const char *r = ERR_reason_error_string(e);
    if (r != NULL)
        return r;
    ERR_error_string_n(e, tmp, len);
    return tmp;
}

__attribute__((format(printf, 2, 3))) static void
tls_set_errtext(tls_conn_t *c, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    free(c->errtext);
    c->errtext = strdup(line); /* NULL is fine: error_text falls back */
}

/* Records a failure: err becomes sticky and the OpenSSL queue becomes the
 * error text. */
static int tls_fail(tls_conn_t *c, int err, const char *what)
{
    char tmp[256];
    unsigned long e = ERR_get_error();
    if (err == TLS_ERR_NOMEM)
        tls_set_errtext(c, "%s: out of memory", what);
    else
        tls_set_errtext(c, "%s: %s", what,
                        tls_ossl_reason(e, tmp, sizeof(tmp)));
    ERR_clear_error();
    c->failed = err;
    return err;
}

const char *tls_conn_error_text(const tls_conn_t *c)
{
    if (c->errtext != NULL)
        return c->errtext;
    return c->failed ? tls_strerror(c->failed) : "";
}

/* ---- contexts ------------------------------------------------------ */

/* Checks that path names a readable regular file, so that the message names
 * the real problem rather than OpenSSL's "system lib". */
static int tls_check_file(const char *what, const char *path, char *err,
                          size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return tls_cfg_err(err, errlen, "%s '%s': %s", what, path,
                           strerror(errno));
    struct stat st;
    int bad = fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode);
    fclose(f);
    if (bad)
        return tls_cfg_err(err, errlen, "%s '%s': not a regular file", what,
                           path);
    return TLS_OK;
}

/* Keys are never read with a pass phrase: a daemon has nobody to ask, and
 * OpenSSL's default would prompt on the terminal. */
static int tls_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0;
}

static int tls_load_identity(SSL_CTX *ssl, const tls_ctx_opts_t *o, char *err,
                             size_t errlen)
{
    const char *cert = o->cert_file;
    const char *key = o->key_file != NULL ? o->key_file : o->cert_file;
    char tmp[256];

    int rc = tls_check_file("cert_file", cert, err, errlen);
    if (rc != TLS_OK)
        return rc;
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ssl, cert) != 1) {
        unsigned long e = ERR_peek_error();
        if (ERR_GET_LIB(e) == ERR_LIB_PEM &&
            ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
            return tls_cfg_err(
                err, errlen, "cert_file '%s': no PEM certificate in it", cert);
        return tls_cfg_err(err, errlen, "cert_file '%s': unusable: %s", cert,
                           tls_ossl_reason(e, tmp, sizeof(tmp)));
    }

    rc = tls_check_file("key_file", key, err, errlen);
    if (rc != TLS_OK)
        return rc;
    FILE *f = fopen(key, "r");
    if (f == NULL)
        return tls_cfg_err(err, errlen, "key_file '%s': %s", key,
                           strerror(errno));
    ERR_clear_error();
    EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, tls_no_passphrase, NULL);
    fclose(f);
    if (pkey == NULL)
        return tls_cfg_err(err, errlen,
                           "key_file '%s': no PEM private key in it "
                           "(encrypted keys are not supported)",
                           key);
    /* SSL_CTX_use_PrivateKey compares the key with a certificate of the
     * same type; SSL_CTX_check_private_key catches a key of another type
     * (an EC key next to an RSA certificate). */
    ERR_clear_error();
    int ok = SSL_CTX_use_PrivateKey(ssl, pkey) == 1 &&
             SSL_CTX_check_private_key(ssl) == 1;
    EVP_PKEY_free(pkey);
    if (!ok)
        return tls_cfg_err(err, errlen,
                           "key_file '%s' does not match the certificate in "
                           "cert_file '%s'",
                           key, cert);
    return TLS_OK;
}

/* A client certificate that does not verify must not fail the handshake:
 * the client can still authenticate with SCRAM or PLAIN, only SASL EXTERNAL
 * (XEP-0178) becomes unavailable. So the handshake goes on and the outcome
 * is kept for tls_conn_peer_names(). */
static int tls_verify_client_cb(int ok, X509_STORE_CTX *store)
{
    if (!ok) {
        SSL *ssl = X509_STORE_CTX_get_ex_data(
            store, SSL_get_ex_data_X509_STORE_CTX_idx());
        tls_conn_t *c = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
        if (c != NULL)
            c->peer_unverified = true;
    }
    return 1;
}

/* Server side of ALPN (RFC 7301). XEP-0368 clients offer "xmpp-client" on
 * the direct-TLS port; one that offers only other protocols is speaking
 * something else, which RFC 7301 §3.2 answers with no_application_protocol.
 * A client that offers no ALPN at all never reaches this callback and is
 * accepted: many XMPP clients do not send it. */
static int tls_alpn_select(SSL *ssl, const unsigned char **out,
                           unsigned char *outlen, const unsigned char *in,
                           unsigned int inlen, void *arg)
{
    (void)ssl;
    const tls_ctx_t *ctx = arg;
    size_t want = strlen(ctx->alpn);
    unsigned int i = 0;
    while (i < inlen) {
        unsigned int n = in[i++];
        if (n > inlen - i)
            break;
        if (n == want && memcmp(in + i, ctx->alpn, n) == 0) {
            *out = in + i;
            *outlen = (unsigned char)n;
            return SSL_TLSEXT_ERR_OK;
        }
        i += n;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* Builds a configured SSL_CTX for ctx's role from o (everything but ALPN's
 * protocol string, which lives in ctx). */
static SSL_CTX *tls_build(tls_ctx_t *ctx, const tls_ctx_opts_t *o, char *err,
                          size_t errlen)
{
    char tmp[256];
    ERR_clear_error();
    SSL_CTX *ssl =
        SSL_CTX_new(ctx->server ? TLS_server_method() : TLS_client_method());
    if (ssl == NULL) {
        tls_cfg_err(err, errlen, "cannot create an OpenSSL context: %s",
                    tls_ossl_reason(ERR_peek_error(), tmp, sizeof(tmp)));
        return NULL;
    }

    int maxv;
    switch (o->max_version) {
    case 0:
    case 13:
        maxv = TLS1_3_VERSION;
        break;
    case 12:
        maxv = TLS1_2_VERSION;
        break;
    default:
        tls_cfg_err(err, errlen, "max_version %d: use 0, 12 or 13",
                    o->max_version);
        goto fail;
    }
    /* RFC 7590 §3.1 / RFC 8996: nothing older than TLS 1.2. */
    if (SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ssl, maxv) != 1) {
        tls_cfg_err(err, errlen, "cannot set the TLS versions");
        goto fail;
    }

    /* No renegotiation (its history of attacks, and RFC 9266 leaves
     * tls-exporter undefined with it), no compression (CRIME), and no
     * resumption state: no session tickets (TLS 1.2 and 1.3) and no server
     * session cache, because each would hold memory per connection or per
     * recent connection. */
    uint64_t opts = SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION;
    bool tickets = ctx->server && ctx->ticket_lifetime > 0 && !o->verify_soft &&
                   !o->request_peer_cert && o->ca_file == NULL;
    if (!tickets)
        opts |= SSL_OP_NO_TICKET;
    if (ctx->server)
        opts |= SSL_OP_CIPHER_SERVER_PREFERENCE;
    SSL_CTX_set_options(ssl, opts);
    /* Tickets are stateless resumption: the server keeps nothing per
     * client (no session cache), the client carries its state encrypted
     * under keys of ours that rotate (tls_ticket_cb). Never with client
     * certificates: what a resumed session says of one was decided by
     * another handshake. */
    SSL_CTX_set_num_tickets(ssl, tickets ? 1 : 0);
    SSL_CTX_set_session_cache_mode(ssl, SSL_SESS_CACHE_OFF);
    if (tickets) {
        SSL_CTX_set_app_data(ssl, ctx);
        SSL_CTX_set_timeout(ssl, (long)ctx->ticket_lifetime * 2);
        if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ssl, tls_ticket_cb) != 1) {
            tls_cfg_err(err, errlen, "cannot set the session ticket keys");
            goto fail;
        }
    }
    SSL_CTX_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);

    char list[sizeof(tls_ciphers_modern) + sizeof(tls_ciphers_legacy)];
    const char *ciphers = o->ciphers;
    if (ciphers == NULL) {
        snprintf(list, sizeof(list), "%s%s", tls_ciphers_modern,
                 o->legacy_ciphers ? tls_ciphers_legacy : "");
        ciphers = list;
    }
    if (SSL_CTX_set_cipher_list(ssl, ciphers) != 1) {
        tls_cfg_err(err, errlen, "ciphers '%s': no usable cipher suite",
                    ciphers);
        goto fail;
    }

    if (ctx->server && o->cert_file == NULL) {
        tls_cfg_err(err, errlen, "a TLS server needs cert_file");
        goto fail;
    }
    if (o->cert_file != NULL && tls_load_identity(ssl, o, err, errlen) != 0)
        goto fail;
    if (o->cert_file == NULL && o->key_file != NULL) {
        tls_cfg_err(err, errlen, "key_file '%s' given without cert_file",
                    o->key_file);
        goto fail;
    }

    if (o->ca_file != NULL) {
        if (tls_check_file("ca_file", o->ca_file, err, errlen) != 0)
            goto fail;
        ERR_clear_error();
        if (SSL_CTX_load_verify_locations(ssl, o->ca_file, NULL) != 1) {
            tls_cfg_err(err, errlen, "ca_file '%s': no PEM certificate in it",
                        o->ca_file);
            goto fail;
        }
    }
    if (o->verify_soft || o->request_peer_cert) {
        /* s2s: the system's anchors plus ca_file; never fail the
         * handshake on the peer's certificate (tls_verify_client_cb keeps
         * the outcome). */
        if (SSL_CTX_set_default_verify_paths(ssl) != 1) {
            tls_cfg_err(err, errlen, "cannot load the system trust store");
            goto fail;
        }
        SSL_CTX_set_verify(ssl, SSL_VERIFY_PEER, tls_verify_client_cb);
        if (ctx->server) {
            static const unsigned char sid_ctx[] = "starling-s2s";
            SSL_CTX_set_session_id_context(ssl, sid_ctx, sizeof(sid_ctx) - 1);
        }
    } else if (ctx->server) {
        if (o->ca_file != NULL) {
            /* Ask for a certificate, never require one (no
             * FAIL_IF_NO_PEER_CERT), and name our CAs so that a client with
             * several certificates picks the right one. */
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca_file);
            if (names != NULL)
                SSL_CTX_set_client_CA_list(ssl, names);
            SSL_CTX_set_verify(ssl, SSL_VERIFY_PEER, tls_verify_client_cb);
        }
        static const unsigned char sid_ctx[] = "starling";
        SSL_CTX_set_session_id_context(ssl, sid_ctx, sizeof(sid_ctx) - 1);
    } else {
        if (o->ca_file == NULL && SSL_CTX_set_default_verify_paths(ssl) != 1) {
            tls_cfg_err(err, errlen, "cannot load the system trust store");
            goto fail;
        }
        /* insecure: the user asked, explicitly, to accept any certificate
         * (the handshake still authenticates nothing). */
        SSL_CTX_set_verify(ssl, o->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER,
                           NULL);
    }

    if (ctx->alpn != NULL) {
        if (ctx->server) {
            SSL_CTX_set_alpn_select_cb(ssl, tls_alpn_select, ctx);
        } else {
            unsigned char wire[256];
            size_t n = strlen(ctx->alpn);
            wire[0] = (unsigned char)n;
            memcpy(wire + 1, ctx->alpn, n);
            /* Returns 0 on success, unlike most of OpenSSL. */
            if (SSL_CTX_set_alpn_protos(ssl, wire, (unsigned int)n + 1) != 0) {
                tls_cfg_err(err, errlen, "alpn '%s': cannot be set", ctx->alpn);
                goto fail;
            }
        }
    }
    ERR_clear_error();
    return ssl;

fail:
    SSL_CTX_free(ssl);
    ERR_clear_error();
    return NULL;
}

/* A fresh ticket key; false without randomness. */
static bool tls_ticket_key_new(struct tls_ticket_key *k)
{
    if (RAND_bytes(k->name, sizeof(k->name)) != 1 ||
        RAND_bytes(k->aes, sizeof(k->aes)) != 1 ||
        RAND_bytes(k->hmac, sizeof(k->hmac)) != 1)
        return false;
    k->created = time(NULL);
    k->set = true;
    return true;
}

/* RFC 5077 / RFC 8446 §4.6.1 tickets under our keys (OpenSSL's ticket key
 * callback): new tickets are encrypted with the current key, which is
 * replaced every ticket_lifetime seconds; a ticket under the previous key
 * is still accepted (and renewed), anything older means a full handshake.
 * So a ticket is good for one to two lifetimes. */
static int tls_ticket_cb(SSL *s, unsigned char key_name[16], unsigned char *iv,
                         EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    tls_ctx_t *ctx = SSL_CTX_get_app_data(SSL_get_SSL_CTX(s));
    if (ctx == NULL)
        return -1;
    /* Keys change when needed: a current key older than one lifetime
     * becomes the previous one; older than two, both go. */
    time_t now = time(NULL), life = (time_t)ctx->ticket_lifetime;
    time_t age = now - ctx->ticket[0].created;
    if (!ctx->ticket[0].set || age >= life) {
        struct tls_ticket_key fresh;
        if (!tls_ticket_key_new(&fresh))
            return -1;
        if (ctx->ticket[0].set && age < 2 * life)
            ctx->ticket[1] = ctx->ticket[0];
        else
            ctx->ticket[1].set = false;
        ctx->ticket[0] = fresh;
    }
    struct tls_ticket_key *k = NULL;
    int rc = 1;
    if (enc) {
        k = &ctx->ticket[0];
        memcpy(key_name, k->name, 16);
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1)
            return -1;
        if (EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1)
            return -1;
        ctx->tickets_issued++;
    } else {
        for (int i = 0; i < 2 && k == NULL; i++)
            if (ctx->ticket[i].set &&
                memcmp(key_name, ctx->ticket[i].name, 16) == 0) {
                k = &ctx->ticket[i];
                rc = i == 0 ? 1 : 2; /* 2: use it, and issue a new one */
            }
        if (k == NULL)
            return 0; /* unknown or expired: a full handshake */
        if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1)
            return -1;
        ctx->tickets_accepted++;
    }
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac,
                                          sizeof(k->hmac)),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_CTX_set_params(hctx, params) != 1)
        return -1;
    return rc;
}

void tls_ctx_ticket_stats(const tls_ctx_t *ctx, unsigned long *issued,
                          unsigned long *accepted)
{
    *issued = ctx->tickets_issued;
    *accepted = ctx->tickets_accepted;
}

static tls_ctx_t *tls_ctx_new(const tls_ctx_opts_t *o, bool server, char *err,
                              size_t errlen)
{
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (o->alpn != NULL && (o->alpn[0] == '\0' || strlen(o->alpn) > 255)) {
        tls_cfg_err(err, errlen, "alpn '%s': must be 1 to 255 bytes", o->alpn);
        return NULL;
    }
    tls_ctx_t *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        tls_cfg_err(err, errlen, "out of memory");
        return NULL;
    }
    ctx->server = server;
    ctx->soft = o->verify_soft;
    ctx->ticket_lifetime = o->ticket_lifetime;
    if (o->alpn != NULL && (ctx->alpn = strdup(o->alpn)) == NULL) {
        tls_cfg_err(err, errlen, "out of memory");
        free(ctx);
        return NULL;
    }
    ctx->ssl = tls_build(ctx, o, err, errlen);
    if (ctx->ssl == NULL) {
        free(ctx->alpn);
        free(ctx);
        return NULL;
    }
    return ctx;
}

tls_ctx_t *tls_ctx_new_server(const tls_ctx_opts_t *o, char *err, size_t errlen)
{
    return tls_ctx_new(o, true, err, errlen);
}

tls_ctx_t *tls_ctx_new_client(const tls_ctx_opts_t *o, char *err, size_t errlen)
{
    return tls_ctx_new(o, false, err, errlen);
}

int tls_ctx_reload(tls_ctx_t *ctx, const tls_ctx_opts_t *o, char *err,
                   size_t errlen)
{
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    SSL_CTX *fresh = tls_build(ctx, o, err, errlen);
    if (fresh == NULL)
        return TLS_ERR_CONFIG;
    /* Running connections hold their own reference to the old SSL_CTX
     * (SSL_new takes one), so it lives on until the last of them ends. */
    SSL_CTX_free(ctx->ssl);
    ctx->ssl = fresh;
    return TLS_OK;
}

void tls_ctx_free(tls_ctx_t *ctx)
{
    if (ctx == NULL)
        return;
    SSL_CTX_free(ctx->ssl);
    free(ctx->alpn);
    free(ctx);
}

/* ---- connections --------------------------------------------------- */

/* A memory BIO never shrinks its buffer; once it is empty (or what is left
 * is to be discarded), give it a fresh, unallocated BUF_MEM so that an idle
 * connection holds nothing. The cost is one small allocation per burst of
 * traffic. */
static void tls_bio_release(BIO *b, bool discard)
{
    BUF_MEM *bm = NULL;
    BIO_get_mem_ptr(b, &bm);
    if (bm == NULL || bm->max == 0 || (bm->length != 0 && !discard))
        return;
    BUF_MEM *fresh = BUF_MEM_new();
    if (fresh != NULL)
        BIO_set_mem_buf(b, fresh, BIO_CLOSE); /* frees the old BUF_MEM */
    else
        (void)BIO_reset(b); /* keeps the memory, but the bytes are gone */
}

static tls_conn_t *tls_conn_new(tls_ctx_t *ctx, bool server)
{
    tls_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->ctx = ctx;
    c->server = server;
    ERR_clear_error();
    c->ssl = SSL_new(ctx->ssl);
    BIO *rbio = BIO_new(BIO_s_mem());
    BIO *wbio = BIO_new(BIO_s_mem());
    if (c->ssl == NULL || rbio == NULL || wbio == NULL) {
        BIO_free(rbio);
        BIO_free(wbio);
        SSL_free(c->ssl);
        free(c);
        ERR_clear_error();
        return NULL;
    }
    /* An empty memory BIO reports "retry" rather than EOF, which is what
     * makes SSL_* return WANT_READ while we wait for the peer. */
    BIO_set_mem_eof_return(rbio, -1);
    BIO_set_mem_eof_return(wbio, -1);
    SSL_set_bio(c->ssl, rbio, wbio); /* the SSL owns both now */
    SSL_set_app_data(c->ssl, c);
    if (server)
        SSL_set_accept_state(c->ssl);
    else
        SSL_set_connect_state(c->ssl);
    return c;
}

tls_conn_t *tls_conn_new_server(tls_ctx_t *ctx)
{
    return tls_conn_new(ctx, true);
}

static bool tls_is_ip_literal(const char *s)
{
    unsigned char addr[16];
    return inet_pton(AF_INET, s, addr) == 1 ||
           inet_pton(AF_INET6, s, addr) == 1;
}

static int tls_handshake(tls_conn_t *c);

tls_conn_t *tls_conn_new_client(tls_ctx_t *ctx, const char *server_name)
{
    if (server_name == NULL)
        return NULL;
    tls_conn_t *c = tls_conn_new(ctx, false);
    if (c == NULL)
        return NULL;
    ERR_clear_error();
    int ok;
    if (tls_is_ip_literal(server_name)) {
        /* RFC 6066 §3: SNI carries host names only; an address is checked
         * against iPAddress SANs. */
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl),
                                           server_name) == 1;
    } else {
        /* RFC 6125 §6.4.3: a wildcard only as the whole left-most label. */
        SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        /* SSL_set_tlsext_host_name() casts away const (a clang
         * -Wcast-qual error); OpenSSL copies the name, so a local copy
         * serves. A DNS name is at most 253 bytes. */
        char sni[256];
        ok = strlen(server_name) < sizeof(sni);
        if (ok) {
            memcpy(sni, server_name, strlen(server_name) + 1);
            ok = SSL_ctrl(c->ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME,
                          TLSEXT_NAMETYPE_host_name, sni) == 1 &&
                 (ctx->soft || SSL_set1_host(c->ssl, server_name) == 1);
        }
    }
    if (!ok) {
        ERR_clear_error();
        tls_conn_free(c);
        return NULL;
    }
    /* Write the ClientHello now: the caller's first take_output sends it. */
    int rc = tls_handshake(c);
    if (rc != TLS_OK) {
        tls_conn_free(c);
        return NULL;
    }
    return c;
}

void tls_conn_free(tls_conn_t *c)
{
    if (c == NULL)
        return;
    SSL_free(c->ssl);
    buf_free(&c->pending);
    buf_free(&c->plain);
    free(c->errtext);
    free(c);
}

/* Encrypts len bytes into the write BIO. Without
 * SSL_MODE_ENABLE_PARTIAL_WRITE, and with a memory BIO that always takes
 * everything, SSL_write_ex either writes all of it or fails. */
static int tls_write_now(tls_conn_t *c, const void *data, size_t len)
{
    if (len == 0)
        return TLS_OK;
    size_t written = 0;
    ERR_clear_error();
    if (SSL_write_ex(c->ssl, data, len, &written) == 1 && written == len)
        return TLS_OK;
    return tls_fail(c, TLS_ERR_PROTOCOL, "write");
}

static int tls_handshake(tls_conn_t *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->handshake_done = true;
        int rc = TLS_OK;
        if (c->pending.len > 0)
            rc = tls_write_now(c, c->pending.data, c->pending.len);
        buf_free(&c->pending);
        return rc;
    }
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return TLS_OK;
    case SSL_ERROR_ZERO_RETURN:
        c->closed = true;
        return TLS_ERR_CLOSED;
    default:
        break;
    }
    /* The client checks the server's certificate (chain, then RFC 6125 name
     * via SSL_set1_host); a failure shows in the verify result. On the
     * server a bad client certificate never gets here (see
     * tls_verify_client_cb). */
    long vr = SSL_get_verify_result(c->ssl);
    if (!c->server && vr != X509_V_OK) {
        tls_set_errtext(c, "certificate verify failed: %s",
                        X509_verify_cert_error_string(vr));
        ERR_clear_error();
        c->failed = TLS_ERR_VERIFY;
        return TLS_ERR_VERIFY;
    }
    return tls_fail(c, TLS_ERR_HANDSHAKE, "handshake");
}

/* Decrypts every complete record waiting in the read BIO into c->plain. */
static int tls_decrypt(tls_conn_t *c)
{
    for (;;) {
        if (buf_reserve(&c->plain, TLS_READ_CHUNK) != 0)
            return tls_fail(c, TLS_ERR_NOMEM, "read");
        size_t n = 0;
        ERR_clear_error();
        int r = SSL_read_ex(c->ssl, c->plain.data + c->plain.len,
                            TLS_READ_CHUNK, &n);
        if (r == 1) {
            c->plain.len += n;
            c->plain.data[c->plain.len] = '\0';
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (c->plain.len == 0)
            buf_free(&c->plain); /* nothing came: hold no buffer */
        switch (e) {
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE:
            return TLS_OK;
        case SSL_ERROR_ZERO_RETURN:
            c->closed = true;
            return TLS_ERR_CLOSED;
        default:
            return tls_fail(c, TLS_ERR_PROTOCOL, "read");
        }
    }
}

int tls_conn_feed(tls_conn_t *c, const void *data, size_t len)
{
    if (c->failed)
        return c->failed;
    /* RFC 8446 §6.1: data received after a closure alert is ignored. */
    if (c->closed)
        return TLS_ERR_CLOSED;
    BIO *rbio = SSL_get_rbio(c->ssl);
    const unsigned char *p = data;
    while (len > 0) {
        int chunk = len > INT_MAX ? INT_MAX : (int)len;
        ERR_clear_error();
        if (BIO_write(rbio, p, chunk) != chunk)
            return tls_fail(c, TLS_ERR_NOMEM, "feed");
        p += chunk;
        len -= (size_t)chunk;
    }
    int rc = TLS_OK;
    if (!c->handshake_done)
        rc = tls_handshake(c);
    if (rc == TLS_OK && c->handshake_done)
        rc = tls_decrypt(c);
    /* With read-ahead off OpenSSL pulls exactly the records it processes,
     * so after WANT_READ the read BIO is empty and its buffer can go; after
     * close_notify or a failure, whatever is left will never be read. */
    tls_bio_release(rbio, c->closed || c->failed);
    return rc;
}

int tls_conn_read(tls_conn_t *c, buf_t *out)
{
    if (c->plain.len > 0) {
        if (out->len == 0) {
            buf_t old = *out;
            *out = c->plain;
            c->plain = (buf_t)BUF_INIT;
            buf_free(&old);
        } else {
            if (buf_append(out, c->plain.data, c->plain.len) != 0)
                return TLS_ERR_NOMEM; /* plain is kept for a retry */
            buf_free(&c->plain);
        }
    }
    if (c->failed)
        return c->failed;
    return c->closed ? TLS_ERR_CLOSED : TLS_OK;
}

int tls_conn_write(tls_conn_t *c, const void *data, size_t len)
{
    if (c->failed)
        return c->failed;
    if (c->shut) {
        tls_set_errtext(c, "write after close_notify was sent");
        return TLS_ERR_PROTOCOL;
    }
    if (!c->handshake_done) {
        /* SSL_write would run the handshake and ask to be repeated with the
         * same arguments; keeping the bytes here is simpler and lets the
         * caller free its buffer. */
        if (buf_append(&c->pending, data, len) != 0)
            return TLS_ERR_NOMEM;
        return TLS_OK;
    }
    return tls_write_now(c, data, len);
}

int tls_conn_shutdown(tls_conn_t *c)
{
    if (c->shut)
        return TLS_OK;
    c->shut = true;
    buf_free(&c->pending);
    /* OpenSSL sends nothing after a fatal alert, and a close_notify in the
     * middle of a handshake would be an error of its own. */
    if (c->failed || !c->handshake_done)
        return TLS_OK;
    ERR_clear_error();
    if (SSL_shutdown(c->ssl) < 0)
        return tls_fail(c, TLS_ERR_PROTOCOL, "shutdown");
    return TLS_OK;
}

int tls_conn_take_output(tls_conn_t *c, buf_t *out)
{
    BIO *wbio = SSL_get_wbio(c->ssl);
    char *p = NULL;
    long n = BIO_get_mem_data(wbio, &p);
    if (n > 0 && buf_append(out, p, (size_t)n) != 0)
        return TLS_ERR_NOMEM; /* the bytes stay for a retry */
    /* Dropping the buffer is cheaper than BIO_reset, which would clear all
     * of it byte by byte first. */
    tls_bio_release(wbio, true);
    return TLS_OK;
}

size_t tls_conn_output_pending(const tls_conn_t *c)
{
    return BIO_ctrl_pending(SSL_get_wbio(c->ssl));
}

bool tls_conn_handshake_done(const tls_conn_t *c)
{
    return c->handshake_done;
}

const char *tls_conn_version(const tls_conn_t *c)
{
    return c->handshake_done ? SSL_get_version(c->ssl) : NULL;
}

const char *tls_conn_alpn(const tls_conn_t *c)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;
    if (!c->handshake_done || c->ctx->alpn == NULL)
        return NULL;
    SSL_get0_alpn_selected(c->ssl, &p, &n);
    /* The only protocol either side can have agreed on is ours (OpenSSL
     * rejects a server that selects one the client did not offer). */
    if (n == strlen(c->ctx->alpn) && memcmp(p, c->ctx->alpn, n) == 0)
        return c->ctx->alpn;
    return NULL;
}

bool tls_conn_is_tls13(const tls_conn_t *c)
{
    return c->handshake_done && SSL_version(c->ssl) == TLS1_3_VERSION;
}

/* ---- channel binding ----------------------------------------------- */

int tls_conn_cb_exporter(tls_conn_t *c, unsigned char *out, size_t size)
{
    if (!c->handshake_done || c->failed || size < TLS_EXPORTER_LEN)
        return -1;
    /* RFC 9266 (TLS 1.2 considerations) and RFC 7627: on TLS 1.2 the
     * exporter is unique to the connection only with the extended master
     * secret. */
    if (SSL_version(c->ssl) != TLS1_3_VERSION &&
        SSL_get_extms_support(c->ssl) != 1)
        return -1;
    /* RFC 9266 §2 asks for a zero-length context. On TLS 1.3 "no context"
     * and "empty context" are the same (RFC 8446 §7.5), but RFC 5705 §4
     * tells them apart on TLS 1.2: a zero-length context still adds its
     * two length bytes to the PRF seed, hence use_context = 1. This matches
     * Prosody (LuaSec with context ""). */
    static const unsigned char empty[1] = {0};
    ERR_clear_error();
    if (SSL_export_keying_material(
            c->ssl, out, TLS_EXPORTER_LEN, tls_exporter_label,
            sizeof(tls_exporter_label) - 1, empty, 0, 1) != 1) {
        ERR_clear_error();
        return -1;
    }
    return TLS_EXPORTER_LEN;
}

int tls_conn_cb_unique(tls_conn_t *c, unsigned char *out, size_t size)
{
    /* RFC 8446 §C.5: tls-unique is not defined for TLS 1.3. */
    if (!c->handshake_done || c->failed ||
        SSL_version(c->ssl) == TLS1_3_VERSION)
        return -1;
    /* RFC 5929 §3.1: the first Finished message of the latest handshake —
     * the client's in a full handshake, the server's in an abbreviated one
     * (we do not resume, but stay correct if that changes). */
    bool ours_first = c->server == (SSL_session_reused(c->ssl) == 1);
    unsigned char fin[EVP_MAX_MD_SIZE];
    size_t n = ours_first ? SSL_get_finished(c->ssl, fin, sizeof(fin))
                          : SSL_get_peer_finished(c->ssl, fin, sizeof(fin));
    if (n == 0 || n > sizeof(fin) || n > size)
        return -1;
    memcpy(out, fin, n);
    return (int)n;
}

/* ---- peer identities ----------------------------------------------- */

typedef struct tls_names {
    char **v;
    size_t n, cap;
    bool nomem;
} tls_names_t;

static void tls_names_add(tls_names_t *l, const unsigned char *s, size_t len)
{
    /* An embedded NUL would truncate the name: never trust such a value. */
    if (l->nomem || len == 0 || memchr(s, '\0', len) != NULL)
        return;
    if (l->n + 2 > l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        char **v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL) {
            l->nomem = true;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        l->nomem = true;
        return;
    }
    memcpy(copy, s, len);
    copy[len] = '\0';
    l->v[l->n++] = copy;
    l->v[l->n] = NULL;
}

static void tls_names_from_cert(tls_names_t *l, X509 *cert)
{
    GENERAL_NAMES *sans =
        X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    int count = sans != NULL ? sk_GENERAL_NAME_num(sans) : 0;
    /* RFC 6120 §13.7.1.4: id-on-xmppAddr, a UTF8String. */
    for (int i = 0; i < count; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type != GEN_OTHERNAME ||
            OBJ_obj2nid(g->d.otherName->type_id) != NID_XmppAddr)
            continue;
        const ASN1_TYPE *v = g->d.otherName->value;
        if (v == NULL || v->type != V_ASN1_UTF8STRING)
            continue;
        tls_names_add(l, ASN1_STRING_get0_data(v->value.utf8string),
                      (size_t)ASN1_STRING_length(v->value.utf8string));
    }
    for (int i = 0; i < count; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type != GEN_DNS)
            continue;
        tls_names_add(l, ASN1_STRING_get0_data(g->d.dNSName),
                      (size_t)ASN1_STRING_length(g->d.dNSName));
    }
    GENERAL_NAMES_free(sans);

    const X509_NAME *subj = X509_get_subject_name(cert);
    for (int i = -1;
         (i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0;) {
        const ASN1_STRING *d =
            X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));
        unsigned char *utf8 = NULL;
        int len = ASN1_STRING_to_UTF8(&utf8, d);
        if (len >= 0)
            tls_names_add(l, utf8, (size_t)len);
        OPENSSL_free(utf8);
    }
}

int tls_conn_peer_spki_sha256(tls_conn_t *c, unsigned char out[32])
{
    X509 *cert = SSL_get0_peer_certificate(c->ssl);
    if (cert == NULL)
        return -1;
    unsigned char *der = NULL;
    int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
    if (len <= 0)
        return -1;
    unsigned int n = 0;
    int ok = EVP_Digest(der, (size_t)len, out, &n, EVP_sha256(), NULL);
    OPENSSL_free(der);
    return ok == 1 && n == 32 ? 0 : -1;
}

int tls_conn_peer_names(tls_conn_t *c, char ***names)
{
    *names = NULL;
    if (!c->handshake_done || c->failed)
        return 0;
    X509 *cert = SSL_get0_peer_certificate(c->ssl);
    /* SSL_get_verify_result says X509_V_OK when there was no certificate;
     * hence the NULL check first. The callback's flag covers an error that
     * a later check overwrote in the store context. */
    if (cert == NULL || c->peer_unverified ||
        SSL_get_verify_result(c->ssl) != X509_V_OK)
        return 0;
    tls_names_t l = {0};
    tls_names_from_cert(&l, cert);
    ERR_clear_error();
    if (l.nomem) {
        tls_names_free(l.v);
        return TLS_ERR_NOMEM;
    }
    *names = l.v;
    return (int)l.n;
}

/* The certificate's otherName SANs of type `nid` equal to `want`
 * (ASCII case-insensitive, exact length). */
static bool tls_othername_is(X509 *cert, int nid, const char *want)
{
    GENERAL_NAMES *gens =
        X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    bool found = false;
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens) && !found;
         i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_OTHERNAME ||
            OBJ_obj2nid(g->d.otherName->type_id) != nid)
            continue;
        const ASN1_TYPE *v = g->d.otherName->value;
        if (v == NULL ||
            (v->type != V_ASN1_UTF8STRING && v->type != V_ASN1_IA5STRING))
            continue;
        const ASN1_STRING *str = v->value.asn1_string;
        size_t n = (size_t)ASN1_STRING_length(str);
        found =
            n == strlen(want) &&
            strncasecmp((const char *)ASN1_STRING_get0_data(str), want, n) == 0;
    }
    GENERAL_NAMES_free(gens);
    return found;
}

bool tls_conn_peer_valid_for(tls_conn_t *c, const char *domain,
                             const char *srv_service)
{
    if (!c->handshake_done || c->failed || domain == NULL)
        return false;
    X509 *cert = SSL_get0_peer_certificate(c->ssl);
    if (cert == NULL || c->peer_unverified ||
        SSL_get_verify_result(c->ssl) != X509_V_OK)
        return false;
    bool ok =
        X509_check_host(cert, domain, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
                        NULL) == 1 ||
        tls_othername_is(cert, NID_XmppAddr, domain);
    if (!ok && srv_service != NULL) {
        char srv[300];
        int n = snprintf(srv, sizeof(srv), "_%s.%s", srv_service, domain);
        ok = n > 0 && (size_t)n < sizeof(srv) &&
             tls_othername_is(cert, NID_SRVName, srv);
    }
    ERR_clear_error();
    return ok;
}

const char *tls_conn_verify_error(tls_conn_t *c)
{
    if (SSL_get0_peer_certificate(c->ssl) == NULL)
        return "no certificate";
    long vr = SSL_get_verify_result(c->ssl);
    if (vr != X509_V_OK)
        return X509_verify_cert_error_string(vr);
    return c->peer_unverified ? "did not verify" : "";
}

void tls_names_free(char **names)
{
    if (names == NULL)
        return;
    for (char **p = names; *p != NULL; p++)
        free(*p);
    free(names);
}

/* ---- certificate making -------------------------------------------- */

static int tls_add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (ext == NULL)
        return -1;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* The SAN is built from GENERAL_NAME values rather than a config string so
 * that a JID containing ',' or ';' cannot be read as several entries. */
static int tls_add_san(X509 *x, const char *xmppaddr, const char *dns,
                       bool critical)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    if (gens == NULL)
        return -1;
    int ok = 1;
    if (xmppaddr != NULL) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_TYPE *t = ASN1_TYPE_new();
        ASN1_UTF8STRING *u = ASN1_UTF8STRING_new();
        ok = g != NULL && t != NULL && u != NULL &&
             ASN1_STRING_set(u, xmppaddr, -1) == 1;
        if (ok) {
            ASN1_TYPE_set(t, V_ASN1_UTF8STRING, u);
            u = NULL;
            ok = GENERAL_NAME_set0_othername(g, OBJ_nid2obj(NID_XmppAddr), t);
        }
        if (ok) {
            t = NULL;
            ok = sk_GENERAL_NAME_push(gens, g) > 0;
        }
        if (ok)
            g = NULL;
        ASN1_UTF8STRING_free(u);
        ASN1_TYPE_free(t);
        GENERAL_NAME_free(g);
    }
    if (ok && dns != NULL) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        ok = g != NULL && s != NULL && ASN1_STRING_set(s, dns, -1) == 1;
        if (ok) {
            GENERAL_NAME_set0_value(g, GEN_DNS, s);
            s = NULL;
            ok = sk_GENERAL_NAME_push(gens, g) > 0;
        }
        if (ok)
            g = NULL;
        ASN1_IA5STRING_free(s);
        GENERAL_NAME_free(g);
    }
    if (ok && sk_GENERAL_NAME_num(gens) > 0)
        ok = X509_add1_ext_i2d(x, NID_subject_alt_name, gens, critical ? 1 : 0,
                               X509V3_ADD_DEFAULT) == 1;
    GENERAL_NAMES_free(gens);
    return ok ? 0 : -1;
}

/* Writes the key readable by its owner only: created 0600, and chmod'ed in
 * case the file already existed with wider rights. */
static int tls_write_key(EVP_PKEY *pkey, const char *path, char *err,
                         size_t errlen)
{
    int fd =
        open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return tls_cfg_err(err, errlen, "key_file '%s': %s", path,
                           strerror(errno));
    if (fchmod(fd, 0600) != 0) {
        int e = errno;
        close(fd);
        return tls_cfg_err(err, errlen, "key_file '%s': %s", path, strerror(e));
    }
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        int e = errno;
        close(fd);
        return tls_cfg_err(err, errlen, "key_file '%s': %s", path, strerror(e));
    }
    /* PEM_write_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY"). */
    int ok = PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) == 1;
    ok = (fclose(f) == 0) && ok;
    if (!ok)
        return tls_cfg_err(err, errlen, "key_file '%s': cannot write it", path);
    return TLS_OK;
}

static int tls_write_cert(X509 *x, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return tls_cfg_err(err, errlen, "cert_file '%s': %s", path,
                           strerror(errno));
    int ok = PEM_write_X509(f, x) == 1;
    ok = (fclose(f) == 0) && ok;
    if (!ok)
        return tls_cfg_err(err, errlen, "cert_file '%s': cannot write it",
                           path);
    return TLS_OK;
}

typedef enum tls_cert_kind {
    TLS_CERT_SELF_SIGNED, /* leaf, its own issuer */
    TLS_CERT_CA,          /* self-signed CA */
    TLS_CERT_ISSUED,      /* leaf signed by issuer/issuer_key */
} tls_cert_kind_t;

/* RFC 5280 Appendix A (ub-common-name): a CN holds at most 64 characters. */
enum { TLS_CN_MAX = 64 };

static int tls_make_cert(tls_cert_kind_t kind, const char *cn,
                         const char *xmppaddr, const char *dns, int days,
                         X509 *issuer, EVP_PKEY *issuer_key,
                         const char *cert_file, const char *key_file, char *err,
                         size_t errlen)
{
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (cn == NULL || cn[0] == '\0' || days <= 0)
        return tls_cfg_err(err, errlen,
                           "certificate: need a name and days > 0");
    ERR_clear_error();
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    BIGNUM *bn = NULL;
    int rc = TLS_ERR_CONFIG;
    if (pkey == NULL || x == NULL) {
        tls_cfg_err(err, errlen, "certificate: cannot make a P-256 key");
        goto out;
    }

    /* RFC 5280 §4.1.2.2: a positive serial of at most 20 octets, unique per
     * issuer; 127 random bits make a collision implausible. */
    unsigned char serial[16];
    if (RAND_bytes(serial, sizeof(serial)) != 1)
        goto fail;
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    bn = BN_bin2bn(serial, sizeof(serial), NULL);

    bool cn_fits = strlen(cn) <= TLS_CN_MAX;
    X509_NAME *name = X509_get_subject_name(x);
    if (bn == NULL || X509_set_version(x, X509_VERSION_3) != 1 ||
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL ||
        X509_gmtime_adj(X509_getm_notBefore(x), -300) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) == NULL ||
        X509_set_pubkey(x, pkey) != 1)
        goto fail;
    if (cn_fits &&
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                   (const unsigned char *)cn, -1, -1, 0) != 1)
        goto fail;
    if (X509_set_issuer_name(x, kind == TLS_CERT_ISSUED
                                    ? X509_get_subject_name(issuer)
                                    : name) != 1)
        goto fail;

    X509 *ext_issuer = kind == TLS_CERT_ISSUED ? issuer : x;
    if (tls_add_ext(x, ext_issuer, NID_subject_key_identifier, "hash") != 0)
        goto fail;
    if (kind == TLS_CERT_CA) {
        if (tls_add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") != 0 ||
            tls_add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") !=
                0)
            goto fail;
    } else {
        if (tls_add_ext(x, ext_issuer, NID_basic_constraints,
                        "critical,CA:FALSE") != 0 ||
            tls_add_ext(x, ext_issuer, NID_key_usage,
                        "critical,digitalSignature") != 0 ||
            tls_add_ext(x, ext_issuer, NID_ext_key_usage,
                        "serverAuth,clientAuth") != 0)
            goto fail;
        /* RFC 5280 §4.2.1.6: with an empty subject the SAN is critical. */
        if (tls_add_san(x, xmppaddr, dns, !cn_fits) != 0)
            goto fail;
    }
    if (kind == TLS_CERT_ISSUED &&
        tls_add_ext(x, issuer, NID_authority_key_identifier, "keyid:always") !=
            0)
        goto fail;

    if (X509_sign(x, kind == TLS_CERT_ISSUED ? issuer_key : pkey,
                  EVP_sha256()) <= 0)
        goto fail;
    rc = tls_write_key(pkey, key_file, err, errlen);
    if (rc == TLS_OK)
        rc = tls_write_cert(x, cert_file, err, errlen);
    goto out;

fail : {
    char tmp[256];
    tls_cfg_err(err, errlen, "certificate for '%s': %s", cn,
                tls_ossl_reason(ERR_peek_error(), tmp, sizeof(tmp)));
    rc = TLS_ERR_CONFIG;
}
out:
    BN_free(bn);
    X509_free(x);
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return rc;
}

int tls_make_self_signed(const char *host, int days, const char *cert_file,
                         const char *key_file, char *err, size_t errlen)
{
    /* RFC 6120 §13.7.1.2: a server certificate names the domain as a
     * DNS-ID; the XmppAddr is there for peers that still look for it. */
    return tls_make_cert(TLS_CERT_SELF_SIGNED, host, host, host, days, NULL,
                         NULL, cert_file, key_file, err, errlen);
}

int tls_make_ca(const char *cn, int days, const char *cert_file,
                const char *key_file, char *err, size_t errlen)
{
    return tls_make_cert(TLS_CERT_CA, cn, NULL, NULL, days, NULL, NULL,
                         cert_file, key_file, err, errlen);
}

int tls_make_ca_signed(const char *ca_cert, const char *ca_key,
                       const char *subject_cn, const char *xmppaddr,
                       const char *dns, int days, const char *cert_file,
                       const char *key_file, char *err, size_t errlen)
{
    int rc = tls_check_file("ca_cert", ca_cert, err, errlen);
    if (rc == TLS_OK)
        rc = tls_check_file("ca_key", ca_key, err, errlen);
    if (rc != TLS_OK)
        return rc;
    X509 *ca = NULL;
    EVP_PKEY *key = NULL;
    FILE *f = fopen(ca_cert, "r");
    if (f != NULL) {
        ca = PEM_read_X509(f, NULL, tls_no_passphrase, NULL);
        fclose(f);
    }
    f = fopen(ca_key, "r");
    if (f != NULL) {
        key = PEM_read_PrivateKey(f, NULL, tls_no_passphrase, NULL);
        fclose(f);
    }
    if (ca == NULL)
        rc = tls_cfg_err(err, errlen, "ca_cert '%s': no PEM certificate in it",
                         ca_cert);
    else if (key == NULL)
        rc = tls_cfg_err(err, errlen, "ca_key '%s': no PEM private key in it",
                         ca_key);
    else if (X509_check_private_key(ca, key) != 1)
        rc = tls_cfg_err(err, errlen, "ca_key '%s' does not match ca_cert '%s'",
                         ca_key, ca_cert);
    else
        rc = tls_make_cert(TLS_CERT_ISSUED, subject_cn, xmppaddr, dns, days, ca,
                           key, cert_file, key_file, err, errlen);
    X509_free(ca);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return rc;
}
