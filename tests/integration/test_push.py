"""XEP-0357 push notifications over real sockets, with an XEP-0114
component as the app server: enable (with publish-options), the account's
disco#info feature; a message for an account with no session, and one for
a session waiting to be resumed (XEP-0198), notify the app server with the
summary form (sender, count, no body unless configured); a session that
reads its stream causes none; disable; an app server's error removes the
registration.

Run: python3 test_push.py STARLINGD STARLINGCTL
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import iq, q  # noqa: E402
from test_component import Component  # noqa: E402
from test_sm import NS_SM, reset  # noqa: E402

NS_PUSH = 'urn:xmpp:push:0'
NS_PUBSUB = 'http://jabber.org/protocol/pubsub'
NS_DATA = 'jabber:x:data'
NS_INFO = 'http://jabber.org/protocol/disco#info'

APP = '''
component = {
    listen = ( { address = "127.0.0.1"; port = 0; } );
    domains = ( { domain = "push.localhost"; secret = "s"; } );
};
'''


def fields(x):
    return {f.get('var'): f.findtext(q(NS_DATA, 'value'))
            for f in x.findall(q(NS_DATA, 'field'))}


class Push(harness.FreshServerTestCase):

    server_args = {'raw': APP, 'c2s': {'resume_timeout': 30.0}}

    def setUp(self):
        super().setUp()
        self.app = Component(self.srv, 'push.localhost', 's')

    def tearDown(self):
        self.app.close()
        super().tearDown()

    def enable(self, c, node='n1', secret='hush'):
        r = iq(c, None, "<enable xmlns='%s' jid='push.localhost' node='%s'>"
               "<x xmlns='%s' type='submit'><field var='FORM_TYPE'><value>"
               "http://jabber.org/protocol/pubsub#publish-options</value>"
               "</field><field var='secret'><value>%s</value></field></x>"
               "</enable>" % (NS_PUSH, node, NS_DATA, secret), 'set')
        self.assertEqual(r.get('type'), 'result')

    def notification(self, answer='result'):
        """The next notification the app server gets; answered."""
        el = self.app.expect('iq', timeout=10)
        self.assertEqual(el.get('type'), 'set')
        self.app.send("<iq type='%s' id='%s' from='push.localhost' to='%s'/>"
                      % (answer, el.get('id'), el.get('from')))
        return el

    def test_offline_account_notifies(self):
        bob = self.login(self.srv, 'bob@localhost', resource='phone')
        info = iq(bob, 'bob@localhost', "<query xmlns='%s'/>" % NS_INFO)
        feats = {f.get('var') for f in info.iter(q(NS_INFO, 'feature'))}
        self.assertIn(NS_PUSH, feats)
        self.enable(bob)
        bob.close_stream()
        alice = self.login(self.srv, 'alice@localhost', resource='a')
        alice.send("<message to='bob@localhost' type='chat'><body>secret "
                   "words</body></message>")
        el = self.notification()
        self.assertEqual(el.get('from'), 'bob@localhost')
        pub = el.find('%s/%s' % (q(NS_PUBSUB, 'pubsub'),
                                 q(NS_PUBSUB, 'publish')))
        self.assertEqual(pub.get('node'), 'n1')
        x = pub.find('%s/%s/%s' % (q(NS_PUBSUB, 'item'),
                                   q(NS_PUSH, 'notification'),
                                   q(NS_DATA, 'x')))
        f = fields(x)
        self.assertEqual(f['FORM_TYPE'], 'urn:xmpp:push:summary')
        self.assertEqual(f['message-count'], '1')
        self.assertEqual(f['last-message-sender'], alice.jid)
        self.assertNotIn('last-message-body', f)
        po = el.find('%s/%s/%s' % (q(NS_PUBSUB, 'pubsub'),
                                   q(NS_PUBSUB, 'publish-options'),
                                   q(NS_DATA, 'x')))
        self.assertEqual(fields(po)['secret'], 'hush')
        # Chat states alone wake nobody.
        alice.send("<message to='bob@localhost' type='chat'><composing "
                   "xmlns='http://jabber.org/protocol/chatstates'/></message>")
        alice.sync()
        self.assertIsNone(self.app.c.next_event(timeout=0.5))

        def count():
            el = self.notification()
            return fields(el.find('.//%s' % q(NS_DATA, 'x')))['message-count']
        # message-count: the messages since bob last read them (§5).
        alice.send("<message to='bob@localhost' type='chat'><body>two"
                   "</body></message>")
        self.assertEqual(count(), '2')
        # bob comes online (his offline messages are delivered): the
        # count starts again.
        bob = self.login(self.srv, 'bob@localhost', resource='phone')
        bob.presence()
        bob.send("<presence type='unavailable'/>")
        bob.sync()
        alice.send("<message to='bob@localhost' type='chat'><body>three"
                   "</body></message>")
        self.assertEqual(count(), '1')

    def test_listening_session_no_notification(self):
        bob = self.login(self.srv, 'bob@localhost', resource='phone')
        self.enable(bob)
        bob.presence()
        alice = self.login(self.srv, 'alice@localhost', resource='a')
        alice.send("<message to='bob@localhost' type='chat'><body>hi</body>"
                   "</message>")
        bob.expect_stanza('message')
        self.assertIsNone(self.app.c.next_event(timeout=0.5))

    def test_hibernating_session_notifies(self):
        bob = self.login(self.srv, 'bob@localhost', resource='phone')
        self.enable(bob)
        bob.presence()
        bob.send("<enable xmlns='%s' resume='true'/>" % NS_SM)
        bob.expect_element(q(NS_SM, 'enabled'))
        reset(bob)
        self.srv.wait_log(r'session kept')
        alice = self.login(self.srv, 'alice@localhost', resource='a')
        alice.send("<message to='bob@localhost/phone' type='chat'><body>wake"
                   "</body></message>")
        el = self.notification()
        self.assertEqual(el.get('to'), 'push.localhost')

    def test_disable_and_error(self):
        bob = self.login(self.srv, 'bob@localhost', resource='phone')
        self.enable(bob, node='a')
        self.enable(bob, node='b')
        r = iq(bob, None, "<disable xmlns='%s' jid='push.localhost' node='a'/>"
               % NS_PUSH, 'set')
        self.assertEqual(r.get('type'), 'result')
        bob.close_stream()
        alice = self.login(self.srv, 'alice@localhost', resource='a')
        alice.send("<message to='bob@localhost' type='chat'><body>1</body>"
                   "</message>")
        el = self.notification(answer='error')
        self.assertEqual(el.find('.//' + q(NS_PUBSUB, 'publish')).get('node'),
                         'b')
        self.srv.wait_log(r'registration "push.localhost b" of bob@localhost '
                          r'removed')
        alice.send("<message to='bob@localhost' type='chat'><body>2</body>"
                   "</message>")
        alice.sync()
        self.assertIsNone(self.app.c.next_event(timeout=0.5))

    def test_bad_requests(self):
        bob = self.login(self.srv, 'bob@localhost', resource='phone')
        for payload in ("<enable xmlns='%s' jid='push.localhost'/>" % NS_PUSH,
                        "<enable xmlns='%s' node='x'/>" % NS_PUSH):
            r = iq(bob, None, payload, 'set')
            self.assertEqual(harness.stanza_error_condition(r),
                             ('modify', 'bad-request'))


if __name__ == '__main__':
    harness.main()
