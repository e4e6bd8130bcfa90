// API reference: the service's own OpenAPI document (`GET /openapi.json`), rendered
// here from the very document clients are generated from, so it cannot drift from the
// API and needs nothing from outside (no CDN, no viewer library). Operations are
// grouped by their first path segment and filtered as you type; each shows who may
// call it, its parameters, its body, its answers with their error codes, and the links
// to what acts on its answer. The schemas follow, each property with its type.

import { get } from './api.js';
import { h, mount, table, pageHeader } from './ui.js';

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

/** The component name of a `$ref`, or null. */
function refName(schema) {
  return schema && schema.$ref ? schema.$ref.split('/').pop() : null;
}

/** A short type for a schema: `Transaction`, `array of Batch`, `integer (int64)`, `"a" | "b"`. */
function typeOf(schema) {
  if (!schema) return '';
  const ref = refName(schema);
  if (ref) return ref;
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(' | ');
  for (const key of ['oneOf', 'anyOf', 'allOf']) {
    if (schema[key]) return schema[key].map(typeOf).filter(Boolean).join(key === 'allOf' ? ' & ' : ' | ');
  }
  const type = Array.isArray(schema.type) ? schema.type.join(' | ') : schema.type || 'any';
  if (type === 'array') return `array of ${typeOf(schema.items)}`;
  return schema.format ? `${type} (${schema.format})` : type;
}

/** Bounds and patterns worth knowing: `1 - 200 chars`, `>= 1`, `pattern ^...$`. */
function rules(schema) {
  if (!schema) return '';
  const out = [];
  if (schema.minLength !== undefined || schema.maxLength !== undefined) {
    out.push(`${schema.minLength ?? 0} - ${schema.maxLength ?? '∞'} chars`);
  }
  if (schema.minimum !== undefined) out.push(`>= ${schema.minimum}`);
  if (schema.maximum !== undefined) out.push(`<= ${schema.maximum}`);
  if (schema.pattern) out.push(`pattern ${schema.pattern}`);
  return out.join(', ');
}

function schemaLink(name) {
  return h('a', { href: `#/api?schema=${encodeURIComponent(name)}`, class: 'schema-ref' }, name);
}

/** A type cell: a component name becomes a link to its schema below. */
function typeCell(schema) {
  const text = typeOf(schema);
  const ref = refName(schema) || refName(schema && schema.items);
  return ref ? h('span', {}, text.replace(ref, ''), schemaLink(ref)) : text;
}

function operationCard(path, method, op) {
  const params = (op.parameters || []).map((p) => ({ ...p, schema: p.schema || {} }));
  const body = op.requestBody && op.requestBody.content ? Object.entries(op.requestBody.content) : [];
  const responses = Object.entries(op.responses || {});
  return h('article', { class: 'card api-op', dataset: { path, method } },
    h('h3', {}, h('span', { class: `badge method-${method}` }, method.toUpperCase()), ' ', h('code', {}, path)),
    op.summary ? h('p', {}, op.summary) : null,
    op.description && op.description !== op.summary ? h('p', { class: 'muted' }, op.description) : null,
    params.length
      ? table([
        ['Parameter', (p) => h('code', {}, p.name)],
        ['In', (p) => p.in],
        ['Type', (p) => typeCell(p.schema)],
        ['Required', (p) => (p.required ? 'yes' : 'no')],
        ['Rules', (p) => rules(p.schema)],
        ['About', (p) => p.description || ''],
      ], params, { caption: 'Parameters' })
      : null,
    body.length
      ? h('p', {}, 'Body', op.requestBody.required ? '' : ' (optional)', ': ',
        ...body.map(([type, content], i) => h('span', {}, i ? ', ' : '', typeCell(content.schema), ` as ${type}`)))
      : null,
    table([
      ['Status', ([status]) => h('code', {}, status)],
      ['Answer', ([, r]) => (r.content ? Object.entries(r.content).map(([type, c]) => h('span', {}, typeCell(c.schema), ` (${type}) `)) : '')],
      ['About', ([, r]) => r.description || ''],
      ['Links', ([, r]) => Object.entries(r.links || {}).map(([name, l]) => h('span', { class: 'muted' }, `${name} → ${l.operationId || l.operationRef || ''} `))],
    ], responses, { caption: 'Answers' }));
}

function schemaCard(name, schema) {
  const props = Object.entries(schema.properties || {});
  const required = new Set(schema.required || []);
  return h('article', { class: 'card api-schema', id: `schema-${name}` },
    h('h3', {}, name),
    schema.description ? h('p', { class: 'muted' }, schema.description) : null,
    props.length
      ? table([
        ['Property', ([p]) => h('code', {}, p)],
        ['Type', ([, s]) => typeCell(s)],
        ['Required', ([p]) => (required.has(p) ? 'yes' : 'no')],
        ['Rules', ([, s]) => rules(s)],
        ['About', ([, s]) => s.description || ''],
      ], props)
      : h('p', {}, typeCell(schema)));
}

export async function renderApi(view, ctx) {
  const doc = await get('/openapi.json');
  const groups = new Map();
  for (const [path, item] of Object.entries(doc.paths || {}).sort(([a], [b]) => a.localeCompare(b))) {
    const group = path.split('/').filter(Boolean).slice(0, path.startsWith('/v1/') ? 2 : 1).join('/') || '/';
    for (const method of METHODS) {
      if (!item[method]) continue;
      if (!groups.has(group)) groups.set(group, []);
      groups.get(group).push(operationCard(path, method, item[method]));
    }
  }
  const schemas = Object.entries((doc.components && doc.components.schemas) || {}).sort(([a], [b]) => a.localeCompare(b));
  const filter = h('input', { type: 'search', id: 'api-filter', placeholder: 'Filter by path or words', 'aria-label': 'Filter operations' });
  const sections = [...groups].map(([group, cards]) => h('section', { class: 'api-group' }, h('h2', {}, `/${group}`), cards));
  filter.addEventListener('input', () => {
    const words = filter.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    for (const card of view.querySelectorAll('.api-op')) {
      const text = card.textContent.toLowerCase();
      card.hidden = !words.every((w) => text.includes(w));
    }
    for (const sec of view.querySelectorAll('.api-group')) {
      sec.hidden = ![...sec.querySelectorAll('.api-op')].some((c) => !c.hidden);
    }
  });
  const operations = [...groups.values()].reduce((n, cards) => n + cards.length, 0);
  mount(view,
    pageHeader('API reference', h('a', { href: '/openapi.json', class: 'button', download: 'openapi.json' }, 'OpenAPI document')),
    h('p', { class: 'muted' },
      `${doc.info ? `${doc.info.title} ${doc.info.version}` : ''}: ${operations} operations and ${schemas.length} schemas, `,
      'from this service\'s own document. Requests take a session cookie with its CSRF token, or ',
      h('code', {}, 'Authorization: Bearer <API key>'), '.'),
    h('div', { class: 'card' }, filter),
    sections,
    h('h2', {}, 'Schemas'),
    schemas.map(([name, schema]) => schemaCard(name, schema)));
  const wanted = ctx.query.get('schema');
  if (wanted) {
    const target = document.getElementById(`schema-${wanted}`);
    if (target) target.scrollIntoView();
  }
}
