// History-API routing: the address bar shows /machines/ID and the server
// answers such paths with index.html (server/static.c). Links are ordinary
// <a href="/..."> elements; a click on one is caught here and turned into a
// pushState, so the back button, new tabs and copied links all work.

const listeners = new Set();

export function onNavigate(fn) {
    listeners.add(fn);
}

function emit() {
    for (const fn of listeners) fn();
}

export function navigate(url, opts = {}) {
    if (opts.replace) history.replaceState(null, '', url);
    else history.pushState(null, '', url);
    emit();
}

// Renders the current page again, e.g. after an action changed what it shows.
export function reload() {
    emit();
}

// Changes the query string without rendering again: list pages call it as
// the user types in a filter so that a reload or a shared link keeps them.
export function setQuery(params) {
    const u = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
        if (v !== undefined && v !== null && v !== '' && !(k === 'page' && Number(v) === 1))
            u.set(k, String(v));
    }
    const s = u.toString();
    history.replaceState(null, '', location.pathname + (s ? '?' + s : ''));
}

export function currentQuery() {
    return new URLSearchParams(location.search);
}

export function startRouter() {
    window.addEventListener('popstate', emit);
    document.addEventListener('click', (e) => {
        if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        const a = e.target.closest('a[href]');
        if (!a || a.target || a.hasAttribute('download')) return;
        const href = a.getAttribute('href');
        if (!href.startsWith('/') || href.startsWith('//') || href.startsWith('/api/')) return;
        e.preventDefault();
        if (href !== location.pathname + location.search) navigate(href);
    });
}

// Matches a path against patterns like "/machines/:id".
export function match(pattern, path) {
    const p = pattern.split('/');
    const s = (path.replace(/\/+$/, '') || '/').split('/');
    if (p.length !== s.length) return null;
    const params = {};
    for (let i = 0; i < p.length; i++) {
        if (p[i].startsWith(':')) {
            if (!s[i]) return null;
            try {
                params[p[i].slice(1)] = decodeURIComponent(s[i]);
            } catch {
                return null;
            }
        } else if (p[i] !== s[i]) {
            return null;
        }
    }
    return params;
}
