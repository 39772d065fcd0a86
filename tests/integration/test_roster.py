"""Rosters (feature set 11-1, 11-3; RFC 6121 §2, roster versioning of
RFC 6121 §2.6 / XEP-0237): get, set (add, update), remove, the error
cases of §2.3.3 and §2.5.3, the configured size limit, roster pushes to
every interested resource and to no other, and the subscriptions a
removal cancels (§2.5.2).

Run: python3 test_roster.py STARLINGD STARLINGCTL
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import imtest  # noqa: E402
from harness import Server  # noqa: E402
from imtest import (ITEM, PRESENCE, QUERY, Session, is_roster_push,  # noqa: E402
                    parse_item, push_item, settle, show, show_all, stanza_error)

POOL = imtest.Pool('ros', 60)
srv = None


def setUpModule():
    global srv
    srv = Server(users=POOL.users())


def tearDownModule():
    if srv is not None:
        srv.stop()


class Base(harness.ServerTestCase):
    server = None

    def session(self, jid, resource, roster=True, presence=False, server=None):
        server = server or self.server or srv
        s = Session(self.login(server, jid, password=server.users[jid], resource=resource))
        if roster:
            s.roster()
        if presence:
            s.presence(status='st-' + resource)
        return s

    def only_pushes(self, s, els, n=1):
        pushes = [e for e in els if is_roster_push(e)]
        self.assertEqual(len(pushes), n, '%s should get %d roster push(es):\n  %s'
                         % (s.jid, n, show_all(els)))
        self.assertEqual(len(els), n, '%s got more than roster pushes:\n  %s'
                         % (s.jid, show_all(els)))
        for p in pushes:
            # §2.1.6: a client ignores a push unless it has no 'from' or
            # the account's bare JID; the server must send it so.
            self.assertIn(p.get('from'), (None, s.bare), show(p))
            self.assertIn(p.get('to'), (None, s.jid), show(p))
        return [push_item(p) for p in pushes]

    def assertResult(self, res, s):
        self.assertEqual(res.get('type'), 'result', show(res))
        # RFC 6120 §8.1.2.1: what the server answers on behalf of the
        # account comes from nobody or the account's bare JID.
        self.assertIn(res.get('from'), (None, s.bare), show(res))
        self.assertEqual(len(list(res)), 0, 'a roster set result is empty: %s' % show(res))

    def assertError(self, res, cond, type_=None):
        self.assertEqual(res.get('type'), 'error', show(res))
        t, c = stanza_error(res)
        self.assertEqual(c, cond, show(res))
        if type_:
            self.assertEqual(t, type_, show(res))


class Roster(Base):

    def test_get_empty(self):
        """§2.1.4: the roster of an account without contacts is a result
        with an empty <query/> (not an error, not an empty IQ)."""
        u = POOL.take()
        s = self.session(u, 'r', roster=False)
        res = s.roster_get()
        self.assertEqual(res.get('type'), 'result', show(res))
        self.assertIn(res.get('from'), (None, u), show(res))
        self.assertEqual(res.get('to'), s.jid, show(res))
        query = res.find(QUERY)
        self.assertIsNotNone(query, show(res))
        self.assertEqual(query.findall(ITEM), [], show(res))

    def test_get_addressed_to_own_bare_jid(self):
        """RFC 6120 §10.3.3 / RFC 6121 §2.1.3: a roster get to the account's
        own bare JID is the same as one without 'to'."""
        u, c = POOL.take(2)
        s = self.session(u, 'r')
        s.roster_add(c, 'Carl')
        res = s.roster_get(to=u)
        self.assertEqual(res.get('type'), 'result', show(res))
        self.assertEqual([parse_item(i).jid for i in res.find(QUERY).findall(ITEM)], [c])

    def test_add_then_get(self):
        """§2.3.2: the setter gets an empty result and a push with the item
        (subscription='none', name, groups); a later get lists it."""
        u, c = POOL.take(2)
        s = self.session(u, 'r')
        res = s.roster_set(c, name='Carla', groups=('Friends', 'Work'))
        self.assertResult(res, s)
        (item,) = self.only_pushes(s, s.drain())
        self.assertEqual(item, imtest.Item(c, 'Carla', 'none', None, None, ('Friends', 'Work')))
        got = s.roster()
        self.assertEqual(list(got), [c])
        self.assertEqual(got[c].name, 'Carla')
        self.assertEqual(sorted(got[c].groups), ['Friends', 'Work'])
        self.assertEqual(got[c].subscription, 'none')
        self.assertIsNone(got[c].ask)
        self.assertIsNone(got[c].approved)

    def test_several_items(self):
        """§2.1.4: the result lists every item once."""
        u = POOL.take()
        s = self.session(u, 'r')
        contacts = ['c%d@example.org' % i for i in range(5)] + ['x@remote.example']
        for c in contacts:
            s.roster_add(c)
        s.drain()
        self.assertEqual(sorted(s.roster()), sorted(contacts))

    def test_update_is_atomic(self):
        """§2.4.1: an item is replaced exactly as given: a set without the
        name or a group removes them; the push shows the new item."""
        u, c = POOL.take(2)
        s = self.session(u, 'r')
        s.roster_add(c, 'Old', ('A', 'B'))
        s.drain()
        self.assertResult(s.roster_set(c, name='New', groups=('B', 'C')), s)
        (item,) = self.only_pushes(s, s.drain())
        self.assertEqual((item.name, sorted(item.groups)), ('New', ['B', 'C']))
        self.assertResult(s.roster_set(c), s)
        (item,) = self.only_pushes(s, s.drain())
        self.assertEqual((item.name, item.groups), (None, ()))
        got = s.roster()[c]
        self.assertEqual((got.name, got.groups, got.subscription), (None, (), 'none'))

    def test_remove(self):
        """§2.5.2: subscription='remove' deletes the item: result, push with
        subscription='remove', gone from the roster."""
        u, c, d = POOL.take(3)
        s = self.session(u, 'r')
        s.roster_add(c, 'C')
        s.roster_add(d, 'D')
        s.drain()
        self.assertResult(s.roster_set(c, subscription='remove'), s)
        (item,) = self.only_pushes(s, s.drain())
        self.assertEqual((item.jid, item.subscription), (c, 'remove'))
        self.assertEqual(list(s.roster()), [d])

    def test_remove_missing_item(self):
        """§2.5.3: removing an item that is not there: item-not-found, no
        push."""
        u = POOL.take()
        s = self.session(u, 'r')
        self.assertError(s.roster_set('nobody@example.org', subscription='remove'),
                         'item-not-found')
        self.assertEqual(s.drain(), [])

    def test_subscription_attribute_ignored(self):
        """§2.1.5: the server ignores a 'subscription' other than 'remove'
        in a set: the item is added with subscription='none'."""
        u, c = POOL.take(2)
        s = self.session(u, 'r')
        for value in ('both', 'to', 'from'):
            res = s.roster_set(c, name=value, subscription=value)
            self.assertResult(res, s)
            (item,) = self.only_pushes(s, s.drain())
            self.assertEqual(item.subscription, 'none', 'set with subscription=%r' % value)
        self.assertEqual(s.roster()[c].subscription, 'none')

    def test_two_items_bad_request(self):
        """§2.3.3: a set with more than one <item/>: bad-request, nothing
        changed, no push."""
        u = POOL.take()
        s = self.session(u, 'r')
        res = s.roster_set(None, raw="<item jid='a@example.org'/><item jid='b@example.org'/>")
        self.assertError(res, 'bad-request', 'modify')
        self.assertEqual(s.drain(), [])
        self.assertEqual(s.roster(), {})

    def test_duplicate_groups_bad_request(self):
        """§2.3.3: duplicate <group/> elements: bad-request."""
        u, c = POOL.take(2)
        s = self.session(u, 'r')
        self.assertError(s.roster_set(c, groups=('G', 'G')), 'bad-request', 'modify')
        self.assertEqual(s.drain(), [])
        self.assertEqual(s.roster(), {})

    def test_empty_group_not_acceptable(self):
        """§2.3.3: a <group/> of zero length: not-acceptable."""
        u, c = POOL.take(2)
        s = self.session(u, 'r')
        self.assertError(s.roster_set(c, groups=('',)), 'not-acceptable')
        self.assertEqual(s.drain(), [])
        self.assertEqual(s.roster(), {})

    def test_name_or_group_too_long_not_acceptable(self):
        """§2.3.3: a 'name' or a <group/> longer than the server's limit:
        not-acceptable (10,000 characters is beyond any sensible limit
        and well inside the stanza size limit)."""
        u, c = POOL.take(2)
        s = self.session(u, 'r')
        self.assertError(s.roster_set(c, name='n' * 10000), 'not-acceptable')
        self.assertError(s.roster_set(c, groups=('g' * 10000,)), 'not-acceptable')
        self.assertEqual(s.drain(), [])
        self.assertEqual(s.roster(), {})

    def test_item_without_or_with_bad_jid(self):
        """§2.1.2.3 ('jid' is REQUIRED): an item without a JID or with a
        malformed one is refused with bad-request (RFC 6120 §8.3.3.1,
        schema) or jid-malformed (§8.3.3.8); RFC 6121 names neither, so
        either will do. Nothing is stored or pushed."""
        u = POOL.take()
        s = self.session(u, 'r')
        for res in (s.roster_set(None, raw="<item name='x'/>"), s.roster_set('@@@'),
                    s.roster_set('')):
            self.assertEqual(res.get('type'), 'error', show(res))
            self.assertIn(stanza_error(res)[1], ('jid-malformed', 'bad-request'), show(res))
        self.assertEqual(s.drain(), [])
        self.assertEqual(s.roster(), {})

    def test_set_for_another_account_forbidden(self):
        """§2.1.5, §2.3.3: a roster set addressed to another account:
        forbidden; that account's roster is untouched and it gets no push."""
        u, v = POOL.take(2)
        a = self.session(u, 'a')
        b = self.session(v, 'b')
        res = a.roster_set('mallory@example.org', to=v)
        self.assertError(res, 'forbidden')
        got = settle([a, b])
        self.assertEqual(got[b], [], show_all(got[b]))
        self.assertEqual(b.roster(), {})

    def test_set_to_own_bare_jid(self):
        """§2.1.5: a set addressed to the account's own bare JID is the
        account's own roster set."""
        u, c = POOL.take(2)
        s = self.session(u, 'r')
        self.assertResult(s.roster_set(c, to=u), s)
        self.only_pushes(s, s.drain())

    def test_pushes_to_interested_resources_only(self):
        """§2.2, §2.3.2, feature 11-3: a change made by one resource is
        pushed to every interested resource (available or not, the setter
        included) and to none that did not request the roster."""
        u, c = POOL.take(2)
        setter = self.session(u, 'setter')
        other = self.session(u, 'other', presence=True)
        silent = self.session(u, 'silent', roster=False)            # connected only
        avail = self.session(u, 'avail', roster=False, presence=True)  # available only
        everyone = [setter, other, silent, avail]
        settle(everyone)
        self.assertResult(setter.roster_set(c, name='C', groups=('G',)), setter)
        got = settle(everyone)
        for s in (setter, other):
            (item,) = self.only_pushes(s, got[s])
            self.assertEqual((item.jid, item.name, item.groups), (c, 'C', ('G',)))
        for s in (silent, avail):
            self.assertEqual(got[s], [], '%s did not request the roster:\n  %s'
                             % (s.jid, show_all(got[s])))
        # Removal too.
        self.assertResult(other.roster_set(c, subscription='remove'), other)
        got = settle(everyone)
        for s in (setter, other):
            (item,) = self.only_pushes(s, got[s])
            self.assertEqual(item.subscription, 'remove')
        for s in (silent, avail):
            self.assertEqual(got[s], [])

    def test_push_answered_by_client(self):
        """§2.1.6: a client answers a push with a result; the server takes
        it silently."""
        u, c = POOL.take(2)
        s = self.session(u, 'r')
        s.ack_pushes = False
        s.roster_add(c)
        (push,) = [e for e in s.drain() if is_roster_push(e)]
        self.assertTrue(push.get('id'), show(push))
        s.send("<iq type='result' id='%s'/>" % push.get('id'))
        s.send("<iq type='result' id='%s' to='%s'/>" % (push.get('id'), u))
        self.assertEqual(s.drain(), [])

    def test_other_accounts_untouched(self):
        """One account's roster set changes nothing for another account."""
        u, v, c = POOL.take(3)
        a = self.session(u, 'a')
        b = self.session(v, 'b')
        a.roster_add(c)
        got = settle([a, b])
        self.assertEqual(got[b], [])
        self.assertEqual(b.roster(), {})

    def test_remove_cancels_both_subscriptions(self):
        """§2.5.2: removing a contact with a mutual subscription sends the
        contact 'unsubscribe' and 'unsubscribed' (from the user's bare JID)
        and, with them, unavailable presence from each of the user's
        resources (§3.2.2); the user gets the contact's unavailable
        presence (§3.3.3). The contact's item becomes subscription='none'
        (pushed); the user's item is gone (pushed 'remove')."""
        u, c = POOL.take(2)
        us = [self.session(u, 'u%d' % i, presence=True) for i in range(2)]
        cs = [self.session(c, 'c%d' % i, presence=True) for i in range(2)]
        everyone = us + cs
        for a, b in ((us[0], cs[0]), (cs[0], us[0])):
            a.subscription('subscribe', b.bare)
            settle(everyone)
            b.subscription('subscribed', a.bare)
            settle(everyone)
        self.assertEqual(us[0].roster()[c].subscription, 'both')
        settle(everyone)
        self.assertResult(us[0].roster_set(c, subscription='remove'), us[0])
        got = settle(everyone)
        for s in us:
            pushes = [e for e in got[s] if is_roster_push(e)]
            self.assertEqual([(push_item(p).jid, push_item(p).subscription) for p in pushes],
                             [(c, 'remove')], show_all(got[s]))
            unavail = imtest.presences(got[s], frm=c, type_='unavailable')
            self.assertEqual(sorted(p.get('from') for p in unavail), sorted(x.jid for x in cs),
                             '§3.3.3: %s gets unavailable from each of the contact\'s '
                             'resources:\n  %s' % (s.jid, show_all(got[s])))
        for s in cs:
            subs = [e for e in got[s] if e.tag == PRESENCE
                    and e.get('type') in ('unsubscribe', 'unsubscribed')]
            self.assertEqual(sorted(e.get('type') for e in subs),
                             ['unsubscribe', 'unsubscribed'], show_all(got[s]))
            for e in subs:
                self.assertEqual((e.get('from'), e.get('to')), (u, c), show(e))
            unavail = imtest.presences(got[s], frm=u, type_='unavailable')
            self.assertEqual(sorted(p.get('from') for p in unavail), sorted(x.jid for x in us),
                             '§3.2.2: unavailable from each of the user\'s resources:\n  %s'
                             % show_all(got[s]))
            pushes = [e for e in got[s] if is_roster_push(e)]
            self.assertGreaterEqual(len(pushes), 1, show_all(got[s]))
            self.assertEqual(imtest.item_view(push_item(pushes[-1])), ('none', None, None),
                             show_all(pushes))
        self.assertNotIn(c, us[1].roster())
        item = cs[1].roster()[u]
        self.assertEqual((item.subscription, item.ask), ('none', None))

    def test_remove_cancels_one_way(self):
        """§2.5.2: with only the user subscribed to the contact ('to'),
        removal sends 'unsubscribe' only; with only the contact subscribed
        ('from'), 'unsubscribed' only."""
        for direction in ('to', 'from'):
            u, c = POOL.take(2)
            u1 = self.session(u, 'u1', presence=True)
            c1 = self.session(c, 'c1', presence=True)
            a, b = (u1, c1) if direction == 'to' else (c1, u1)
            a.subscription('subscribe', b.bare)
            settle([u1, c1])
            b.subscription('subscribed', a.bare)
            settle([u1, c1])
            self.assertEqual(u1.roster()[c].subscription, direction)
            settle([u1, c1])
            self.assertResult(u1.roster_set(c, subscription='remove'), u1)
            got = settle([u1, c1])
            subs = [e.get('type') for e in got[c1] if e.tag == PRESENCE
                    and e.get('type') in imtest.SUB_TYPES]
            self.assertEqual(subs, ['unsubscribe' if direction == 'to' else 'unsubscribed'],
                             '%s: %s' % (direction, show_all(got[c1])))
            item = c1.roster()[u]
            self.assertEqual((item.subscription, item.ask), ('none', None))


class Versioning(Base):
    """RFC 6121 §2.6 (XEP-0237)."""

    def ver_get(self, s, ver):
        res = s.roster_get(ver=ver)
        self.assertEqual(res.get('type'), 'result', show(res))
        return res

    def test_stream_feature(self):
        """§2.6.1: <ver xmlns='urn:xmpp:features:rosterver'/> among the
        stream features after authentication."""
        c = self.login(srv, 'alice@localhost')
        self.assertIsNotNone(c.feature(imtest.NS_ROSTERVER, 'ver'), harness.ET.tostring(c.features))

    def test_bootstrap_and_current(self):
        """§2.6.2, §2.6.3: ver='' gets the whole roster with a 'ver';
        asking again with that ver gets an empty result (or the same
        roster with the same ver) and no pushes."""
        u, c = POOL.take(2)
        s = self.session(u, 'r')
        s.roster_add(c, 'C')
        s.drain()
        res = self.ver_get(s, '')
        query = res.find(QUERY)
        self.assertIsNotNone(query, show(res))
        ver = query.get('ver')
        self.assertTrue(ver, '§2.6.3: the result carries a ver: %s' % show(res))
        self.assertEqual([parse_item(i).jid for i in query.findall(ITEM)], [c])
        res = self.ver_get(s, ver)
        q2 = res.find(QUERY)
        if q2 is not None:
            self.assertEqual(q2.get('ver'), ver, show(res))
        self.assertEqual(s.drain(), [], 'no pushes for an unchanged roster')

    def test_pushes_carry_unique_versions(self):
        """§2.6.3: with versioning on, each push carries the new version,
        different each time; a get with the last one is up to date."""
        u = POOL.take()
        s = self.session(u, 'r', roster=False)
        v0 = self.ver_get(s, '').find(QUERY).get('ver')
        seen = [v0]
        for i in range(3):
            s.roster_add('c%d@example.org' % i)
            (push,) = [e for e in s.drain() if is_roster_push(e)]
            v = push.find(QUERY).get('ver')
            self.assertTrue(v, 'push without ver: %s' % show(push))
            self.assertNotIn(v, seen, 'version reused: %s' % show(push))
            seen.append(v)
        s.roster_set('c0@example.org', subscription='remove')
        (push,) = [e for e in s.drain() if is_roster_push(e)]
        self.assertNotIn(push.find(QUERY).get('ver'), seen)
        seen.append(push.find(QUERY).get('ver'))
        res = self.ver_get(s, seen[-1])
        q2 = res.find(QUERY)
        if q2 is not None:
            self.assertEqual(q2.get('ver'), seen[-1])
            self.assertEqual(sorted(parse_item(i).jid for i in q2.findall(ITEM)),
                             ['c1@example.org', 'c2@example.org'])
        self.assertEqual(s.drain(), [])

    def test_old_version_gets_changes(self):
        """§2.6.3: a get with an older version gets either the complete
        roster with the current ver, or an empty result followed by one
        push per item changed since, in order of modification, with the
        final state of each item (removed ones as subscription='remove'),
        the last one carrying the current version."""
        u = POOL.take()
        s = self.session(u, 'r', roster=False)
        self.ver_get(s, '')
        s.roster_add('keep@example.org', 'K')
        s.roster_add('gone@example.org', 'G')
        s.drain()
        old = self.ver_get(s, '').find(QUERY).get('ver')
        s.roster_add('new@example.org', 'N1')
        s.roster_add('new@example.org', 'N2')
        s.roster_set('gone@example.org', subscription='remove')
        s.roster_add('keep@example.org', 'K2')
        pushes = [e for e in s.drain() if is_roster_push(e)]
        current = pushes[-1].find(QUERY).get('ver')
        # A second session that last saw `old`.
        t = self.session(u, 'late', roster=False)
        res = self.ver_get(t, old)
        query = res.find(QUERY)
        if query is not None:
            self.assertEqual(query.get('ver'), current, show(res))
            items = {parse_item(i).jid: parse_item(i) for i in query.findall(ITEM)}
            self.assertEqual(sorted(items), ['keep@example.org', 'new@example.org'])
            self.assertEqual((items['keep@example.org'].name, items['new@example.org'].name),
                             ('K2', 'N2'))
            self.assertEqual(t.drain(), [])
        else:
            got = [e for e in t.drain()]
            self.assertTrue(all(is_roster_push(e) for e in got), show_all(got))
            final = [(push_item(p).jid, push_item(p).subscription, push_item(p).name)
                     for p in got]
            self.assertEqual(sorted(final), sorted([
                ('new@example.org', 'none', 'N2'),
                ('gone@example.org', 'remove', None),
                ('keep@example.org', 'none', 'K2')]), show_all(got))
            self.assertEqual(got[-1].find(QUERY).get('ver'), current)
            order = [x[0] for x in final]
            self.assertEqual(order, ['new@example.org', 'gone@example.org', 'keep@example.org'],
                             '§2.6.3: in order of modification')

    def test_subscription_pushes_carry_versions(self):
        """§2.6.3: pushes caused by subscription traffic carry the new
        version too, and a get with it is up to date."""
        u, c = POOL.take(2)
        s = self.session(u, 'r', roster=False)
        self.ver_get(s, '')
        t = self.session(c, 'r', roster=False)
        self.ver_get(t, '')
        settle([s, t])
        s.subscription('subscribe', c)
        settle([s, t])
        t.subscription('subscribed', u)
        got = settle([s, t])
        pushes = [e for e in got[s] if is_roster_push(e)]
        self.assertEqual([push_item(p).subscription for p in pushes], ['to'], show_all(got[s]))
        ver = pushes[0].find(QUERY).get('ver')
        self.assertTrue(ver, show(pushes[0]))
        res = self.ver_get(s, ver)
        q2 = res.find(QUERY)
        self.assertTrue(q2 is None or q2.get('ver') == ver, show(res))
        self.assertEqual(s.drain(), [])

    def test_version_without_request_no_ver(self):
        """§2.6.2: a get without 'ver' (a client that does not use
        versioning) still gets the complete roster."""
        u, c = POOL.take(2)
        s = self.session(u, 'r')
        s.roster_add(c)
        res = s.roster_get()
        self.assertEqual([parse_item(i).jid for i in res.find(QUERY).findall(ITEM)], [c])


class Limit(Base):
    """The configured roster size (roster = { max_items = N; })."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server(users={'lim@localhost': 'pw-lim', 'lc@localhost': 'pw-lc'},
                            top={'roster': {'max_items': 3}})

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_limit(self):
        """A set that would make the roster larger than max_items fails
        with not-allowed (cancel), changes nothing and pushes nothing;
        updating or removing an item at the limit still works, and then
        there is room again. An inbound subscription approval does not
        need an item (A.1 "None + Pending In")."""
        s = self.session('lim@localhost', 'r')
        for i in range(3):
            s.roster_add('c%d@example.org' % i)
        s.drain()
        res = s.roster_set('c3@example.org', name='one too many')
        self.assertError(res, 'not-allowed', 'cancel')
        self.assertEqual(s.drain(), [])
        self.assertEqual(sorted(s.roster()), ['c0@example.org', 'c1@example.org',
                                              'c2@example.org'])
        self.assertResult(s.roster_set('c1@example.org', name='renamed'), s)
        self.assertResult(s.roster_set('c0@example.org', subscription='remove'), s)
        s.drain()
        self.assertResult(s.roster_set('c3@example.org'), s)
        s.drain()
        self.assertEqual(len(s.roster()), 3)
        # An inbound request to a full roster is kept as pending, not an
        # item, and is delivered.
        s.presence()
        other = self.session('lc@localhost', 'o')
        settle([s, other])
        other.subscription('subscribe', 'lim@localhost')
        got = settle([s, other])
        self.assertEqual([e.get('type') for e in got[s] if e.tag == PRESENCE
                          and e.get('type') in imtest.SUB_TYPES],
                         ['subscribe'], show_all(got[s]))

    def test_outbound_subscribe_at_the_limit(self):
        """A subscription request to a contact not yet in a full roster
        would need a new item: the server refuses it with an error to the
        user (RFC 6121 §3.1.2: "any other error ... MUST return an
        appropriate error stanza"), routes nothing and adds nothing."""
        s = self.session('lim@localhost', 'r2')
        other = self.session('lc@localhost', 'o2')
        s.presence()
        other.presence()
        settle([s, other])
        before = s.roster()
        self.assertEqual(len(before), 3, before)
        s.subscription('subscribe', 'newcomer@example.org')
        got = settle([s, other])
        errs = [e for e in got[s] if e.get('type') == 'error']
        self.assertGreaterEqual(len(errs), 1, show_all(got[s]))
        self.assertEqual([e for e in got[other] if e.tag == PRESENCE
                          and e.get('type') in imtest.SUB_TYPES], [], show_all(got[other]))
        self.assertEqual(sorted(s.roster()), sorted(before))


class Persistence(Base):

    def test_roster_survives_restart(self):
        """Items (name, groups) and the version survive a restart."""
        own = Server(users={'per@localhost': 'pw-per'})
        try:
            s = self.session('per@localhost', 'r', server=own)
            s.roster_add('c@example.org', 'Cee', ('G1', 'G2'))
            s.drain()
            ver = s.roster_get(ver='').find(QUERY).get('ver')
            own.stop()
            own.start()
            t = self.session('per@localhost', 'r2', server=own, roster=False)
            item = t.roster()['c@example.org']
            self.assertEqual((item.name, sorted(item.groups), item.subscription),
                             ('Cee', ['G1', 'G2'], 'none'))
            res = t.roster_get(ver=ver)
            q2 = res.find(QUERY)
            self.assertTrue(q2 is None or q2.get('ver') == ver, show(res))
            self.assertEqual(t.drain(), [], 'nothing changed since %s' % ver)
        finally:
            own.stop()


if __name__ == '__main__':
    harness.main()
