"""The first modules over real sockets: XEP-0199 ping, XEP-0030 disco#info
and disco#items (of the server and of accounts), XEP-0092 software
version, XEP-0202 entity time, XEP-0157 contact addresses, XEP-0012 last
activity, and the
`modules` setting that switches them (server/modules/, RFC 6120 §8.1.2.1 for
the replies to the account).

Run: python3 test_modules.py STARLINGD STARLINGCTL
"""
import base64
import datetime
import hashlib
import hmac
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import NS_CLIENT, Server, iq, q, stanza_error_condition  # noqa: E402

NS_PING = 'urn:xmpp:ping'
NS_INFO = 'http://jabber.org/protocol/disco#info'
NS_ITEMS = 'http://jabber.org/protocol/disco#items'
NS_VERSION = 'jabber:iq:version'
NS_TIME = 'urn:xmpp:time'
NS_LAST = 'jabber:iq:last'
NS_DATA = 'jabber:x:data'
DEFAULT_FEATURES = {NS_PING, NS_INFO, NS_ITEMS, NS_VERSION, NS_TIME,
                    'msgoffline', 'jabber:iq:private', 'vcard-temp', NS_LAST,
                    'urn:xmpp:blocking', 'urn:xmpp:carbons:2',
                    'urn:xmpp:extdisco:2', 'http://jabber.org/protocol/caps',
                    'jabber:iq:register'}


def features(info):
    query = info.find(q(NS_INFO, 'query'))
    return {f.get('var') for f in query.findall(q(NS_INFO, 'feature'))}


class DefaultModules(harness.ServerTestCase):
    """The defaults: ping, disco, version and time on."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Server()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_ping_server(self):
        """XEP-0199 §4.2: a ping to the server's domain gets an empty
        result from the domain."""
        a = self.login(self.srv)
        res = iq(a, 'localhost', "<ping xmlns='%s'/>" % NS_PING)
        self.assertEqual(res.get('type'), 'result')
        self.assertEqual(res.get('from'), 'localhost')
        self.assertEqual(res.get('to'), a.jid)
        self.assertEqual(len(res), 0)

    def test_ping_account_no_to(self):
        """XEP-0199 §4.3 and RFC 6120 §8.1.2.1: a ping with no 'to' is
        answered for the account, with no 'from' (never the domain)."""
        a = self.login(self.srv)
        res = iq(a, None, "<ping xmlns='%s'/>" % NS_PING)
        self.assertEqual(res.get('type'), 'result')
        self.assertIsNone(res.get('from'))

    def test_ping_own_bare_jid(self):
        """A ping to one's own bare JID is answered from the bare JID."""
        a = self.login(self.srv)
        res = iq(a, 'alice@localhost', "<ping xmlns='%s'/>" % NS_PING)
        self.assertEqual(res.get('type'), 'result')
        self.assertEqual(res.get('from'), 'alice@localhost')

    def test_ping_other_bare_jid_not_answered_by_server(self):
        """A ping to another user's bare JID is not the server's: it gets
        service-unavailable from that JID."""
        a = self.login(self.srv)
        res = iq(a, 'bob@localhost', "<ping xmlns='%s'/>" % NS_PING)
        self.assertEqual(stanza_error_condition(res), ('cancel', 'service-unavailable'))
        self.assertEqual(res.get('from'), 'bob@localhost')

    def test_error_to_account_has_no_from(self):
        """RFC 6120 §8.1.2.1: an error for an IQ with no 'to' carries no
        'from' either."""
        a = self.login(self.srv)
        res = iq(a, None, "<query xmlns='urn:example:nothing'/>", 'set')
        self.assertEqual(stanza_error_condition(res), ('cancel', 'service-unavailable'))
        self.assertIsNone(res.get('from'))
        self.assertIsNotNone(res.find(q('urn:example:nothing', 'query')))

    def test_disco_info(self):
        """XEP-0030 §3.1: identity server/im and the features of every
        enabled module."""
        a = self.login(self.srv)
        res = iq(a, 'localhost', "<query xmlns='%s'/>" % NS_INFO)
        self.assertEqual(res.get('type'), 'result')
        self.assertEqual(res.get('from'), 'localhost')
        query = res.find(q(NS_INFO, 'query'))
        ids = [(i.get('category'), i.get('type'))
               for i in query.findall(q(NS_INFO, 'identity'))]
        self.assertIn(('server', 'im'), ids)
        self.assertEqual(features(res), DEFAULT_FEATURES)

    def test_disco_info_other_host(self):
        """The second served domain answers as well, from itself."""
        a = self.login(self.srv)
        other = self.srv.hosts[1]
        res = iq(a, other, "<query xmlns='%s'/>" % NS_INFO)
        self.assertEqual(res.get('from'), other)
        self.assertEqual(features(res), DEFAULT_FEATURES)

    def test_disco_info_node(self):
        """A node the server does not have: item-not-found."""
        a = self.login(self.srv)
        res = iq(a, 'localhost', "<query xmlns='%s' node='x'/>" % NS_INFO)
        self.assertEqual(stanza_error_condition(res), ('cancel', 'item-not-found'))

    def test_disco_items(self):
        """XEP-0030 §4.1: an empty list of items for now."""
        a = self.login(self.srv)
        res = iq(a, 'localhost', "<query xmlns='%s'/>" % NS_ITEMS)
        self.assertEqual(res.get('type'), 'result')
        query = res.find(q(NS_ITEMS, 'query'))
        self.assertIsNotNone(query)
        self.assertEqual(len(query), 0)

    def test_disco_account(self):
        """XEP-0030 on an account's bare JID, answered by the server: the
        identity account/registered, for oneself (no 'from') and for
        another account (from its bare JID); an account that does not
        exist: service-unavailable; items: an empty list."""
        a = self.login(self.srv)
        for to, frm in ((None, None), ('alice@localhost', 'alice@localhost'),
                        ('bob@localhost', 'bob@localhost')):
            res = iq(a, to, "<query xmlns='%s'/>" % NS_INFO)
            self.assertEqual((res.get('type'), res.get('from')),
                             ('result', frm))
            query = res.find(q(NS_INFO, 'query'))
            ids = [(i.get('category'), i.get('type'))
                   for i in query.findall(q(NS_INFO, 'identity'))]
            self.assertEqual(ids, [('account', 'registered'), ('pubsub', 'pep')])
            self.assertIn(NS_INFO, features(res))
            res = iq(a, to, "<query xmlns='%s'/>" % NS_ITEMS)
            self.assertEqual(len(res.find(q(NS_ITEMS, 'query'))), 0)
        res = iq(a, 'nobody@localhost', "<query xmlns='%s'/>" % NS_INFO)
        self.assertEqual(stanza_error_condition(res),
                         ('cancel', 'service-unavailable'))

    def test_no_contact_form_by_default(self):
        """XEP-0157: no addresses configured, no form."""
        a = self.login(self.srv)
        res = iq(a, 'localhost', "<query xmlns='%s'/>" % NS_INFO)
        self.assertIsNone(res.find('%s/%s' % (q(NS_INFO, 'query'),
                                              q(NS_DATA, 'x'))))

    def test_last_server_uptime(self):
        """XEP-0012 §5: the server's uptime in seconds."""
        a = self.login(self.srv)
        res = iq(a, 'localhost', "<query xmlns='%s'/>" % NS_LAST)
        self.assertEqual(res.get('type'), 'result')
        secs = int(res.find(q(NS_LAST, 'query')).get('seconds'))
        self.assertGreaterEqual(secs, 0)
        self.assertLess(secs, 600)

    def test_version(self):
        """XEP-0092: name and version, no <os/> by default."""
        a = self.login(self.srv)
        res = iq(a, 'localhost', "<query xmlns='%s'/>" % NS_VERSION)
        self.assertEqual(res.get('type'), 'result')
        query = res.find(q(NS_VERSION, 'query'))
        self.assertEqual(query.findtext(q(NS_VERSION, 'name')), 'Starling')
        self.assertRegex(query.findtext(q(NS_VERSION, 'version')), r'^\d+\.\d+')
        self.assertIsNone(query.find(q(NS_VERSION, 'os')))

    def test_time(self):
        """XEP-0202: UTC with 'Z', offset +00:00, close to our clock."""
        a = self.login(self.srv)
        res = iq(a, 'localhost', "<time xmlns='%s'/>" % NS_TIME)
        self.assertEqual(res.get('type'), 'result')
        t = res.find(q(NS_TIME, 'time'))
        self.assertEqual(t.findtext(q(NS_TIME, 'tzo')), '+00:00')
        utc = t.findtext(q(NS_TIME, 'utc'))
        self.assertRegex(utc, r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$')
        when = datetime.datetime.strptime(re.sub(r'\.\d+', '', utc),
                                          '%Y-%m-%dT%H:%M:%SZ')
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        self.assertLess(abs((now - when).total_seconds()), 60)

    def test_set_is_not_get(self):
        """A set in a namespace whose module only answers get:
        service-unavailable with the original child."""
        a = self.login(self.srv)
        res = iq(a, 'localhost', "<query xmlns='%s'/>" % NS_VERSION, 'set')
        self.assertEqual(stanza_error_condition(res), ('cancel', 'service-unavailable'))
        self.assertIsNotNone(res.find(q(NS_VERSION, 'query')))


class ContactInfo(harness.ServerTestCase):
    """XEP-0157 with addresses configured."""

    def test_form(self):
        """The serverinfo form in disco#info (XEP-0128): FORM_TYPE hidden,
        one list-multi field per kind configured, values in order."""
        srv = Server(top={'contact_info': {
            'admin': ['xmpp:admin@localhost', 'mailto:admin@example.org'],
            'abuse': ['mailto:abuse@example.org']}})
        try:
            a = self.login(srv)
            res = iq(a, 'localhost', "<query xmlns='%s'/>" % NS_INFO)
            xs = res.findall('%s/%s' % (q(NS_INFO, 'query'), q(NS_DATA, 'x')))
            self.assertEqual(len(xs), 1)
            self.assertEqual(xs[0].get('type'), 'result')
            fields = {f.get('var'): (f.get('type'),
                                     [v.text for v in f.findall(q(NS_DATA,
                                                                  'value'))])
                      for f in xs[0].findall(q(NS_DATA, 'field'))}
            self.assertEqual(fields, {
                'FORM_TYPE': ('hidden',
                              ['http://jabber.org/network/serverinfo']),
                'admin-addresses': ('list-multi', ['xmpp:admin@localhost',
                                                   'mailto:admin@example.org']),
                'abuse-addresses': ('list-multi',
                                    ['mailto:abuse@example.org'])})
        finally:
            srv.stop()


NS_EXT = 'urn:xmpp:extdisco:2'


class ExternalServices(harness.SharedServerTestCase):
    """XEP-0215 with a STUN and two TURN services and a secret."""

    server_args = dict(top={'external_services': {
        'services': ['stun:turn.example.org',
                     'turn:turn.example.org:3479?transport=udp',
                     'turns:turn.example.org?transport=tcp'],
        'secret': 's3cret', 'ttl': 600}})

    def check_credentials(self, svc):
        """coturn's use-auth-secret: username EXPIRY:USER, password
        base64(HMAC-SHA1(secret, username)), expiring in ttl seconds."""
        user = svc.get('username')
        expiry, _, who = user.partition(':')
        self.assertEqual(who, 'alice@localhost')
        self.assertAlmostEqual(int(expiry), time.time() + 600, delta=30)
        mac = hmac.new(b's3cret', user.encode(), hashlib.sha1).digest()
        self.assertEqual(svc.get('password'), base64.b64encode(mac).decode())
        stamp = datetime.datetime.strptime(svc.get('expires'),
                                           '%Y-%m-%dT%H:%M:%SZ')
        self.assertEqual(stamp.replace(tzinfo=datetime.timezone.utc)
                         .timestamp(), int(expiry))

    def test_services(self):
        """§3.1: every service with its type, host, port (defaults 3478
        and 5349) and transport; TURN ones with credentials; a type
        filter."""
        a = self.login(self.srv)
        res = iq(a, 'localhost', "<services xmlns='%s'/>" % NS_EXT)
        svcs = res.findall('%s/%s' % (q(NS_EXT, 'services'),
                                      q(NS_EXT, 'service')))
        self.assertEqual([(s.get('type'), s.get('host'), s.get('port'),
                           s.get('transport')) for s in svcs],
                         [('stun', 'turn.example.org', '3478', None),
                          ('turn', 'turn.example.org', '3479', 'udp'),
                          ('turns', 'turn.example.org', '5349', 'tcp')])
        self.assertIsNone(svcs[0].get('username'))
        for s in svcs[1:]:
            self.check_credentials(s)
        res = iq(a, 'localhost', "<services xmlns='%s' type='stun'/>" % NS_EXT)
        self.assertEqual(len(res.find(q(NS_EXT, 'services'))), 1)

    def test_credentials(self):
        """§3.3: credentials for one service; none matches:
        item-not-found; no service named: bad-request."""
        a = self.login(self.srv)
        res = iq(a, 'localhost', "<credentials xmlns='%s'><service "
                 "type='turn' host='turn.example.org'/></credentials>" % NS_EXT)
        [svc] = res.find(q(NS_EXT, 'credentials'))
        self.check_credentials(svc)
        res = iq(a, 'localhost', "<credentials xmlns='%s'><service "
                 "type='turn' host='other.example'/></credentials>" % NS_EXT)
        self.assertEqual(stanza_error_condition(res),
                         ('cancel', 'item-not-found'))
        res = iq(a, 'localhost', "<credentials xmlns='%s'/>" % NS_EXT)
        self.assertEqual(stanza_error_condition(res), ('modify', 'bad-request'))

    def test_bad_service_refused(self):
        """A service that does not parse stops the server at start."""
        srv = Server(start=False)
        srv.top = {'external_services': {'services': ['ftp:example.org']}}
        srv.write_config(ports=(0, 0))
        with self.assertRaises(AssertionError):
            srv.start()
        self.assertEqual(srv.wait_exit(10), 1)
        self.assertIn("external_services.services: 'ftp:example.org'",
                      srv.log_text())


NS_CAPS = 'http://jabber.org/protocol/caps'


def caps_ver(identities, features):
    """XEP-0115 §5.1 for identities (category, type, lang, name) and
    features (no forms)."""
    s = ''.join('%s/%s/%s/%s<' % i for i in sorted(identities))
    s += ''.join('%s<' % f for f in sorted(features))
    return base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()


def info_ver(res):
    query = res.find(q(NS_INFO, 'query'))
    ids = [(i.get('category'), i.get('type'),
            i.get('{http://www.w3.org/XML/1998/namespace}lang', ''),
            i.get('name', '')) for i in query.findall(q(NS_INFO, 'identity'))]
    assert query.find(q(NS_DATA, 'x')) is None, 'forms are not hashed here'
    return caps_ver(ids, features(res))


CLIENT_IDS = [('client', 'pc', '', 'Test')]
CLIENT_FEATURES = [NS_INFO, NS_CAPS, 'urn:xmpp:test', 'urn:xmpp:test+notify']


class Caps(harness.SharedServerTestCase):
    """XEP-0115: the server's caps, and the clients' it verifies."""

    def test_server_caps(self):
        """§6.3: <c/> in the features after authentication, whose ver is
        the hash of the server's disco#info; the node#ver query answers
        the same with the node; another ver: item-not-found."""
        a = self.login(self.srv)
        c = a.features.find(q(NS_CAPS, 'c'))
        self.assertIsNotNone(c)
        self.assertEqual((c.get('hash'), c.get('node')),
                         ('sha-1', 'urn:starling:caps'))
        res = iq(a, 'localhost', "<query xmlns='%s'/>" % NS_INFO)
        self.assertEqual(c.get('ver'), info_ver(res))
        node = 'urn:starling:caps#' + c.get('ver')
        res = iq(a, 'localhost', "<query xmlns='%s' node='%s'/>"
                 % (NS_INFO, node))
        self.assertEqual(res.find(q(NS_INFO, 'query')).get('node'), node)
        self.assertEqual(info_ver(res), c.get('ver'))
        res = iq(a, 'localhost', "<query xmlns='%s' node='urn:starling:"
                 "caps#AAAA'/>" % NS_INFO)
        self.assertEqual(stanza_error_condition(res),
                         ('cancel', 'item-not-found'))

    def announce(self, c, ver):
        c.send("<presence><c xmlns='%s' hash='sha-1' node='urn:test:client' "
               "ver='%s'/></presence>" % (NS_CAPS, ver))

    def answer_query(self, c, ver, feats):
        """The server's disco#info query for node#ver, answered with
        feats; returns the query."""
        while True:
            el = c.expect_stanza('iq')
            if el.get('type') == 'get':
                break
        self.assertEqual((el.get('from'), el.get('to')), ('localhost', c.jid))
        qn = el.find(q(NS_INFO, 'query'))
        self.assertEqual(qn.get('node'), 'urn:test:client#' + ver)
        c.send("<iq type='result' id='%s' to='localhost'><query xmlns='%s' "
               "node='urn:test:client#%s'><identity category='client' "
               "type='pc' name='Test'/>%s</query></iq>"
               % (el.get('id'), NS_INFO, ver,
                  ''.join("<feature var='%s'/>" % f for f in feats)))
        return el

    def no_query(self, c):
        self.assertEqual([el for el in c.sync()
                          if el.tag == q(NS_CLIENT, 'iq')], [])

    def test_client_caps_verified_once(self):
        """§5.4 and §8.4: an unknown ver is asked for once; an answer that
        hashes to it is kept, so the next entity with that ver is not
        asked; an answer that does not is not kept, so the ver is asked
        for again."""
        ver = caps_ver(CLIENT_IDS, CLIENT_FEATURES)
        a = self.login(self.srv, resource='caps1')
        self.announce(a, ver)
        self.answer_query(a, ver, CLIENT_FEATURES)
        a.sync()
        b = self.login(self.srv, 'bob@localhost', resource='caps1')
        self.announce(b, ver)
        self.no_query(b)
        # A ver the answer does not match.
        bad = caps_ver(CLIENT_IDS, ['urn:xmpp:other'])
        c1 = self.login(self.srv, 'carol@localhost', resource='c1')
        self.announce(c1, bad)
        self.answer_query(c1, bad, CLIENT_FEATURES)
        c1.sync()
        c2 = self.login(self.srv, 'carol@localhost', resource='c2')
        self.announce(c2, bad)
        self.answer_query(c2, bad, ['urn:xmpp:other'])
        c2.sync()
        c3 = self.login(self.srv, 'carol@localhost', resource='c3')
        self.announce(c3, bad)
        self.no_query(c3)


class LastActivity(harness.ServerTestCase):
    """XEP-0012 §3 for accounts: alice and bob have a subscription both
    (provisioned with starlingctl), carol none."""

    def test_last_activity(self):
        srv = Server()
        try:
            srv.befriend('alice@localhost', 'bob@localhost')
            bob = self.login(srv, 'bob@localhost')
            # Never offline yet: item-not-found; online: 0.
            res = iq(bob, 'alice@localhost', "<query xmlns='%s'/>" % NS_LAST)
            self.assertEqual(stanza_error_condition(res),
                             ('cancel', 'item-not-found'))
            a = self.login(srv, resource='one')
            a.send("<presence/>")
            a.sync()
            res = iq(bob, 'alice@localhost', "<query xmlns='%s'/>" % NS_LAST)
            self.assertEqual(res.get('type'), 'result')
            self.assertEqual(res.get('from'), 'alice@localhost')
            self.assertEqual(res.find(q(NS_LAST, 'query')).get('seconds'), '0')
            # Offline with a status: the seconds since, and the status.
            a.send("<presence type='unavailable'><status>Heading home"
                   "</status></presence>")
            a.sync()
            time.sleep(1.2)
            res = iq(bob, 'alice@localhost', "<query xmlns='%s'/>" % NS_LAST)
            query = res.find(q(NS_LAST, 'query'))
            self.assertGreaterEqual(int(query.get('seconds')), 1)
            self.assertEqual(query.text, 'Heading home')
            # Not a contact with a subscription: forbidden; no such
            # account: service-unavailable.
            carol = self.login(srv, 'carol@localhost')
            res = iq(carol, 'alice@localhost', "<query xmlns='%s'/>" % NS_LAST)
            self.assertEqual(stanza_error_condition(res), ('auth', 'forbidden'))
            res = iq(carol, 'nobody@localhost', "<query xmlns='%s'/>" % NS_LAST)
            self.assertEqual(stanza_error_condition(res),
                             ('cancel', 'service-unavailable'))
            # A connection lost while available counts as going offline;
            # it survives a restart.
            b2 = self.login(srv, 'bob@localhost', resource='two')
            b2.send("<presence/>")
            b2.sync()
            b2.close()
            bob.close()
            srv.stop()
            srv.start()
            a = self.login(srv)
            res = iq(a, 'bob@localhost', "<query xmlns='%s'/>" % NS_LAST)
            query = res.find(q(NS_LAST, 'query'))
            self.assertEqual(res.get('type'), 'result')
            self.assertFalse(query.text)
        finally:
            srv.stop()


class SwitchedModules(harness.ServerTestCase):
    """`modules` names only disco and ping; version shows the OS."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(top={'modules': ['disco', 'ping']})
        cls.os_srv = Server(top={'version': {'show_os': True}})

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.os_srv.stop()

    def test_switched_off_leaves_disco(self):
        """Modules switched off add no features; the log names those
        on."""
        self.srv.wait_log(r'modules: im, roster, disco, ping$')
        a = self.login(self.srv)
        res = iq(a, 'localhost', "<query xmlns='%s'/>" % NS_INFO)
        self.assertEqual(features(res), {NS_PING, NS_INFO, NS_ITEMS})

    def test_switched_off_unavailable(self):
        """A module switched off answers nothing: service-unavailable with
        the original child."""
        a = self.login(self.srv)
        for ns, name in ((NS_VERSION, 'query'), (NS_TIME, 'time')):
            res = iq(a, 'localhost', "<%s xmlns='%s'/>" % (name, ns))
            self.assertEqual(stanza_error_condition(res),
                             ('cancel', 'service-unavailable'))
            self.assertIsNotNone(res.find(q(ns, name)))
        res = iq(a, 'localhost', "<ping xmlns='%s'/>" % NS_PING)
        self.assertEqual(res.get('type'), 'result')

    def test_show_os(self):
        """version.show_os = true adds <os/>."""
        a = self.login(self.os_srv)
        res = iq(a, 'localhost', "<query xmlns='%s'/>" % NS_VERSION)
        os_ = res.find(q(NS_VERSION, 'query')).findtext(q(NS_VERSION, 'os'))
        self.assertTrue(os_)

    def test_unknown_module_refused(self):
        """An unknown module name stops the server at start with the line
        of the setting."""
        srv = Server(start=False)
        srv.top = {'modules': ['ping', 'pong']}
        srv.write_config(ports=(0, 0))
        with self.assertRaises(AssertionError):
            srv.start()
        self.assertEqual(srv.wait_exit(10), 1)
        text = srv.log_text()
        self.assertRegex(text, r"starlingd\.conf:\d+: modules: unknown module 'pong'")


if __name__ == '__main__':
    harness.main()
