// One agency: its numbers, its place in the tree, editing (administrators),
// its agents' protection policy (agency_policy.js), its address ranges
// (agency_networks.js), and its enrollment
// tokens. A new token is shown exactly once, with the copy-paste command the
// server builds for it (the API's `command` field); the list afterwards
// shows only the token's first characters.

import {
    h,
    str,
    num,
    fmtNumber,
    fmtPercent,
    fmtTime,
    bar,
    dl,
    section,
    field,
    select,
    empty,
    toast,
    confirmAction,
    secretBox,
    clear,
} from '../dom.js';
import { t } from '../i18n.js';
import { api, listOf, ApiError } from '../api.js';
import { isAdmin, canAct } from '../session.js';
import { reload } from '../router.js';
import { loadAgencies, agencyOptions, formError } from '../common.js';
import { KINDS, kindLabel } from './agencies.js';
import { policyPanel } from './agency_policy.js';
import { networksPanel } from './agency_networks.js';

function tokenState(k) {
    const now = Date.now() / 1000;
    if (k.revoked) return ['muted', t('token_revoked')];
    if (k.active === true) return ['ok', t('token_active')];
    if (k.expires_at && num(k.expires_at) < now) return ['muted', t('token_expired')];
    if (num(k.max_uses) > 0 && num(k.uses) >= num(k.max_uses)) return ['muted', t('token_used_up')];
    return ['ok', t('token_active')];
}

function tokensPanel(a) {
    const listBox = h('div', { testid: 'enroll-tokens' });
    const shown = h('div', { class: 'once', testid: 'token-once' });
    const base = '/agencies/' + encodeURIComponent(str(a.id)) + '/enroll-tokens';

    async function load() {
        let data;
        try {
            data = listOf(await api.get(base, { per_page: 100 }));
        } catch (e) {
            clear(listBox).appendChild(h('p', { class: 'error' }, e.message));
            return;
        }
        clear(listBox);
        if (!data.items.length) {
            listBox.appendChild(empty(t('no_tokens')));
            return;
        }
        listBox.appendChild(
            h(
                'table',
                { class: 'table compact', testid: 'enroll-tokens-table' },
                h(
                    'thead',
                    null,
                    h(
                        'tr',
                        null,
                        [t('token'), t('note'), t('uses'), t('expires'), t('created'), t('state'), ''].map(
                            (c) => h('th', null, c),
                        ),
                    ),
                ),
                h(
                    'tbody',
                    null,
                    data.items.map((k) => {
                        const [kind, label] = tokenState(k);
                        const live = kind === 'ok';
                        return h(
                            'tr',
                            { testid: 'enroll-token-row', 'data-id': str(k.id) },
                            h('td', { class: 'mono' }, str(k.prefix) + '…'),
                            h('td', null, str(k.note)),
                            h(
                                'td',
                                { class: 'num' },
                                fmtNumber(k.uses) + ' / ' + (num(k.max_uses) ? fmtNumber(k.max_uses) : '∞'),
                            ),
                            h('td', null, fmtTime(k.expires_at)),
                            h('td', null, fmtTime(k.created_at)),
                            h('td', null, h('span', { class: ['badge', 'badge-' + kind] }, label)),
                            h(
                                'td',
                                null,
                                canAct() && live
                                    ? h(
                                          'button',
                                          {
                                              type: 'button',
                                              class: 'btn btn-small btn-danger',
                                              testid: 'token-revoke',
                                              onclick: async () => {
                                                  if (
                                                      !(await confirmAction(
                                                          t('revoke_token'),
                                                          t('revoke_token_text'),
                                                          t('revoke'),
                                                          true,
                                                      ))
                                                  )
                                                      return;
                                                  try {
                                                      await api.del(
                                                          '/enroll-tokens/' + encodeURIComponent(str(k.id)),
                                                      );
                                                      toast(t('token_revoked'));
                                                      clear(shown);
                                                      load();
                                                  } catch (e) {
                                                      toast(e.message, 'error');
                                                  }
                                              },
                                          },
                                          t('revoke'),
                                      )
                                    : null,
                            ),
                        );
                    }),
                ),
            ),
        );
    }

    let form = null;
    if (canAct()) {
        const days = select(
            [
                [1, t('n_days', { n: 1 })],
                [7, t('n_days', { n: 7 })],
                [30, t('n_days', { n: 30 })],
                [90, t('n_days', { n: 90 })],
                [365, t('n_days', { n: 365 })],
            ],
            7,
            { testid: 'token-expires' },
        );
        const uses = h('input', { type: 'number', min: 0, max: 1000000, value: 0, testid: 'token-max-uses' });
        const note = h('input', { maxlength: 200, testid: 'token-note', placeholder: t('token_note_hint') });
        const err = formError();
        form = h(
            'form',
            {
                class: 'form-grid',
                testid: 'token-create',
                onsubmit: async (e) => {
                    e.preventDefault();
                    err.show(null);
                    try {
                        const res = await api.post(base, {
                            expires_in: Number(days.value) * 86400,
                            max_uses: Number(uses.value) || 0,
                            note: note.value.trim(),
                        });
                        note.value = '';
                        clear(shown).append(
                            h('p', { class: 'warn-text' }, t('token_once')),
                            secretBox(t('token'), str(res.token), 'token-value'),
                            res.command
                                ? secretBox(t('enroll_command'), str(res.command), 'token-command')
                                : null,
                            res.ca_sha256
                                ? h(
                                      'p',
                                      { class: 'muted small' },
                                      t('ca_fingerprint'),
                                      ' ',
                                      h(
                                          'span',
                                          { class: 'mono wrap', testid: 'token-ca' },
                                          str(res.ca_sha256),
                                      ),
                                  )
                                : null,
                        );
                        load();
                    } catch (x) {
                        err.show(x);
                    }
                },
            },
            field(t('expires_in'), days),
            field(t('max_uses'), uses, t('max_uses_hint')),
            field(t('note'), note),
            err,
            h(
                'div',
                { class: 'form-actions' },
                h(
                    'button',
                    { type: 'submit', class: 'btn btn-primary', testid: 'token-create-submit' },
                    t('create_token'),
                ),
            ),
        );
    }
    load();
    return section(
        t('enroll_tokens'),
        h('p', { class: 'muted' }, t('enroll_tokens_hint')),
        form,
        shown,
        listBox,
    );
}

function editForm(a, list) {
    if (!isAdmin()) return null;
    // An agency cannot move below itself or its own descendants.
    const below = new Set([String(a.id)]);
    for (const x of list)
        if (x.parent_id !== null && x.parent_id !== undefined && below.has(String(x.parent_id)))
            below.add(String(x.id));
    const parent = select(
        agencyOptions(
            list.filter((x) => !below.has(String(x.id))),
            t('no_parent'),
        ),
        a.parent_id ?? '',
        { testid: 'edit-parent' },
    );
    const name = h('input', { required: true, maxlength: 200, value: str(a.name), testid: 'edit-name' });
    const kind = select(
        KINDS.map((k) => [k, kindLabel(k)]),
        a.kind,
        { testid: 'edit-kind' },
    );
    const contact = h('input', { maxlength: 200, value: str(a.contact), testid: 'edit-contact' });
    const expected = h('input', {
        type: 'number',
        min: 0,
        max: 1000000,
        value: num(a.expected_machines),
        testid: 'edit-expected',
    });
    const err = formError();
    return section(
        t('edit_agency'),
        h(
            'form',
            {
                class: 'form-grid',
                testid: 'agency-edit',
                onsubmit: async (e) => {
                    e.preventDefault();
                    err.show(null);
                    const body = {
                        name: name.value.trim(),
                        kind: kind.value,
                        contact: contact.value.trim(),
                        expected_machines: Number(expected.value) || 0,
                    };
                    if (parent.value && String(parent.value) !== String(a.parent_id ?? ''))
                        body.parent_id = Number(parent.value);
                    try {
                        await api.patch('/agencies/' + encodeURIComponent(str(a.id)), body);
                        toast(t('saved'));
                        reload();
                    } catch (x) {
                        err.show(x);
                    }
                },
            },
            field(t('parent'), parent),
            field(t('name'), name),
            field(t('kind'), kind),
            field(t('contact'), contact),
            field(t('expected'), expected),
            err,
            h(
                'div',
                { class: 'form-actions' },
                h('button', { type: 'submit', class: 'btn btn-primary', testid: 'agency-save' }, t('save')),
            ),
        ),
    );
}

export async function render(el, ctx) {
    const list = await loadAgencies();
    if (!ctx.alive()) return;
    const a = list.find((x) => String(x.id) === String(ctx.params.id));
    // There is no GET /agencies/{id}: an agency missing from the caller's
    // tree is out of scope or does not exist, and either way is not found.
    if (!a) throw new ApiError(404, { error: 'not_found', message: 'not found' });
    ctx.setTitle(str(a.name));
    const parent = list.find((x) => String(x.id) === String(a.parent_id));
    const children = list.filter((x) => String(x.parent_id) === String(a.id));
    el.append(
        h(
            'div',
            { class: 'agency', testid: 'agency-page', 'data-id': str(a.id) },
            h(
                'div',
                { class: 'grid-2' },
                section(
                    t('details'),
                    dl([
                        [t('code'), h('span', { class: 'mono' }, str(a.code))],
                        [t('kind'), kindLabel(a.kind)],
                        [
                            t('parent'),
                            parent
                                ? h(
                                      'a',
                                      { href: '/agencies/' + encodeURIComponent(str(parent.id)) },
                                      str(parent.name),
                                  )
                                : '—',
                        ],
                        [t('contact'), str(a.contact)],
                        [
                            t('enrolled_expected'),
                            [
                                fmtNumber(a.machines),
                                ' / ',
                                fmtNumber(a.expected_machines),
                                ' ',
                                bar(a.machines, a.expected_machines),
                                ' ',
                                fmtPercent(a.machines, a.expected_machines),
                            ],
                        ],
                        [t('online'), fmtNumber(a.online)],
                        [t('infected'), fmtNumber(a.infected)],
                        [
                            t('sub_agencies'),
                            children.length
                                ? children.map((c, i) => [
                                      i ? ', ' : '',
                                      h(
                                          'a',
                                          { href: '/agencies/' + encodeURIComponent(str(c.id)) },
                                          str(c.name),
                                      ),
                                  ])
                                : '—',
                        ],
                    ]),
                    h(
                        'div',
                        { class: 'actions' },
                        h(
                            'a',
                            { class: 'btn', href: '/machines?agency=' + encodeURIComponent(str(a.id)) },
                            t('view_machines'),
                        ),
                        h(
                            'a',
                            { class: 'btn', href: '/detections?agency=' + encodeURIComponent(str(a.id)) },
                            t('view_detections'),
                        ),
                    ),
                ),
                editForm(a, list),
            ),
            policyPanel(a, list),
            networksPanel(a),
            tokensPanel(a),
        ),
    );
}
