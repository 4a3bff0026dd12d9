/**
 * More analysis-workers beside the one stack.sh started (the watch take-over needs two): a copy of a running
 * unit's command line and environment with its own HTTP port, recorded in the run dir like stack.sh's units
 * (pids/, checks/, logs/), so `stack.sh stop` ends it too. And a hard kill, for a worker that dies without
 * letting go of anything.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { freePort } from './stack';

export interface UnitProcess {
  name: string;
  /** The unit's HTTP address, e.g. http://127.0.0.1:41237 */
  url: string;
  argv: string[];
  env: Record<string, string>;
}

const pidFile = (runDir: string, name: string) => path.join(runDir, 'pids', `${name}.pid`);

/** The command line and environment of a running unit of the stack. */
export function describeUnit(runDir: string, name: string): UnitProcess {
  const pid = Number(fs.readFileSync(pidFile(runDir, name), 'utf8').trim());
  const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  const env = Object.fromEntries(
    fs
      .readFileSync(`/proc/${pid}/environ`, 'utf8')
      .split('\0')
      .filter(Boolean)
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
  return { name, url: `http://${env.CODEGRAPH__HTTP__ADDR}`, argv, env };
}

/** Starts `unit` (as described) in its own session under `name`, its output appended to logs/<name>.log. */
export function startUnit(runDir: string, unit: UnitProcess): void {
  const log = fs.openSync(path.join(runDir, 'logs', `${unit.name}.log`), 'a');
  const child = spawn(unit.argv[0], unit.argv.slice(1), { env: unit.env, detached: true, stdio: ['ignore', log, log] });
  child.unref();
  fs.closeSync(log);
  fs.writeFileSync(pidFile(runDir, unit.name), `${child.pid}\n`);
  fs.writeFileSync(path.join(runDir, 'checks', unit.name), `${unit.url}/ready\n`);
}

/** A copy of the running unit `from` named `name`, on a port of its own; resolves once it is ready. */
export async function startCopy(runDir: string, from: string, name: string, timeoutMs = 30_000): Promise<UnitProcess> {
  const source = describeUnit(runDir, from);
  const host = source.env.CODEGRAPH__HTTP__ADDR.replace(/:\d+$/, '');
  const addr = `${host}:${await freePort()}`;
  const unit = { ...source, name, url: `http://${addr}`, env: { ...source.env, CODEGRAPH__HTTP__ADDR: addr } };
  startUnit(runDir, unit);
  await waitReady(unit, timeoutMs);
  return unit;
}

export async function waitReady(unit: UnitProcess, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await fetch(`${unit.url}/ready`, { signal: AbortSignal.timeout(2000) })
      .then((r) => r.ok)
      .catch(() => false);
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${unit.name} not ready at ${unit.url} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** SIGKILL to the unit's process group (it cannot release anything); resolves once the process is gone. */
export async function killUnit(runDir: string, name: string): Promise<void> {
  const pid = Number(fs.readFileSync(pidFile(runDir, name), 'utf8').trim());
  process.kill(-pid, 'SIGKILL');
  const deadline = Date.now() + 10_000;
  while (fs.existsSync(`/proc/${pid}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  fs.rmSync(pidFile(runDir, name), { force: true });
}

/** The consumer name a worker reports on its /status (the watch status names its holder by it). */
export async function consumerOf(unit: UnitProcess): Promise<string> {
  const res = await fetch(`${unit.url}/status`, { signal: AbortSignal.timeout(5000) });
  return ((await res.json()) as { consumer: string }).consumer;
}
