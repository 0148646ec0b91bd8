// The malware infection index (docs/internals/infection-index.md): for a
// month or a quarter, the index of the caller's scope (the province, or
// the agency picked) with its trend, then every agency of the scope in tree
// order with the components the index is computed from. Clicking an agency
// shows the same page for it (its own children); its machines are one more
// click away in the machine list filtered by agency. Data: GET /index and
// GET /index/trend; period, kind and agency live in the address bar.

import { h, clear, str, fmtNumber, section, empty, select, field } from '../dom.js';
import { t, lang } from '../i18n.js';
import { api } from '../api.js';
import { setQuery } from '../router.js';

const OFFSET = 7 * 3600; // the server's default reporting time zone, +07:00
const MONTHS_BACK = 12;
const QUARTERS_BACK = 8;

// The labels of the last periods of a kind, newest first ("2026-11",
// "2026Q4"), counted in the province's time zone.
function periodLabels(kind) {
    const now = new Date(Date.now() + OFFSET * 1000);
    let y = now.getUTCFullYear();
    let m = now.getUTCMonth() + 1;
    const out = [];
    if (kind === 'quarter') {
        let q = Math.floor((m - 1) / 3) + 1;
        for (let i = 0; i < QUARTERS_BACK; i++) {
            out.push(`${y}Q${q}`);
            if (--q === 0) {
                q = 4;
                y--;
            }
        }
    } else {
        for (let i = 0; i < MONTHS_BACK; i++) {
            out.push(`${y}-${String(m).padStart(2, '0')}`);
            if (--m === 0) {
                m = 12;
                y--;
            }
        }
    }
    return out;
}

function fmtIndex(v) {
    const n = Number(v);
    if (!Number.isFinite(n)) return '—';
    return n.toLocaleString(lang() === 'vi' ? 'vi-VN' : 'en-GB', {
        minimumFractionDigits: 1,
        maximumFractionDigits: 1,
    });
}

function fmtRate(v) {
    const n = Number(v);
    if (!Number.isFinite(n)) return '—';
    return (
        (100 * n).toLocaleString(lang() === 'vi' ? 'vi-VN' : 'en-GB', { maximumFractionDigits: 1 }) + '%'
    );
}

// Index levels for colour: the default formula runs 0 (clean) to 100.
function level(v) {
    const n = Number(v);
    return n >= 50 ? 'bad' : n >= 20 ? 'warn' : 'ok';
}

// The trend as a small SVG line with a dot and value per period.
function trendChart(points) {
    const W = 720;
    const H = 200;
    const P = { left: 40, right: 16, top: 16, bottom: 30 };
    const iw = W - P.left - P.right;
    const ih = H - P.top - P.bottom;
    const values = points.map((p) => Number(p.index) || 0);
    const max = Math.max(10, Math.ceil(Math.max(...values, 0) / 10) * 10);
    const x = (i) => P.left + (points.length > 1 ? (iw * i) / (points.length - 1) : iw / 2);
    const y = (v) => P.top + ih - (ih * v) / max;
    const s = (tag, attrs, ...c) => h('svg:' + tag, attrs, ...c);
    const root = s('svg', {
        viewBox: `0 0 ${W} ${H}`,
        class: 'chart',
        role: 'img',
        'aria-label': t('inf_trend'),
        testid: 'infection-trend',
        preserveAspectRatio: 'xMidYMid meet',
    });
    for (let i = 0; i <= 4; i++) {
        const v = (max * i) / 4;
        root.appendChild(s('line', { x1: P.left, x2: W - P.right, y1: y(v), y2: y(v), class: i ? 'grid' : 'axis' }));
        root.appendChild(s('text', { x: P.left - 6, y: y(v) + 4, class: 'tick', 'text-anchor': 'end' }, fmtNumber(v)));
    }
    if (points.length > 1) {
        const d = points.map((p, i) => `${i ? 'L' : 'M'}${x(i).toFixed(1)},${y(values[i]).toFixed(1)}`).join(' ');
        root.appendChild(s('path', { d, class: 'line', fill: 'none', stroke: 'currentColor', 'stroke-width': 2 }));
    }
    points.forEach((p, i) => {
        const label = str(p.period && p.period.label);
        const g = s('g', { class: 'point', 'data-period': label, 'data-index': values[i].toFixed(2) });
        g.appendChild(s('circle', { cx: x(i), cy: y(values[i]), r: 4, class: 'col' }));
        g.appendChild(s('title', null, `${label}: ${fmtIndex(values[i])}`));
        g.appendChild(
            s('text', { x: x(i), y: y(values[i]) - 8, class: 'tick', 'text-anchor': 'middle' }, fmtIndex(values[i])),
        );
        g.appendChild(s('text', { x: x(i), y: H - P.bottom + 18, class: 'tick', 'text-anchor': 'middle' }, label));
        root.appendChild(g);
    });
    return root;
}

function summary(data) {
    const sc = data.scope || {};
    const c = sc.components || {};
    const r = sc.rates || {};
    return h(
        'div',
        { class: 'infection-summary' },
        h(
            'div',
            { class: ['stat', 'index-' + level(sc.index)] },
            h('div', { class: 'stat-label' }, t('inf_index')),
            h('div', { class: 'stat-value', testid: 'infection-index', 'data-value': str(sc.index) }, fmtIndex(sc.index)),
        ),
        h(
            'dl',
            { class: 'props' },
            h('dt', null, t('inf_infected')),
            h('dd', { testid: 'infection-infected' }, `${fmtNumber(c.infected)} / ${fmtNumber(c.managed)} (${fmtRate(r.infected_rate)})`),
            h('dt', null, t('inf_coverage')),
            h('dd', null, `${fmtNumber(c.managed)} / ${fmtNumber(c.expected)} (${fmtRate(r.coverage)})`),
            h('dt', null, t('inf_stale')),
            h('dd', null, `${fmtNumber(c.stale)} (${fmtRate(r.stale_rate)})`),
            h('dt', null, t('inf_c2_hosts')),
            h('dd', null, `${fmtNumber(c.c2_hosts)} (${fmtNumber(c.c2_hits)} ${t('inf_c2_hits')})`),
            h('dt', null, t('inf_detections')),
            h('dd', null, `${fmtNumber(c.detections)} (${fmtNumber(c.families)} ${t('inf_families')}, ${fmtNumber(c.open)} ${t('inf_open')})`),
            h('dt', null, t('inf_sharing')),
            h('dd', null, `${fmtNumber(c.share_accepted)} / ${fmtNumber(c.share_slots)} (${fmtRate(r.sharing_uptime)})`),
        ),
    );
}

function agencyTable(data, period, kind) {
    const items = data.items || [];
    if (!items.length) return empty(t('inf_none'));
    const rows = items.map((a) => {
        const c = a.components || {};
        const r = a.rates || {};
        const id = encodeURIComponent(str(a.agency_id));
        const drill = `/infection?kind=${kind}&period=${encodeURIComponent(period)}&agency=${id}`;
        return h(
            'tr',
            { testid: 'infection-row', 'data-agency': str(a.agency_id) },
            h(
                'td',
                { class: ['tree', 'depth-' + Math.min(6, Number(a.depth) || 0)] },
                h('span', { class: 'indent' }, '\u00a0\u00a0'.repeat(Number(a.depth) || 0)),
                h('a', { href: drill, title: str(a.code), testid: 'infection-drill' }, str(a.name) || str(a.code)),
            ),
            h('td', { class: 'num' }, `${fmtNumber(c.managed)} / ${fmtNumber(c.expected)}`),
            h('td', { class: 'num' }, fmtNumber(c.infected)),
            h('td', { class: 'num' }, fmtRate(r.infected_rate)),
            h('td', { class: 'num' }, fmtNumber(c.stale)),
            h('td', { class: 'num' }, fmtNumber(c.c2_hosts)),
            h('td', { class: 'num' }, fmtNumber(c.detections)),
            h('td', { class: 'num' }, fmtNumber(c.families)),
            h('td', { class: ['num', 'index-' + level(a.index)], testid: 'infection-row-index' }, fmtIndex(a.index)),
            h('td', null, h('a', { href: '/machines?agency=' + id }, t('inf_machines'))),
        );
    });
    return h(
        'table',
        { class: 'table compact', testid: 'infection-agencies' },
        h(
            'thead',
            null,
            h(
                'tr',
                null,
                [
                    ['agency', ''],
                    ['inf_managed', 'num'],
                    ['inf_infected_n', 'num'],
                    ['inf_infected_rate', 'num'],
                    ['inf_stale_n', 'num'],
                    ['inf_c2_hosts', 'num'],
                    ['inf_detections', 'num'],
                    ['inf_families_n', 'num'],
                    ['inf_index', 'num'],
                    ['', ''],
                ].map(([k, cls]) => h('th', { class: cls || null }, k ? t(k) : '')),
            ),
        ),
        h('tbody', null, rows),
    );
}

export async function render(el, ctx) {
    ctx.setTitle(t('nav_infection'));
    const q = ctx.query;
    const kind = select(
        [
            ['month', t('inf_month')],
            ['quarter', t('inf_quarter')],
        ],
        q.get('kind') === 'quarter' ? 'quarter' : 'month',
        { testid: 'infection-kind' },
    );
    const period = h('select', { testid: 'infection-period' });
    const agency = q.get('agency') || '';
    const head = h('div', { testid: 'infection-head' });
    const trendBox = h('div');
    const tableBox = h('div');
    const formulaBox = h('p', { class: 'muted mono wrap', testid: 'infection-formula' });
    let seq = 0;

    function fillPeriods(want) {
        clear(period);
        const labels = periodLabels(kind.value);
        const value = labels.includes(want) ? want : labels[0];
        for (const l of labels) period.appendChild(h('option', { value: l, selected: l === value }, l));
    }

    async function load() {
        const mine = ++seq;
        const p = { kind: kind.value, period: period.value };
        if (agency) p.agency = agency;
        setQuery(p);
        for (const b of [head, trendBox, tableBox]) clear(b);
        head.append(h('p', { class: 'muted' }, t('inf_loading')));
        try {
            const base = { period: period.value };
            if (agency) base.agency = agency;
            const [data, trend] = await Promise.all([
                api.get('/index', base),
                api.get('/index/trend', { ...base, kind: kind.value }),
            ]);
            if (mine !== seq || !ctx.alive()) return;
            clear(head);
            const root = (data.items || [])[0];
            head.append(
                h(
                    'h3',
                    null,
                    agency && root ? str(root.name) : t('inf_whole'),
                    ' — ',
                    str(data.period && data.period.label),
                ),
                agency ? h('a', { href: `/infection?kind=${kind.value}&period=${encodeURIComponent(period.value)}`, class: 'btn' }, t('inf_back')) : null,
                summary(data),
            );
            trendBox.append(trendChart(trend.points || []));
            tableBox.append(agencyTable(data, period.value, kind.value));
            formulaBox.textContent = t('inf_formula') + ': ' + str(data.formula);
        } catch (e) {
            if (mine === seq) {
                clear(head);
                head.append(h('p', { class: 'error' }, e.message));
            }
        }
    }

    fillPeriods(q.get('period'));
    kind.addEventListener('change', () => {
        fillPeriods('');
        load();
    });
    period.addEventListener('change', load);
    el.append(
        h(
            'div',
            { class: 'infection', testid: 'infection-page' },
            h('p', { class: 'muted' }, t('inf_hint')),
            h('div', { class: 'filters' }, field(t('inf_kind'), kind), field(t('inf_period'), period)),
            section(t('inf_index'), head),
            section(t('inf_trend'), trendBox),
            section(t('inf_agencies'), tableBox),
            formulaBox,
        ),
    );
    await load();
}
