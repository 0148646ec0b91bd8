// People who may sign in (administrators only): create, change role or
// agency, disable and enable, set a new password. An officer or auditor
// with an agency sees only that agency and the ones below it.

import { h, str, fmtTime, section, field, select, toast, modal, badge } from '../dom.js';
import { t } from '../i18n.js';
import { api } from '../api.js';
import { session } from '../session.js';
import { reload } from '../router.js';
import { listView } from '../list.js';
import { loadAgencies, agencyOptions, agencyOf, formError } from '../common.js';

const ROLES = ['admin', 'officer', 'auditor'];

async function patch(u, body) {
    try {
        await api.patch('/users/' + encodeURIComponent(str(u.id)), body);
        toast(t('saved'));
        return true;
    } catch (e) {
        toast(e.message, 'error');
        return false;
    }
}

// An administrator has no agency and an officer must have one, so role and
// agency are sent together from the row's two pickers.
function roleAgency(roleSel, agencySel) {
    const admin = roleSel.value === 'admin';
    return { role: roleSel.value, agency_id: admin || !agencySel.value ? null : Number(agencySel.value) };
}

async function setPassword(u) {
    const input = h('input', {
        type: 'password',
        minlength: 10,
        maxlength: 1024,
        autocomplete: 'new-password',
        testid: 'new-password',
    });
    const ok = await modal(
        t('set_password_for', { user: str(u.username) }),
        field(t('new_password'), input, t('password_hint')),
        [
            { label: t('cancel'), value: false, class: 'btn btn-ghost' },
            { label: t('save'), value: true, class: 'btn btn-primary', testid: 'new-password-save' },
        ],
    );
    if (!ok) return;
    if (input.value.length < 10) {
        toast(t('password_hint'), 'error');
        return;
    }
    await patch(u, { password: input.value });
}

function createForm(agencies) {
    const username = h('input', {
        required: true,
        maxlength: 64,
        pattern: '[A-Za-z0-9._@\\-]+',
        autocomplete: 'off',
        testid: 'user-username',
    });
    const display = h('input', { maxlength: 200, testid: 'user-display' });
    const password = h('input', {
        type: 'password',
        required: true,
        minlength: 10,
        maxlength: 1024,
        autocomplete: 'new-password',
        testid: 'user-password',
    });
    const role = select(
        ROLES.map((r) => [r, t('role_' + r)]),
        'officer',
        { testid: 'user-role' },
    );
    const agency = select(agencyOptions(agencies, t('whole_province')), '', { testid: 'user-agency' });
    role.addEventListener('change', () => {
        agency.disabled = role.value === 'admin';
        if (agency.disabled) agency.value = '';
    });
    const err = formError();
    return section(
        t('create_user'),
        h(
            'form',
            {
                class: 'form-grid',
                testid: 'user-create',
                onsubmit: async (e) => {
                    e.preventDefault();
                    err.show(null);
                    const body = {
                        username: username.value.trim(),
                        display_name: display.value.trim(),
                        password: password.value,
                        role: role.value,
                    };
                    if (agency.value && role.value !== 'admin') body.agency_id = Number(agency.value);
                    try {
                        await api.post('/users', body);
                        toast(t('user_created'));
                        reload();
                    } catch (x) {
                        err.show(x);
                    }
                },
            },
            field(t('username'), username),
            field(t('display_name'), display),
            field(t('password'), password, t('password_hint')),
            field(t('role'), role),
            field(t('agency'), agency, t('agency_scope_hint')),
            err,
            h(
                'div',
                { class: 'form-actions' },
                h(
                    'button',
                    { type: 'submit', class: 'btn btn-primary', testid: 'user-create-submit' },
                    t('create'),
                ),
            ),
        ),
    );
}

export async function render(el, ctx) {
    ctx.setTitle(t('nav_users'));
    const agencies = await loadAgencies();
    if (!ctx.alive()) return;
    const self = (u) => session.me && String(session.me.id) === String(u.id);
    // Each row's role and agency pickers, made once per row and sent
    // together; a refused change reloads the list so the pickers show the
    // truth again. Nobody edits their own role or agency here.
    const made = new WeakMap();
    const pickers = (u) => {
        if (made.has(u)) return made.get(u);
        const role = select(
            ROLES.map((r) => [r, t('role_' + r)]),
            u.role,
            { testid: 'user-role-select', 'aria-label': t('role'), disabled: self(u) },
        );
        const agency = select(agencyOptions(agencies, t('whole_province')), agencyOf(u).id, {
            'aria-label': t('agency'),
            disabled: self(u) || u.role === 'admin',
        });
        const change = async () => {
            if (role.value === 'admin') agency.value = '';
            if (!(await patch(u, roleAgency(role, agency)))) list.reload();
            else agency.disabled = role.value === 'admin';
        };
        role.addEventListener('change', change);
        agency.addEventListener('change', change);
        const p = { role, agency };
        made.set(u, p);
        return p;
    };
    const list = listView({
        testid: 'users',
        rowTestid: 'user-row',
        columns: [
            {
                key: 'username',
                label: t('username'),
                render: (u) =>
                    h(
                        'span',
                        null,
                        h('strong', null, str(u.username)),
                        u.display_name ? h('div', { class: 'muted small' }, str(u.display_name)) : null,
                    ),
            },
            { key: 'role', label: t('role'), render: (u) => pickers(u).role },
            { key: 'agency', label: t('agency'), render: (u) => pickers(u).agency },
            { key: 'last_login', label: t('last_login'), render: (u) => fmtTime(u.last_login) },
            {
                key: 'disabled',
                label: t('state'),
                render: (u) => (u.disabled ? badge('muted', t('disabled')) : badge('ok', t('active'))),
            },
            {
                key: 'actions',
                label: '',
                render: (u) =>
                    h(
                        'span',
                        { class: 'row-actions' },
                        h(
                            'button',
                            { type: 'button', class: 'btn btn-small', onclick: () => setPassword(u) },
                            t('set_password'),
                        ),
                        self(u)
                            ? null
                            : h(
                                  'button',
                                  {
                                      type: 'button',
                                      class: ['btn', 'btn-small', u.disabled ? '' : 'btn-danger'],
                                      testid: 'user-toggle',
                                      onclick: async () => {
                                          if (await patch(u, { disabled: !u.disabled })) list.reload();
                                      },
                                  },
                                  u.disabled ? t('enable') : t('disable'),
                              ),
                    ),
            },
        ],
        fetch: (p) => api.get('/users', p),
    });
    el.append(section(null, list.el), createForm(agencies));
}
