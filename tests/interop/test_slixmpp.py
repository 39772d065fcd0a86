"""Interop: slixmpp (a client nobody here wrote) against starlingd.

Two slixmpp ClientXMPP instances log in over STARTTLS with the test
certificate, exchange a chat message and an IQ (XEP-0199 ping from A to
B's full JID, answered by B's slixmpp), and log out.

slixmpp 1.8 knows only the tls-unique channel binding and computes it even
on TLS 1.3 (where it does not exist), and sends the 'y' flag when it picks a
non-PLUS SCRAM while it has binding data. So:
  - over TLS 1.2 it picks SCRAM-SHA-256-PLUS with tls-unique;
  - with sasl.offer_plus = false it picks SCRAM-SHA-256 with 'y', which the
    server accepts because it did not offer -PLUS.
PLAIN is switched off in the server so that a silent fallback to it cannot
hide a SCRAM failure; the mechanism used is asserted.

Run: /usr/bin/python3 test_slixmpp.py STARLINGD STARLINGCTL
"""
import asyncio
import logging
import os
import ssl
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
import harness  # noqa: E402

try:
    import slixmpp
except ImportError:  # pragma: no cover
    slixmpp = None

TIMEOUT = 30


class Bot(slixmpp.ClientXMPP if slixmpp else object):
    def __init__(self, jid, password, tls_max=None):
        super().__init__(jid, password)
        self.ca_certs = harness.test_certificate()[0]
        if tls_max is not None:
            self.ssl_context.maximum_version = tls_max
        self.register_plugin('xep_0199')  # answers pings, sends them
        self.loop_ = asyncio.get_event_loop()
        self.started = self.loop_.create_future()
        self.messages = asyncio.Queue()
        self.add_event_handler('session_start', self._on_start)
        self.add_event_handler('failed_auth', self._on_failed)
        self.add_event_handler('failed_all_auth', self._on_failed)
        self.add_event_handler('message', self._on_message)
        self.add_event_handler('disconnected', self._on_disconnected)

    def _on_start(self, _event):
        if not self.started.done():
            self.started.set_result(True)

    def _on_failed(self, _event):
        if not self.started.done():
            self.started.set_exception(AssertionError(
                'slixmpp: authentication failed (%s)' % self.sasl_mech()))

    def _on_disconnected(self, _event):
        if not self.started.done():
            self.started.set_exception(AssertionError('slixmpp: disconnected '
                                                      'before the session started'))

    def _on_message(self, msg):
        self.messages.put_nowait(msg)

    def sasl_mech(self):
        mech = getattr(self.plugin['feature_mechanisms'], 'mech', None)
        return getattr(mech, 'name', None)


@unittest.skipIf(slixmpp is None, 'slixmpp is not installed')
class Slixmpp(unittest.TestCase):

    def run_pair(self, server, tls_max, want_mech, want_flag):
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(asyncio.wait_for(
                self.scenario(server, tls_max, want_mech, want_flag), TIMEOUT))
        finally:
            # slixmpp leaves tasks behind (its filter loop): end them here
            pending = asyncio.all_tasks(loop)
            for t in pending:
                t.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()
            asyncio.set_event_loop(None)

    async def scenario(self, server, tls_max, want_mech, want_flag):
        a = Bot('alice@localhost/slix-a', server.users['alice@localhost'], tls_max)
        b = Bot('bob@localhost/slix-b', server.users['bob@localhost'], tls_max)
        try:
            for bot in (a, b):
                bot.connect(('127.0.0.1', server.port))
            await asyncio.gather(a.started, b.started)
            self.assertEqual(str(a.boundjid), 'alice@localhost/slix-a')
            self.assertEqual(str(b.boundjid), 'bob@localhost/slix-b')
            for bot in (a, b):
                self.assertEqual(bot.sasl_mech(), want_mech)
                gs2 = bot.plugin['feature_mechanisms'].mech.gs2_header
                self.assertTrue(gs2.startswith(want_flag), gs2)

            # a chat message, A to B's full JID
            a.send_message(mto=b.boundjid.full, mbody='hello from slixmpp',
                           mtype='chat')
            msg = await asyncio.wait_for(b.messages.get(), 10)
            self.assertEqual(msg['body'], 'hello from slixmpp')
            self.assertEqual(msg['type'], 'chat')
            self.assertEqual(msg['from'].full, a.boundjid.full)

            # an IQ round trip: XEP-0199 ping, answered by B's slixmpp
            rtt = await a.plugin['xep_0199'].ping(jid=b.boundjid.full, timeout=10)
            self.assertIsNotNone(rtt)
            # and B to A
            await b.plugin['xep_0199'].ping(jid=a.boundjid.full, timeout=10)
        finally:
            for bot in (a, b):
                fut = bot.disconnect()
                if fut is not None:
                    try:
                        await asyncio.wait_for(fut, 5)
                    except (asyncio.TimeoutError, Exception):
                        pass

    def test_scram_plus_tls_unique_tls12(self):
        """TLS 1.2: slixmpp picks SCRAM-SHA-256-PLUS with tls-unique."""
        srv = harness.Server(sasl={'plain': False})
        try:
            self.run_pair(srv, ssl.TLSVersion.TLSv1_2, 'SCRAM-SHA-256-PLUS',
                          b'p=tls-unique,')
        finally:
            srv.stop()
        self.assertNotIn('authentication failed', srv.log_text())

    def test_scram_y_flag_offer_plus_off(self):
        """offer_plus = false (TLS 1.3): slixmpp picks SCRAM-SHA-256 and
        sends the 'y' flag, which is honest when -PLUS is not offered."""
        srv = harness.Server(sasl={'plain': False, 'offer_plus': False})
        try:
            self.run_pair(srv, None, 'SCRAM-SHA-256', b'y,')
        finally:
            srv.stop()
        self.assertNotIn('authentication failed', srv.log_text())


if __name__ == '__main__':
    logging.basicConfig(level=logging.WARNING)
    harness.main()
