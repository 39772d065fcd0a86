"""SASL over real sockets (feature set 5-1..5-4, 6-2; RFC 6120 §6.4, §6.5;
RFC 5802/7677 SCRAM with tls-unique channel binding; XEP-0440, XEP-0474).

Run: python3 test_sasl.py STARLINGD STARLINGCTL
"""
import base64
import hashlib
import os
import ssl
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (NS_BIND, NS_SASL, Scram, Server, q,  # noqa: E402
                     sasl_failure_condition)

SUCCESS = q(NS_SASL, 'success')
TLS12 = ssl.TLSVersion.TLSv1_2


class Sasl(harness.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = Server()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def tls_stream(self, tls_max=None, domain='localhost', keylog=False):
        """A client over STARTTLS with its post-TLS features read."""
        c = self.client(self.srv)
        c.open_stream(to=domain)
        c.starttls(tls_max=tls_max, keylog=keylog)
        c.open_stream(to=domain)
        return c

    def assertSuccessThenBind(self, c, res, domain='localhost', node='alice'):
        """5-3: after <success/> the client opens a new stream; the server
        answers with a header and bind features, no mechanisms."""
        self.assertEqual(res.tag, SUCCESS, harness.ET.tostring(res, 'unicode'))
        hdr = c.open_stream(to=domain)
        self.assertEqual(hdr.get('from'), domain)
        self.assertEqual(c.mechanisms(), [])
        self.assertIsNotNone(c.feature(NS_BIND, 'bind'))
        self.assertTrue(c.bind('sasl').startswith('%s@%s/' % (node, domain)))

    # ---- advertisement

    def test_mechanisms_tls13(self):
        """5-1, XEP-0440: over TLS 1.3 the SCRAM family with -PLUS and PLAIN
        are offered, and tls-exporter (not tls-unique, which TLS 1.3 lacks)
        as channel binding."""
        c = self.tls_stream()
        mechs = c.mechanisms()
        for m in ('SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256', 'SCRAM-SHA-1-PLUS',
                  'SCRAM-SHA-1', 'PLAIN'):
            self.assertIn(m, mechs)
        self.assertNotIn('EXTERNAL', mechs)
        self.assertNotIn('DIGEST-MD5', mechs)
        self.assertEqual(c.cb_types(), ['tls-exporter'])

    def test_mechanisms_tls12(self):
        """XEP-0440 over TLS 1.2: tls-exporter (extended master secret) and
        tls-unique."""
        c = self.tls_stream(tls_max=TLS12)
        self.assertIn('SCRAM-SHA-256-PLUS', c.mechanisms())
        self.assertEqual(sorted(c.cb_types()), ['tls-exporter', 'tls-unique'])

    # ---- success

    def test_scram_sha1(self):
        """SCRAM-SHA-1 over STARTTLS; the server signature verifies."""
        c = self.tls_stream()
        self.assertSuccessThenBind(c, c.auth_scram('alice', 'alice-secret',
                                                   'SCRAM-SHA-1'))

    def test_scram_sha256(self):
        """SCRAM-SHA-256 (RFC 7677) over STARTTLS."""
        c = self.tls_stream()
        self.assertSuccessThenBind(c, c.auth_scram('alice', 'alice-secret',
                                                   'SCRAM-SHA-256'))

    def test_scram_without_initial_response(self):
        """RFC 6120 §6.4.2: <auth/> without data gets an empty challenge;
        the client-first comes in a <response/>."""
        c = self.tls_stream()
        self.assertSuccessThenBind(c, c.auth_scram('alice', 'alice-secret',
                                                   initial=False))

    def test_scram_sha256_plus_tls_unique(self):
        """SCRAM-SHA-256-PLUS with tls-unique over TLS 1.2."""
        c = self.tls_stream(tls_max=TLS12)
        self.assertSuccessThenBind(c, c.auth_scram('alice', 'alice-secret',
                                                   'SCRAM-SHA-256-PLUS'))

    def test_scram_sha1_plus_tls_unique(self):
        """SCRAM-SHA-1-PLUS with tls-unique over TLS 1.2."""
        c = self.tls_stream(tls_max=TLS12)
        self.assertSuccessThenBind(c, c.auth_scram('alice', 'alice-secret',
                                                   'SCRAM-SHA-1-PLUS'))

    def test_scram_sha256_plus_tls_exporter(self):
        """SCRAM-SHA-256-PLUS with tls-exporter (RFC 9266) over TLS 1.3,
        the binding derived independently from the TLS key log."""
        c = self.tls_stream(keylog=True)
        self.assertEqual(c.sock.version(), 'TLSv1.3')
        self.assertSuccessThenBind(c, c.auth_scram(
            'alice', 'alice-secret', 'SCRAM-SHA-256-PLUS', cb_type='tls-exporter'))

    def test_scram_sha1_plus_tls_exporter(self):
        """SCRAM-SHA-1-PLUS with tls-exporter over TLS 1.3."""
        c = self.tls_stream(keylog=True)
        self.assertSuccessThenBind(c, c.auth_scram(
            'alice', 'alice-secret', 'SCRAM-SHA-1-PLUS', cb_type='tls-exporter'))

    def test_scram_plus_tls_exporter_wrong_data(self):
        """tls-exporter data of another connection: not-authorized."""
        other = self.tls_stream(keylog=True)
        c = self.tls_stream(keylog=True)
        res = c.auth_scram('alice', 'alice-secret', 'SCRAM-SHA-256-PLUS',
                           cb_type='tls-exporter', cb_data=other.tls_exporter())
        self.assertEqual(sasl_failure_condition(res), 'not-authorized')

    def test_scram_plus_unknown_binding_type(self):
        """A channel-binding type the server does not know
        (tls-server-end-point): not-authorized."""
        c = self.tls_stream()
        res = c.auth_scram('alice', 'alice-secret', 'SCRAM-SHA-256-PLUS',
                           cb_type='tls-server-end-point', cb_data=b'x' * 32)
        self.assertEqual(sasl_failure_condition(res), 'not-authorized')

    def test_scram_plus_wrong_binding(self):
        """-PLUS with binding data of another connection: not-authorized."""
        c = self.tls_stream(tls_max=TLS12)
        res = c.auth_scram('alice', 'alice-secret', 'SCRAM-SHA-256-PLUS',
                           cb_data=b'\0' * 12)
        self.assertEqual(sasl_failure_condition(res), 'not-authorized')

    def test_scram_plus_tls_unique_on_tls13(self):
        """tls-unique does not exist on TLS 1.3 (RFC 8446 §C.5): a -PLUS
        client asking for it fails."""
        c = self.tls_stream()
        res = c.auth_scram('alice', 'alice-secret', 'SCRAM-SHA-256-PLUS',
                           cb_data=b'\0' * 12)
        self.assertEqual(sasl_failure_condition(res), 'not-authorized')

    def test_scram_y_flag_with_plus_offered(self):
        """RFC 5802 §6: 'y' says the client thinks the server cannot bind;
        the server did offer -PLUS, so this is a downgrade: refused."""
        c = self.tls_stream()
        res = c.auth_scram('alice', 'alice-secret', 'SCRAM-SHA-256', flag='y')
        self.assertEqual(sasl_failure_condition(res), 'not-authorized')

    def test_downgrade_protection_attribute(self):
        """XEP-0474: the server-first message carries h = base64(H(sorted
        mechanisms joined by 0x1E, 0x1F, sorted channel-binding types))
        of what this stream advertised."""
        for tls_max, mech, h in ((None, 'SCRAM-SHA-256', hashlib.sha256),
                                 (TLS12, 'SCRAM-SHA-1', hashlib.sha1)):
            c = self.tls_stream(tls_max=tls_max)
            s = Scram(c, 'alice', 'alice-secret', mech)
            self.assertEqual(s.run().tag, SUCCESS)
            text = '\x1e'.join(sorted(c.mechanisms()))
            if c.cb_types():
                text += '\x1f' + '\x1e'.join(sorted(c.cb_types()))
            want = base64.b64encode(h(text.encode()).digest()).decode()
            self.assertEqual(s.server_first_attrs.get('h'), want)

    def test_plain_over_tls(self):
        """6-2: TLS plus SASL PLAIN."""
        c = self.tls_stream()
        self.assertSuccessThenBind(c, c.auth_plain('alice', 'alice-secret'))

    def test_plain_with_own_authzid(self):
        """PLAIN with the authzid of the account itself is allowed."""
        c = self.tls_stream()
        self.assertSuccessThenBind(c, c.auth_plain('alice', 'alice-secret',
                                                   authzid='alice@localhost'))

    def test_second_domain(self):
        """Accounts live per domain: dave@example.org logs in on a stream to
        example.org; alice's credentials do not work there."""
        c = self.tls_stream(domain='example.org')
        self.assertSuccessThenBind(c, c.auth_scram('dave', 'dave-secret'),
                                   domain='example.org', node='dave')
        c = self.tls_stream(domain='example.org')
        res = c.auth_scram('alice', 'alice-secret')
        self.assertEqual(sasl_failure_condition(res), 'not-authorized')

    def test_bytes_after_success_discarded(self):
        """RFC 6120 §6.4.6: what a client sends after its last SASL element
        and before the server's <success/> belongs to the old stream and is
        discarded (never read as part of the new one): a stanza pipelined
        behind the final SCRAM response, or behind a PLAIN <auth/> whose
        password check runs asynchronously, neither breaks the new stream
        nor gets routed."""
        b = self.login(self.srv, 'bob@localhost', resource='watch')
        injected = ("<message to='bob@localhost/watch'><body>injected</body>"
                    "</message>")
        c = self.tls_stream()
        self.assertSuccessThenBind(c, c.auth_scram('alice', 'alice-secret',
                                                   trailer=injected))
        c = self.tls_stream()
        self.assertSuccessThenBind(c, c.auth_plain('alice', 'alice-secret',
                                                   trailer=injected))
        self.assertEqual(b.sync(), [])

    def test_stream_restart_keeps_no_old_state(self):
        """5-3: after success the features of the new stream offer bind
        only; a second <auth/> on it is refused with a stream error."""
        c = self.tls_stream()
        self.assertEqual(c.auth_scram('alice', 'alice-secret').tag, SUCCESS)
        c.open_stream()
        c.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>"
               % (NS_SASL, base64.b64encode(b'\0alice\0alice-secret').decode()))
        c.expect_stream_error('policy-violation')

    # ---- failures (5-4, RFC 6120 §6.5)

    def test_wrong_password_scram(self):
        """§6.5.10 not-authorized: wrong password (SCRAM); the stream stays
        usable for another attempt."""
        c = self.tls_stream()
        res = c.auth_scram('alice', 'wrong')
        self.assertEqual(sasl_failure_condition(res), 'not-authorized')
        self.assertSuccessThenBind(c, c.auth_scram('alice', 'alice-secret'))

    def test_wrong_password_plain(self):
        """§6.5.10 not-authorized: wrong password (PLAIN)."""
        c = self.tls_stream()
        self.assertEqual(sasl_failure_condition(c.auth_plain('alice', 'nope')),
                         'not-authorized')

    def test_unknown_user(self):
        """§6.5.10 not-authorized for an unknown account, after a normal
        looking server-first (salt, iteration count like a real account's;
        RFC 5802 §9), so unknown names cannot be told apart."""
        c = self.tls_stream()
        real = Scram(c, 'alice', 'alice-secret')
        self.assertEqual(real.run().tag, SUCCESS)
        c = self.tls_stream()
        s = Scram(c, 'nobody', 'whatever')
        res = s.run()
        self.assertEqual(sasl_failure_condition(res), 'not-authorized')
        a = s.server_first_attrs
        self.assertIsNotNone(a, 'no server-first for an unknown user')
        self.assertEqual(a['i'], real.server_first_attrs['i'])
        self.assertEqual(len(base64.b64decode(a['s'])),
                         len(base64.b64decode(real.server_first_attrs['s'])))
        self.assertIn('h', a)
        # the fake salt is stable across attempts (RFC 5802 §9)
        c = self.tls_stream()
        s2 = Scram(c, 'nobody', 'whatever')
        s2.run()
        self.assertEqual(s2.server_first_attrs['s'], a['s'])

    def test_unknown_user_plain(self):
        c = self.tls_stream()
        self.assertEqual(sasl_failure_condition(c.auth_plain('nobody', 'x')),
                         'not-authorized')

    def test_invalid_mechanism(self):
        """§6.5.6 invalid-mechanism: an unknown name, a known one that was
        not offered (EXTERNAL, DIGEST-MD5), and no name at all."""
        for mechs in (('FOO-BAR', 'EXTERNAL'), ('DIGEST-MD5', None)):
            c = self.tls_stream()
            for mech in mechs:
                attr = " mechanism='%s'" % mech if mech else ''
                c.send("<auth xmlns='%s'%s>=</auth>" % (NS_SASL, attr))
                self.assertEqual(sasl_failure_condition(c.expect_element()),
                                 'invalid-mechanism', mech)

    def test_incorrect_encoding(self):
        """§6.5.4 incorrect-encoding: data that is not base64."""
        c = self.tls_stream()
        c.send("<auth xmlns='%s' mechanism='SCRAM-SHA-256'>!!not base64!!</auth>"
               % NS_SASL)
        self.assertEqual(sasl_failure_condition(c.expect_element()),
                         'incorrect-encoding')

    def test_incorrect_encoding_response(self):
        """incorrect-encoding for a <response/>."""
        c = self.tls_stream()
        c.send("<auth xmlns='%s' mechanism='SCRAM-SHA-256'/>" % NS_SASL)
        c.expect_element(q(NS_SASL, 'challenge'))
        c.send("<response xmlns='%s'>%%%%%%</response>" % NS_SASL)
        self.assertEqual(sasl_failure_condition(c.expect_element()),
                         'incorrect-encoding')

    def test_abort(self):
        """§6.4.4 abort: <failure><aborted/></failure>; an abort does not
        count as a failed attempt, and a new exchange then succeeds."""
        c = self.tls_stream()
        for _ in range(3):  # max_auth_failures is 3: aborts must not count
            c.send("<auth xmlns='%s' mechanism='SCRAM-SHA-256'/>" % NS_SASL)
            c.expect_element(q(NS_SASL, 'challenge'))
            c.send("<abort xmlns='%s'/>" % NS_SASL)
            self.assertEqual(sasl_failure_condition(c.expect_element()), 'aborted')
        self.assertSuccessThenBind(c, c.auth_scram('alice', 'alice-secret'))

    def test_malformed_request(self):
        """§6.5.7 malformed-request: a <response/> with no exchange, and a
        client-first that is not SCRAM syntax."""
        c = self.tls_stream()
        c.send("<response xmlns='%s'>%s</response>"
               % (NS_SASL, base64.b64encode(b'c=biws,r=x,p=y').decode()))
        self.assertEqual(sasl_failure_condition(c.expect_element()),
                         'malformed-request')
        c.send("<auth xmlns='%s' mechanism='SCRAM-SHA-1'>%s</auth>"
               % (NS_SASL, base64.b64encode(b'hello world').decode()))
        self.assertEqual(sasl_failure_condition(c.expect_element()),
                         'malformed-request')

    def test_malformed_plus_without_binding(self):
        """RFC 5802 §6: a -PLUS mechanism with the 'n' flag is malformed."""
        c = self.tls_stream(tls_max=TLS12)
        res = c.auth_scram('alice', 'alice-secret', 'SCRAM-SHA-256-PLUS', flag='n')
        self.assertEqual(sasl_failure_condition(res), 'malformed-request')

    def test_invalid_authzid(self):
        """§6.5.5 invalid-authzid: SCRAM for alice asking to act as bob."""
        c = self.tls_stream()
        res = c.auth_scram('alice', 'alice-secret', authzid='bob@localhost')
        self.assertEqual(sasl_failure_condition(res), 'invalid-authzid')
        res = c.auth_plain('alice', 'alice-secret', authzid='bob@localhost')
        self.assertEqual(sasl_failure_condition(res), 'invalid-authzid')

    def test_own_authzid(self):
        """An authzid that names the account itself is accepted (SCRAM)."""
        c = self.tls_stream()
        self.assertSuccessThenBind(
            c, c.auth_scram('alice', 'alice-secret', authzid='alice@localhost'))

    def test_max_auth_failures(self):
        """§6.4.5: after max_auth_failures (3) failed attempts the stream
        ends with policy-violation (after the third <failure/>)."""
        c = self.tls_stream()
        for i in range(3):
            res = c.auth_scram('alice', 'wrong%d' % i)
            self.assertEqual(sasl_failure_condition(res), 'not-authorized')
        c.expect_stream_error('policy-violation')

    def test_failures_counted_per_stream(self):
        """Two failures, then success: the count does not stop a client
        that finally gets it right."""
        c = self.tls_stream()
        for i in range(2):
            self.assertEqual(sasl_failure_condition(c.auth_plain('alice', 'x')),
                             'not-authorized')
        self.assertSuccessThenBind(c, c.auth_plain('alice', 'alice-secret'))


class SaslEncryption(harness.ServerTestCase):
    """PLAIN and encryption (6-2, RFC 6120 §6.4.2, §13.9.4)."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Server()
        cls.loop = Server(c2s={'allow_plain_loopback': True})

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.loop.stop()

    def test_auth_before_tls_when_required(self):
        """require_encryption: <auth/> before TLS gets
        <failure><encryption-required/></failure>."""
        c = self.client(self.srv)
        c.open_stream()
        self.assertEqual(c.mechanisms(), [])
        c.send("<auth xmlns='%s' mechanism='SCRAM-SHA-256'>%s</auth>"
               % (NS_SASL, base64.b64encode(b'n,,n=alice,r=abcdef').decode()))
        self.assertEqual(sasl_failure_condition(c.expect_element()),
                         'encryption-required')

    def test_plain_not_offered_in_clear(self):
        """6-2: on a plaintext loopback stream (allow_plain_loopback) PLAIN
        and -PLUS are not offered, STARTTLS is offered but optional, and
        <auth mechanism='PLAIN'/> gets encryption-required."""
        c = self.client(self.loop)
        c.open_stream()
        mechs = c.mechanisms()
        self.assertIn('SCRAM-SHA-256', mechs)
        self.assertNotIn('PLAIN', mechs)
        self.assertFalse([m for m in mechs if m.endswith('-PLUS')])
        st = c.feature(harness.NS_TLS, 'starttls')
        self.assertIsNotNone(st)
        self.assertIsNone(st.find(q(harness.NS_TLS, 'required')))
        self.assertIsNone(c.cb_types())
        res = c.auth_plain('alice', 'alice-secret')
        self.assertEqual(sasl_failure_condition(res), 'encryption-required')

    def test_scram_in_clear_on_loopback(self):
        """allow_plain_loopback: SCRAM works without TLS from 127.0.0.1."""
        c = self.track(harness.login(self.loop, transport='plain'))
        self.assertFalse(c.tls)
        self.assertEqual(c.sync(), [])


class SaslFailureDelay(harness.ServerTestCase):
    """Repeated failures from one address are answered ever more slowly
    (auth_failure_delay 0.5 s per recent failure)."""

    def setUp(self):
        super().setUp()
        # a server per test: the failure count per address lives in it
        self.srv = Server(sasl={'auth_failure_delay': 0.5,
                                'max_auth_failures': 5},
                          limits={'close_timeout': 0.5})

    def tearDown(self):
        super().tearDown()
        self.srv.stop()

    def test_failure_delay(self):
        c = self.client(self.srv)
        c.open_stream()
        c.starttls()
        c.open_stream()
        t0 = time.monotonic()
        self.assertEqual(sasl_failure_condition(c.auth_plain('alice', 'x')),
                         'not-authorized')
        first = time.monotonic() - t0
        t1 = time.monotonic()
        self.assertEqual(sasl_failure_condition(c.auth_plain('alice', 'y')),
                         'not-authorized')
        second = time.monotonic() - t1
        self.assertGreaterEqual(second, 0.4, 'first %.2f s, second %.2f s'
                                % (first, second))
        # the third waits for 2 recent failures: 1.0 s
        t2 = time.monotonic()
        self.assertEqual(sasl_failure_condition(c.auth_plain('alice', 'z')),
                         'not-authorized')
        self.assertGreaterEqual(time.monotonic() - t2, 0.9)

    def test_failure_delay_new_connection(self):
        """The slowdown is per address: after recent failures from
        127.0.0.1, the first attempt on a NEW connection is answered late
        too (>= auth_failure_delay x recent failures): reconnecting does not
        sidestep the delay."""
        for pw in ('a', 'b'):
            c = self.client(self.srv)
            c.open_stream()
            c.starttls()
            c.open_stream()
            c.auth_plain('alice', pw)
        c = self.client(self.srv)
        c.open_stream()
        c.starttls()
        c.open_stream()
        t0 = time.monotonic()
        self.assertEqual(sasl_failure_condition(c.auth_plain('alice', 'c')),
                         'not-authorized')
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)

    def test_failure_delay_pipelined(self):
        """Attempts pipelined in one packet are slowed down too: the second
        failure comes >= auth_failure_delay after the first: elements already
        read wait behind the held-back answer."""
        c = self.client(self.srv)
        c.open_stream()
        c.starttls()
        c.open_stream()
        data = base64.b64encode(b'\0alice\0wrong').decode()
        c.send(("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (NS_SASL, data)) * 2)
        c.expect_element(q(NS_SASL, 'failure'))
        t0 = time.monotonic()
        c.expect_element(q(NS_SASL, 'failure'))
        self.assertGreaterEqual(time.monotonic() - t0, 0.4)


if __name__ == '__main__':
    harness.main()
