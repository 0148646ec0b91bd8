// The audit log: who did what, from where, to what. Filtered by free text,
// action and date range; paged by the server (GET /audit).

import { h, str, fmtTime } from '../dom.js';
import { t } from '../i18n.js';
import { api } from '../api.js';
import { listView } from '../list.js';
import { kvText } from '../common.js';

export async function render(el, ctx) {
    ctx.setTitle(t('nav_audit'));
    const list = listView({
        testid: 'audit',
        rowTestid: 'audit-row',
        filters: [
            { key: 'q', type: 'search', label: t('search'), placeholder: t('audit_search_hint') },
            { key: 'action', type: 'search', label: t('action'), placeholder: 'login, user.create…' },
            { key: 'from', type: 'date', label: t('from') },
            { key: 'to', type: 'date', label: t('to'), end: true },
        ],
        columns: [
            { key: 'at', label: t('time'), class: 'nowrap', render: (a) => fmtTime(a.at) },
            { key: 'username', label: t('who'), class: 'wrap', render: (a) => str(a.username) },
            { key: 'remote', label: t('from_address'), class: 'mono', render: (a) => str(a.remote) },
            { key: 'action', label: t('action'), class: 'mono', render: (a) => str(a.action) },
            { key: 'target', label: t('target'), class: 'mono wrap', render: (a) => str(a.target) },
            { key: 'detail', label: t('detail'), class: 'wrap small', render: (a) => kvText(a.detail) },
        ],
        fetch: (p) => api.get('/audit', p),
        emptyText: t('no_audit'),
    });
    el.append(list.el);
}
