"""libstarling's blocking layer (starling_sync_*) against starlingd: runs
client_sync_check (a C program on the public API) against a harness server."""

import os
import subprocess

from harness import Server, ServerTestCase, main

CHECK = os.environ.get('CLIENT_SYNC_CHECK')


class SyncTest(ServerTestCase):
    def test_blocking_api(self):
        # Offline storage off: a message to a user with no available
        # resource is then refused (service-unavailable), the error path
        # this exercises.
        srv = Server(top={'modules': ['disco', 'ping', 'version', 'time']})
        try:
            env = dict(os.environ, ALICE_PW=srv.users['alice@localhost'],
                       BOB_PW=srv.users['bob@localhost'])
            r = subprocess.run([CHECK, str(srv.port), srv.cert], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn('all checks passed', r.stderr)
        finally:
            srv.stop()


if __name__ == '__main__':
    if not CHECK:
        raise SystemExit('set CLIENT_SYNC_CHECK to the client_sync_check binary')
    main()
