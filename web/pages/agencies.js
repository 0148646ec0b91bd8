// The agency tree in the caller's scope as an indented table: expected
// against enrolled machines, online and infected counts. Administrators
// create agencies here; each row leads to the agency's page (enrollment
// tokens, editing).

import { h, str, fmtNumber, fmtPercent, bar, section, field, select, empty, toast } from '../dom.js';
import { t } from '../i18n.js';
import { api } from '../api.js';
import { isAdmin } from '../session.js';
import { reload } from '../router.js';
import { loadAgencies, agencyOptions, formError } from '../common.js';

export const KINDS = ['province', 'department', 'district', 'agency'];

export function kindLabel(k) {
    const key = 'kind_' + str(k);
    return t(key) === key ? str(k) : t(key);
}

function tree(list) {
    if (!list.length) return empty(t('no_agencies'));
    return h(
        'table',
        { class: 'table tree', testid: 'agency-tree' },
        h(
            'thead',
            null,
            h(
                'tr',
                null,
                h('th', null, t('agency')),
                h('th', null, t('code')),
                h('th', null, t('kind')),
                h('th', { class: 'num' }, t('enrolled')),
                h('th', { class: 'num' }, t('expected')),
                h('th', { class: 'bar-col' }, t('coverage')),
                h('th', { class: 'num' }, t('online')),
                h('th', { class: 'num' }, t('infected')),
            ),
        ),
        h(
            'tbody',
            null,
            list.map((a) => {
                const name = h(
                    'a',
                    { href: '/agencies/' + encodeURIComponent(str(a.id)), testid: 'agency-link' },
                    str(a.name),
                );
                const cell = h('td', { class: 'tree-cell' }, name);
                cell.classList.add('depth-' + Math.min(a.depth || 0, 8));
                return h(
                    'tr',
                    { testid: 'agency-row', 'data-id': str(a.id), 'data-code': str(a.code) },
                    cell,
                    h('td', { class: 'mono nowrap' }, str(a.code)),
                    h('td', null, kindLabel(a.kind)),
                    h('td', { class: 'num' }, fmtNumber(a.machines)),
                    h('td', { class: 'num' }, fmtNumber(a.expected_machines)),
                    h(
                        'td',
                        { class: 'bar-col' },
                        bar(a.machines, a.expected_machines),
                        ' ',
                        h('span', { class: 'pct' }, fmtPercent(a.machines, a.expected_machines)),
                    ),
                    h('td', { class: 'num' }, fmtNumber(a.online)),
                    h('td', { class: ['num', a.infected > 0 ? 'bad-text' : ''] }, fmtNumber(a.infected)),
                );
            }),
        ),
    );
}

function createForm(list) {
    const parent = select(agencyOptions(list, t('no_parent')), list.length ? list[0].id : '', {
        testid: 'agency-parent',
    });
    const code = h('input', {
        required: true,
        maxlength: 32,
        pattern: '[A-Za-z0-9._\\-]+',
        testid: 'agency-code',
    });
    const name = h('input', { required: true, maxlength: 200, testid: 'agency-name' });
    const kind = select(
        KINDS.map((k) => [k, kindLabel(k)]),
        'agency',
        { testid: 'agency-kind' },
    );
    const contact = h('input', { maxlength: 200, testid: 'agency-contact' });
    const expected = h('input', {
        type: 'number',
        min: 0,
        max: 1000000,
        value: 0,
        testid: 'agency-expected',
    });
    const err = formError();
    return section(
        t('create_agency'),
        h(
            'form',
            {
                class: 'form-grid',
                testid: 'agency-create',
                onsubmit: async (e) => {
                    e.preventDefault();
                    err.show(null);
                    const body = {
                        code: code.value.trim(),
                        name: name.value.trim(),
                        kind: kind.value,
                        contact: contact.value.trim(),
                        expected_machines: Number(expected.value) || 0,
                    };
                    if (parent.value) body.parent_id = Number(parent.value);
                    try {
                        await api.post('/agencies', body);
                        toast(t('agency_created'));
                        reload();
                    } catch (x) {
                        err.show(x);
                    }
                },
            },
            field(t('parent'), parent),
            field(t('code'), code, t('code_hint')),
            field(t('name'), name),
            field(t('kind'), kind),
            field(t('contact'), contact),
            field(t('expected'), expected),
            err,
            h(
                'div',
                { class: 'form-actions' },
                h(
                    'button',
                    { type: 'submit', class: 'btn btn-primary', testid: 'agency-create-submit' },
                    t('create'),
                ),
            ),
        ),
    );
}

export async function render(el, ctx) {
    ctx.setTitle(t('nav_agencies'));
    const list = await loadAgencies();
    if (!ctx.alive()) return;
    el.append(
        section(
            null,
            h(
                'p',
                { class: 'summary', testid: 'agencies-summary' },
                t('agencies_summary', { n: fmtNumber(list.length) }),
            ),
            tree(list),
        ),
        isAdmin() ? createForm(list) : null,
    );
}
