"""libstarling's `reconnect` option (RFC 6120 §3.3, feature set 3.1-3)
against starlingd: runs client_reconnect_check (a C program on the public
include/starling/client.h, linked with the shared libstarling) against a
harness server whose resource conflict policy is "new wins". See
client_reconnect_check.c for the steps: a client kicked by a conflict
reconnects silently after a backoff, re-binds its resource (kicking the
intruder), re-sends its presence and goes on sending; a
starling_client_disconnect() during the backoff reports `disconnected`
(err NULL) and stops the reconnection; every handle is closed at the end."""

import os
import subprocess
import sys

from harness import Server, ServerTestCase, main

CHECK = os.environ.get('CLIENT_RECONNECT_CHECK')


class ClientReconnectTest(ServerTestCase):
    def test_reconnect_after_conflict(self):
        srv = Server(c2s={'resource_conflict': 'new-wins'})
        try:
            env = dict(os.environ, ALICE_PW=srv.users['alice@localhost'],
                       BOB_PW=srv.users['bob@localhost'])
            r = subprocess.run([CHECK, str(srv.port), srv.cert], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, timeout=60)
            sys.stderr.write(r.stderr)  # the program's steps, for the log
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn('all steps passed', r.stderr)
            # The server saw what the program inferred: A replaced by B,
            # then B replaced by A's new connection.
            self.assertGreaterEqual(
                len([l for l in srv.lines if 'resource conflict' in l]), 2,
                srv.log_text())
        finally:
            srv.stop()


if __name__ == '__main__':
    if not CHECK:
        raise SystemExit('set CLIENT_RECONNECT_CHECK to the '
                         'client_reconnect_check binary')
    main()
