// The JSON API client (docs/api/README.md). The session itself is the
// HttpOnly cookie the server sets at login; what the page keeps is the CSRF
// token that login returns, in sessionStorage so a reload of the tab keeps
// working, and it is sent in X-CSRF-Token on every request that is not a GET.
// Any 401 means the session is gone: the app goes back to the login page.

const BASE = '/api/v1';
const CSRF_KEY = 'khien.csrf';

let csrf = sessionStorage.getItem(CSRF_KEY) || '';
let onUnauthorized = () => {};

export class ApiError extends Error {
    constructor(status, body) {
        super((body && body.message) || 'HTTP ' + status);
        this.status = status;
        this.code = (body && body.error) || '';
        this.field = (body && body.field) || '';
    }
}

export function setCsrf(token) {
    csrf = token || '';
    if (csrf) sessionStorage.setItem(CSRF_KEY, csrf);
    else sessionStorage.removeItem(CSRF_KEY);
}

export function whenUnauthorized(fn) {
    onUnauthorized = fn;
}

// Builds "?a=1&b=x" from an object, leaving out empty values.
export function qs(params) {
    const u = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) {
        if (v !== undefined && v !== null && v !== '') u.set(k, String(v));
    }
    const s = u.toString();
    return s ? '?' + s : '';
}

async function request(method, path, body, opts = {}) {
    const headers = { Accept: 'application/json' };
    if (method !== 'GET' && method !== 'HEAD' && csrf) headers['X-CSRF-Token'] = csrf;
    let payload;
    if (opts.raw !== undefined) {
        payload = opts.raw;
        headers['Content-Type'] = 'application/octet-stream';
    } else if (body !== undefined) {
        payload = JSON.stringify(body);
        headers['Content-Type'] = 'application/json';
    }
    let res;
    try {
        res = await fetch(BASE + path, {
            method,
            headers,
            body: payload,
            credentials: 'same-origin',
            cache: 'no-store',
        });
    } catch (e) {
        throw new ApiError(0, { error: 'network', message: String(e.message || e) });
    }
    let data = null;
    const type = res.headers.get('Content-Type') || '';
    if (res.status !== 204 && type.includes('json')) {
        try {
            data = await res.json();
        } catch {
            data = null;
        }
    }
    if (res.status === 401 && !opts.noRedirect) {
        setCsrf('');
        onUnauthorized();
    }
    if (!res.ok) throw new ApiError(res.status, data);
    return data;
}

export const api = {
    get: (path, params) => request('GET', path + qs(params)),
    post: (path, body) => request('POST', path, body === undefined ? {} : body),
    patch: (path, body) => request('PATCH', path, body),
    put: (path, body) => request('PUT', path, body),
    del: (path) => request('DELETE', path),
    upload: (path, file) => request('PUT', path, undefined, { raw: file }),
    login: (username, password) => request('POST', '/login', { username, password }, { noRedirect: true }),
    me: () => request('GET', '/me', undefined, { noRedirect: true }),
};

// Lists answer {"items","total","page","per_page"}; some small lists have
// only "items". Either way the caller gets the same shape.
export function listOf(data) {
    const items = (data && Array.isArray(data.items) && data.items) || (Array.isArray(data) ? data : []);
    return {
        items,
        total: data && Number.isFinite(Number(data.total)) ? Number(data.total) : items.length,
        page: (data && Number(data.page)) || 1,
        per_page: (data && Number(data.per_page)) || items.length || 50,
        // A very long list may stop counting and say so.
        capped: Boolean(data && data.total_capped),
    };
}
