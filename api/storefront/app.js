// The storefront: one page over the public API (docs/API.md), routed by the
// address's hash so that every view has an address to share or bookmark:
//   #/                  shows, with a search form (#/?q=…&category=…)
//   #/shows/{id}        a show, its seat map live, and a booking form
//   #/bookings/{id}     a booking, live: place in line, hold, payment, tickets
// Plain DOM, no framework and no build step; text from the API is only ever
// set as text, never parsed as HTML. Nothing is stored in the browser.
'use strict';

const main = document.getElementById('main');
const announcer = document.getElementById('announcer');

// ---- small helpers -----------------------------------------------------

/** Children to put in an element: nested lists flattened, and the ones
 * left out (null, undefined, false) dropped. */
const present = (children) => children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false);

/** An element: `h('p', {class: 'x', 'data-id': 1}, 'text', child, …)`.
 * Attributes set to null, undefined or false are left out; `on…` functions
 * become listeners; a few are properties (`value`, `checked`, `disabled`). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === 'function') el.addEventListener(name.slice(2), value);
    else if (name === 'value' || name === 'checked' || name === 'disabled') el[name] = value;
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  el.append(...present(children));
  return el;
}

/** Sets an element's text only when it changes, so that a live region
 * announces changes and nothing else. */
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/** Says `text` to screen readers (the page's polite live region). */
function announce(text) {
  announcer.textContent = '';
  setTimeout(() => { announcer.textContent = text; }, 50);
}

const moneyFormat = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const money = (cents) => moneyFormat.format(cents / 100);
const when = (iso) => new Date(iso).toLocaleString(undefined, { dateStyle: 'full', timeStyle: 'short' });
const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

/** A random Idempotency-Key. `crypto.randomUUID` exists only on secure
 * origins (https, localhost); random bytes do everywhere. */
function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** One API call: `{status, body, etag}`; status 0 when the server could not
 * be reached. Errors are problem details (`title`, `detail`, `errors`). */
async function api(method, path, { body, headers } = {}) {
  const init = { method, cache: 'no-store', headers: { accept: 'application/json', ...headers } };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    return { status: 0, body: { detail: 'The server cannot be reached. Check your connection and try again.' } };
  }
  const type = res.headers.get('content-type') || '';
  const parsed = type.includes('json') ? await res.json().catch(() => null) : null;
  return { status: res.status, body: parsed, etag: res.headers.get('etag') };
}

/** What went wrong, in a sentence, from a failed call's problem. */
function problemText(res) {
  if (res.status === 429) return 'Too many requests from here just now: wait a few seconds and try again.';
  if (res.status === 503) return 'Busy or briefly unavailable: try again in a moment.';
  const p = res.body || {};
  return p.detail || p.title || `Something went wrong (HTTP ${res.status}).`;
}

// ---- views and routing -------------------------------------------------

/** What the current view runs (streams, timers): stopped when it is left. */
let running = [];
let currentView = null;
/** Counts views entered: a view still loading when it was left sees that
 * the count moved on, and gives up. */
let entered = 0;

/** Replaces the page with a view and moves focus to its heading, so that a
 * screen reader announces where the reader now is. */
function display(view, title, ...nodes) {
  currentView = view;
  document.title = `${title} · Tickets`;
  main.replaceChildren(...present(nodes));
  const heading = main.querySelector('h1');
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: false });
  }
}

function route() {
  const hash = location.hash || '#/';
  if (!hash.startsWith('#/')) return; // an in-page link, not a view
  const [path, query] = hash.slice(1).split('?');
  const params = new URLSearchParams(query || '');
  const id = '([0-9a-fA-F-]{36})';
  let m;
  if ((m = path.match(new RegExp(`^/shows/${id}$`)))) return enter(() => showPage(m[1]));
  if ((m = path.match(new RegExp(`^/bookings/${id}$`)))) return enter(() => bookingPage(m[1]));
  if (path === '/' || path === '') {
    // A new search keeps the form (and the focus in it).
    if (currentView === 'list') {
      fillSearch(params);
      return loadResults(params);
    }
    return enter(() => listPage(params));
  }
  return enter(() => display('missing', 'Not found', h('h1', {}, 'Page not found'),
    h('p', {}, h('a', { href: '#/' }, 'See all shows'))));
}

function enter(view) {
  running.forEach((stop) => stop());
  running = [];
  entered += 1;
  view();
}

/** Follows an event stream; `handlers[event](data)` returns false to stop
 * it. Where streams are not served or break for good, `poll` is called
 * every 2 s instead, until it returns false. Returns a function to stop. */
function follow(url, handlers, poll) {
  let stopped = false;
  let source = null;
  let polling = null;
  const startPolling = () => { polling = every2s(poll); };
  const stop = () => {
    stopped = true;
    if (source) source.close();
    if (polling) polling();
  };
  if (!window.EventSource) {
    startPolling();
  } else {
    source = new EventSource(url);
    for (const [name, handle] of Object.entries(handlers)) {
      source.addEventListener(name, (event) => {
        if (stopped) return;
        let data;
        try { data = JSON.parse(event.data); } catch { return; }
        if (handle(data) === false) stop();
      });
    }
    // A dropped stream reconnects by itself (CONNECTING); one refused
    // (no such stream, or not a stream) is CLOSED for good.
    source.addEventListener('error', () => {
      if (!stopped && !polling && source.readyState === EventSource.CLOSED) startPolling();
    });
  }
  running.push(stop);
  return stop;
}

/** Calls `poll` now and then 2 s after each call, until it returns false or
 * the view is left. Returns a function to stop. */
function every2s(poll) {
  let stopped = false;
  let timer = null;
  const stop = () => {
    stopped = true;
    clearTimeout(timer);
  };
  const tick = async () => {
    if (stopped) return;
    const again = await poll();
    if (again !== false && !stopped) timer = setTimeout(tick, 2000);
  };
  tick();
  running.push(stop);
  return stop;
}

// ---- forms -------------------------------------------------------------

/** A labelled input with a slot for its error, tied by aria-describedby. */
function field(label, attrs, hint) {
  const id = attrs.id;
  const described = [hint ? `${id}-hint` : null, `${id}-error`].filter(Boolean).join(' ');
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null,
    h('input', { name: id, 'aria-describedby': described, ...attrs }),
    h('p', { class: 'field-error', id: `${id}-error`, hidden: true }));
}

/** Shows each of a 422's `errors` next to its field (`fields` maps the
 * problem's field names to input ids); the rest goes to `general`. */
function showErrors(form, res, general, fields = {}) {
  clearErrors(form, general);
  const errors = (res.body && res.body.errors) || [];
  const unplaced = [];
  for (const error of errors) {
    const id = fields[error.field] || error.field;
    const slot = form.querySelector(`[id="${CSS.escape(id)}-error"]`);
    if (!slot) {
      unplaced.push(`${error.field}: ${error.message}`);
      continue;
    }
    slot.textContent = error.message;
    slot.hidden = false;
    slot.setAttribute('role', 'alert');
    const input = form.querySelector(`[id="${CSS.escape(id)}"]`);
    if (input) input.setAttribute('aria-invalid', 'true');
  }
  if (unplaced.length || !errors.length) {
    general.textContent = errors.length ? unplaced.join('; ') : problemText(res);
    general.hidden = false;
  }
  const first = form.querySelector('[aria-invalid="true"]');
  if (first) first.focus();
}

function clearErrors(form, general) {
  for (const slot of form.querySelectorAll('.field-error')) {
    slot.hidden = true;
    slot.textContent = '';
    slot.removeAttribute('role');
  }
  for (const input of form.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
  general.hidden = true;
  general.textContent = '';
}

// ---- #/ : shows and search ---------------------------------------------

/** A date input's day as the instant it starts here, in RFC 3339. */
function dayStart(day, plusDays = 0) {
  const [y, m, d] = day.split('-').map(Number);
  return new Date(y, m - 1, d + plusDays).toISOString();
}

function listPage(params) {
  const formError = h('p', { id: 'search-error', class: 'form-error', role: 'alert', hidden: true });
  const form = h('form', { id: 'search', class: 'search', role: 'search', novalidate: true, onsubmit: search },
    field('Search', { id: 'q', type: 'search', value: params.get('q') || '', autocomplete: 'off' },
      'Words from a show’s name, venue, description, category or tags'),
    h('div', { class: 'field-row' },
      field('Category', { id: 'category', type: 'text', value: params.get('category') || '' }),
      field('From', { id: 'from', type: 'date', value: params.get('from') || '' }),
      field('Until', { id: 'to', type: 'date', value: params.get('to') || '' })),
    h('div', { class: 'check' },
      h('input', { type: 'checkbox', id: 'available', name: 'available', checked: params.get('available') === 'true',
        'aria-describedby': 'available-error' }),
      h('label', { for: 'available' }, 'Only shows with tickets left'),
      h('p', { class: 'field-error', id: 'available-error', hidden: true })),
    h('button', { type: 'submit', class: 'primary' }, 'Search'),
    formError);
  display('list', 'Shows',
    h('h1', {}, 'Shows'),
    form,
    h('p', { id: 'results-status', class: 'results-status', 'aria-live': 'polite' }),
    h('ul', { id: 'results', class: 'cards' }));
  loadResults(params);

  function search(event) {
    event.preventDefault();
    const wanted = new URLSearchParams();
    for (const name of ['q', 'category', 'from', 'to']) {
      const value = form.elements[name].value.trim();
      if (value) wanted.set(name, value);
    }
    if (form.elements.available.checked) wanted.set('available', 'true');
    const hash = `#/?${wanted}`;
    if (location.hash === hash) loadResults(wanted);
    else location.hash = hash;
  }
}

/** Puts a search's terms in the form (after going back to an earlier one). */
function fillSearch(params) {
  const form = document.getElementById('search');
  for (const name of ['q', 'category', 'from', 'to']) form.elements[name].value = params.get(name) || '';
  form.elements.available.checked = params.get('available') === 'true';
}

async function loadResults(params) {
  const mine = entered;
  const form = document.getElementById('search');
  const status = document.getElementById('results-status');
  const list = document.getElementById('results');
  const query = new URLSearchParams();
  for (const name of ['q', 'category']) if (params.get(name)) query.set(name, params.get(name));
  if (params.get('from')) query.set('from', dayStart(params.get('from')));
  if (params.get('to')) query.set('to', dayStart(params.get('to'), 1)); // "until" includes that day
  if (params.get('available') === 'true') query.set('available', 'true');
  status.textContent = 'Searching…';
  const res = await api('GET', `/v1/shows?${query}`);
  if (mine !== entered) return;
  if (res.status !== 200) {
    status.textContent = '';
    list.replaceChildren();
    showErrors(form, res, document.getElementById('search-error'));
    return;
  }
  clearErrors(form, document.getElementById('search-error'));
  const shows = res.body.shows || [];
  status.textContent = shows.length ? `${plural(shows.length, 'show', 'shows')}` : 'No shows match.';
  list.replaceChildren(...shows.map(showCard));
}

function availabilityText(show) {
  if (show.available <= 0) return show.held > 0 ? 'Sold out for now: some tickets are on hold' : 'Sold out';
  return `${plural(show.available, 'ticket', 'tickets')} left`;
}

function priceText(show, seats) {
  if (show.price_cents !== null && show.price_cents !== undefined) return money(show.price_cents);
  const prices = (seats || []).map((s) => s.price_cents);
  return prices.length ? `from ${money(Math.min(...prices))}` : 'priced per seat';
}

function showCard(show) {
  const tags = Array.isArray(show.tags) ? show.tags : [];
  return h('li', { class: 'card', 'data-testid': 'show', 'data-show-id': show.id },
    h('h2', {}, h('a', { href: `#/shows/${show.id}` }, show.name)),
    h('p', { class: 'meta' },
      h('time', { datetime: show.starts_at }, when(show.starts_at)), ' · ', show.venue,
      typeof show.distance_km === 'number' ? ` · ${show.distance_km.toFixed(1)} km away` : null),
    show.description ? h('p', { class: 'description' }, show.description) : null,
    h('p', { class: 'facts' },
      h('span', { class: 'price' }, priceText(show)), ' · ',
      h('span', { class: show.available > 0 ? 'available' : 'sold-out' }, availabilityText(show))),
    show.category || tags.length
      ? h('ul', { class: 'tags', 'aria-label': 'Category and tags' },
        show.category ? h('li', { class: 'category' }, show.category) : null,
        tags.map((t) => h('li', {}, t)))
      : null);
}

// ---- #/shows/{id} : a show, its seats and the booking form --------------

async function showPage(id) {
  const mine = entered;
  display('show', 'Show', h('h1', {}, 'Loading the show…'));
  const [res, seatsRes] = await Promise.all([
    api('GET', `/v1/shows/${id}`),
    api('GET', `/v1/shows/${id}/seats`),
  ]);
  if (mine !== entered) return;
  if (res.status !== 200) {
    display('show', 'Show not found', h('h1', {}, res.status === 404 ? 'No such show' : 'The show could not be loaded'),
      h('p', {}, res.status === 404 ? 'It may have been removed.' : problemText(res)),
      h('p', {}, h('a', { href: '#/' }, 'See all shows')));
    return;
  }
  let info = res.body;
  const seated = info.kind === 'seated';
  const seats = new Map(((seatsRes.body && seatsRes.body.seats) || []).map((s) => [s.id, s]));
  const selected = new Set();
  const buttons = new Map();

  const availability = h('p', { id: 'availability', class: 'availability', 'aria-live': 'polite' });
  const price = h('p', { id: 'price', class: 'price' });
  const facts = () => {
    setText(availability, availabilityText(info));
    availability.className = `availability ${info.available > 0 ? 'available' : 'sold-out'}`;
    price.textContent = `Price: ${priceText(info, [...seats.values()])}`;
  };
  facts();

  const selection = h('p', { id: 'selection', class: 'selection', 'aria-live': 'polite' });
  const seatMap = seated ? renderSeatMap() : null;
  const form = bookingForm();
  display('show', info.name,
    h('p', { class: 'back' }, h('a', { href: '#/' }, '← All shows')),
    h('h1', { id: 'show-name' }, info.name),
    h('p', { class: 'meta' },
      h('time', { datetime: info.starts_at }, when(info.starts_at)), ' · ', info.venue,
      info.venue_address ? h('span', { class: 'address' }, ` · ${info.venue_address}`) : null),
    info.description ? h('p', { class: 'description', id: 'description' }, info.description) : null,
    info.category ? h('p', { class: 'tags-line' }, `Category: ${info.category}`) : null,
    price, availability,
    seatMap,
    form);
  describeSelection();

  follow(`/v1/shows/${id}/events`, {
    show: (data) => { info = { ...info, ...data }; facts(); },
    availability: (data) => {
      info = { ...info, available: data.available, held: data.held, booked: data.booked };
      facts();
    },
    seats: (changes) => { for (const change of changes) seatChanged(change.id, change.status); },
  }, async () => {
    const [again, map] = await Promise.all([
      api('GET', `/v1/shows/${id}`),
      seated ? api('GET', `/v1/shows/${id}/seats`) : null,
    ]);
    if (again.status === 200) { info = again.body; facts(); }
    if (map && map.status === 200) for (const s of map.body.seats) seatChanged(s.id, s.status);
    return true;
  });

  function seatLabel(seat) {
    return `${seat.section}, row ${seat.row}, seat ${seat.number}`;
  }

  function renderSeatMap() {
    const sections = new Map();
    for (const seat of seats.values()) {
      if (!sections.has(seat.section)) sections.set(seat.section, new Map());
      const rows = sections.get(seat.section);
      if (!rows.has(seat.row)) rows.set(seat.row, []);
      rows.get(seat.row).push(seat);
    }
    return h('section', { id: 'seat-map', class: 'seat-map', 'aria-labelledby': 'seat-map-title', 'aria-describedby': 'seat_ids-error' },
      h('h2', { id: 'seat-map-title' }, 'Choose your seats'),
      h('p', { class: 'hint' }, 'Seats are buttons: press one to select it, again to drop it. Up to 10.'),
      h('ul', { class: 'key', 'aria-label': 'Key' },
        ['available', 'selected', 'held', 'booked'].map((s) =>
          h('li', {}, h('span', { class: `seat swatch ${s}`, 'aria-hidden': 'true' }), ` ${s}`))),
      [...sections].map(([name, rows]) => {
        const sectionPrices = [...rows.values()].flat().map((s) => s.price_cents);
        return h('fieldset', { class: 'section' },
          h('legend', {}, `${name} · ${money(Math.min(...sectionPrices))}`),
          h('div', { class: 'rows' },
            [...rows].map(([row, rowSeats]) => h('div', { class: 'row', role: 'group', 'aria-label': `${name}, row ${row}` },
              h('span', { class: 'row-name', 'aria-hidden': 'true' }, row),
              rowSeats.map(seatButton)))));
      }),
      selection);
  }

  function seatButton(seat) {
    const button = h('button', { type: 'button', class: 'seat', 'data-seat-id': seat.id, onclick: () => toggle(seat.id) },
      String(seat.number));
    buttons.set(seat.id, button);
    paintSeat(seat);
    return button;
  }

  function paintSeat(seat) {
    const button = buttons.get(seat.id);
    const picked = selected.has(seat.id);
    button.dataset.status = seat.status;
    button.classList.toggle('selected', picked);
    button.disabled = seat.status !== 'available';
    button.setAttribute('aria-pressed', String(picked));
    const state = seat.status === 'available' ? money(seat.price_cents) : `${seat.status}, not available`;
    button.setAttribute('aria-label', `${seatLabel(seat)}, ${state}`);
  }

  function toggle(seatId) {
    const seat = seats.get(seatId);
    if (!seat || seat.status !== 'available') return;
    if (selected.has(seatId)) selected.delete(seatId);
    else if (selected.size >= 10) return announce('At most 10 seats in one booking.');
    else selected.add(seatId);
    paintSeat(seat);
    describeSelection();
  }

  function seatChanged(seatId, status) {
    const seat = seats.get(seatId);
    if (!seat || seat.status === status) return;
    seat.status = status;
    if (status !== 'available' && selected.delete(seatId)) {
      announce(`${seatLabel(seat)} was just taken by someone else.`);
      describeSelection();
    }
    paintSeat(seat);
  }

  function describeSelection() {
    if (!seated) return;
    const picked = [...selected].map((s) => seats.get(s));
    const total = picked.reduce((sum, s) => sum + s.price_cents, 0);
    setText(selection, picked.length
      ? `Selected: ${picked.map((s) => `${s.row}${s.number}`).join(', ')} · total ${money(total)}`
      : 'No seats selected yet.');
  }

  function bookingForm() {
    const formError = h('p', { id: 'form-error', class: 'form-error', role: 'alert', hidden: true });
    const submit = h('button', { type: 'submit', id: 'book', class: 'primary' }, seated ? 'Book the selected seats' : 'Book');
    const form = h('form', { id: 'booking-form', class: 'booking', novalidate: true, 'aria-labelledby': 'booking-title', onsubmit: book },
      h('h2', { id: 'booking-title' }, 'Book'),
      field('Your name', { id: 'name', type: 'text', autocomplete: 'name', required: true, maxlength: 200 }),
      field('Email', { id: 'email', type: 'email', autocomplete: 'email', required: true, inputmode: 'email' },
        'Your tickets are sent here.'),
      seated
        ? h('p', { class: 'field-error', id: 'seat_ids-error', hidden: true })
        : field('Tickets', { id: 'quantity', type: 'number', min: 1, max: 10, value: '1', inputmode: 'numeric', required: true }),
      submit,
      formError);
    // One key per request: a retry of the same request (after a timeout, a
    // 503) reuses it and cannot book twice; a changed request gets a new one.
    let attempt = null;

    async function book(event) {
      event.preventDefault();
      const body = {
        name: form.elements.name.value.trim(),
        email: form.elements.email.value.trim(),
      };
      if (seated) {
        if (!selected.size) {
          showErrors(form, { status: 422, body: { errors: [{ field: 'seat_ids', message: 'Choose at least one seat on the map.' }] } },
            formError, { seat_ids: 'seat_ids' });
          const first = document.querySelector('button.seat:enabled');
          if (first) first.focus();
          return;
        }
        body.seat_ids = [...selected];
      } else {
        body.quantity = Number(form.elements.quantity.value);
      }
      const text = JSON.stringify(body);
      if (!attempt || attempt.text !== text) attempt = { text, key: newKey() };
      submit.disabled = true;
      submit.textContent = 'Sending…';
      const res = await api('POST', `/v1/shows/${id}/bookings`, { body, headers: { 'idempotency-key': attempt.key } });
      submit.disabled = false;
      submit.textContent = seated ? 'Book the selected seats' : 'Book';
      if (res.status === 202) {
        location.hash = `#/bookings/${res.body.id}`;
        return;
      }
      const mapped = { 'Idempotency-Key': 'form' };
      if (seated) mapped.quantity = 'seat_ids';
      showErrors(form, res, formError, mapped);
    }
    return form;
  }
}

// ---- #/bookings/{id} : a booking, live -----------------------------------

const FINAL = new Set(['confirmed', 'rejected', 'expired', 'cancelled']);

const STATUS_TEXT = {
  queued: 'In line',
  waitlisted: 'On the waiting list',
  held: 'Held for you: pay to confirm',
  confirmed: 'Confirmed',
  rejected: 'Not booked',
  expired: 'Expired',
  cancelled: 'Cancelled',
};

const REASON_TEXT = {
  sold_out: 'Sold out: there were not enough tickets left when your request’s turn came.',
  seats_unavailable: 'Someone else got one or more of those seats first.',
  limit_exceeded: 'This would take you past the most tickets one customer may have for this show.',
  payment_declined: 'Your card was declined.',
  hold_expired: 'The time to pay ran out, so the tickets went back on sale.',
  show_started: 'The show started before any tickets came free.',
  cancelled_by_customer: 'You cancelled it.',
};

const CARDS = [
  { token: 'tok_visa', id: 'card-visa', label: 'Visa (succeeds) — tok_visa' },
  { token: 'tok_chargeDeclined', id: 'card-declined', label: 'Declined card — tok_chargeDeclined' },
];

function bookingPage(id) {
  const statusLine = h('p', { id: 'booking-status', class: 'status' }, 'Loading…');
  const positionLine = h('p', { id: 'position', class: 'position', hidden: true });
  const showLine = h('p', { id: 'booking-show', class: 'meta' });
  const detail = h('div', { id: 'booking-detail' });
  display('booking', 'Your booking',
    h('h1', {}, 'Your booking'),
    showLine,
    h('div', { class: 'live', 'aria-live': 'polite', 'aria-atomic': 'true' }, statusLine, positionLine),
    detail,
    h('p', { class: 'hint' }, 'Keep this page’s address: it is the only key to your booking. It updates by itself.'));

  let booking = null;
  let etag = null;
  let streaming = null;
  let card = CARDS[0].token;
  let paying = null; // the booking's updated_at when a payment was sent
  let cancelling = false;
  let wasConfirmed = false;
  let refundChecks = 0;

  watch();

  /** Follows the booking until a final status; started again when a
   * confirmed booking is cancelled (its stream had ended). */
  function watch() {
    if (streaming) return;
    streaming = follow(`/v1/bookings/${id}/events`, {
      booking: (data) => {
        const more = !FINAL.has(data.status);
        if (!more) streaming = null;
        update(data);
        return more;
      },
    }, poll);
  }

  async function poll() {
    const res = await api('GET', `/v1/bookings/${id}`, { headers: etag ? { 'if-none-match': etag } : {} });
    if (res.status === 304) return true;
    if (res.status === 404) {
      statusLine.textContent = 'No such booking. Check the address you were given.';
      streaming = null;
      return false;
    }
    if (res.status !== 200) return true;
    etag = res.etag;
    update(res.body);
    if (refundPending()) return ++refundChecks < 30;
    if (FINAL.has(res.body.status)) { streaming = null; return false; }
    return true;
  }

  function refundPending() {
    return booking.status === 'cancelled' && wasConfirmed && booking.refunded_cents == null;
  }

  async function loadShow(showId) {
    const res = await api('GET', `/v1/shows/${showId}`);
    if (res.status !== 200) return;
    const s = res.body;
    showLine.replaceChildren(h('a', { href: `#/shows/${s.id}` }, s.name), ' · ',
      h('time', { datetime: s.starts_at }, when(s.starts_at)), ` · ${s.venue}`);
  }

  function update(next) {
    const first = booking === null;
    // A payment or a cancel is settled once the booking has changed.
    if (paying !== null && next.updated_at !== paying) paying = null;
    if (cancelling && next.status !== booking.status) cancelling = false;
    if (next.status === 'confirmed') wasConfirmed = true;
    booking = next;
    if (first) loadShow(next.show_id);

    setText(statusLine, STATUS_TEXT[next.status] || next.status);
    statusLine.dataset.status = next.status;
    statusLine.className = `status status-${next.status}`;
    const place = next.status === 'queued' ? next.position : next.status === 'waitlisted' ? next.waitlist_position : null;
    positionLine.hidden = !(next.status === 'queued' || next.status === 'waitlisted');
    if (place === null || place === undefined) {
      delete positionLine.dataset.position;
      setText(positionLine, next.status === 'queued' ? 'You are in line.' : 'You are on the waiting list.');
    } else {
      positionLine.dataset.position = String(place);
      setText(positionLine, next.status === 'queued'
        ? `You are number ${place} in line.`
        : `You are number ${place} on the waiting list.`);
    }
    renderDetail();
    if (refundPending() && !streaming) {
      // The stream ended with the cancel; the refund comes after it.
      streaming = every2s(poll);
    }
  }

  /** Re-renders what depends on the booking, keeping the focus where it was. */
  function renderDetail() {
    const focused = document.activeElement && detail.contains(document.activeElement) ? document.activeElement.id : null;
    const b = booking;
    detail.replaceChildren(...present([
      summary(b),
      b.status === 'queued' ? h('p', {}, 'Your request is decided in the order it arrived. This takes seconds, or longer when many are buying.') : null,
      b.status === 'waitlisted' ? h('p', {}, 'Sold out for now. If tickets come back, they are offered in turn, and you will get an email.') : null,
      b.status === 'held' ? payment(b) : null,
      b.status === 'confirmed' ? tickets(b) : null,
      ['rejected', 'expired'].includes(b.status) ? ended(b) : null,
      b.status === 'cancelled' ? cancelled(b) : null,
      ['queued', 'waitlisted', 'held', 'confirmed'].includes(b.status) ? cancelControl(b) : null]));
    if (focused) {
      const again = document.getElementById(focused);
      if (again) again.focus();
    }
  }

  function summary(b) {
    return h('dl', { class: 'summary' },
      h('dt', {}, 'Tickets'), h('dd', { id: 'quantity' }, String(b.quantity)),
      b.seats && b.seats.length
        ? [h('dt', {}, 'Seats'), h('dd', { id: 'seats' }, b.seats.map((s) => `${s.section} ${s.row}${s.number}`).join(', '))]
        : null,
      b.total_cents !== null && b.total_cents !== undefined ? [h('dt', {}, 'Total'), h('dd', { id: 'total' }, money(b.total_cents))] : null,
      h('dt', {}, 'Name'), h('dd', {}, b.name),
      h('dt', {}, 'Email'), h('dd', {}, b.email));
  }

  function payment(b) {
    const countdown = h('strong', { id: 'hold-countdown', role: 'timer' });
    const expires = Date.parse(b.hold_expires_at);
    everySecondWhileShown(countdown, () => {
      const left = Math.max(0, Math.round((expires - Date.now()) / 1000));
      countdown.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}`;
      countdown.dataset.seconds = String(left);
    });
    const button = h('button', { type: 'submit', id: 'pay', class: 'primary', disabled: paying !== null },
      paying !== null ? 'Paying…' : `Pay ${b.total_cents !== null ? money(b.total_cents) : ''}`.trim());
    const error = h('p', { id: 'pay-error', class: 'form-error', role: 'alert', hidden: true });
    const form = h('form', { id: 'pay-form', class: 'pay', novalidate: true, onsubmit: pay },
      h('fieldset', {},
        h('legend', {}, 'Test card'),
        CARDS.map((c) => h('div', { class: 'check' },
          h('input', { type: 'radio', name: 'card', id: c.id, value: c.token, checked: card === c.token,
            onchange: () => { card = c.token; } }),
          h('label', { for: c.id }, c.label)))),
      button,
      error);

    async function pay(event) {
      event.preventDefault();
      paying = booking.updated_at;
      button.disabled = true;
      button.textContent = 'Paying…';
      error.hidden = true;
      const res = await api('POST', `/v1/bookings/${id}/confirm`, { body: { payment_token: card } });
      if (res.status === 202 || res.status === 200) {
        if (res.status === 200) update(res.body);
        return;
      }
      paying = null;
      renderDetail();
      const again = document.getElementById('pay-error');
      again.textContent = problemText(res);
      again.hidden = false;
    }

    return h('section', { class: 'hold', 'aria-labelledby': 'pay-title' },
      h('h2', { id: 'pay-title' }, 'Pay'),
      h('p', {}, 'Your tickets are held for you for ', countdown, '. Pay before the time runs out.'),
      b.reason === 'payment_declined' && paying === null
        ? h('p', { id: 'payment-error', class: 'form-error', role: 'alert' },
          'Your card was declined. Your tickets are still held: try again, or with another card.')
        : null,
      form);
  }

  /** A countdown that stops when the detail is rendered again. */
  function everySecondWhileShown(el, tick) {
    const timer = setInterval(() => {
      if (!el.isConnected) clearInterval(timer);
      else tick();
    }, 1000);
    running.push(() => clearInterval(timer));
    tick();
  }

  function tickets(b) {
    const seatOf = new Map((b.seats || []).map((s) => [s.id, s]));
    return h('section', { class: 'tickets', 'aria-labelledby': 'tickets-title' },
      h('h2', { id: 'tickets-title' }, plural(b.tickets.length, 'ticket', 'tickets')),
      h('p', {}, 'Show each code at the door; it is also in your email.'),
      h('ul', { id: 'tickets', class: 'ticket-list' },
        b.tickets.map((t) => {
          const seat = t.seat_id ? seatOf.get(t.seat_id) : null;
          const place = seat ? `${seat.section}, row ${seat.row}, seat ${seat.number}` : 'General admission';
          return h('li', { class: 'ticket', 'data-testid': 'ticket', 'data-code': t.code },
            h('img', { class: 'qr', width: 200, height: 200, alt: `QR code of ticket ${t.code}`,
              src: `/v1/bookings/${id}/tickets/${encodeURIComponent(t.code)}/qr` }),
            h('p', { class: 'code' }, h('code', {}, t.code)),
            h('p', { class: 'place' }, place));
        })));
  }

  function ended(b) {
    return [
      h('p', { id: 'reason', class: 'reason', role: 'alert', 'data-reason': b.reason || '' },
        REASON_TEXT[b.reason] || (b.status === 'expired' ? 'This booking expired.' : 'This request could not be booked.')),
      h('p', {}, h('a', { href: `#/shows/${b.show_id}`, id: 'back-to-show' },
        b.reason === 'seats_unavailable' ? 'Choose other seats' : 'Back to the show')),
    ];
  }

  function cancelled(b) {
    let refund = null;
    if (b.refunded_cents !== null && b.refunded_cents !== undefined) {
      refund = h('p', { id: 'refund' }, `Refunded ${money(b.refunded_cents)} to your card.`);
    } else if (wasConfirmed) {
      refund = h('p', { id: 'refund-pending' }, 'Your refund is on its way.');
    }
    return [h('p', {}, 'This booking is cancelled; its tickets are back on sale.'), refund,
      h('p', {}, h('a', { href: `#/shows/${b.show_id}` }, 'Back to the show'))];
  }

  function cancelControl(b) {
    const paid = b.status === 'confirmed';
    const error = h('p', { id: 'cancel-error', class: 'form-error', role: 'alert', hidden: true });
    if (cancelling) return h('p', { class: 'cancel', id: 'cancel-status' }, 'Cancelling…');
    const ask = h('div', { id: 'cancel-confirm', class: 'confirm', hidden: true, role: 'group', 'aria-labelledby': 'cancel-question' },
      h('p', { id: 'cancel-question' }, paid
        ? 'Cancel this booking? Your tickets stop being valid and your payment is refunded.'
        : 'Cancel this booking? Your place and any held tickets are given up.'),
      h('button', { type: 'button', id: 'cancel-yes', class: 'danger', onclick: cancel }, 'Yes, cancel it'),
      ' ',
      h('button', { type: 'button', id: 'cancel-no', onclick: () => { ask.hidden = true; open.hidden = false; open.focus(); } },
        'No, keep it'));
    const open = h('button', { type: 'button', id: 'cancel', onclick: () => {
      open.hidden = true;
      ask.hidden = false;
      document.getElementById('cancel-no').focus();
    } }, ['held', 'confirmed'].includes(b.status) ? 'Cancel booking' : 'Cancel request');
    return h('section', { class: 'cancel', 'aria-label': 'Cancel' }, open, ask, error);

    async function cancel() {
      cancelling = true;
      const res = await api('POST', `/v1/bookings/${id}/cancel`);
      if (res.status === 202 || res.status === 200) {
        renderDetail();
        if (res.status === 200) update(res.body);
        watch();
        return;
      }
      cancelling = false;
      renderDetail();
      const again = document.getElementById('cancel-error');
      again.textContent = problemText(res);
      again.hidden = false;
    }
  }
}

window.addEventListener('hashchange', route);
route();
