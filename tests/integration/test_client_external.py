"""SASL EXTERNAL from libstarling (feature set 6-3, XEP-0178): runs
client_external_check (a C program on the public include/starling/client.h)
with a client certificate and no password against a starlingd that trusts
a test CA (`tls.client_ca`, `sasl.external`). The certificates are made
with the openssl CLI by test_external.py's helpers: the XmppAddr encoding
is OpenSSL's, not ours."""

import os
import re
import subprocess
import sys

from harness import Server, ServerTestCase, _mkdtemp, main
from test_external import make_ca, make_client_cert

CHECK = os.environ.get('CLIENT_EXTERNAL_CHECK')


class ClientExternalTest(ServerTestCase):
    @classmethod
    def setUpClass(cls):
        d = _mkdtemp()
        cls.ca = make_ca(d, 'testca')
        cls.rogue = make_ca(d, 'rogueca')
        cls.alice = make_client_cert(d, cls.ca, 'alice', ['alice@localhost'])
        cls.forged = make_client_cert(d, cls.rogue, 'forged',
                                      ['alice@localhost'])
        cls.server = Server(sasl={'external': True}, start=False)
        # The harness writes `tls = { cert; key; };`: add the client CA
        # (as test_external.py does).
        with open(cls.server.conf) as f:
            conf = f.read()
        conf, n = re.subn(r'tls = \{ (.*) \};',
                          lambda m: 'tls = { %s client_ca = "%s"; };'
                          % (m.group(1), cls.ca[0]), conf)
        assert n == 1, conf
        with open(cls.server.conf, 'w') as f:
            f.write(conf)
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def run_check(self, cert, expect):
        r = subprocess.run([CHECK, str(self.server.port), self.server.cert,
                            cert[0], cert[1], expect],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=60)
        sys.stderr.write(r.stderr)  # the program's steps, for the log
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('all steps passed', r.stderr)
        return r.stderr

    def test_external_login(self):
        """A certificate from the trusted CA with XmppAddr alice@localhost
        and no password: EXTERNAL, bound as alice@localhost/..."""
        out = self.run_check(self.alice, 'ok')
        self.assertIn('with EXTERNAL', out)

    def test_untrusted_certificate(self):
        """A certificate from another CA: the server does not offer
        EXTERNAL, there is no password, so the client gives up with an
        authentication error that says why."""
        out = self.run_check(self.forged, 'no-mechanism')
        m = re.search(r'^description: (.*)$', out, re.M)
        self.assertIsNotNone(m, out)
        desc = m.group(1)
        self.assertIn('EXTERNAL', desc)
        self.assertIn('password', desc)


if __name__ == '__main__':
    if not CHECK:
        raise SystemExit('set CLIENT_EXTERNAL_CHECK to the '
                         'client_external_check binary')
    main()
