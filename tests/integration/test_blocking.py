"""XEP-0191 Blocking Command over real sockets (issue 10): the list, block
and unblock with pushes to every resource that asked for the list, what a
blocked contact sees (the user offline, its messages refused; presence
again once unblocked) and what the
user gets for writing to a blocked JID, matching by full JID, persistence
across a restart, and the errors.

alice and bob have a subscription both (provisioned with starlingctl),
carol none.

Run: python3 test_blocking.py STARLINGD STARLINGCTL
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import NS_CLIENT, q, stanza_error_condition  # noqa: E402
from imtest import MESSAGE, PRESENCE, Session  # noqa: E402

NS_B = 'urn:xmpp:blocking'
NS_BE = 'urn:xmpp:blocking:errors'
IQ = q(NS_CLIENT, 'iq')


def items(el, verb):
    v = el.find(q(NS_B, verb))
    return sorted(i.get('jid') for i in v.findall(q(NS_B, 'item')))


def block(jids, verb='block'):
    return "<%s xmlns='%s'>%s</%s>" % (
        verb, NS_B, ''.join("<item jid='%s'/>" % j for j in jids), verb)


def is_push(verb):
    return lambda el: (el.tag == IQ and el.get('type') == 'set' and
                       el.find(q(NS_B, verb)) is not None)


class Blocking(harness.FreshServerTestCase):

    friends = (('alice@localhost', 'bob@localhost'),)

    def session(self, jid, resource, presence=True):
        s = Session(self.login(self.srv, jid, resource=resource))
        s.roster()
        if presence:
            s.presence(status='here')
        return s

    def test_block_and_unblock(self):
        alice = self.session('alice@localhost', 'one')
        alice2 = self.session('alice@localhost', 'two')
        bob = self.session('bob@localhost', 'b')
        bob.wait(lambda el: el.tag == PRESENCE and
                 el.get('from') == 'alice@localhost/two', "alice's presence")
        # §3.2: the empty list; both of alice's resources ask for it.
        for s in (alice, alice2):
            r = s.iq('get', "<blocklist xmlns='%s'/>" % NS_B)
            self.assertEqual(r.get('type'), 'result')
            self.assertIsNone(r.get('from'))
            self.assertEqual(items(r, 'blocklist'), [])
        # §3.3: block bob: result, a push to both resources, and bob sees
        # alice's resources go offline.
        r = alice.iq('set', block(['bob@localhost']))
        self.assertEqual(r.get('type'), 'result')
        for s in (alice, alice2):
            push = s.wait(is_push('block'), 'the block push')
            self.assertEqual(items(push, 'block'), ['bob@localhost'])
            s.send("<iq type='result' id='%s'/>" % push.get('id'))
        gone = set()
        while gone != {'alice@localhost/one', 'alice@localhost/two'}:
            p = bob.wait(lambda el: el.tag == PRESENCE and
                         el.get('type') == 'unavailable', 'unavailable')
            gone.add(p.get('from'))
        r = alice.iq('get', "<blocklist xmlns='%s'/>" % NS_B)
        self.assertEqual(items(r, 'blocklist'), ['bob@localhost'])
        # §3.6: alice writing to bob: not-acceptable with <blocked/>.
        alice.message('bob@localhost', 'hi', id_='m1')
        err = alice.wait(lambda el: el.tag == MESSAGE and
                         el.get('type') == 'error', 'the error')
        self.assertEqual(stanza_error_condition(err),
                         ('cancel', 'not-acceptable'))
        self.assertIsNotNone(err.find('%s/%s' % (q(NS_CLIENT, 'error'),
                                                  q(NS_BE, 'blocked'))))
        # §3.5: bob writing to alice: service-unavailable, as if she did
        # not exist; his vCard request too; his presence does not reach
        # her; her presence does not reach him.
        bob.message('alice@localhost', 'hello?', id_='m2')
        err = bob.wait(lambda el: el.tag == MESSAGE and
                       el.get('type') == 'error', 'the error')
        self.assertEqual(stanza_error_condition(err),
                         ('cancel', 'service-unavailable'))
        r = bob.iq('get', "<vCard xmlns='vcard-temp'/>", to='alice@localhost')
        self.assertEqual(stanza_error_condition(r),
                         ('cancel', 'service-unavailable'))
        for s in (alice, alice2, bob):
            s.drain()
        # Each sender's round trip ends before the receivers look, so
        # whatever its broadcast delivered is there by then.
        bob.presence(status='still here')
        heard = {s: [] for s in (alice, alice2, bob)}
        heard[bob] += bob.drain()
        alice.presence(status='busy')
        heard[alice] += alice.drain()
        for s, other in ((alice, 'bob@'), (alice2, 'bob@'), (bob, 'alice@')):
            heard[s] += s.drain()
            self.assertEqual([el.get('from') for el in heard[s]
                              if el.get('from', '').startswith(other)], [],
                             '%s heard from %s' % (s.jid, other))
        # A new session of bob probes alice: nothing comes back.
        bob2 = self.session('bob@localhost', 'b2')
        self.assertEqual([el for el in bob2.drain() if el.tag == PRESENCE and
                          el.get('from', '').startswith('alice@')], [])
        # §3.4: unblock: pushes, and messages flow again.
        r = alice.iq('set', block(['bob@localhost'], 'unblock'))
        self.assertEqual(r.get('type'), 'result')
        for s in (alice, alice2):
            push = s.wait(is_push('unblock'), 'the unblock push')
            self.assertEqual(items(push, 'unblock'), ['bob@localhost'])
        # §3.4: bob, subscribed, gets each resource's current presence.
        got = {}
        while len(got) < 2:
            p = bob.wait(lambda el: el.tag == PRESENCE and
                         el.get('from', '').startswith('alice@'),
                         "alice's presence again")
            self.assertIsNone(p.get('type'))
            got[p.get('from')] = p.findtext(q(NS_CLIENT, 'status'))
        self.assertEqual(got, {'alice@localhost/one': 'busy',
                               'alice@localhost/two': 'here'})
        bob.message('alice@localhost/one', 'back')
        m = alice.wait(lambda el: el.tag == MESSAGE, 'the message')
        self.assertEqual(m.findtext(q(NS_CLIENT, 'body')), 'back')

    def test_full_jid_persistence_unblock_all(self):
        """A full JID blocks that resource only; the list survives a
        restart; unblock without items empties it (§3.4)."""
        alice = self.session('alice@localhost', 'one')
        r = alice.iq('set', block(['bob@localhost/bad', 'Carol@Localhost']))
        self.assertEqual(r.get('type'), 'result')
        good = self.session('bob@localhost', 'good', presence=False)
        bad = self.session('bob@localhost', 'bad', presence=False)
        good.message('alice@localhost/one', 'from good')
        m = alice.wait(lambda el: el.tag == MESSAGE, 'the message')
        self.assertEqual(m.get('from'), 'bob@localhost/good')
        bad.message('alice@localhost/one', 'from bad')
        err = bad.wait(lambda el: el.tag == MESSAGE, 'the error')
        self.assertEqual(stanza_error_condition(err),
                         ('cancel', 'service-unavailable'))
        for s in (alice, good, bad):
            s.c.close()
        self.srv.stop()
        self.srv.start()
        alice = self.session('alice@localhost', 'one')
        r = alice.iq('get', "<blocklist xmlns='%s'/>" % NS_B)
        self.assertEqual(items(r, 'blocklist'),
                         ['bob@localhost/bad', 'carol@localhost'])
        carol = self.session('carol@localhost', 'c', presence=False)
        carol.message('alice@localhost', 'hi')
        err = carol.wait(lambda el: el.tag == MESSAGE, 'the error')
        self.assertEqual(stanza_error_condition(err),
                         ('cancel', 'service-unavailable'))
        r = alice.iq('set', "<unblock xmlns='%s'/>" % NS_B)
        self.assertEqual(r.get('type'), 'result')
        push = alice.wait(is_push('unblock'), 'the unblock-all push')
        self.assertEqual(items(push, 'unblock'), [])
        r = alice.iq('get', "<blocklist xmlns='%s'/>" % NS_B)
        self.assertEqual(items(r, 'blocklist'), [])
        carol.message('alice@localhost', 'now?')
        m = alice.wait(lambda el: el.tag == MESSAGE, 'the message')
        self.assertEqual(m.findtext(q(NS_CLIENT, 'body')), 'now?')

    def test_errors(self):
        """A block without items: bad-request; a JID that does not parse:
        jid-malformed; another account's list: forbidden."""
        alice = self.session('alice@localhost', 'e', presence=False)
        r = alice.iq('set', "<block xmlns='%s'/>" % NS_B)
        self.assertEqual(stanza_error_condition(r), ('modify', 'bad-request'))
        r = alice.iq('set', block(['a@b@c']))
        self.assertEqual(stanza_error_condition(r), ('modify', 'jid-malformed'))
        r = alice.iq('get', "<blocklist xmlns='%s'/>" % NS_B,
                     to='bob@localhost')
        self.assertEqual(stanza_error_condition(r), ('cancel', 'forbidden'))


if __name__ == '__main__':
    harness.main()
