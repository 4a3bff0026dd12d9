/**
 * The real stack the browser tests run against, started with scripts/stack.sh in a private run dir on free ports
 * (so it never collides with a `make run` stack or another suite), and stopped again after the suite.
 *
 * The suite's global setup starts it and writes its description to E2E_STATE_FILE; every test reads it back with
 * `loadStack()`. With E2E_BASE_URL and E2E_API_URL set, an already running stack is used instead (nothing is
 * started or stopped; tests that need to stop a gateway are skipped).
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const REPO = path.resolve(import.meta.dirname, '../../..');
const STACK_SH = path.join(REPO, 'scripts/stack.sh');
export const STATE_FILE = process.env.E2E_STATE_FILE ?? path.join(os.tmpdir(), `cgl-e2e-state-${process.pid}.json`);

export interface StackInfo {
  /** The dashboard behind nginx, e.g. http://127.0.0.1:41234/ */
  baseUrl: string;
  /** graph-api directly (the tests' own writes), e.g. http://127.0.0.1:41235 */
  apiUrl: string;
  /** The stack's Redis (redis://host:port), or null when unknown. */
  redisUrl: string | null;
  /** The run dir of stack.sh, or null for a stack the suite did not start. */
  runDir: string | null;
  /** Where the fixture repositories to analyse are written (an allowed root of the analysis-worker). */
  fixturesDir: string;
  /** Service binaries that were there to start. */
  services: string[];
}

const SERVICES = ['graph-api', 'ws-gateway', 'stream-consumer', 'analysis-worker'];

/** A port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function readEnvFile(file: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

/**
 * Starts a stack (or describes the one E2E_BASE_URL names). `env` reaches every service of a stack started here
 * (stack.sh passes every `CODEGRAPH__…` variable on), e.g. the `[auth]` tokens of the auth spec's own stack.
 */
export async function startStack(extraEnv: Record<string, string> = {}): Promise<StackInfo> {
  if (process.env.E2E_BASE_URL && process.env.E2E_API_URL) {
    const fixturesDir = process.env.E2E_FIXTURES_DIR ?? fs.mkdtempSync(path.join(os.tmpdir(), 'cgl-e2e-fixtures-'));
    return {
      baseUrl: process.env.E2E_BASE_URL,
      apiUrl: process.env.E2E_API_URL,
      redisUrl: process.env.E2E_REDIS_URL ?? null,
      runDir: null,
      fixturesDir,
      services: SERVICES,
    };
  }
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cgl-e2e-stack-'));
  const fixturesDir = path.join(runDir, 'fixtures');
  fs.mkdirSync(fixturesDir);
  const binDir = process.env.STACK_BIN_DIR ? path.resolve(process.env.STACK_BIN_DIR) : path.join(REPO, 'target/release');
  const ports = await Promise.all(Array.from({ length: 8 }, freePort));
  const env = {
    ...process.env,
    STACK_RUN_DIR: runDir,
    STACK_BIN_DIR: binDir,
    STACK_REDIS_PORT: String(ports[0]),
    STACK_GRAPH_API_PORT: String(ports[1]),
    STACK_WS_GATEWAY_PORTS: `${ports[2]} ${ports[3]}`,
    STACK_STREAM_CONSUMER_PORT: String(ports[4]),
    STACK_ANALYSIS_WORKER_PORT: String(ports[5]),
    STACK_DASHBOARD_PORT: String(ports[6]),
    STACK_ANALYZE: '0',
    STACK_FALKORDB: 'off',
    // The worker analyses only under its allowed roots: the fixtures written by the tests.
    CODEGRAPH__ANALYSIS__ALLOWED_ROOTS: fixturesDir,
    ...extraEnv,
  };
  try {
    const { stdout } = await run('bash', [STACK_SH, 'start'], { env, timeout: 5 * 60_000, maxBuffer: 16 << 20 });
    process.stdout.write(stdout);
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    process.stdout.write(err.stdout ?? '');
    process.stderr.write(err.stderr ?? '');
    await stopStack({ runDir } as StackInfo).catch(() => {});
    throw new Error(`scripts/stack.sh start failed: ${err.message}`);
  }
  const stackEnv = readEnvFile(path.join(runDir, 'stack.env'));
  return {
    baseUrl: stackEnv.STACK_DASHBOARD_URL,
    apiUrl: stackEnv.STACK_GRAPH_API_URL,
    redisUrl: stackEnv.STACK_REDIS_URL,
    runDir,
    fixturesDir,
    services: SERVICES.filter((s) => fs.existsSync(path.join(binDir, s))),
  };
}

export async function stopStack(stack: Pick<StackInfo, 'runDir'>): Promise<void> {
  if (!stack.runDir) return;
  const { stdout } = await run('bash', [STACK_SH, 'stop'], {
    env: { ...process.env, STACK_RUN_DIR: stack.runDir },
    timeout: 2 * 60_000,
  });
  process.stdout.write(stdout);
}

/** Runs one redis-cli command against the stack's Redis. */
export async function redis(stack: StackInfo, ...args: string[]): Promise<string> {
  if (!stack.redisUrl) throw new Error('the stack has no known Redis URL');
  const { stdout } = await run('redis-cli', ['-u', stack.redisUrl, ...args]);
  return stdout.trim();
}

export function saveStack(stack: StackInfo): void {
  fs.writeFileSync(STATE_FILE, JSON.stringify(stack));
}

export function loadStack(): StackInfo {
  return JSON.parse(fs.readFileSync(STATE_FILE, 'utf8')) as StackInfo;
}

/**
 * A service the stack started, which a test can stop and start again (stack.sh has no per-unit commands): the
 * process is started again with the command line and environment it had, and its pid file is updated so that
 * `stack.sh stop` still ends it.
 */
export class StackUnit {
  private argv: string[] = [];
  private env: Record<string, string> = {};

  constructor(
    private readonly runDir: string,
    readonly name: string,
  ) {}

  static list(runDir: string, prefix: string): StackUnit[] {
    return fs
      .readdirSync(path.join(runDir, 'pids'))
      .filter((f) => f.startsWith(prefix) && f.endsWith('.pid'))
      .map((f) => new StackUnit(runDir, f.slice(0, -4)));
  }

  private get pidFile(): string {
    return path.join(this.runDir, 'pids', `${this.name}.pid`);
  }

  pid(): number {
    return Number(fs.readFileSync(this.pidFile, 'utf8').trim());
  }

  /** TERM to the unit's process group; resolves once it is gone. */
  async stop(timeoutMs = 30_000): Promise<void> {
    const pid = this.pid();
    this.argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    this.env = Object.fromEntries(
      fs
        .readFileSync(`/proc/${pid}/environ`, 'utf8')
        .split('\0')
        .filter(Boolean)
        .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
    );
    process.kill(-pid, 'SIGTERM');
    const deadline = Date.now() + timeoutMs;
    while (fs.existsSync(`/proc/${pid}`)) {
      if (Date.now() > deadline) {
        process.kill(-pid, 'SIGKILL');
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Resolves once the unit answers its readiness check (the URL stack.sh recorded for it). */
  async waitReady(timeoutMs = 30_000): Promise<void> {
    const check = fs.readFileSync(path.join(this.runDir, 'checks', this.name), 'utf8').trim();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const ok = await fetch(check, { signal: AbortSignal.timeout(2000) })
        .then((r) => r.ok)
        .catch(() => false);
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`${this.name} not ready at ${check} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Starts it again, as stack.sh did: its own session, output appended to its log. */
  start(): void {
    if (this.argv.length === 0) throw new Error(`${this.name} was not stopped by this test`);
    const log = fs.openSync(path.join(this.runDir, 'logs', `${this.name}.log`), 'a');
    const child = spawn(this.argv[0], this.argv.slice(1), {
      env: this.env,
      detached: true,
      stdio: ['ignore', log, log],
    });
    child.unref();
    fs.closeSync(log);
    fs.writeFileSync(this.pidFile, `${child.pid}\n`);
  }
}
