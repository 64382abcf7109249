/** @module Reading benchmark knobs (BENCH_*) from the environment, with clear errors. */

/** An integer knob: undefined when unset or empty; an error naming the variable when not >= min. */
export function envInt(env: NodeJS.ProcessEnv, name: string, min: number): number | undefined {
  const text = env[name];
  if (text === undefined || text === '') return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name}: expected an integer >= ${min}, received "${text}"`);
  return n;
}
