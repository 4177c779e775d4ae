import type { FastifyInstance } from 'fastify';
import { ConflictError, NotFoundError } from '../errors.js';
import type { Store } from '../store/index.js';
import { bodyObject, contentField, modCmdField } from './input.js';
import type { WebContext } from './web-context.js';

/**
 * Module and command id descriptions (ModIDConfig / CmdIDConfig): list, add, edit, delete. The text
 * is stored verbatim (it is only ever bound as a query parameter and rendered as text, never markup).
 * These tables do not affect routing, so writes here neither bump the route version nor notify dns.
 */

interface IdKind {
  /** JSON field and path segment: modid / cmdid. */
  field: 'modid' | 'cmdid';
  list(store: Store): Promise<Array<{ id: number; value: number; content: string }>>;
  upsert(store: Store, value: number, content: string): Promise<{ id: number; created: boolean }>;
  remove(store: Store, value: number): Promise<number>;
}

const KINDS: IdKind[] = [
  {
    field: 'modid',
    list: async (s) => (await s.listModIds()).map((r) => ({ id: r.id, value: r.modid, content: r.content })),
    upsert: (s, v, c) => s.upsertModId(v, c),
    remove: (s, v) => s.deleteModId(v),
  },
  {
    field: 'cmdid',
    list: async (s) => (await s.listCmdIds()).map((r) => ({ id: r.id, value: r.cmdid, content: r.content })),
    upsert: (s, v, c) => s.upsertCmdId(v, c),
    remove: (s, v) => s.deleteCmdId(v),
  },
];

function registerKind(app: FastifyInstance, ctx: WebContext, kind: IdKind): void {
  const { store } = ctx;
  const base = `/api/${kind.field}s`;
  const view = (value: number, content: string) => ({ [kind.field]: value, content });

  app.get(base, async () => ({
    [`${kind.field}s`]: (await kind.list(store)).map((r) => view(r.value, r.content)),
  }));

  app.post(base, async (request, reply) => {
    const body = bodyObject(request.body);
    const value = modCmdField(body[kind.field], kind.field);
    const content = contentField(body.content);
    // The original tables have no unique key on the id; the console is their only writer.
    if ((await kind.list(store)).some((r) => r.value === value)) {
      throw new ConflictError(`${kind.field} ${value} already has a description; edit it instead`);
    }
    await kind.upsert(store, value, content);
    ctx.logger.info({ user: request.auth?.userName, [kind.field]: value }, `${kind.field} added`);
    return reply.code(201).send(view(value, content));
  });

  app.put(`${base}/:value`, async (request, reply) => {
    const value = modCmdField((request.params as { value: string }).value, kind.field);
    const content = contentField(bodyObject(request.body).content);
    const { created } = await kind.upsert(store, value, content);
    ctx.logger.info({ user: request.auth?.userName, [kind.field]: value, created }, `${kind.field} saved`);
    return reply.code(created ? 201 : 200).send(view(value, content));
  });

  app.delete(`${base}/:value`, async (request) => {
    const value = modCmdField((request.params as { value: string }).value, kind.field);
    const deleted = await kind.remove(store, value);
    if (deleted === 0) throw new NotFoundError(`${kind.field} ${value} has no description`);
    ctx.logger.info({ user: request.auth?.userName, [kind.field]: value }, `${kind.field} deleted`);
    return { [kind.field]: value, deleted };
  });
}

export function registerIdsApi(app: FastifyInstance, ctx: WebContext): void {
  for (const kind of KINDS) registerKind(app, ctx, kind);
}
