// A paged, filtered, sortable table fed by one of the API's list endpoints
// ({"items","total","page","per_page"}). The server does the paging, the
// filtering and the sorting; this keeps the state in the address bar (so a
// reload or a shared link shows the same page) and draws the rows.

import { h, clear, empty, select, debounce, fmtNumber } from './dom.js';
import { listOf } from './api.js';
import { navigate, setQuery, currentQuery } from './router.js';
import { t } from './i18n.js';

// opts: {testid, syncUrl (default true), filters:[{key,type:'search'|'select'|'date',label,options}],
//        columns:[{key,label,sort,render(item),class}], fetch(params),
//        rowHref(item), rowTestid, defaultSort, defaultOrder, perPage, extra(params)}
// Headers take only the alignment of their column, not its font.
function headClass(c) {
    return c.class && c.class.split(' ').includes('num') ? 'num' : null;
}

export function listView(opts) {
    // A list embedded in a detail page keeps its state to itself.
    const sync = opts.syncUrl !== false;
    const q = sync ? currentQuery() : new URLSearchParams();
    const state = {
        page: Math.max(1, Number(q.get('page')) || 1),
        per_page: Number(q.get('per_page')) || opts.perPage || 50,
        sort: q.get('sort') || opts.defaultSort || '',
        order: q.get('order') || opts.defaultOrder || '',
    };
    for (const f of opts.filters || []) state[f.key] = q.get(f.key) || f.initial || '';

    const tableBox = h('div', { class: 'table-box' });
    const pagerBox = h('div', { class: 'pager' });
    const filterBar = h('form', { class: 'filters', onsubmit: (e) => e.preventDefault() });
    let seq = 0;

    function params() {
        const p = { page: state.page, per_page: state.per_page };
        if (opts.defaultSort !== undefined) {
            p.sort = state.sort;
            p.order = state.order;
        }
        for (const f of opts.filters || []) p[f.key] = state[f.key];
        return p;
    }

    // The address bar leaves out what is the default anyway.
    function urlParams() {
        const p = params();
        if (p.per_page === (opts.perPage || 50)) delete p.per_page;
        if (p.sort === (opts.defaultSort || '') && p.order === (opts.defaultOrder || '')) {
            delete p.sort;
            delete p.order;
        }
        return p;
    }

    function apiParams() {
        const p = params();
        for (const f of opts.filters || []) {
            if (f.type === 'date' && p[f.key]) {
                // A date filter means the whole day in local time; "to" is inclusive.
                const d = new Date(p[f.key] + 'T00:00:00');
                p[f.key] = Math.floor(d.getTime() / 1000) + (f.end ? 86399 : 0);
            }
        }
        return p;
    }

    async function load() {
        const my = ++seq;
        if (sync) setQuery(urlParams());
        tableBox.setAttribute('aria-busy', 'true');
        let data;
        try {
            data = listOf(await opts.fetch(apiParams()));
        } catch (e) {
            if (my !== seq) return;
            clear(tableBox).appendChild(h('p', { class: 'error', testid: 'list-error' }, e.message));
            clear(pagerBox);
            tableBox.removeAttribute('aria-busy');
            return;
        }
        if (my !== seq) return;
        tableBox.removeAttribute('aria-busy');
        drawTable(data);
        drawPager(data);
    }

    function sortHeader(col) {
        const active = state.sort === col.sort;
        const arrow = active ? (state.order === 'desc' ? ' ▼' : ' ▲') : '';
        return h(
            'th',
            {
                class: ['sortable', headClass(col)],
                'aria-sort': active ? (state.order === 'desc' ? 'descending' : 'ascending') : 'none',
            },
            h(
                'button',
                {
                    type: 'button',
                    class: 'th-button',
                    testid: 'sort-' + col.sort,
                    onclick: () => {
                        if (active) state.order = state.order === 'desc' ? 'asc' : 'desc';
                        else {
                            state.sort = col.sort;
                            state.order = col.firstOrder || 'asc';
                        }
                        state.page = 1;
                        load();
                    },
                },
                col.label,
                arrow,
            ),
        );
    }

    function drawTable(data) {
        clear(tableBox);
        if (!data.items.length) {
            tableBox.appendChild(empty(opts.emptyText));
            return;
        }
        const head = h(
            'tr',
            null,
            opts.columns.map((c) => (c.sort ? sortHeader(c) : h('th', { class: headClass(c) }, c.label))),
        );
        const body = h('tbody');
        for (const item of data.items) {
            const href = opts.rowHref ? opts.rowHref(item) : null;
            const tr = h('tr', {
                class: href ? 'clickable' : null,
                testid: opts.rowTestid,
                'data-id': item.id,
                onclick: href
                    ? (e) => {
                          if (e.target.closest('a,button,input,select,textarea')) return;
                          navigate(href);
                      }
                    : null,
            });
            for (const c of opts.columns) {
                const v = c.render ? c.render(item) : item[c.key];
                tr.appendChild(
                    h('td', { class: c.class }, v === undefined || v === null || v === '' ? '—' : v),
                );
            }
            body.appendChild(tr);
        }
        tableBox.appendChild(
            h('table', { class: 'table', testid: opts.testid + '-table' }, h('thead', null, head), body),
        );
    }

    function drawPager(data) {
        clear(pagerBox);
        const pages = Math.max(1, Math.ceil(data.total / state.per_page));
        const from = data.total ? (state.page - 1) * state.per_page + 1 : 0;
        const to = Math.min(data.total, from + data.items.length - 1);
        const go = (p) => {
            state.page = Math.min(Math.max(1, p), pages);
            load();
        };
        pagerBox.append(
            h(
                'span',
                { class: 'pager-info', testid: opts.testid + '-total', 'data-total': data.total },
                t('showing', {
                    from: fmtNumber(from),
                    to: fmtNumber(Math.max(to, 0)),
                    total: fmtNumber(data.total) + (data.capped ? '+' : ''),
                }),
            ),
            h(
                'span',
                { class: 'pager-buttons' },
                h(
                    'button',
                    {
                        type: 'button',
                        class: 'btn btn-small',
                        disabled: state.page <= 1,
                        onclick: () => go(1),
                        'aria-label': t('first_page'),
                    },
                    '«',
                ),
                h(
                    'button',
                    {
                        type: 'button',
                        class: 'btn btn-small',
                        disabled: state.page <= 1,
                        onclick: () => go(state.page - 1),
                        testid: 'page-prev',
                    },
                    t('prev'),
                ),
                h(
                    'span',
                    { class: 'pager-page' },
                    t('page_of', { page: fmtNumber(state.page), pages: fmtNumber(pages) }),
                ),
                h(
                    'button',
                    {
                        type: 'button',
                        class: 'btn btn-small',
                        disabled: state.page >= pages,
                        onclick: () => go(state.page + 1),
                        testid: 'page-next',
                    },
                    t('next'),
                ),
                h(
                    'button',
                    {
                        type: 'button',
                        class: 'btn btn-small',
                        disabled: state.page >= pages,
                        onclick: () => go(pages),
                        'aria-label': t('last_page'),
                    },
                    '»',
                ),
                select(
                    [
                        [25, '25'],
                        [50, '50'],
                        [100, '100'],
                        [200, '200'],
                    ],
                    state.per_page,
                    {
                        class: 'per-page',
                        'aria-label': t('per_page'),
                        onchange: (e) => {
                            state.per_page = Number(e.target.value);
                            state.page = 1;
                            load();
                        },
                    },
                ),
            ),
        );
    }

    const reloadFirst = () => {
        state.page = 1;
        load();
    };
    const typed = debounce(reloadFirst, 300);
    for (const f of opts.filters || []) {
        let input;
        if (f.type === 'select') {
            input = select(f.options, state[f.key], {
                testid: 'filter-' + f.key,
                onchange: (e) => {
                    state[f.key] = e.target.value;
                    reloadFirst();
                },
            });
        } else {
            input = h('input', {
                type: f.type === 'date' ? 'date' : 'search',
                value: state[f.key],
                placeholder: f.placeholder || '',
                testid: 'filter-' + f.key,
                maxlength: 200,
                oninput: (e) => {
                    state[f.key] = e.target.value.trim();
                    if (f.type === 'date') reloadFirst();
                    else typed();
                },
            });
        }
        filterBar.appendChild(h('label', { class: 'filter' }, h('span', null, f.label), input));
    }

    const el = h(
        'div',
        { class: 'list', testid: opts.testid + '-list' },
        opts.filters && opts.filters.length ? filterBar : null,
        tableBox,
        pagerBox,
    );
    load();
    return { el, reload: load };
}
