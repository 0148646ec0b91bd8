// Reports for the Ministry: the quarterly malware infection report. Pick a
// quarter (and, for part of the province, an agency), press the button, and
// the server produces the PDF in Vietnamese with the same tables as CSV and
// XLSX (POST /reports). Below, every report produced, with who made it,
// when, its size and SHA-256, and a download link (GET /reports). The
// quarter's deadline comes from GET /reports/deadline.

import { h, clear, str, fmtTime, fmtBytes, section, empty, select, field, toast } from '../dom.js';
import { t } from '../i18n.js';
import { api, listOf } from '../api.js';
import { session, role } from '../session.js';
import { loadAgencies, agencyOptions } from '../common.js';

// The last eight quarters up to the current one, newest first.
function quarters(current) {
    const m = /^(\d{4})Q([1-4])$/.exec(current || '');
    const out = [];
    if (!m) return out;
    let y = Number(m[1]);
    let q = Number(m[2]);
    for (let i = 0; i < 8; i++) {
        out.push([y + 'Q' + q, t('report_quarter_label', { q, y })]);
        if (--q === 0) {
            q = 4;
            y--;
        }
    }
    return out;
}

function deadlineNote(d) {
    if (!d) return null;
    const text = d.produced
        ? t('report_done', { quarter: d.quarter })
        : d.overdue
          ? t('report_overdue', { quarter: d.quarter, date: fmtTime(d.deadline) })
          : t('report_due', { quarter: d.quarter, date: fmtTime(d.deadline), n: d.days_left });
    return h(
        'p',
        { class: ['notice', d.produced ? '' : d.remind || d.overdue ? 'warn' : ''], testid: 'report-deadline' },
        text,
    );
}

function reportTable(items) {
    if (!items.length) return empty(t('report_none'));
    return h(
        'table',
        { class: 'table compact', testid: 'report-list' },
        h(
            'thead',
            null,
            h(
                'tr',
                null,
                h('th', null, t('report_period')),
                h('th', null, t('report_scope')),
                h('th', null, t('report_format')),
                h('th', { class: 'num' }, t('report_size')),
                h('th', null, 'SHA-256'),
                h('th', null, t('report_by')),
                h('th', null, t('report_at')),
            ),
        ),
        h(
            'tbody',
            null,
            items.map((r) =>
                h(
                    'tr',
                    { testid: 'report-row' },
                    h('td', null, str(r.period)),
                    h('td', null, r.agency_code ? str(r.agency_code) + ' — ' + str(r.agency_name) : t('whole_province')),
                    h(
                        'td',
                        null,
                        h(
                            'a',
                            {
                                href: '/api/v1/reports/' + r.id + '/file',
                                download: '',
                                testid: 'report-download-' + r.format,
                            },
                            String(r.format).toUpperCase(),
                        ),
                    ),
                    h('td', { class: 'num' }, fmtBytes(r.size)),
                    h('td', { class: 'mono', title: str(r.sha256) }, str(r.sha256).slice(0, 16) + '…'),
                    h('td', null, str(r.created_by)),
                    h('td', { class: 'nowrap' }, fmtTime(r.created_at)),
                ),
            ),
        ),
    );
}

export async function render(el, ctx) {
    ctx.setTitle(t('nav_reports'));
    const [deadline, agencies] = await Promise.all([api.get('/reports/deadline'), loadAgencies()]);
    const me = session.me || {};
    const province = !me.agency;
    const quarterSel = select(quarters(deadline.quarter), deadline.quarter, { testid: 'report-quarter' });
    const agencySel = select(
        agencyOptions(agencies, province ? t('whole_province') : null),
        province ? '' : me.agency.id,
        { testid: 'report-agency' },
    );
    const listBox = h('div');
    const noteBox = h('div', null, deadlineNote(deadline));
    const canWrite = role() !== 'auditor';

    async function refresh() {
        const { items } = listOf(await api.get('/reports', { per_page: 100 }));
        clear(listBox).appendChild(reportTable(items));
        clear(noteBox).appendChild(deadlineNote(await api.get('/reports/deadline')));
    }

    const button = h(
        'button',
        {
            type: 'button',
            class: 'btn',
            testid: 'report-create',
            disabled: !canWrite,
            onclick: async () => {
                button.disabled = true;
                const old = button.textContent;
                button.textContent = t('report_working');
                try {
                    const body = { period: quarterSel.value };
                    if (agencySel.value) body.agency = Number(agencySel.value);
                    const res = await api.post('/reports', body);
                    toast(t('report_created', { quarter: res.period }));
                    await refresh();
                } catch (e) {
                    toast(t('report_failed') + ' ' + e.message, 'error');
                } finally {
                    button.disabled = false;
                    button.textContent = old;
                }
            },
        },
        t('report_create'),
    );

    clear(el).appendChild(
        h(
            'div',
            null,
            noteBox,
            section(
                t('report_quarterly'),
                h('p', { class: 'hint' }, t('report_hint')),
                h('div', { class: 'filters' }, field(t('report_period'), quarterSel), field(t('agency'), agencySel), button),
            ),
            section(t('report_history'), listBox),
        ),
    );
    await refresh();
}
