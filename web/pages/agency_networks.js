// The agency page's address ranges: the CIDRs that belong to the agency,
// which the server uses to file each C&C hit a network sensor reports under
// the agency of the internal host (the most specific range wins). Read by
// anyone who may see the agency; replaced as a whole (PUT
// /agencies/{id}/networks) by officers and administrators. The server names
// a bad entry, and refuses with 409 a range that overlaps another agency's
// unless one nests inside the other along the agency tree.

import { h, str, section, field, toast, clear, empty } from '../dom.js';
import { t } from '../i18n.js';
import { api } from '../api.js';
import { canAct } from '../session.js';
import { formError } from '../common.js';

// "10.1.0.0/16  note" per line; blank lines and lines starting with # are skipped.
function parseLines(text) {
    const out = [];
    for (const raw of text.split('\n')) {
        const line = raw.trim();
        if (!line || line.startsWith('#')) continue;
        const m = /^(\S+)\s*(.*)$/.exec(line);
        out.push(m[2] ? { cidr: m[1], note: m[2].slice(0, 200) } : { cidr: m[1] });
    }
    return out;
}

function asLines(items) {
    return items.map((n) => str(n.cidr) + (n.note ? '  ' + str(n.note) : '')).join('\n');
}

export function networksPanel(a) {
    const base = '/agencies/' + encodeURIComponent(str(a.id)) + '/networks';
    const listBox = h('div', { testid: 'agency-networks' });
    const area = h('textarea', {
        rows: 6,
        class: 'mono',
        testid: 'networks-input',
        placeholder: '10.1.0.0/16  Trụ sở\n2001:db8:1::/48',
    });
    const err = formError();

    function show(items) {
        clear(listBox);
        if (!items.length) {
            listBox.appendChild(empty(t('networks_none')));
            return;
        }
        listBox.appendChild(
            h(
                'ul',
                { class: 'plain' },
                items.map((n) =>
                    h(
                        'li',
                        { testid: 'network-row' },
                        h('span', { class: 'mono' }, str(n.cidr)),
                        n.note ? [' — ', str(n.note)] : null,
                    ),
                ),
            ),
        );
    }

    async function load() {
        try {
            const data = await api.get(base);
            show(data.items || []);
            area.value = asLines(data.items || []);
        } catch (e) {
            clear(listBox).appendChild(h('p', { class: 'error' }, e.message));
        }
    }
    load();
    const form = canAct()
        ? h(
              'form',
              {
                  class: 'form-grid',
                  testid: 'networks-form',
                  onsubmit: async (e) => {
                      e.preventDefault();
                      err.show(null);
                      try {
                          const data = await api.put(base, { networks: parseLines(area.value) });
                          show(data.items || []);
                          area.value = asLines(data.items || []);
                          toast(t('saved'));
                      } catch (x) {
                          err.show(x);
                      }
                  },
              },
              field(t('networks_edit'), area, t('networks_edit_hint')),
              err,
              h(
                  'div',
                  { class: 'form-actions' },
                  h('button', { type: 'submit', class: 'btn btn-primary', testid: 'networks-save' }, t('save')),
              ),
          )
        : null;
    return section(t('networks'), h('p', { class: 'muted' }, t('networks_hint')), listBox, form);
}
