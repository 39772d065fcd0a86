"""Presence subscriptions (feature set 10.3-2, 12-1..6; RFC 6121 §3 and
every row of Appendix A), both accounts on this server.

The matrix: for each of the nine states of RFC 6121 Appendix A.1 and each
of the four subscription stanzas, a fresh pair of accounts (user U and
contact C, each with two resources that requested the roster and sent
initial presence, each with the other in its roster) is put into the state
through the protocol; then U sends the stanza to C, and the test checks
against A.2 (U's server, outbound: route? new state) and A.3 (C's server,
inbound: deliver? new state, auto-reply):
  - both rosters (roster get: 'subscription', 'ask', 'approved');
  - one roster push to every interested resource of a side whose item
    changed, none to a side whose item did not;
  - the stanza delivered to C's available resources exactly when A.3 says
    so, stamped with U's bare JID (§3.1.2);
  - the presence that goes with it: C's current presence after an approval
    (§3.1.5), unavailable presence before an unsubscribed (§3.2.2) and
    after an unsubscribe (§3.3.3);
  - and nothing else (settle(): markers between every pair of sessions).
Pre-approval (§3.4) makes an outbound "subscribed" in None, None + Pending
Out and To set approved='true' instead of being dropped.

Run: python3 test_subscription.py STARLINGD STARLINGCTL
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import imtest  # noqa: E402
from harness import Server  # noqa: E402
from imtest import (PRESENCE, STATUS, Session, is_roster_push, item_view,  # noqa: E402
                    presences, push_item, settle, show, show_all)

# ------------------------------------------------------------ the model

# A state from one side: (subscription, pending out, pending in).
STATES = {
    'none': ('none', False, False),
    'none_out': ('none', True, False),
    'none_in': ('none', False, True),
    'none_out_in': ('none', True, True),
    'to': ('to', False, False),
    'to_in': ('to', False, True),
    'from': ('from', False, False),
    'from_out': ('from', True, False),
    'both': ('both', False, False),
}
LABEL = {
    'none': '"None"', 'none_out': '"None + Pending Out"',
    'none_in': '"None + Pending In"', 'none_out_in': '"None + Pending Out+In"',
    'to': '"To"', 'to_in': '"To + Pending In"', 'from': '"From"',
    'from_out': '"From + Pending Out"', 'both': '"Both"',
}
NAME = {v: k for k, v in STATES.items()}


def has_to(sub):
    return sub in ('to', 'both')


def has_from(sub):
    return sub in ('from', 'both')


def make_sub(to, frm):
    return {(False, False): 'none', (True, False): 'to',
            (False, True): 'from', (True, True): 'both'}[(to, frm)]


def mirror(state):
    """The contact's state for the user's: To <-> From, Out <-> In."""
    sub, out, in_ = state
    return (make_sub(has_from(sub), has_to(sub)), in_, out)


def outbound(type_, state):
    """RFC 6121 A.2: (route?, new state) when the user sends type_."""
    sub, out, in_ = state
    if type_ == 'subscribe':            # A.2.1: always routed
        if not has_to(sub) and not out:
            return True, (sub, True, in_)
        return True, state
    if type_ == 'unsubscribe':          # A.2.2: always routed
        return True, (make_sub(False, has_from(sub)), False, in_)
    if type_ == 'subscribed':           # A.2.3: routed on a change only
        if in_:
            return True, (make_sub(has_to(sub), True), out, False)
        return False, state
    if type_ == 'unsubscribed':         # A.2.4: routed on a change only
        if in_ or has_from(sub):
            return True, (make_sub(has_to(sub), False), out, False)
        return False, state
    raise ValueError(type_)


def inbound(type_, state):
    """RFC 6121 A.3: (deliver?, new state, auto-reply) at the contact."""
    sub, out, in_ = state
    if type_ == 'subscribe':            # A.3.1, §3.1.3 step 2
        if has_from(sub):
            return False, state, 'subscribed'
        if in_:
            return False, state, None
        return True, (sub, out, True), None
    if type_ == 'unsubscribe':          # A.3.2
        if in_ or has_from(sub):
            return True, (make_sub(has_to(sub), False), out, False), None
        return False, state, None
    if type_ == 'subscribed':           # A.3.3
        if out:
            return True, (make_sub(True, has_from(sub)), False, in_), None
        return False, state, None
    if type_ == 'unsubscribed':         # A.3.4
        if out or has_to(sub):
            return True, (make_sub(False, has_from(sub)), False, in_), None
        return False, state, None
    raise ValueError(type_)


def visible(state, approved=False):
    """What the roster item shows: (subscription, ask, approved)."""
    sub, out, _ = state
    return (sub, 'subscribe' if out else None, 'true' if approved else None)


# How each state is reached from "None" through the protocol: (who, type)
# steps, the user U ('u') or the contact C ('c') sending to the other.
SETUP = {
    'none': [],
    'none_out': [('u', 'subscribe')],
    'none_in': [('c', 'subscribe')],
    'none_out_in': [('u', 'subscribe'), ('c', 'subscribe')],
    'to': [('u', 'subscribe'), ('c', 'subscribed')],
    'to_in': [('u', 'subscribe'), ('c', 'subscribed'), ('c', 'subscribe')],
    'from': [('c', 'subscribe'), ('u', 'subscribed')],
    'from_out': [('c', 'subscribe'), ('u', 'subscribed'), ('u', 'subscribe')],
    'both': [('u', 'subscribe'), ('c', 'subscribed'), ('c', 'subscribe'),
             ('u', 'subscribed')],
}

POOL = imtest.Pool('sub', 110)
srv = None
preapproval = None


def setUpModule():
    global srv, preapproval
    srv = Server(users=POOL.users())
    c = harness.login(srv, 'alice@localhost', resource='probe')
    preapproval = c.feature(imtest.NS_PREAPPROVAL, 'sub') is not None
    c.close()


def tearDownModule():
    if srv is not None:
        srv.stop()


class Base(harness.ServerTestCase):

    def session(self, jid, resource, presence=True, roster=True, priority=None,
                status=None, server=None):
        """A logged-in session; by default interested (roster requested,
        RFC 6121 §2.2) and available (initial presence with a status)."""
        server = server or srv
        c = self.login(server, jid, password=server.users[jid], resource=resource)
        s = Session(c)
        if roster:
            s.roster()
        if presence:
            s.presence(priority=priority, status=status or 'st-' + resource)
        return s

    def pair(self, n_u=2, n_c=2):
        """A fresh user U and contact C; each has the other in its roster
        (added before anyone logs in elsewhere) and n sessions that are
        interested and available. Returns (u, c, us, cs, all)."""
        u, c = POOL.take(2)
        us = [self.session(u, 'u%d' % i, priority=n_u - i) for i in range(n_u)]
        cs = [self.session(c, 'c%d' % i, priority=n_c - i) for i in range(n_c)]
        us[0].roster_add(c, name='C')
        cs[0].roster_add(u, name='U')
        everyone = us + cs
        settle(everyone)
        return u, c, us, cs, everyone

    def roster_item(self, s, contact):
        return s.roster().get(contact)

    def assertItem(self, s, contact, want, context):
        item = self.roster_item(s, contact)
        self.assertIsNotNone(item, '%s: %s has no roster item for %s'
                             % (context, s.bare, contact))
        self.assertEqual(item_view(item), want,
                         '%s: roster item of %s for %s is %s, want (subscription, ask, '
                         'approved) = %s' % (context, s.bare, contact, item, want))

    def split(self, els, contact):
        """(pushes, subscription stanzas from contact, available presence
        from contact's resources, unavailable presence from contact's
        resources, unavailable presence from contact's bare JID, others)."""
        pushes, subs, avail, unavail, acks, other = [], [], [], [], [], []
        for e in els:
            f = e.get('from') or ''
            if is_roster_push(e):
                pushes.append(e)
            elif e.tag == PRESENCE and imtest.bare(f) == contact:
                t = e.get('type')
                if t in imtest.SUB_TYPES:
                    subs.append(e)
                elif t is None:
                    avail.append(e)
                elif t == 'unavailable' and f == contact:
                    acks.append(e)
                elif t == 'unavailable':
                    unavail.append(e)
                else:
                    other.append(e)
            else:
                other.append(e)
        return pushes, subs, avail, unavail, acks, other

    def check_push(self, s, pushes, contact, want, changed, context):
        """Exactly one roster push showing `want` when the item changed;
        when it did not, none, or at most one that repeats the unchanged
        item (harmless; §3.1.2 and §3.3.2 read literally push on every
        outbound subscribe/unsubscribe). From nobody or the account's
        bare JID (§2.1.6)."""
        if changed:
            self.assertEqual(len(pushes), 1, '%s: %s (interested) should get one roster '
                             'push for %s, got:\n  %s'
                             % (context, s.jid, contact, show_all(pushes)))
        else:
            self.assertLessEqual(len(pushes), 1, '%s: %s got several pushes for an item '
                                 'that did not change:\n  %s'
                                 % (context, s.jid, show_all(pushes)))
        for p in pushes:
            self.assertIn(p.get('from'), (None, s.bare),
                          '%s: push with a foreign from: %s' % (context, show(p)))
            it = push_item(p)
            self.assertEqual(it.jid, contact, show(p))
            self.assertEqual(item_view(it), want, '%s: push to %s %s: %s'
                             % (context, s.jid, 'with the new item' if changed else
                                'though the item did not change', show(p)))

    def step(self, sender, type_, to, everyone, context):
        sender.subscription(type_, to)
        return settle(everyone)

    def establish(self, state, u, c, us, cs, everyone):
        """Brings U's side into `state` through the protocol; checks
        both rosters afterwards so that a failure is reported as one of
        the setup."""
        for who, type_ in SETUP[state]:
            if who == 'u':
                self.step(us[0], type_, c, everyone, 'setup')
            else:
                self.step(cs[0], type_, u, everyone, 'setup')
        ctx = 'setup of %s' % LABEL[state]
        self.assertItem(us[0], c, visible(STATES[state]), ctx)
        self.assertItem(cs[0], u, visible(mirror(STATES[state])), ctx)
        settle(everyone)


def make_matrix_test(type_, state_name):
    state = STATES[state_name]

    def test(self):
        u, c, us, cs, everyone = self.pair()
        self.establish(state_name, u, c, us, cs, everyone)
        ctx = '%s sent in %s' % (type_, LABEL[state_name])
        route, u_new = outbound(type_, state)
        u_approved = False
        if not route and type_ == 'subscribed' and preapproval and not has_from(state[0]):
            # §3.4.2 step 3: in "None", "None + Pending Out" or "To" the
            # server notes the pre-approval and routes nothing.
            u_approved = True
        c_state = mirror(state)
        deliver, c_new, auto = (inbound(type_, c_state) if route
                                else (False, c_state, None))

        us[0].subscription(type_, c)
        got = settle(everyone)

        # U's sessions: a push when U's item changed (§3.1.2, §3.1.5,
        # §3.2.2, §3.3.2, §3.4.2), C's unavailable presence when C lost
        # its subscription "from" by an unsubscribe (§3.3.3).
        u_change = visible(u_new, u_approved) != visible(state)
        c_lost_from = route and has_from(c_state[0]) and not has_from(c_new[0])
        c_gained_to = route and not has_to(c_state[0]) and has_to(c_new[0])
        u_lost_from = has_from(state[0]) and not has_from(u_new[0])
        for s in us:
            pushes, subs, avail, unavail, acks, other = self.split(got[s], c)
            self.check_push(s, pushes, c, visible(u_new, u_approved), u_change, ctx)
            if type_ != 'subscribe':
                other += acks
            # else: §3.1.3 step 3: C's server MAY acknowledge a request with
            # unavailable presence from C's bare JID.
            # The auto-reply of §3.1.3 step 2 arrives in a state where
            # A.3.3 delivers nothing; nothing else of C's is routed to U.
            self.assertEqual(subs, [], '%s: %s got subscription stanzas:\n  %s'
                             % (ctx, s.jid, show_all(subs)))
            if type_ == 'unsubscribe' and c_lost_from:
                self.assertEqual(sorted(p.get('from') for p in unavail),
                                 sorted(x.jid for x in cs),
                                 '%s: §3.3.3: %s should get unavailable presence from each '
                                 'of the contact\'s resources:\n  %s'
                                 % (ctx, s.jid, show_all(got[s])))
            else:
                self.assertEqual(unavail, [], '%s: %s got unavailable presence:\n  %s'
                                 % (ctx, s.jid, show_all(unavail)))
            if not has_to(u_new[0]):
                self.assertEqual(avail, [], '%s: %s is not subscribed to %s but got its '
                                 'presence:\n  %s' % (ctx, s.jid, c, show_all(avail)))
            self.assertEqual(other, [], '%s: %s got unexpected stanzas:\n  %s'
                             % (ctx, s.jid, show_all(other)))

        # C's sessions.
        c_change = visible(c_new) != visible(c_state)
        for s in cs:
            pushes, subs, avail, unavail, acks, other = self.split(got[s], u)
            other += acks
            self.check_push(s, pushes, u, visible(c_new), c_change, ctx)
            if deliver:
                self.assertEqual([p.get('type') for p in subs], [type_],
                                 '%s: %s should get the %s (A.3: deliver), got:\n  %s'
                                 % (ctx, s.jid, type_, show_all(got[s])))
                self.assertEqual(subs[0].get('from'), u,
                                 '§3.1.2: stamped with the bare JID: %s' % show(subs[0]))
                self.assertEqual(subs[0].get('to'), c, show(subs[0]))
            else:
                self.assertEqual(subs, [], '%s: %s should not get it (%s):\n  %s'
                                 % (ctx, s.jid, 'A.2: not routed' if not route
                                    else 'A.3: not delivered', show_all(subs)))
            if type_ == 'subscribed' and c_gained_to:
                # §3.1.5: U's server sends U's current presence from each
                # of U's available resources.
                self.assertEqual(sorted(p.get('from') for p in avail), sorted(x.jid for x in us),
                                 '%s: §3.1.5: %s should get the presence of each of the '
                                 'user\'s resources:\n  %s' % (ctx, s.jid, show_all(got[s])))
                for p in avail:
                    self.assertEqual(p.findtext(STATUS), 'st-' + p.get('from').split('/')[1],
                                     show(p))
            elif not has_to(c_new[0]):
                self.assertEqual(avail, [], '%s: %s got presence of %s it is not '
                                 'subscribed to:\n  %s' % (ctx, s.jid, u, show_all(avail)))
            if type_ == 'unsubscribed' and u_lost_from:
                # §3.2.2: unavailable from each of U's resources, before
                # the unsubscribed.
                self.assertEqual(sorted(p.get('from') for p in unavail),
                                 sorted(x.jid for x in us),
                                 '%s: §3.2.2: %s should get unavailable presence from each '
                                 'of the user\'s resources:\n  %s' % (ctx, s.jid, show_all(got[s])))
                order = [e for e in got[s] if e.tag == PRESENCE]
                last_unavail = max(i for i, e in enumerate(order) if e.get('type') == 'unavailable')
                first_unsub = min(i for i, e in enumerate(order) if e.get('type') == 'unsubscribed')
                self.assertLess(last_unavail, first_unsub,
                                '§3.2.2: unavailable before unsubscribed:\n  %s'
                                % show_all(got[s]))
            else:
                self.assertEqual(unavail, [], '%s: %s got unavailable presence:\n  %s'
                                 % (ctx, s.jid, show_all(unavail)))
            self.assertEqual(other, [], '%s: %s got unexpected stanzas:\n  %s'
                             % (ctx, s.jid, show_all(other)))

        # Both rosters as the server keeps them.
        self.assertItem(us[1], c, visible(u_new, u_approved), ctx)
        # The auto-reply of §3.1.3 step 2 (auto) is invisible to U: it
        # arrives in To, To + Pending In or Both, where A.3.3 delivers
        # nothing and changes nothing (checked above).
        self.assertItem(cs[1], u, visible(c_new), ctx)
        self.assertIn(auto, (None, 'subscribed'))

    route, new = outbound(type_, state)
    sec = {'subscribe': 'A.2.1/A.3.1', 'unsubscribe': 'A.2.2/A.3.2',
           'subscribed': 'A.2.3/A.3.3', 'unsubscribed': 'A.2.4/A.3.4'}[type_]
    test.__doc__ = ('RFC 6121 %s: outbound %s in %s -> %s%s.'
                    % (sec, type_, LABEL[state_name],
                       LABEL[NAME[new]] if new != state else 'no state change',
                       '' if route else ', not routed'))
    return test


class Matrix(Base):
    """Every row of RFC 6121 A.2 (outbound at the user's server) and, through
    the mirror state, every row of A.3 (inbound at the contact's)."""


for _type in imtest.SUB_TYPES:
    for _state in STATES:
        setattr(Matrix, 'test_%s_in_%s' % (_type, _state), make_matrix_test(_type, _state))


def not_ack(els, contact):
    """els without roster pushes and without the acknowledgement a
    contact's server MAY send for a request (§3.1.3 step 3: unavailable
    presence from the contact's bare JID)."""
    return [e for e in els if not is_roster_push(e) and not (
        e.tag == PRESENCE and e.get('type') == 'unavailable' and e.get('from') == contact)]


class Subscriptions(Base):

    def test_preapproval_stream_feature(self):
        """§3.4.1: the server offers <sub xmlns='urn:xmpp:features:pre-approval'/>
        after authentication."""
        self.assertTrue(preapproval, 'no pre-approval stream feature')

    def test_subscribe_creates_item_only_on_the_senders_side(self):
        """§3.1.2, A.1 "None + Pending In": U (empty roster) subscribes to C
        (empty roster): U's roster gets C with subscription='none'
        ask='subscribe' (pushed); C's roster gets no item until C approves;
        C's available resources get the request from U's bare JID."""
        u, c = POOL.take(2)
        u1 = self.session(u, 'u1')
        c1 = self.session(c, 'c1')
        settle([u1, c1])
        u1.subscription('subscribe', c)
        got = settle([u1, c1])
        pushes = [e for e in got[u1] if is_roster_push(e)]
        self.assertEqual(len(pushes), 1, show_all(got[u1]))
        self.assertEqual(item_view(push_item(pushes[0])), ('none', 'subscribe', None))
        self.assertEqual([(e.get('type'), e.get('from')) for e in got[c1]],
                         [('subscribe', u)], show_all(got[c1]))
        self.assertNotIn(u, c1.roster(), 'A.1: no item for a pending inbound request')
        # C approves: now C has an item with subscription 'from' (§3.1.5).
        c1.subscription('subscribed', u)
        got = settle([u1, c1])
        cp = [e for e in got[c1] if is_roster_push(e)]
        self.assertEqual(len(cp), 1, show_all(got[c1]))
        self.assertEqual((push_item(cp[0]).jid, item_view(push_item(cp[0]))),
                         (u, ('from', None, None)))
        self.assertEqual(item_view(c1.roster()[u]), ('from', None, None))
        self.assertEqual(item_view(u1.roster()[c]), ('to', None, None))
        self.assertEqual([e.get('type') for e in got[u1] if e.tag == PRESENCE
                          and e.get('type') in imtest.SUB_TYPES], ['subscribed'])
        self.assertEqual([p.get('from') for p in presences(got[u1], frm=c)], [c1.jid],
                         '§3.1.5: C\'s presence after the approval')

    def test_no_auto_approval(self):
        """12-5: without a pre-approval the server never answers a
        subscription request on the contact's behalf: U stays at
        ask='subscribe' and receives nothing, however long it takes."""
        u, c = POOL.take(2)
        u1 = self.session(u, 'u1')
        c1 = self.session(c, 'c1')
        settle([u1, c1])
        u1.subscription('subscribe', c)
        got = settle([u1, c1])
        self.assertEqual(not_ack(got[u1], c), [], show_all(got[u1]))
        settle([u1, c1])
        self.assertEqual(item_view(u1.roster()[c]), ('none', 'subscribe', None))
        self.assertEqual(u1.drain(), [])

    def test_preapproval_auto_approves(self):
        """§3.4.2 step 4, §3.1.3 step 2: C sends 'subscribed' to U before
        any request: nothing is routed to U; C's roster gets U with
        subscription='none' approved='true' (pushed to C's interested
        resources). U's later subscribe is approved by the server: U gets
        'subscribed' and C's presence; C's item becomes 'from' without
        'approved'; C's resources never see the request."""
        u, c = POOL.take(2)
        u1 = self.session(u, 'u1')
        c1 = self.session(c, 'c1')
        c2 = self.session(c, 'c2')
        settle([u1, c1, c2])
        c1.subscription('subscribed', u)
        got = settle([u1, c1, c2])
        self.assertEqual(got[u1], [], '§3.4.2: a pre-approval is not routed:\n  %s'
                         % show_all(got[u1]))
        for s in (c1, c2):
            pushes = [e for e in got[s] if is_roster_push(e)]
            self.assertEqual(len(pushes), 1, show_all(got[s]))
            self.assertEqual((push_item(pushes[0]).jid, item_view(push_item(pushes[0]))),
                             (u, ('none', None, 'true')))
            self.assertEqual(len(got[s]), 1, show_all(got[s]))
        self.assertEqual(item_view(c1.roster()[u]), ('none', None, 'true'))

        u1.subscription('subscribe', c)
        got = settle([u1, c1, c2])
        subs = [e for e in got[u1] if e.tag == PRESENCE and e.get('type') in imtest.SUB_TYPES]
        self.assertEqual([(e.get('type'), e.get('from')) for e in subs], [('subscribed', c)],
                         show_all(got[u1]))
        self.assertEqual(sorted(p.get('from') for p in presences(got[u1], frm=c)),
                         sorted([c1.jid, c2.jid]), show_all(got[u1]))
        for s in (c1, c2):
            self.assertEqual([e for e in got[s] if e.tag == PRESENCE], [],
                             'the auto-approved request is not delivered:\n  %s'
                             % show_all(got[s]))
            pushes = [e for e in got[s] if is_roster_push(e)]
            self.assertEqual([item_view(push_item(p)) for p in pushes], [('from', None, None)])
        self.assertEqual(item_view(c1.roster()[u]), ('from', None, None))
        self.assertEqual(item_view(u1.roster()[c]), ('to', None, None))

    def test_preapproval_cancelled(self):
        """§3.4, §3.2.2: an 'unsubscribed' after a pre-approval removes it
        (pushed, approved gone) and is not routed; U's later request is
        then delivered to C and not answered by the server."""
        u, c = POOL.take(2)
        u1 = self.session(u, 'u1')
        c1 = self.session(c, 'c1')
        settle([u1, c1])
        c1.subscription('subscribed', u)
        settle([u1, c1])
        c1.subscription('unsubscribed', u)
        got = settle([u1, c1])
        self.assertEqual(got[u1], [], show_all(got[u1]))
        pushes = [e for e in got[c1] if is_roster_push(e)]
        self.assertEqual(len(pushes), 1, show_all(got[c1]))
        self.assertIsNone(item_view(push_item(pushes[0]))[2], show(pushes[0]))
        item = c1.roster().get(u)
        self.assertTrue(item is None or item_view(item) == ('none', None, None), item)
        u1.subscription('subscribe', c)
        got = settle([u1, c1])
        self.assertEqual([e.get('type') for e in got[c1] if e.tag == PRESENCE], ['subscribe'])
        self.assertEqual(not_ack(got[u1], c), [], show_all(got[u1]))
        self.assertEqual(item_view(u1.roster()[c]), ('none', 'subscribe', None))

    def test_request_to_available_resources_only(self):
        """§3.1.3 step 3, §2.2 implementation note: a request goes to the
        available resources; a resource that requested the roster but sent
        no presence gets nothing, and gets the still pending request as
        soon as it sends initial presence (step 4). A resource that did
        not request the roster gets no roster push (§2.2)."""
        u, c = POOL.take(2)
        u1 = self.session(u, 'u1')
        u2 = self.session(u, 'u2', roster=False)    # available, not interested
        quiet = self.session(c, 'quiet', presence=False)
        c1 = self.session(c, 'c1')
        settle([u1, u2, quiet, c1])
        u1.subscription('subscribe', c)
        got = settle([u1, u2, quiet, c1])
        self.assertEqual([e.get('type') for e in got[c1]], ['subscribe'], show_all(got[c1]))
        self.assertEqual(got[quiet], [], show_all(got[quiet]))
        self.assertEqual(len([e for e in got[u1] if is_roster_push(e)]), 1, show_all(got[u1]))
        self.assertEqual(not_ack(got[u2], c), [], show_all(got[u2]))
        self.assertEqual([e for e in got[u2] if is_roster_push(e)], [],
                         '§2.2: no push to a resource that did not ask for the roster')
        # §2.2 note: the pushes of a state change go to the interested
        # resources, available or not: C's approval pushes 'from' to both
        # of C's sessions.
        c1.subscription('subscribed', u)
        got = settle([u1, u2, quiet, c1])
        for s in (c1, quiet):
            pushes = [e for e in got[s] if is_roster_push(e)]
            self.assertEqual([(push_item(p).jid, item_view(push_item(p))) for p in pushes],
                             [(u, ('from', None, None))], show_all(got[s]))
        self.assertEqual([e for e in got[quiet] if e.tag == PRESENCE], [],
                         'no presence to a resource that is not available:\n  %s'
                         % show_all(got[quiet]))
        # A new request while quiet is still not available: then its
        # initial presence brings it (§3.1.3 step 4).
        c1.subscription('subscribe', u)
        settle([u1, u2, quiet, c1])
        u1.subscription('subscribe', c)
        settle([u1, u2, quiet, c1])
        quiet.presence(status='now here')
        got = settle([u1, u2, quiet, c1])
        subs = [e for e in got[quiet] if e.get('type') == 'subscribe']
        self.assertEqual(subs, [], 'U is already subscribed: nothing is pending:\n  %s'
                         % show_all(got[quiet]))

    def test_pending_request_redelivered_at_each_login(self):
        """§3.1.3 step 4, 12-6: C is offline when U subscribes (the request
        carries a status and an extension). C's next session gets nothing
        at bind or roster get, gets the complete request after initial
        presence; and again at every later login, until C answers. Only
        one request is kept when U asked twice."""
        u, c = POOL.take(2)
        u1 = self.session(u, 'u1')
        ext = "<status>let me in</status><nick xmlns='http://jabber.org/protocol/nick'>Ulla</nick>"
        u1.subscription('subscribe', c, extra=ext)
        u1.subscription('subscribe', c, extra=ext)
        u1.drain()
        for round_ in range(2):
            c1 = Session(self.login(srv, c, password=srv.users[c], resource='r%d' % round_))
            self.assertEqual(c1.drain(), [], 'nothing before initial presence')
            self.assertNotIn(u, c1.roster())
            self.assertEqual(c1.drain(), [])
            c1.presence()
            got = settle([c1, u1])
            subs = [e for e in got[c1] if e.tag == PRESENCE and e.get('type') == 'subscribe']
            self.assertEqual(len(subs), 1, 'login %d: one request, got:\n  %s'
                             % (round_ + 1, show_all(got[c1])))
            self.assertEqual(subs[0].get('from'), u)
            self.assertEqual(subs[0].findtext(STATUS), 'let me in', show(subs[0]))
            self.assertIsNotNone(subs[0].find('{http://jabber.org/protocol/nick}nick'),
                                 '§3.1.3: the complete stanza, extensions included: %s'
                                 % show(subs[0]))
            c1.close()
        # Denied: U learns it (A.3.4), and C's next login brings nothing.
        c1 = self.session(c, 'r9', roster=True, presence=False)
        c1.presence()
        c1.drain()
        c1.subscription('unsubscribed', u)
        got = settle([c1, u1])
        self.assertEqual([e.get('type') for e in got[u1] if e.tag == PRESENCE], ['unsubscribed'])
        self.assertEqual(item_view(u1.roster()[c]), ('none', None, None))
        c1.close()
        c2 = self.session(c, 'r10')
        self.assertEqual([e for e in c2.drain() if e.tag == PRESENCE
                          and e.get('type') in imtest.SUB_TYPES], [])

    def test_changes_while_contact_offline(self):
        """A.3.2, A.3.4: an unsubscribe and an unsubscribed that reach a
        contact with no session change its roster all the same; its next
        session finds the item at 'none' and gets no stale requests."""
        u, c = POOL.take(2)
        u1 = self.session(u, 'u1')
        c1 = self.session(c, 'c1')
        settle([u1, c1])
        for a, b in ((u1, c1), (c1, u1)):
            a.subscription('subscribe', b.bare)
            settle([u1, c1])
            b.subscription('subscribed', a.bare)
            settle([u1, c1])
        self.assertEqual(item_view(c1.roster()[u]), ('both', None, None))
        c1.close()
        u1.subscription('unsubscribe', c)
        u1.subscription('unsubscribed', c)
        settle([u1])
        self.assertEqual(item_view(u1.roster()[c]), ('none', None, None))
        c2 = self.session(c, 'c2', presence=False)
        self.assertEqual(item_view(c2.roster()[u]), ('none', None, None))
        c2.presence()
        got = settle([c2, u1])
        self.assertEqual([e for e in got[c2] if e.tag == PRESENCE
                          and imtest.bare(e.get('from')) == u], [], show_all(got[c2]))

    def test_pending_request_to_every_available_resource(self):
        """§3.1.3 step 3: every available resource of the contact gets the
        request."""
        u, c = POOL.take(2)
        u1 = self.session(u, 'u1')
        cs = [self.session(c, 'c%d' % i) for i in range(3)]
        settle([u1] + cs)
        u1.subscription('subscribe', c)
        got = settle([u1] + cs)
        for s in cs:
            self.assertEqual([(e.get('type'), e.get('from')) for e in got[s]],
                             [('subscribe', u)], show_all(got[s]))

    def test_subscribe_to_full_jid(self):
        """§3.1.2/§3.1.3: a request addressed to a full JID is handled as
        one to the bare JID: the roster item is the bare JID, and the
        request reaches the contact's available resources with 'to' the
        bare JID."""
        u, c = POOL.take(2)
        u1 = self.session(u, 'u1')
        c1 = self.session(c, 'c1')
        c2 = self.session(c, 'c2')
        settle([u1, c1, c2])
        u1.subscription('subscribe', c + '/c2')
        got = settle([u1, c1, c2])
        self.assertEqual(list(u1.roster()), [c])
        for s in (c1, c2):
            subs = [e for e in got[s] if e.get('type') == 'subscribe']
            self.assertEqual([(e.get('from'), e.get('to')) for e in subs], [(u, c)],
                             show_all(got[s]))

    def test_subscribe_to_nonexistent_user(self):
        """RFC 6121 §8.5.1: presence of type subscribe (and subscribed,
        unsubscribe, unsubscribed) to a local account that does not exist
        is silently ignored: no error, no 'unsubscribed', no
        acknowledgement. The sender's own server still records the
        outbound request (§3.1.2: item with ask='subscribe', pushed).
        There is no ordered round trip to wait on here, so the test
        watches for two seconds."""
        u = POOL.take()
        u1 = self.session(u, 'u1')
        settle([u1])
        ghost = 'nobody-here@localhost'
        other = 'nobody-at-all@localhost'
        u1.subscription('subscribe', ghost)
        for t in ('subscribed', 'unsubscribe', 'unsubscribed'):
            u1.subscription(t, other)
        got = u1.quiet_for(2.0)
        got += u1.drain()
        others = [e for e in got if not is_roster_push(e)]
        self.assertEqual(others, [], '§8.5.1: silently ignored:\n  %s' % show_all(got))
        self.assertEqual(item_view(u1.roster()[ghost]), ('none', 'subscribe', None))

    def test_subscription_stamped_bare(self):
        """§3.1.2: the request is stamped with the user's bare JID even
        when the client put its full JID in 'from'."""
        u, c = POOL.take(2)
        u1 = self.session(u, 'u1')
        c1 = self.session(c, 'c1')
        settle([u1, c1])
        u1.send("<presence type='subscribe' from='%s' to='%s'/>" % (u1.jid, c))
        got = settle([u1, c1])
        self.assertEqual([e.get('from') for e in got[c1] if e.get('type') == 'subscribe'], [u])


class Restart(Base):

    def test_state_survives_restart(self):
        """The subscription states and a pending request survive a restart
        of the server: after it, C's items and U's pending request are as
        before, and the request is delivered at C's next initial
        presence."""
        users = {'ru@localhost': 'pw-ru', 'rc@localhost': 'pw-rc', 'rd@localhost': 'pw-rd'}
        own = Server(users=users)
        try:
            u1 = self.session('ru@localhost', 'u1', server=own)
            c1 = self.session('rc@localhost', 'c1', server=own)
            d1 = self.session('rd@localhost', 'd1', server=own)
            for a, b in ((u1, c1), (c1, u1)):
                a.subscription('subscribe', b.bare)
                settle([u1, c1, d1])
                b.subscription('subscribed', a.bare)
                settle([u1, c1, d1])
            c1.close()
            d1.subscription('subscribe', 'rc@localhost')
            settle([u1, d1])
            own.stop()
            own.start()
            c2 = self.session('rc@localhost', 'c2', server=own, presence=False)
            r = c2.roster()
            self.assertEqual(item_view(r['ru@localhost']), ('both', None, None), r)
            self.assertNotIn('rd@localhost', r)
            c2.presence()
            got = c2.wait(lambda e: e.tag == PRESENCE and e.get('type') == 'subscribe',
                          'the pending request after the restart')
            self.assertEqual(got.get('from'), 'rd@localhost')
            u2 = self.session('ru@localhost', 'u2', server=own, presence=False)
            self.assertEqual(item_view(u2.roster()['rc@localhost']), ('both', None, None))
            d2 = self.session('rd@localhost', 'd2', server=own, presence=False)
            self.assertEqual(item_view(d2.roster()['rc@localhost']), ('none', 'subscribe', None))
        finally:
            own.stop()


if __name__ == '__main__':
    harness.main()
