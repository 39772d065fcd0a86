"""XEP-0280 Message Carbons over real sockets: enable and disable, received
copies for the resources a message does not reach, sent copies for the
sender's other resources, and the messages that are never copied.

alice has three resources: one (priority 5, carbons on), two (priority 1,
carbons on), three (priority 1, carbons off); bob writes to her.

Run: python3 test_carbons.py STARLINGD STARLINGCTL
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import NS_CLIENT, q  # noqa: E402
from imtest import MESSAGE, Session  # noqa: E402

NS_C = 'urn:xmpp:carbons:2'
NS_F = 'urn:xmpp:forward:0'
BODY = q(NS_CLIENT, 'body')


def copied(el, wrap):
    """The forwarded message inside a carbon of kind `wrap`, or None."""
    w = el.find(q(NS_C, wrap))
    if w is None:
        return None
    return w.find('%s/%s' % (q(NS_F, 'forwarded'), MESSAGE))


class Carbons(harness.SharedServerTestCase):

    def setUp(self):
        super().setUp()
        self.one = self.session('one', 5, True)
        self.two = self.session('two', 1, True)
        self.three = self.session('three', 1, False)
        self.bob = Session(self.login(self.srv, 'bob@localhost',
                                      resource='b'))
        self.bob.presence()
        self.settle()

    def session(self, resource, priority, enable):
        s = Session(self.login(self.srv, 'alice@localhost',
                               resource=resource))
        s.presence(priority=priority)
        if enable:
            r = s.iq('set', "<enable xmlns='%s'/>" % NS_C)
            self.assertEqual(r.get('type'), 'result')
            self.assertIsNone(r.get('from'))
        return s

    def settle(self):
        for s in (self.one, self.two, self.three, self.bob):
            s.drain()

    def messages(self, s):
        return [el for el in s.drain() if el.tag == MESSAGE]

    def test_received(self):
        """§5: bob's chat to alice's bare JID reaches one (the highest
        priority); two gets a received copy from alice's bare JID with
        the original inside; three (carbons off) nothing. To two's full
        JID: one gets the copy."""
        self.bob.message('alice@localhost', 'to bare', id_='r1')
        self.bob.drain()
        got = self.messages(self.one)
        self.assertEqual([m.findtext(BODY) for m in got], ['to bare'])
        [c] = self.messages(self.two)
        self.assertEqual((c.get('from'), c.get('to'), c.get('type')),
                         ('alice@localhost', 'alice@localhost/two', 'chat'))
        inner = copied(c, 'received')
        self.assertEqual((inner.get('from'), inner.get('to'), inner.get('id'),
                          inner.findtext(BODY)),
                         ('bob@localhost/b', 'alice@localhost', 'r1',
                          'to bare'))
        self.assertEqual(self.messages(self.three), [])
        self.bob.message('alice@localhost/two', 'to two')
        self.bob.drain()
        self.assertEqual([m.findtext(BODY) for m in self.messages(self.two)],
                         ['to two'])
        [c] = self.messages(self.one)
        self.assertEqual(copied(c, 'received').findtext(BODY), 'to two')
        self.assertEqual(self.messages(self.three), [])

    def test_sent(self):
        """§6: what one sends to bob: two gets a sent copy; three and one
        itself nothing; bob the original."""
        self.one.message('bob@localhost', 'from one', id_='s1')
        self.one.drain()
        self.assertEqual([m.findtext(BODY) for m in self.messages(self.bob)],
                         ['from one'])
        [c] = self.messages(self.two)
        inner = copied(c, 'sent')
        self.assertEqual((inner.get('from'), inner.get('to'),
                          inner.findtext(BODY)),
                         ('alice@localhost/one', 'bob@localhost', 'from one'))
        self.assertEqual(self.messages(self.three), [])
        self.assertEqual(self.messages(self.one), [])

    def test_not_copied(self):
        """§7 <private/>, XEP-0334 <no-copy/>, a headline, a normal
        message without a body: no copies anywhere."""
        for extra, type_, body in (
                ("<private xmlns='%s'/>" % NS_C, 'chat', 'x'),
                ("<no-copy xmlns='urn:xmpp:hints'/>", 'chat', 'x'),
                ('', 'headline', 'x'),
                ("<active xmlns='http://jabber.org/protocol/chatstates'/>",
                 'normal', None)):
            if body is None:
                self.bob.send("<message to='alice@localhost' type='%s'>%s"
                              "</message>" % (type_, extra))
            else:
                self.bob.message('alice@localhost', body, type_=type_,
                                 extra=extra)
            self.bob.drain()
            if body is None:
                self.one.send("<message to='bob@localhost' type='%s'>%s"
                              "</message>" % (type_, extra))
            else:
                self.one.message('bob@localhost', 'y', type_=type_,
                                 extra=extra)
            self.one.drain()
            for s in (self.two, self.three):
                self.assertEqual([m for m in self.messages(s)
                                  if m.find(q(NS_C, 'received')) is not None
                                  or m.find(q(NS_C, 'sent')) is not None],
                                 [], (extra, type_))
            self.settle()

    def test_disable(self):
        """§4: after disable, no more copies."""
        r = self.two.iq('set', "<disable xmlns='%s'/>" % NS_C)
        self.assertEqual(r.get('type'), 'result')
        self.bob.message('alice@localhost', 'after disable')
        self.bob.drain()
        self.one.message('bob@localhost', 'me too')
        self.one.drain()
        self.assertEqual(self.messages(self.two), [])


if __name__ == '__main__':
    harness.main()
