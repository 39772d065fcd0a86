"""Bad peers on federation (issue 9): starlingd serving a.test, with a
second starlingd for b.test (routed, real dialback), a peer written here
in Python speaking raw s2s XML, and addresses that never answer.

  - no TLS while TLS is required: policy-violation, nothing routed;
  - a dialback key that is not valid (b.test's own server says so):
    <db:result type='invalid'/>, and a stanza sent anyway ends the stream
    (invalid-from) without reaching the local user;
  - a peer authenticated for one domain (dialback verified by an
    "authoritative server" of evil.test written here) that sends a stanza
    from another domain: invalid-from; its own domain's stanzas arrive;
  - a peer that accepts TCP and never answers: the sender gets
    remote-server-timeout after the negotiation timeout;
  - meanwhile, and after each of these, a.test and b.test keep
    exchanging messages.

Run: /usr/bin/python3 test_s2s_bad.py build/bin/starlingd build/bin/starlingctl
"""
import socket
import ssl
import threading
import time

import harness
from harness import q
from imtest import BODY, MESSAGE, Session

NS_DB = 'jabber:server:dialback'
HDR = ("<stream:stream xmlns='jabber:server' "
       "xmlns:stream='http://etherx.jabber.org/streams' "
       "xmlns:db='jabber:server:dialback' from='%s' to='%s' version='1.0'>")


from test_s2s import free_port  # noqa: E402  (ports below the ephemeral range)


def insecure_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Silent:
    """Accepts TCP connections and never says a word."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


class Authoritative:
    """The authoritative server of evil.test for dialback (XEP-0220 §2.3):
    STARTTLS with a certificate, then every <db:verify/> is answered
    valid."""

    def __init__(self, cert, key):
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(cert, key)
        self.verified = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _read_until(self, s, marker, buf=b''):
        s.settimeout(10)
        while marker not in buf:
            d = s.recv(4096)
            if not d:
                raise EOFError
            buf += d
        return buf

    def _serve(self, s):
        hdr = ("<stream:stream xmlns='jabber:server' xmlns:stream="
               "'http://etherx.jabber.org/streams' xmlns:db="
               "'jabber:server:dialback' from='evil.test' id='%s' "
               "version='1.0'>")
        self._read_until(s, b'>')
        s.sendall((hdr % 'auth1').encode() +
                  b"<stream:features><starttls xmlns='urn:ietf:params:xml:"
                  b"ns:xmpp-tls'><required/></starttls></stream:features>")
        self._read_until(s, b'starttls')
        s.sendall(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        t = self.ctx.wrap_socket(s, server_side=True)
        self._read_until(t, b'>')
        t.sendall((hdr % 'auth2').encode() +
                  b"<stream:features><dialback xmlns='urn:xmpp:features:"
                  b"dialback'><errors/></dialback></stream:features>")
        buf = self._read_until(t, b'</db:verify>')
        idv = buf.split(b"id='", 1)[1].split(b"'", 1)[0].decode()
        # Counted before the answer goes: the server under test may act on
        # it before this thread runs again.
        self.verified += 1
        t.sendall(("<db:verify from='evil.test' to='a.test' id='%s' "
                   "type='valid'/>" % idv).encode())
        time.sleep(1)
        t.close()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def close(self):
        self.sock.close()


srv_a = srv_b = silent = auth = None


def setUpModule():
    global srv_a, srv_b, silent, auth
    ca = harness.TestCA()
    harness._cert = (ca.crt, ca.key)
    pa, pb = free_port(), free_port()
    silent = Silent()
    auth = Authoritative(*ca.cert('evil', ['evil.test']))
    routes = ('{ domain = "b.test"; host = "127.0.0.1"; port = %d; }, '
              '{ domain = "c.test"; host = "127.0.0.1"; port = %d; }, '
              '{ domain = "evil.test"; host = "127.0.0.1"; port = %d; }'
              % (pb, silent.port, auth.port))
    srv_a = harness.Server(
        users={'alice@a.test': 'pa'}, hosts=['a.test'],
        cert=ca.cert('bad-a', ['localhost']),
        limits={'handshake_timeout': 3.0},
        raw=('s2s = { enabled = true; listen = ( { address = "127.0.0.1"; '
             'port = %d; } ); routes = ( %s ); ca_file = "%s"; '
             'connect_timeout = 2; };' % (pa, routes, ca.crt)))
    srv_b = harness.Server(
        users={'bob@b.test': 'pb'}, hosts=['b.test'],
        cert=ca.cert('bad-b', ['localhost']),
        raw=('s2s = { enabled = true; listen = ( { address = "127.0.0.1"; '
             'port = %d; } ); routes = ( { domain = "a.test"; host = '
             '"127.0.0.1"; port = %d; } ); ca_file = "%s"; };'
             % (pb, pa, ca.crt)))


def tearDownModule():
    for s in (srv_a, srv_b):
        if s is not None:
            s.stop()
    for x in (silent, auth):
        if x is not None:
            x.close()


class BadPeers(harness.ServerTestCase):

    def setUp(self):
        super().setUp()
        self.alice = Session(self.login(srv_a, 'alice@a.test', password='pa',
                                        resource='r'))
        self.alice.presence()
        self.bob = Session(self.login(srv_b, 'bob@b.test', password='pb',
                                      resource='r'))
        self.bob.presence()

    def tearDown(self):
        # Other federated traffic is unaffected.
        body = 'still here %s' % self.id()
        self.bob.message('alice@a.test', body)
        self.alice.wait(lambda el: el.tag == MESSAGE and
                        el.findtext(BODY) == body, 'message from b.test',
                        timeout=20)
        super().tearDown()

    def raw_peer(self, frm, tls=True):
        c = self.track(harness.Client(srv_a.s2s_port))
        c.open_stream(to='a.test', frm=frm, xmlns='jabber:server',
                      extra=" xmlns:db='%s'" % NS_DB)
        if tls:
            c.starttls(ctx=insecure_ctx())
            c.open_stream(to='a.test', frm=frm, xmlns='jabber:server',
                          extra=" xmlns:db='%s'" % NS_DB)
            self.assertIsNotNone(c.feature('urn:xmpp:features:dialback',
                                           'dialback'))
        return c

    def no_message_for_alice(self):
        got = self.alice.drain()
        self.assertFalse([e for e in got if e.tag == MESSAGE and
                          (e.findtext(BODY) or '').startswith('evil')],
                         'a stanza from a bad peer reached the user')

    def test_no_tls_when_required(self):
        c = self.raw_peer('b.test', tls=False)
        self.assertIsNotNone(c.feature('urn:ietf:params:xml:ns:xmpp-tls',
                                       'starttls'))
        c.send("<db:result from='b.test' to='a.test'>k</db:result>")
        c.expect_stream_error('policy-violation')
        self.no_message_for_alice()

    def test_invalid_dialback_key(self):
        c = self.raw_peer('b.test')
        c.send("<db:result from='b.test' to='a.test'>bogus</db:result>")
        r = c.expect_element(q(NS_DB, 'result'), timeout=20)
        self.assertEqual(r.get('type'), 'invalid')
        c.send("<message from='mallory@b.test/x' to='alice@a.test'>"
               "<body>evil 1</body></message>")
        c.expect_stream_error('invalid-from')
        self.no_message_for_alice()

    def test_foreign_from(self):
        c = self.raw_peer('evil.test')
        c.send("<db:result from='evil.test' to='a.test'>anything</db:result>")
        r = c.expect_element(q(NS_DB, 'result'), timeout=20)
        self.assertEqual(r.get('type'), 'valid')
        self.assertGreaterEqual(auth.verified, 1)
        c.send("<message from='eve@evil.test/x' to='alice@a.test'>"
               "<body>hello from evil.test</body></message>")
        m = self.alice.wait(lambda el: el.tag == MESSAGE, 'message',
                            timeout=10)
        self.assertEqual(m.get('from'), 'eve@evil.test/x')
        c.send("<message from='bob@b.test/x' to='alice@a.test'>"
               "<body>evil 2</body></message>")
        c.expect_stream_error('invalid-from')
        self.no_message_for_alice()

    def test_peer_never_answers(self):
        t0 = time.monotonic()
        self.alice.message('carol@c.test', 'lost', id_='lost1')
        err = self.alice.wait(lambda el: el.tag == MESSAGE and
                              el.get('type') == 'error', 'bounce', timeout=20)
        self.assertEqual(err.get('id'), 'lost1')
        self.assertEqual(harness.stanza_error_condition(err),
                         ('wait', 'remote-server-timeout'))
        self.assertGreaterEqual(time.monotonic() - t0, 2.5)


if __name__ == '__main__':
    harness.main()
