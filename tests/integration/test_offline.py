"""Offline messages (XEP-0160, with XEP-0203 delay stamps; RFC 6121
§8.5.2.2, §8.5.3.2.1): what is stored and what is not, delivery at the
next non-negative initial presence (not at bind), order, the configured
per-account limit, and durability across a restart and a SIGKILL.

Run: python3 test_offline.py STARLINGD STARLINGCTL
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import imtest  # noqa: E402
from harness import NS_STANZAS, Server, q  # noqa: E402
from imtest import (BODY, MESSAGE, NS_DELAY, Session, parse_stamp, settle,  # noqa: E402
                    show, show_all, stanza_error)

POOL = imtest.Pool('off', 60)
srv = None
DELAY = q(NS_DELAY, 'delay')


def setUpModule():
    global srv
    srv = Server(users=POOL.users())


def tearDownModule():
    if srv is not None:
        srv.stop()


def bodies(els):
    return [m.findtext(BODY) for m in els if m.tag == MESSAGE]


class Base(harness.ServerTestCase):
    server = None

    def session(self, jid, resource, presence=True, roster=False, priority=None,
                server=None):
        server = server or self.server or srv
        s = Session(self.login(server, jid, password=server.users[jid], resource=resource))
        if roster:
            s.roster()
        if presence:
            s.presence(priority=priority)
        return s

    def sent_ok(self, sender):
        """Nothing came back to the sender (no error): a round trip."""
        got = sender.drain()
        self.assertEqual([m for m in got if m.tag == MESSAGE], [],
                         'the sender got something back:\n  %s' % show_all(got))

    def come_online(self, jid, resource='back', priority=None, server=None):
        """Logs in; checks that nothing arrives at bind or roster get;
        sends initial presence; returns (session, messages received up to
        a round trip)."""
        s = self.session(jid, resource, presence=False, server=server)
        self.assertEqual(s.drain(), [], 'XEP-0160: nothing before initial presence')
        s.roster()
        self.assertEqual(s.drain(), [], 'XEP-0160: nothing at roster get')
        s.presence(priority=priority)
        msgs = [m for m in s.drain() if m.tag == MESSAGE]
        return s, msgs


class Offline(Base):

    def test_chat_stored_and_delivered_with_delay(self):
        """XEP-0160 §2, XEP-0203: a chat message to an account without an
        available resource is stored (no error to the sender) and
        delivered at the next initial presence, unchanged (from, to, type,
        id, body, extension) with <delay xmlns='urn:xmpp:delay'
        from='localhost' stamp='...Z'/> near the time it was sent."""
        a, b = POOL.take(2)
        sa = self.session(a, 'a')
        t0 = time.time()
        sa.send("<message to='%s' type='chat' id='m1'><body>while you were out</body>"
                "<thread>t-1</thread><x xmlns='urn:example:ext' k='v'/></message>" % b)
        self.sent_ok(sa)
        t1 = time.time()
        sb, msgs = self.come_online(b)
        self.assertEqual(len(msgs), 1, show_all(msgs))
        m = msgs[0]
        self.assertEqual((m.get('from'), m.get('to'), m.get('type'), m.get('id')),
                         (sa.jid, b, 'chat', 'm1'), show(m))
        self.assertEqual(m.findtext(BODY), 'while you were out')
        self.assertEqual(m.findtext(q(harness.NS_CLIENT, 'thread')), 't-1')
        self.assertIsNotNone(m.find(q('urn:example:ext', 'x')), show(m))
        delays = m.findall(DELAY)
        self.assertEqual(len(delays), 1, show(m))
        self.assertEqual(delays[0].get('from'), 'localhost', show(m))
        stamp = parse_stamp(delays[0].get('stamp'))
        self.assertIsNotNone(stamp, 'XEP-0082 UTC DateTime: %r' % delays[0].get('stamp'))
        self.assertGreaterEqual(stamp, int(t0) - 1, show(m))
        self.assertLessEqual(stamp, t1 + 1, show(m))

    def test_normal_and_untyped_stored(self):
        """XEP-0160 §3: normal (and untyped) messages are stored."""
        a, b = POOL.take(2)
        sa = self.session(a, 'a')
        sa.message(b, 'untyped', type_=None)
        sa.message(b, 'normal', type_='normal')
        self.sent_ok(sa)
        sb, msgs = self.come_online(b)
        self.assertEqual(bodies(msgs), ['untyped', 'normal'])

    def test_headline_not_stored(self):
        """XEP-0160 §3, RFC 6121 §8.5.2.2.1: a headline is not stored and is
        silently dropped (no error)."""
        a, b = POOL.take(2)
        sa = self.session(a, 'a')
        sa.message(b, 'news', type_='headline')
        self.sent_ok(sa)
        sb, msgs = self.come_online(b)
        self.assertEqual(msgs, [])

    def test_groupchat_not_stored(self):
        """XEP-0160 §3, RFC 6121 §8.5.2.2.1: groupchat to an offline bare JID:
        an error to the sender (service-unavailable), nothing stored."""
        a, b = POOL.take(2)
        sa = self.session(a, 'a')
        sa.message(b, 'gc', type_='groupchat', id_='g1')
        err = sa.wait(lambda e: e.tag == MESSAGE, 'the groupchat error')
        self.assertEqual((err.get('id'), stanza_error(err)[1]), ('g1', 'service-unavailable'))
        sb, msgs = self.come_online(b)
        self.assertEqual(msgs, [])

    def test_error_not_stored(self):
        """XEP-0160 §3, RFC 6121 §8.5.2.2.1: a message of type error is
        silently ignored: not stored, not answered."""
        a, b = POOL.take(2)
        sa = self.session(a, 'a')
        sa.send("<message type='error' to='%s'><error type='cancel'>"
                "<item-not-found xmlns='%s'/></error></message>" % (b, NS_STANZAS))
        self.sent_ok(sa)
        sb, msgs = self.come_online(b)
        self.assertEqual(msgs, [])

    def test_chat_state_only_not_stored(self):
        """XEP-0160 §3: a chat message with only XEP-0085 content is not
        stored (SHOULD)."""
        a, b = POOL.take(2)
        sa = self.session(a, 'a')
        sa.send("<message type='chat' to='%s'><composing "
                "xmlns='http://jabber.org/protocol/chatstates'/></message>" % b)
        self.sent_ok(sa)
        sb, msgs = self.come_online(b)
        self.assertEqual(msgs, [], show_all(msgs))

    def test_store_hint_keeps_chat_state(self):
        """XEP-0334 §4.4: with <store/> the sender asks for a message to be
        kept that would not be: it is."""
        a, b = POOL.take(2)
        sa = self.session(a, 'a')
        sa.send("<message type='chat' to='%s' id='kept'><gone "
                "xmlns='http://jabber.org/protocol/chatstates'/>"
                "<store xmlns='urn:xmpp:hints'/></message>" % b)
        self.sent_ok(sa)
        sb, msgs = self.come_online(b)
        self.assertEqual([m.get('id') for m in msgs], ['kept'],
                         show_all(msgs))

    def test_full_jid_of_offline_resource(self):
        """RFC 6121 §8.5.3.2.1: a chat to a full JID with no session is
        handled as one to the bare JID: stored, delivered later."""
        a, b = POOL.take(2)
        sa = self.session(a, 'a')
        sa.message(b + '/gone', 'to a resource that left')
        self.sent_ok(sa)
        sb, msgs = self.come_online(b)
        self.assertEqual(bodies(msgs), ['to a resource that left'])

    def test_order_and_once(self):
        """Messages are delivered in the order they were stored, once: a
        second resource coming online later and a later login get none
        of them again."""
        a, b = POOL.take(2)
        sa = self.session(a, 'a')
        for i in range(8):
            sa.message(b, 'm%d' % i, id_='id%d' % i)
        self.sent_ok(sa)
        sb, msgs = self.come_online(b, 'first')
        self.assertEqual(bodies(msgs), ['m%d' % i for i in range(8)])
        self.assertEqual([m.get('id') for m in msgs], ['id%d' % i for i in range(8)])
        second, again = self.come_online(b, 'second')
        self.assertEqual(again, [], show_all(again))
        sb.close()
        second.close()
        third, again = self.come_online(b, 'third')
        self.assertEqual(again, [], show_all(again))

    def test_negative_priority_does_not_trigger_delivery(self):
        """XEP-0160 §2 and RFC 6121 §8.5.2.2: a resource with a negative
        priority is no target for the bare JID: the message is stored, and
        it is delivered only when a resource sends non-negative presence."""
        a, b = POOL.take(2)
        neg = self.session(b, 'neg', priority=-1)
        sa = self.session(a, 'a')
        settle([neg, sa])
        sa.message(b, 'for later')
        got = settle([neg, sa])
        self.assertEqual(got[neg], [], show_all(got[neg]))
        self.assertEqual(got[sa], [], show_all(got[sa]))
        neg.presence(priority=0)
        got = neg.drain()
        self.assertEqual(bodies(got), ['for later'], show_all(got))

    def test_stored_while_only_unavailable_sessions(self):
        """A session that is bound but sent no presence is not available: a
        message for the bare JID is stored, not given to it; its initial
        presence brings the message."""
        a, b = POOL.take(2)
        quiet = self.session(b, 'quiet', presence=False)
        sa = self.session(a, 'a')
        sa.message(b, 'stored')
        self.sent_ok(sa)
        self.assertEqual(quiet.drain(), [])
        quiet.presence()
        self.assertEqual(bodies(quiet.drain()), ['stored'])

    def test_nonexistent_account(self):
        """RFC 6121 §8.5.1: a message to a local account that does not
        exist is not stored; the sender gets service-unavailable."""
        a = POOL.take()
        sa = self.session(a, 'a')
        sa.message('nobody-at-all@localhost', 'hello?', id_='nx')
        err = sa.wait(lambda e: e.tag == MESSAGE, 'the error for a message to nobody')
        self.assertEqual(err.get('id'), 'nx')
        self.assertEqual(stanza_error(err), ('cancel', 'service-unavailable'), show(err))


class Limit(Base):
    """offline = { max_messages = N; }"""

    @classmethod
    def setUpClass(cls):
        cls.server = Server(users={'la@localhost': 'pw-la', 'lb@localhost': 'pw-lb'},
                            top={'offline': {'max_messages': 3}})

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_limit(self):
        """XEP-0160 §2: when the account's offline store is full, the next
        message bounces to the sender with service-unavailable (and the
        original id); the stored ones are delivered, and then there is
        room again."""
        sa = self.session('la@localhost', 'a')
        for i in range(3):
            sa.message('lb@localhost', 'kept %d' % i, id_='k%d' % i)
        self.sent_ok(sa)
        sa.message('lb@localhost', 'one too many', id_='over')
        err = sa.wait(lambda e: e.tag == MESSAGE, 'the bounce of message 4')
        self.assertEqual(err.get('id'), 'over', show(err))
        self.assertEqual(stanza_error(err)[1], 'service-unavailable', show(err))
        self.assertEqual(err.get('from'), 'lb@localhost', show(err))
        sb, msgs = self.come_online('lb@localhost')
        self.assertEqual(bodies(msgs), ['kept 0', 'kept 1', 'kept 2'])
        sb.close()
        sa.message('lb@localhost', 'room again')
        self.sent_ok(sa)
        sb, msgs = self.come_online('lb@localhost', 'again')
        self.assertEqual(bodies(msgs), ['room again'])


class Durability(Base):

    @classmethod
    def setUpClass(cls):
        cls.server = Server(users={'da@localhost': 'pw-da', 'db@localhost': 'pw-db'})

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_survives_restart(self):
        """Stored messages survive a clean restart, still in order."""
        sa = self.session('da@localhost', 'a')
        sa.message('db@localhost', 'before restart 1')
        sa.message('db@localhost', 'before restart 2')
        self.sent_ok(sa)
        self.server.stop()
        self.server.start()
        sb, msgs = self.come_online('db@localhost')
        self.assertEqual(bodies(msgs), ['before restart 1', 'before restart 2'])

    def test_survives_sigkill(self):
        """Once the server has answered a ping sent after the message
        (in-order processing, RFC 6120 §10.1), the message is on disk: a
        SIGKILL right then loses nothing."""
        sa = self.session('da@localhost', 'a2')
        sa.message('db@localhost', 'durable', id_='dur')
        res = sa.iq('get', "<ping xmlns='urn:xmpp:ping'/>", to='localhost')
        self.assertEqual(res.get('type'), 'result', show(res))
        self.assertEqual([m for m in sa.backlog if m.tag == MESSAGE], [])
        self.server.kill()
        self.server.start()
        sb, msgs = self.come_online('db@localhost', 'after-kill')
        self.assertEqual(bodies(msgs), ['durable'])
        self.assertEqual(msgs[0].get('id'), 'dur')


if __name__ == '__main__':
    harness.main()
