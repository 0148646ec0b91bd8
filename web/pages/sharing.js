// Sharing with the national malware monitoring system (Chia sẻ dữ liệu):
// whether sharing is on and how (GET /sharing: the receiver's address, the
// schedule, the kind of signing key, never a secret), the job's last run,
// and the latest submissions with the receiver's answers and a link to
// each signed document as it was sent. Administrators get "send now"
// (POST /sharing/send-now), which makes failed submissions due at once and
// runs the job at its next tick. Officers cannot open it (the server
// answers 403): the submissions describe the whole province.

import { h, clear, str, fmtTime, section, empty, dl, badge, toast } from '../dom.js';
import { t } from '../i18n.js';
import { api } from '../api.js';
import { isAdmin } from '../session.js';

const STATUS_BADGE = { accepted: 'ok', pending: 'muted', failed: 'bad' };

function fmtDuration(s) {
    const n = Number(s) || 0;
    if (n % 86400 === 0) return t('sharing_days', { n: n / 86400 });
    if (n % 3600 === 0) return t('sharing_hours', { n: n / 3600 });
    return t('sharing_minutes', { n: Math.round(n / 60) });
}

function statusBadge(s) {
    return badge(STATUS_BADGE[s] || 'muted', t('sharing_status_' + s) || str(s), 'sharing-status');
}

function configPanel(d) {
    const job = d.job || {};
    return section(
        t('sharing_config'),
        dl([
            [
                t('sharing_enabled'),
                d.enabled ? badge('ok', t('yes')) : badge('off', t('sharing_off')),
                'sharing-enabled',
            ],
            [t('sharing_url'), h('span', { class: 'mono wrap' }, str(d.url))],
            [t('sharing_interval'), fmtDuration(d.interval)],
            [t('sharing_retry'), fmtDuration(d.retry)],
            [t('sharing_key'), t('sharing_key_' + d.key_source)],
            [t('sharing_org'), [str(d.org_id), ' ', str(d.org_name)].join('').trim()],
            [t('sharing_product'), str(d.product_name)],
            [
                t('sharing_last_run'),
                job.last_end ? fmtTime(job.last_end) + ' — ' + str(job.last_message) : t('never'),
            ],
            [t('sharing_next_run'), job.next_run ? fmtTime(job.next_run) : '—'],
        ]),
    );
}

function submissionRow(s) {
    const doc = s.has_document
        ? h('a', { href: '/api/v1/sharing/submissions/' + s.id + '/document', download: '' }, t('sharing_document'))
        : '—';
    const answer = [s.http_status ? 'HTTP ' + s.http_status : '', s.error || '', s.response || '']
        .filter(Boolean)
        .join(' · ');
    return h(
        'tr',
        { testid: 'sharing-row' },
        h('td', { class: 'nowrap' }, fmtTime(s.period_start) + ' → ' + fmtTime(s.period_end)),
        h('td', null, statusBadge(s.status)),
        h('td', { class: 'num' }, String(s.attempts)),
        h('td', { class: 'nowrap' }, s.last_attempt ? fmtTime(s.last_attempt) : '—'),
        h('td', { class: 'nowrap' }, s.status === 'accepted' ? fmtTime(s.accepted_at) : fmtTime(s.next_attempt)),
        h('td', { class: 'wrap small' }, answer + (s.response_truncated ? ' …' : '')),
        h('td', { class: 'mono small' }, str(s.sha256).slice(0, 16)),
        h('td', null, doc),
    );
}

function submissionTable(items) {
    if (!items.length) return empty(t('sharing_none'));
    return h(
        'table',
        { class: 'table compact', testid: 'sharing-submissions' },
        h(
            'thead',
            null,
            h(
                'tr',
                null,
                h('th', null, t('sharing_period')),
                h('th', null, t('status')),
                h('th', { class: 'num' }, t('sharing_attempts')),
                h('th', null, t('sharing_last_attempt')),
                h('th', null, t('sharing_accepted_or_next')),
                h('th', null, t('sharing_answer')),
                h('th', null, 'SHA-256'),
                h('th', null, ''),
            ),
        ),
        h('tbody', null, items.map(submissionRow)),
    );
}

export async function render(el, ctx) {
    ctx.setTitle(t('nav_sharing'));
    const box = h('div', { testid: 'sharing-page' });
    el.append(box);

    async function load() {
        let d;
        try {
            d = await api.get('/sharing', { limit: 30 });
        } catch (e) {
            if (!ctx.alive()) return;
            clear(box);
            box.append(h('p', { class: 'error' }, e.message));
            return;
        }
        if (!ctx.alive()) return;
        clear(box);
        const actions = h('div', { class: 'actions' });
        if (isAdmin() && d.enabled) {
            const btn = h(
                'button',
                { type: 'button', class: 'btn primary', testid: 'sharing-send-now' },
                t('sharing_send_now'),
            );
            btn.addEventListener('click', async () => {
                btn.disabled = true;
                try {
                    await api.post('/sharing/send-now');
                    toast(t('sharing_sent'));
                } catch (e) {
                    toast(e.message, 'error');
                } finally {
                    btn.disabled = false;
                }
            });
            actions.append(btn);
        }
        const refresh = h('button', { type: 'button', class: 'btn' }, t('refresh'));
        refresh.addEventListener('click', () => load());
        actions.append(refresh);
        box.append(
            h('p', { class: 'hint' }, t('sharing_hint')),
            actions,
            configPanel(d),
            section(t('sharing_submissions'), submissionTable(d.submissions || [])),
        );
    }
    await load();
}
