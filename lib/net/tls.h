/* tls: OpenSSL 3 behind memory BIOs, without sockets (sans-I/O).
 *
 * A tls_conn_t sits between the socket and the XML parser: ciphertext read
 * from the socket goes in with tls_conn_feed(), plaintext comes out through
 * tls_conn_read(); plaintext to send goes in with tls_conn_write() and the
 * ciphertext to put on the socket is taken with tls_conn_take_output().
 * The handshake runs inside those calls. Nothing here blocks or touches the
 * event loop, so unit tests pair a client and a server in memory.
 *
 * Defaults follow RFC 7590: TLS 1.2 and 1.3 only, modern AEAD cipher
 * suites with forward secrecy; `legacy_ciphers` additionally allows the
 * TLS 1.2 CBC suites that old peers need (RFC 6120 replaced the feature
 * set's 3DES requirement; 3DES itself is never offered). */
#ifndef STARLING_NET_TLS_H
#define STARLING_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"

typedef enum tls_error {
    TLS_OK = 0,
    TLS_ERR_NOMEM = -1,
    TLS_ERR_CONFIG = -2,    /* certificate, key or CA file unusable */
    TLS_ERR_HANDSHAKE = -3, /* the handshake failed (alert sent or received) */
    TLS_ERR_VERIFY = -4,    /* the peer certificate did not verify */
    TLS_ERR_PROTOCOL = -5,  /* a record failed to decrypt or parse */
    TLS_ERR_CLOSED = -6,    /* the peer sent close_notify */
} tls_error_t;

const char *tls_strerror(int err);

typedef struct tls_ctx_opts {
    const char *cert_file; /* PEM chain, leaf first; server: required */
    const char *key_file;  /* PEM private key (unencrypted); NULL: the key
                              is in cert_file */
    const char *ca_file;   /* client: trust anchors (NULL: system store);
                              server: CA for client certificates (EXTERNAL),
                              NULL: never ask for one */
    const char *alpn;      /* server: protocol to accept, e.g. "xmpp-client";
                              client: protocol to offer; NULL: none.
                              Fixed at creation (tls_ctx_reload keeps it). */
    const char *ciphers;   /* TLS 1.2 cipher list in OpenSSL syntax that
                              replaces the default (and legacy) list; NULL:
                              the default. For tests and interop. */
    int max_version;       /* 0 (or 13): up to TLS 1.3; 12: TLS 1.2 only */
    bool legacy_ciphers;   /* also allow TLS 1.2 CBC-mode suites */
    bool insecure;         /* client: accept any server certificate; only
                              ever from an explicit user choice */
    /* Server-to-server. verify_soft: a peer certificate that does not
     * verify (chain, time, name) never fails the handshake; the outcome is
     * kept for tls_conn_peer_valid_for(), so that the caller can fall back
     * to Server Dialback. request_peer_cert (server): ask every client for
     * a certificate, verified against the system's trust store plus
     * ca_file. With either, the trust anchors are the system store plus
     * ca_file. */
    bool verify_soft;
    bool request_peer_cert;
    /* Server: TLS session tickets (stateless resumption, RFC 8446 §4.6.1)
     * under keys that are replaced every ticket_lifetime seconds (a ticket
     * stays good for one to two lifetimes); 0: none. Never with client
     * certificates (ca_file, verify_soft, request_peer_cert). */
    unsigned ticket_lifetime;
} tls_ctx_opts_t;

typedef struct tls_ctx tls_ctx_t;

/* Tickets a server context has issued and accepted (resumed sessions),
 * for logs and tests. */
void tls_ctx_ticket_stats(const tls_ctx_t *ctx, unsigned long *issued,
                          unsigned long *accepted);

/* A server context: certificate and key loaded and checked against each
 * other. The context must outlive every tls_conn_t made from it. A client
 * certificate is requested (never required) only when ca_file is set. On
 * failure returns NULL and writes a one-line reason (file, and what is wrong
 * with it) into err (size errlen). */
tls_ctx_t *tls_ctx_new_server(const tls_ctx_opts_t *o, char *err,
                              size_t errlen);

/* A client context: verifies the server against ca_file or the system
 * store; cert_file/key_file optional (a client certificate for EXTERNAL). */
tls_ctx_t *tls_ctx_new_client(const tls_ctx_opts_t *o, char *err,
                              size_t errlen);

/* Replaces the certificate, key, CA file and cipher settings from o
 * (SIGHUP); o->alpn is ignored (the protocol stays the one given at
 * creation). Connections already running keep the old ones; on failure the
 * context is left unchanged. Returns TLS_OK or TLS_ERR_CONFIG with err. */
int tls_ctx_reload(tls_ctx_t *ctx, const tls_ctx_opts_t *o, char *err,
                   size_t errlen);

void tls_ctx_free(tls_ctx_t *ctx);

typedef struct tls_conn tls_conn_t;

/* A connection in the server role (accepts) or client role (connects to
 * `server_name`, sent as SNI — unless it is an IP literal — and checked
 * against the certificate's DNS-IDs per RFC 6125; an XmppAddr/SRV-ID check
 * is for callers with tls_conn_peer_names()). The client role writes its
 * ClientHello at once: take it with tls_conn_take_output(). NULL when out
 * of memory, server_name is NULL, or no ClientHello can be made (no usable
 * cipher suite). */
tls_conn_t *tls_conn_new_server(tls_ctx_t *ctx);
tls_conn_t *tls_conn_new_client(tls_ctx_t *ctx, const char *server_name);
void tls_conn_free(tls_conn_t *c);

/* Feeds ciphertext received from the peer. Runs the handshake as far as it
 * can and decrypts every complete record (the plaintext waits for
 * tls_conn_read). Returns TLS_OK, TLS_ERR_CLOSED once close_notify has been
 * received (data that preceded it is still returned by tls_conn_read; bytes
 * after it are ignored, RFC 8446 §6.1), or a negative tls_error_t. Errors
 * other than CLOSED are sticky; an alert to send may then still wait in
 * tls_conn_take_output(), and tls_conn_error_text() says what happened. */
int tls_conn_feed(tls_conn_t *c, const void *data, size_t len);

/* Appends decrypted application data to out (when out is empty its buffer
 * is swapped in rather than copied). Returns TLS_OK, TLS_ERR_CLOSED once
 * close_notify has been received (after appending what preceded it), or the
 * connection's sticky error. */
int tls_conn_read(tls_conn_t *c, buf_t *out);

/* Encrypts plaintext for the peer (buffered inside until the handshake is
 * done). Returns TLS_OK or an error (TLS_ERR_PROTOCOL after
 * tls_conn_shutdown). */
int tls_conn_write(tls_conn_t *c, const void *data, size_t len);

/* Queues close_notify for the peer. Returns TLS_OK, also when there is
 * nothing to close (handshake not finished, connection failed: plaintext not
 * yet sent is dropped), or an error. */
int tls_conn_shutdown(tls_conn_t *c);

/* Moves the ciphertext waiting to go to the peer into out (appended); the
 * connection then holds no output buffer. Returns TLS_OK or
 * TLS_ERR_NOMEM. */
int tls_conn_take_output(tls_conn_t *c, buf_t *out);

/* Bytes of ciphertext waiting for tls_conn_take_output() (so that a
 * caller can tell where each plaintext piece ends in the ciphertext). */
size_t tls_conn_output_pending(const tls_conn_t *c);

bool tls_conn_handshake_done(const tls_conn_t *c);

/* "TLSv1.3" etc. (NULL before the handshake is done), and the negotiated
 * ALPN protocol (NULL if none). */
const char *tls_conn_version(const tls_conn_t *c);
const char *tls_conn_alpn(const tls_conn_t *c);
bool tls_conn_is_tls13(const tls_conn_t *c);

/* Channel binding data after the handshake. tls-exporter (RFC 9266):
 * 32 bytes of EXPORTER-Channel-Binding with a zero-length context; on
 * TLS 1.2 only when the extended master secret was negotiated. tls-unique
 * (RFC 5929): the first Finished message (12 bytes), TLS 1.2 only. Each
 * returns the length written into out, or -1 when that binding is not
 * available or out is too small. */
int tls_conn_cb_exporter(tls_conn_t *c, unsigned char *out, size_t size);
int tls_conn_cb_unique(tls_conn_t *c, unsigned char *out, size_t size);

/* The verified peer certificate's identities for EXTERNAL and RFC 6125
 * checks: XmppAddr otherName values (id-on-xmppAddr), then dNSName SANs,
 * then the subject CN, each as a NUL-terminated string appended to names
 * (a list, NULL-terminated, malloc'd; free with tls_names_free). Values
 * with an embedded NUL are skipped. Returns the number of names (*names is
 * NULL when 0): 0 when the peer sent no certificate or it did not verify
 * against ca_file; TLS_ERR_NOMEM. */
int tls_conn_peer_names(tls_conn_t *c, char ***names);
void tls_names_free(char **names);

/* RFC 6125 as RFC 6120 §13.7.2 and RFC 7590 profile it for servers: the
 * peer's certificate chain verified against the trust anchors, and it
 * names `domain` — a dNSName (a wildcard only as the whole left-most
 * label; the subject CN only when there is no dNSName), an SRV-ID
 * "_SERVICE.domain" (`srv_service` e.g. "xmpp-server"; NULL: none), or an
 * XmppAddr equal to the domain. `domain` is compared as given (ASCII; an
 * IDN is passed as its A-label for dNSNames). */
bool tls_conn_peer_valid_for(tls_conn_t *c, const char *domain,
                             const char *srv_service);
/* Why the peer's certificate did not verify, one line ("" when it did;
 * "no certificate" when none was sent). */
const char *tls_conn_verify_error(tls_conn_t *c);

/* SHA-256 of the peer certificate's SubjectPublicKeyInfo (DER), the value
 * HPKP pins named; for pinning a server's key. Returns 0, or -1 when the
 * peer sent no certificate. */
int tls_conn_peer_spki_sha256(tls_conn_t *c, unsigned char out[32]);

/* What went wrong last on this connection, one line ("" if nothing): the
 * OpenSSL reason, e.g. "tlsv1 alert no application protocol" or
 * "certificate verify failed: unable to get local issuer certificate". */
const char *tls_conn_error_text(const tls_conn_t *c);

/* Writes a self-signed ECDSA P-256 certificate for `host` (CN and a dNSName
 * SAN, plus an XmppAddr for the host, RFC 6120 §13.7.1.2), valid `days`
 * days, SHA-256, CA:FALSE, for serverAuth and clientAuth, to cert_file and
 * its key (PKCS#8 PEM) to key_file (mode 0600). `host` is an A-label
 * domain. Returns TLS_OK or TLS_ERR_CONFIG with err. */
int tls_make_self_signed(const char *host, int days, const char *cert_file,
                         const char *key_file, char *err, size_t errlen);

/* Writes a self-signed ECDSA P-256 CA certificate (CA:TRUE, keyCertSign)
 * with subject CN=cn, for tests and small private deployments. */
int tls_make_ca(const char *cn, int days, const char *cert_file,
                const char *key_file, char *err, size_t errlen);

/* Writes an ECDSA P-256 certificate signed by the CA in ca_cert/ca_key:
 * subject CN=subject_cn, SANs an XmppAddr (xmppaddr, e.g. a client's bare
 * JID) and a dNSName (dns), each left out when NULL, CA:FALSE, for
 * serverAuth and clientAuth. */
int tls_make_ca_signed(const char *ca_cert, const char *ca_key,
                       const char *subject_cn, const char *xmppaddr,
                       const char *dns, int days, const char *cert_file,
                       const char *key_file, char *err, size_t errlen);

#endif
