// Every machine in the caller's scope: search by hostname, IP or id, filter
// by agency (with the agencies below it) and by status, sort by column.
// Paging, filtering and sorting are the server's (GET /machines).

import { h, str, fmtAgo, fmtTime, fmtNumber, badge } from '../dom.js';
import { t } from '../i18n.js';
import { api } from '../api.js';
import { listView } from '../list.js';
import { loadAgencies, agencyOptions, agencyLink, ipsOf, machineStatus, openDetections } from '../common.js';

export async function render(el, ctx) {
    ctx.setTitle(t('nav_machines'));
    const agencies = await loadAgencies();
    const list = listView({
        testid: 'machines',
        rowTestid: 'machine-row',
        filters: [
            { key: 'q', type: 'search', label: t('search'), placeholder: t('machine_search_hint') },
            {
                key: 'agency',
                type: 'select',
                label: t('agency'),
                options: agencyOptions(agencies, t('all_agencies')),
            },
            {
                key: 'status',
                type: 'select',
                label: t('status'),
                options: [
                    ['', t('all')],
                    ['online', t('online')],
                    ['offline', t('offline')],
                    ['infected', t('status_infected')],
                    ['outdated', t('status_outdated')],
                    ['retired', t('status_retired')],
                ],
            },
        ],
        defaultSort: 'hostname',
        defaultOrder: 'asc',
        columns: [
            {
                key: 'hostname',
                label: t('hostname'),
                sort: 'hostname',
                // A network sensor is enrolled like an agent; the list says which it is.
                render: (m) => [
                    h(
                        'a',
                        { href: '/machines/' + encodeURIComponent(str(m.id)), testid: 'machine-link' },
                        str(m.hostname) || str(m.id),
                    ),
                    m.role === 'sensor' ? [' ', badge('muted', t('role_sensor'), 'machine-sensor')] : null,
                ],
            },
            { key: 'agency', label: t('agency'), sort: 'agency', render: agencyLink },
            { key: 'ips', label: t('ip'), class: 'mono nowrap', render: ipsOf },
            { key: 'os', label: t('os'), render: (m) => str(m.os) },
            {
                key: 'db_version',
                label: t('db_version'),
                sort: 'db_version',
                class: 'num',
                firstOrder: 'desc',
                render: (m) => (m.db_version ? '#' + fmtNumber(m.db_version) : '—'),
            },
            {
                key: 'last_seen',
                label: t('last_seen'),
                sort: 'last_seen',
                class: 'nowrap',
                firstOrder: 'desc',
                render: (m) => h('span', { title: fmtTime(m.last_seen) }, fmtAgo(m.last_seen)),
            },
            {
                key: 'detections',
                label: t('open_detections_short'),
                sort: 'detections',
                class: 'num',
                firstOrder: 'desc',
                render: (m) => fmtNumber(openDetections(m)),
            },
            { key: 'status', label: t('status'), render: machineStatus },
        ],
        fetch: (p) => api.get('/machines', p),
        rowHref: (m) => '/machines/' + encodeURIComponent(str(m.id)),
        emptyText: t('no_machines'),
    });
    el.append(list.el);
}
