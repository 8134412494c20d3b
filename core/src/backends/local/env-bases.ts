// Environment bases of one agent connection. A launch used to carry its whole environment
// (~1 KB, mostly the same for every task of a run: inherited variables, run id, endpoint, the
// step's env), encoded by core and decoded by the agent once per task. Instead the connection
// defines a few bases on the agent (`{"type":"env","envId":N,"env":{…}}`) and a launch names
// one with only the variables that differ. Which variables are common is found here, by
// comparison, so TaskSpec keeps a plain, complete env.

/** At most this many bases per connection (the agent accepts ids 0–63). */
const MAX_BASES = 8;

interface Base {
  id: number;
  env: Record<string, string>;
  size: number;
}

export interface EncodedEnv {
  /** A base to define (an `env` request) before the launch that uses it. */
  define?: { envId: number; env: Record<string, string> };
  envId: number;
  /** The variables that differ from the base (or are not in it). */
  env: Record<string, string>;
}

export class EnvBases {
  /** Most recently used first. */
  private readonly bases: Base[] = [];

  /**
   * Encodes a launch's environment against a base: one whose every variable the environment
   * has, and from which at most half of its variables differ. Without one, the environment
   * becomes a new base (replacing the least recently used) and the launch sends no variables.
   */
  encode(env: Record<string, string>): EncodedEnv {
    let size = 0;
    for (const _ in env) size++;
    for (let i = 0; i < this.bases.length; i++) {
      const base = this.bases[i] as Base;
      const diff = differences(base, env, size);
      if (diff === undefined) continue;
      if (i > 0) {
        this.bases.splice(i, 1);
        this.bases.unshift(base);
      }
      return { envId: base.id, env: diff };
    }
    const id = this.bases.length < MAX_BASES ? this.bases.length : (this.bases.pop() as Base).id;
    // Without a prototype: a variable named like an Object method ("constructor") is data.
    const base: Base = { id, env: Object.assign(Object.create(null), env), size };
    this.bases.unshift(base);
    return { define: { envId: id, env: base.env }, envId: id, env: {} };
  }
}

/** The variables of env that differ from base, or undefined if base does not fit env. */
function differences(
  base: Base,
  env: Record<string, string>,
  size: number,
): Record<string, string> | undefined {
  if (base.size > size) return undefined;
  const limit = size / 2;
  const diff: Record<string, string> = {};
  let differing = 0;
  let shared = 0;
  for (const k in env) {
    const v = env[k] as string;
    const b = base.env[k];
    if (b !== undefined) shared++;
    if (b !== v) {
      if (++differing > limit) return undefined;
      diff[k] = v;
    }
  }
  // Every variable of the base must be in env: a launch cannot remove one.
  return shared === base.size ? diff : undefined;
}
