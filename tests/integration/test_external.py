"""SASL EXTERNAL with a TLS client certificate, end to end (feature set 6-3).

The server trusts a test CA (`tls.client_ca`) and offers EXTERNAL only to a
client that presented a certificate that verifies; the account is the
certificate's XmppAddr (RFC 6120 §13.7.1.4, XEP-0178). Certificates are
made with the openssl CLI, so the XmppAddr encoding is OpenSSL's, not ours.
"""

import base64
import os
import re
import ssl
import subprocess

from harness import (NS_SASL, OPENSSL, ServerTestCase, Server, _mkdtemp,
                     main, q, sasl_failure_condition)


def make_ca(d, name):
    key, crt = os.path.join(d, name + '.key'), os.path.join(d, name + '.crt')
    subprocess.run([OPENSSL, 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                    'ec_paramgen_curve:P-256', '-nodes', '-keyout', key,
                    '-out', crt, '-subj', '/CN=' + name, '-days', '2',
                    '-addext', 'basicConstraints=critical,CA:TRUE',
                    '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
                   check=True, capture_output=True)
    return crt, key


def make_client_cert(d, ca, name, xmppaddrs):
    ca_crt, ca_key = ca
    key = os.path.join(d, name + '.key')
    csr = os.path.join(d, name + '.csr')
    crt = os.path.join(d, name + '.crt')
    ext = os.path.join(d, name + '.ext')
    with open(ext, 'w') as f:
        sans = ','.join('otherName:1.3.6.1.5.5.7.8.5;UTF8:' + a
                        for a in xmppaddrs)
        f.write('extendedKeyUsage=clientAuth\n')
        if sans:
            f.write('subjectAltName=' + sans + '\n')
    subprocess.run([OPENSSL, 'req', '-newkey', 'ec', '-pkeyopt',
                    'ec_paramgen_curve:P-256', '-nodes', '-keyout', key,
                    '-out', csr, '-subj', '/CN=' + name],
                   check=True, capture_output=True)
    subprocess.run([OPENSSL, 'x509', '-req', '-in', csr, '-CA', ca_crt,
                    '-CAkey', ca_key, '-CAcreateserial', '-out', crt,
                    '-days', '2', '-extfile', ext],
                   check=True, capture_output=True)
    return crt, key


class ExternalTest(ServerTestCase):
    @classmethod
    def setUpClass(cls):
        d = _mkdtemp()
        cls.ca = make_ca(d, 'testca')
        cls.rogue = make_ca(d, 'rogueca')
        cls.alice = make_client_cert(d, cls.ca, 'alice', ['alice@localhost'])
        cls.two = make_client_cert(d, cls.ca, 'two',
                                   ['alice@localhost', 'bob@localhost'])
        cls.mallory = make_client_cert(d, cls.ca, 'mallory',
                                       ['mallory@localhost'])
        cls.forged = make_client_cert(d, cls.rogue, 'forged',
                                      ['alice@localhost'])
        cls.server = Server(sasl={'external': True}, start=False)
        # The harness writes `tls = { cert; key; };`: add the client CA.
        with open(cls.server.conf) as f:
            conf = f.read()
        conf = re.sub(r'tls = \{ (.*) \};',
                      lambda m: 'tls = { %s client_ca = "%s"; };'
                      % (m.group(1), cls.ca[0]), conf)
        with open(cls.server.conf, 'w') as f:
            f.write(conf)
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def connect(self, cert):
        c = self.client(self.server)
        c.open_stream()
        ctx = ssl.create_default_context(cafile=self.server.cert)
        if cert is not None:
            ctx.load_cert_chain(cert[0], cert[1])
        c.starttls(ctx=ctx)
        c.open_stream()
        return c

    def external(self, c, authzid=''):
        data = base64.b64encode(authzid.encode()).decode() if authzid else '='
        c.send("<auth xmlns='%s' mechanism='EXTERNAL'>%s</auth>"
               % (NS_SASL, data))
        return c.expect_element()

    def test_external_offered_and_succeeds(self):
        """6-3: a verified certificate with one XmppAddr logs in."""
        c = self.connect(self.alice)
        self.assertIn('EXTERNAL', c.mechanisms())
        el = self.external(c)
        self.assertEqual(el.tag, q(NS_SASL, 'success'))
        c.open_stream()
        self.assertEqual(c.bind('cert').split('/')[0], 'alice@localhost')

    def test_external_with_authzid(self):
        c = self.connect(self.alice)
        el = self.external(c, 'alice@localhost')
        self.assertEqual(el.tag, q(NS_SASL, 'success'))

    def test_external_authzid_not_in_certificate(self):
        c = self.connect(self.alice)
        el = self.external(c, 'bob@localhost')
        self.assertEqual(el.tag, q(NS_SASL, 'failure'))
        self.assertIn(sasl_failure_condition(el),
                      ('not-authorized', 'invalid-authzid'))

    def test_two_identities_need_authzid(self):
        """XEP-0178: with several XmppAddrs the client must say which."""
        c = self.connect(self.two)
        el = self.external(c)
        self.assertEqual(el.tag, q(NS_SASL, 'failure'))
        self.assertEqual(sasl_failure_condition(el), 'invalid-authzid')
        el = self.external(c, 'bob@localhost')
        self.assertEqual(el.tag, q(NS_SASL, 'success'))

    def test_no_account(self):
        c = self.connect(self.mallory)
        el = self.external(c)
        self.assertEqual(el.tag, q(NS_SASL, 'failure'))
        self.assertEqual(sasl_failure_condition(el), 'not-authorized')

    def test_untrusted_certificate_not_offered(self):
        """A certificate from another CA: the handshake works, EXTERNAL is
        not offered, and asking for it is invalid-mechanism."""
        c = self.connect(self.forged)
        self.assertNotIn('EXTERNAL', c.mechanisms())
        el = self.external(c)
        self.assertEqual(sasl_failure_condition(el), 'invalid-mechanism')

    def test_no_certificate_not_offered(self):
        c = self.connect(None)
        self.assertNotIn('EXTERNAL', c.mechanisms())
        self.assertIn('SCRAM-SHA-256', c.mechanisms())


if __name__ == '__main__':
    main()
