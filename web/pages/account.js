// The signed-in user's own page: who they are, a password change, and
// their API tokens for scripts (a new token is shown once; the list shows
// only its first characters).

import {
    h,
    str,
    fmtTime,
    dl,
    section,
    field,
    empty,
    toast,
    confirmAction,
    secretBox,
    clear,
    badge,
} from '../dom.js';
import { t } from '../i18n.js';
import { api, listOf } from '../api.js';
import { session, role } from '../session.js';
import { formError } from '../common.js';

function passwordForm() {
    const old = h('input', {
        type: 'password',
        required: true,
        autocomplete: 'current-password',
        maxlength: 1024,
        testid: 'pw-old',
    });
    const nw = h('input', {
        type: 'password',
        required: true,
        minlength: 10,
        maxlength: 1024,
        autocomplete: 'new-password',
        testid: 'pw-new',
    });
    const again = h('input', {
        type: 'password',
        required: true,
        minlength: 10,
        maxlength: 1024,
        autocomplete: 'new-password',
        testid: 'pw-again',
    });
    const err = formError();
    return section(
        t('change_password'),
        h(
            'form',
            {
                class: 'form-grid',
                testid: 'password-form',
                onsubmit: async (e) => {
                    e.preventDefault();
                    err.show(null);
                    if (nw.value !== again.value) {
                        err.show({ message: t('passwords_differ') });
                        return;
                    }
                    try {
                        await api.post('/me/password', { old: old.value, new: nw.value });
                        old.value = nw.value = again.value = '';
                        toast(t('password_changed'));
                    } catch (x) {
                        err.show(x);
                    }
                },
            },
            field(t('old_password'), old),
            field(t('new_password'), nw, t('password_hint')),
            field(t('repeat_password'), again),
            err,
            h(
                'div',
                { class: 'form-actions' },
                h('button', { type: 'submit', class: 'btn btn-primary' }, t('save')),
            ),
        ),
    );
}

function tokensPanel() {
    const listBox = h('div', { testid: 'api-tokens' });
    const shown = h('div', { class: 'once' });

    async function load() {
        let data;
        try {
            data = listOf(await api.get('/tokens'));
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
                { class: 'table compact', testid: 'api-tokens-table' },
                h(
                    'thead',
                    null,
                    h(
                        'tr',
                        null,
                        [t('name'), t('token'), t('created'), t('last_used'), t('state'), ''].map((c) =>
                            h('th', null, c),
                        ),
                    ),
                ),
                h(
                    'tbody',
                    null,
                    data.items.map((k) =>
                        h(
                            'tr',
                            { testid: 'api-token-row', 'data-id': str(k.id) },
                            h('td', null, str(k.name)),
                            h('td', { class: 'mono' }, k.prefix ? str(k.prefix) + '…' : '—'),
                            h('td', null, fmtTime(k.created_at)),
                            h('td', null, fmtTime(k.last_used)),
                            h(
                                'td',
                                null,
                                k.revoked
                                    ? badge('muted', t('token_revoked'))
                                    : badge('ok', t('token_active')),
                            ),
                            h(
                                'td',
                                null,
                                k.revoked
                                    ? null
                                    : h(
                                          'button',
                                          {
                                              type: 'button',
                                              class: 'btn btn-small btn-danger',
                                              testid: 'api-token-revoke',
                                              onclick: async () => {
                                                  if (
                                                      !(await confirmAction(
                                                          t('revoke_token'),
                                                          t('revoke_api_token_text', { name: str(k.name) }),
                                                          t('revoke'),
                                                          true,
                                                      ))
                                                  )
                                                      return;
                                                  try {
                                                      await api.del(
                                                          '/tokens/' + encodeURIComponent(str(k.id)),
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
                                      ),
                            ),
                        ),
                    ),
                ),
            ),
        );
    }

    const name = h('input', {
        required: true,
        maxlength: 100,
        testid: 'api-token-name',
        placeholder: t('api_token_name_hint'),
    });
    const err = formError();
    const form = h(
        'form',
        {
            class: 'inline-form',
            testid: 'api-token-create',
            onsubmit: async (e) => {
                e.preventDefault();
                err.show(null);
                try {
                    const res = await api.post('/tokens', { name: name.value.trim() });
                    name.value = '';
                    clear(shown).append(
                        h('p', { class: 'warn-text' }, t('token_once')),
                        secretBox(t('token'), str(res.token), 'api-token-value'),
                    );
                    load();
                } catch (x) {
                    err.show(x);
                }
            },
        },
        h('label', { class: 'filter' }, h('span', null, t('name')), name),
        h('button', { type: 'submit', class: 'btn btn-primary' }, t('create_token')),
        err,
    );
    load();
    return section(t('api_tokens'), h('p', { class: 'muted' }, t('api_tokens_hint')), form, shown, listBox);
}

export async function render(el, ctx) {
    ctx.setTitle(t('nav_account'));
    const me = session.me || {};
    el.append(
        h(
            'div',
            { class: 'grid-2' },
            section(
                t('me'),
                dl([
                    [t('username'), str(me.username)],
                    [t('display_name'), str(me.display_name)],
                    [t('role'), t('role_' + role())],
                    [t('agency'), me.agency ? str(me.agency.name) : t('whole_province')],
                ]),
            ),
            passwordForm(),
        ),
        tokensPanel(),
    );
}
