// C&C connections: the hits that network sensors (and agents) report when
// a machine of an agency talks to a known command-and-control or malware
// distribution address or name. First a table per agency (hits, internal
// hosts, indicators, last seen) and the commonest indicators, from
// GET /c2-hits/summary; then the hits themselves, newest first, from
// GET /c2-hits, a page at a time by the answer's cursor. Filters: agency
// (with the agencies below it) and period; both live in the address bar.

import { h, clear, str, fmtNumber, fmtTime, section, empty, select, field, modal, toast } from '../dom.js';
import { t } from '../i18n.js';
import { api } from '../api.js';
import { setQuery } from '../router.js';
import { loadAgencies, agencyOptions, agencyLink, detectionStatus, DETECTION_STATUSES } from '../common.js';
import { role } from '../session.js';

const PERIODS = [1, 7, 30, 90, 365];
const PAGE = 100;

function summaryTable(s) {
    const rows = (s.agencies || []).map((r) =>
        h(
            'tr',
            { testid: 'c2-agency-row' },
            h('td', null, agencyLink(r)),
            h('td', { class: 'num' }, fmtNumber(r.hits)),
            h('td', { class: 'num' }, fmtNumber(r.hosts)),
            h('td', { class: 'num' }, fmtNumber(r.indicators)),
            h('td', { class: 'nowrap' }, fmtTime(r.last_seen)),
        ),
    );
    if (!rows.length) return empty(t('c2_none'));
    return h(
        'table',
        { class: 'table compact', testid: 'c2-agencies' },
        h(
            'thead',
            null,
            h(
                'tr',
                null,
                h('th', null, t('agency')),
                h('th', { class: 'num' }, t('c2_hits')),
                h('th', { class: 'num' }, t('c2_hosts')),
                h('th', { class: 'num' }, t('c2_indicators')),
                h('th', null, t('last_seen')),
            ),
        ),
        h('tbody', null, rows),
    );
}

function topTable(s) {
    const rows = (s.top_indicators || []).map((r) =>
        h(
            'tr',
            null,
            h('td', { class: 'mono wrap' }, str(r.value)),
            h('td', null, str(r.kind)),
            h('td', null, str(r.category)),
            h('td', { class: 'num' }, fmtNumber(r.hits)),
            h('td', { class: 'num' }, fmtNumber(r.hosts)),
            h('td', { class: 'num' }, fmtNumber(r.agencies)),
        ),
    );
    if (!rows.length) return null;
    return h(
        'table',
        { class: 'table compact', testid: 'c2-top' },
        h(
            'thead',
            null,
            h(
                'tr',
                null,
                h('th', null, t('c2_indicator')),
                h('th', null, t('kind')),
                h('th', null, t('c2_category')),
                h('th', { class: 'num' }, t('c2_hits')),
                h('th', { class: 'num' }, t('c2_hosts')),
                h('th', { class: 'num' }, t('nav_agencies')),
            ),
        ),
        h('tbody', null, rows),
    );
}

function sourcesOf(hit) {
    const list = (hit.indicator && Array.isArray(hit.indicator.sources) && hit.indicator.sources) || [];
    return list.map((s) => str(s && s.source)).filter(Boolean).join(', ');
}

// What was done about a contact (POST /c2-hits/{id}/status): the new status
// and a note, applied to every hit of the same host and indicator. The
// quarterly report prints it.
async function changeStatus(x, cell) {
    const choice = select(
        DETECTION_STATUSES.map((s) => [s, t('det_' + s)]),
        x.status || 'new',
        { testid: 'c2-status-select' },
    );
    const note = h('textarea', { rows: 3, maxlength: 2000, testid: 'c2-status-note' }, str(x.status_note));
    const ok = await modal(t('c2_action_title'), [field(t('c2_status'), choice), field(t('c2_note'), note)], [
        { label: t('cancel'), value: false, class: 'btn btn-ghost', testid: 'c2-status-cancel' },
        { label: t('save'), value: true, class: 'btn btn-primary', testid: 'c2-status-save' },
    ]);
    if (!ok) return;
    try {
        const res = await api.post('/c2-hits/' + x.id + '/status', { status: choice.value, note: note.value });
        x.status = res.status;
        x.status_note = res.note;
        clear(cell).appendChild(statusCell(x));
        toast(t('c2_status_saved', { n: res.changed }));
    } catch (e) {
        toast(e.message, 'error');
    }
}

function statusCell(x) {
    const badgeEl = detectionStatus(x.status || 'new');
    const wrap = h('span', { class: 'c2-status', title: str(x.status_note) }, badgeEl);
    if (role() !== 'auditor') {
        const btn = h(
            'button',
            { type: 'button', class: 'btn btn-ghost btn-small', testid: 'c2-status-change' },
            t('c2_action'),
        );
        btn.addEventListener('click', () => changeStatus(x, wrap.parentNode));
        wrap.append(' ', btn);
    }
    return wrap;
}

function hitRow(x) {
    const ind = x.indicator || {};
    const status = h('td', { class: 'nowrap', testid: 'c2-hit-status' });
    status.appendChild(statusCell(x));
    return h(
        'tr',
        { testid: 'c2-hit-row' },
        h('td', { class: 'mono nowrap', testid: 'c2-hit-host' }, str(x.host)),
        h('td', null, agencyLink(x)),
        h('td', { class: 'mono wrap', testid: 'c2-hit-indicator', title: str(ind.kind) }, str(ind.value)),
        h('td', null, str(x.category)),
        h('td', null, sourcesOf(x)),
        h('td', { class: 'mono' }, str(x.where)),
        h('td', { class: 'mono wrap', title: str(x.evidence) }, str(x.observed)),
        h('td', { class: 'num' }, fmtNumber(x.count)),
        h('td', { class: 'nowrap' }, fmtTime(x.first_seen)),
        h('td', { class: 'nowrap' }, fmtTime(x.last_seen)),
        status,
    );
}

function hitTable(body) {
    return h(
        'table',
        { class: 'table', testid: 'c2-hits' },
        h(
            'thead',
            null,
            h(
                'tr',
                null,
                [
                    'c2_host',
                    'agency',
                    'c2_indicator',
                    'c2_category',
                    'c2_source',
                    'c2_where',
                    'c2_observed',
                    'c2_count',
                    'c2_first_seen',
                    'last_seen',
                    'c2_status',
                ].map((k) => h('th', null, t(k))),
            ),
        ),
        body,
    );
}

export async function render(el, ctx) {
    ctx.setTitle(t('nav_c2'));
    const agencies = await loadAgencies();
    if (!ctx.alive()) return;
    const q = ctx.query;
    const agency = select(agencyOptions(agencies, t('all_agencies')), q.get('agency') || '', {
        testid: 'c2-agency',
    });
    const days = PERIODS.includes(Number(q.get('days'))) ? Number(q.get('days')) : 30;
    const period = select(
        PERIODS.map((d) => [d, t('c2_last_days', { n: d })]),
        days,
        { testid: 'c2-period' },
    );
    const summaryBox = h('div', { testid: 'c2-summary' });
    const tbody = h('tbody');
    const more = h('button', { type: 'button', class: 'btn', testid: 'c2-more', hidden: true }, t('c2_more'));
    const listBox = h('div', null, hitTable(tbody), more);
    let cursor = null;
    let seq = 0;

    function params() {
        const p = { days: period.value };
        if (agency.value) p.agency = agency.value;
        return p;
    }

    async function loadPage(mine) {
        const p = { limit: PAGE, since: Math.floor(Date.now() / 1000) - Number(period.value) * 86400 };
        if (agency.value) p.agency = agency.value;
        if (cursor) p.cursor = cursor;
        const data = await api.get('/c2-hits', p);
        if (mine !== seq || !ctx.alive()) return;
        for (const x of data.items || []) tbody.appendChild(hitRow(x));
        cursor = data.next_cursor || null;
        more.hidden = !cursor;
        if (!tbody.children.length) tbody.appendChild(h('tr', null, h('td', { colspan: 11 }, empty(t('c2_none')))));
    }

    async function load() {
        const mine = ++seq;
        setQuery(params());
        cursor = null;
        clear(tbody);
        clear(summaryBox);
        try {
            const s = await api.get('/c2-hits/summary', params());
            if (mine !== seq || !ctx.alive()) return;
            summaryBox.append(summaryTable(s));
            const top = topTable(s);
            if (top) summaryBox.append(h('h3', null, t('c2_top')), top);
            await loadPage(mine);
        } catch (e) {
            if (mine === seq) summaryBox.append(h('p', { class: 'error' }, e.message));
        }
    }

    agency.addEventListener('change', load);
    period.addEventListener('change', load);
    more.addEventListener('click', () => loadPage(seq).catch(() => {}));
    el.append(
        h(
            'div',
            { class: 'c2', testid: 'c2-page' },
            h('p', { class: 'muted' }, t('c2_hint')),
            h('div', { class: 'filters' }, field(t('agency'), agency), field(t('c2_period'), period)),
            section(t('c2_by_agency'), summaryBox),
            section(t('c2_hit_list'), listBox),
        ),
    );
    await load();
}
