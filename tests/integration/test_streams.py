"""XML streams over real sockets: headers, features, closing, stream errors
and shutdown (feature set 3.2, 3.3.2, 3.4, 3.5, 3.6, 9-2).

Run: python3 test_streams.py STARLINGD STARLINGCTL
"""
import base64
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (NS_BIND, NS_CLIENT, NS_SASL, NS_STREAMS, NS_TLS,  # noqa: E402
                     NS_XML, Server, q)

HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' "
          "version='1.0'>")


class StreamHeaders(harness.ServerTestCase):
    """Response headers and features (3.2-*, 3.3.2-1..5, 3.4-1, 3.4-2)."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Server()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_response_header(self):
        """3.3.2-1 from = served domain, 3.3.2-2 to = client's from,
        3.3.2-3 id, 3.3.2-5 version 1.0, xml:lang; 3.2-1..5 streams
        namespace with the stream: prefix, default namespace jabber:client."""
        c = self.client(self.srv)
        hdr = c.open_stream(to='localhost', frm='alice@localhost', lang='en')
        self.assertEqual(c.header_tag, q(NS_STREAMS, 'stream'))
        self.assertEqual(hdr.get('from'), 'localhost')
        self.assertEqual(hdr.get('to'), 'alice@localhost')
        self.assertEqual(hdr.get('version'), '1.0')
        self.assertEqual(hdr.get(q(NS_XML, 'lang')), 'en')
        self.assertGreaterEqual(len(hdr.get('id', '')), 22)
        self.assertEqual(c.header_ns.get('stream'), NS_STREAMS)
        self.assertEqual(c.header_ns.get(''), NS_CLIENT)
        self.assertIn(b'<stream:stream', bytes(c.stream_raw))
        self.assertIn(b'<stream:features', bytes(c.stream_raw))

    def test_lang(self):
        """3.3.1-3, RFC 6120 §4.7.4: the response header carries the
        xml:lang the client asked for, or the server default (en) when the
        client gave none or an invalid tag."""
        for asked, want in (('de', 'de'), ('pt-BR', 'pt-BR'), (None, 'en'),
                            ('not a tag', 'en')):
            c = self.client(self.srv)
            hdr = c.open_stream(lang=asked)
            self.assertEqual(hdr.get(q(NS_XML, 'lang')), want, asked)

    def test_restart_echoes_from(self):
        """3.3.2-2 on the restarted stream after TLS: 'to' echoes the
        client's 'from' again."""
        c = self.client(self.srv)
        c.open_stream(frm='bob@localhost')
        c.starttls()
        hdr = c.open_stream(frm='bob@localhost')
        self.assertEqual(hdr.get('to'), 'bob@localhost')

    def test_restart_other_host(self):
        """A restarted stream must name the same service: 'to' switching
        from localhost to example.org after TLS is host-unknown."""
        c = self.client(self.srv)
        c.open_stream(to='localhost')
        c.starttls()
        c._restart()
        c.send("<stream:stream xmlns='jabber:client' xmlns:stream='%s' "
               "to='example.org' version='1.0'>" % NS_STREAMS)
        c.expect_header()
        c.expect_stream_error('host-unknown')

    def test_second_host(self):
        """3.3.2-1: the header names the host the client asked for."""
        c = self.client(self.srv)
        hdr = c.open_stream(to='example.org')
        self.assertEqual(hdr.get('from'), 'example.org')
        self.assertNotIn('to', hdr)  # no 'from' given: nothing to echo

    def test_domain_is_prepared(self):
        """2.1-1: 'to' is nameprep'd before it is matched (LOCALHOST)."""
        c = self.client(self.srv)
        hdr = c.open_stream(to='LocalHost')
        self.assertEqual(hdr.get('from'), 'localhost')

    def test_stream_ids_unique(self):
        """3.3.2-4: every stream gets a fresh id (across connections and
        across restarts of one connection)."""
        ids = set()
        for _ in range(6):
            c = self.client(self.srv)
            ids.add(c.open_stream().get('id'))
        c = self.client(self.srv)
        ids.add(c.open_stream().get('id'))
        c.starttls()
        ids.add(c.open_stream().get('id'))
        self.assertEqual(len(ids), 8)

    def test_starttls_required_only_feature(self):
        """3.4-1, 3.4-2, RFC 6120 §5.3.1: before TLS, when TLS is mandatory,
        <starttls><required/></starttls> is the only feature."""
        c = self.client(self.srv)
        c.open_stream()
        children = list(c.features)
        self.assertEqual([e.tag for e in children], [q(NS_TLS, 'starttls')])
        self.assertEqual([e.tag for e in children[0]], [q(NS_TLS, 'required')])

    def test_features_after_every_header(self):
        """3.4-1: features follow each of the three headers of a login:
        starttls, then SASL mechanisms, then bind."""
        c = self.client(self.srv)
        c.open_stream()
        self.assertIsNotNone(c.feature(NS_TLS, 'starttls'))
        c.starttls()
        c.open_stream()
        self.assertIsNone(c.feature(NS_TLS, 'starttls'))
        self.assertIn('SCRAM-SHA-256', c.mechanisms())
        self.assertEqual(c.auth_scram('alice', 'alice-secret').tag,
                         q(NS_SASL, 'success'))
        c.open_stream()
        self.assertIsNotNone(c.feature(NS_BIND, 'bind'))
        self.assertEqual(c.mechanisms(), [])

    def test_no_whitespace_in_negotiation(self):
        """4-2, 5-2: the server puts no whitespace between the elements it
        sends while negotiating."""
        c = self.client(self.srv)
        c.open_stream()
        c.send("<starttls xmlns='%s'/>" % NS_TLS)
        c.expect_element(q(NS_TLS, 'proceed'))
        raw = bytes(c.stream_raw)
        self.assertTrue(raw.endswith(b"<proceed xmlns='%s'/>" % NS_TLS.encode())
                        or raw.endswith(b'<proceed xmlns="%s"/>' % NS_TLS.encode()),
                        raw[-200:])
        self.assertNotRegex(raw.split(b'?>', 1)[1].decode(), r'>\s+<')


class Closing(harness.ServerTestCase):
    """Closing a stream (3.5-1..4)."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(limits={'close_timeout': 1.0})

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_client_closes_before_tls(self):
        """3.5-1, 3.5-4: our close tag is answered with the server's, then
        TCP ends; nothing follows the server's close tag (3.5-3)."""
        c = self.client(self.srv)
        c.open_stream()
        c.close_stream()
        self.assertTrue(bytes(c.stream_raw).endswith(b'</stream:stream>'))

    def test_client_closes_bound_stream(self):
        """3.5-1..4 on an authenticated, bound, TLS-protected stream."""
        c = self.login(self.srv)
        c.close_stream()

    def test_server_close_waits_then_gives_up(self):
        """3.5-2: after its error and close tag the server waits for ours,
        and considers the stream void after close_timeout (1 s here)."""
        c = self.client(self.srv)
        c.open_stream()
        t0 = time.monotonic()
        c.send('<!-- comment -->')
        c.expect_stream_error('restricted-xml', answer=False)
        c.expect_eof(timeout=6)
        self.assertGreaterEqual(time.monotonic() - t0, 0.8)


class StreamErrors(harness.ServerTestCase):
    """Stream errors (3.6-1, 3.6-2): each is <stream:error> with the RFC 6120
    §4.9.3 condition, then </stream:stream>, then the end of TCP."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Server()
        cls.plain = Server(c2s={'allow_plain_loopback': True})

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.plain.stop()

    def raw_header_error(self, data, condition, server=None):
        c = self.client(server or self.srv)
        c.send(data)
        c.expect_header()
        c.expect_stream_error(condition)
        return c

    def test_bad_format(self):
        """§4.9.3.1 bad-format: the root element is not <stream>."""
        self.raw_header_error(
            "<?xml version='1.0'?><stream:foo xmlns='jabber:client' "
            "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' "
            "version='1.0'>", 'bad-format')

    def test_bad_format_text_at_stream_level(self):
        """§4.9.3.1 bad-format: character data between top-level elements."""
        c = self.client(self.srv)
        c.open_stream()
        c.send('hello')
        c.expect_stream_error('bad-format')

    def test_bad_namespace_prefix(self):
        """§4.9.3.2 bad-namespace-prefix: the streams namespace without the
        stream: prefix (3.2-2)."""
        self.raw_header_error(
            "<?xml version='1.0'?><stream xmlns='http://etherx.jabber.org/streams' "
            "to='localhost' version='1.0'>", 'bad-namespace-prefix')

    def test_host_unknown(self):
        """§4.9.3.6 host-unknown: 'to' names a domain we do not serve; the
        error comes in a header of ours (§4.9.1.1)."""
        c = self.client(self.srv)
        c.send(HEADER.replace("to='localhost'", "to='nowhere.example'"))
        hdr = c.expect_header()
        self.assertIn('id', hdr)
        c.expect_stream_error('host-unknown')

    def test_host_unknown_without_to(self):
        """§4.9.3.6: with two hosts served, a header without 'to' names no
        service."""
        self.raw_header_error(HEADER.replace("to='localhost' ", ''),
                              'host-unknown')

    def test_invalid_from(self):
        """§4.9.3.9 invalid-from: the header's 'from' is not a JID."""
        self.raw_header_error(
            HEADER.replace("to='localhost'", "to='localhost' from='@@bad'"),
            'invalid-from')

    def test_invalid_namespace(self):
        """§4.9.3.10 invalid-namespace: content namespace jabber:foo."""
        self.raw_header_error(HEADER.replace("xmlns='jabber:client'",
                                             "xmlns='jabber:foo'"),
                              'invalid-namespace')

    def test_invalid_namespace_streams(self):
        """§4.9.3.10 invalid-namespace: the stream element in another
        namespace than http://etherx.jabber.org/streams."""
        self.raw_header_error(HEADER.replace("http://etherx.jabber.org/streams",
                                             "urn:not-streams"),
                              'invalid-namespace')

    def test_not_well_formed(self):
        """§4.9.3.13 not-well-formed: mismatched tags."""
        c = self.client(self.srv)
        c.open_stream()
        c.send("<starttls xmlns='%s'></proceed>" % NS_TLS)
        c.expect_stream_error('not-well-formed')

    def test_not_well_formed_invalid_utf8(self):
        """§4.9.3.13 (and §11.6): bytes that are not UTF-8."""
        c = self.client(self.srv)
        c.open_stream()
        c.send(b"<starttls xmlns='urn:x\xff\xfe'/>")
        c.expect_stream_error('not-well-formed')

    def test_policy_violation_preauth_size(self):
        """§4.9.3.14 policy-violation: an element over
        max_stanza_size_preauth (16 KiB) before authentication. Sent after
        TLS, where a small stanza would be not-authorized instead."""
        c = self.client(self.srv)
        c.open_stream()
        c.starttls()
        c.open_stream()
        c.send('<message to="bob@localhost"><body>%s</body></message>'
               % ('x' * 20000))
        c.expect_stream_error('policy-violation')

    def test_policy_violation_pipelining(self):
        """§4.9.3.14 policy-violation: more than 32 elements pipelined
        while the server waits for an asynchronous answer (the account
        lookup of a SCRAM exchange)."""
        c = self.client(self.srv)
        c.open_stream()
        c.starttls()
        c.open_stream()
        first = base64.b64encode(b'n,,n=alice,r=abcdefghijklmnop').decode()
        c.send("<auth xmlns='%s' mechanism='SCRAM-SHA-256'>%s</auth>"
               % (NS_SASL, first) + "<x xmlns='urn:x'/>" * 40)
        c.expect_stream_error('policy-violation')

    def test_restricted_xml_comment(self):
        """§4.9.3.18 restricted-xml (9-2): a comment."""
        c = self.client(self.srv)
        c.open_stream()
        c.send('<!-- hello -->')
        c.expect_stream_error('restricted-xml')

    def test_restricted_xml_pi_and_dtd(self):
        """§4.9.3.18 restricted-xml (9-2): a processing instruction, a
        DOCTYPE, an entity reference other than the predefined five."""
        for data in ('<?foo bar?>', '<!DOCTYPE x>'):
            c = self.client(self.srv)
            c.open_stream()
            c.send(data)
            c.expect_stream_error('restricted-xml')
        c = self.client(self.srv)
        c.send("<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY x 'y'>]>"
               + HEADER.split('?>', 1)[1])
        c.expect_header()
        c.expect_stream_error('restricted-xml')

    def test_unsupported_encoding(self):
        """§4.9.3.22 unsupported-encoding: an ISO-8859-1 declaration."""
        self.raw_header_error(HEADER.replace("version='1.0'?>",
                                             "version='1.0' encoding='ISO-8859-1'?>", 1),
                              'unsupported-encoding')

    def test_unsupported_version_missing(self):
        """§4.9.3.25 unsupported-version: no version attribute (pre-1.0)."""
        self.raw_header_error(HEADER.replace(" version='1.0'>", '>'),
                              'unsupported-version')

    def test_unsupported_version_2(self):
        """§4.9.3.25 unsupported-version: version='2.0'."""
        self.raw_header_error(HEADER.replace(" version='1.0'>", " version='2.0'>"),
                              'unsupported-version')

    def test_version_1_x_accepted(self):
        """RFC 6120 §4.7.5: a higher minor version of 1 is still 1.0 for us:
        the server answers version='1.0'."""
        c = self.client(self.srv)
        hdr = c.open_stream(version='1.1')
        self.assertEqual(hdr.get('version'), '1.0')

    def test_not_authorized_after_tls(self):
        """§4.9.3.12 not-authorized: a stanza before authentication (after
        TLS)."""
        c = self.client(self.srv)
        c.open_stream()
        c.starttls()
        c.open_stream()
        c.send("<message to='bob@localhost'><body>hi</body></message>")
        c.expect_stream_error('not-authorized')

    def test_not_authorized_plaintext_loopback(self):
        """§4.9.3.12 not-authorized on a plaintext loopback stream
        (allow_plain_loopback)."""
        c = self.client(self.plain)
        c.open_stream()
        c.send("<message to='bob@localhost'><body>hi</body></message>")
        c.expect_stream_error('not-authorized')

    def test_not_authorized_before_bind(self):
        """RFC 6120 §7.1: no stanzas between SASL and resource binding."""
        c = self.client(self.srv)
        c.open_stream()
        c.starttls()
        c.open_stream()
        c.auth_scram('alice', 'alice-secret')
        c.open_stream()
        c.send("<message to='bob@localhost'><body>hi</body></message>")
        c.expect_stream_error('not-authorized')

    def test_stanza_before_starttls_when_required(self):
        """RFC 6120 §5.3.1: with TLS mandatory, a stanza in the clear is
        refused (policy-violation)."""
        c = self.client(self.srv)
        c.open_stream()
        c.send("<message to='bob@localhost'><body>hi</body></message>")
        c.expect_stream_error('policy-violation')

    def test_unsupported_stanza_type_before_auth(self):
        """§4.9.3.24 unsupported-stanza-type: an unknown top-level element
        in the stream before authentication."""
        c = self.client(self.srv)
        c.open_stream()
        c.starttls()
        c.open_stream()
        c.send("<foo xmlns='urn:x'/>")
        c.expect_stream_error('unsupported-stanza-type')

    def test_unsupported_stanza_type_after_bind(self):
        """§4.9.3.24 unsupported-stanza-type on a bound stream, also for a
        known name in a foreign namespace."""
        c = self.login(self.srv)
        c.send("<foo xmlns='urn:x'/>")
        c.expect_stream_error('unsupported-stanza-type')
        c = self.login(self.srv)
        c.send("<message xmlns='urn:x'><body>hi</body></message>")
        c.expect_stream_error('unsupported-stanza-type')

    def test_jabber_server_stanza_on_client_stream(self):
        """§4.9.3.10 invalid-namespace: a jabber:server stanza on a c2s
        stream."""
        c = self.login(self.srv)
        c.send("<message xmlns='jabber:server' to='bob@localhost'/>")
        c.expect_stream_error('invalid-namespace')

    def test_policy_violation_depth(self):
        """§4.9.3.14 policy-violation: nesting deeper than max_depth (64)."""
        c = self.login(self.srv)
        c.send("<message to='bob@localhost'>" + '<a>' * 80 + '</a>' * 80
               + '</message>')
        c.expect_stream_error('policy-violation')

    def test_policy_violation_attributes(self):
        """§4.9.3.14 policy-violation: more attributes than max_attrs (64)."""
        c = self.login(self.srv)
        attrs = ' '.join("a%d='x'" % i for i in range(80))
        c.send("<message to='bob@localhost' %s/>" % attrs)
        c.expect_stream_error('policy-violation')

    def test_policy_violation_postauth_size(self):
        """§4.9.3.14 policy-violation: a stanza over max_stanza_size
        (256 KiB) after authentication."""
        c = self.login(self.srv)
        c.send('<message to="bob@localhost"><body>%s</body></message>'
               % ('x' * (300 * 1024)))
        c.expect_stream_error('policy-violation')

    def test_data_after_client_close_tag(self):
        """3.5-3 seen from the server: after our close tag nothing more may
        come; the server answers with its close tag and ends TCP."""
        c = self.client(self.srv)
        c.open_stream()
        c.send('</stream:stream><starttls/>')
        c.expect_close()
        c.expect_eof()


class Timeouts(harness.ServerTestCase):
    """connection-timeout (§4.9.3.4) for a stream that never negotiates."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(limits={'handshake_timeout': 1.0})

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_handshake_timeout_silent(self):
        """Connect and say nothing: after handshake_timeout (1 s) a header
        and <connection-timeout/>."""
        c = self.client(self.srv)
        t0 = time.monotonic()
        c.expect_header(timeout=8)
        c.expect_stream_error('connection-timeout')
        self.assertGreaterEqual(time.monotonic() - t0, 0.8)

    def test_handshake_timeout_after_header(self):
        """A stream that opens but never binds gets connection-timeout."""
        c = self.client(self.srv)
        c.open_stream()
        t0 = time.monotonic()
        c.expect_stream_error('connection-timeout', timeout=8)
        self.assertLess(time.monotonic() - t0, 5)


class Conflict(harness.ServerTestCase):
    """conflict (§4.9.3.3): a new session binds a resource that is online."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Server()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_conflict_new_wins(self):
        """resource_conflict new-wins (default): the first session gets
        <conflict/> and its stream closes; the second is bound."""
        a = self.login(self.srv, resource='desk')
        b = self.login(self.srv, resource='desk')
        self.assertEqual(b.jid, 'alice@localhost/desk')
        a.expect_stream_error('conflict')
        b.sync()


class Shutdown(harness.ServerTestCase):
    """system-shutdown (§4.9.3.20) on SIGTERM; each test stops its own
    server."""

    def test_system_shutdown_client_answers(self):
        """Bound and unauthenticated clients get <system-shutdown/> and the
        close tag; new connections are refused; once the clients answer
        with their close tag the server exits 0 without waiting for
        close_timeout (5 s)."""
        srv = Server(limits={'close_timeout': 5.0})
        try:
            a = self.login(srv)
            b = self.client(srv)
            b.open_stream()
            srv.signal(signal.SIGTERM)
            a.expect_stream_error('system-shutdown', answer=False)
            b.expect_stream_error('system-shutdown', answer=False)
            with self.assertRaises(OSError):
                socket.create_connection(('127.0.0.1', srv.port), timeout=2).close()
            t0 = time.monotonic()
            a.send('</stream:stream>')
            b.send('</stream:stream>')
            a.expect_eof()
            b.expect_eof()
            rc = srv.wait_exit(4)
            self.assertEqual(rc, 0, srv.log_text())
            self.assertLess(time.monotonic() - t0, 4)
        finally:
            srv.kill()

    def test_system_shutdown_silent_client(self):
        """A client that never answers is cut off after close_timeout (1 s)
        and the server still exits 0."""
        srv = Server(limits={'close_timeout': 1.0})
        try:
            a = self.login(srv)
            t0 = time.monotonic()
            srv.signal(signal.SIGTERM)
            a.expect_stream_error('system-shutdown', answer=False)
            a.expect_eof(timeout=8)
            self.assertGreaterEqual(time.monotonic() - t0, 0.8)
            self.assertEqual(srv.wait_exit(8), 0, srv.log_text())
        finally:
            srv.kill()

    def test_sigint_like_sigterm(self):
        """SIGINT (Ctrl-C) ends the streams with system-shutdown too."""
        srv = Server()
        try:
            a = self.login(srv)
            srv.signal(signal.SIGINT)
            a.expect_stream_error('system-shutdown')
            self.assertEqual(srv.wait_exit(5), 0, srv.log_text())
        finally:
            srv.kill()

    def test_sigterm_idle_server(self):
        """No client: SIGTERM ends the server at once with code 0."""
        srv = Server()
        t0 = time.monotonic()
        srv.stop()
        self.assertLess(time.monotonic() - t0, 3)


if __name__ == '__main__':
    harness.main()
