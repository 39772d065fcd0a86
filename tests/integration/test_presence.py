"""Presence exchange (feature set 10.3-1, 10.3-3, 13-1..5; RFC 6121 §4,
§8.5): initial presence broadcast and probes, updates, unavailable
presence however a session ends, sessions that never sent presence,
directed presence, priorities and messages to the bare JID, presence to
accounts that do not exist, and a restart with the subscriptions intact.

Run: python3 test_presence.py STARLINGD STARLINGCTL
"""
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import imtest  # noqa: E402
from harness import NS_STANZAS, Server  # noqa: E402
from imtest import (BODY, MESSAGE, PRESENCE, STATUS, Session, presences,  # noqa: E402
                    settle, show, show_all, stanza_error)

POOL = imtest.Pool('pre', 90)
srv = None


def setUpModule():
    global srv
    srv = Server(users=POOL.users())


def tearDownModule():
    if srv is not None:
        srv.stop()


def froms(els):
    return sorted(e.get('from') for e in els)


class Base(harness.ServerTestCase):

    def session(self, jid, resource, presence=True, roster=True, priority=None,
                status=None, server=None):
        server = server or srv
        s = Session(self.login(server, jid, password=server.users[jid], resource=resource))
        if roster:
            s.roster()
        if presence:
            s.presence(priority=priority, status=status or 'st-' + resource)
        return s

    def subscribe(self, frm, to, server=None):
        """frm becomes subscribed to to's presence (frm 'to', to 'from'),
        through the protocol, with sessions that send no presence."""
        a = self.session(frm, 'setup', presence=False, server=server)
        b = self.session(to, 'setup', presence=False, server=server)
        a.subscription('subscribe', to)
        settle([a, b])
        b.subscription('subscribed', frm)
        settle([a, b])
        a.close()
        b.close()

    def contacts(self):
        """U with: C (both), D (U is subscribed to D: 'to'), E (E is
        subscribed to U: 'from'), X (in U's roster, no subscription)."""
        u, c, d, e, x = POOL.take(5)
        self.subscribe(u, c)
        self.subscribe(c, u)
        self.subscribe(u, d)
        self.subscribe(e, u)
        s = self.session(u, 'setup', presence=False)
        s.roster_add(x)
        got = s.roster()
        self.assertEqual({k: v.subscription for k, v in got.items()},
                         {c: 'both', d: 'to', e: 'from', x: 'none'}, 'setup')
        s.close()
        return u, c, d, e, x


class Broadcast(Base):

    def test_initial_presence(self):
        """§4.2.2, §4.3.2, 13-3, 13-5: U's initial presence goes to the
        contacts subscribed to U (C: both, E: from) and to U's available
        resources, the sender included; not to D ('to' only) or X (none).
        The probes bring U the presence of each available resource of the
        contacts U is subscribed to (C, D) and of nobody else."""
        u, c, d, e, x = self.contacts()
        c1, c2 = self.session(c, 'c1'), self.session(c, 'c2')
        d1, e1, x1 = self.session(d, 'd1'), self.session(e, 'e1'), self.session(x, 'x1')
        u2 = self.session(u, 'u2')
        u1 = self.session(u, 'u1', presence=False)
        everyone = [c1, c2, d1, e1, x1, u2, u1]
        settle(everyone)
        u1.presence(priority=3, status='hello', show_='chat')
        got = settle(everyone)
        for s in (c1, c2, e1, u2, u1):
            ps = presences(got[s], frm=u1.jid)
            self.assertEqual(len(ps), 1, '%s should get U\'s initial presence:\n  %s'
                             % (s.jid, show_all(got[s])))
            self.assertEqual((ps[0].findtext(STATUS), ps[0].findtext(imtest.q(harness.NS_CLIENT, 'show')),
                              ps[0].findtext(imtest.PRIORITY)), ('hello', 'chat', '3'), show(ps[0]))
        for s in (d1, x1):
            self.assertEqual(got[s], [], '%s is not subscribed to U:\n  %s'
                             % (s.jid, show_all(got[s])))
        for s in (c1, c2, e1, u2):
            self.assertEqual([el for el in got[s] if el.get('from') != u1.jid], [],
                             show_all(got[s]))
        # The probes: C's two resources and D's, with their presence.
        avail = presences(got[u1])
        self.assertEqual(froms(p for p in avail if imtest.bare(p.get('from')) != u),
                         sorted([c1.jid, c2.jid, d1.jid]),
                         '§4.3.2: presence of each available resource of C and D only:\n  %s'
                         % show_all(got[u1]))
        for p in avail:
            if imtest.bare(p.get('from')) != u:
                self.assertEqual(p.findtext(STATUS), 'st-' + p.get('from').split('/')[1])
        self.assertEqual([el for el in got[u1] if el.tag != PRESENCE], [], show_all(got[u1]))
        self.assertEqual(presences(got[u1], types=('unavailable', 'probe', 'error')
                                   + imtest.SUB_TYPES), [], show_all(got[u1]))

    def test_probe_gives_nothing_for_offline_contacts(self):
        """§4.3.2: for a contact with no available resource (offline, or
        bound without presence) the server invents no available presence;
        at most the last unavailable."""
        u, c, d, e, x = self.contacts()
        d_quiet = self.session(d, 'quiet', presence=False)   # C offline, D not available
        u1 = self.session(u, 'u1', presence=False)
        settle([u1, d_quiet])
        u1.presence()
        got = settle([u1, d_quiet])
        self.assertEqual([p for p in presences(got[u1]) if imtest.bare(p.get('from')) != u], [],
                         show_all(got[u1]))
        for p in presences(got[u1], types=('unavailable',)):
            self.assertIn(imtest.bare(p.get('from')), (c, d), show(p))
        self.assertEqual(got[d_quiet], [], 'a session without presence gets none:\n  %s'
                         % show_all(got[d_quiet]))

    def test_update_broadcast(self):
        """§4.4.2: a presence update goes to the subscribed contacts and to
        U's available resources (the sender included), and nowhere else."""
        u, c, d, e, x = self.contacts()
        c1, d1, e1, x1 = (self.session(j, j[:5]) for j in (c, d, e, x))
        u1, u2 = self.session(u, 'u1'), self.session(u, 'u2')
        everyone = [c1, d1, e1, x1, u1, u2]
        settle(everyone)
        u1.presence(show_='away', status='lunch')
        got = settle(everyone)
        for s in (c1, e1, u1, u2):
            ps = presences(got[s], frm=u1.jid)
            self.assertEqual([(p.findtext(imtest.q(harness.NS_CLIENT, 'show')), p.findtext(STATUS))
                              for p in ps], [('away', 'lunch')], show_all(got[s]))
            self.assertEqual(len(got[s]), 1, show_all(got[s]))
        for s in (d1, x1):
            self.assertEqual(got[s], [], show_all(got[s]))

    def test_explicit_unavailable(self):
        """§4.5.2: presence type='unavailable' goes to the subscribed
        contacts and U's other available resources; afterwards the
        resource is no longer available: it receives no broadcasts."""
        u, c, d, e, x = self.contacts()
        c1, d1, e1 = (self.session(j, j[:5]) for j in (c, d, e))
        u1, u2 = self.session(u, 'u1'), self.session(u, 'u2')
        everyone = [c1, d1, e1, u1, u2]
        settle(everyone)
        u1.presence(type_='unavailable', status='bye')
        got = settle(everyone)
        for s in (c1, e1, u2):
            ps = presences(got[s], frm=u1.jid, type_='unavailable')
            self.assertEqual(len(ps), 1, show_all(got[s]))
            self.assertEqual(ps[0].findtext(STATUS), 'bye')
        self.assertEqual(got[d1], [], show_all(got[d1]))
        c1.presence(show_='dnd')
        got = settle(everyone)
        self.assertEqual(got[u1], [], 'an unavailable resource gets no presence:\n  %s'
                         % show_all(got[u1]))
        self.assertEqual(froms(presences(got[u2], frm=c)), [c1.jid])

    def test_unavailable_on_stream_close(self):
        """§4.5.1/§4.5.2: a session that ends with </stream:stream> without
        sending unavailable presence: the server sends it for it."""
        u, c, d, e, x = self.contacts()
        c1, u1, u2 = self.session(c, 'c1'), self.session(u, 'u1'), self.session(u, 'u2')
        settle([c1, u1, u2])
        u1.close()
        for s in (c1, u2):
            p = s.wait(lambda el: el.tag == PRESENCE and el.get('from') == u1.jid,
                       'unavailable from %s' % u1.jid)
            self.assertEqual(p.get('type'), 'unavailable', show(p))
        got = settle([c1, u2])
        self.assertEqual(got[c1], [], show_all(got[c1]))

    def abrupt(self, reset):
        u, c, d, e, x = self.contacts()
        c1, u1, u2 = self.session(c, 'c1'), self.session(u, 'u1'), self.session(u, 'u2')
        settle([c1, u1, u2])
        raw = u1.c.sock
        if reset:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        # Neither close tag nor TLS close_notify (SSLSocket.close() sends
        # none): the TCP connection just ends, with FIN or with RST.
        raw.close()
        for s in (c1, u2):
            p = s.wait(lambda el: el.tag == PRESENCE and el.get('from') == u1.jid,
                       'unavailable from %s after its connection was lost' % u1.jid)
            self.assertEqual(p.get('type'), 'unavailable', show(p))

    def test_unavailable_on_tcp_close(self):
        """§4.5.1: the connection ends without a close tag (FIN): the
        server sends unavailable presence on the session's behalf."""
        self.abrupt(reset=False)

    def test_unavailable_on_tcp_reset(self):
        """§4.5.1: the connection is reset: likewise."""
        self.abrupt(reset=True)

    def test_session_without_presence(self):
        """§4.2 and §8.5.2: a session that never sent initial presence is not
        available: no presence reaches it, the contacts see nothing of it
        (C's later login sees only U's available resource), and messages to
        the bare JID go to the available resource only."""
        u, c, d, e, x = self.contacts()
        u1 = self.session(u, 'u1', priority=0)
        quiet = self.session(u, 'quiet', presence=False)
        c1 = self.session(c, 'c1', presence=False)
        settle([u1, quiet, c1])
        c1.presence(status='c here')
        got = settle([u1, quiet, c1])
        self.assertEqual(got[quiet], [], show_all(got[quiet]))
        self.assertEqual(froms(presences(got[u1], frm=c)), [c1.jid])
        self.assertEqual(froms(presences(got[c1], frm=u)), [u1.jid],
                         '§4.3.2: only available resources answer a probe:\n  %s'
                         % show_all(got[c1]))
        c1.message(u, 'to the bare JID')
        got = settle([u1, quiet, c1])
        self.assertEqual([m.findtext(BODY) for m in got[u1] if m.tag == MESSAGE],
                         ['to the bare JID'])
        self.assertEqual(got[quiet], [], show_all(got[quiet]))

    def test_own_resources_see_each_other(self):
        """§4.2.2: a user's resources get each other's initial presence, even
        with an empty roster."""
        u = POOL.take()
        u1 = self.session(u, 'u1')
        settle([u1])
        u2 = self.session(u, 'u2', presence=False)
        settle([u1, u2])
        u2.presence(status='second')
        got = settle([u1, u2])
        self.assertEqual(froms(presences(got[u1], frm=u)), [u2.jid], show_all(got[u1]))
        self.assertIn(u2.jid, froms(presences(got[u2], frm=u)), show_all(got[u2]))


class Directed(Base):

    def test_directed_presence(self):
        """§4.6, 13-4: directed presence to a full JID reaches only that
        resource (no subscription needed); later broadcasts do not reach it
        (§4.4.2: subscribers only); when the sender goes offline, it gets
        unavailable presence from the sender (§4.6.3)."""
        u, c, d, e, x = self.contacts()
        u1 = self.session(u, 'u1')
        x1, x2 = self.session(x, 'x1'), self.session(x, 'x2')
        c1 = self.session(c, 'c1')
        everyone = [u1, x1, x2, c1]
        settle(everyone)
        u1.presence(to=x1.jid, status='just for you')
        got = settle(everyone)
        self.assertEqual([(p.get('from'), p.findtext(STATUS)) for p in got[x1]],
                         [(u1.jid, 'just for you')], show_all(got[x1]))
        for s in (x2, c1, u1):
            self.assertEqual(got[s], [], '%s: directed presence is not broadcast:\n  %s'
                             % (s.jid, show_all(got[s])))
        u1.presence(show_='away')
        got = settle(everyone)
        self.assertEqual(got[x1], [], '§4.4.2: updates go to subscribers only:\n  %s'
                         % show_all(got[x1]))
        self.assertEqual(len(presences(got[c1], frm=u1.jid)), 1)
        u1.close()
        p = x1.wait(lambda el: el.tag == PRESENCE and el.get('from') == u1.jid,
                    '§4.6.3: unavailable from %s' % u1.jid)
        self.assertEqual(p.get('type'), 'unavailable', show(p))
        got = settle([x1, x2, c1])
        self.assertEqual(got[x2], [], show_all(got[x2]))

    def test_presence_to_unknown_account(self):
        """§8.5.1: presence (available, unavailable, probe) to a local
        account that does not exist, bare or full: ignored silently."""
        u = POOL.take()
        u1 = self.session(u, 'u1')
        settle([u1])
        for to in ('ghost@localhost', 'ghost@localhost/r'):
            u1.presence(to=to)
            u1.presence(to=to, type_='unavailable')
            u1.available = True
            u1.send("<presence type='probe' to='%s'/>" % to)
        # No ordered round trip covers a reply on behalf of an account
        # that does not exist: watch for a second.
        got = u1.quiet_for(1.0) + u1.drain()
        # §8.5.1 lets the server answer a probe with 'unsubscribed'.
        self.assertEqual([e for e in got if e.get('type') != 'unsubscribed'], [],
                         show_all(got))


class Routing(Base):
    """Messages to the bare JID by priority (RFC 6121 §8.5.2.1.1) with the
    availability that presence now sets."""

    def three(self):
        u, c = POOL.take(2)
        hi = self.session(u, 'hi', priority=5)
        lo = self.session(u, 'lo', priority=1)
        neg = self.session(u, 'neg', priority=-1)
        c1 = self.session(c, 'c1')
        everyone = [hi, lo, neg, c1]
        settle(everyone)
        return u, hi, lo, neg, c1, everyone

    def bodies(self, els):
        return [m.findtext(BODY) for m in els if m.tag == MESSAGE]

    def test_chat_and_normal_to_highest(self):
        """§8.5.2.1.1: chat and normal to the bare JID go to the highest
        priority only (5 beats 1), never to a negative one; 'to' stays
        the bare JID."""
        u, hi, lo, neg, c1, everyone = self.three()
        c1.message(u, 'chat!', type_='chat')
        c1.message(u, 'normal!', type_=None)
        got = settle(everyone)
        self.assertEqual(self.bodies(got[hi]), ['chat!', 'normal!'], show_all(got[hi]))
        self.assertEqual([m.get('to') for m in got[hi]], [u, u])
        self.assertEqual(got[lo], [], show_all(got[lo]))
        self.assertEqual(got[neg], [], show_all(got[neg]))
        self.assertEqual(got[c1], [], show_all(got[c1]))

    def test_headline_to_all_non_negative(self):
        """§8.5.2.1.1: headline to every non-negative resource."""
        u, hi, lo, neg, c1, everyone = self.three()
        c1.message(u, 'news', type_='headline')
        got = settle(everyone)
        self.assertEqual(self.bodies(got[hi]), ['news'])
        self.assertEqual(self.bodies(got[lo]), ['news'])
        self.assertEqual(got[neg], [], show_all(got[neg]))

    def test_priority_change(self):
        """§4.7.2.3: a presence update with another priority changes the
        routing at once."""
        u, hi, lo, neg, c1, everyone = self.three()
        lo.presence(priority=9)
        settle(everyone)
        c1.message(u, 'now lo')
        got = settle(everyone)
        self.assertEqual(self.bodies(got[lo]), ['now lo'])
        self.assertEqual(self.bodies(got[hi]), [])

    def test_groupchat_to_bare(self):
        """§8.5.2.1.1: groupchat to a bare JID: an error
        (service-unavailable) to the sender, delivered to nobody."""
        u, hi, lo, neg, c1, everyone = self.three()
        c1.message(u, 'gc', type_='groupchat', id_='gc1')
        got = settle(everyone)
        errs = [m for m in got[c1] if m.tag == MESSAGE]
        self.assertEqual(len(errs), 1, show_all(got[c1]))
        self.assertEqual(errs[0].get('id'), 'gc1')
        self.assertEqual(stanza_error(errs[0])[1], 'service-unavailable')
        for s in (hi, lo, neg):
            self.assertEqual(got[s], [], show_all(got[s]))

    def test_error_message_ignored(self):
        """§8.5.2.1.1: a message of type error to the bare JID is silently
        ignored: nobody gets anything, no error comes back."""
        u, hi, lo, neg, c1, everyone = self.three()
        c1.send("<message type='error' to='%s' id='e1'><error type='cancel'>"
                "<item-not-found xmlns='%s'/></error></message>" % (u, NS_STANZAS))
        got = settle(everyone)
        for s in everyone:
            self.assertEqual(got[s], [], show_all(got[s]))


class Restart(Base):

    def test_subscriptions_survive_restart(self):
        """After a restart the rosters and subscriptions are intact: both
        sides see 'both', and initial presence and probes work as before."""
        own = Server(users={'rsu@localhost': 'pw-rsu', 'rsc@localhost': 'pw-rsc'})
        try:
            self.subscribe('rsu@localhost', 'rsc@localhost', server=own)
            self.subscribe('rsc@localhost', 'rsu@localhost', server=own)
            own.stop()
            own.start()
            c1 = self.session('rsc@localhost', 'c1', server=own, status='back')
            u1 = self.session('rsu@localhost', 'u1', server=own, presence=False)
            self.assertEqual(u1.roster()['rsc@localhost'].subscription, 'both')
            settle([c1, u1])
            u1.presence(status='me too')
            got = settle([c1, u1])
            self.assertEqual([p.findtext(STATUS) for p in presences(got[u1], frm=c1.jid)],
                             ['back'], show_all(got[u1]))
            self.assertEqual([p.findtext(STATUS) for p in presences(got[c1], frm=u1.jid)],
                             ['me too'], show_all(got[c1]))
            self.assertEqual(c1.roster()['rsu@localhost'].subscription, 'both')
        finally:
            own.stop()


if __name__ == '__main__':
    harness.main()
