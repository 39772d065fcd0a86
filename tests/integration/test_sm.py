"""XEP-0198 stream management over real sockets: the feature, enable (not
before binding, not twice), acks both ways with the counts the XEP
defines, the server's own <r/>, the errors (<r/> before enable, an h
beyond what was sent, a resumption that cannot be found), the bound on
unacknowledged stanzas; and the loss test of issue 11 without
resumption: a connection reset with stanzas in flight — whatever the
client did not acknowledge reaches another resource or offline storage,
exactly once, and what it acknowledged is not delivered again.

Run: python3 test_sm.py STARLINGD STARLINGCTL
"""
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import NS_CLIENT, Server, q  # noqa: E402

NS_SM = 'urn:xmpp:sm:3'
BODY = q(NS_CLIENT, 'body')
MESSAGE = q(NS_CLIENT, 'message')


def sm(name):
    return q(NS_SM, name)


def reset(c):
    """Ends c's TCP connection with a reset (stanzas in flight are lost on
    the wire, as when a phone drops off the network)."""
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                      struct.pack('ii', 1, 0))
    c.close()


def enable(c):
    c.send("<enable xmlns='%s'/>" % NS_SM)
    el = c.expect_element(sm('enabled'))
    return el


def ask(c):
    """Sends <r/>; returns h of the <a/>, skipping stanzas before it."""
    c.send("<r xmlns='%s'/>" % NS_SM)
    while True:
        el = c.expect_element()
        if el.tag == sm('a'):
            return int(el.get('h'))


def bodies(els):
    return [el.findtext(BODY) for el in els if el.tag == MESSAGE]


def read_messages(c, n):
    """The next n messages c receives (other elements skipped)."""
    got = []
    while len(got) < n:
        el = c.expect_element()
        if el.tag == MESSAGE:
            got.append(el)
    return got


class StreamManagement(harness.SharedServerTestCase):

    def test_feature_after_auth_only(self):
        c = self.track(harness.Client(self.srv.port))
        c.open_stream()
        c.starttls()
        c.open_stream()
        self.assertIsNone(c.feature(NS_SM, 'sm'))
        c.auth_scram('alice', self.srv.users['alice@localhost'])
        c.open_stream()
        self.assertIsNotNone(c.feature(NS_SM, 'sm'))
        # §3: enable before binding fails, the stream goes on.
        c.send("<enable xmlns='%s'/>" % NS_SM)
        failed = c.expect_element(sm('failed'))
        self.assertIsNotNone(failed.find(q(harness.NS_STANZAS,
                                           'unexpected-request')))
        c.bind('r')
        enable(c)

    def test_counts_both_ways(self):
        """§4: h counts the stanzas handled since enable, whatever they
        were; the server's own <r/> comes once five stanzas wait for an
        ack, and the client's count of everything it received is right."""
        a = self.login(self.srv, 'alice@localhost', resource='sm')
        a.presence()
        enable(a)
        received = []

        def until(tag):
            while True:
                el = a.expect_element()
                if el.tag == tag:
                    return el
                if el.tag.startswith('{%s}' % NS_CLIENT):
                    received.append(el)

        a.send("<r xmlns='%s'/>" % NS_SM)
        self.assertEqual(until(sm('a')).get('h'), '0')
        a.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        a.send("<message to='nobody@localhost' id='x'><body>?</body>"
               "</message>")
        a.send("<presence><show>away</show></presence>")
        a.send("<r xmlns='%s'/>" % NS_SM)
        self.assertEqual(until(sm('a')).get('h'), '3')
        # A second enable: failed, and the counts go on.
        a.send("<enable xmlns='%s'/>" % NS_SM)
        until(sm('failed'))
        b = self.login(self.srv, 'bob@localhost')
        for i in range(5):
            b.send("<message to='%s' type='chat'><body>m%d</body></message>"
                   % (a.jid, i))
        until(sm('r'))
        # The iq result, the error for nobody, the presence echo, m0, m1.
        self.assertGreaterEqual(len(received), 5)
        # The messages still on their way, then the count of all of them.
        while len([x for x in bodies(received) if x.startswith('m')]) < 5:
            el = a.expect_element()
            if el.tag.startswith('{%s}' % NS_CLIENT):
                received.append(el)
        a.send("<a xmlns='%s' h='%d'/>" % (NS_SM, len(received)))
        self.assertEqual(bodies(a.sync()), [])
        a.send("<a xmlns='%s' h='%d'/>" % (NS_SM, len(received) + 2))
        a.expect_stream_error('undefined-condition')

    def test_errors(self):
        a = self.login(self.srv, 'alice@localhost', resource='e1')
        a.send("<r xmlns='%s'/>" % NS_SM)
        a.expect_stream_error('unexpected-request')
        b = self.login(self.srv, 'alice@localhost', resource='e2')
        enable(b)
        # §5: resuming is for a stream that has not bound a resource.
        b.send("<resume xmlns='%s' previd='nope' h='0'/>" % NS_SM)
        failed = b.expect_element(sm('failed'))
        self.assertIsNotNone(failed.find(q(harness.NS_STANZAS,
                                           'unexpected-request')))
        b.send("<a xmlns='%s' h='7'/>" % NS_SM)
        b.expect_stream_error('undefined-condition')
        c = self.login(self.srv, 'alice@localhost', resource='e3')
        enable(c)
        c.send("<a xmlns='%s' h='x'/>" % NS_SM)
        c.expect_stream_error('invalid-xml')


class Loss(harness.FreshServerTestCase):
    """Issue 11: a connection cut mid-burst without resumption."""

    def burst(self, sender, to, n, tag):
        for i in range(n):
            sender.send("<message to='%s' type='chat' id='%s%d'><body>%s%d"
                        "</body></message>" % (to, tag, i, tag, i))
        sender.sync()

    def test_reset_goes_offline(self):
        """bob (alone) acknowledges the first 3 of 10 messages, then his
        connection is reset: the other 7 — read or not — are stored
        offline and come at his next login, each once; the 3 do not."""
        bob = self.login(self.srv, 'bob@localhost', resource='phone')
        bob.presence()
        enable(bob)
        alice = self.login(self.srv, 'alice@localhost')
        self.burst(alice, 'bob@localhost/phone', 10, 'm')
        read_messages(bob, 10)
        bob.send("<a xmlns='%s' h='3'/>" % NS_SM)
        bob.sync()
        reset(bob)
        self.srv.wait_log(r'never acknowledged: \d+ routed again')
        again = self.login(self.srv, 'bob@localhost', resource='laptop')
        again.send('<presence/>')
        got = read_messages(again, 7)
        self.assertEqual(bodies(got), ['m%d' % i for i in range(3, 10)])
        self.assertEqual(bodies(again.sync()), [])

    def test_reset_goes_to_other_resource(self):
        """With another resource online, the unacknowledged messages go
        there (RFC 6121 §8.5.3.2.1: a message for a full JID that is gone
        is one for the bare JID)."""
        laptop = self.login(self.srv, 'bob@localhost', resource='laptop')
        laptop.presence()
        phone = self.login(self.srv, 'bob@localhost', resource='phone')
        phone.presence()
        enable(phone)
        alice = self.login(self.srv, 'alice@localhost')
        self.burst(alice, 'bob@localhost/phone', 4, 'p')
        reset(phone)
        got = read_messages(laptop, 4)
        self.assertEqual(bodies(got), ['p0', 'p1', 'p2', 'p3'])

    def test_too_many_unacknowledged(self):
        srv = Server(c2s={'max_unacked': 10})
        try:
            bob = self.login(srv, 'bob@localhost', resource='r')
            bob.presence()
            enable(bob)
            alice = self.login(srv, 'alice@localhost')
            for i in range(12):
                alice.send("<message to='bob@localhost/r' type='chat'>"
                           "<body>u%d</body></message>" % i)
            alice.sync()
            el = bob.expect_element()
            while el.tag != harness.STREAM_ERROR:
                el = bob.expect_element()
            self.assertIsNotNone(el.find(q(harness.NS_STREAM_ERR,
                                           'policy-violation')))
            srv.wait_log(r'never acknowledged')
            again = self.login(srv, 'bob@localhost', resource='again')
            again.send('<presence/>')
            got = read_messages(again, 12)
            self.assertEqual(sorted(bodies(got)),
                             sorted('u%d' % i for i in range(12)))
            self.assertEqual(bodies(again.sync()), [])
        finally:
            srv.stop()


def authenticated(srv, jid, password):
    """A client authenticated as jid, on its restarted stream, not bound."""
    node, _, domain = jid.partition('@')
    c = harness.Client(srv.port)
    c.open_stream(to=domain)
    c.starttls()
    c.open_stream(to=domain)
    res = c.auth_scram(node, password)
    assert res.tag == q(harness.NS_SASL, 'success'), res.tag
    c.open_stream(to=domain)
    return c


class Durability(harness.FreshServerTestCase):
    """Issue 11: a kill -9 right after the server acknowledged (XEP-0198
    <a/>) messages for an offline user loses none of them: the ack waits
    until they are stored."""

    def test_acknowledged_survives_sigkill(self):
        alice = self.login(self.srv, 'alice@localhost', resource='a')
        enable(alice)
        burst = ''.join("<message to='carol@localhost' type='chat' id='k%d'>"
                        "<body>kept %d</body></message>" % (i, i)
                        for i in range(5))
        # One write: the messages and the request for an ack.
        alice.send(burst + "<r xmlns='%s'/>" % NS_SM)
        while True:
            el = alice.expect_element()
            if el.tag == sm('a'):
                break
        self.assertEqual(el.get('h'), '5')
        self.srv.kill()
        self.srv.start()
        carol = self.login(self.srv, 'carol@localhost', resource='c')
        carol.send('<presence/>')
        got = read_messages(carol, 5)
        self.assertEqual(bodies(got), ['kept %d' % i for i in range(5)])


    def test_acknowledged_archived_survives_sigkill(self):
        """The same for the archive (XEP-0313): messages to an online
        contact are not held for it — they flow — but the ack waits until
        the archive has them, and so does the answer to an IQ sent after
        them."""
        bob = self.login(self.srv, 'bob@localhost', resource='b')
        bob.presence()
        alice = self.login(self.srv, 'alice@localhost', resource='a')
        enable(alice)
        n = 300
        burst = ''.join("<message to='bob@localhost' type='chat' id='k%d'>"
                        "<body>kept %d</body></message>" % (i, i)
                        for i in range(n))
        alice.send(burst + "<r xmlns='%s'/>" % NS_SM)
        while True:
            el = alice.expect_element()
            if el.tag == sm('a'):
                break
        self.assertEqual(el.get('h'), str(n))
        # And an IQ after a second burst: its answer means stored too.
        burst = ''.join("<message to='bob@localhost' type='chat' id='j%d'>"
                        "<body>also %d</body></message>" % (i, i)
                        for i in range(n))
        alice.send(burst + "<iq type='get' id='after'><ping xmlns="
                   "'urn:xmpp:ping'/></iq>")
        while True:
            el = alice.expect_element()
            if el.tag == q(NS_CLIENT, 'iq') and el.get('id') == 'after':
                break
        self.srv.kill()
        self.srv.start()
        alice = self.login(self.srv, 'alice@localhost', resource='a2')
        # Every one of them is in alice's archive (RSM count, max 0).
        alice.send("<iq type='set' id='cnt'><query xmlns='urn:xmpp:mam:2'>"
                   "<set xmlns='http://jabber.org/protocol/rsm'><max>0</max>"
                   "</set></query></iq>")
        while True:
            el = alice.expect_element()
            if el.tag == q(NS_CLIENT, 'iq') and el.get('id') == 'cnt':
                break
        self.assertEqual(el.findtext('.//{http://jabber.org/protocol/rsm}'
                                     'count'), str(2 * n))


class Resumption(harness.FreshServerTestCase):
    """XEP-0198 §5: a session outlives its connection."""

    friends = (('alice@localhost', 'bob@localhost'),)
    server_args = {'c2s': {'resume_timeout': 30.0}}

    def phone(self):
        bob = self.login(self.srv, 'bob@localhost', resource='phone')
        bob.presence()
        bob.send("<enable xmlns='%s' resume='true'/>" % NS_SM)
        enabled = bob.expect_element(sm('enabled'))
        self.assertEqual(enabled.get('resume'), 'true')
        self.assertEqual(enabled.get('max'), '30')
        self.assertTrue(len(enabled.get('id', '')) >= 16)
        return bob, enabled.get('id')

    def test_reset_then_resume(self):
        """bob's phone drops off the network mid-burst; what it did not
        acknowledge and what came meanwhile arrive once, in order, on the
        resumed stream; bob's contacts never saw him go offline; the
        resumed stream sends as bob@localhost/phone again."""
        alice = self.login(self.srv, 'alice@localhost', resource='a')
        alice.presence()
        bob, sid = self.phone()
        for i in range(4):
            alice.send("<message to='bob@localhost/phone' type='chat'>"
                       "<body>r%d</body></message>" % i)
        read_messages(bob, 4)
        bob.send("<a xmlns='%s' h='2'/>" % NS_SM)
        bob.sync()
        reset(bob)
        self.srv.wait_log(r'session kept 30 s for resumption')
        for i in range(4, 6):
            alice.send("<message to='bob@localhost/phone' type='chat'>"
                       "<body>r%d</body></message>" % i)
        alice.sync()
        c = self.track(authenticated(self.srv, 'bob@localhost',
                                     self.srv.users['bob@localhost']))
        c.send("<resume xmlns='%s' previd='%s' h='2'/>" % (NS_SM, sid))
        resumed = c.expect_element(sm('resumed'))
        self.assertEqual(resumed.get('previd'), sid)
        got = read_messages(c, 4)
        self.assertEqual(bodies(got), ['r2', 'r3', 'r4', 'r5'])
        c.send("<message to='alice@localhost/a' type='chat'><body>back"
               "</body></message>")
        m = read_messages(alice, 1)[0]
        self.assertEqual((m.get('from'), m.findtext(BODY)),
                         ('bob@localhost/phone', 'back'))
        # No unavailable presence from bob reached alice meanwhile.
        self.assertFalse(any(
            el.tag == q(NS_CLIENT, 'presence') and
            el.get('type') == 'unavailable' for el in alice.sync()))
        # The counts go on: h for bob's stanzas since enable.
        c.send("<r xmlns='%s'/>" % NS_SM)
        while True:
            el = c.expect_element()
            if el.tag == sm('a'):
                break
        self.assertEqual(el.get('h'), str(int(resumed.get('h')) + 1))

    def test_resume_while_old_connection_lives(self):
        """The old connection still seems alive (nothing told the server
        otherwise): the resumption takes over and closes it."""
        bob, sid = self.phone()
        c = self.track(authenticated(self.srv, 'bob@localhost',
                                     self.srv.users['bob@localhost']))
        c.send("<resume xmlns='%s' previd='%s' h='0'/>" % (NS_SM, sid))
        c.expect_element(sm('resumed'))
        ev = bob.next_event(timeout=5)
        while ev is not None and ev[0] == 'element':
            ev = bob.next_event(timeout=5)
        self.assertIn(ev[0], ('eof', 'close'))

    def test_other_account_cannot_resume(self):
        bob, sid = self.phone()
        c = self.track(authenticated(self.srv, 'alice@localhost',
                                     self.srv.users['alice@localhost']))
        for previd in (sid, 'unknown-id'):
            c.send("<resume xmlns='%s' previd='%s' h='0'/>" % (NS_SM, previd))
            failed = c.expect_element(sm('failed'))
            self.assertIsNotNone(failed.find(q(harness.NS_STANZAS,
                                               'item-not-found')))
        # After a failed resumption the client binds as usual.
        c.bind('fresh')

    def test_not_resumed_in_time(self):
        """Past resume_timeout the session ends: bob goes offline for his
        contacts and what was unacknowledged goes to offline storage."""
        srv = Server(c2s={'resume_timeout': 1.0})
        try:
            srv.befriend('alice@localhost', 'bob@localhost')
            alice = self.login(srv, 'alice@localhost', resource='a')
            alice.presence()
            bob = self.login(srv, 'bob@localhost', resource='phone')
            bob.presence()
            bob.send("<enable xmlns='%s' resume='1'/>" % NS_SM)
            sid = bob.expect_element(sm('enabled')).get('id')
            alice.send("<message to='bob@localhost/phone' type='chat'>"
                       "<body>late</body></message>")
            read_messages(bob, 1)
            reset(bob)
            srv.wait_log(r'not resumed in time')
            c = self.track(authenticated(srv, 'bob@localhost',
                                         srv.users['bob@localhost']))
            c.send("<resume xmlns='%s' previd='%s' h='0'/>" % (NS_SM, sid))
            c.expect_element(sm('failed'))
            c.bind('laptop')
            c.send('<presence/>')
            self.assertEqual(bodies(read_messages(c, 1)), ['late'])
        finally:
            srv.stop()


if __name__ == '__main__':
    harness.main()
