"""XEP-0077 account creation before authentication, over real sockets:
the stream features, the form, creating an account and logging in with it
on the same stream, the errors (taken names, unusable names and passwords,
<remove/>, the per-address interval, registration off), and invite-only
registration with XEP-0445 tokens made by `starlingctl invite` (one use,
expired or unknown tokens refused).

Run: python3 test_register.py STARLINGD STARLINGCTL
"""
import os
import re
import sqlite3
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import NS_SASL, Client, Server, q, stanza_error_condition  # noqa: E402

NS_REG = 'jabber:iq:register'
NS_FEAT_REG = 'http://jabber.org/features/iq-register'
NS_IBR_TOKEN = 'urn:xmpp:ibr-token:0'
NS_PARS = 'urn:xmpp:pars:0'


def preauth_client(srv):
    """A client after STARTTLS, before authentication."""
    c = Client(srv.port)
    c.open_stream(to='localhost')
    c.starttls()
    c.open_stream(to='localhost')
    return c


def request(c, payload, type_='set'):
    iid = c.next_id('r')
    c.send("<iq type='%s' id='%s'>%s</iq>" % (type_, iid, payload))
    el = c.expect_stanza('iq')
    assert el.get('id') == iid, el.attrib
    return el


def register(c, user, password):
    return request(c, "<query xmlns='%s'><username>%s</username><password>"
                   "%s</password></query>" % (NS_REG, user, password))


def invite(srv, domain='localhost', extra=()):
    r = subprocess.run([harness.STARLINGCTL, '--config', srv.conf, 'invite',
                        domain] + list(extra), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    out = r.stdout.decode()
    if r.returncode != 0:
        raise RuntimeError('starlingctl invite failed: ' + out)
    m = re.search(r'^token (\S+)$', out, re.M)
    assert re.search(r'^uri xmpp:%s\?register;preauth=%s$'
                     % (re.escape(domain), re.escape(m.group(1))), out, re.M), out
    return m.group(1)


class OpenRegistration(harness.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(top={'register': {'allow_registration': True,
                                           'registration_interval': 0}})

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_feature_and_form(self):
        """§4: the stream feature before authentication; §3.1: the form
        names the fields."""
        c = self.track(preauth_client(self.srv))
        self.assertIsNotNone(c.feature(NS_FEAT_REG, 'register'))
        r = request(c, "<query xmlns='%s'/>" % NS_REG, 'get')
        self.assertEqual(r.get('type'), 'result')
        query = r.find(q(NS_REG, 'query'))
        self.assertIsNotNone(query.find(q(NS_REG, 'username')))
        self.assertIsNotNone(query.find(q(NS_REG, 'password')))
        self.assertTrue(query.findtext(q(NS_REG, 'instructions')))

    def test_register_then_login(self):
        """The account is created; the client authenticates with it on the
        same stream, binds, and can log in again later."""
        c = self.track(preauth_client(self.srv))
        r = register(c, 'Newbie', 'n3w-pass')
        self.assertEqual(r.get('type'), 'result')
        res = c.auth_scram('newbie', 'n3w-pass')
        self.assertEqual(res.tag, q(NS_SASL, 'success'))
        c.open_stream(to='localhost')
        c.bind('r')
        self.assertTrue(c.jid.startswith('newbie@localhost/'))
        self.login(self.srv, 'newbie@localhost', password='n3w-pass')
        self.srv.wait_log(r'registered newbie@localhost \(from 127\.0\.0\.1\)')

    def test_errors(self):
        """A taken name: conflict; an empty or invalid name or password:
        not-acceptable; <remove/>: not-allowed; the password never comes
        back in an error."""
        c = self.track(preauth_client(self.srv))
        r = register(c, 'alice', 'whatever')
        self.assertEqual(stanza_error_condition(r), ('cancel', 'conflict'))
        self.assertNotIn(b'whatever', bytes(c.stream_raw))
        for user, pw in (('', 'x'), ('bad@name', 'x'), ('ok', '')):
            r = register(c, user, pw)
            self.assertEqual(stanza_error_condition(r),
                             ('modify', 'not-acceptable'), (user, pw))
        r = request(c, "<query xmlns='%s'><remove/></query>" % NS_REG)
        self.assertEqual(stanza_error_condition(r), ('cancel', 'not-allowed'))

    def test_other_iq_before_auth(self):
        """Only registration is spoken before authentication: any other IQ
        ends the stream with not-authorized, as before."""
        c = self.track(preauth_client(self.srv))
        c.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        c.expect_stream_error('not-authorized')

    def test_too_many_preauth_iqs(self):
        c = self.track(preauth_client(self.srv))
        for _ in range(16):
            request(c, "<query xmlns='%s'/>" % NS_REG, 'get')
        c.send("<iq type='get' id='x'><query xmlns='%s'/></iq>" % NS_REG)
        c.expect_stream_error('policy-violation')


class Limits(harness.ServerTestCase):

    def test_interval_per_address(self):
        """A second account from the same address within the interval:
        policy-violation (wait); another address is not held back."""
        srv = Server(top={'register': {'allow_registration': True,
                                       'registration_interval': 600}})
        try:
            c = self.track(preauth_client(srv))
            self.assertEqual(register(c, 'first', 'pw-1').get('type'),
                             'result')
            c2 = self.track(preauth_client(srv))
            r = register(c2, 'second', 'pw-2')
            self.assertEqual(stanza_error_condition(r),
                             ('wait', 'policy-violation'))
            other = Client(srv.port, source='127.0.0.2')
            self.track(other)
            other.open_stream(to='localhost')
            other.starttls()
            other.open_stream(to='localhost')
            self.assertEqual(register(other, 'second', 'pw-2').get('type'),
                             'result')
        finally:
            srv.stop()

    def test_off_by_default(self):
        """Without allow_registration: no feature, service-unavailable."""
        srv = Server()
        try:
            c = self.track(preauth_client(srv))
            self.assertIsNone(c.feature(NS_FEAT_REG, 'register'))
            r = register(c, 'nobody', 'pw')
            self.assertEqual(stanza_error_condition(r),
                             ('cancel', 'service-unavailable'))
            r = request(c, "<query xmlns='%s'/>" % NS_REG, 'get')
            self.assertEqual(stanza_error_condition(r),
                             ('cancel', 'service-unavailable'))
        finally:
            srv.stop()


class InviteOnly(harness.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(top={'register': {'allow_registration': True,
                                           'invite_only': True}})

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_without_invitation(self):
        c = self.track(preauth_client(self.srv))
        self.assertIsNotNone(c.feature(NS_IBR_TOKEN, 'register'))
        r = register(c, 'uninvited', 'pw')
        self.assertEqual(stanza_error_condition(r), ('auth', 'forbidden'))

    def test_invitation_once(self):
        """XEP-0445: the token is accepted, the account created with it;
        the same token then is unknown (used once)."""
        token = invite(self.srv)
        c = self.track(preauth_client(self.srv))
        r = request(c, "<preauth xmlns='%s' token='%s'/>" % (NS_PARS, token))
        self.assertEqual(r.get('type'), 'result')
        self.assertEqual(register(c, 'invited', 'pw-i').get('type'), 'result')
        self.login(self.srv, 'invited@localhost', password='pw-i')
        c2 = self.track(preauth_client(self.srv))
        r = request(c2, "<preauth xmlns='%s' token='%s'/>" % (NS_PARS, token))
        self.assertEqual(stanza_error_condition(r), ('cancel', 'item-not-found'))
        r = register(c2, 'again', 'pw')
        self.assertEqual(stanza_error_condition(r), ('auth', 'forbidden'))

    def test_taken_name_keeps_invitation(self):
        """A taken name: conflict, and the token stays usable."""
        token = invite(self.srv)
        c = self.track(preauth_client(self.srv))
        request(c, "<preauth xmlns='%s' token='%s'/>" % (NS_PARS, token))
        r = register(c, 'alice', 'pw')
        self.assertEqual(stanza_error_condition(r), ('cancel', 'conflict'))
        self.assertEqual(register(c, 'alice2', 'pw').get('type'), 'result')

    def test_unknown_and_expired(self):
        c = self.track(preauth_client(self.srv))
        r = request(c, "<preauth xmlns='%s' token='nope'/>" % NS_PARS)
        self.assertEqual(stanza_error_condition(r), ('cancel', 'item-not-found'))
        token = invite(self.srv)
        db = sqlite3.connect(os.path.join(self.srv.dir, 'starling.db'))
        with db:
            db.execute('UPDATE invites SET expires = 1 WHERE token = ?',
                       (token,))
        db.close()
        r = request(c, "<preauth xmlns='%s' token='%s'/>" % (NS_PARS, token))
        self.assertEqual(stanza_error_condition(r), ('cancel', 'item-not-found'))

    def test_invite_for_unserved_domain(self):
        with self.assertRaises(RuntimeError):
            invite(self.srv, 'elsewhere.test')


if __name__ == '__main__':
    harness.main()
