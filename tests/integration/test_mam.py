"""XEP-0313 message archives over real sockets: messages archived in both
accounts with the XEP-0359 stanza id stamped on the recipient's copy,
queries (all, with a party, a time span, RSM pages forward and backward,
before-id/after-id, an unknown id), the form, preferences (never stops
archiving), hints (no-store), the archive across a kill -9 (what the
server acknowledged is there), and the disco features; the #extended
features (ids, flipped pages, archive metadata, unknown fields), the
preferences' always/never lists and the roster default (with the account
online and offline, kept across a restart), and the archive ids in
carbon copies.

Run: python3 test_mam.py STARLINGD STARLINGCTL
"""
import datetime
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import NS_CLIENT, iq, q, stanza_error_condition  # noqa: E402

NS_MAM = 'urn:xmpp:mam:2'
NS_SID = 'urn:xmpp:sid:0'
NS_RSM = 'http://jabber.org/protocol/rsm'
NS_FWD = 'urn:xmpp:forward:0'
NS_DELAY = 'urn:xmpp:delay'
NS_DATA = 'jabber:x:data'
NS_INFO = 'http://jabber.org/protocol/disco#info'
MESSAGE = q(NS_CLIENT, 'message')


def form(**fields):
    out = ("<x xmlns='%s' type='submit'><field var='FORM_TYPE' type='hidden'>"
           "<value>%s</value></field>" % (NS_DATA, NS_MAM))
    for k, v in fields.items():
        out += "<field var='%s'><value>%s</value></field>" % (
            k.replace('_', '-'), v)
    return out + '</x>'


def rsm(max_=None, after=None, before=None):
    out = "<set xmlns='%s'>" % NS_RSM
    if max_ is not None:
        out += '<max>%d</max>' % max_
    if after is not None:
        out += '<after>%s</after>' % after
    if before is not None:
        out += '<before>%s</before>' % before if before else '<before/>'
    return out + '</set>'


def query(c, payload='', qid='q1'):
    """Sends a query; returns (results, fin IQ)."""
    iid = c.next_id('mam')
    c.send("<iq type='set' id='%s'><query xmlns='%s' queryid='%s'>%s</query>"
           "</iq>" % (iid, NS_MAM, qid, payload))
    results = []
    while True:
        el = c.expect_element()
        if el.tag == q(NS_CLIENT, 'iq') and el.get('id') == iid:
            return results, el
        res = el.find(q(NS_MAM, 'result'))
        if el.tag == MESSAGE and res is not None:
            assert res.get('queryid') == qid
            results.append(res)


def bodies(results):
    return [r.find('%s/%s/%s' % (q(NS_FWD, 'forwarded'), MESSAGE,
                                 q(NS_CLIENT, 'body'))).text for r in results]


def ids_form(*ids, **fields):
    out = form(**fields)[:-len('</x>')]
    out += "<field var='ids'>%s</field>" % ''.join(
        '<value>%s</value>' % i for i in ids)
    return out + '</x>'


def fin_info(fin_iq):
    fin = fin_iq.find(q(NS_MAM, 'fin'))
    s = fin.find(q(NS_RSM, 'set'))
    return (fin.get('complete') == 'true', s.findtext(q(NS_RSM, 'first')),
            s.findtext(q(NS_RSM, 'last')))


class Archive(harness.FreshServerTestCase):

    def talk(self, alice, bob, n, tag='m'):
        for i in range(n):
            alice.send("<message to='bob@localhost' type='chat' id='%s%d'>"
                       "<body>%s%d</body></message>" % (tag, i, tag, i))
        alice.sync()
        got = []
        while len(got) < n:
            el = bob.expect_element()
            if el.tag == MESSAGE:
                got.append(el)
        return got

    def pair(self):
        alice = self.login(self.srv, 'alice@localhost', resource='a')
        bob = self.login(self.srv, 'bob@localhost', resource='b')
        bob.presence()
        return alice, bob

    def test_archive_and_query(self):
        alice, bob = self.pair()
        got = self.talk(alice, bob, 6)
        # XEP-0359 on the recipient's copy, by its archive.
        sids = [m.find(q(NS_SID, 'stanza-id')) for m in got]
        self.assertTrue(all(s is not None and s.get('by') == 'bob@localhost'
                            for s in sids))
        bob.send("<message to='alice@localhost' type='chat'><body>reply"
                 "</body></message>")
        bob.sync()
        # alice's archive: her 6 and bob's reply, oldest first.
        res, fin = query(alice)
        self.assertEqual(bodies(res), ['m%d' % i for i in range(6)] +
                         ['reply'])
        self.assertEqual(fin.get('type'), 'result')
        complete, first, last = fin_info(fin)
        self.assertTrue(complete)
        self.assertEqual((first, last), (res[0].get('id'), res[-1].get('id')))
        fwd = res[0].find(q(NS_FWD, 'forwarded'))
        self.assertIsNotNone(fwd.find(q(NS_DELAY, 'delay')).get('stamp'))
        self.assertEqual(fwd.find(MESSAGE).get('to'), 'bob@localhost')
        # bob's archive holds the ids he was given.
        res, _ = query(bob)
        self.assertEqual([r.get('id') for r in res[:6]],
                         [s.get('id') for s in sids])
        # RSM: pages of 2 forward, then the last page backward.
        res, fin = query(alice, rsm(max_=2))
        self.assertEqual(bodies(res), ['m0', 'm1'])
        self.assertFalse(fin_info(fin)[0])
        res, fin = query(alice, rsm(max_=2, after=fin_info(fin)[2]))
        self.assertEqual(bodies(res), ['m2', 'm3'])
        res, fin = query(alice, rsm(max_=3, before=''))
        self.assertEqual(bodies(res), ['m4', 'm5', 'reply'])
        self.assertFalse(fin_info(fin)[0])
        res, fin = query(alice, rsm(max_=3, before=fin_info(fin)[1]))
        self.assertEqual(bodies(res), ['m1', 'm2', 'm3'])
        # Filters: a party, ids, a time span that holds nothing.
        res, _ = query(alice, form(**{'with': 'bob@localhost/b'}))
        self.assertEqual(bodies(res), ['reply'])
        all_res, _ = query(alice)
        res, _ = query(alice, form(after_id=all_res[1].get('id'),
                                   before_id=all_res[4].get('id')))
        self.assertEqual(bodies(res), ['m2', 'm3'])
        past = '2001-01-01T00:00:00Z'
        res, fin = query(alice, form(end=past))
        self.assertEqual(res, [])
        self.assertTrue(fin_info(fin)[0])
        now = datetime.datetime.now(datetime.timezone.utc)
        res, _ = query(alice, form(start=(now - datetime.timedelta(
            minutes=5)).strftime('%Y-%m-%dT%H:%M:%S.000Z')))
        self.assertEqual(len(res), 7)
        # An unknown id: item-not-found; a bad form: bad-request.
        _, fin = query(alice, rsm(after='nope'))
        self.assertEqual(stanza_error_condition(fin),
                         ('cancel', 'item-not-found'))
        for bad in ('yesterday', '2020-01-01T00:00:00+1:2',
                    '2020-13-01T00:00:00Z', '2020-01-01T00:00:00',
                    '2020-01-01T00:00:00.Z', ' 2020-01-01T00:00:00Z',
                    '2020-01-01T00:00:00Z '):
            _, fin = query(alice, form(start=bad))
            self.assertEqual(stanza_error_condition(fin),
                             ('modify', 'bad-request'), bad)
        # An offset and fractions: the same instant as in UTC.
        res, _ = query(alice, form(start=(now - datetime.timedelta(
            minutes=5)).strftime('%Y-%m-%dT%H:%M:%S.123456+00:00')))
        self.assertEqual(len(res), 7)
        res, _ = query(alice, form(end=(now - datetime.timedelta(
            minutes=5)).strftime('%Y-%m-%dT%H:%M:%S-01:00')))
        self.assertEqual(len(res), 7)

    def test_form_prefs_hints_disco(self):
        alice, bob = self.pair()
        r = iq(alice, None, "<query xmlns='%s'/>" % NS_MAM)
        fields = [f.get('var') for f in r.iter(q(NS_DATA, 'field'))]
        for v in ('FORM_TYPE', 'with', 'start', 'end', 'before-id',
                  'after-id'):
            self.assertIn(v, fields)
        r = iq(alice, 'alice@localhost', "<query xmlns='%s'/>" % NS_INFO)
        feats = {f.get('var') for f in r.iter(q(NS_INFO, 'feature'))}
        self.assertTrue({NS_MAM, NS_SID} <= feats)
        r = iq(alice, None, "<prefs xmlns='%s'/>" % NS_MAM)
        self.assertEqual(r.find(q(NS_MAM, 'prefs')).get('default'), 'always')
        r = iq(alice, None, "<prefs xmlns='%s' default='never'/>" % NS_MAM,
               'set')
        self.assertEqual(r.find(q(NS_MAM, 'prefs')).get('default'), 'never')
        self.talk(alice, bob, 1, 'n')
        res, _ = query(alice)
        self.assertEqual(res, [])
        # bob's archive still has it (his preference).
        res, _ = query(bob)
        self.assertEqual(bodies(res), ['n0'])
        # A no-store hint: in nobody's archive.
        alice.send("<message to='bob@localhost' type='chat'><body>secret"
                   "</body><no-store xmlns='urn:xmpp:hints'/></message>")
        alice.sync()
        res, _ = query(bob)
        self.assertEqual(bodies(res), ['n0'])
        # A <store/> hint (XEP-0334 §4.4): kept without a body; a
        # headline too; an error never.
        alice.send("<message to='bob@localhost' type='chat' id='st'><active "
                   "xmlns='http://jabber.org/protocol/chatstates'/><store "
                   "xmlns='urn:xmpp:hints'/></message><message "
                   "to='bob@localhost' type='headline' id='hl'><body>news"
                   "</body><store xmlns='urn:xmpp:hints'/></message><message "
                   "to='bob@localhost' type='error' id='er'><store "
                   "xmlns='urn:xmpp:hints'/></message>")
        alice.sync()
        res, _ = query(bob)
        self.assertEqual([r.find('%s/%s' % (q(NS_FWD, 'forwarded'),
                                            MESSAGE)).get('id')
                          for r in res][1:], ['st', 'hl'])
        r = iq(alice, None, "<prefs xmlns='%s' default='sometimes'/>" % NS_MAM,
               'set')
        self.assertEqual(stanza_error_condition(r), ('modify', 'bad-request'))

    def test_survives_sigkill(self):
        """What the sender saw acknowledged (an answer after it) is in
        the archive after a kill -9."""
        alice, bob = self.pair()
        self.talk(alice, bob, 3, 'k')
        self.srv.kill()
        self.srv.start()
        alice = self.login(self.srv, 'alice@localhost', resource='a2')
        res, _ = query(alice)
        self.assertEqual(bodies(res), ['k0', 'k1', 'k2'])


class Extended(harness.FreshServerTestCase):
    """urn:xmpp:mam:2#extended: ids, flipped pages, metadata."""

    def test_extended(self):
        alice = self.login(self.srv, 'alice@localhost', resource='a')
        r = iq(alice, 'alice@localhost', "<query xmlns='%s'/>" % NS_INFO)
        feats = {f.get('var') for f in r.iter(q(NS_INFO, 'feature'))}
        self.assertIn(NS_MAM + '#extended', feats)
        # The form: ids is list-multi with an open validation (XEP-0122).
        r = iq(alice, None, "<query xmlns='%s'/>" % NS_MAM)
        ids_field = [f for f in r.iter(q(NS_DATA, 'field'))
                     if f.get('var') == 'ids'][0]
        self.assertEqual(ids_field.get('type'), 'list-multi')
        v = ids_field.find(q('http://jabber.org/protocol/xdata-validate',
                             'validate'))
        self.assertIsNotNone(
            v.find(q('http://jabber.org/protocol/xdata-validate', 'open')))
        # Metadata of an empty archive: an empty element.
        r = iq(alice, None, "<metadata xmlns='%s'/>" % NS_MAM)
        md = r.find(q(NS_MAM, 'metadata'))
        self.assertEqual(r.get('type'), 'result')
        self.assertEqual(list(md), [])
        for i in range(5):
            alice.send("<message to='carol@localhost' type='chat'>"
                       "<body>x%d</body></message>" % i)
        alice.sync()
        res, _ = query(alice)
        ids = [r_.get('id') for r_ in res]
        self.assertEqual(bodies(res), ['x%d' % i for i in range(5)])
        # Metadata: the first and the last.
        r = iq(alice, None, "<metadata xmlns='%s'/>" % NS_MAM)
        md = r.find(q(NS_MAM, 'metadata'))
        self.assertEqual(md.find(q(NS_MAM, 'start')).get('id'), ids[0])
        self.assertEqual(md.find(q(NS_MAM, 'end')).get('id'), ids[-1])
        stamps = [x.find('%s/%s' % (q(NS_FWD, 'forwarded'),
                                    q(NS_DELAY, 'delay'))).get('stamp')
                  for x in (res[0], res[-1])]
        self.assertEqual(md.find(q(NS_MAM, 'start')).get('timestamp'),
                         stamps[0])
        self.assertEqual(md.find(q(NS_MAM, 'end')).get('timestamp'),
                         stamps[1])
        # ids: single items, in archive order whatever the order asked.
        res, fin = query(alice, ids_form(ids[3], ids[1]))
        self.assertEqual(bodies(res), ['x1', 'x3'])
        self.assertTrue(fin_info(fin)[0])
        res, _ = query(alice, ids_form(ids[2]))
        self.assertEqual(bodies(res), ['x2'])
        # ids with another filter: only those that match it.
        res, _ = query(alice, ids_form(ids[0], ids[4], after_id=ids[1]))
        self.assertEqual(bodies(res), ['x4'])
        res, _ = query(alice, ids_form(ids[0], **{'with': 'bob@localhost'}))
        self.assertEqual(res, [])
        # An id not in the archive: item-not-found.
        _, fin = query(alice, ids_form(ids[0], 'nope'))
        self.assertEqual(stanza_error_condition(fin),
                         ('cancel', 'item-not-found'))
        # Flipped pages: the same page, sent newest first.
        res, fin = query(alice, rsm(max_=3, before='') + '<flip-page/>')
        self.assertEqual(bodies(res), ['x4', 'x3', 'x2'])
        _, first, last = fin_info(fin)
        self.assertEqual((first, last), (ids[2], ids[4]))
        res, _ = query(alice, rsm(max_=2) + '<flip-page/>')
        self.assertEqual(bodies(res), ['x1', 'x0'])
        # RSM counts: asked for with max 0 (§2.6), and given with a page
        # that is the whole set; pages by index are not offered.
        res, fin = query(alice, rsm(max_=0))
        self.assertEqual(res, [])
        s = fin.find('%s/%s' % (q(NS_MAM, 'fin'), q(NS_RSM, 'set')))
        self.assertEqual(s.findtext(q(NS_RSM, 'count')), '5')
        self.assertNotEqual(fin.find(q(NS_MAM, 'fin')).get('complete'),
                            'true')
        res, fin = query(alice, form(**{'with': 'carol@localhost'}) +
                         rsm(max_=0))
        s = fin.find('%s/%s' % (q(NS_MAM, 'fin'), q(NS_RSM, 'set')))
        self.assertEqual(s.findtext(q(NS_RSM, 'count')), '5')
        res, fin = query(alice, form(**{'with': 'bob@localhost'}) +
                         rsm(max_=0))
        s = fin.find('%s/%s' % (q(NS_MAM, 'fin'), q(NS_RSM, 'set')))
        self.assertEqual(s.findtext(q(NS_RSM, 'count')), '0')
        res, fin = query(alice)
        s = fin.find('%s/%s' % (q(NS_MAM, 'fin'), q(NS_RSM, 'set')))
        self.assertEqual(s.findtext(q(NS_RSM, 'count')), '5')
        self.assertEqual(s.find(q(NS_RSM, 'first')).get('index'), '0')
        res, fin = query(alice, rsm(max_=2))
        s = fin.find('%s/%s' % (q(NS_MAM, 'fin'), q(NS_RSM, 'set')))
        self.assertIsNone(s.find(q(NS_RSM, 'count')))
        _, fin = query(alice, "<set xmlns='%s'><max>2</max><index>3</index>"
                       "</set>" % NS_RSM)
        self.assertEqual(stanza_error_condition(fin),
                         ('cancel', 'feature-not-implemented'))
        # A field nobody defined: feature-not-implemented (§4.1.4).
        _, fin = query(alice, form(**{'x-unknown': '1'}))
        self.assertEqual(stanza_error_condition(fin),
                         ('cancel', 'feature-not-implemented'))


class Preferences(harness.FreshServerTestCase):
    """Preferences with lists and the roster default (alice has bob in
    her roster, not carol)."""

    friends = (('alice@localhost', 'bob@localhost'),)

    def prefs(self, c, default, always=(), never=()):
        def lst(name, jids):
            return '<%s>%s</%s>' % (name, ''.join(
                '<jid>%s</jid>' % j for j in jids), name)
        r = iq(c, None, "<prefs xmlns='%s' default='%s'>%s%s</prefs>" % (
            NS_MAM, default, lst('always', always), lst('never', never)),
            'set')
        self.assertEqual(r.get('type'), 'result', r)
        return r.find(q(NS_MAM, 'prefs'))

    @staticmethod
    def lists(p):
        return (p.get('default'),
                [j.text for j in p.find(q(NS_MAM, 'always'))],
                [j.text for j in p.find(q(NS_MAM, 'never'))])

    def say(self, frm, to, body):
        frm.send("<message to='%s' type='chat'><body>%s</body></message>"
                 % (to, body))
        frm.sync()

    def test_lists(self):
        alice = self.login(self.srv, 'alice@localhost', resource='a')
        p = self.prefs(alice, 'always', never=['carol@localhost/x'])
        self.assertEqual(self.lists(p),
                         ('always', [], ['carol@localhost']))
        self.say(alice, 'bob@localhost', 'to-bob')
        self.say(alice, 'carol@localhost', 'to-carol')
        res, _ = query(alice)
        self.assertEqual(bodies(res), ['to-bob'])
        p = self.prefs(alice, 'never', always=['carol@localhost'])
        self.say(alice, 'bob@localhost', 'to-bob-2')
        self.say(alice, 'carol@localhost', 'to-carol-2')
        res, _ = query(alice)
        self.assertEqual(bodies(res), ['to-bob', 'to-carol-2'])
        # A JID that is not one: bad-request; the prefs stay.
        r = iq(alice, None, "<prefs xmlns='%s' default='always'><always>"
               "<jid>@@</jid></always></prefs>" % NS_MAM, 'set')
        self.assertEqual(stanza_error_condition(r), ('modify', 'bad-request'))
        # Kept across a restart.
        self.srv.stop()
        self.srv.start()
        alice = self.login(self.srv, 'alice@localhost', resource='a')
        r = iq(alice, None, "<prefs xmlns='%s'/>" % NS_MAM)
        self.assertEqual(self.lists(r.find(q(NS_MAM, 'prefs'))),
                         ('never', ['carol@localhost'], []))
        self.say(alice, 'bob@localhost', 'to-bob-3')
        self.say(alice, 'carol@localhost', 'to-carol-3')
        res, _ = query(alice)
        self.assertEqual(bodies(res), ['to-bob', 'to-carol-2', 'to-carol-3'])

    def test_roster_default(self):
        bob = self.login(self.srv, 'bob@localhost', resource='b')
        bob.presence()
        carol = self.login(self.srv, 'carol@localhost', resource='c')
        alice = self.login(self.srv, 'alice@localhost', resource='a')
        alice.presence()
        self.prefs(alice, 'roster')
        bob.sync()
        # alice online: her roster in memory decides.
        self.say(alice, 'bob@localhost', 'a-to-bob')
        self.say(alice, 'carol@localhost', 'a-to-carol')
        self.say(bob, 'alice@localhost', 'bob-to-a')
        self.say(carol, 'alice@localhost', 'carol-to-a')
        got = [el for el in alice.sync() if el.tag == MESSAGE]
        res, _ = query(alice)
        self.assertEqual(bodies(res), ['a-to-bob', 'bob-to-a'])
        # The live copy names the archive item when there is one.
        sids = [m.find(q(NS_SID, 'stanza-id')) for m in got]
        self.assertEqual(sids[0].get('id'), res[1].get('id'))
        self.assertIsNone(sids[1])
        # alice offline (bob saw her go): her roster is read from the
        # store to decide.
        alice.close()
        while True:
            el = bob.expect_element()
            if el.tag == q(NS_CLIENT, 'presence') and \
                    el.get('type') == 'unavailable':
                break
        self.say(bob, 'alice@localhost', 'bob-offline')
        self.say(carol, 'alice@localhost', 'carol-offline')
        alice = self.login(self.srv, 'alice@localhost', resource='a2')
        res, _ = query(alice)
        self.assertEqual(bodies(res), ['a-to-bob', 'bob-to-a', 'bob-offline'])


class CarbonIds(harness.FreshServerTestCase):
    """XEP-0313 §3.2: carbon copies carry the archive id of the account
    they go to."""

    def test_carbon_ids(self):
        a1 = self.login(self.srv, 'alice@localhost', resource='one')
        a2 = self.login(self.srv, 'alice@localhost', resource='two')
        b1 = self.login(self.srv, 'bob@localhost', resource='one')
        b2 = self.login(self.srv, 'bob@localhost', resource='two')
        for c, prio in ((a1, 1), (a2, 0), (b1, 1), (b2, 0)):
            c.presence(priority=prio)
            r = iq(c, None, "<enable xmlns='urn:xmpp:carbons:2'/>", 'set')
            self.assertEqual(r.get('type'), 'result')
        for c in (a1, a2, b1, b2):
            c.sync()
        a1.send("<message to='bob@localhost/one' type='chat'><body>hi</body>"
                "</message>")
        a1.sync()
        NS_C = 'urn:xmpp:carbons:2'

        def carbon(c, wrap):
            for el in c.sync():
                w = el.find(q(NS_C, wrap))
                if el.tag == MESSAGE and w is not None:
                    return w.find('%s/%s' % (q(NS_FWD, 'forwarded'),
                                             MESSAGE))
            self.fail('no %s carbon' % wrap)
        sent = carbon(a2, 'sent')
        received = carbon(b2, 'received')
        live = [el for el in b1.sync() if el.tag == MESSAGE][0]
        a_res, _ = query(a1)
        b_res, _ = query(b1)
        s_sid = sent.findall(q(NS_SID, 'stanza-id'))
        self.assertEqual([(x.get('by'), x.get('id')) for x in s_sid],
                         [('alice@localhost', a_res[0].get('id'))])
        for m in (received, live):
            r_sid = m.findall(q(NS_SID, 'stanza-id'))
            self.assertEqual([(x.get('by'), x.get('id')) for x in r_sid],
                             [('bob@localhost', b_res[0].get('id'))])


if __name__ == '__main__':
    harness.main()
