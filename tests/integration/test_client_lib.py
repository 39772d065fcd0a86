"""libstarling's public API against starlingd: runs client_lib_check (a C
program that uses only include/starling/client.h, linked with the shared
libstarling) against a harness server. See client_lib_check.c for the
steps: connect, message with subject and thread, automatic
service-unavailable for unhandled IQs, IQ results, IQ timeouts, presence,
XEP-0199 pings from the server answered while idle, polite disconnect with every handle closed."""

import os
import subprocess

from harness import Server, ServerTestCase, main

CHECK = os.environ.get('CLIENT_LIB_CHECK')


class ClientLibTest(ServerTestCase):
    def test_public_api(self):
        # Short idle and ping timeouts: the library must answer the
        # server's XEP-0199 pings (step 8).
        srv = Server(limits={'idle_timeout': 1.0, 'ping_timeout': 1.0})
        try:
            env = dict(os.environ, ALICE_PW=srv.users['alice@localhost'],
                       BOB_PW=srv.users['bob@localhost'])
            r = subprocess.run([CHECK, str(srv.port), srv.cert], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn('all steps passed', r.stderr)
        finally:
            srv.stop()


if __name__ == '__main__':
    if not CHECK:
        raise SystemExit('set CLIENT_LIB_CHECK to the client_lib_check binary')
    main()
