// Provinces (on a parent server): every provincial server that pushes its
// aggregated statistics here, side by side for one month or quarter, from
// GET /federation/provinces: the index and its trend, infected rate,
// coverage, machines, C&C hosts, detections, the last push and a stale mark
// when a province has missed three pushes. Administrators also manage the
// provinces allowed to push (GET/POST /federation/children, DELETE to
// revoke); a new province's token is shown once, for its parent_token_file.

import {
    h,
    clear,
    str,
    num,
    fmtNumber,
    fmtTime,
    section,
    empty,
    field,
    toast,
    confirmAction,
    secretBox,
    badge,
} from '../dom.js';
import { t } from '../i18n.js';
import { api } from '../api.js';
import { setQuery } from '../router.js';
import { isAdmin } from '../session.js';
import { formError } from '../common.js';

function pct(x) {
    return (100 * num(x)).toLocaleString(undefined, { maximumFractionDigits: 1 }) + '%';
}

function index(x) {
    return num(x).toLocaleString(undefined, { maximumFractionDigits: 3 });
}

function trendText(trend) {
    return (trend || []).map((p) => str(p.period) + ': ' + index(p.index)).join(' → ');
}

function provinceRow(p) {
    const f = p.figures;
    const tot = (f && f.totals) || {};
    const cells = f
        ? [
              h('td', { class: 'num', testid: 'province-index' }, index(f.index)),
              h('td', { class: 'num' }, pct(f.rates.infected_rate)),
              h('td', { class: 'num' }, pct(f.rates.coverage)),
              h('td', { class: 'num' }, fmtNumber(tot.managed) + ' / ' + fmtNumber(tot.expected)),
              h('td', { class: 'num' }, fmtNumber(tot.infected)),
              h('td', { class: 'num' }, fmtNumber(tot.c2_hosts)),
              h('td', { class: 'num' }, fmtNumber(tot.detections)),
          ]
        : [h('td', { colspan: 7, class: 'muted' }, t('provinces_no_data'))];
    return h(
        'tr',
        { testid: 'province-row' },
        h('td', null, h('strong', null, str(p.name)), h('div', { class: 'muted mono' }, str(p.code))),
        cells,
        h('td', { class: 'muted small' }, trendText(p.trend)),
        h(
            'td',
            { class: 'nowrap' },
            fmtTime(p.last_push_at),
            p.stale ? [' ', badge('warn', t('provinces_stale'), 'province-stale')] : null,
        ),
    );
}

function provincesTable(data) {
    const items = data.provinces || [];
    if (!items.length) return empty(t('provinces_none'));
    const all = data.all || {};
    const tot = all.totals || {};
    const rates = all.rates || {};
    return h(
        'table',
        { class: 'table compact', testid: 'provinces-table' },
        h(
            'thead',
            null,
            h(
                'tr',
                null,
                h('th', null, t('provinces_province')),
                h('th', { class: 'num' }, t('provinces_index')),
                h('th', { class: 'num' }, t('provinces_infected_rate')),
                h('th', { class: 'num' }, t('provinces_coverage')),
                h('th', { class: 'num' }, t('provinces_machines')),
                h('th', { class: 'num' }, t('provinces_infected')),
                h('th', { class: 'num' }, t('c2_hosts')),
                h('th', { class: 'num' }, t('provinces_detections')),
                h('th', null, t('provinces_trend')),
                h('th', null, t('provinces_last_push')),
            ),
        ),
        h('tbody', null, items.map(provinceRow)),
        h(
            'tfoot',
            null,
            h(
                'tr',
                { testid: 'provinces-all' },
                h('th', null, t('provinces_all')),
                h('td'),
                h('td', { class: 'num' }, pct(rates.infected_rate)),
                h('td', { class: 'num' }, pct(rates.coverage)),
                h('td', { class: 'num' }, fmtNumber(tot.managed) + ' / ' + fmtNumber(tot.expected)),
                h('td', { class: 'num' }, fmtNumber(tot.infected)),
                h('td', { class: 'num' }, fmtNumber(tot.c2_hosts)),
                h('td', { class: 'num' }, fmtNumber(tot.detections)),
                h('td'),
                h('td'),
            ),
        ),
    );
}

// Administrators: the provinces allowed to push, a form to add one (its
// token is shown once) and a revoke button per province.
function managePanel() {
    const listBox = h('div', { testid: 'federation-children' });
    const shown = h('div', { class: 'once' });
    const code = h('input', { required: true, maxlength: 63, pattern: '[A-Za-z0-9._\\-]+', testid: 'child-code' });
    const name = h('input', { required: true, maxlength: 255, testid: 'child-name' });
    const err = formError();

    async function load() {
        let data;
        try {
            data = await api.get('/federation/children');
        } catch (e) {
            clear(listBox).appendChild(h('p', { class: 'error' }, e.message));
            return;
        }
        clear(listBox);
        const items = data.items || [];
        if (!items.length) {
            listBox.appendChild(empty(t('provinces_none')));
            return;
        }
        listBox.appendChild(
            h(
                'table',
                { class: 'table compact' },
                h(
                    'thead',
                    null,
                    h(
                        'tr',
                        null,
                        h('th', null, t('provinces_code')),
                        h('th', null, t('name')),
                        h('th', null, t('provinces_token')),
                        h('th', null, t('provinces_last_push')),
                        h('th', null, t('provinces_from')),
                        h('th'),
                    ),
                ),
                h(
                    'tbody',
                    null,
                    items.map((c) =>
                        h(
                            'tr',
                            { testid: 'child-row' },
                            h('td', { class: 'mono' }, str(c.code)),
                            h('td', null, str(c.name)),
                            h('td', { class: 'mono' }, str(c.prefix) + '…'),
                            h('td', { class: 'nowrap' }, fmtTime(c.last_push_at)),
                            h('td', { class: 'mono' }, str(c.last_push_from)),
                            h(
                                'td',
                                null,
                                c.revoked
                                    ? badge('muted', t('provinces_revoked'))
                                    : h(
                                          'button',
                                          {
                                              type: 'button',
                                              class: 'btn btn-small btn-danger',
                                              testid: 'child-revoke',
                                              onclick: async () => {
                                                  if (
                                                      !(await confirmAction(
                                                          t('revoke_token'),
                                                          t('provinces_revoke_text', { name: str(c.name) }),
                                                          t('revoke'),
                                                          true,
                                                      ))
                                                  )
                                                      return;
                                                  try {
                                                      await api.del('/federation/children/' + encodeURIComponent(str(c.id)));
                                                      toast(t('saved'));
                                                      load();
                                                  } catch (x) {
                                                      toast(x.message, 'error');
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

    const form = h(
        'form',
        {
            class: 'form-grid',
            testid: 'child-create',
            onsubmit: async (e) => {
                e.preventDefault();
                err.show(null);
                try {
                    const res = await api.post('/federation/children', {
                        code: code.value.trim(),
                        name: name.value.trim(),
                    });
                    code.value = '';
                    name.value = '';
                    clear(shown).append(
                        h('p', { class: 'warn-text' }, t('token_once')),
                        h('p', { class: 'muted' }, t('provinces_token_hint')),
                        secretBox(t('token'), str(res.token), 'child-token'),
                    );
                    load();
                } catch (x) {
                    err.show(x);
                }
            },
        },
        field(t('provinces_code'), code, t('provinces_code_hint')),
        field(t('name'), name),
        err,
        h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn btn-primary' }, t('provinces_add'))),
    );
    load();
    return section(t('provinces_manage'), form, shown, listBox);
}

export async function render(el, ctx) {
    ctx.setTitle(t('nav_provinces'));
    const q = ctx.query;
    const period = h('input', {
        value: q.get('period') || '',
        placeholder: '2026Q4 / 2026-11',
        maxlength: 8,
        testid: 'provinces-period',
    });
    const box = h('div', { testid: 'provinces' });
    let seq = 0;

    async function load() {
        const mine = ++seq;
        const p = period.value.trim() ? { period: period.value.trim() } : {};
        setQuery(p);
        clear(box);
        try {
            const data = await api.get('/federation/provinces', p);
            if (mine !== seq || !ctx.alive()) return;
            if (!period.value.trim()) period.value = str(data.period);
            box.append(h('h3', null, t('provinces_period', { period: str(data.period) })), provincesTable(data));
        } catch (e) {
            if (mine === seq) box.append(h('p', { class: 'error' }, e.message));
        }
    }

    period.addEventListener('change', load);
    el.append(
        h(
            'div',
            { class: 'provinces', testid: 'provinces-page' },
            h('p', { class: 'muted' }, t('provinces_hint')),
            h('div', { class: 'filters' }, field(t('provinces_period_label'), period)),
            section(t('nav_provinces'), box),
            isAdmin() ? managePanel() : null,
        ),
    );
    await load();
}
