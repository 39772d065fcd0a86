"""Federation between two starlingd instances on loopback (issue 9): each
serves its own domain (a.test, b.test), listens for s2s on a port chosen
here, and reaches the other through a static route (s2s.routes), so no
DNS is involved. Certificates come from a test CA made here with the
openssl CLI, trusted by both servers (s2s.ca_file) and by the test's
clients:
  - dialback pair: certificates for "localhost" only — the chain verifies
    but does not name a.test / b.test, so the servers fall back to Server
    Dialback (XEP-0220), each verifying the other's key over a separate
    connection;
  - EXTERNAL pair: certificates that name the domains, s2s.secure_auth on,
    so the servers authenticate with SASL EXTERNAL (XEP-0178) and dialback
    is off.
Checked: messages both ways with the sender's full JID as 'from'; a
subscription request, its approval, the roster pushes and the presence
that follows across the two servers (RFC 6121 §3.1); probes at login
(§4.3); the same over direct TLS (XEP-0368) listeners and routes; ping,
version and disco of the other server and an IQ to a
user there; a peer that is down: the sender gets remote-server-not-found,
then once the peer is up the next message goes through (RFC 6120 §10.4.3,
§3.3 reconnection).

Run: /usr/bin/python3 test_s2s.py build/bin/starlingd build/bin/starlingctl
"""
import random
import signal
import socket
import time

import harness
from harness import q
from imtest import (BODY, MESSAGE, PRESENCE, Session, is_roster_push,
                    push_item)


def free_port():
    """A free port below the kernel's ephemeral range (32768 up), so that
    no server binding port 0 in a test running in parallel can take it
    between this choice and its use."""
    while True:
        port = random.randrange(20000, 32000)
        s = socket.socket()
        try:
            s.bind(('127.0.0.1', port))
            return port
        except OSError:
            continue
        finally:
            s.close()


def s2s_conf(port, routes, ca, secure_auth=False, extra='', direct=False):
    tls = 'direct_tls = %s;' % ('true' if direct else 'false')
    r = ', '.join('{ domain = "%s"; host = "127.0.0.1"; port = %d; %s }'
                  % (d, p, tls) for d, p in routes)
    return ('s2s = { enabled = true; listen = ( { address = "127.0.0.1"; '
            'port = %d; %s } ); routes = ( %s ); ca_file = "%s"; '
            'secure_auth = %s; connect_timeout = 2; %s };'
            % (port, tls, r, ca, 'true' if secure_auth else 'false', extra))


def pair(ca, names_domains, secure_auth, direct=False, limits=None):
    """Two servers, a.test and b.test, routed to each other. The ports are
    chosen here before either server binds them; another test running in
    parallel may take one first: then the pair is made again."""
    for attempt in range(3):
        try:
            return _pair(ca, names_domains, secure_auth, direct, limits)
        except AssertionError as e:
            if 'address already in use' not in str(e) or attempt == 2:
                raise


def _pair(ca, names_domains, secure_auth, direct=False, limits=None):
    pa, pb = free_port(), free_port()
    users_a = {'alice@a.test': 'pa', 'carol@a.test': 'pc'}
    users_b = {'bob@b.test': 'pb', 'dave@b.test': 'pd'}
    sans_a = ['localhost', 'a.test'] if names_domains else ['localhost']
    sans_b = ['localhost', 'b.test'] if names_domains else ['localhost']
    a = harness.Server(users=users_a, hosts=['a.test'], limits=limits,
                       cert=ca.cert('a' + str(pa), sans_a),
                       raw=s2s_conf(pa, [('b.test', pb)], ca.crt, secure_auth,
                                    direct=direct))
    try:
        b = harness.Server(users=users_b, hosts=['b.test'],
                           cert=ca.cert('b' + str(pb), sans_b),
                           raw=s2s_conf(pb, [('a.test', pa)], ca.crt,
                                        secure_auth, direct=direct))
    except AssertionError:
        a.stop()
        raise
    return a, b


ca = None


def setUpModule():
    global ca
    ca = harness.TestCA()
    # Every client of this test trusts the test CA (the servers' c2s
    # certificates name localhost).
    harness._cert = (ca.crt, ca.key)


class Federation:
    """The tests, run once over dialback and once over SASL EXTERNAL."""

    secure_auth = False
    direct = False

    @classmethod
    def setUpClass(cls):
        cls.a, cls.b = pair(ca, cls.secure_auth, cls.secure_auth, cls.direct)

    @classmethod
    def tearDownClass(cls):
        cls.a.stop()
        cls.b.stop()

    def session(self, server, jid, resource, presence=True, roster=True):
        s = Session(self.login(server, jid, password=server.users[jid],
                               resource=resource))
        if roster:
            s.roster()
        if presence:
            s.presence(status='st-' + resource)
        return s

    def wait_message(self, s, body):
        return s.wait(lambda el: el.tag == MESSAGE and
                      el.findtext(BODY) == body, 'message %r' % body,
                      timeout=20)

    def test_messages_both_ways(self):
        alice = self.session(self.a, 'alice@a.test', 'm')
        bob = self.session(self.b, 'bob@b.test', 'm')
        alice.message('bob@b.test/m', 'hello bob')
        m = self.wait_message(bob, 'hello bob')
        self.assertEqual(m.get('from'), 'alice@a.test/m')
        self.assertEqual(m.get('to'), 'bob@b.test/m')
        bob.message('alice@a.test', 'hello alice')
        m = self.wait_message(alice, 'hello alice')
        self.assertEqual(m.get('from'), 'bob@b.test/m')
        # How the streams were authenticated.
        mech = 'SASL EXTERNAL' if self.secure_auth else 'dialback'
        self.a.wait_log(r's2s a\.test -> b\.test ready \(%s\)' % mech, 10)
        self.b.wait_log(r's2s b\.test -> a\.test ready \(%s\)' % mech, 10)
        how = 'direct TLS' if self.direct else 'STARTTLS'
        self.a.wait_log(r's2s connection from .* \(%s\)' % how, 10)
        self.b.wait_log(r's2s connection from .* \(%s\)' % how, 10)

    def remote_iq(self, s, to, payload, type_='get'):
        iid = s.c.next_id('iq')
        to_attr = " to='%s'" % to if to else ''
        s.send("<iq type='%s' id='%s'%s>%s</iq>" % (type_, iid, to_attr,
                                                   payload))
        return s.wait(lambda e: e.tag == harness.q(harness.NS_CLIENT, 'iq')
                      and e.get('id') == iid, 'the answer to %s' % iid,
                      timeout=20)

    def test_remote_iqs(self):
        """Disco, ping and version of the other server, and an IQ to a
        user there, answered by that user's client (issue 9)."""
        alice = self.session(self.a, 'alice@a.test', 'q')
        bob = self.session(self.b, 'bob@b.test', 'q')
        r = self.remote_iq(alice, 'b.test', "<ping xmlns='urn:xmpp:ping'/>")
        self.assertEqual((r.get('type'), r.get('from'), r.get('to')),
                         ('result', 'b.test', 'alice@a.test/q'))
        r = self.remote_iq(alice, 'b.test',
                           "<query xmlns='jabber:iq:version'/>")
        self.assertEqual(r.get('type'), 'result')
        name = r.find('{jabber:iq:version}query/{jabber:iq:version}name')
        self.assertEqual(name.text, 'Starling')
        info = '{http://jabber.org/protocol/disco#info}'
        r = self.remote_iq(alice, 'b.test',
                           "<query xmlns='%s'/>" % info[1:-1])
        self.assertEqual(r.get('type'), 'result')
        ids = r.findall(info + 'query/' + info + 'identity')
        self.assertIn(('server', 'im'),
                      [(i.get('category'), i.get('type')) for i in ids])
        # b.test asks a.test the same way.
        r = self.remote_iq(bob, 'a.test', "<ping xmlns='urn:xmpp:ping'/>")
        self.assertEqual((r.get('type'), r.get('from')), ('result', 'a.test'))
        # An IQ to a full JID over there reaches the client, whose answer
        # comes back; one to a resource that is not there gets an error
        # from the remote server (RFC 6120 §10.5.3.2).
        iid = alice.c.next_id('iq')
        alice.send("<iq type='get' id='%s' to='bob@b.test/q'>"
                   "<ping xmlns='urn:xmpp:ping'/></iq>" % iid)
        got = bob.wait(lambda e: e.get('id') == iid, 'the ping', timeout=20)
        self.assertEqual(got.get('from'), 'alice@a.test/q')
        bob.send("<iq type='result' id='%s' to='alice@a.test/q'/>" % iid)
        r = alice.wait(lambda e: e.get('id') == iid, 'the pong', timeout=20)
        self.assertEqual((r.get('type'), r.get('from')),
                         ('result', 'bob@b.test/q'))
        # A vCard over there: none yet (service-unavailable, answered
        # after the store was asked), then the one bob sets (XEP-0054 §3.3).
        r = self.remote_iq(alice, 'bob@b.test', "<vCard xmlns='vcard-temp'/>")
        self.assertEqual(harness.stanza_error_condition(r),
                         ('cancel', 'service-unavailable'))
        self.assertEqual(r.get('from'), 'bob@b.test')
        r = self.remote_iq(bob, None, "<vCard xmlns='vcard-temp'><FN>Bob</FN>"
                           "</vCard>", 'set')
        self.assertEqual(r.get('type'), 'result')
        r = self.remote_iq(alice, 'bob@b.test', "<vCard xmlns='vcard-temp'/>")
        self.assertEqual((r.get('type'), r.get('from')),
                         ('result', 'bob@b.test'))
        self.assertEqual(r.findtext('{vcard-temp}vCard/{vcard-temp}FN'), 'Bob')
        r = self.remote_iq(alice, 'bob@b.test/gone',
                           "<ping xmlns='urn:xmpp:ping'/>")
        self.assertEqual(r.get('type'), 'error')
        self.assertEqual(r.get('from'), 'bob@b.test/gone')
        self.assertEqual(harness.stanza_error_condition(r),
                         ('cancel', 'service-unavailable'))

    def test_subscription_and_presence(self):
        carol = self.session(self.a, 'carol@a.test', 's')
        dave = self.session(self.b, 'dave@b.test', 's')
        carol.subscription('subscribe', 'dave@b.test')
        # Carol's roster: dave, none + ask (pushed at once, locally).
        push = carol.wait(lambda el: is_roster_push(el), 'roster push')
        item = push_item(push)
        self.assertEqual((item.jid, item.subscription, item.ask),
                         ('dave@b.test', 'none', 'subscribe'))
        req = dave.wait(lambda el: el.tag == PRESENCE and
                        el.get('type') == 'subscribe', 'subscribe', timeout=20)
        self.assertEqual(req.get('from'), 'carol@a.test')
        dave.subscription('subscribed', 'carol@a.test')
        # Carol: push with subscription 'to', the 'subscribed', and then
        # Dave's presence (RFC 6121 §3.1.5, §3.1.6).
        push = carol.wait(lambda el: is_roster_push(el) and
                          push_item(el).subscription == 'to', 'push to',
                          timeout=20)
        pres = carol.wait(lambda el: el.tag == PRESENCE and
                          el.get('type') is None and
                          el.get('from') == 'dave@b.test/s', 'presence',
                          timeout=20)
        self.assertEqual(pres.findtext(q(harness.NS_CLIENT, 'status')), 'st-s')
        # An update of Dave's reaches Carol.
        dave.presence(status='away-now')
        carol.wait(lambda el: el.tag == PRESENCE and
                   el.findtext(q(harness.NS_CLIENT, 'status')) == 'away-now',
                   'update', timeout=20)
        # A new session of Carol probes Dave's server and gets his
        # presence (RFC 6121 §4.3).
        carol2 = self.session(self.a, 'carol@a.test', 's2')
        carol2.wait(lambda el: el.tag == PRESENCE and
                    el.get('from') == 'dave@b.test/s', 'probe answer',
                    timeout=20)
        # Dave going offline: Carol sees unavailable.
        dave.send('<presence type="unavailable"/>')
        carol.wait(lambda el: el.tag == PRESENCE and
                   el.get('type') == 'unavailable' and
                   el.get('from') == 'dave@b.test/s', 'unavailable',
                   timeout=20)


class DialbackTest(Federation, harness.ServerTestCase):
    secure_auth = False


class ExternalTest(Federation, harness.ServerTestCase):
    secure_auth = True


class DirectTlsTest(Federation, harness.ServerTestCase):
    """XEP-0368: both servers listen with direct TLS (as on 5270) and
    their routes say so; authenticated with SASL EXTERNAL."""
    secure_auth = True
    direct = True


class PeerDownTest(harness.ServerTestCase):
    """RFC 6120 §10.4.3: a peer that cannot be reached: the sender gets
    remote-server-not-found; after the backoff, once it is up, the next
    stanza goes through."""

    def test_bounce_then_success(self):
        pa, pb = free_port(), free_port()
        a = harness.Server(users={'alice@a.test': 'pa'}, hosts=['a.test'],
                           cert=ca.cert('down-a', ['localhost']),
                           raw=s2s_conf(pa, [('b.test', pb)], ca.crt))
        try:
            alice = Session(self.login(a, 'alice@a.test', password='pa',
                                       resource='r'))
            alice.message('bob@b.test', 'lost?', id_='m1')
            err = alice.wait(lambda el: el.tag == MESSAGE and
                             el.get('type') == 'error', 'bounce', timeout=20)
            self.assertEqual(harness.stanza_error_condition(err),
                             ('cancel', 'remote-server-not-found'))
            self.assertEqual(err.get('id'), 'm1')
            b = harness.Server(users={'bob@b.test': 'pb'}, hosts=['b.test'],
                               cert=ca.cert('down-b', ['localhost']),
                               raw=s2s_conf(pb, [('a.test', pa)], ca.crt))
            try:
                bob = Session(self.login(b, 'bob@b.test', password='pb',
                                         resource='r'))
                bob.presence()
                # The first retry waits 0.5-1.5 s (connector_backoff_ms).
                deadline = time.monotonic() + 20
                got = None
                n = 0
                while got is None and time.monotonic() < deadline:
                    n += 1
                    alice.message('bob@b.test', 'try %d' % n)
                    try:
                        got = bob.wait(lambda el: el.tag == MESSAGE and
                                       el.get('type') != 'error',
                                       'message', timeout=1.5)
                    except AssertionError:
                        pass
                self.assertIsNotNone(got)
                self.assertEqual(got.get('from'), 'alice@a.test/r')
            finally:
                b.stop()
        finally:
            a.stop()


class LinkLossTest(harness.ServerTestCase):
    """Stanzas written on a link that breaks before the peer took them are
    routed again, never dropped without a word: b.test stops reading
    (SIGSTOP) while alice sends a burst, then dies (SIGKILL: its kernel
    resets the connection); every message b.test's TCP had not taken comes
    back to alice as an error — the tail of the burst, once each (what
    b.test's kernel took died with it, as with any peer that crashes)."""

    N = 8000  # ~9 MB: more than b.test's receive buffer and a's send buffer

    def test_reset_link(self):
        # Without a's per-connection rate limit, for a quick burst.
        a, b = pair(ca, False, False, limits={'rate_limit': 0})
        try:
            alice = Session(self.login(a, 'alice@a.test', password='pa',
                                       resource='r'))
            bob = Session(self.login(b, 'bob@b.test', password='pb',
                                     resource='r'))
            bob.presence()
            alice.message('bob@b.test', 'first')
            bob.wait(lambda el: el.tag == MESSAGE and
                     el.findtext(BODY) == 'first', 'first', timeout=20)
            b.proc.send_signal(signal.SIGSTOP)
            body = 'x' * 1000
            for i in range(self.N):
                alice.send("<message to='bob@b.test' id='m%d'><body>%s"
                           "</body></message>" % (i, body))
            early = alice.c.sync(timeout=60)
            b.kill()
            ids = []
            els = list(early)
            while True:
                if not els:
                    try:
                        els.append(alice.c.expect_element(timeout=5))
                    except Exception:
                        break
                el = els.pop(0)
                if el.tag == MESSAGE and el.get('type') == 'error':
                    self.assertIn(harness.stanza_error_condition(el)[1],
                                  ('remote-server-not-found',
                                   'remote-server-timeout'))
                    ids.append(int(el.get('id')[1:]))
            self.assertGreater(len(ids), 0)
            ids.sort()
            want = list(range(self.N - len(ids), self.N))
            if ids != want:
                self.fail('%d errors, not the tail: %r..., want %r...; '
                          'repeated %d' % (len(ids), ids[:5], want[:5],
                                           len(ids) - len(set(ids))))
        finally:
            a.stop()
            b.kill()


class ComponentFederationTest(harness.ServerTestCase):
    """An XEP-0114 component of a.test's server (bot.a.test) is reachable
    from b.test's users, and reaches them: the stanzas cross s2s with the
    component's domain authenticated by dialback (b.test verifies it with
    a.test's server, to which bot.a.test routes)."""

    def test_component_across_servers(self):
        from test_component import Component
        pa, pb = free_port(), free_port()
        comp_conf = ('component = { listen = ( { address = "127.0.0.1"; '
                     'port = 0; } ); domains = ( { domain = "bot.a.test"; '
                     'secret = "s"; } ); };')
        a = harness.Server(users={'alice@a.test': 'pa'}, hosts=['a.test'],
                           cert=ca.cert('comp-a', ['localhost']),
                           raw=s2s_conf(pa, [('b.test', pb)], ca.crt) +
                           comp_conf)
        b = harness.Server(users={'bob@b.test': 'pb'}, hosts=['b.test'],
                           cert=ca.cert('comp-b', ['localhost']),
                           raw=s2s_conf(pb, [('a.test', pa),
                                             ('bot.a.test', pa)], ca.crt))
        comp = None
        try:
            comp = Component(a, 'bot.a.test', 's')
            bob = Session(self.login(b, 'bob@b.test', password='pb',
                                     resource='r'))
            bob.presence()
            comp.send("<message from='echo@bot.a.test' to='bob@b.test/r' "
                      "id='c1'><body>from a component</body></message>")
            m = bob.wait(lambda el: el.tag == MESSAGE and
                         el.findtext(BODY) == 'from a component',
                         'the component message', timeout=20)
            self.assertEqual(m.get('from'), 'echo@bot.a.test')
            bob.message('echo@bot.a.test', 'back to the component')
            got = comp.expect('message', timeout=20)
            self.assertEqual(got.get('from'), 'bob@b.test/r')
            self.assertEqual(got.findtext('{jabber:component:accept}body'),
                             'back to the component')
        finally:
            if comp is not None:
                comp.close()
            a.stop()
            b.stop()


if __name__ == '__main__':
    harness.main()
