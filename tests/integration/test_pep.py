"""XEP-0163 Personal Eventing Protocol over real sockets (issue 10): publish
(auto-create, publish-options and their preconditions, generated ids,
max_items), items as the access models allow, retract with notify, node
configuration and deletion, notifications filtered by presence
subscription and by +notify in caps the server verified (XEP-0115), and
what survives a restart. The payloads are the ones clients publish:
XEP-0172 nicknames and XEP-0402 bookmarks.

alice and bob have a subscription both (starlingctl), carol none.

Run: python3 test_pep.py STARLINGD STARLINGCTL
"""
import base64
import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import NS_CLIENT, q, stanza_error_condition  # noqa: E402
from imtest import MESSAGE, Session  # noqa: E402

NS_PS = 'http://jabber.org/protocol/pubsub'
NS_OWNER = NS_PS + '#owner'
NS_EVENT = NS_PS + '#event'
NS_ERR = NS_PS + '#errors'
NS_INFO = 'http://jabber.org/protocol/disco#info'
NS_ITEMS = 'http://jabber.org/protocol/disco#items'
NS_CAPS = 'http://jabber.org/protocol/caps'
NS_DATA = 'jabber:x:data'
NICK = 'http://jabber.org/protocol/nick'
BM = 'urn:xmpp:bookmarks:1'


def caps_ver(features):
    s = 'client/pc//Test<' + ''.join('%s<' % f for f in sorted(features))
    return base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()


def publish(node, payload, item_id=None, options=None):
    opts = ''
    if options:
        opts = ("<publish-options><x xmlns='%s' type='submit'><field "
                "var='FORM_TYPE' type='hidden'><value>%s#publish-options"
                "</value></field>%s</x></publish-options>"
                % (NS_DATA, NS_PS, ''.join(
                    "<field var='%s'><value>%s</value></field>" % kv
                    for kv in options.items())))
    idattr = " id='%s'" % item_id if item_id else ''
    return ("<pubsub xmlns='%s'><publish node='%s'><item%s>%s</item>"
            "</publish>%s</pubsub>" % (NS_PS, node, idattr, payload, opts))


def items(node, extra=''):
    return "<pubsub xmlns='%s'><items node='%s'%s/></pubsub>" % (NS_PS, node,
                                                                 extra)


def app_error(el):
    err = el.find(q(NS_CLIENT, 'error'))
    return [c.tag.split('}')[1] for c in err if c.tag.startswith('{%s}'
                                                                  % NS_ERR)]


def got_items(res):
    its = res.find('%s/%s' % (q(NS_PS, 'pubsub'), q(NS_PS, 'items')))
    return [(i.get('id'), i[0] if len(i) else None)
            for i in its.findall(q(NS_PS, 'item'))]


def is_event(node):
    def pred(el):
        if el.tag != MESSAGE:
            return False
        its = el.find('%s/%s' % (q(NS_EVENT, 'event'), q(NS_EVENT, 'items')))
        return its is not None and its.get('node') == node
    return pred


class Pep(harness.FreshServerTestCase):

    friends = (('alice@localhost', 'bob@localhost'),)

    def session(self, jid, resource, notify=()):
        """Logged in and available; with `notify`, caps that announce
        NODE+notify for each, verified by the server (its query is
        answered here)."""
        s = Session(self.login(self.srv, jid, resource=resource))
        s.roster()
        if not notify:
            s.presence()
            s.drain()
            return s
        feats = [NS_INFO, NS_CAPS] + ['%s+notify' % n for n in notify]
        ver = caps_ver(feats)
        s.send("<presence><c xmlns='%s' hash='sha-1' node='urn:test' "
               "ver='%s'/></presence>" % (NS_CAPS, ver))
        # The server asks only for a ver it does not know yet; what else
        # came meanwhile (last items) stays for the test.
        got = s.drain()
        queries = [el for el in got if el.tag == q(NS_CLIENT, 'iq')
                   and el.get('type') == 'get']
        s.backlog.extend(el for el in got if el not in queries)
        for qy in queries:
            s.send("<iq type='result' id='%s' to='localhost'><query "
                   "xmlns='%s' node='urn:test#%s'><identity category='client' "
                   "type='pc' name='Test'/>%s</query></iq>"
                   % (qy.get('id'), NS_INFO, ver,
                      ''.join("<feature var='%s'/>" % f for f in feats)))
        return s

    def test_nick_notifications_and_access(self):
        """A nickname (XEP-0172) published by alice reaches bob (presence
        subscription, +notify) and her own other resource (+notify); not
        bob's resource without +notify, not carol (no subscription). Bob
        can read the node, carol cannot (presence access)."""
        bob = self.session('bob@localhost', 'n', notify=[NICK])
        bob_plain = self.session('bob@localhost', 'plain')
        carol = self.session('carol@localhost', 'n', notify=[NICK])
        alice2 = self.session('alice@localhost', 'other', notify=[NICK])
        alice = self.session('alice@localhost', 'pub')
        r = alice.iq('set', publish(NICK, "<nick xmlns='%s'>Alice</nick>"
                                    % NICK))
        self.assertEqual(r.get('type'), 'result')
        pub = r.find('%s/%s/%s' % (q(NS_PS, 'pubsub'), q(NS_PS, 'publish'),
                                   q(NS_PS, 'item')))
        item_id = pub.get('id')
        self.assertTrue(item_id)
        for s in (bob, alice2):
            ev = s.wait(is_event(NICK), 'the nick event')
            self.assertEqual((ev.get('from'), ev.get('type')),
                             ('alice@localhost', 'headline'))
            it = ev.find('%s/%s/%s' % (q(NS_EVENT, 'event'),
                                       q(NS_EVENT, 'items'),
                                       q(NS_EVENT, 'item')))
            self.assertEqual(it.get('id'), item_id)
            self.assertEqual(it.findtext(q(NICK, 'nick')), 'Alice')
        for s in (bob_plain, carol):
            self.assertEqual([el for el in s.drain() if is_event(NICK)(el)],
                             [], s.jid)
        r = bob.iq('get', items(NICK), to='alice@localhost')
        self.assertEqual(r.get('from'), 'alice@localhost')
        [(iid, payload)] = got_items(r)
        self.assertEqual((iid, payload.text), (item_id, 'Alice'))
        r = carol.iq('get', items(NICK), to='alice@localhost')
        self.assertEqual(stanza_error_condition(r), ('auth', 'not-authorized'))
        self.assertEqual(app_error(r), ['presence-subscription-required'])
        # max_items 1 (the default): a second nick replaces the first.
        alice.iq('set', publish(NICK, "<nick xmlns='%s'>Ally</nick>" % NICK,
                                item_id='current'))
        r = alice.iq('get', items(NICK))
        self.assertEqual([(i, p.text) for i, p in got_items(r)],
                         [('current', 'Ally')])
        # Retract with notify: bob hears of it; an unknown item:
        # item-not-found.
        bob.drain()
        r = alice.iq('set', "<pubsub xmlns='%s'><retract node='%s' "
                     "notify='true'><item id='current'/></retract></pubsub>"
                     % (NS_PS, NICK))
        self.assertEqual(r.get('type'), 'result')
        ev = bob.wait(is_event(NICK), 'the retract event')
        self.assertEqual(ev.find('%s/%s/%s' % (
            q(NS_EVENT, 'event'), q(NS_EVENT, 'items'),
            q(NS_EVENT, 'retract'))).get('id'), 'current')
        r = alice.iq('set', "<pubsub xmlns='%s'><retract node='%s'><item "
                     "id='nope'/></retract></pubsub>" % (NS_PS, NICK))
        self.assertEqual(stanza_error_condition(r),
                         ('cancel', 'item-not-found'))

    def test_blocked_contact_gets_no_notifications(self):
        """XEP-0163 §4.3.2: a contact the owner blocks (XEP-0191) gets no
        notification and no last item; unblocked, it gets them again."""
        alice = self.session('alice@localhost', 'pub')
        r = alice.iq('set', "<block xmlns='urn:xmpp:blocking'><item "
                     "jid='bob@localhost'/></block>")
        self.assertEqual(r.get('type'), 'result')
        alice.iq('set', publish(NICK, "<nick xmlns='%s'>Hidden</nick>" % NICK))
        bob = self.session('bob@localhost', 'n', notify=[NICK])
        alice.iq('set', publish(NICK, "<nick xmlns='%s'>Still</nick>" % NICK))
        self.assertEqual([el for el in bob.drain() if is_event(NICK)(el)], [])
        r = alice.iq('set', "<unblock xmlns='urn:xmpp:blocking'><item "
                     "jid='bob@localhost'/></unblock>")
        self.assertEqual(r.get('type'), 'result')
        alice.iq('set', publish(NICK, "<nick xmlns='%s'>Seen</nick>" % NICK))
        # Unblocked, bob may first get the last item he missed ("Still",
        # when his presence reaches alice again, §4.3.4), then the new one.
        got = []
        while 'Seen' not in got:
            ev = bob.wait(is_event(NICK), 'the nick event after unblocking')
            got.append(ev.findtext('.//' + q(NICK, 'nick')))
        self.assertIn(got, (['Seen'], ['Still', 'Seen']))

    def test_bookmarks_options_config_delete(self):
        """XEP-0402 bookmarks: publish-options whitelist and max_items
        max create the node so; a publish with other options gets
        conflict + precondition-not-met; bob may not read it (closed
        node); the configuration form says whitelist; configured open,
        carol reads it; deleted, it is gone. The items survive a
        restart."""
        alice = self.session('alice@localhost', 'bm')
        opts = {'pubsub#persist_items': 'true', 'pubsub#access_model':
                'whitelist', 'pubsub#max_items': 'max'}
        for room in ('a', 'b'):
            r = alice.iq('set', publish(
                BM, "<conference xmlns='%s' name='Room %s' autojoin='true'>"
                "<nick>alice</nick></conference>" % (BM, room),
                item_id='%s@muc.example' % room, options=opts))
            self.assertEqual(r.get('type'), 'result')
        r = alice.iq('set', publish(BM, "<conference xmlns='%s'/>" % BM,
                                    item_id='c@muc.example',
                                    options={'pubsub#access_model': 'open'}))
        self.assertEqual(stanza_error_condition(r), ('cancel', 'conflict'))
        self.assertEqual(app_error(r), ['precondition-not-met'])
        r = alice.iq('get', items(BM))
        self.assertEqual([i for i, _ in got_items(r)],
                         ['a@muc.example', 'b@muc.example'])
        self.assertEqual(got_items(r)[0][1].get('name'), 'Room a')
        r = alice.iq('get', items(BM, " max_items='1'"))
        self.assertEqual([i for i, _ in got_items(r)], ['b@muc.example'])
        bob = self.session('bob@localhost', 'bm')
        r = bob.iq('get', items(BM), to='alice@localhost')
        self.assertEqual(stanza_error_condition(r), ('cancel', 'not-allowed'))
        self.assertEqual(app_error(r), ['closed-node'])
        # The configuration form, then open.
        r = alice.iq('get', "<pubsub xmlns='%s'><configure node='%s'/>"
                     "</pubsub>" % (NS_OWNER, BM))
        fields = {f.get('var'): f.findtext(q(NS_DATA, 'value'))
                  for f in r.iter(q(NS_DATA, 'field'))}
        self.assertEqual(fields['pubsub#access_model'], 'whitelist')
        self.assertEqual(fields['pubsub#max_items'], '256')
        r = alice.iq('set', "<pubsub xmlns='%s'><configure node='%s'><x "
                     "xmlns='%s' type='submit'><field var='FORM_TYPE' "
                     "type='hidden'><value>%s#node_config</value></field>"
                     "<field var='pubsub#access_model'><value>open</value>"
                     "</field></x></configure></pubsub>"
                     % (NS_OWNER, BM, NS_DATA, NS_PS))
        self.assertEqual(r.get('type'), 'result')
        carol = self.session('carol@localhost', 'bm')
        r = carol.iq('get', items(BM), to='alice@localhost')
        self.assertEqual(len(got_items(r)), 2, harness.ET.tostring(r))
        # Survives a restart.
        for s in (alice, bob, carol):
            s.c.close()
        self.srv.stop()
        self.srv.start()
        alice = self.session('alice@localhost', 'bm')
        r = alice.iq('get', items(BM))
        self.assertEqual(len(got_items(r)), 2)
        # Deleted.
        r = alice.iq('set', "<pubsub xmlns='%s'><delete node='%s'/></pubsub>"
                     % (NS_OWNER, BM))
        self.assertEqual(r.get('type'), 'result')
        r = alice.iq('get', items(BM))
        self.assertEqual(stanza_error_condition(r),
                         ('cancel', 'item-not-found'))

    def test_last_items_at_login(self):
        """§4.3.4: a session whose caps say NODE+notify gets, once they
        are known, the last item of that node of its own account and of
        contacts whose presence it sees — not of a whitelist node of
        someone else, nothing from someone it has no subscription to. The
        first login has its caps verified (the query is answered), the
        second has a ver the server knows already."""
        alice = self.session('alice@localhost', 'pub')
        alice.iq('set', publish(NICK, "<nick xmlns='%s'>Alice</nick>" % NICK))
        alice.iq('set', publish(NICK, "<nick xmlns='%s'>Al</nick>" % NICK,
                                item_id='latest'))
        alice.iq('set', publish(BM, "<conference xmlns='%s' name='R'/>" % BM,
                                item_id='r@muc.example',
                                options={'pubsub#access_model':
                                         'whitelist'}))
        for resource in ('first', 'second'):
            bob = self.session('bob@localhost', resource, notify=[NICK, BM])
            ev = bob.wait(is_event(NICK), 'the last nick')
            self.assertEqual(ev.get('from'), 'alice@localhost')
            it = ev.find('%s/%s/%s' % (q(NS_EVENT, 'event'),
                                       q(NS_EVENT, 'items'),
                                       q(NS_EVENT, 'item')))
            self.assertEqual((it.get('id'), it.findtext(q(NICK, 'nick'))),
                             ('latest', 'Al'))
            self.assertEqual([el for el in bob.drain()
                              if is_event(BM)(el)], [], 'whitelist')
        own = self.session('alice@localhost', 'own', notify=[NICK, BM])
        own.wait(is_event(BM), 'her own bookmarks')
        own.wait(is_event(NICK), 'her own nick')
        carol = self.session('carol@localhost', 'c', notify=[NICK])
        self.assertEqual([el for el in carol.drain() if is_event(NICK)(el)],
                         [], 'no subscription')

    def test_legacy_bookmarks_conversion(self):
        """XEP-0411: bookmarks a legacy client keeps in private storage
        are the PEP node storage:bookmarks (a notification to the
        resources that want it; whitelist: bob may not read it), and
        bookmarks published there are what private storage returns."""
        LEG = 'storage:bookmarks'
        pep_client = self.session('alice@localhost', 'modern', notify=[LEG])
        legacy = self.session('alice@localhost', 'legacy')
        r = legacy.iq('set', "<query xmlns='jabber:iq:private'><storage "
                      "xmlns='%s'><conference jid='a@muc.example' "
                      "name='A' autojoin='true'><nick>al</nick></conference>"
                      "</storage></query>" % LEG)
        self.assertEqual(r.get('type'), 'result')
        ev = pep_client.wait(is_event(LEG), 'the converted bookmarks')
        conf = ev.find('%s/%s/%s/%s/%s' % (
            q(NS_EVENT, 'event'), q(NS_EVENT, 'items'), q(NS_EVENT, 'item'),
            q(LEG, 'storage'), q(LEG, 'conference')))
        self.assertEqual(conf.get('jid'), 'a@muc.example')
        r = pep_client.iq('get', items(LEG))
        [(iid, storage)] = got_items(r)
        self.assertEqual(storage.find(q(LEG, 'conference')).get('name'), 'A')
        bob = self.session('bob@localhost', 'leg')
        r = bob.iq('get', items(LEG), to='alice@localhost')
        self.assertEqual(app_error(r), ['closed-node'])
        # The other way: a PEP publish is what private storage returns.
        r = pep_client.iq('set', publish(
            LEG, "<storage xmlns='%s'><conference jid='b@muc.example' "
            "name='B'/></storage>" % LEG, item_id='current'))
        self.assertEqual(r.get('type'), 'result')
        r = legacy.iq('get', "<query xmlns='jabber:iq:private'><storage "
                      "xmlns='%s'/></query>" % LEG)
        confs = r.findall('%s/%s/%s' % (q('jabber:iq:private', 'query'),
                                        q(LEG, 'storage'), q(LEG, 'conference')))
        self.assertEqual([c.get('jid') for c in confs], ['b@muc.example'])
        r = legacy.iq('get', "<query xmlns='%s'/>" % NS_INFO,
                      to='alice@localhost')
        self.assertIn('urn:xmpp:bookmarks-conversion:0',
                      {f.get('var') for f in r.iter(q(NS_INFO, 'feature'))})

    def test_avatar_conversion(self):
        """XEP-0398: alice's XEP-0084 avatar becomes her vCard's PHOTO
        (bob reads it), and its SHA-1 is added to her presence (XEP-0153)
        unless she says "none" herself; after a restart too. carol's
        vCard PHOTO gives her directed presence the hash as well."""
        png = b'\x89PNG\r\n\x1a\n' + bytes(range(200))
        sha = hashlib.sha1(png).hexdigest()
        b64 = base64.b64encode(png).decode()
        bob = self.session('bob@localhost', 'av')
        alice = self.session('alice@localhost', 'av')
        alice.iq('set', publish('urn:xmpp:avatar:data',
                                "<data xmlns='urn:xmpp:avatar:data'>%s</data>"
                                % b64, item_id=sha))
        r = alice.iq('set', publish(
            'urn:xmpp:avatar:metadata',
            "<metadata xmlns='urn:xmpp:avatar:metadata'><info bytes='%d' "
            "id='%s' type='image/png' height='1' width='1'/></metadata>"
            % (len(png), sha), item_id=sha))
        self.assertEqual(r.get('type'), 'result')
        r = bob.iq('get', "<vCard xmlns='vcard-temp'/>", to='alice@localhost')
        photo = r.find('{vcard-temp}vCard/{vcard-temp}PHOTO')
        self.assertEqual(photo.findtext('{vcard-temp}TYPE'), 'image/png')
        self.assertEqual(base64.b64decode(photo.findtext('{vcard-temp}BINVAL')),
                         png)
        UPD = '{vcard-temp:x:update}'

        def photo_of(p):
            return p.findtext('%sx/%sphoto' % (UPD, UPD))
        bob.drain()
        alice.send('<presence><status>with avatar</status></presence>')
        p = bob.wait(lambda el: el.get('from') == 'alice@localhost/av' and
                     el.findtext(q(NS_CLIENT, 'status')) == 'with avatar',
                     'her presence')
        self.assertEqual(photo_of(p), sha)
        alice.send("<presence><status>none</status><x xmlns='vcard-temp:x:"
                   "update'><photo/></x></presence>")
        p = bob.wait(lambda el: el.findtext(q(NS_CLIENT, 'status')) == 'none',
                     'her presence without')
        self.assertEqual(photo_of(p), '')  # her empty <photo/>, kept
        # After a restart, from the store, at the first presence.
        for s in (alice, bob):
            s.c.close()
        self.srv.stop()
        self.srv.start()
        bob = self.session('bob@localhost', 'av2')
        alice = self.session('alice@localhost', 'av2')
        p = bob.wait(lambda el: el.get('from') == 'alice@localhost/av2',
                     'her presence after the restart')
        self.assertEqual(photo_of(p), sha)
        # A vCard PHOTO set directly.
        carol = self.session('carol@localhost', 'av')
        carol.iq('set', "<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png"
                 "</TYPE><BINVAL>%s</BINVAL></PHOTO></vCard>" % b64)
        carol.send("<presence to='bob@localhost'/>")
        p = bob.wait(lambda el: el.get('from') == 'carol@localhost/av',
                     "carol's directed presence")
        self.assertEqual(photo_of(p), sha)
        r = bob.iq('get', "<query xmlns='%s'/>" % NS_INFO, to='alice@localhost')
        self.assertIn('urn:xmpp:pep-vcard-conversion:0',
                      {f.get('var') for f in r.iter(q(NS_INFO, 'feature'))})

    def test_errors_and_disco(self):
        """Publishing to another account: forbidden; no payload:
        bad-request + item-required / invalid-payload; no node:
        item-not-found; the account's disco#info says pubsub/pep and
        publish-options."""
        alice = self.session('alice@localhost', 'e')
        r = alice.iq('set', publish(NICK, "<nick xmlns='%s'>x</nick>" % NICK),
                     to='bob@localhost')
        self.assertEqual(stanza_error_condition(r), ('auth', 'forbidden'))
        r = alice.iq('set', "<pubsub xmlns='%s'><publish node='x'/></pubsub>"
                     % NS_PS)
        self.assertEqual(app_error(r), ['item-required'])
        r = alice.iq('set', publish('x', "<a xmlns='urn:a'/><b xmlns='urn:b'/>"))
        self.assertEqual(app_error(r), ['invalid-payload'])
        r = alice.iq('get', items('nothing-here'))
        self.assertEqual(stanza_error_condition(r),
                         ('cancel', 'item-not-found'))
        r = alice.iq('get', "<query xmlns='%s'/>" % NS_INFO,
                     to='bob@localhost')
        query = r.find(q(NS_INFO, 'query'))
        ids = [(i.get('category'), i.get('type'))
               for i in query.findall(q(NS_INFO, 'identity'))]
        self.assertIn(('pubsub', 'pep'), ids)
        feats = {f.get('var') for f in query.findall(q(NS_INFO, 'feature'))}
        self.assertIn(NS_PS + '#publish-options', feats)
        # disco#items of an account: the nodes the requester may read.
        alice.iq('set', publish(NICK, "<nick xmlns='%s'>A</nick>" % NICK))
        alice.iq('set', publish(BM, "<conference xmlns='%s'/>" % BM,
                                item_id='r@muc.example',
                                options={'pubsub#access_model': 'whitelist'}))
        bob = self.session('bob@localhost', 'e')
        carol = self.session('carol@localhost', 'e')
        for s, to, want in ((alice, None, {NICK, BM}),
                            (bob, 'alice@localhost', {NICK}),
                            (carol, 'alice@localhost', set())):
            r = s.iq('get', "<query xmlns='%s'/>" % NS_ITEMS, to=to)
            its = r.find(q(NS_ITEMS, 'query')).findall(q(NS_ITEMS, 'item'))
            self.assertEqual({i.get('node') for i in its}, want, s.jid)
            self.assertEqual({i.get('jid') for i in its},
                             {'alice@localhost'} if want else set())
        r = bob.iq('get', "<query xmlns='%s'/>" % NS_ITEMS,
                   to='nobody@localhost')
        self.assertEqual(stanza_error_condition(r),
                         ('cancel', 'service-unavailable'))


if __name__ == '__main__':
    harness.main()
