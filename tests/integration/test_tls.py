"""STARTTLS and direct TLS over real sockets (feature set 4-1..4-4,
XEP-0368).

Run: python3 test_tls.py STARLINGD STARLINGCTL
"""
import os
import signal
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import NS_BIND, NS_SASL, NS_TLS, Server, q  # noqa: E402


class StartTLS(harness.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = Server()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def negotiate(self, tls_max, version):
        c = self.client(self.srv)
        first = c.open_stream()
        c.starttls(tls_max=tls_max)
        self.assertEqual(c.sock.version(), version)
        # 4-4: a new stream header over TLS, answered with a new header
        # (fresh id) and the post-TLS features.
        second = c.open_stream()
        self.assertNotEqual(first['id'], second['id'])
        self.assertEqual(second.get('from'), 'localhost')
        self.assertIsNone(c.feature(NS_TLS, 'starttls'))
        self.assertIn('SCRAM-SHA-256', c.mechanisms())
        self.assertEqual(c.auth_scram('alice', 'alice-secret').tag,
                         q(NS_SASL, 'success'))
        c.open_stream()
        c.bind('tls')
        return c

    def test_starttls_tls13(self):
        """4-1, 4-4: STARTTLS with TLS 1.3, then a new stream, SASL, bind."""
        self.negotiate(None, 'TLSv1.3')

    def test_starttls_tls12(self):
        """4-1, 4-4: STARTTLS with TLS 1.2 (RFC 7590)."""
        self.negotiate(ssl.TLSVersion.TLSv1_2, 'TLSv1.2')

    def test_certificate_verifies(self):
        """4-3: the configured certificate verifies for the host names
        (localhost and example.org) with hostname checking on."""
        for host in ('localhost', 'example.org'):
            c = self.client(self.srv)
            c.open_stream(to=host)
            c.starttls(server_hostname=host)
            self.assertTrue(c.sock.getpeercert())

    def test_no_whitespace_pipelined(self):
        """4-2, 5-2: a client that sends its negotiation elements with no
        whitespace at all between them (header and <starttls/> in one
        packet) is served."""
        c = self.client(self.srv)
        c._restart()
        c.send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
               "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' "
               "version='1.0'><starttls xmlns='%s'/>" % NS_TLS)
        c.expect_header()
        c.expect_element(harness.FEATURES)
        c.expect_element(q(NS_TLS, 'proceed'))
        c.wrap_tls()
        c.open_stream()
        self.assertEqual(c.auth_plain('alice', 'alice-secret').tag,
                         q(NS_SASL, 'success'))

    def test_starttls_after_tls_fails(self):
        """RFC 6120 §5.4.2.2: <starttls/> on a TLS stream gets <failure/>
        and the stream is closed."""
        c = self.client(self.srv)
        c.open_stream()
        c.starttls()
        c.open_stream()
        c.send("<starttls xmlns='%s'/>" % NS_TLS)
        c.expect_element(q(NS_TLS, 'failure'))
        c.expect_close()
        c.send('</stream:stream>')
        c.expect_eof()

    def test_starttls_after_tls_direct(self):
        """<starttls/> on a direct-TLS stream: <failure/>, close."""
        c = self.client(self.srv, direct=True)
        c.open_stream()
        self.assertIsNone(c.feature(NS_TLS, 'starttls'))
        c.send("<starttls xmlns='%s'/>" % NS_TLS)
        c.expect_element(q(NS_TLS, 'failure'))
        c.expect_close()

    def test_bytes_after_starttls_not_processed(self):
        """RFC 6120 §5.4.3.3 (and the STARTTLS injection class of bugs):
        plaintext that follows <starttls/> in the same packet is discarded,
        never read as part of the encrypted stream: the handshake works and
        the new stream negotiates normally (no not-authorized for the
        injected stanza)."""
        c = self.client(self.srv)
        c.open_stream()
        c.send("<starttls xmlns='%s'/><message to='bob@localhost'>"
               "<body>injected</body></message>" % NS_TLS)
        c.expect_element(q(NS_TLS, 'proceed'))
        c.wrap_tls()
        c.open_stream()
        self.assertIn('SCRAM-SHA-256', c.mechanisms())
        self.assertEqual(c.auth_scram('alice', 'alice-secret').tag,
                         q(NS_SASL, 'success'))
        c.open_stream()
        c.bind()
        # the stream is healthy: a round trip works and nothing else came
        self.assertEqual(c.sync(), [])

    def test_injected_header_after_starttls(self):
        """Plaintext after <starttls/> that would open the new stream (a
        header) is discarded too: over TLS the server still waits for our
        header, then answers it once."""
        c = self.client(self.srv)
        c.open_stream()
        c.send("<starttls xmlns='%s'/><stream:stream xmlns='jabber:client' "
               "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' "
               "version='1.0'>" % NS_TLS)
        c.expect_element(q(NS_TLS, 'proceed'))
        c.wrap_tls()
        c.open_stream()
        self.assertIn('SCRAM-SHA-256', c.mechanisms())
        self.assertEqual(c.auth_scram('bob', 'bob-secret').tag,
                         q(NS_SASL, 'success'))

    def test_close_notify(self):
        """RFC 8446 §6.1 (and RFC 5246 §7.2.1): the server ends its TLS
        connection with a close_notify alert, so that the client can tell
        an orderly close from a truncation. Checked with OpenSSL's
        unexpected-EOF detection switched back on."""
        for tls_max in (None, ssl.TLSVersion.TLSv1_2):
            ctx = harness.tls_context(tls_max=tls_max)
            ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
            c = self.client(self.srv)
            c.open_stream()
            c.starttls(ctx=ctx)
            c.open_stream()
            c.close_stream()
            self.assertFalse(c.reset, 'TLS ended without close_notify: %s'
                             % getattr(c, 'ssl_error', None))

    def test_tls_garbage_closes(self):
        """A client that sends no TLS handshake after <proceed/> (plaintext
        instead) loses the connection; the server stays up."""
        c = self.client(self.srv)
        c.open_stream()
        c.send("<starttls xmlns='%s'/>" % NS_TLS)
        c.expect_element(q(NS_TLS, 'proceed'))
        c.send(b'GET / HTTP/1.1\r\nHost: localhost\r\n\r\n' * 4)
        c.expect_eof()
        self.login(self.srv).sync()


class DirectTLS(harness.ServerTestCase):
    """XEP-0368 direct TLS on the second listener."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Server()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_direct_tls_alpn(self):
        """ALPN xmpp-client is negotiated; the first header is already over
        TLS; no STARTTLS offered; login and bind work."""
        c = self.client(self.srv, direct=True)
        self.assertEqual(c.sock.selected_alpn_protocol(), 'xmpp-client')
        hdr = c.open_stream()
        self.assertEqual(hdr.get('from'), 'localhost')
        self.assertIsNone(c.feature(NS_TLS, 'starttls'))
        self.assertIn('PLAIN', c.mechanisms())
        self.assertEqual(c.auth_scram('alice', 'alice-secret').tag,
                         q(NS_SASL, 'success'))
        c.open_stream()
        self.assertIsNotNone(c.feature(NS_BIND, 'bind'))
        c.bind('direct')

    def test_direct_tls_tls12(self):
        """Direct TLS with TLS 1.2."""
        c = self.login(self.srv, transport='direct',
                       tls_max=ssl.TLSVersion.TLSv1_2)
        self.assertEqual(c.sock.version(), 'TLSv1.2')

    def test_direct_tls_without_alpn(self):
        """A client that offers no ALPN is accepted (many do not)."""
        c = self.client(self.srv, direct=True, alpn=None)
        self.assertIsNone(c.sock.selected_alpn_protocol())
        c.open_stream()
        self.assertIn('SCRAM-SHA-256', c.mechanisms())

    def test_direct_tls_wrong_alpn(self):
        """A client that offers only another protocol (h2) is refused with
        a TLS alert (RFC 7301 §3.2)."""
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            self.client(self.srv, direct=True, alpn=('h2',))

    def test_plaintext_on_direct_port(self):
        """An XMPP header in the clear on the direct-TLS port is not
        answered with XMPP; the connection ends."""
        s = socket.create_connection(('127.0.0.1', self.srv.tls_port), timeout=5)
        try:
            s.sendall(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                      b"xmlns:stream='http://etherx.jabber.org/streams' "
                      b"to='localhost' version='1.0'>")
            data = b''
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except ConnectionResetError:
                pass
            self.assertNotIn(b'<stream:', data)
        finally:
            s.close()


class Tickets(harness.ServerTestCase):
    """TLS session tickets (issue 11, fast reconnects): a client that
    reconnects with its ticket skips the full handshake, over STARTTLS and
    direct TLS, TLS 1.3 and 1.2; keys rotate (a ticket is refused after two
    lifetimes); ticket_lifetime = 0 issues none; and a resumed stream logs
    in as usual."""

    def session(self, srv, ctx, direct, sess=None, tls_max=None):
        """One TLS connection with `ctx`: returns (session, reused)."""
        raw = socket.create_connection(
            ('127.0.0.1', srv.tls_port if direct else srv.port), timeout=10)
        if not direct:
            raw.sendall(b"<?xml version='1.0'?><stream:stream xmlns="
                        b"'jabber:client' xmlns:stream='http://etherx.jabber"
                        b".org/streams' to='localhost' version='1.0'>")
            data = b''
            while b'</stream:features>' not in data:
                data += raw.recv(4096)
            raw.sendall(b"<starttls xmlns='%s'/>" % NS_TLS.encode())
            while b'<proceed' not in data:
                data += raw.recv(4096)
        s = ctx.wrap_socket(raw, server_hostname='localhost', session=sess)
        s.sendall(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client'"
                  b" xmlns:stream='http://etherx.jabber.org/streams' "
                  b"to='localhost' version='1.0'>")
        data = b''
        while b'</stream:features>' not in data:
            data += s.recv(4096)  # TLS 1.3 tickets come with these reads
        reused, got = s.session_reused, s.session
        s.close()
        return got, reused

    def test_resumption(self):
        srv = Server()
        try:
            for direct in (True, False):
                for ver in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
                    ctx = harness.tls_context(
                        tls_max=ver, alpn=('xmpp-client',) if direct else None)
                    sess, reused = self.session(srv, ctx, direct)
                    self.assertFalse(reused)
                    self.assertIsNotNone(sess)
                    self.assertTrue(sess.has_ticket, (direct, ver))
                    _, reused = self.session(srv, ctx, direct, sess)
                    self.assertTrue(reused, (direct, ver))
            # A resumed connection logs in like any other.
            ctx = harness.tls_context(alpn=('xmpp-client',))
            sess, _ = self.session(srv, ctx, True)
            raw = socket.create_connection(('127.0.0.1', srv.tls_port),
                                           timeout=10)
            c = self.client(srv)
            c.sock.close()
            c.sock = ctx.wrap_socket(raw, server_hostname='localhost',
                                     session=sess)
            self.assertTrue(c.sock.session_reused)
            c.open_stream()
            self.assertEqual(c.auth_scram('alice', 'alice-secret').tag,
                             q(NS_SASL, 'success'))
            c.open_stream()
            c.bind('resumed')
        finally:
            srv.stop()

    def test_keys_rotate(self):
        srv = Server(top={'tls': {'ticket_lifetime': 1}})
        try:
            ctx = harness.tls_context(alpn=('xmpp-client',))
            sess, _ = self.session(srv, ctx, True)
            _, reused = self.session(srv, ctx, True, sess)
            self.assertTrue(reused)
            time.sleep(2.5)
            _, reused = self.session(srv, ctx, True, sess)
            self.assertFalse(reused)
        finally:
            srv.stop()

    def test_off(self):
        srv = Server(top={'tls': {'ticket_lifetime': 0}})
        try:
            ctx = harness.tls_context(alpn=('xmpp-client',))
            sess, _ = self.session(srv, ctx, True)
            _, reused = self.session(srv, ctx, True, sess)
            self.assertFalse(reused)
        finally:
            srv.stop()


class CertificateReload(harness.ServerTestCase):
    """SIGHUP reloads the certificate for new connections (main.c)."""

    def test_sighup_reloads_certificate(self):
        """After SIGHUP with a new certificate in the config, new STARTTLS
        and direct-TLS connections get (and verify against) the new one;
        a stream opened before keeps working."""
        srv = Server()
        try:
            old = self.login(srv)
            old_der = old.sock.getpeercert(binary_form=True)
            srv.cert, srv.key = harness.new_certificate()
            srv.write_config(ports=(srv.port, srv.tls_port))
            mark = len(srv.lines)
            srv.signal(signal.SIGHUP)
            srv.wait_log(r'certificate .* reloaded', start=mark)
            c = self.client(srv)
            c.open_stream()
            c.starttls(cafile=srv.cert)
            self.assertNotEqual(c.sock.getpeercert(binary_form=True), old_der)
            d = self.client(srv, direct=True, cafile=srv.cert)
            self.assertNotEqual(d.sock.getpeercert(binary_form=True), old_der)
            self.assertEqual(old.sync(), [])
        finally:
            srv.stop()

    def test_sighup_bad_config_keeps_running(self):
        """A config that does not load is refused on SIGHUP; the server
        keeps its running configuration and still serves."""
        srv = Server()
        try:
            with open(srv.conf, 'a') as f:
                f.write('limits = { no_such_setting = 1; };\n')
            mark = len(srv.lines)
            srv.signal(signal.SIGHUP)
            srv.wait_log(r'keeping the running configuration', start=mark)
            self.login(srv).sync()
        finally:
            srv.stop()


if __name__ == '__main__':
    harness.main()
