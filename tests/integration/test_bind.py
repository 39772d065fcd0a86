"""Resource binding over real sockets (feature set 7-1..7-4, 2.3-1;
RFC 6120 §7; RFC 3921 session).

Run: python3 test_bind.py STARLINGD STARLINGCTL
"""
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (NS_BIND, NS_SASL, NS_SESSION, Client, Server, q,  # noqa: E402
                     stanza_error_condition)


def authenticated(server, jid='alice@localhost'):
    """A client past SASL, on the stream where it may bind."""
    node, _, domain = jid.partition('@')
    c = Client(server.port)
    c.open_stream(to=domain)
    c.starttls()
    c.open_stream(to=domain)
    res = c.auth_scram(node, server.users[jid])
    assert res.tag == q(NS_SASL, 'success'), res
    c.open_stream(to=domain)
    return c


class Binding(harness.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = Server()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def authed(self, jid='alice@localhost'):
        return self.track(authenticated(self.srv, jid))

    def test_bind_feature(self):
        """7-1: <bind/> offered after SASL, with the RFC 3921 session
        feature marked optional."""
        c = self.authed()
        self.assertIsNotNone(c.feature(NS_BIND, 'bind'))
        sess = c.feature(NS_SESSION, 'session')
        if sess is not None:
            self.assertIsNotNone(sess.find(q(NS_SESSION, 'optional')))

    def test_client_resource(self):
        """7-1: the resource the client asks for is the one bound, returned
        as a full JID in <jid/>."""
        c = self.authed()
        self.assertEqual(c.bind('Laptop'), 'alice@localhost/Laptop')

    def test_server_generated_resource(self):
        """7-3: an empty <bind/> gets a server-generated resource, a
        different one each time."""
        jids = set()
        for _ in range(3):
            c = self.authed()
            jid = c.bind()
            self.assertTrue(jid.startswith('alice@localhost/'), jid)
            self.assertGreater(len(jid), len('alice@localhost/'))
            jids.add(jid)
        self.assertEqual(len(jids), 3)

    def test_empty_resource_element(self):
        """An empty <resource/> is the same as none: the server generates
        one (RFC 6120 §7.6; not a stream error)."""
        c = self.authed()
        c.send("<iq type='set' id='e1'><bind xmlns='%s'><resource/></bind></iq>"
               % NS_BIND)
        iq = c.expect_stanza('iq')
        self.assertEqual(iq.get('type'), 'result', harness.ET.tostring(iq, 'unicode'))
        jid = iq.find('%s/%s' % (q(NS_BIND, 'bind'), q(NS_BIND, 'jid'))).text
        self.assertTrue(jid.startswith('alice@localhost/') and
                        len(jid) > len('alice@localhost/'), jid)

    def test_resourceprep_case_kept(self):
        """2.3-1 Resourceprep keeps case and maps/normalizes: 'Phone' stays
        'Phone'; U+FB01 (fi ligature) becomes 'fi' (NFKC); a soft hyphen
        (U+00AD, table B.1) disappears."""
        c = self.authed()
        self.assertEqual(c.bind('Phone'), 'alice@localhost/Phone')
        c = self.authed()
        self.assertEqual(c.bind('\ufb01le\u00ad'), 'alice@localhost/file')

    def test_resourceprep_prohibited(self):
        """7.7.2.1 bad-request: a resource with a character Resourceprep
        prohibits (TAB, U+0009, table C.2.1); the stream stays open and a
        good bind then works."""
        c = self.authed()
        iq = c.bind('bad\tname', expect_ok=False)
        self.assertEqual(stanza_error_condition(iq), ('modify', 'bad-request'))
        self.assertEqual(c.bind('good'), 'alice@localhost/good')

    def test_resource_too_long(self):
        """2.3-2: a resource over 1023 bytes is refused (bad-request)."""
        c = self.authed()
        iq = c.bind('r' * 1100, expect_ok=False)
        self.assertEqual(iq.get('type'), 'error')
        self.assertEqual(stanza_error_condition(iq)[1], 'bad-request')

    def test_several_resources(self):
        """7-1: one account bound on several streams at once; each receives
        what is addressed to its full JID."""
        a = self.login(self.srv, resource='one')
        b = self.login(self.srv, resource='two')
        c = self.login(self.srv, resource='three')
        for target in (a, b, c):
            a.send("<message to='%s' id='m-%s'><body>x</body></message>"
                   % (target.jid, target.jid[-3:]))
        for target in (a, b, c):
            m = target.expect_stanza('message')
            self.assertEqual(m.get('to'), target.jid)
            self.assertEqual(m.get('from'), a.jid)

    def test_disconnect_unbinds(self):
        """A session that ends without a close tag (TCP reset) is unbound at
        once: an IQ to its full JID then gets service-unavailable instead
        of vanishing."""
        gone = authenticated(self.srv)
        gone.bind('gone')
        gone.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack('ii', 1, 0))
        gone.sock.close()  # RST, no close tag
        b = self.login(self.srv, 'bob@localhost')
        deadline = time.monotonic() + 5
        while True:
            b.send("<iq type='get' id='d1' to='alice@localhost/gone'>"
                   "<query xmlns='jabber:iq:version'/></iq>")
            iq = b.expect_stanza('iq')
            if iq.get('type') == 'error' or time.monotonic() > deadline:
                break
        self.assertEqual(stanza_error_condition(iq), ('cancel', 'service-unavailable'))

    def test_second_bind_not_allowed(self):
        """7-4 is optional; Starling binds one resource per stream: a second
        <bind/> on a bound stream gets <not-allowed/> (cancel) and the stream
        stays up."""
        c = self.login(self.srv, resource='first')
        iq = c.bind('second', expect_ok=False)
        self.assertEqual(stanza_error_condition(iq), ('cancel', 'not-allowed'))
        self.assertEqual(c.sync(), [])

    def test_session_iq(self):
        """RFC 3921 §3: the session IQ gets an empty result."""
        c = self.login(self.srv)
        c.send("<iq type='set' id='s1'><session xmlns='%s'/></iq>" % NS_SESSION)
        iq = c.expect_stanza('iq')
        self.assertEqual((iq.get('type'), iq.get('id')), ('result', 's1'))

    def test_bind_wrong_iq_shape(self):
        """A bind IQ of type get is not a bind: before binding, that is a
        stanza on an unbound stream (not-authorized)."""
        c = self.authed()
        c.send("<iq type='get' id='g1'><bind xmlns='%s'/></iq>" % NS_BIND)
        c.expect_stream_error('not-authorized')

    def test_conflict_new_wins(self):
        """RFC 6120 §7.7.2.2 (default new-wins): the older session of the
        resource gets <conflict/>, the newer one is bound."""
        old = self.login(self.srv, resource='same')
        new = self.login(self.srv, resource='same')
        self.assertEqual(new.jid, 'alice@localhost/same')
        old.expect_stream_error('conflict')
        # stanzas for the resource reach the new session
        b = self.login(self.srv, 'bob@localhost')
        b.send("<message to='alice@localhost/same'><body>hi</body></message>")
        self.assertEqual(new.expect_stanza('message').get('from'), b.jid)


class BindingLimits(harness.ServerTestCase):
    """resource_conflict old-wins and max_resources."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(c2s={'resource_conflict': 'old-wins', 'max_resources': 2})

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_conflict_old_wins(self):
        """old-wins: the new bind fails with <conflict/> (cancel); the old
        session is untouched."""
        old = self.login(self.srv, resource='same')
        c = self.track(authenticated(self.srv))
        iq = c.bind('same', expect_ok=False)
        self.assertEqual(stanza_error_condition(iq), ('cancel', 'conflict'))
        self.assertEqual(old.sync(), [])
        self.assertEqual(c.bind('other'), 'alice@localhost/other')

    def test_max_resources(self):
        """max_resources 2: a third resource gets resource-constraint
        (wait)."""
        self.login(self.srv, 'bob@localhost', resource='r1')
        self.login(self.srv, 'bob@localhost', resource='r2')
        c = self.track(authenticated(self.srv, 'bob@localhost'))
        iq = c.bind('r3', expect_ok=False)
        self.assertEqual(stanza_error_condition(iq), ('wait', 'resource-constraint'))


if __name__ == '__main__':
    harness.main()
