"""XEP-0114 external components over real sockets: the handshake and its
errors, stanzas both ways between a component and local users (messages,
IQs the server answers for an account, presence subscriptions), component
to component, service-unavailable while a component is away, the server's
disco#items listing the components, the XEP-0114 §3 addressing rules, and
no stanza lost when a component's connection breaks with stanzas queued
for it (a reset mid-burst, and a component that stops reading).

Run: python3 test_component.py STARLINGD STARLINGCTL
"""
import hashlib
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Client, NS_STREAMS, Server, iq, q  # noqa: E402

NS_COMPONENT = 'jabber:component:accept'
NS_ITEMS = 'http://jabber.org/protocol/disco#items'
NS_INFO = 'http://jabber.org/protocol/disco#info'
NS_VCARD = 'vcard-temp'

COMPONENTS = '''
component = {
    listen = ( { address = "127.0.0.1"; port = 0; } );
    domains = (
        { domain = "bot.localhost"; secret = "bot-secret"; name = "Echo bot"; },
        { domain = "gw.localhost"; secret = "gw-secret"; },
        { domain = "far.test"; secret = "far-secret"; }
    );
};
'''


def cq(name):
    return q(NS_COMPONENT, name)


def error_condition(el):
    """The condition of a stanza error, in either stream namespace."""
    if el.get('type') != 'error':
        raise AssertionError('not an error: %s' % el.get('type'))
    for ns in (NS_COMPONENT, harness.NS_CLIENT):
        err = el.find(q(ns, 'error'))
        if err is not None:
            return [c.tag.split('}')[1] for c in err
                    if c.tag.startswith('{%s}' % harness.NS_STANZAS)][0]
    raise AssertionError('no <error/>')


class Component:
    """A raw XEP-0114 connection."""

    def __init__(self, srv, domain, secret, handshake=True):
        self.c = Client(srv.component_port)
        self.domain = domain
        self.authed = False
        self.c.send("<?xml version='1.0'?><stream:stream xmlns='%s' "
                    "xmlns:stream='%s' to='%s'>"
                    % (NS_COMPONENT, NS_STREAMS, domain))
        self.header = self.c.expect_header()
        if handshake:
            self.handshake(secret)

    def handshake(self, secret, expect_ok=True):
        digest = hashlib.sha1((self.header['id'] + secret).encode()).hexdigest()
        self.c.send('<handshake>%s</handshake>' % digest)
        if expect_ok:
            el = self.c.expect_element(cq('handshake'))
            assert el.text is None, el.text
            self.authed = True

    def send(self, data):
        self.c.send(data)

    def expect(self, name, timeout=None):
        return self.c.expect_element(cq(name), timeout)

    def close(self):
        try:
            self.c.send('</stream:stream>')
        except OSError:
            pass
        self.c.close()


class ComponentTest(harness.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(raw=COMPONENTS)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def setUp(self):
        super().setUp()
        self.comps = []

    def tearDown(self):
        for comp in self.comps:
            comp.close()
        # The server has let go of the domains before the next test.
        for comp in self.comps:
            if comp.authed:
                self.srv.wait_log(r'component %s disconnected'
                                  % comp.domain.replace('.', r'\.'),
                                  start=self.mark)
        super().tearDown()

    def component(self, domain='bot.localhost', secret='bot-secret', **kw):
        self.mark = len(self.srv.lines)
        comp = Component(self.srv, domain, secret, **kw)
        self.comps.append(comp)
        return comp

    # -- the handshake (XEP-0114 §3)

    def test_handshake(self):
        """The header answer names the component's domain and carries an
        id; the right digest gets an empty <handshake/>."""
        comp = self.component()
        self.assertEqual(comp.header.get('from'), 'bot.localhost')
        self.assertTrue(len(comp.header.get('id', '')) >= 16)
        self.assertEqual(comp.c.header_ns.get(''), NS_COMPONENT)

    def test_uppercase_digest(self):
        """Hex digits in uppercase are the same digest."""
        comp = self.component(handshake=False)
        digest = hashlib.sha1((comp.header['id'] + 'bot-secret').encode())
        comp.send('<handshake>%s</handshake>' % digest.hexdigest().upper())
        comp.expect('handshake')
        comp.authed = True

    def test_wrong_secret(self):
        """A wrong digest: not-authorized, and the connection ends."""
        comp = self.component(handshake=False)
        comp.handshake('not-the-secret', expect_ok=False)
        comp.c.expect_stream_error('not-authorized')

    def test_unknown_domain(self):
        """A domain with no component configured: host-unknown inside a
        header of ours (XEP-0114 §3)."""
        comp = self.component('nobody.localhost', 'x', handshake=False)
        self.assertIsNone(comp.header.get('from'))
        comp.c.expect_stream_error('host-unknown')

    def test_served_domain_is_not_a_component(self):
        """The server's own domain cannot be taken by a component."""
        comp = self.component('localhost', 'x', handshake=False)
        comp.c.expect_stream_error('host-unknown')

    def test_stanza_before_handshake(self):
        comp = self.component(handshake=False)
        comp.send("<message from='a@bot.localhost' to='alice@localhost'>"
                  "<body>hi</body></message>")
        comp.c.expect_stream_error('not-authorized')

    def test_conflict(self):
        """A second connection for a domain that is up: conflict; the
        first one keeps working."""
        first = self.component()
        second = self.component(handshake=False)
        second.handshake('bot-secret', expect_ok=False)
        second.c.expect_stream_error('conflict')
        a = self.login(self.srv, 'alice@localhost')
        a.send("<message to='echo@bot.localhost' id='m1'><body>still"
               "</body></message>")
        self.assertEqual(first.expect('message').findtext(cq('body')), 'still')

    def test_reconnect(self):
        """Once a component's connection ends, it can connect again."""
        first = self.component()
        first.close()
        self.comps.remove(first)
        self.srv.wait_log(r'component bot\.localhost disconnected',
                          start=self.mark)
        self.component()

    # -- addressing (XEP-0114 §3)

    def test_foreign_from(self):
        """'from' must be at the component's domain."""
        comp = self.component()
        comp.send("<message from='alice@localhost' to='bob@localhost'>"
                  "<body>forged</body></message>")
        comp.c.expect_stream_error('invalid-from')

    def test_missing_from(self):
        comp = self.component()
        comp.send("<message to='bob@localhost'><body>x</body></message>")
        comp.c.expect_stream_error('improper-addressing')

    def test_missing_to(self):
        comp = self.component()
        comp.send("<message from='x@bot.localhost'><body>x</body></message>")
        comp.c.expect_stream_error('improper-addressing')

    def test_not_a_stanza(self):
        comp = self.component()
        comp.send("<foo from='x@bot.localhost' to='bob@localhost'/>")
        comp.c.expect_stream_error('unsupported-stanza-type')

    def test_wrong_stream_namespace(self):
        """A header in jabber:client on the component port:
        invalid-namespace."""
        c = self.track(Client(self.srv.component_port))
        c.send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
               "xmlns:stream='%s' to='bot.localhost'>" % NS_STREAMS)
        c.expect_header()
        c.expect_stream_error('invalid-namespace')

    # -- routing

    def test_messages_both_ways(self):
        """A user's message reaches the component with the user's full JID
        as 'from'; the component's answer from any JID at its domain
        reaches the user."""
        comp = self.component()
        a = self.login(self.srv, 'alice@localhost')
        a.send("<message to='echo@bot.localhost' id='m1' type='chat'>"
               "<body>hello bot</body></message>")
        m = comp.expect('message')
        self.assertEqual(m.get('from'), a.jid)
        self.assertEqual(m.get('to'), 'echo@bot.localhost')
        self.assertEqual(m.findtext(cq('body')), 'hello bot')
        comp.send("<message from='echo@bot.localhost/r' to='%s' type='chat' "
                  "id='r1'><body>hello alice</body></message>" % a.jid)
        r = a.expect_stanza('message')
        self.assertEqual(r.get('from'), 'echo@bot.localhost/r')
        self.assertEqual(r.findtext(q(harness.NS_CLIENT, 'body')),
                         'hello alice')
        # To the bare JID: the user's available resource (RFC 6121 §8.5.2).
        a.presence()
        comp.send("<message from='bot.localhost' to='alice@localhost' "
                  "type='chat'><body>to bare</body></message>")
        self.assertEqual(a.expect_stanza('message').findtext(
            q(harness.NS_CLIENT, 'body')), 'to bare')

    def test_iq_to_component(self):
        """An IQ to the component's domain is the component's to answer;
        the answer reaches the user."""
        comp = self.component()
        a = self.login(self.srv, 'alice@localhost')
        a.send("<iq type='get' id='d1' to='bot.localhost'>"
               "<query xmlns='%s'/></iq>" % NS_INFO)
        req = comp.expect('iq')
        self.assertEqual(req.get('from'), a.jid)
        self.assertIsNotNone(req.find(q(NS_INFO, 'query')))
        comp.send("<iq type='result' id='d1' from='bot.localhost' to='%s'>"
                  "<query xmlns='%s'><identity category='automation' "
                  "type='bot' name='Echo'/></query></iq>" % (a.jid, NS_INFO))
        res = a.expect_stanza('iq')
        self.assertEqual(res.get('type'), 'result')
        self.assertEqual(res.get('from'), 'bot.localhost')

    def test_component_asks_server(self):
        """An IQ from the component to a user's bare JID is answered by the
        server for the account (a vCard), back to the component; one to the
        server's domain too (ping)."""
        a = self.login(self.srv, 'alice@localhost')
        iq(a, None, "<vCard xmlns='%s'><FN>Alice A.</FN></vCard>" % NS_VCARD,
           type_='set')
        comp = self.component()
        comp.send("<iq type='get' id='v1' from='bot.localhost' "
                  "to='alice@localhost'><vCard xmlns='%s'/></iq>" % NS_VCARD)
        res = comp.expect('iq')
        self.assertEqual(res.get('type'), 'result')
        self.assertEqual(res.get('id'), 'v1')
        self.assertEqual(res.get('to'), 'bot.localhost')
        self.assertEqual(res.findtext('{%s}vCard/{%s}FN' % (NS_VCARD, NS_VCARD)),
                         'Alice A.')
        comp.send("<iq type='get' id='p1' from='bot.localhost' to='localhost'>"
                  "<ping xmlns='urn:xmpp:ping'/></iq>")
        res = comp.expect('iq')
        self.assertEqual((res.get('type'), res.get('id'), res.get('from')),
                         ('result', 'p1', 'localhost'))

    def test_error_for_component(self):
        """A message from the component to a user who does not exist gets
        service-unavailable back at the component (RFC 6121 §8.5.1)."""
        comp = self.component()
        comp.send("<message from='x@bot.localhost' to='nobody@localhost' "
                  "id='e1'><body>?</body></message>")
        err = comp.expect('message')
        self.assertEqual(err.get('type'), 'error')
        self.assertEqual(err.get('to'), 'x@bot.localhost')
        self.assertEqual(error_condition(err), 'service-unavailable')

    def test_component_to_component(self):
        comp = self.component()
        gw = self.component('gw.localhost', 'gw-secret')
        comp.send("<message from='a@bot.localhost' to='b@gw.localhost' "
                  "id='cc'><body>across</body></message>")
        m = gw.expect('message')
        self.assertEqual((m.get('from'), m.findtext(cq('body'))),
                         ('a@bot.localhost', 'across'))

    def test_component_to_remote_without_federation(self):
        """With federation off, a stanza for another server is answered
        with remote-server-not-found."""
        comp = self.component()
        comp.send("<message from='x@bot.localhost' to='y@elsewhere.test' "
                  "id='r'><body>?</body></message>")
        err = comp.expect('message')
        self.assertEqual(error_condition(err), 'remote-server-not-found')

    def test_component_away(self):
        """While a configured component is not connected, messages and IQs
        for it get service-unavailable from it; presence is dropped."""
        a = self.login(self.srv, 'alice@localhost')
        a.send("<message to='x@gw.localhost' id='away'><body>?</body>"
               "</message>")
        err = a.expect_stanza('message')
        self.assertEqual(err.get('type'), 'error')
        self.assertEqual(err.get('from'), 'x@gw.localhost')
        self.assertEqual(error_condition(err), 'service-unavailable')
        res = iq(a, 'gw.localhost', "<query xmlns='%s'/>" % NS_INFO)
        self.assertEqual(error_condition(res), 'service-unavailable')
        a.send("<presence to='x@gw.localhost'/>")
        self.assertEqual(a.sync(), [])

    def test_subscription_with_component(self):
        """A gateway asks to see a user's presence (RFC 6121 §3 across the
        component boundary): the user approves, and the user's presence
        then reaches the gateway."""
        comp = self.component('gw.localhost', 'gw-secret')
        b = self.login(self.srv, 'bob@localhost')
        b.presence()
        comp.send("<presence from='contact@gw.localhost' to='bob@localhost' "
                  "type='subscribe'/>")
        sub = b.expect_stanza('presence')
        self.assertEqual((sub.get('type'), sub.get('from')),
                         ('subscribe', 'contact@gw.localhost'))
        b.send("<presence to='contact@gw.localhost' type='subscribed'/>")
        got = comp.expect('presence')
        self.assertEqual((got.get('type'), got.get('from')),
                         ('subscribed', 'bob@localhost'))
        # RFC 6121 §3.1.5: the approver's current presence follows.
        avail = comp.expect('presence')
        self.assertIsNone(avail.get('type'))
        self.assertEqual(avail.get('from'), b.jid)
        b.send("<presence><show>away</show></presence>")
        upd = comp.expect('presence')
        self.assertEqual(upd.findtext(cq('show')), 'away')

    def test_directed_presence(self):
        """Directed presence to a component JID (as one joins a room)
        reaches it; the session's end sends unavailable (RFC 6121
        §4.6.3)."""
        comp = self.component()
        a = self.login(self.srv, 'carol@localhost')
        a.presence()
        a.send("<presence to='room@bot.localhost/carol'/>")
        p = comp.expect('presence')
        self.assertEqual((p.get('from'), p.get('to')),
                         (a.jid, 'room@bot.localhost/carol'))
        a.close_stream()
        p = comp.expect('presence')
        self.assertEqual(p.get('type'), 'unavailable')

    def test_disco_items(self):
        """The server's disco#items lists its components: those on a
        subdomain of the domain asked, and those on none of its domains
        under every one."""
        a = self.login(self.srv, 'alice@localhost')
        res = iq(a, 'localhost', "<query xmlns='%s'/>" % NS_ITEMS)
        items = {i.get('jid'): i.get('name')
                 for i in res.find(q(NS_ITEMS, 'query'))}
        self.assertEqual(items, {'bot.localhost': 'Echo bot',
                                 'gw.localhost': None, 'far.test': None})
        d = self.login(self.srv, 'dave@example.org')
        res = iq(d, 'example.org', "<query xmlns='%s'/>" % NS_ITEMS)
        items = {i.get('jid') for i in res.find(q(NS_ITEMS, 'query'))}
        self.assertEqual(items, {'far.test'})


class ComponentLossTest(harness.FreshServerTestCase):
    """Stanzas the server queued for a component whose connection breaks
    before they are written are never lost without a word: each one comes
    back to its sender as service-unavailable (the component is gone) —
    exactly the ones the component never got, the tail of the burst."""

    # Without the per-connection rate limit (64 KiB/s), so that a burst
    # this size takes a second, not a minute and a half.
    server_args = {'raw': COMPONENTS, 'limits': {'rate_limit': 0}}
    N = 6000  # ~6.5 MB: more than the kernel's buffers hold on loopback

    def burst(self, a, comp):
        body = 'x' * 1000
        for i in range(self.N):
            a.send("<message to='echo@bot.localhost' id='m%d'><body>%s"
                   "</body></message>" % (i, body))
        self.early = a.sync(timeout=60)

    def errors_back(self, a, quiet=2.0):
        """The ids of the errors that came back (during the burst too),
        until none for `quiet` seconds."""
        ids = []
        els = list(self.early)
        while True:
            if not els:
                try:
                    els.append(a.expect_element(timeout=quiet))
                except Exception:
                    return ids
            el = els.pop(0)
            if el.tag == q(harness.NS_CLIENT, 'message'):
                self.assertEqual(el.get('type'), 'error')
                self.assertEqual(el.get('from'), 'echo@bot.localhost')
                self.assertEqual(error_condition(el), 'service-unavailable')
                ids.append(int(el.get('id')[1:]))

    def check_tail(self, ids):
        # The component's TCP took the first ones; the rest, the tail, all
        # came back, once each (in any order: those written and those
        # still queued come back by different paths).
        self.assertGreater(len(ids), 0)
        ids = sorted(ids)
        want = list(range(self.N - len(ids), self.N))
        if ids != want:
            self.fail('%d errors, not the tail: first %r, want %r; repeated '
                      '%d' % (len(ids), ids[:5], want[:5],
                              len(ids) - len(set(ids))))

    def test_reset_mid_burst(self):
        comp = Component(self.srv, 'bot.localhost', 'bot-secret',
                         handshake=False)
        comp.c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        comp.handshake('bot-secret')
        a = self.login(self.srv, 'alice@localhost')
        self.burst(a, comp)
        comp.c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                               struct.pack('ii', 1, 0))
        comp.c.close()
        ids = self.errors_back(a)
        self.check_tail(ids)
        # The component comes back and gets what is sent next.
        self.srv.wait_log(r'component bot\.localhost disconnected')
        comp = Component(self.srv, 'bot.localhost', 'bot-secret')
        a.send("<message to='echo@bot.localhost' id='after'><body>hi"
               "</body></message>")
        self.assertEqual(comp.expect('message').get('id'), 'after')
        comp.close()

    def test_component_not_reading(self):
        """Past the hard limit (16 MiB queued) the server drops the
        component with a stream error, and what it queued goes back."""
        comp = Component(self.srv, 'bot.localhost', 'bot-secret',
                         handshake=False)
        comp.c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        comp.handshake('bot-secret')
        a = self.login(self.srv, 'alice@localhost')
        self.N = 20000  # ~21 MB
        started = time.monotonic()
        self.burst(a, comp)
        self.srv.wait_log(r'component does not read')
        # What the kernel took comes back once the linger (close_timeout,
        # 2 s here) gives up on the component.
        ids = self.errors_back(a, quiet=4.0)
        self.check_tail(ids)
        self.assertLess(time.monotonic() - started, 120)
        comp.c.close()


if __name__ == '__main__':
    harness.main()
