// The first page: how much of the province is covered (the goal is every
// machine), what is online, how fresh the signatures are, what was found,
// and coverage per agency. Everything comes from GET /overview, refreshed
// every minute while the page is open.

import { h, clear, num, fmtNumber, fmtPercent, fmtAgo, fmtTime, bar, section, empty, str } from '../dom.js';
import { t } from '../i18n.js';
import { api } from '../api.js';
import { detectionsChart } from '../chart.js';

function card(testid, label, value, sub, kind, href) {
    // A word instead of a number ("not published yet") is set smaller.
    const valueClass = [
        'card-value',
        typeof value === 'string' && /^[^0-9#]/.test(value) ? 'card-value-text' : '',
    ];
    const body = [
        h('div', { class: 'card-label' }, label),
        h('div', { class: valueClass, testid: testid + '-value' }, value),
        sub ? h('div', { class: 'card-sub' }, sub) : null,
    ];
    return href
        ? h('a', { class: ['card', kind ? 'card-' + kind : ''], testid, href }, body)
        : h('div', { class: ['card', kind ? 'card-' + kind : ''], testid }, body);
}

function cards(o) {
    const m = o.machines || {};
    const db = o.db || {};
    const det = o.detections || {};
    const enrolled = num(m.enrolled);
    const expected = num(m.expected);
    const coverageKind = expected && enrolled >= expected ? 'good' : 'warn';
    const outdated = num(db.outdated_machines ?? m.outdated);
    const days = num(db.outdated_days) || 15;

    const coverage = card(
        'card-enrolled',
        t('enrolled_expected'),
        [
            h('span', { testid: 'enrolled-count' }, fmtNumber(enrolled)),
            h('span', { class: 'of' }, ' / ' + fmtNumber(expected)),
        ],
        [
            h(
                'div',
                null,
                t('coverage'),
                ': ',
                h('strong', { testid: 'coverage-percent' }, fmtPercent(enrolled, expected)),
                ' · ',
                t('coverage_goal'),
            ),
            bar(enrolled, expected, 'coverage-bar'),
        ],
        coverageKind,
        '/agencies',
    );
    const online = card(
        'card-online',
        t('online') + ' / ' + t('offline'),
        [
            h('span', { class: 'ok-text' }, fmtNumber(m.online)),
            h('span', { class: 'of' }, ' / '),
            h('span', { class: 'muted' }, fmtNumber(m.offline)),
        ],
        m.retired ? t('retired_count', { n: fmtNumber(m.retired) }) : null,
        null,
        '/machines?status=offline',
    );
    const dbCard = card(
        'card-db',
        t('signature_version'),
        db.latest_version ? '#' + fmtNumber(db.latest_version) : t('none_published'),
        [
            db.latest_at ? h('div', null, t('published'), ' ', fmtAgo(db.latest_at)) : null,
            outdated > 0
                ? h(
                      'div',
                      { class: 'warn-text', testid: 'outdated-warning', role: 'alert' },
                      '⚠ ',
                      t('outdated_warning', { n: fmtNumber(outdated), days }),
                  )
                : h('div', { class: 'ok-text' }, t('all_up_to_date')),
        ],
        outdated > 0 ? 'warn' : null,
        '/machines?status=outdated',
    );
    const open = card(
        'card-detections',
        t('open_detections'),
        fmtNumber(det.open),
        t('last_24h', { n: fmtNumber(det.last_24h) }),
        num(det.open) > 0 ? 'bad' : 'good',
        '/detections?status=new',
    );
    return h('div', { class: 'cards' }, coverage, online, dbCard, open);
}

function topFamilies(list) {
    if (!list || !list.length) return empty(t('no_detections'));
    const max = Math.max(...list.map((f) => num(f.count)));
    return h(
        'ol',
        { class: 'toplist', testid: 'top-families' },
        list.map((f) =>
            h(
                'li',
                null,
                h(
                    'a',
                    { href: '/detections?family=' + encodeURIComponent(str(f.family)), class: 'mono' },
                    str(f.family) || '—',
                ),
                bar(f.count, max, null, true),
                h('span', { class: 'count' }, fmtNumber(f.count)),
            ),
        ),
    );
}

function topAgencies(list) {
    if (!list || !list.length) return empty(t('no_detections'));
    return h(
        'table',
        { class: 'table compact', testid: 'top-agencies' },
        h(
            'thead',
            null,
            h(
                'tr',
                null,
                h('th', null, t('agency')),
                h('th', { class: 'num' }, t('detections')),
                h('th', { class: 'num' }, t('infected_machines')),
            ),
        ),
        h(
            'tbody',
            null,
            list.map((a) =>
                h(
                    'tr',
                    null,
                    h(
                        'td',
                        null,
                        h(
                            'a',
                            { href: '/detections?agency=' + encodeURIComponent(str(a.agency_id)) },
                            str(a.name) || str(a.code),
                        ),
                    ),
                    h('td', { class: 'num' }, fmtNumber(a.detections)),
                    h('td', { class: 'num' }, fmtNumber(a.infected_machines)),
                ),
            ),
        ),
    );
}

function coverageTable(list) {
    if (!list || !list.length) return empty();
    return h(
        'table',
        { class: 'table compact', testid: 'coverage-table' },
        h(
            'thead',
            null,
            h(
                'tr',
                null,
                h('th', null, t('code')),
                h('th', null, t('agency')),
                h('th', { class: 'num' }, t('enrolled')),
                h('th', { class: 'num' }, t('expected')),
                h('th', { class: 'bar-col' }, t('coverage')),
            ),
        ),
        h(
            'tbody',
            null,
            list.map((a) =>
                h(
                    'tr',
                    { 'data-agency': a.agency_id },
                    h('td', { class: 'mono nowrap' }, str(a.code)),
                    h(
                        'td',
                        null,
                        h('a', { href: '/agencies/' + encodeURIComponent(str(a.agency_id)) }, str(a.name)),
                    ),
                    h('td', { class: 'num' }, fmtNumber(a.enrolled)),
                    h('td', { class: 'num' }, fmtNumber(a.expected)),
                    h(
                        'td',
                        { class: 'bar-col' },
                        bar(a.enrolled, a.expected),
                        ' ',
                        h('span', { class: 'pct' }, fmtPercent(a.enrolled, a.expected)),
                    ),
                ),
            ),
        ),
    );
}

export async function render(el, ctx) {
    ctx.setTitle(t('nav_overview'));
    const body = h('div', { class: 'overview', testid: 'overview' });
    const stamp = h('p', { class: 'muted small', testid: 'overview-updated' });
    el.append(body, stamp);

    async function load() {
        const o = await api.get('/overview');
        if (!ctx.alive()) return;
        clear(body).append(
            cards(o),
            h(
                'div',
                { class: 'grid-2' },
                section(t('detections_per_day'), detectionsChart(o.detections && o.detections.by_day)),
                section(t('top_families'), topFamilies(o.top_families)),
            ),
            h(
                'div',
                { class: 'grid-2' },
                section(t('coverage_by_agency'), coverageTable(o.coverage)),
                section(t('most_affected'), topAgencies(o.top_agencies)),
            ),
        );
        stamp.textContent = t('updated_at', { time: fmtTime(Date.now() / 1000) });
    }

    await load();
    const timer = setInterval(() => load().catch(() => {}), 60000);
    ctx.cleanup(() => clearInterval(timer));
}
