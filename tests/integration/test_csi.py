"""XEP-0352 client state indication over real sockets: the feature after
authentication; while alice's client is inactive, her contact's presence
changes wait and collapse to the latest, typing notifications are
dropped, and a message with a body goes at once — after the presence that
waited; <active/> sends what waited; with stream management the stanzas
that waited are counted when they go.

Run: python3 test_csi.py STARLINGD STARLINGCTL
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import NS_CLIENT, q  # noqa: E402

NS_CSI = 'urn:xmpp:csi:0'
NS_CHATSTATES = 'http://jabber.org/protocol/chatstates'
PRESENCE = q(NS_CLIENT, 'presence')
MESSAGE = q(NS_CLIENT, 'message')


def quiet(c, seconds=0.4):
    """Nothing arrives for a while (no sync: its answer would flush)."""
    ev = c.next_event(timeout=seconds)
    assert ev is None, ev


class ClientState(harness.FreshServerTestCase):

    friends = (('alice@localhost', 'bob@localhost'),)

    def pair(self):
        alice = self.login(self.srv, 'alice@localhost', resource='phone')
        alice.send("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/>"
                   "</iq>")
        alice.expect_stanza('iq')
        alice.presence()
        bob = self.login(self.srv, 'bob@localhost', resource='pc')
        bob.send("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/>"
                 "</iq>")
        bob.expect_stanza('iq')
        bob.presence()
        # alice sees bob arrive.
        p = alice.expect_stanza('presence')
        self.assertEqual(p.get('from'), bob.jid)
        return alice, bob

    def test_feature(self):
        c = self.track(harness.Client(self.srv.port))
        c.open_stream()
        c.starttls()
        c.open_stream()
        self.assertIsNone(c.feature(NS_CSI, 'csi'))
        c.auth_scram('alice', self.srv.users['alice@localhost'])
        c.open_stream()
        self.assertIsNotNone(c.feature(NS_CSI, 'csi'))

    def test_inactive_then_message(self):
        alice, bob = self.pair()
        alice.send("<inactive xmlns='%s'/>" % NS_CSI)
        # The server has read it before bob's stanzas come (two sockets).
        self.assertEqual(alice.sync(), [])
        for show in ('away', 'xa', 'dnd'):
            bob.send("<presence><show>%s</show></presence>" % show)
        bob.sync()
        bob.send("<message to='%s' type='chat'><composing xmlns='%s'/>"
                 "</message>" % (alice.jid, NS_CHATSTATES))
        bob.sync()
        quiet(alice)
        bob.send("<message to='%s' type='chat'><body>wake up</body>"
                 "<active xmlns='%s'/></message>" % (alice.jid, NS_CHATSTATES))
        p = alice.expect_element()
        self.assertEqual(p.tag, PRESENCE)
        self.assertEqual(p.findtext(q(NS_CLIENT, 'show')), 'dnd')
        m = alice.expect_element()
        self.assertEqual((m.tag, m.findtext(q(NS_CLIENT, 'body'))),
                         (MESSAGE, 'wake up'))
        quiet(alice)

    def test_active_flushes(self):
        alice, bob = self.pair()
        alice.send("<inactive xmlns='%s'/>" % NS_CSI)
        # The server has read it before bob's stanzas come (two sockets).
        self.assertEqual(alice.sync(), [])
        bob.send("<presence><status>lunch</status></presence>")
        bob.sync()
        quiet(alice)
        alice.send("<active xmlns='%s'/>" % NS_CSI)
        p = alice.expect_stanza('presence')
        self.assertEqual(p.findtext(q(NS_CLIENT, 'status')), 'lunch')
        # Active again: presence goes at once.
        bob.send("<presence><status>back</status></presence>")
        p = alice.expect_stanza('presence')
        self.assertEqual(p.findtext(q(NS_CLIENT, 'status')), 'back')

    def test_with_stream_management(self):
        """What waited is counted when it goes: the client's h matches."""
        alice, bob = self.pair()
        alice.send("<enable xmlns='urn:xmpp:sm:3'/>")
        alice.expect_element(q('urn:xmpp:sm:3', 'enabled'))
        alice.send("<inactive xmlns='%s'/>" % NS_CSI)
        # The server has read it before bob's stanzas come (two sockets).
        self.assertEqual(alice.sync(), [])
        bob.send("<presence><show>away</show></presence>")
        bob.sync()
        alice.send("<active xmlns='%s'/>" % NS_CSI)
        alice.expect_stanza('presence')
        # Received since enable: the sync's result and the presence; sent:
        # the sync.
        alice.send("<a xmlns='urn:xmpp:sm:3' h='2'/>")
        alice.send("<r xmlns='urn:xmpp:sm:3'/>")
        a = alice.expect_element(q('urn:xmpp:sm:3', 'a'))
        self.assertEqual(a.get('h'), '1')
        self.assertEqual(alice.sync(), [])


if __name__ == '__main__':
    harness.main()
