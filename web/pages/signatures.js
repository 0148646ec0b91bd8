// Signature sources and the bundles published from them. Administrators add
// a source that lives on the server (a path, e.g. a ClamAV mirror folder),
// upload a file, remove a source and publish a new signed version; everyone
// sees the versions and how many machines run each.

import {
    h,
    str,
    num,
    fmtNumber,
    fmtTime,
    fmtBytes,
    section,
    field,
    select,
    empty,
    toast,
    confirmAction,
    modal,
    clear,
    bar,
} from '../dom.js';
import { t } from '../i18n.js';
import { api, listOf, qs } from '../api.js';
import { isAdmin } from '../session.js';
import { reload } from '../router.js';
import { formError } from '../common.js';

// 'indicators' are lists of IP addresses, prefixes and domains that travel in
// the bundle beside the signatures.
const SOURCE_KINDS = ['clamav', 'cvd', 'yara', 'hashlist', 'indicators', 'mirror'];

function kindOptions() {
    return SOURCE_KINDS.map((k) => [k, t('src_' + k)]);
}

function sourcesTable(items) {
    if (!items.length) return empty(t('no_sources'));
    return h(
        'table',
        { class: 'table compact', testid: 'sources-table' },
        h(
            'thead',
            null,
            h(
                'tr',
                null,
                [t('name'), t('kind'), t('location'), t('created'), ''].map((c) => h('th', null, c)),
            ),
        ),
        h(
            'tbody',
            null,
            items.map((s) =>
                h(
                    'tr',
                    { testid: 'source-row', 'data-id': str(s.id) },
                    h(
                        'td',
                        null,
                        str(s.name),
                        s.enabled === false || s.enabled === 0
                            ? [' ', h('span', { class: 'badge badge-muted' }, t('disabled'))]
                            : null,
                    ),
                    h(
                        'td',
                        null,
                        t('src_' + str(s.kind)) === 'src_' + str(s.kind)
                            ? str(s.kind)
                            : t('src_' + str(s.kind)),
                    ),
                    h(
                        'td',
                        { class: 'mono wrap' },
                        s.path ? str(s.path) : t('uploaded_size', { size: fmtBytes(s.size) }),
                        s.path && s.available !== false && s.size ? ' (' + fmtBytes(s.size) + ')' : null,
                        s.available === false
                            ? [' ', h('span', { class: 'badge badge-bad' }, t('unavailable'))]
                            : null,
                    ),
                    h('td', null, fmtTime(s.created_at)),
                    h(
                        'td',
                        null,
                        isAdmin()
                            ? h(
                                  'button',
                                  {
                                      type: 'button',
                                      class: 'btn btn-small btn-danger',
                                      testid: 'source-delete',
                                      onclick: async () => {
                                          if (
                                              !(await confirmAction(
                                                  t('delete_source'),
                                                  t('delete_source_text', { name: str(s.name) }),
                                                  t('delete'),
                                                  true,
                                              ))
                                          )
                                              return;
                                          try {
                                              await api.del(
                                                  '/signatures/sources/' + encodeURIComponent(str(s.id)),
                                              );
                                              toast(t('deleted'));
                                              reload();
                                          } catch (e) {
                                              toast(e.message, 'error');
                                          }
                                      },
                                  },
                                  t('delete'),
                              )
                            : null,
                    ),
                ),
            ),
        ),
    );
}

function addPathForm() {
    const kind = select(kindOptions(), 'mirror', { testid: 'source-kind' });
    const name = h('input', { required: true, maxlength: 100, testid: 'source-name' });
    const path = h('input', {
        required: true,
        maxlength: 1000,
        class: 'mono',
        placeholder: '/var/lib/clamav',
        testid: 'source-path',
    });
    const err = formError();
    return h(
        'form',
        {
            class: 'form-grid',
            testid: 'source-add',
            onsubmit: async (e) => {
                e.preventDefault();
                err.show(null);
                try {
                    await api.post('/signatures/sources', {
                        kind: kind.value,
                        name: name.value.trim(),
                        path: path.value.trim(),
                    });
                    toast(t('source_added'));
                    reload();
                } catch (x) {
                    err.show(x);
                }
            },
        },
        h('h3', null, t('add_path_source')),
        field(t('kind'), kind),
        field(t('name'), name),
        field(t('server_path'), path, t('server_path_hint')),
        err,
        h(
            'div',
            { class: 'form-actions' },
            h('button', { type: 'submit', class: 'btn btn-primary' }, t('add')),
        ),
    );
}

function uploadForm() {
    // A mirror is a folder the server reads; it cannot be uploaded.
    const kind = select(
        kindOptions().filter(([k]) => k !== 'mirror'),
        'yara',
        { testid: 'upload-kind' },
    );
    const name = h('input', { required: true, maxlength: 100, testid: 'upload-name' });
    const file = h('input', { type: 'file', required: true, testid: 'upload-file' });
    const err = formError();
    const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, t('upload'));
    file.addEventListener('change', () => {
        if (!name.value && file.files[0]) name.value = file.files[0].name;
    });
    return h(
        'form',
        {
            class: 'form-grid',
            testid: 'source-upload',
            onsubmit: async (e) => {
                e.preventDefault();
                err.show(null);
                const f = file.files[0];
                if (!f) return;
                submit.disabled = true;
                try {
                    const res = await api.upload(
                        '/signatures/sources/upload' +
                            qs({ kind: kind.value, name: name.value.trim() || f.name }),
                        f,
                    );
                    // Lines that did not load are kept but reported: show them
                    // before the page is drawn again.
                    const problems = num(res && res.problems);
                    if (problems > 0) {
                        const msgs = (res && Array.isArray(res.messages) && res.messages) || [];
                        await modal(
                            t('upload_problems_title'),
                            [
                                h('p', null, t('upload_problems', { n: fmtNumber(problems) })),
                                msgs.length
                                    ? h(
                                          'ul',
                                          { class: 'messages mono small' },
                                          msgs.slice(0, 20).map((m) => h('li', null, str(m))),
                                      )
                                    : null,
                            ],
                            [{ label: t('ok'), value: true, class: 'btn btn-primary' }],
                        );
                    } else {
                        toast(t('uploaded'));
                    }
                    reload();
                } catch (x) {
                    err.show(x);
                } finally {
                    submit.disabled = false;
                }
            },
        },
        h('h3', null, t('upload_source')),
        field(t('kind'), kind),
        field(t('name'), name),
        field(t('file'), file),
        err,
        h('div', { class: 'form-actions' }, submit),
    );
}

function publishPanel() {
    const out = h('div', { testid: 'publish-result' });
    const btn = h(
        'button',
        {
            type: 'button',
            class: 'btn btn-primary',
            testid: 'publish',
            onclick: async () => {
                if (!(await confirmAction(t('publish'), t('publish_text'), t('publish')))) return;
                btn.disabled = true;
                clear(out).appendChild(h('p', { class: 'muted' }, t('publishing')));
                try {
                    const r = await api.post('/signatures/publish');
                    clear(out).appendChild(
                        h(
                            'p',
                            { class: 'ok-text' },
                            t('published_version', {
                                version: fmtNumber(r.version),
                                n: fmtNumber(r.signatures),
                                size: fmtBytes(r.size),
                            }),
                        ),
                    );
                    toast(
                        t('published_version', {
                            version: fmtNumber(r.version),
                            n: fmtNumber(r.signatures),
                            size: fmtBytes(r.size),
                        }),
                    );
                    setTimeout(reload, 1500);
                } catch (e) {
                    clear(out).appendChild(h('p', { class: 'error' }, e.message));
                } finally {
                    btn.disabled = false;
                }
            },
        },
        t('publish'),
    );
    return h('div', { class: 'publish' }, h('p', { class: 'muted' }, t('publish_hint')), btn, out);
}

function versionsTable(data) {
    const items = (data && Array.isArray(data.items) && data.items) || [];
    if (!items.length) return empty(t('no_versions'));
    // Bars are shares of every enrolled machine, whatever version it runs.
    const byVersion = (data && Array.isArray(data.machines_by_version) && data.machines_by_version) || [];
    const totalMachines = byVersion.length
        ? byVersion.reduce((s, m) => s + num(m.machines), 0)
        : items.reduce((s, v) => s + num(v.machines), 0);
    return h(
        'table',
        { class: 'table compact', testid: 'versions-table' },
        h(
            'thead',
            null,
            h(
                'tr',
                null,
                [t('version'), t('published'), t('signatures'), t('size'), 'SHA-256', t('machines')].map(
                    (c) => h('th', null, c),
                ),
            ),
        ),
        h(
            'tbody',
            null,
            items.map((v) =>
                h(
                    'tr',
                    { testid: 'version-row', 'data-version': str(v.version) },
                    h('td', { class: 'num' }, '#' + fmtNumber(v.version)),
                    h('td', null, fmtTime(v.created_at)),
                    h('td', { class: 'num' }, fmtNumber(v.signatures)),
                    h('td', { class: 'num' }, fmtBytes(v.size)),
                    h(
                        'td',
                        { class: 'mono', title: str(v.sha256) },
                        str(v.sha256).slice(0, 16) + (str(v.sha256).length > 16 ? '…' : ''),
                    ),
                    h(
                        'td',
                        { class: 'bar-col' },
                        bar(v.machines, totalMachines, null, true),
                        ' ',
                        fmtNumber(v.machines),
                    ),
                ),
            ),
        ),
    );
}

// Machines on versions that are no longer kept (or none at all).
function otherVersions(data) {
    const kept = new Set(((data && data.items) || []).map((v) => String(v.version)));
    const rest = ((data && data.machines_by_version) || []).filter(
        (m) => !kept.has(String(m.version)) && num(m.machines) > 0,
    );
    if (!rest.length) return null;
    return h(
        'p',
        { class: 'muted' },
        t('other_versions'),
        ' ',
        rest.map((m, i) => [
            i ? ', ' : '',
            num(m.version) ? '#' + fmtNumber(m.version) : t('no_database'),
            ': ',
            fmtNumber(m.machines),
        ]),
    );
}

export async function render(el, ctx) {
    ctx.setTitle(t('nav_signatures'));
    const [sources, versions] = await Promise.all([
        api.get('/signatures/sources'),
        api.get('/signatures/versions'),
    ]);
    if (!ctx.alive()) return;
    el.append(
        section(
            t('versions'),
            isAdmin() ? publishPanel() : null,
            versionsTable(versions),
            otherVersions(versions),
        ),
        section(
            t('sources'),
            sourcesTable(listOf(sources).items),
            isAdmin() ? h('div', { class: 'grid-2' }, addPathForm(), uploadForm()) : null,
        ),
    );
}
