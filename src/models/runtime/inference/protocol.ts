import type { RuntimeOptions } from '../types.ts';

/**
 * Messages between the main thread (client.ts) and an inference thread (thread.ts). The thread
 * knows no model family: it imports the family's serve module named in ThreadInit (a module of
 * this package, chosen by the family registry — never a path from a model folder) and relays
 * calls to the role objects it returns.
 */

/** What a family's serve module returns: its roles, their call surface, and its info. */
export interface ServedModels {
  info: Record<string, unknown>;
  roles: Record<string, ServedRole>;
  close(): Promise<void>;
}

export interface ServedRole {
  /** The object whose methods are called (a Captioner, an ImageTextEmbedder …). */
  impl: object;
  /** Async methods the client may call. */
  methods: readonly string[];
  /** Read-only values copied to the client once, at ready time. */
  props: Record<string, unknown>;
}

/** A serve module: `export async function serve(dir, runtime): Promise<ServedModels>`. */
export type ServeFn = (dir: string, runtime: RuntimeOptions) => Promise<ServedModels>;

export interface ThreadInit {
  /** URL of thread.ts (loaded through bootstrap.mjs, which registers tsx in the thread). */
  entry: string;
  /** URL of the family's serve module. */
  serve: string;
  dir: string;
  runtime: RuntimeOptions;
}

export type ThreadRequest =
  | { id: number; op: 'call'; role: string; method: string; args: unknown[] }
  | { id: number; op: 'close' };

export interface ThreadError {
  code: string;
  message: string;
  details: Record<string, unknown>;
}

export interface RoleDescriptor {
  methods: readonly string[];
  props: Record<string, unknown>;
}

export type ThreadReply =
  | { type: 'ready'; info: Record<string, unknown>; roles: Record<string, RoleDescriptor> }
  | { type: 'failed'; error: ThreadError }
  | { type: 'result'; id: number; value: unknown }
  | { type: 'error'; id: number; error: ThreadError };
